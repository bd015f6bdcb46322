package subscribe

import (
	"net/http"
	"sync"
	"time"
)

// stream is one subscription. The loop offers it updates and ends it; the
// handler serving it drains and writes them. Its pending set and end state
// are shared by the two under mu, held only for map work, never for I/O.
type stream struct {
	key    string // the key, or the prefix
	prefix bool
	limit  int // Config.Buffer
	// A prefix stream of one partition (Query.OnePartition) is offered
	// that partition's updates only.
	onePartition bool
	partition    int32
	// floor: a key stream is sent values above it only (the value its
	// client's Last-Event-ID names; -1 for none). Read-only after Serve
	// set it, before the stream was registered.
	floor int64
	// windowed: the stream is a windowed store's. Its client's
	// Last-Event-ID, "<partition>-<offset>", is after: the updates of
	// that partition at or below that offset are not sent (the client had
	// them). Read-only after Serve set them, as floor.
	windowed bool
	after    position

	wake chan struct{} // cap 1: something to write, or the end

	// Owned by the loop.
	regEnds uint64 // hub.endSeq when the stream registered

	mu      sync.Mutex
	pending map[string]queued
	fence   *fence
	end     endReason
	final   []byte // the event to write last (moved), if any
	// rc is the handler's response while it writes; finish uses it to cut
	// a blocked write short.
	rc *http.ResponseController
}

// position is a partition's changelog offset a client had reached.
type position struct {
	partition int32
	offset    int64
	set       bool
}

// covers reports whether q, a window's update, is at or before p.
func (p position) covers(q *queued) bool {
	return p.set && q.Partition == p.partition && q.Offset <= p.offset
}

// pastDeadline fails the write under way and every later one.
var pastDeadline = time.Unix(1, 0)

// endReason says whether and why a stream ends.
type endReason uint8

const (
	open        endReason = iota
	endMoved              // write what is pending, then final, then end
	endOverflow           // end now
	endShutdown           // end now
)

// killed: the stream ends without writing anything more.
func (r endReason) killed() bool { return r == endOverflow || r == endShutdown }

func newStream(q Query, limit int) *stream {
	return &stream{
		key: q.Key, prefix: q.Prefix, limit: limit,
		onePartition: q.OnePartition, partition: q.Partition, floor: -1,
		wake:    make(chan struct{}, 1),
		pending: map[string]queued{},
	}
}

// offer outcomes.
const (
	offerQueued = iota
	offerCoalesced
	offerOverflow
	offerSkipped
)

// offer adds q to the pending set, replacing a pending value of its key.
// It never blocks on the handler.
func (s *stream) offer(q *queued) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end != open || s.had(q) || (s.onePartition && q.Partition != s.partition) {
		return offerSkipped
	}
	if s.fence != nil {
		if q.batch > s.fence.until {
			s.fence = nil // updates arrive in batch order: the fence is passed
		} else if s.fence.drops(q) {
			return offerSkipped
		}
	}
	outcome := offerQueued
	k := q.slot()
	if _, ok := s.pending[k]; ok {
		outcome = offerCoalesced
	} else if len(s.pending) >= s.limit {
		return offerOverflow
	}
	s.pending[k] = *q
	s.notify()
	return outcome
}

// had reports whether the client had q before it connected, as its
// Last-Event-ID says.
func (s *stream) had(q *queued) bool {
	if q.windowed {
		return s.after.covers(q)
	}
	return q.Value <= s.floor
}

func (s *stream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// finish ends the stream; it reports whether this call ended it. A killed
// stream's blocked write is cut short through its write deadline.
func (s *stream) finish(r endReason, final []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end != open {
		return false
	}
	s.end, s.final = r, final
	if r.killed() {
		clear(s.pending)
		if s.rc != nil {
			_ = s.rc.SetWriteDeadline(pastDeadline)
		}
	}
	s.notify()
	return true
}

// drain appends the pending updates to buf in publish order and empties
// the set; with them it reports how the stream stands.
func (s *stream) drain(buf []queued) ([]queued, endReason, []byte) {
	n := len(buf)
	s.mu.Lock()
	for _, q := range s.pending {
		buf = append(buf, q)
	}
	clear(s.pending)
	end, final := s.end, s.final
	s.mu.Unlock()
	sortByOrder(buf[n:]) // not under the lock the loop offers under
	return buf, end, final
}

// setFence installs the snapshot's fence and drops the pending updates it
// already covers.
func (s *stream) setFence(f *fence) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, q := range s.pending {
		if q.batch <= f.until && f.drops(&q) {
			delete(s.pending, k)
		}
	}
	s.fence = f
}

// arm sets the deadline of the next write, unless the stream was killed.
func (s *stream) arm(rc *http.ResponseController, d time.Duration, deadlines *bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end.killed() {
		return false
	}
	s.rc = rc
	if *deadlines {
		if err := rc.SetWriteDeadline(time.Now().Add(d)); err != nil {
			*deadlines = false // not supported by this ResponseWriter
		}
	}
	return true
}

// detach forgets the response: the handler is returning.
func (s *stream) detach() {
	s.mu.Lock()
	s.rc = nil
	s.mu.Unlock()
}

func (s *stream) ended() endReason {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

// fence keeps the updates a stream's snapshot already reflects from being
// sent after it. The snapshot was read after batch before was published
// and before batch until+1 was: batches up to before are in it, batches
// past until are not, and a batch between may be. Counts only grow, so an
// update in that window whose value is not above the snapshot's is one the
// snapshot holds already.
//
// A windowed store's snapshot says exactly what it holds: every window
// of each partition it read up to the checkpoint read with them
// (store.WindowedStore.GetWindowsAt), so the updates at or below it are
// in the snapshot, and the later ones are not (TestWindowSnapshotFence).
type fence struct {
	before, until uint64
	floors        map[string]int64 // key -> value sent in the snapshot
	checkpoints   map[int32]int64  // a windowed snapshot's: partition -> checkpoint
}

func (f *fence) drops(q *queued) bool {
	if q.windowed {
		cp, ok := f.checkpoints[q.Partition]
		return ok && q.Offset <= cp
	}
	floor, ok := f.floors[q.Key]
	if !ok {
		return false
	}
	return q.batch <= f.before || (q.batch <= f.until && q.Value <= floor)
}
