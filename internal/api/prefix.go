package api

import (
	"bytes"
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// A prefix subscription spans partitions, and partitions move one at a
// time. The member the client asked therefore follows each partition on
// its own: for every partition (or the one asked with &partition=) it
// opens the owner's stream of the prefix narrowed to that partition
// (?local=true&partition=p), and when that stream ends (the partition
// moved, its owner restarts or died) it finds the partition's next owner
// and opens it there, while the other partitions stream on. The client's
// stream never ends for a move and never waits on another partition's.
//
// A new owner's stream starts with the current values of the partition's
// keys, most of which the client was sent already. Each partition's
// follower remembers the last value it sent of every key and passes on
// only values above it, so a key's values strictly increase and nothing
// is sent twice, and the new owner's current values catch the client up
// on whatever changed during the move. That memory is one entry per key
// sent, for as long as the stream lasts. (e2e
// TestPrefixSubscriptionThroughAScaleDownAndUp.)

// fanIn merges the per-partition streams of a prefix subscription into
// one, for as long as the client stays. A lasting refusal (the owner of a
// partition serves too many subscribers) ends the whole stream with an
// error event.
func (s *Server) fanIn(c echo.Context, sub subscription) error {
	defer s.untilStopping(c)()
	w, ok := s.openWaiting(c)
	if !ok {
		return nil
	}
	defer w.out.end()
	n, ok := s.partitionCount(c, w)
	if !ok {
		return nil
	}
	parts := []int32{sub.partition}
	if sub.partition < 0 {
		parts = parts[:0]
		for p := range n {
			parts = append(parts, p)
		}
	} else if sub.partition >= n {
		w.refuse(fail(400, "bad_parameter", "partition %d: the input topic has %d partitions", sub.partition, n))
		return nil
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &partFollower{s: s, c: c, sub: sub, partition: p, out: w.out, last: map[string]int64{}}
			if sub.store != "" {
				f = s.windowFollower(c, sub, w.out, p)
			}
			if err := f.run(ctx); err != nil {
				w.refuse(err)
			}
			cancel() // a part ends only with the whole stream
		}()
	}
	// The parts' own heartbeats are not passed on: one per stream is enough.
	tick := time.NewTicker(waitNoteEvery)
	defer tick.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
			if !w.out.write([]byte(": ping\n\n")) {
				cancel()
			}
		}
	}
}

// partitionCount waits, on the open stream, until the input topic's
// partition count is known; false when the client left meanwhile.
func (s *Server) partitionCount(c echo.Context, w *waitingStream) (int32, bool) {
	for {
		if members, _, n := s.cfg.Router.Members(); len(members) > 0 && n > 0 {
			return n, true
		}
		s.refresh()
		if !w.note("no members known yet") || !s.pause(c, followRetry) {
			return 0, false
		}
	}
}

// partFollower streams one partition's share of a subscription, a key's
// stream or a prefix's keys in one partition, from whichever member can
// serve it, from owner to owner.
type partFollower struct {
	s   *Server
	c   echo.Context
	sub subscription
	// partition is a prefix's; a key's is looked up at each try, as the
	// partition count may not be known yet.
	partition int32
	out       *downstream
	last      map[string]int64 // key -> last value sent
	// win, for a windowed store's stream, stands for last: the windows
	// sent (windowsub.go).
	win *windowRelay

	reason string // the wait last noted, and when
	noted  time.Time
	gone   bool // the client is gone
}

// run follows the partition until ctx ends, and returns a lasting
// refusal, if that is what ended it.
func (f *partFollower) run(ctx context.Context) error {
	retry := 100 * time.Millisecond
	for ctx.Err() == nil {
		reason, streamed, err := f.once(ctx)
		if err != nil || f.gone {
			return err
		}
		if streamed {
			retry = 100 * time.Millisecond
		}
		if reason != "" && !f.note(reason) {
			return nil
		}
		t := time.NewTimer(retry)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		retry = min(2*retry, followRetry)
	}
	return nil
}

// note tells the client what the stream (for a prefix, this partition)
// waits for, when that changed or a while passed; false when the client
// is gone.
func (f *partFollower) note(reason string) bool {
	if reason == f.reason && time.Since(f.noted) < waitNoteEvery {
		return true
	}
	f.reason, f.noted = reason, time.Now()
	if f.sub.prefix {
		reason = "partition " + strconv.Itoa(int(f.partition)) + ": " + reason
	}
	return f.out.write([]byte(": waiting: " + oneLine(reason) + "\n\n"))
}

// once streams from the partition's owner (or, with max_lag, a copy)
// until that stream ends. It returns why it could not stream (empty when
// it did), whether any event came, and a lasting refusal.
func (f *partFollower) once(ctx context.Context) (reason string, streamed bool, refusal error) {
	s, p, lastID := f.s, f.partition, ""
	if !f.sub.prefix {
		var err error
		if p, err = s.cfg.Router.PartitionOf([]byte(f.sub.key)); err != nil {
			s.refresh()
			return err.Error(), false, nil
		}
		if last, ok := f.last[f.sub.key]; ok && f.win == nil {
			lastID = strconv.FormatInt(last, 10) // the owner sends only news
		}
	}
	body, reason, refusal := s.openPart(ctx, f.c, f.sub, p, lastID)
	if body == nil {
		return reason, false, refusal
	}
	defer body.Close()
	f.reason = "" // streaming: a later wait is news
	if f.win != nil {
		// Each owner's stream opens with its snapshot; one cut short
		// before its end is dropped.
		f.win.inSnapshot, f.win.snapshot, f.win.truncated = true, nil, false
	}
	copyEvents(body, func(block []byte) bool {
		if ctx.Err() != nil {
			return false
		}
		streamed = true
		if f.win != nil {
			return f.relayWindows(block)
		}
		event, key, value := countOf(block)
		switch {
		case event == "count":
			if last, ok := f.last[key]; ok && value <= last {
				return true // sent already, by this owner or an earlier one
			}
			f.last[key] = value
		case event != "":
			return true // moved: the stream ends next, and this one goes on
		case bytes.HasPrefix(block, []byte("retry:")):
			return true // the client's stream has its own
		case f.sub.prefix && bytes.HasPrefix(block, []byte(": ping")):
			return true // fanIn sends one heartbeat for all partitions
		}
		if !f.out.write(block) {
			f.gone = true
			return false
		}
		return true
	})
	s.refresh()
	return "", streamed, nil
}
