package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
)

// A subscription is never refused for a reason that passes by itself: no
// owner of the key's partition yet, the owner restoring or handing the
// partition over, the owner out of reach. The member the client asked
// opens the stream with 200 at once, says in an SSE comment what it waits
// for, and streams once an owner can. A key's stream then follows the key
// from owner to owner as its partition moves, without the client
// reconnecting: the values it is sent strictly increase (a new owner's
// first value repeats the last one sent, and is not sent again). A browser's
// EventSource gives up for good after a non-200 answer, so a 503 would
// end a live view at every rolling restart (e2e
// TestSubscriptionFollowsItsKeyThroughARollingRestart).
//
// Refusals that do not pass by themselves stay refusals: bad input and
// auth before the stream opens; too many subscribers at the owner, once
// it is open, ends the stream with an error event.

// followRetry is the longest wait between two tries to reach an owner.
const followRetry = time.Second

// waitNoteEvery repeats the waiting comment, which also keeps proxies
// from closing a quiet connection.
const waitNoteEvery = 15 * time.Second

// transient reports whether a 503 refusal passes by itself.
func transient(status int, code string) bool {
	return status == http.StatusServiceUnavailable && code != "too_many_subscribers"
}

// waitingStream is a 200 event stream whose content may not be ready yet.
type waitingStream struct {
	out    *downstream
	reason string
	noted  time.Time
}

func (s *Server) openWaiting(c echo.Context) (*waitingStream, bool) {
	out := newDownstream(c.Response(), s.cfg.StreamWriteTimeout)
	if !out.open(http.StatusOK) || !out.write([]byte("retry: 1000\n\n")) {
		out.end()
		return nil, false
	}
	return &waitingStream{out: out}, true
}

// note tells the client what the stream waits for, when that changed or
// a while passed; false when the client is gone.
func (w *waitingStream) note(reason string) bool {
	if reason == w.reason && time.Since(w.noted) < waitNoteEvery {
		return true
	}
	w.reason, w.noted = reason, time.Now()
	return w.out.write([]byte(": waiting: " + oneLine(reason) + "\n\n"))
}

// refuse ends the stream with an error event whose data is the refusal
// as an error answer's body.
func (w *waitingStream) refuse(err error) {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": errorCode(err), "message": err.Error()}})
	w.out.write([]byte("event: error\ndata: " + string(body) + "\n\n"))
}

func oneLine(s string) string {
	return string(bytes.ReplaceAll(bytes.ReplaceAll([]byte(s), []byte("\r"), nil), []byte("\n"), []byte(" ")))
}

// pause waits before the next try; false when the client left or the
// server stops.
func (s *Server) pause(c echo.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.Request().Context().Done():
	case <-s.stopping:
	}
	return false
}

// untilStopping makes the request's context, which the streams from
// other members follow, end when the server stops too: a graceful
// shutdown does not wait for open streams. Call the result when done.
func (s *Server) untilStopping(c echo.Context) (cancel func()) {
	ctx, cancel := context.WithCancel(c.Request().Context())
	go func() {
		select {
		case <-s.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	c.SetRequest(c.Request().WithContext(ctx))
	return cancel
}

// follow streams a key's counts from whichever member owns it, for as
// long as the client stays.
func (s *Server) follow(c echo.Context, sub subscription) error {
	defer s.untilStopping(c)()
	w, ok := s.openWaiting(c)
	if !ok {
		return nil
	}
	defer w.out.end()
	if sub.store != "" {
		if err := s.windowFollower(c, sub, w.out, 0).run(c.Request().Context()); err != nil {
			w.refuse(err)
		}
		return nil
	}
	return s.followFrom(c, sub, w, abacus.KeyStreamPosition(c.Request().Header.Get("Last-Event-ID")))
}

// followFrom streams on an open stream from whichever member owns the
// key, skipping values up to last (sent already), until the client leaves
// or a refusal that lasts ends the stream (prefix.go, partFollower).
func (s *Server) followFrom(c echo.Context, sub subscription, w *waitingStream, last int64) error {
	f := &partFollower{s: s, c: c, sub: sub, out: w.out, last: map[string]int64{}}
	if last >= 0 {
		f.last[sub.key] = last
	}
	if err := f.run(c.Request().Context()); err != nil {
		w.refuse(err)
	}
	return nil
}

// countOf reads an event's type and, for a count, its key and value.
func countOf(block []byte) (event, key string, value int64) {
	var data []byte
	for line := range bytes.SplitSeq(block, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("event:")); ok {
			event = string(bytes.TrimSpace(v))
		} else if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = bytes.TrimSpace(v)
		}
	}
	if event == "count" {
		var d struct {
			Key   string `json:"key"`
			Value int64  `json:"value"`
		}
		_ = json.Unmarshal(data, &d)
		key, value = d.Key, d.Value
	}
	return event, key, value
}
