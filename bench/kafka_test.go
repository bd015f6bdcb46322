package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// kafkaAdmin is an admin client for the broker: topics, watermarks and the
// consumer groups' committed offsets.
type kafkaAdmin struct {
	b     testing.TB
	admin *kafka.AdminClient
}

func newAdmin(b testing.TB, brokers string) *kafkaAdmin {
	b.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "log_level": 3, "enable.metrics.push": false,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(a.Close)
	return &kafkaAdmin{b: b, admin: a}
}

// createTopic creates topic with n partitions and waits until its metadata
// shows them all.
func (a *kafkaAdmin) createTopic(topic string, n int) {
	a.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := a.admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: n, ReplicationFactor: 1}})
	if err != nil {
		a.b.Fatalf("create topic %s: %v", topic, err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			a.b.Fatalf("create topic %s: %v", topic, r.Error)
		}
	}
	testkit.Eventually(a.b, 30*time.Second, func() error {
		md, err := a.admin.GetMetadata(&topic, false, 5000)
		if err != nil {
			return err
		}
		if got := len(md.Topics[topic].Partitions); got != n {
			return fmt.Errorf("topic %s has %d partitions in metadata, want %d", topic, got, n)
		}
		return nil
	})
}

// partitions returns the partition ids of topic.
func (a *kafkaAdmin) partitions(topic string) []int32 {
	a.b.Helper()
	md, err := a.admin.GetMetadata(&topic, false, 10000)
	if err != nil {
		a.b.Fatalf("metadata of %s: %v", topic, err)
	}
	var ids []int32
	for _, p := range md.Topics[topic].Partitions {
		ids = append(ids, p.ID)
	}
	if len(ids) == 0 {
		a.b.Fatalf("topic %s has no partitions", topic)
	}
	return ids
}

// records is the number of offsets in topic (sum of high - low watermarks),
// read from the broker. On a topic without transaction markers or
// compaction it is the number of records.
func (a *kafkaAdmin) records(topic string) int64 {
	low, high := a.offsets(topic, kafka.EarliestOffsetSpec), a.offsets(topic, kafka.LatestOffsetSpec)
	var n int64
	for p, h := range high {
		n += h - low[p]
	}
	return n
}

// offsets lists each partition's earliest or latest offset of topic.
func (a *kafkaAdmin) offsets(topic string, spec kafka.OffsetSpec) map[int32]int64 {
	a.b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := map[kafka.TopicPartition]kafka.OffsetSpec{}
	for _, p := range a.partitions(topic) {
		specs[kafka.TopicPartition{Topic: &topic, Partition: p}] = spec
	}
	res, err := a.admin.ListOffsets(ctx, specs)
	if err != nil {
		a.b.Fatalf("list offsets of %s: %v", topic, err)
	}
	out := map[int32]int64{}
	for tp, info := range res.ResultInfos {
		if info.Error.Code() != kafka.ErrNoError {
			a.b.Fatalf("offset of %s[%d]: %v", topic, tp.Partition, info.Error)
		}
		out[tp.Partition] = int64(info.Offset)
	}
	return out
}

// committed is the sum of group's committed offsets on topic (partitions
// without a committed offset count 0).
func (a *kafkaAdmin) committed(group, topic string) (int64, error) {
	return testkit.CommittedRecords(a.admin, group, topic)
}

// uniformKeys makes n records over k keys ("key-0000042"), every key at
// least once, the rest drawn uniformly; the value is the record's number.
func uniformKeys(seed uint64, n, k int) []testkit.Record {
	r := rand.New(rand.NewPCG(seed, 7))
	out := make([]testkit.Record, n)
	for i := range out {
		key := i
		if i >= k {
			key = r.IntN(k)
		}
		out[i] = testkit.Record{Key: fmt.Appendf(nil, "key-%07d", key), Value: []byte(strconv.Itoa(i))}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
