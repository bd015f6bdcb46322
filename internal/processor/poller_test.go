package processor

import (
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A rebalance handed to the loop waits for the loop's answer, and the loop
// may seek before it gets there (a record of a restoring task ahead of the
// rebalance, a commit failing in the callback that rewinds): the seek must
// not wait for the rebalance. Seen as a member that never stopped after
// SIGTERM in the rolling chaos test: its final commit failed during a
// rebalance and the rewind waited on the poller, which waited on the loop.
func TestPollerSeekWhileRebalanceWaits(t *testing.T) {
	p := newPoller(nil)
	answered := make(chan error, 1)
	go func() {
		// As run does: the lock is held across Poll, inside which
		// librdkafka calls the rebalance callback.
		p.mu.Lock()
		defer p.mu.Unlock()
		answered <- p.handOver(kafka.RevokedPartitions{})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(p.items) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the rebalance was not handed over")
		}
		time.Sleep(time.Millisecond)
	}
	sought := make(chan error, 1)
	go func() { sought <- p.reposition(3, func() error { return nil }) }()
	select {
	case err := <-sought:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a seek waited for the rebalance the loop has not reached: deadlock")
	}
	it := <-p.items
	if it.rebalance == nil {
		t.Fatalf("handed over %+v, want the rebalance", it)
	}
	it.reply <- nil
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("rebalance callback returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the rebalance callback did not return after the loop's answer")
	}
	if p.gens[3] != 1 {
		t.Errorf("generation of partition 3 = %d after one seek, want 1", p.gens[3])
	}
}

// Records polled before a seek of their partition are stale; others not.
func TestPollerDropsRecordsPolledBeforeASeek(t *testing.T) {
	p := newPoller(nil)
	topic := "input-topic"
	record := func(part int32) polled {
		return polled{msg: &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: part}}, gen: p.gens[part]}
	}
	before, otherBefore := record(2), record(5)
	if err := p.reposition(2, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	after := record(2)
	for _, tc := range []struct {
		name  string
		r     polled
		stale bool
	}{
		{"partition 2, polled before its seek", before, true},
		{"partition 2, polled after its seek", after, false},
		{"partition 5, no seek", otherBefore, false},
	} {
		if got := p.stale(tc.r); got != tc.stale {
			t.Errorf("%s: stale = %v, want %v", tc.name, got, tc.stale)
		}
	}
}
