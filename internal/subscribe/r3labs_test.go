package subscribe

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
)

// r3labs/sse/v2's Server does not serve our streams (doc.go, "Server-Sent
// Events: r3labs/sse/v2 and our own framing"). This pins the behaviours of
// its Server that rule it out, so that an upgrade that changes them fails
// here and the choice is made again.
func TestR3labsServerCannotFrameOurStreams(t *testing.T) {
	subscribed := make(chan struct{}, 1)
	unsubscribed := make(chan struct{}, 1)
	srv := sse.NewWithCallback(
		func(string, *sse.Subscriber) { subscribed <- struct{}{} },
		func(string, *sse.Subscriber) { unsubscribed <- struct{}{} })
	srv.AutoReplay = false
	srv.CreateStream("s")
	hs := httptest.NewServer(srv)
	defer hs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	get := func(lastEventID string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"?stream=s", nil)
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	// Our ids are "<partition>-<offset>": an EventSource reconnecting
	// after an update would be refused, and would not try again.
	resp := get(EventID(3, 17))
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("Last-Event-ID %q answered %d; r3labs now takes such ids", EventID(3, 17), resp.StatusCode)
	}

	resp = get("")
	defer resp.Body.Close()
	select {
	case <-subscribed:
	case <-ctx.Done():
		t.Fatal("never subscribed")
	}
	// A snapshot value has no id; r3labs writes an empty one (which resets
	// a client's last event id), and the data before the event type.
	snapshot := string(appendCount(nil, "a", 0, 1, 0, noID))
	srv.Publish("s", &sse.Event{Event: []byte(EventCount), Data: []byte(`{"key":"a","value":0,"partition":1}`)})
	br := bufio.NewReader(resp.Body)
	var got strings.Builder
	for !strings.HasSuffix(got.String(), "\n\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read the event (%q so far): %v", got.String(), err)
		}
		got.WriteString(line)
	}
	if want := "id: \ndata: {\"key\":\"a\",\"value\":0,\"partition\":1}\nevent: count\n\n"; got.String() != want {
		t.Errorf("r3labs now frames an event without id as %q (was %q; ours is %q)", got.String(), want, snapshot)
	}
	// A stream opens with the retry field alone; to r3labs an event with
	// neither data nor a comment is the end of the stream.
	srv.Publish("s", &sse.Event{Retry: []byte("1000")})
	rest, err := io.ReadAll(br)
	if err != nil || len(rest) != 0 {
		t.Errorf("after a retry-only event: %q, %v; r3labs now writes it", rest, err)
	}
	select { // the handler's goroutine has left the stream: Close leaks none
	case <-unsubscribed:
	case <-time.After(waitFor):
		t.Fatal("never unsubscribed")
	}
	srv.Close()
}
