package broker

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A static member restarted within its session timeout (a new consumer:
// no member id, metadata that owns nothing) takes its place in the Stable
// group without a rebalance, as on Kafka: the generation stays, and so do
// the other members. Without the rule (KFAKE_STATIC_REJOIN=0) kfake
// rebalances the group, because the new metadata is not the old.
func TestStaticRejoinKeepsTheGroupStable(t *testing.T) {
	_, _, _, addr := newFixedCluster(t, allJoinRules)
	const session = 2 * time.Second
	ms := formGroup(t, addr, session, "abacus-0", "abacus-1", "abacus-2")
	_, gen := ms[1].stable()
	ms[2].kill()
	restarted := newMember(t, addr, "abacus-2", session)
	md := kmsg.NewConsumerMemberMetadata()
	md.Version = 1
	md.Topics = []string{"input"}
	md.UserData = []byte("a new consumer's own metadata")
	restarted.meta = md.AppendTo(nil)
	restarted.start()
	mustStable(t, addr, ms[0], ms[1], restarted)
	if _, now := restarted.stable(); now != gen {
		t.Errorf("the group went from generation %d to %d: the restart rebalanced it", gen, now)
	}
}
