package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// A member whose process stops while its JoinGroup waits may get
// no session timer from kfake, which arms one only when its answer is
// handed to the connection, and hands it over or not at random once the
// connection is closed (a select between the closed connection and a
// buffered channel). Without one, the rebalance completes with the
// stopped member, the leader assigns it partitions, and the group stays
// Stable with it for good. Kafka expires it one session timeout after it
// joined; the broker's session expiry makes it leave 1.5 session timeouts
// after its last request, and the live members rebalance without it.
// Five rounds, so that without the expiry (KFAKE_SESSION_EXPIRY=0) about
// 31 runs in 32 fail.
func TestSessionExpiryRemovesMemberStoppedWhileJoining(t *testing.T) {
	c, _, s, addr := newFixedCluster(t, allJoinRules)
	const session = 2 * time.Second
	var ms []*member
	for _, n := range []string{"abacus-0", "abacus-1"} {
		m := newMember(t, addr, n, session)
		m.rebal = 4 * time.Second
		ms = append(ms, m.start())
		mustStable(t, addr, ms...)
	}
	arrived := make(chan string, 8)
	c.ControlKey(int16(kmsg.JoinGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if r := kreq.(*kmsg.JoinGroupRequest); r.InstanceID != nil && r.MemberID == "" {
			arrived <- *r.InstanceID
		}
		c.KeepControl()
		return nil, nil, false
	})
	for round := range 5 {
		name := fmt.Sprintf("late-%d", round)
		stopped := newMember(t, addr, name, session)
		stopped.rebal = 4 * time.Second
		stopped.start()
		for got := ""; got != name; got = <-arrived {
		}
		stopped.logf("stopped while its JoinGroup waits")
		stopped.kill()
		// At worst its last request, the JoinGroup, puts it out at 1.5
		// session timeouts (3 s), then a rebalance of the two live members.
		expectRebalance(t, addr, 3*session, name+" stopped while joining", ms...)
	}
	if s != nil {
		t.Logf("members the session expiry made to leave: %d of 5 (kfake timed the others)", s.expiredMembers())
	}
}

// Live members are never expired, however long the group stays stable.
func TestSessionExpiryLeavesLiveMembersAlone(t *testing.T) {
	_, _, s, addr := newFixedCluster(t, allJoinRules)
	const session = time.Second
	var ms []*member
	for _, n := range []string{"abacus-0", "abacus-1", "abacus-2"} {
		m := newMember(t, addr, n, session)
		m.hbEvery = session / 3 // librdkafka's heartbeat.interval.ms is a third or less
		ms = append(ms, m.start())
	}
	mustStable(t, addr, ms...)
	ids := map[*member]string{}
	for _, m := range ms {
		ids[m], _ = m.stable()
	}
	deadline := time.Now().Add(5 * session)
	for time.Now().Before(deadline) {
		for _, m := range ms {
			if id, gen := m.stable(); id != ids[m] || gen < 0 {
				t.Fatalf("%s left the stable group (member %q, generation %d): a live member was expired", m.name, id, gen)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s != nil && s.expiredMembers() != 0 {
		t.Errorf("members expired: %d, want 0", s.expiredMembers())
	}
}

// kfake expires a member whose JoinGroup waits at its session timeout and
// never answers the JoinGroup (TestKfakeGroupJoinWaitersExpire). Here one
// member rejoins two session timeouts after the others (a slow revocation,
// heartbeating meanwhile): the broker heartbeats for the two waiting in
// JoinGroup, so the rebalance completes with all three, as on Kafka.
// Without it (KFAKE_SESSION_EXPIRY=0) the two waiting are expired and
// hang until their request times out.
func TestSessionExpiryKeepsMemberWaitingInJoinGroup(t *testing.T) {
	_, _, _, addr := newFixedCluster(t, allJoinRules)
	rejoinSlowly(t, addr)
}

// The heartbeats for members waiting in JoinGroup last only as long as
// the rebalance that member joined: a member that joined, then stopped
// (a pod stopped right after it started) is expired at its session
// timeout when the next rebalance waits for it, as on Kafka.
func TestSessionExpiryKeepsNoStoppedMemberAlive(t *testing.T) {
	_, _, _, addr := newFixedCluster(t, allJoinRules)
	const session = 2 * time.Second
	ms := formGroup(t, addr, session, "abacus-0", "abacus-1", "abacus-2")
	ms[2].kill()
	ms[0].rejoin()
	expectRebalance(t, addr, 2*session+3*time.Second, "a stopped member is expired", ms[0], ms[1])
}
