package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// startMembers starts n members (abacus-0..) bound to 127.0.0.1.. on one
// port, all at once, and waits until every one is ready.
func startMembers(t *testing.T, brokers string, n int, env map[string]string) []*testkit.Instance {
	t.Helper()
	port := testkit.FreePort(t)
	all := map[string]string{"ABACUS_PEER_URL_TEMPLATE": fmt.Sprintf("http://127.0.0.{{add .Ordinal 1}}:%d", port)}
	for k, v := range env {
		all[k] = v
	}
	var out []*testkit.Instance
	for i := range n {
		out = append(out, testkit.StartInstance(t, testkit.InstanceConfig{
			Name: fmt.Sprintf("abacus-%d", i), Brokers: brokers, Host: fmt.Sprintf("127.0.0.%d", i+1), Port: port, Env: all,
		}))
	}
	for _, in := range out {
		in.WaitReady(2 * time.Minute)
	}
	return out
}

// noSessionFailures fails the test if a member's log shows a failed session
// or the ERROR state.
func noSessionFailures(t *testing.T, pods []*testkit.Instance) {
	t.Helper()
	for _, in := range pods {
		log := in.Log()
		for _, bad := range []string{"session failed", `"state":"ERROR"`, "state=ERROR"} {
			if i := strings.Index(log, bad); i >= 0 {
				t.Errorf("%s logged %q: %s", in.Name, bad, log[max(0, i-400):min(len(log), i+200)])
			}
		}
	}
}

func TestThreeMembersStartThenCountExactlyAtLeastOnce(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := startMembers(t, b.Addr(), 3, steady(map[string]string{"ABACUS_PARTITIONS": "6"}))
	w := skewed(7, 30_000, 2_500)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, pods, w.truth, false)
	noSessionFailures(t, pods)
}

// topicPartitions reads every topic's partition count from the broker.
func topicPartitions(t *testing.T, brokers string) map[string]int {
	t.Helper()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": brokers, "allow.auto.create.topics": false})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	md, err := admin.GetMetadata(nil, true, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for name, tm := range md.Topics {
		out[name] = len(tm.Partitions)
	}
	return out
}

// Five members started at the same moment on a fresh broker that
// auto-creates topics with 3 partitions all become ready, and every topic
// has ABACUS_PARTITIONS (6): no client of abacus lets the broker
// auto-create a topic.
func TestParallelFirstStartCreatesEveryTopicWithItsPartitions(t *testing.T) {
	for round := range 10 {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			b := testkit.StartBroker(t, 3)
			pods := startMembers(t, b.Addr(), 5, map[string]string{"ABACUS_PARTITIONS": "6"})
			got := topicPartitions(t, b.Addr())
			for _, topic := range []string{input, output, changelog, dlq} {
				if got[topic] != 6 {
					t.Errorf("topic %s has %d partitions, want 6 (all: %v)", topic, got[topic], got)
				}
			}
			noSessionFailures(t, pods)
			for _, in := range pods {
				in.Kill()
			}
		})
	}
}
