package broker_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/broker"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// These tests pin down how kfake's log compaction treats transactions
// (docs/reliability.md, "The embedded broker (kfake)"). A changelog is
// compacted and written in transactions, and a restore reads it
// read_committed, so what compaction does to open and aborted
// transactions decides what a restore sees.

const changelogTopic = "compaction-changelog"

func compactedTopic(t *testing.T) *broker.Broker {
	t.Helper()
	b := testkit.StartBroker(t, 1)
	if err := b.Cluster().CreateTopic(changelogTopic, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	return b
}

// txnProducer is a transactional producer with its transaction begun.
func txnProducer(t *testing.T, brokers, txnID string) *kafka.Producer {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": brokers, "transactional.id": txnID,
		"log_level": 3, "enable.metrics.push": false, "linger.ms": 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.InitTransactions(ctx); err != nil {
		t.Fatalf("init transactions of %s: %v", txnID, err)
	}
	if err := p.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	return p
}

// write produces one record and waits for the broker to take it.
func write(t *testing.T, p *kafka.Producer, key, value string) {
	t.Helper()
	topic := changelogTopic
	done := make(chan kafka.Event, 1)
	if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0},
		Key: []byte(key), Value: []byte(value)}, done); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		if m := e.(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatalf("produce %s=%s: %v", key, value, m.TopicPartition.Error)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("produce %s=%s: no delivery report", key, value)
	}
}

// writePlain writes one record outside any transaction, as an idempotent
// producer, and waits for the broker to take it.
func writePlain(t *testing.T, brokers, key, value string) {
	t.Helper()
	testkit.Produce(t, brokers, changelogTopic, "murmur2_random", []testkit.Record{{Key: []byte(key), Value: []byte(value)}})
}

func committedView(t *testing.T, brokers string) map[string]string {
	t.Helper()
	got, _ := testkit.LastValues(t, brokers, changelogTopic, "read_committed")
	return got
}

func endTxn(t *testing.T, p *kafka.Producer, commit bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var err error
	if commit {
		err = p.CommitTransaction(ctx)
	} else {
		err = p.AbortTransaction(ctx)
	}
	if err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// TestKfakeCompactionLosesTransactionalRecords pins the kfake bug that the
// embedded broker works around by never compacting. Each case is a sequence
// abacus's members produce on a changelog partition; after kfake's Compact
// a committed record is gone from the read_committed view:
//
//   - compaction walks every batch but the log's last, open transactions
//     included (Kafka's cleaner stops at the last stable offset). An open
//     transaction's records supersede committed ones, and if it aborts the
//     committed value is gone;
//   - an aborted transaction's abort marker is dropped with its records
//     when its producer has no other records left in the cleaned range,
//     but the aborted-transaction index entry stays. A read_committed
//     fetch from before it gets (producer, first offset) and never the
//     abort marker, so the consumer drops every later batch of that
//     producer id, and a member re-initialised under the same
//     transactional id keeps its producer id: its later commits are
//     invisible to a restore, which reads the changelog read_committed.
//
// When a kfake upgrade makes this test fail, the bug is fixed upstream:
// let broker.Start compact again and remove this test.
func TestKfakeCompactionLosesTransactionalRecords(t *testing.T) {
	cases := []struct {
		name         string
		run          func(t *testing.T, b *broker.Broker)
		want, broken map[string]string
	}{{
		name: "open transaction of a re-initialised producer after an aborted one",
		run: func(t *testing.T, b *broker.Broker) {
			writePlain(t, b.Addr(), "other", "1") // keeps the log start below the abort
			old := txnProducer(t, b.Addr(), "member-0")
			write(t, old, "user 1", "52")
			next := txnProducer(t, b.Addr(), "member-0") // fences old, aborts its transaction
			write(t, next, "user 1", "65")
			b.Cluster().Compact()
			endTxn(t, next, true)
		},
		want:   map[string]string{"other": "1", "user 1": "65"},
		broken: map[string]string{"other": "1"},
	}, {
		name: "no transaction open, producer commits after the compaction",
		run: func(t *testing.T, b *broker.Broker) {
			writePlain(t, b.Addr(), "other", "1")
			old := txnProducer(t, b.Addr(), "member-0")
			write(t, old, "user 1", "52")
			next := txnProducer(t, b.Addr(), "member-0")
			writePlain(t, b.Addr(), "other", "2")
			b.Cluster().Compact()
			write(t, next, "user 1", "65")
			endTxn(t, next, true)
		},
		want:   map[string]string{"other": "2", "user 1": "65"},
		broken: map[string]string{"other": "2"},
	}, {
		name: "open transaction that aborts after the compaction",
		run: func(t *testing.T, b *broker.Broker) {
			writePlain(t, b.Addr(), "user 1", "52")
			open := txnProducer(t, b.Addr(), "member-0")
			write(t, open, "user 1", "65")
			writePlain(t, b.Addr(), "other", "1") // the open batch is not the log's last
			b.Cluster().Compact()
			endTxn(t, open, false)
		},
		want:   map[string]string{"other": "1", "user 1": "52"},
		broken: map[string]string{"other": "1"},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := compactedTopic(t)
			tc.run(t, b)
			got := committedView(t, b.Addr())
			switch {
			case maps.Equal(got, tc.want):
				t.Fatalf("kfake's compaction kept %v: the bug is fixed, let broker.Start compact again", got)
			case !maps.Equal(got, tc.broken):
				t.Fatalf("read_committed after compaction = %v, want kfake's known loss %v (or the truth %v)", got, tc.broken, tc.want)
			}
		})
	}
}

// The embedded broker never runs kfake's compaction (see above): its
// compaction timer is ten years.
func TestBrokerNeverCompacts(t *testing.T) {
	b := testkit.StartBroker(t, 1)
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := admin.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceBroker, Name: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	got := res[0].Config["log.cleaner.backoff.ms"].Value
	if got != "315360000000" {
		t.Fatalf("log.cleaner.backoff.ms = %q, want 315360000000 (never)", got)
	}
}
