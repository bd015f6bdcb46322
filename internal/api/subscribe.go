package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
	"github.com/r3labs/sse/v2"
)

// Subscriptions serves live count streams from this instance's own tasks.
type Subscriptions interface {
	// Serve streams updates of key (or of every key with the prefix;
	// with a partition of 0 or more, of that partition's keys only) owned
	// here until the client leaves or the key's partition moves away. It
	// writes its own answer, errors included, unless it returns an error
	// (one of abacus's when this member cannot serve the partition now),
	// in which case it has written nothing.
	Serve(w http.ResponseWriter, r *http.Request, key string, prefix bool, partition int32) error
	// ServeCopy is Serve from this member's copy of the partition (its
	// standby, a task restoring or being handed over) if it lags at most
	// maxLag changelog records; a prefix only with a partition. It fails
	// with abacus.ErrNotOwned when there is no copy here, and with an
	// *abacus.StaleError when it lags more.
	ServeCopy(w http.ResponseWriter, r *http.Request, key string, prefix bool, partition int32, maxLag int64) error
}

// newStreamClient is the client that relays streams: no overall
// timeout, only for connecting and for the upstream's first byte.
func newStreamClient(peerTLS *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second}).DialContext,
		ResponseHeaderTimeout: 5 * time.Second,
		MaxIdleConnsPerHost:   16,
		TLSClientConfig:       peerTLS.Clone(),
	}}
}

// subscription is the query of a subscribe request.
type subscription struct {
	// store names the windowed store whose windows are followed; empty
	// for the count store.
	store  string
	key    string
	prefix bool
	// partition narrows a prefix subscription to one partition; -1 for
	// every partition.
	partition int32
	// maxLag lets a copy within that many changelog records feed the
	// stream while the owner cannot (?max_lag); -1 for none.
	maxLag int64
}

func parseSubscription(c echo.Context) (subscription, error) {
	params, err := parseQuery(c)
	if err != nil {
		return subscription{}, err
	}
	_, hasKey := params["key"]
	_, hasPrefix := params["prefix"]
	sub := subscription{partition: -1, maxLag: -1}
	switch {
	case hasKey == hasPrefix:
		return sub, fail(http.StatusBadRequest, "bad_query", "give exactly one of key and prefix")
	case hasKey:
		sub.key = params.Get("key")
		if sub.key == "" {
			return sub, fail(http.StatusBadRequest, "bad_key", "key must not be empty")
		}
	default:
		sub.key, sub.prefix = params.Get("prefix"), true
	}
	if len(sub.key) > MaxKeyBytes || !utf8.ValidString(sub.key) {
		return sub, fail(http.StatusBadRequest, "bad_key", "key or prefix must be valid UTF-8 of at most %d bytes", MaxKeyBytes)
	}
	if v, ok := params["partition"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 32)
		switch {
		case !sub.prefix:
			return sub, fail(http.StatusBadRequest, "bad_parameter", "partition narrows a prefix subscription; a key's partition is the key's")
		case err != nil || n < 0:
			return sub, fail(http.StatusBadRequest, "bad_parameter", "partition %q is not a partition number", v[0])
		}
		sub.partition = int32(n)
	}
	if maxLag, bounded, err := maxLagParam(c); err != nil {
		return sub, err
	} else if bounded {
		sub.maxLag = maxLag
	}
	return sub, nil
}

// subscribe streams a key's counts from its owner, or a prefix's counts
// from every member, as Server-Sent Events.
func (s *Server) subscribe(c echo.Context) error {
	if err := takeStreamParams(c); err != nil {
		return err
	}
	if store := c.Param("store"); store != s.storeName() {
		if _, err := s.windowStore(store); err == nil {
			return s.subscribeWindows(c, store)
		}
		return s.unknownStore(store)
	}
	sub, err := parseSubscription(c)
	if err != nil {
		return err
	}
	local, err := wantLocal(c)
	if err != nil {
		return err
	}
	if sub.prefix {
		if local || forwarded(c) {
			return s.serveLocalOrCopy(c, sub)
		}
		return s.fanIn(c, sub)
	}
	_, _, err = s.cfg.Counts.Get(s.storeName(), []byte(sub.key))
	if local || forwarded(c) {
		// This member's answer alone: a partition it cannot serve now is
		// refused, and the asking member waits (follow.go), unless a copy
		// here within max_lag serves it.
		if err != nil && sub.maxLag >= 0 && !errors.Is(err, abacus.ErrUnknownStore) {
			return s.serveLocalOrCopy(c, sub)
		}
		switch {
		case errors.Is(err, abacus.ErrRestoring):
			return unavailable("restoring", "the partition of key %q is restoring; retry shortly", sub.key)
		case errors.Is(err, abacus.ErrUnconfirmed):
			return unavailable("moving", "%s is out of reach of the consumer group's coordinator: the partition of key %q may be moving to another member; retry shortly", s.cfg.Instance, sub.key)
		case errors.Is(err, abacus.ErrHandingOver):
			return unavailable("moving", "%s is handing the partition of key %q over to another member; retry shortly", s.cfg.Instance, sub.key)
		case errors.Is(err, abacus.ErrNotOwned):
			s.refresh()
			return unavailable("not_owner", "key %q is not owned by %s; retry shortly", sub.key, s.cfg.Instance)
		case err != nil:
			return fmt.Errorf("read key: %w", err)
		}
		return s.serveLocalOrCopy(c, sub)
	}
	switch {
	case err == nil:
		return s.serveThenFollow(c, sub)
	case !errors.Is(err, abacus.ErrRestoring) && !errors.Is(err, abacus.ErrUnconfirmed) && !errors.Is(err, abacus.ErrHandingOver) && !errors.Is(err, abacus.ErrNotOwned):
		return fmt.Errorf("read key: %w", err)
	}
	return s.follow(c, sub)
}

func (s *Server) serveLocal(c echo.Context, sub subscription) error {
	return s.serveLocalTo(c.Response(), c, sub)
}

// serveLocalOrCopy serves a local (or another member's) subscription from
// this member's active task, or, with max_lag, when that cannot serve,
// from its copy of a key's partition or of the one partition asked.
func (s *Server) serveLocalOrCopy(c echo.Context, sub subscription) error {
	err := s.serveLocal(c, sub)
	if sub.maxLag < 0 || !isTransient(err) || (sub.prefix && sub.partition < 0) {
		return err
	}
	if s.cfg.Subscriptions == nil {
		return err
	}
	cerr := s.cfg.Subscriptions.ServeCopy(c.Response(), c.Request(), sub.key, sub.prefix, sub.partition, sub.maxLag)
	var stale *abacus.StaleError
	switch {
	case errors.As(cerr, &stale):
		c.Response().Header().Set(LagHeader, strconv.FormatInt(stale.Lag, 10))
	case errors.Is(cerr, abacus.ErrNotOwned):
		return err // no copy here: the first refusal says why
	}
	return s.streamRefusal(sub, cerr)
}

// serveLocalTo is serveLocal onto w.
func (s *Server) serveLocalTo(w http.ResponseWriter, c echo.Context, sub subscription) error {
	if sub.store != "" {
		if s.cfg.WindowSubscriptions == nil {
			return fail(http.StatusNotFound, "not_found", "subscriptions to windowed stores are not served here")
		}
		return s.streamRefusal(sub, s.cfg.WindowSubscriptions.ServeWindows(w, c.Request(), sub.store, sub.key, sub.prefix, sub.partition))
	}
	if s.cfg.Subscriptions == nil {
		return fail(http.StatusNotFound, "not_found", "subscriptions are not served here")
	}
	return s.streamRefusal(sub, s.cfg.Subscriptions.Serve(w, c.Request(), sub.key, sub.prefix, sub.partition))
}

// streamRefusal maps the error of Subscriptions.Serve, which wrote
// nothing, to the answer to give.
func (s *Server) streamRefusal(sub subscription, err error) error {
	what := fmt.Sprintf("the partition of key %q", sub.key)
	if sub.prefix {
		what = fmt.Sprintf("partition %d", sub.partition)
		if sub.partition < 0 {
			what = fmt.Sprintf("a partition of prefix %q", sub.key)
		}
	}
	switch {
	case errors.Is(err, abacus.ErrRestoring):
		return unavailable("restoring", "%s is restoring; retry shortly", what)
	case errors.Is(err, abacus.ErrNotOwned):
		s.refresh()
		return unavailable("not_owner", "%s is not owned by %s; retry shortly", what, s.cfg.Instance)
	case errors.Is(err, abacus.ErrUnconfirmed), errors.Is(err, abacus.ErrHandingOver):
		return unavailable("moving", "%s may be moving away from %s; retry shortly", what, s.cfg.Instance)
	}
	var stale *abacus.StaleError
	if errors.As(err, &stale) {
		return unavailable("too_stale", "the copy of %s here lags %d changelog records, more than max_lag %d; retry shortly, or accept more", what, stale.Lag, sub.maxLag)
	}
	return err
}

// serveThenFollow streams a key this member owns from its own hub; when
// the key's partition moves away, the hub ends its stream with a moved
// event, which the client is not sent: the stream goes on, on the same
// response, from the key's new owner (followFrom), with values that only
// rise (e2e TestSSEOwnerKilled). Refused before anything was sent (the
// partition moved away meanwhile), it is followed from the start.
func (s *Server) serveThenFollow(c echo.Context, sub subscription) error {
	defer s.untilStopping(c)()
	catch := &movedCatcher{ResponseWriter: c.Response(), last: abacus.KeyStreamPosition(c.Request().Header.Get("Last-Event-ID"))}
	err := s.serveLocalTo(catch, c, sub)
	switch {
	case isTransient(err) && !catch.wrote:
		return s.follow(c, sub)
	case err != nil || !catch.moved || c.Request().Context().Err() != nil:
		return err
	}
	w := &waitingStream{out: newDownstream(c.Response(), s.cfg.StreamWriteTimeout)}
	defer w.out.end()
	return s.followFrom(c, sub, w, catch.last)
}

// movedCatcher passes a key's stream from the hub on to the client, but
// keeps back its moved event (the stream goes on from the next owner) and
// notes the last value sent. The hub writes whole events in each write.
type movedCatcher struct {
	http.ResponseWriter
	wrote, moved bool
	last         int64
}

func (m *movedCatcher) Write(b []byte) (int, error) {
	m.wrote = true
	if !bytes.Contains(b, []byte("event: moved")) && !bytes.Contains(b, []byte("event:moved")) {
		m.noteLast(b)
		_, err := m.ResponseWriter.Write(b)
		return len(b), err
	}
	var keep []byte
	for block := range bytes.SplitAfterSeq(b, []byte("\n\n")) {
		if event, _, _ := countOf(block); event == "moved" {
			m.moved = true
			continue
		}
		keep = append(keep, block...)
	}
	m.noteLast(keep)
	if len(keep) > 0 {
		if _, err := m.ResponseWriter.Write(keep); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// noteLast remembers the value of the last count event in b.
func (m *movedCatcher) noteLast(b []byte) {
	for block := range bytes.SplitAfterSeq(b, []byte("\n\n")) {
		if event, _, value := countOf(block); event == "count" {
			m.last = value
		}
	}
}

// Unwrap lets http.ResponseController reach the response's flush and
// write deadlines.
func (m *movedCatcher) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// upstream opens a member's stream of the same subscription, local to
// it, with the query changed by set (a nil value removes a parameter) and
// the Last-Event-ID given (none when empty), for as long as ctx lasts.
func (s *Server) upstream(ctx context.Context, c echo.Context, m abacus.Member, set url.Values, lastEventID string) (*http.Response, error) {
	req := c.Request()
	q := req.URL.Query()
	q.Set("local", "true")
	for k, v := range set {
		if v == nil {
			q.Del(k)
		} else {
			q[k] = v
		}
	}
	target := m.URL + req.URL.EscapedPath() + "?" + q.Encode()
	up, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, err
	}
	up.Header.Set(HopHeader, s.cfg.Instance)
	if v := s.authorizationFor(req); v != "" {
		up.Header.Set("Authorization", v)
	}
	if lastEventID != "" {
		up.Header.Set("Last-Event-ID", lastEventID)
	}
	return s.streamClient.Do(up)
}

// memberRefusal turns a member's error answer into ours, and closes it.
func (s *Server) memberRefusal(resp *http.Response) error {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		s.refresh()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == "" {
		e.Error.Code, e.Error.Message = "upstream_error", string(body)
	}
	ae := fail(resp.StatusCode, e.Error.Code, "%s", e.Error.Message)
	ae.retryAfter = resp.Header.Get("Retry-After")
	return ae
}

// isTransient reports an error answer that passes by itself.
func isTransient(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && transient(ae.status, ae.code)
}

// errorCode is an error answer's code.
func errorCode(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code
	}
	return "internal"
}

func closeBodies(resps []*http.Response) {
	for _, r := range resps {
		r.Body.Close()
	}
}

// maxEventBytes bounds one event read from a member. A count event carries
// a stored key, which only Kafka's record size bounds (1 MiB by default),
// and JSON may spell each of its bytes in six ("\ufffd" for invalid
// UTF-8); a member never sends more than that in one event.
const maxEventBytes = 8 << 20

// cutMark marks, in the bytes r3labs/sse's EventStreamReader reads, the
// point where a member's stream ended. Our events never hold a NUL byte
// (JSON escapes it), so an "event" that ends in one is the end of the
// stream, with whatever incomplete event the connection was cut in.
const cutMark = 0

// copyEvents reads a member's event stream one event at a time with
// r3labs/sse's EventStreamReader and hands each whole event (blank line
// included) to write, until the stream ends or write refuses. An event the
// stream ended in the middle of (a member that died, a connection cut) is
// not passed on: the EventStreamReader returns such a tail as one more
// event, which the cut mark tells apart.
func copyEvents(r io.Reader, write func([]byte) bool) {
	events := sse.NewEventStreamReader(&markEnd{r: r}, maxEventBytes)
	var block []byte
	for {
		ev, err := events.ReadEvent()
		switch {
		case err != nil:
			return // an event over maxEventBytes: the client reconnects
		case len(ev) == 0:
			continue // an extra blank line
		case ev[len(ev)-1] == cutMark:
			return
		}
		block = append(append(block[:0], ev...), "\n\n"...)
		if !write(block) {
			return
		}
	}
}

// markEnd reads r and, when r ends (cleanly or not), first yields the cut
// mark and then r's error.
type markEnd struct {
	r      io.Reader
	err    error
	marked bool
}

func (m *markEnd) Read(p []byte) (int, error) {
	if m.err == nil {
		var n int
		n, m.err = m.r.Read(p)
		if n > 0 || m.err == nil {
			return n, nil // the error, if any, comes at the next call
		}
	}
	if !m.marked && len(p) > 0 {
		m.marked = true
		p[0] = cutMark
		return 1, nil
	}
	return 0, m.err
}
