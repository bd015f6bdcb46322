package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/r3labs/sse/v2"
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

// refuse ends the stream with an error event carrying the refusal's body.
func (w *waitingStream) refuse(body []byte) {
	w.out.write([]byte("event: error\ndata: " + oneLine(string(body)) + "\n\n"))
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
	last := int64(-1)
	retry := 100 * time.Millisecond
	for {
		reason, streamed, done := s.followOnce(c, sub, w, &last)
		if done {
			return nil
		}
		if streamed {
			retry = 100 * time.Millisecond
		}
		if reason != "" && !w.note(reason) {
			return nil
		}
		if !s.pause(c, retry) {
			return nil
		}
		retry = min(2*retry, followRetry)
	}
}

// followOnce streams from the key's owner until that stream ends. It
// returns why it could not stream (empty when it did), whether any event
// came, and done when the stream must end (client gone, a lasting refusal).
func (s *Server) followOnce(c echo.Context, sub subscription, w *waitingStream, last *int64) (reason string, streamed, done bool) {
	p, err := s.cfg.Router.PartitionOf([]byte(sub.key))
	if err != nil {
		s.refresh()
		return err.Error(), false, false
	}
	m, ok := s.owner(p)
	if !ok {
		s.refresh()
		return "partition " + itoa32(p) + " has no known owner yet", false, false
	}
	resp, err := s.upstream(c, m)
	if err != nil {
		s.refresh()
		return "owner " + m.Name + " does not answer", false, c.Request().Context().Err() != nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if !transient(resp.StatusCode, e.Error.Code) {
			w.refuse(body)
			return "", false, true
		}
		s.refresh()
		return m.Name + ": " + e.Error.Message, false, false
	}
	w.reason = "" // streaming: a later wait is news
	events := sse.NewEventStreamReader(&markEnd{r: resp.Body}, maxEventBytes)
	var block []byte
	for {
		ev, err := events.ReadEvent()
		if err != nil || (len(ev) > 0 && ev[len(ev)-1] == cutMark) {
			// The owner ended the stream (the partition moved, it shuts
			// down) or died: find the next owner.
			s.refresh()
			return "", streamed, c.Request().Context().Err() != nil
		}
		streamed = true
		fields := parseEvent(ev)
		switch fields.event {
		case "moved":
			continue // the stream ends next; this one goes on
		case "count":
			if fields.value <= *last {
				continue // a new owner's first value, sent already
			}
			*last = fields.value
		case "":
			if fields.data == "" && fields.comment == "" {
				continue // retry line: ours was sent
			}
		}
		block = append(append(block[:0], ev...), "\n\n"...)
		if !w.out.write(block) {
			return "", streamed, true
		}
	}
}

// sseFields are what follow reads of an event.
type sseFields struct {
	event, data, comment string
	value                int64
}

func parseEvent(ev []byte) sseFields {
	var f sseFields
	for _, line := range bytes.Split(ev, []byte("\n")) {
		switch {
		case bytes.HasPrefix(line, []byte("event:")):
			f.event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			f.data = string(bytes.TrimSpace(line[len("data:"):]))
		case bytes.HasPrefix(line, []byte(":")):
			f.comment = string(line)
		}
	}
	if f.event == "count" {
		var d struct {
			Value int64 `json:"value"`
		}
		if json.Unmarshal([]byte(f.data), &d) == nil {
			f.value = d.Value
		}
	}
	return f
}

func itoa32(p int32) string {
	b, _ := json.Marshal(p)
	return string(b)
}
