package processor

import (
	"sync"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The poller calls the consumer's Poll on a goroutine of its own and hands
// what it brings to the session loop, in order, a slice of records at a
// time: confluent-kafka-go's cost per record (several cgo calls, copies of
// key, value, topic and headers) then runs beside the loop's counting
// instead of before it, on the second core.
//
// Order is kept with one exception the loop must handle: a seek. Records
// polled before a seek may still wait in the channel when the loop moves a
// partition's position (an inactive task's record, a rewind after an
// aborted transaction). So every seek goes through reposition, which takes
// the lock the poller holds across each Poll and bumps the partition's
// generation; each record carries the generation it was polled under, and
// the loop drops records of an older one (stale reports the test).
//
// The rebalance callback runs inside Poll, on the poller's goroutine: it
// hands the event to the loop behind every record polled before it and
// waits for the loop to run the real callback, so the loop still owns every
// task and the callback still returns only once a revocation is committed.
// It lets go of the lock while it waits: the loop may still be on records
// before the rebalance that seek (a record of a task still restoring), and
// a commit that fails in the callback rewinds (TestPollerSeekWhileRebalanceWaits).

// pollerTimeoutMs bounds one Poll; it is also how long a seek may wait.
const pollerTimeoutMs = 10

// pollerBatch is the most records handed to the loop at once.
const pollerBatch = 256

// polled is a record and the generation of its partition when polled.
type polled struct {
	msg *kafka.Message
	gen uint32
}

// pollItem is one hand-off to the loop: records, or an event (nil with no
// records: the poll brought nothing), or a rebalance to run and answer.
type pollItem struct {
	records   []polled
	event     kafka.Event
	rebalance kafka.Event
	reply     chan error
}

type poller struct {
	consumer *kafka.Consumer
	items    chan pollItem
	stop     chan struct{}
	done     chan struct{}
	// exited is set by the poller's goroutine as it ends; read by others
	// only after done.
	exited bool

	// mu is held across each Poll (but not while a rebalance waits for the
	// loop) and each reposition.
	mu   sync.Mutex
	gens map[int32]uint32 // written by the loop only, under mu
	held []polled         // records not handed over yet
}

func newPoller(c *kafka.Consumer) *poller {
	return &poller{
		consumer: c,
		items:    make(chan pollItem, 16),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		gens:     map[int32]uint32{},
	}
}

func (p *poller) start() { go p.run() }

// close stops the poller and waits for it; safe to call more than once.
func (p *poller) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

func (p *poller) run() {
	defer close(p.done)
	defer func() { p.exited = true }()
	for {
		select {
		case <-p.stop:
			return
		default:
		}
		p.mu.Lock()
		ev := p.consumer.Poll(pollerTimeoutMs)
		m, isRecord := ev.(*kafka.Message)
		if isRecord {
			p.held = append(p.held, polled{msg: m, gen: p.gens[m.TopicPartition.Partition]})
		}
		p.mu.Unlock()
		if isRecord && len(p.held) < pollerBatch {
			continue
		}
		if !p.flush() {
			return
		}
		if !isRecord && !p.send(pollItem{event: ev}) {
			return
		}
	}
}

// flush hands the held records over; false if the poller is stopping.
func (p *poller) flush() bool {
	if len(p.held) == 0 {
		return true
	}
	ok := p.send(pollItem{records: p.held})
	p.held = make([]polled, 0, pollerBatch)
	return ok
}

func (p *poller) send(it pollItem) bool {
	select {
	case p.items <- it:
		return true
	case <-p.stop:
		return false
	}
}

// handOver runs inside Poll on the poller's goroutine: it gives the loop
// the rebalance behind the records polled before it and waits for the
// loop's answer.
func (p *poller) handOver(ev kafka.Event) error {
	// run holds the lock across Poll; nothing is polled while we wait.
	p.mu.Unlock()
	defer p.mu.Lock()
	if !p.flush() {
		return errSessionClosing
	}
	reply := make(chan error, 1)
	if !p.send(pollItem{rebalance: ev, reply: reply}) {
		return errSessionClosing
	}
	select {
	case err := <-reply:
		return err
	case <-p.stop:
		return errSessionClosing
	}
}

// reposition runs fn, which moves partition part's position, and makes the
// records polled before it stale (loop only).
func (p *poller) reposition(part int32, fn func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gens[part]++
	return fn()
}

// stale reports whether r was polled before its partition's last
// reposition (loop only).
func (p *poller) stale(r polled) bool {
	return r.gen != p.gens[r.msg.TopicPartition.Partition]
}
