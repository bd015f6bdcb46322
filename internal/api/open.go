package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
)

// copyWindow is how long a member streams a key (or a partition of a
// prefix) from a copy before it asks the owner again: a copy that
// answered while the owner could not goes on only until the owner can.
const copyWindow = 5 * time.Second

// openPart opens the stream of sub's share of partition p (a key's stream,
// or a prefix's keys in p) at the
// partition's owner; with max_lag, when the owner cannot serve, at a
// member holding a copy of the partition within the bound (this member
// first, then the owner's standbys, then the others). lastID is sent as
// Last-Event-ID (none when empty). It returns why it could not open one,
// or a lasting refusal.
func (s *Server) openPart(ctx context.Context, c echo.Context, sub subscription, p int32, lastID string) (body io.ReadCloser, reason string, refusal error) {
	m, ok := s.owner(p)
	if ok {
		body, err := s.openAt(ctx, c, m, sub, p, lastID, false)
		if err == nil {
			return body, "", nil
		}
		if !isTransient(err) {
			return nil, "", err
		}
		reason = m.Name + ": " + err.Error()
	} else {
		s.refresh()
		reason = "partition " + strconv.Itoa(int(p)) + " has no known owner yet"
	}
	if sub.maxLag < 0 {
		return nil, reason, nil
	}
	holders := append([]abacus.Member{{Name: s.cfg.Instance}}, s.copyHolders(p)...)
	for _, h := range holders {
		if h.Name == m.Name {
			continue // asked already
		}
		cctx, cancel := context.WithTimeout(ctx, copyWindow)
		body, err := s.openAt(cctx, c, h, sub, p, lastID, true)
		if err == nil {
			return cancelOnClose{body, cancel}, "", nil
		}
		cancel()
	}
	return nil, reason + "; no copy within max_lag", nil
}

// openAt opens sub's share of partition p at member m: its active task
// (asked with local=true and without max_lag), or with copy its copy
// within max_lag. An error is a refusal as an answer (transient or not),
// or an unreachable member as a transient owner_unreachable.
func (s *Server) openAt(ctx context.Context, c echo.Context, m abacus.Member, sub subscription, p int32, lastID string, fromCopy bool) (io.ReadCloser, error) {
	if m.Name == s.cfg.Instance {
		return s.openHere(ctx, c, sub, p, fromCopy)
	}
	set := url.Values{"max_lag": nil}
	if fromCopy {
		set["max_lag"] = []string{strconv.FormatInt(sub.maxLag, 10)}
	}
	if sub.prefix {
		set["partition"] = []string{strconv.Itoa(int(p))}
	}
	noteForward(ctx, m.Name)
	resp, err := s.upstream(ctx, c, m, set, lastID)
	if err != nil {
		s.refresh()
		return nil, unavailable("owner_unreachable", "does not answer for partition %d", p)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, s.memberRefusal(resp)
	}
	return resp.Body, nil
}

// openHere serves sub's share of partition p from this member's own hub
// (its copy's with copy), in process: its stream is read as another
// member's would be, from a pipe.
func (s *Server) openHere(ctx context.Context, c echo.Context, sub subscription, p int32, fromCopy bool) (io.ReadCloser, error) {
	if sub.store == "" && s.cfg.Subscriptions == nil || sub.store != "" && s.cfg.WindowSubscriptions == nil {
		return nil, fail(http.StatusNotFound, "not_found", "subscriptions are not served here")
	}
	partition := int32(-1)
	if sub.prefix {
		partition = p
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	w := &pipeResponse{header: http.Header{}, body: pw, head: make(chan int, 1)}
	req := c.Request().Clone(ctx)
	req.Header.Del("Last-Event-ID")
	served := make(chan error, 1)
	go func() {
		var err error
		switch {
		case sub.store != "":
			err = s.cfg.WindowSubscriptions.ServeWindows(w, req, sub.store, sub.key, sub.prefix, partition)
		case fromCopy:
			err = s.cfg.Subscriptions.ServeCopy(w, req, sub.key, sub.prefix, partition, sub.maxLag)
		default:
			err = s.cfg.Subscriptions.Serve(w, req, sub.key, sub.prefix, partition)
		}
		pw.Close()
		served <- err
	}()
	select {
	case status := <-w.head:
		body := &pipeBody{PipeReader: pr, cancel: cancel, served: served}
		if status != http.StatusOK {
			return nil, s.memberRefusal(&http.Response{StatusCode: status, Header: w.header, Body: body})
		}
		return body, nil
	case err := <-served:
		cancel()
		pr.Close()
		if err == nil {
			return nil, unavailable("moving", "partition %d: the stream ended before it began", p)
		}
		return nil, s.streamRefusal(subscription{key: sub.key, prefix: sub.prefix, partition: partition, maxLag: sub.maxLag}, err)
	}
}

// cancelOnClose ends a copy's stream's context when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// pipeResponse is the http.ResponseWriter of a stream served in process:
// the status goes to head, the body into a pipe. Writes block until read,
// and fail once the reader closed the pipe.
type pipeResponse struct {
	header http.Header
	body   *io.PipeWriter
	head   chan int
	sent   bool
}

func (w *pipeResponse) Header() http.Header { return w.header }

func (w *pipeResponse) WriteHeader(status int) {
	if !w.sent {
		w.sent = true
		w.head <- status
	}
}

func (w *pipeResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Flush is a no-op: every write reaches the reader as it is made.
func (w *pipeResponse) Flush() {}

// pipeBody ends the in-process stream when closed, as a closed
// connection ends another member's: the hub's handler sees its request
// end (or its next write fail), and Close waits for it to return.
type pipeBody struct {
	*io.PipeReader
	cancel context.CancelFunc
	served chan error
}

func (b *pipeBody) Close() error {
	b.cancel()
	b.PipeReader.Close()
	<-b.served
	return nil
}
