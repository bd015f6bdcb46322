package e2e

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// orphaningBalancer is the assignor of a group member that only leads:
// the first time an abacus member is in the group, it gets half the input
// partitions and nobody gets the rest; from then on it gets them all. The
// group is then Stable with partitions no member owns, the state a member
// killed between the two phases of a cooperative rebalance leaves behind
// when its replacement takes its place as the same static member.
type orphaningBalancer struct {
	kgo.GroupBalancer // cooperative-sticky: its name and metadata
	partitions        int32

	mu      sync.Mutex
	rounds  int // rounds with an abacus member
	orphans []int32
}

func (b *orphaningBalancer) MemberBalancer(members []kmsg.JoinGroupResponseMember) (kgo.GroupMemberBalancer, map[string]struct{}, error) {
	cb, err := kgo.NewConsumerBalancer(b, members)
	if err != nil {
		return nil, nil, err
	}
	return cb, cb.MemberTopics(), nil
}

func (b *orphaningBalancer) Balance(cb *kgo.ConsumerBalancer, topics map[string]int32) kgo.IntoSyncAssignment {
	plan := cb.NewPlan()
	b.mu.Lock()
	defer b.mu.Unlock()
	cb.EachMember(func(m *kmsg.JoinGroupResponseMember, _ *kmsg.ConsumerMemberMetadata) {
		if m.InstanceID == nil || !strings.HasPrefix(*m.InstanceID, "abacus-") {
			return
		}
		b.rounds++
		var give []int32
		for p := range b.partitions {
			if b.rounds == 1 && p >= b.partitions/2 {
				b.orphans = append(b.orphans, p)
				continue
			}
			give = append(give, p)
		}
		plan.AddPartitions(m, input, give)
	})
	return plan
}

// A group that is Stable while input partitions have no owner is made to
// rebalance by one of its members (discovery's orphan watch; the member
// leaves and joins the group again): the partitions get an owner and
// their keys are counted exactly, under both guarantees.
func TestOrphanedPartitionsAreHandedOut(t *testing.T) {
	for _, guarantee := range []string{"at_least_once", "exactly_once_v2"} {
		t.Run(guarantee, func(t *testing.T) {
			const partitions = 4
			b := testkit.StartBroker(t, partitions)
			w := skewed(61, 4_000, 400)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)

			bal := &orphaningBalancer{GroupBalancer: kgo.CooperativeStickyBalancer(), partitions: partitions}
			leader, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.ConsumerGroup("counts-app"), kgo.ConsumeTopics(input),
				kgo.InstanceID("zz-leader"), kgo.Balancers(bal), kgo.DisableAutoCommit(), kgo.SessionTimeout(6*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(leader.Close)
			// The leader is in the group before abacus joins, so that it
			// leads: the first member of a group is its leader.
			testkit.Eventually(t, 30*time.Second, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				leader.PollFetches(ctx) // joins; the group hands it nothing to fetch
				if _, gen := leader.GroupMetadata(); gen < 0 {
					return errors.New("the leader has not joined")
				}
				return nil
			})

			in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
				Env: map[string]string{"ABACUS_PROCESSING_GUARANTEE": guarantee}})
			in.WaitReady(time.Minute)
			testkit.Eventually(t, 30*time.Second, func() error {
				bal.mu.Lock()
				defer bal.mu.Unlock()
				if len(bal.orphans) == 0 {
					return errors.New("no partition orphaned yet")
				}
				return nil
			})
			orphanedAt := time.Now()
			waitCounts(t, 90*time.Second, []*testkit.Instance{in}, w.truth, false)
			t.Logf("partitions %v orphaned; every key exact %.1f s later", bal.orphans, time.Since(orphanedAt).Seconds())
			if got := metric(t, in, "abacus_group_rejoins_total", `reason="orphaned_partitions"`); got != 1 {
				t.Errorf("abacus_group_rejoins_total{reason=orphaned_partitions} = %v, want 1", got)
			}
			if !strings.Contains(in.Log(), "input partitions have no owner in a stable group") {
				t.Error("the member did not log why it left the group")
			}
			noSessionFailures(t, []*testkit.Instance{in})
		})
	}
}
