package processor

import (
	"context"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A task's own changelog records since it started must lie one after the
// other from the end its restore reached; another writer's record before,
// among or after them (up to the last) says the store would miss it.
func TestForeignChangelogRecords(t *testing.T) {
	events := make(chan kafka.Event)
	d := newDeliveries("cl", "out", events, func(kafka.Error) {})
	defer func() { close(events); d.close() }()
	topic := "cl"
	deliver := func(p int32, offsets ...int64) {
		for _, off := range offsets {
			d.add(1)
			events <- &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.Offset(off)}}
		}
		if err := d.wait(context.Background(), func() {}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(p int32, base int64, wantErr bool) {
		t.Helper()
		if err := d.foreignChangelogRecords(p, base); (err != nil) != wantErr {
			t.Errorf("partition %d from %d: error %v, want an error: %v", p, base, err, wantErr)
		}
	}
	check(0, 10, false) // nothing delivered yet
	deliver(0, 10, 11, 12)
	check(0, 10, false)
	deliver(0, 14) // 13 is someone else's
	check(0, 10, true)
	deliver(1, 21, 22) // 20 is someone else's
	check(1, 20, true)
	d.resetChangelog(1) // the task starts again, restored to 23
	deliver(1, 23, 24)
	check(1, 23, false)
}
