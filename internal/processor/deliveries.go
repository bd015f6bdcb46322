package processor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// deliveries reads the producer's events (its delivery reports among
// them) in its own goroutine, so the producer never waits on them, and
// keeps what a commit needs: how many sends are outstanding, the first
// failure, and the offset of the last changelog record delivered per
// partition. Reports come on the producer's own channel rather than one
// passed with each send: confluent-kafka-go keeps a per-send channel in a
// locked map until its report, a cost on every record.
type deliveries struct {
	events    <-chan kafka.Event
	onError   func(kafka.Error)
	changelog string
	done      chan struct{}

	// changed is signalled (without blocking) after every report.
	changed chan struct{}

	mu           sync.Mutex
	pending      int
	err          error
	changelogEnd map[int32]int64
}

// newDeliveries reads events until the channel closes (the producer's
// Close closes it); onError sees the client's error events.
func newDeliveries(changelog string, events <-chan kafka.Event, onError func(kafka.Error)) *deliveries {
	d := &deliveries{
		events:       events,
		onError:      onError,
		changelog:    changelog,
		done:         make(chan struct{}),
		changed:      make(chan struct{}, 1),
		changelogEnd: map[int32]int64{},
	}
	go d.run()
	return d
}

func (d *deliveries) run() {
	defer close(d.done)
	for ev := range d.events {
		m, ok := ev.(*kafka.Message)
		if !ok {
			if e, ok := ev.(kafka.Error); ok {
				d.onError(e)
			}
			continue
		}
		tp := m.TopicPartition
		d.mu.Lock()
		d.pending--
		if tp.Error != nil {
			if d.err == nil {
				d.err = fmt.Errorf("deliver to %s[%d]: %w", *tp.Topic, tp.Partition, tp.Error)
			}
		} else if *tp.Topic == d.changelog {
			if end, ok := d.changelogEnd[tp.Partition]; !ok || int64(tp.Offset) > end {
				d.changelogEnd[tp.Partition] = int64(tp.Offset)
			}
		}
		d.mu.Unlock()
		select {
		case d.changed <- struct{}{}:
		default:
		}
	}
}

// add counts a send about to be made; undo it if the send fails.
func (d *deliveries) add(n int) {
	d.mu.Lock()
	d.pending += n
	d.mu.Unlock()
}

// wait waits until every send is reported or ctx ends, and returns the
// first delivery failure. The producer sends on its own (linger.ms); each
// report wakes the wait.
func (d *deliveries) wait(ctx context.Context, beat func()) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		d.mu.Lock()
		pending, err := d.pending, d.err
		d.mu.Unlock()
		if err != nil {
			return err
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d deliveries: %w", pending, ctx.Err())
		case <-d.changed:
		case <-tick.C:
			beat()
		}
	}
}

// lastChangelogOffset is the offset of the last changelog record delivered
// to partition p in this session, and whether there was one.
func (d *deliveries) lastChangelogOffset(p int32) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	off, ok := d.changelogEnd[p]
	return off, ok
}

// close waits for the reader to end; call it after the producer is
// closed.
func (d *deliveries) close() { <-d.done }
