package testkit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/broker"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// StartBroker runs a kfake broker on a free loopback port for the test.
func StartBroker(t testing.TB, partitions int) *broker.Broker {
	t.Helper()
	return StartBrokerAt(t, "127.0.0.1:0", partitions, "")
}

// StartBrokerAt runs a kfake broker on addr, keeping its log in dataDir if set.
func StartBrokerAt(t testing.TB, addr string, partitions int, dataDir string) *broker.Broker {
	t.Helper()
	var b *broker.Broker
	var err error
	// A port just freed by a previous broker may take a moment to be free.
	Eventually(t, 10*time.Second, func() error {
		b, err = broker.Start(broker.Config{Addr: addr, Partitions: partitions, DataDir: dataDir, Logger: brokerLogger(t)})
		return err
	})
	t.Cleanup(b.Close)
	return b
}

// brokerLogger logs what the broker says (its workarounds of kfake's
// group bugs acting) into the test's output.
func brokerLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Record is one input record; a nil Key is a null key. A zero Timestamp
// leaves the record's timestamp to the producer (the time of the send).
type Record struct {
	Key       []byte
	Value     []byte
	Timestamp time.Time
}

// Produce writes records to topic with the real client, placing keys with
// partitioner ("murmur2_random" as Java clients, or "consistent_random" as
// kcat), and waits until every one is acknowledged.
func Produce(t testing.TB, brokers, topic, partitioner string, records []Record) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "partitioner": partitioner, "linger.ms": 5,
		"enable.idempotence": true, "queue.buffering.max.messages": 1000000,
		"log_level": 3, "enable.metrics.push": false,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	done := make(chan kafka.Event, 1024)
	failed := make(chan error, 1)
	go func() {
		for range records {
			m := (<-done).(*kafka.Message)
			if m.TopicPartition.Error != nil {
				select {
				case failed <- m.TopicPartition.Error:
				default:
				}
			}
		}
		close(failed)
	}()
	for _, r := range records {
		for {
			err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp}, done)
			if err == nil {
				break
			}
			if kerr, ok := err.(kafka.Error); ok && kerr.Code() == kafka.ErrQueueFull {
				p.Flush(10)
				continue
			}
			t.Fatalf("produce: %v", err)
		}
	}
	if err := <-failed; err != nil {
		t.Fatalf("delivery failed: %v", err)
	}
}

// LastValues reads topic from the start to its current end and returns the
// last value per key and the number of records read. isolation is
// "read_committed" or "read_uncommitted".
func LastValues(t testing.TB, brokers, topic, isolation string) (map[string]string, int) {
	t.Helper()
	last := map[string]string{}
	n := 0
	ReadTopic(t, brokers, topic, isolation, func(m *kafka.Message) {
		last[string(m.Key)] = string(m.Value)
		n++
	})
	return last, n
}

// ReadTopic hands every record of topic, partition by partition in offset
// order, to fn, up to the partitions' ends when it starts.
func ReadTopic(t testing.TB, brokers, topic, isolation string, fn func(*kafka.Message)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "group.id": "testkit-reader", "enable.auto.commit": false,
		"enable.partition.eof": true, "isolation.level": isolation, "log_level": 3,
		"enable.metrics.push": false, "fetch.queue.backoff.ms": 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var tps []kafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		low, high, err := c.QueryWatermarkOffsets(topic, p.ID, 10000)
		if err != nil {
			t.Fatal(err)
		}
		if high > low {
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	if len(tps) == 0 {
		return
	}
	if err := c.Assign(tps); err != nil {
		t.Fatal(err)
	}
	open := len(tps)
	for open > 0 {
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %v", topic, ctx.Err())
		}
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			fn(e)
		case kafka.PartitionEOF:
			open--
		case kafka.Error:
			if e.IsFatal() {
				t.Fatal(e)
			}
		}
	}
}

// Messages reads every record of topic, with its headers, partition by
// partition in offset order (read_committed).
func Messages(t testing.TB, brokers, topic string) []*kafka.Message {
	t.Helper()
	var out []*kafka.Message
	ReadTopic(t, brokers, topic, "read_committed", func(m *kafka.Message) { out = append(out, m) })
	return out
}

// Eventually calls cond until it returns nil or the deadline passes, then
// fails the test with cond's last error.
func Eventually(t testing.TB, within time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	wait := 20 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", within, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 500*time.Millisecond)
	}
}

// Errorf is fmt.Errorf, for conditions.
var Errorf = fmt.Errorf

// CommittedRecords is the sum of group's committed offsets on topic (partitions
// without a committed offset count 0), which is the records committed.
func CommittedRecords(admin *kafka.AdminClient, group, topic string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := admin.ListConsumerGroupOffsets(ctx,
		[]kafka.ConsumerGroupTopicPartitions{{Group: group}}, kafka.SetAdminRequireStableOffsets(false))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, tp := range g.Partitions {
			if tp.Error != nil {
				return 0, tp.Error
			}
			if *tp.Topic == topic && tp.Offset >= 0 {
				n += int64(tp.Offset)
			}
		}
	}
	return n, nil
}
