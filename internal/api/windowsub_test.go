package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/window"
)

// noWindows is a Windows that answers nothing; the relay tests need only
// the store's description.
type noWindows struct{}

func (noWindows) GetWindows(string, []byte, int64, int64) ([]Window, error) { return nil, nil }
func (noWindows) ScanWindows(string, WindowScanQuery) ([]Window, []int32, error) {
	return nil, nil, nil
}

// newWindowStreamingServer serves an abacus-0 that owns nothing, knows a
// and b, and has the session store "visits".
func newWindowStreamingServer(t *testing.T, a, b *fakeMember) *httptest.Server {
	t.Helper()
	s := New(Config{Instance: "abacus-0", Store: "counts-store", Counts: notHere{}, Router: twoMembers{a, b},
		Windows: noWindows{}, WindowStores: []WindowStore{{Spec: window.Spec{Store: "visits", Kind: window.Session, Size: 3 * time.Second}}},
		StreamWriteTimeout: testWriteTimeout})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv
}

// A windowed store's stream relayed from the key's owner passes the
// first owner's snapshot on whole; when the partition moves (here the
// owner's stream ends and the member opens it again), the next owner's
// snapshot reaches the client as the changes from what it holds: a
// retraction of the session it no longer has, the one that grew, nothing
// for the one unchanged; then the updates, and no snapshot comment.
func TestWindowRelayTurnsTheNextOwnersSnapshotIntoChanges(t *testing.T) {
	var opened atomic.Int32
	owner := func(ctx context.Context, w http.ResponseWriter, flush func() error) {
		switch opened.Add(1) {
		case 1:
			_, _ = io.WriteString(w, "retry: 1000\n\n"+
				"id: 0-4\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":1}\n\n"+
				"id: 0-4\nevent: count\ndata: {\"key\":\"k\",\"start\":9000,\"end\":9000,\"value\":1}\n\n"+
				": snapshot end 0-4\n\n"+
				"id: 0-6\nevent: count\ndata: {\"key\":\"k\",\"start\":5000,\"end\":5000,\"value\":1}\n\n"+
				"event: moved\ndata: {\"partition\":0,\"reason\":\"revoked\"}\n\n")
		case 2:
			// Meanwhile [0,0] and [5000,5000] merged into [0,5000].
			_, _ = io.WriteString(w, "retry: 1000\n\n"+
				"id: 0-9\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":5000,\"value\":3}\n\n"+
				"id: 0-9\nevent: count\ndata: {\"key\":\"k\",\"start\":9000,\"end\":9000,\"value\":1}\n\n"+
				": snapshot end 0-9\n\n"+
				"id: 0-10\nevent: count\ndata: {\"key\":\"k\",\"start\":9000,\"end\":9000,\"value\":2}\n\n")
			_ = flush()
			<-ctx.Done()
		default:
			<-ctx.Done()
		}
		_ = flush()
	}
	a, b := newFakeMember(t, owner), newFakeMember(t, idle)
	srv := newWindowStreamingServer(t, a, b)
	resp, body := readFor(t, srv.URL+"/api/v1/stores/visits/subscribe?key=k", 8*testWriteTimeout)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	want := "retry: 1000\n\n" +
		"id: 0-4\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":1}\n\n" +
		"id: 0-4\nevent: count\ndata: {\"key\":\"k\",\"start\":9000,\"end\":9000,\"value\":1}\n\n" +
		"id: 0-6\nevent: count\ndata: {\"key\":\"k\",\"start\":5000,\"end\":5000,\"value\":1}\n\n" +
		"id: 0-9\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":null}\n\n" +
		"id: 0-9\nevent: count\ndata: {\"key\":\"k\",\"start\":5000,\"end\":5000,\"value\":null}\n\n" +
		"id: 0-9\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":5000,\"value\":3}\n\n" +
		"id: 0-10\nevent: count\ndata: {\"key\":\"k\",\"start\":9000,\"end\":9000,\"value\":2}\n\n"
	if body != want {
		t.Errorf("got\n%s\nwant\n%s", body, want)
	}
}

// A client's Last-Event-ID keeps from the relayed stream the updates of
// its partition it had; the snapshot comes whole again.
func TestWindowRelaySkipsWhatTheClientHad(t *testing.T) {
	owner := func(ctx context.Context, w http.ResponseWriter, flush func() error) {
		_, _ = io.WriteString(w, "retry: 1000\n\n"+
			"id: 0-4\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":1}\n\n"+
			": snapshot end 0-4\n\n"+
			"id: 0-6\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":2}\n\n"+
			"id: 0-7\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":3}\n\n")
		_ = flush()
		<-ctx.Done()
	}
	a, b := newFakeMember(t, owner), newFakeMember(t, idle)
	srv := newWindowStreamingServer(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 4*testWriteTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/v1/stores/visits/subscribe?key=k", nil)
	req.Header.Set("Last-Event-ID", "0-6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	want := "retry: 1000\n\n" +
		"id: 0-4\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":1}\n\n" +
		"id: 0-7\nevent: count\ndata: {\"key\":\"k\",\"start\":0,\"end\":0,\"value\":3}\n\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// A windowed store has no copies: max_lag is refused, naming it; and the
// count store's subscriptions and a windowed store's are told apart.
func TestWindowSubscriptionRefusals(t *testing.T) {
	a, b := newFakeMember(t, idle), newFakeMember(t, idle)
	srv := newWindowStreamingServer(t, a, b)
	for target, want := range map[string]string{
		"/api/v1/stores/visits/subscribe?key=k&max_lag=10": `400 "bad_parameter" max_lag`,
		"/api/v1/stores/visits/subscribe?key=k&prefix=":    `400 "bad_query"`,
		"/api/v1/stores/nope/subscribe?key=k":              `404 "unknown_store"`,
	} {
		resp, err := http.Get(srv.URL + target)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fields := strings.Fields(want)
		if strconv.Itoa(resp.StatusCode) != fields[0] || !strings.Contains(string(body), `"code":`+fields[1]) || len(fields) > 2 && !strings.Contains(string(body), fields[2]) {
			t.Errorf("%s: %d %s; want %s", target, resp.StatusCode, body, want)
		}
	}
}

// The windows a relay remembers are pruned of the ones surely expired, so
// a long stream's memory is bounded by the store's retention, not by its
// age: stream time is at least the largest end seen less a window's size.
func TestWindowRelayForgetsExpiredWindows(t *testing.T) {
	spec := window.Spec{Store: "t", Kind: window.Hopping, Size: 5 * time.Second, Advance: time.Second, Retention: 60 * time.Second}
	r := &windowRelay{spec: spec, held: map[windowName]int64{}, nextPrune: minPrune}
	const n = 20_000 // windows a second apart: 20,000 s of them
	for i := range int64(n) {
		r.hold(windowName{"k", i * 1000, i*1000 + 5000}, 1)
	}
	if len(r.held) >= 2*minPrune {
		t.Errorf("%d windows held after %d; want fewer than %d", len(r.held), n, 2*minPrune)
	}
	// Stream time is at least the last end less the size; the windows
	// that end within the retention before it are kept.
	streamTime := int64(n-1)*1000 + 5000 - 5000
	for i := int64(n - 1); i >= 0; i-- {
		w := windowName{"k", i * 1000, i*1000 + 5000}
		_, ok := r.held[w]
		if live := w.end > streamTime-60_000; live && !ok {
			t.Fatalf("window %v, not expired at stream time %d, was forgotten", w, streamTime)
		}
		if w.end < streamTime-200_000 {
			break
		}
	}
}
