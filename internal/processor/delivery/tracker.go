package delivery

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Tracker reads the producer's events (its delivery reports among
// them) in its own goroutine, so the producer never waits on them, and
// keeps what a commit needs: how many sends are outstanding, the first
// failure, the offset of the last changelog record delivered per
// partition, and how many reports came per changelog and output
// partition (so a commit can tell when one task's sends are all in). Reports come on the producer's own channel rather than one
// passed with each send: confluent-kafka-go keeps a per-send channel in a
// locked map until its report, a cost on every record.
type Tracker struct {
	events    <-chan kafka.Event
	onEvent   func(kafka.Event)
	changelog string
	output    string
	done      chan struct{}

	// changed is signalled (without blocking) after every report.
	changed chan struct{}

	// pending is an atomic, not under mu: every send adds to it, from
	// two goroutines at once.
	pending atomic.Int64

	mu  sync.Mutex
	err error
	// delivered holds, per changelog partition, this member's records
	// delivered since its task started (resetChangelog).
	delivered map[int32]*changelogSpan
	// markers counts, per changelog partition, the transactions of this
	// member that wrote to it and ended since its task started: each
	// wrote one marker, which takes an offset among the member's records
	// (exactly_once_v2). inTxn holds the partitions written to in the
	// transaction open now.
	markers map[int32]int64
	inTxn   map[int32]bool
	// Reports (delivered or failed) per partition in this session.
	changelogReported map[int32]int64
	outputReported    map[int32]int64
	// lastOffsets holds, per topic of trackOffsets (the windowed stores'
	// changelogs) and partition, the offset of the last record delivered
	// since the producer started.
	trackOffsets map[string]bool
	lastOffsets  map[topicPartition]int64
}

type topicPartition struct {
	topic     string
	partition int32
}

// changelogSpan is the first and last offset and the number of the
// changelog records delivered to a partition.
type changelogSpan struct{ first, last, n int64 }

// Mark is how far the sends of one task's part of a batch went: the
// reports its changelog partition and each output partition must reach
// (counted over the session) for all of them to be in.
type Mark struct {
	Partition int32
	Changelog int64
	Output    []int64
}

// New starts a tracker that reads events until the channel closes (the producer's
// Close closes it); onEvent sees every other event than a successful
// delivery report: the client's errors and statistics, and the records
// whose delivery failed. It keeps the last offset delivered per partition
// of each of trackOffsets too.
func New(changelog, output string, trackOffsets []string, events <-chan kafka.Event, onEvent func(kafka.Event)) *Tracker {
	d := &Tracker{
		events:            events,
		onEvent:           onEvent,
		changelog:         changelog,
		output:            output,
		done:              make(chan struct{}),
		changed:           make(chan struct{}, 1),
		delivered:         map[int32]*changelogSpan{},
		markers:           map[int32]int64{},
		inTxn:             map[int32]bool{},
		changelogReported: map[int32]int64{},
		outputReported:    map[int32]int64{},
		trackOffsets:      map[string]bool{},
		lastOffsets:       map[topicPartition]int64{},
	}
	for _, t := range trackOffsets {
		d.trackOffsets[t] = true
	}
	go d.run()
	return d
}

func (d *Tracker) run() {
	defer close(d.done)
	for ev := range d.events {
		m, ok := ev.(*kafka.Message)
		if !ok {
			d.onEvent(ev)
			continue
		}
		tp := m.TopicPartition
		if tp.Error != nil {
			d.onEvent(ev)
		}
		d.mu.Lock()
		switch *tp.Topic {
		case d.changelog:
			d.changelogReported[tp.Partition]++
		case d.output:
			d.outputReported[tp.Partition]++
		}
		if tp.Error != nil {
			if d.err == nil {
				d.err = fmt.Errorf("deliver to %s[%d]: %w", *tp.Topic, tp.Partition, tp.Error)
			}
		} else if *tp.Topic == d.changelog {
			off := int64(tp.Offset)
			if sp := d.delivered[tp.Partition]; sp == nil {
				d.delivered[tp.Partition] = &changelogSpan{first: off, last: off, n: 1}
			} else {
				sp.first, sp.last, sp.n = min(sp.first, off), max(sp.last, off), sp.n+1
			}
		} else if d.trackOffsets[*tp.Topic] {
			k := topicPartition{*tp.Topic, tp.Partition}
			if last, ok := d.lastOffsets[k]; !ok || int64(tp.Offset) > last {
				d.lastOffsets[k] = int64(tp.Offset)
			}
		}
		d.mu.Unlock()
		d.pending.Add(-1)
		select {
		case d.changed <- struct{}{}:
		default:
		}
	}
}

// Add counts a send about to be made; undo it if the send fails.
func (d *Tracker) Add(n int) { d.pending.Add(int64(n)) }

// SentInTxn notes a changelog record sent to partition p inside the open
// transaction, whose end will write a marker to p.
func (d *Tracker) SentInTxn(p int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inTxn[p] = true
}

// TxnEnded notes that the open transaction ended (committed or aborted):
// each changelog partition it wrote to got its marker.
func (d *Tracker) TxnEnded() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.inTxn {
		d.markers[p]++
	}
	clear(d.inTxn)
}

// Wait waits until every send is reported or ctx ends, and returns the
// first delivery failure. The producer sends on its own (linger.ms); each
// report wakes the wait.
func (d *Tracker) Wait(ctx context.Context, beat func()) error {
	return d.waitUntil(ctx, beat,
		func() bool { return d.pending.Load() == 0 },
		func() string { return fmt.Sprintf("%d deliveries", d.pending.Load()) })
}

// WaitMark waits until every send up to mark is reported or ctx ends, and
// returns the first delivery failure (of any send).
func (d *Tracker) WaitMark(ctx context.Context, beat func(), mark Mark) error {
	return d.waitUntil(ctx, beat,
		func() bool {
			if d.changelogReported[mark.Partition] < mark.Changelog {
				return false
			}
			for q, n := range mark.Output {
				if d.outputReported[int32(q)] < n {
					return false
				}
			}
			return true
		},
		func() string { return fmt.Sprintf("the deliveries of task %d", mark.Partition) })
}

// waitUntil waits until done (called under the lock) holds, a delivery
// fails or ctx ends; what names what was awaited.
func (d *Tracker) waitUntil(ctx context.Context, beat func(), done func() bool, what func() string) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		d.mu.Lock()
		ok, err := done(), d.err
		d.mu.Unlock()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what(), ctx.Err())
		case <-d.changed:
		case <-tick.C:
			beat()
		}
	}
}

// LastChangelogOffset is the offset of the last changelog record delivered
// to partition p in this session, and whether there was one.
func (d *Tracker) LastChangelogOffset(p int32) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sp := d.delivered[p]; sp != nil {
		return sp.last, true
	}
	return 0, false
}

// LastOffset is the offset of the last record delivered to partition p
// of topic (one of New's trackOffsets) since the producer started, and whether there
// was one.
func (d *Tracker) LastOffset(topic string, p int32) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	off, ok := d.lastOffsets[topicPartition{topic, p}]
	return off, ok
}

// ResetChangelog starts the account of a changelog partition over, for a
// task that starts (again) in this session; none of its sends may be in
// flight.
func (d *Tracker) ResetChangelog(p int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.delivered, p)
	delete(d.markers, p)
}

// ForeignChangelogRecords is an error unless the changelog records this
// member delivered to partition p since its task started lie one after
// the other from base, the end of the changelog its restore reached,
// with only the markers of its own ended transactions among them: then
// no one else wrote to the partition meanwhile, and a checkpoint at the
// last of them is true (the store holds every record up to it). Another
// writer's records among them (a previous owner's late sends landing
// after the task restored, or a next owner's counts while this member,
// cut off, was expelled without knowing it, or under exactly_once_v2 a
// member the broker failed to fence) are in no store of this member's:
// a checkpoint past them would have the next restore skip them for good,
// and the other writer's counts would be lost or counted twice. The
// check runs before the transaction's own marker is written.
func (d *Tracker) ForeignChangelogRecords(p int32, base int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	sp := d.delivered[p]
	if sp == nil || (sp.first == base && sp.last-sp.first+1 == sp.n+d.markers[p]) {
		return nil
	}
	return &ForeignWrite{Partition: p, Records: sp.n, Markers: d.markers[p], Base: base, First: sp.first, Last: sp.last}
}

// AcceptMarkers counts n markers another producer wrote among this
// member's records in changelog partition p as the member's own: they
// hold no count (the processor's foreignMarkersOnly).
func (d *Tracker) AcceptMarkers(p int32, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.markers[p] += n
}

// ForeignWrite is what foreignChangelogRecords found: offsets in a task's
// changelog span that are neither this member's records nor its markers.
type ForeignWrite struct {
	Partition         int32
	Records, Markers  int64 // this member's
	Base, First, Last int64
}

func (e *ForeignWrite) Error() string {
	return fmt.Sprintf("changelog partition %d holds records of another writer among this member's: "+
		"its %d records and %d transaction markers since offset %d lie between offsets %d and %d; the task restores them",
		e.Partition, e.Records, e.Markers, e.Base, e.First, e.Last)
}

// Foreign is how many offsets from base to last are not this member's.
func (e *ForeignWrite) Foreign() int64 { return e.Last - e.Base + 1 - e.Records - e.Markers }

// Close waits for the reader to end; call it after the producer is
// closed.
func (d *Tracker) Close() { <-d.done }
