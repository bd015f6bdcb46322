package api

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// Streams passed through (a key relayed from its owner, a prefix merged
// from every member) let a client that stops reading go within the write
// timeout, close its connection, and hang up on the members, which then
// drop their parts. The members here are plain handlers; the client is raw
// TCP that never reads past the answer's head.

const testWriteTimeout = 250 * time.Millisecond

// releaseWithin bounds the release of a stalled client: one write timeout
// for the write that blocks (or for the end of the answer), with room for
// a loaded machine and the race detector.
const releaseWithin = 20 * testWriteTimeout

// fakeMember is another member's subscribe endpoint.
type fakeMember struct {
	srv   *httptest.Server
	ended chan struct{} // closed when its handler returns
}

// memberStream is what a fake member writes after the stream's head,
// until it returns.
type memberStream func(ctx context.Context, w http.ResponseWriter, flush func() error)

func newFakeMember(t *testing.T, stream memberStream) *fakeMember {
	t.Helper()
	m := &fakeMember{ended: make(chan struct{})}
	var once sync.Once
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer once.Do(func() { close(m.ended) })
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		stream(r.Context(), w, rc.Flush)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// flood writes 1 KiB events of rising counts as fast as they are taken.
func flood(_ context.Context, w http.ResponseWriter, flush func() error) {
	pad := strings.Repeat("x", 1000)
	for n := 1; ; n++ {
		event := fmt.Sprintf("event: count\ndata: {\"value\":%d,\"pad\":%q}\n\n", n, pad)
		if _, err := io.WriteString(w, event); err != nil || flush() != nil {
			return
		}
	}
}

// idle writes the retry field and waits for the request to end.
func idle(ctx context.Context, w http.ResponseWriter, flush func() error) {
	_, _ = io.WriteString(w, "retry: 1000\n\n")
	_ = flush()
	<-ctx.Done()
}

// brief writes one event and ends, as a member whose partition moves does.
func brief(_ context.Context, w http.ResponseWriter, flush func() error) {
	_, _ = io.WriteString(w, "event: moved\ndata: {}\n\n")
	_ = flush()
}

// twoMembers routes partition 0 to a and 1 to b; this instance owns none.
type twoMembers struct{ a, b *fakeMember }

func (r twoMembers) PartitionOf([]byte) (int32, error) { return 0, nil }
func (r twoMembers) Refresh()                          {}
func (r twoMembers) Members() ([]abacus.Member, time.Time, int32) {
	return []abacus.Member{
		{Name: "abacus-1", URL: r.a.srv.URL, Partitions: []int32{0}},
		{Name: "abacus-2", URL: r.b.srv.URL, Partitions: []int32{1}},
	}, time.Now(), 2
}

// connStates records the states of a server's connections by the client's
// address.
type connStates struct {
	mu     sync.Mutex
	states map[string][]http.ConnState
}

func (c *connStates) hook(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	addr := conn.RemoteAddr().String()
	c.states[addr] = append(c.states[addr], s)
}

func (c *connStates) of(client net.Conn) []http.ConnState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]http.ConnState(nil), c.states[client.LocalAddr().String()]...)
}

// newStreamingServer serves an abacus-0 that owns nothing and knows a and b.
func newStreamingServer(t *testing.T, a, b *fakeMember) (*httptest.Server, *connStates) {
	t.Helper()
	s := New(Config{Instance: "abacus-0", Store: "counts-store", Counts: notHere{}, Router: twoMembers{a, b},
		StreamWriteTimeout: testWriteTimeout})
	states := &connStates{states: map[string][]http.ConnState{}}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Config.ConnState = states.hook
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, states
}

// stalledClient asks for target with a small receive window, reads the
// answer's head and then nothing more.
func stalledClient(t *testing.T, srv *httptest.Server, target string) net.Conn {
	t.Helper()
	conn := testkit.StalledStream(t, srv.URL+target)
	head := testkit.ReadHead(t, conn, 10*time.Second)
	if !strings.HasPrefix(head, "HTTP/1.1 200 ") || !strings.Contains(head, "\r\nConnection: close\r\n") {
		t.Fatalf("answer %q; want a 200 stream with Connection: close", head)
	}
	return conn
}

// waitReleased waits for the server to close the client's connection,
// which must never have gone back to idle (kept alive), and for every
// member to end its part.
func waitReleased(t *testing.T, states *connStates, client net.Conn, members ...*fakeMember) {
	t.Helper()
	began := time.Now()
	deadline := began.Add(releaseWithin)
	for {
		seen := states.of(client)
		closed := len(seen) > 0 && seen[len(seen)-1] == http.StateClosed
		ended := 0
		for _, m := range members {
			select {
			case <-m.ended:
				ended++
			default:
			}
		}
		if closed && ended == len(members) {
			for _, s := range seen {
				if s == http.StateIdle {
					t.Errorf("the connection was kept alive before it closed: %v", seen)
				}
			}
			t.Logf("released %s after the stream opened", time.Since(began).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: connection states %v, %d of %d members ended their part", releaseWithin, seen, ended, len(members))
		}
		time.Sleep(10 * time.Millisecond) // polling, not synchronising
	}
}

func TestFanInStalledClientReleased(t *testing.T) {
	a, b := newFakeMember(t, flood), newFakeMember(t, idle)
	srv, states := newStreamingServer(t, a, b)
	client := stalledClient(t, srv, "/api/v1/stores/counts-store/subscribe?prefix=")
	waitReleased(t, states, client, a, b)
}

// A prefix stream outlives a partition's stream: when the owner ends it
// (the partition moved), the member follows the partition to its next
// owner (here the same one again), whose current values the client was
// sent already and is not sent again, nor the parts' retry fields, moved
// events or heartbeats.
func TestFanInFollowsAPartitionPastItsOwnersEnd(t *testing.T) {
	moving := func(_ context.Context, w http.ResponseWriter, flush func() error) {
		_, _ = io.WriteString(w, "retry: 1000\n\nevent: count\ndata: {\"key\":\"a\",\"value\":7}\n\n: ping\n\nevent: moved\ndata: {}\n\n")
		_ = flush()
	}
	a, b := newFakeMember(t, moving), newFakeMember(t, idle)
	srv, _ := newStreamingServer(t, a, b)
	resp, body := readFor(t, srv.URL+"/api/v1/stores/counts-store/subscribe?prefix=", 12*testWriteTimeout)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if want := "retry: 1000\n\nevent: count\ndata: {\"key\":\"a\",\"value\":7}\n\n"; body != want {
		t.Errorf("got %q; want %q", body, want)
	}
}

func TestRelayStalledClientReleased(t *testing.T) {
	a, b := newFakeMember(t, flood), newFakeMember(t, idle)
	srv, states := newStreamingServer(t, a, b)
	client := stalledClient(t, srv, "/api/v1/stores/counts-store/subscribe?key=k")
	waitReleased(t, states, client, a)
}

// readFor reads a stream for d, then hangs up, and returns what came.
func readFor(t *testing.T, rawURL string, d time.Duration) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body []byte
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			return resp, string(body)
		}
	}
}

// A key's stream outlives its owner's: when the owner ends it (the
// partition moved) after a quiet spell longer than the write timeout, the
// member follows the key to its next owner (here the same one again) and
// the client, which stays connected, is not sent the new owner's first
// value again (it repeats the last one sent), nor its retry field.
func TestRelayFollowsTheKeyPastItsOwnersEnd(t *testing.T) {
	quiet := func(_ context.Context, w http.ResponseWriter, flush func() error) {
		_, _ = io.WriteString(w, "retry: 1000\n\nevent: count\ndata: {\"value\":7}\n\n")
		_ = flush()
		<-time.After(4 * testWriteTimeout) // the quiet spell itself
	}
	a, b := newFakeMember(t, quiet), newFakeMember(t, idle)
	srv, _ := newStreamingServer(t, a, b)
	resp, body := readFor(t, srv.URL+"/api/v1/stores/counts-store/subscribe?key=k", 12*testWriteTimeout)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200", resp.StatusCode)
	}
	if want := "retry: 1000\n\nevent: count\ndata: {\"value\":7}\n\n"; body != want {
		t.Errorf("got %q; want %q", body, want)
	}
}

// A relayed stream passes on the owner's whole events and nothing of one
// the owner's stream ended in, as a merged stream does.
func TestRelayPassesWholeEvents(t *testing.T) {
	cut := func(_ context.Context, w http.ResponseWriter, flush func() error) {
		_, _ = io.WriteString(w, "retry: 1000\n\nevent: count\ndata: {}\n\n: ping\n\nid: 0-1\nevent: count\ndata: {\"ke")
		_ = flush()
	}
	a, b := newFakeMember(t, cut), newFakeMember(t, idle)
	srv, _ := newStreamingServer(t, a, b)
	_, body := readFor(t, srv.URL+"/api/v1/stores/counts-store/subscribe?key=k", 2*time.Second)
	if want := "retry: 1000\n\nevent: count\ndata: {}\n\n: ping\n\n"; !strings.HasPrefix(body, want) || strings.Contains(body, "ke") {
		t.Errorf("got %q; want it to begin with %q and hold nothing of the cut event", body, want)
	}
}
