package broker

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// newFixedCluster starts a one-broker kfake with the group workarounds
// broker.Start installs, in its order: the session expiry (unless
// KFAKE_SESSION_EXPIRY=0) and the join holds with the rules given
// (KFAKE_JOIN_HOLD=0: none, to show kfake alone); without the test guard
// of groupguard_test.go. Its minimum session timeout is lowered so the
// tests run in seconds; the workarounds log into the test's output.
func newFixedCluster(t *testing.T, rules joinRules) (*kfake.Cluster, *joinHold, *sessionExpiry, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close) // runs last
	testStart = time.Now()
	addr := c.ListenAddrs()[0]
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	var s *sessionExpiry
	if os.Getenv("KFAKE_SESSION_EXPIRY") != "0" {
		if s, err = expireSessions(c, addr, log, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.stop)
	}
	if os.Getenv("KFAKE_STATIC_REJOIN") != "0" {
		rejoinStatically(c, log)
	}
	var h *joinHold
	if os.Getenv("KFAKE_JOIN_HOLD") != "0" {
		h = holdJoins(c, log, rules)
		t.Cleanup(h.stop)
	}
	return c, h, s, addr
}

// slowLeaderRebalance makes the leader rejoin and sync 1 s after its
// JoinGroup is answered, and returns once both followers' SyncGroups have
// reached the broker, where they wait for the leader's.
func slowLeaderRebalance(t *testing.T, c *kfake.Cluster, leader *member) {
	t.Helper()
	followerSyncs := make(chan struct{}, 8)
	c.ControlKey(int16(kmsg.SyncGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if len(kreq.(*kmsg.SyncGroupRequest).GroupAssignment) == 0 {
			followerSyncs <- struct{}{}
		}
		c.KeepControl()
		return nil, nil, false
	})
	leader.mu.Lock()
	leader.afterJoin = func(m *member, _ *kmsg.JoinGroupResponse) bool {
		m.logf("slow leader: syncs in 1s")
		time.Sleep(time.Second)
		return true
	}
	leader.mu.Unlock()
	leader.rejoin()
	for range 2 {
		select {
		case <-followerSyncs:
		case <-time.After(5 * time.Second):
			t.Fatal("the followers did not send SyncGroup")
		}
	}
}

// formGroupWith is formGroup with the members' rebalance timeout set.
func formGroupWith(t *testing.T, addr string, rebal time.Duration, names ...string) []*member {
	var ms []*member
	for _, n := range names {
		m := newMember(t, addr, n, time.Minute)
		m.rebal = rebal
		ms = append(ms, m.start())
		mustStable(t, addr, ms...)
	}
	return ms
}

// The livelock of kfake's classic groups: its count of joined members is
// one short (a static member's new consumer replaced the old one while it
// waited in SyncGroup, bug A of kfake_group_test.go), so
// only kfake's rebalance timer can end the rebalance; and the timer is
// re-armed by every JoinGroup. Three members whose JoinGroups time out
// (rebalance timeout + 3 s) and are sent again, 2 s apart, leave it at most
// 3 s without a join, less than the 4 s rebalance timeout: on bare kfake the
// group never completes. With the join deadline, the JoinGroups that come
// more than one rebalance timeout after the rebalance began wait until
// kfake's timer completes it, and the next rebalance counts right.
// Kafka would complete as soon as the three had joined. The deadline rule
// runs alone here: the static-replacement rule would keep this count
// right (the next test); the deadline bounds the ways in that rule does
// not close (a follower parked in SyncGroup outliving its session).
func TestJoinDeadlineEndsRebalanceThatCountsOneShort(t *testing.T) {
	const rebal = 4 * time.Second
	c, d, _, addr := newFixedCluster(t, joinRules{deadline: true})
	ms := formGroupWith(t, addr, rebal, "abacus-0", "abacus-1", "abacus-2")
	leader, b, c0 := ms[0], ms[1], ms[2]

	slowLeaderRebalance(t, c, leader)

	// abacus-2's new consumer joins while the old one waits in sync: the
	// count is one short. Then abacus-1 and abacus-0 are replaced too, 2 s
	// apart, so that the three JoinGroups are staggered.
	c0.logf("session ends: consumer closed, a new one joins")
	c0.kill()
	c2 := newMember(t, addr, "abacus-2", time.Minute)
	c2.rebal = rebal
	c2.start()
	b.kill()
	leader.kill()
	time.Sleep(2 * time.Second) // the schedule, not a synchronisation
	b2 := newMember(t, addr, "abacus-1", time.Minute)
	b2.rebal = rebal
	b2.start()
	time.Sleep(2 * time.Second)
	l2 := newMember(t, addr, "abacus-0", time.Minute)
	l2.rebal = rebal
	l2.start()

	// The deadline: the rebalance began at most 4 s ago and ends by
	// kfake's timer at most 4 s after the last join it let through; then
	// one more rebalance of a second or so.
	if _, err := waitStable(t, addr, 2*rebal+3*time.Second, c2, b2, l2); err != nil {
		t.Fatalf("the group never completed its rebalance (kfake's livelock): %v", err)
	}
	if d != nil && d.heldJoins() == 0 {
		t.Errorf("the group completed without a JoinGroup held: the test did not make the livelock")
	}
}

// A rebalance that completes within its deadline holds no JoinGroup and
// takes no longer than Kafka's.
func TestJoinDeadlineLeavesTimelyRebalancesAlone(t *testing.T) {
	_, d, _, addr := newFixedCluster(t, joinRules{deadline: true})
	ms := formGroupWith(t, addr, 4*time.Second, "abacus-0", "abacus-1", "abacus-2")
	ms[0].rejoin()
	expectRebalance(t, addr, 3*time.Second, "the leader rejoins", ms...)
	if d != nil && d.heldJoins() != 0 {
		t.Errorf("%d JoinGroups held in rebalances that met their deadline", d.heldJoins())
	}
}

// Bug A of kfake_group_test.go with the static-replacement rule: a static
// member's new consumer joins while its old member waits in SyncGroup for
// a slow leader. Held until the leader's SyncGroup is answered, it then
// replaces the old member in a Stable group, and kfake's count stays
// right: stable again within a second or two, as with Kafka. On bare
// kfake (KFAKE_JOIN_HOLD=0) the count goes one short and the rebalance
// waits for the 20 s rebalance timeout.
func TestJoinHoldStaticRejoinWhileOldWaitsInSync(t *testing.T) {
	c, h, _, addr := newFixedCluster(t, joinRules{afterSync: true})
	ms := formGroupWith(t, addr, 20*time.Second, "abacus-0", "abacus-1", "abacus-2")
	leader, b, c0 := ms[0], ms[1], ms[2]

	slowLeaderRebalance(t, c, leader)
	c0.logf("session ends: consumer closed, a new one joins")
	c0.kill()
	c2 := newMember(t, addr, "abacus-2", time.Minute)
	c2.rebal = 20 * time.Second
	c2.start()

	expectRebalance(t, addr, 3*time.Second, "static rejoin while the old member waits in sync", leader, b, c2)
	if h != nil && h.heldJoins() != 1 {
		t.Errorf("JoinGroups held: %d, want 1 (the new consumer's)", h.heldJoins())
	}
}
