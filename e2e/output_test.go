package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Each output record sits in the partition the producers' own partitioner
// gives its key (librdkafka's, the one kcat and the Java client use), also
// when the output topic has another partition count than the input: under
// at_least_once abacus places output records itself, so that it knows when
// each task's records are delivered.
func TestOutputPartitionedLikeTheProducersPartitioner(t *testing.T) {
	for _, tc := range []struct{ setting, librdkafka string }{
		{"murmur2", "murmur2_random"},
		{"crc32", "consistent_random"},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			b := testkit.StartBroker(t, 4)
			createTopic(t, b.Addr(), output, 3)
			createTopic(t, b.Addr(), "reference", 3)
			w := skewed(7, 20_000, 2_000)
			testkit.Produce(t, b.Addr(), input, tc.librdkafka, w.records)
			in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
				Env: steady(map[string]string{"ABACUS_PARTITIONER": tc.setting})})
			in.WaitReady(time.Minute)
			waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w.truth, false)

			// Where librdkafka itself puts each key in a topic of three.
			var keys []testkit.Record
			for k := range w.truth {
				keys = append(keys, testkit.Record{Key: []byte(k), Value: []byte("x")})
			}
			testkit.Produce(t, b.Addr(), "reference", tc.librdkafka, keys)
			want := map[string]int32{}
			for _, m := range testkit.Messages(t, b.Addr(), "reference") {
				want[string(m.Key)] = m.TopicPartition.Partition
			}
			if len(want) != len(w.truth) {
				t.Fatalf("reference topic holds %d keys, want %d", len(want), len(w.truth))
			}
			got := testkit.Messages(t, b.Addr(), output)
			if len(got) == 0 {
				t.Fatal("output topic is empty")
			}
			wrong := 0
			for _, m := range got {
				if p, ok := want[string(m.Key)]; !ok || p != m.TopicPartition.Partition {
					if wrong++; wrong <= 5 {
						t.Errorf("output record of %q in partition %d, librdkafka's %s puts it in %d", m.Key, m.TopicPartition.Partition, tc.librdkafka, p)
					}
				}
			}
			if wrong > 0 {
				t.Errorf("%d of %d output records in another partition than librdkafka's", wrong, len(got))
			}
		})
	}
}

// createTopic creates topic with n partitions before anything auto-creates it.
func createTopic(t *testing.T, brokers, topic string, n int) {
	t.Helper()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": brokers, "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: n, ReplicationFactor: 1}})
	if err == nil && res[0].Error.Code() != kafka.ErrNoError {
		err = fmt.Errorf("%v", res[0].Error)
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}
