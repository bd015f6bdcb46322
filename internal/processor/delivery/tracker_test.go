package delivery

import (
	"context"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A task's own changelog records since it started must lie one after the
// other from the end its restore reached; another writer's record before,
// among or after them (up to the last) says the store would miss it.
func TestForeignChangelogRecords(t *testing.T) {
	d, deliver, check := deliveryScript(t, false)
	check(0, 10, false) // nothing delivered yet
	deliver(0, 10, 11, 12)
	check(0, 10, false)
	deliver(0, 14) // 13 is someone else's
	check(0, 10, true)
	deliver(1, 21, 22) // 20 is someone else's
	check(1, 20, true)
	d.ResetChangelog(1) // the task starts again, restored to 23
	deliver(1, 23, 24)
	check(1, 23, false)
}

// Under exactly_once_v2 each of the member's transactions that wrote to a
// changelog partition leaves a marker after its records: those offsets
// are the member's own, anything more is another writer's.
func TestForeignChangelogRecordsAmongTransactions(t *testing.T) {
	d, deliver, check := deliveryScript(t, true)
	deliver(0, 10, 11)
	deliver(1, 30)
	check(0, 10, false)
	d.TxnEnded()       // markers at 12 and 31
	deliver(0, 13, 14) // the next transaction
	check(0, 10, false)
	d.TxnEnded()   // marker at 15 (and none on 1: not written to)
	deliver(1, 32) // right after its one marker
	check(1, 30, false)
	d.TxnEnded()       // marker at 33
	deliver(0, 17)     // 16 is another writer's
	check(0, 10, true) // (the check runs before the marker of 17's transaction)
	deliver(1, 35)     // 34 is another writer's
	check(1, 30, true)
	d.ResetChangelog(0) // the task starts again, restored to 20
	deliver(0, 20)
	check(0, 20, false)
}

// deliveryScript runs a deliveries reader on changelog "cl", with deliver
// (records sent, in a transaction if inTxn, and reported delivered at
// these offsets) and check (foreignChangelogRecords is an error or not).
func deliveryScript(t *testing.T, inTxn bool) (d *Tracker, deliver func(p int32, offsets ...int64), check func(p int32, base int64, wantErr bool)) {
	events := make(chan kafka.Event)
	d = New("cl", "out", nil, events, func(kafka.Event) {})
	t.Cleanup(func() { close(events); d.Close() })
	topic := "cl"
	deliver = func(p int32, offsets ...int64) {
		t.Helper()
		for _, off := range offsets {
			d.Add(1)
			if inTxn {
				d.SentInTxn(p)
			}
			events <- &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: p, Offset: kafka.Offset(off)}}
		}
		if err := d.Wait(context.Background(), func() {}); err != nil {
			t.Fatal(err)
		}
	}
	check = func(p int32, base int64, wantErr bool) {
		t.Helper()
		if err := d.ForeignChangelogRecords(p, base); (err != nil) != wantErr {
			t.Errorf("partition %d from %d: error %v, want an error: %v", p, base, err, wantErr)
		}
	}
	return d, deliver, check
}
