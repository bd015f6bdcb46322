package broker

// Deterministic reproductions of the classic-group wedges in kfake
// (docs/reliability.md, "The embedded broker (kfake)"), driven with raw
// group requests from members that behave like librdkafka with static
// membership: JoinGroup
// with group.instance.id, SyncGroup, Heartbeat only while stable (none while
// a JoinGroup or SyncGroup is outstanding), a JoinGroup request timeout of
// max.poll.interval.ms + 3 s, a new connection after a request timeout, and
// an empty member id again after UNKNOWN_MEMBER_ID.
//
// Each test asserts what Apache Kafka does. They run with the workaround
// of groupguard_test.go, which describes what kfake would have to do; the
// embedded broker does not install it (installed, it let a member commit
// offsets it should have been fenced from, and long exactly-once chaos
// runs lost counts). KFAKE_GROUP_GUARD=0 runs them on bare kfake, where
// they fail (that is the bug). Knobs:
//
//	KFAKE_GROUP_REBALANCE_MS  the members' rebalance timeout (librdkafka's
//	                          max.poll.interval.ms), 300000 by default
//	KFAKE_GROUP_WAIT          how long to wait for the rebalance before
//	                          failing (default: what Kafka needs + margin);
//	                          set it above the rebalance timeout to measure
//	                          how long the wedge lasts
//
// go test -count=1 -v -run TestKfakeGroup ./internal/broker/

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const testGroup = "wedge"

var testStart time.Time // for the log

func envMs(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
		if n, err := strconv.Atoi(v); err == nil {
			return time.Duration(n) * time.Millisecond
		}
	}
	return def
}

func rebalanceTimeout() time.Duration { return envMs("KFAKE_GROUP_REBALANCE_MS", 300*time.Second) }

func useGuard() bool { return os.Getenv("KFAKE_GROUP_GUARD") != "0" }

// newGroupCluster starts a one-broker kfake with the workaround installed
// (unless KFAKE_GROUP_GUARD=0), its minimum session timeout lowered so the
// tests run in seconds.
func newGroupCluster(t *testing.T) (*kfake.Cluster, string) {
	t.Helper()
	return newGroupClusterCapped(t, maxRebalanceTimeout)
}

// newGroupClusterCapped is newGroupCluster with the guard's cap on the
// rebalance timeout at maxRebalance.
func newGroupClusterCapped(t *testing.T, maxRebalance time.Duration) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	addr := c.ListenAddrs()[0]
	testStart = time.Now()
	if useGuard() {
		stop, err := guardGroups(c, addr, maxRebalance)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		t.Log("kfake group guard installed")
	}
	t.Cleanup(c.Close)
	return c, addr
}

// member is a classic-protocol group member imitating librdkafka with
// static membership.
type member struct {
	t        *testing.T
	name     string
	addr     string
	session  time.Duration
	rebal    time.Duration
	hbEvery  time.Duration
	began    time.Time
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{}
	rejoinCh chan struct{}

	mu        sync.Mutex
	cl        *kgo.Client
	id        string
	gen       int32
	stableGen int32                                       // generation of the last successful sync; -1 while rebalancing
	afterJoin func(*member, *kmsg.JoinGroupResponse) bool // false: the member dies
	// rejoinDelay is how long the member keeps heartbeating after it
	// learned of a rebalance before it rejoins (a slow revocation
	// callback: librdkafka heartbeats in WAIT_*_CALL states).
	rejoinDelay time.Duration
	// meta, if set, is the member's protocol metadata (set before start).
	meta []byte
}

func newMember(t *testing.T, addr, name string, session time.Duration) *member {
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{
		t: t, name: name, addr: addr, session: session, rebal: rebalanceTimeout(),
		hbEvery: 200 * time.Millisecond, began: testStart,
		ctx: ctx, cancel: cancel, done: make(chan struct{}), rejoinCh: make(chan struct{}, 1),
		stableGen: -1,
	}
	m.cl = m.newClient()
	t.Cleanup(m.kill)
	return m
}

func (m *member) newClient() *kgo.Client {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(m.addr),
		kgo.ClientID(m.name),
		kgo.RequestTimeoutOverhead(15*time.Minute), // our own per-request deadlines rule
		kgo.RetryTimeout(time.Hour),
	)
	if err != nil {
		m.t.Fatal(err)
	}
	return cl
}

func (m *member) logf(format string, args ...any) {
	m.t.Logf("%6.2fs %s: %s", time.Since(m.began).Seconds(), m.name, fmt.Sprintf(format, args...))
}

func (m *member) client() *kgo.Client { m.mu.Lock(); defer m.mu.Unlock(); return m.cl }

// reconnect drops the connections (librdkafka disconnects on a request
// timeout): kfake answers a connection's requests in order, so a request it
// never answers blocks the connection for good.
func (m *member) reconnect() {
	m.mu.Lock()
	old := m.cl
	m.cl = m.newClient()
	m.mu.Unlock()
	old.Close()
}

func (m *member) request(timeout time.Duration, req kmsg.Request) (kmsg.Response, error) {
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	resp, err := m.client().Request(ctx, req)
	if err != nil && m.ctx.Err() == nil {
		m.reconnect()
	}
	return resp, err
}

func (m *member) start() *member { go m.run(); return m }

// kill is kill -9: no LeaveGroup, every connection closed.
func (m *member) kill() {
	m.cancel()
	m.client().Close()
}

func (m *member) rejoin() { m.rejoinCh <- struct{}{} }

func (m *member) stable() (string, int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id, m.stableGen
}

func metadata() []byte {
	md := kmsg.NewConsumerMemberMetadata()
	md.Version = 1
	md.Topics = []string{"input"}
	return md.AppendTo(nil)
}

func (m *member) run() {
	defer close(m.done)
	for m.ctx.Err() == nil {
		jreq := kmsg.NewPtrJoinGroupRequest()
		jreq.Version = 5 // what librdkafka 2.x sends
		jreq.Group = testGroup
		jreq.SessionTimeoutMillis = int32(m.session.Milliseconds())
		jreq.RebalanceTimeoutMillis = int32(m.rebal.Milliseconds())
		jreq.MemberID = m.id
		jreq.InstanceID = kmsg.StringPtr(m.name)
		jreq.ProtocolType = "consumer"
		md := m.meta
		if md == nil {
			md = metadata()
		}
		jreq.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "cooperative-sticky", Metadata: md}}
		m.logf("JoinGroup member=%q", m.id)
		sent := time.Now()
		kresp, err := m.request(m.rebal+3*time.Second, jreq)
		if err != nil {
			if m.ctx.Err() == nil {
				m.logf("JoinGroup unanswered after %s: %v", time.Since(sent).Round(time.Millisecond), err)
			}
			continue
		}
		jr := kresp.(*kmsg.JoinGroupResponse)
		if e := kerr.ErrorForCode(jr.ErrorCode); e != nil {
			m.logf("JoinGroup after %s: %v", time.Since(sent).Round(time.Millisecond), e)
			switch e {
			case kerr.UnknownMemberID:
				m.setID("", m.gen)
			case kerr.FencedInstanceID:
				return // fatal in librdkafka
			default:
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		m.setID(jr.MemberID, jr.Generation)
		m.logf("JoinGroup after %s: gen %d member %s leader=%v (%d members)", time.Since(sent).Round(time.Millisecond), jr.Generation, jr.MemberID, jr.LeaderID == jr.MemberID, len(jr.Members))
		if f := m.hook(); f != nil && !f(m, jr) {
			m.logf("dies (kill -9)")
			m.kill()
			return
		}

		sreq := kmsg.NewPtrSyncGroupRequest()
		sreq.Version = 3
		sreq.Group = testGroup
		sreq.Generation = m.gen
		sreq.MemberID = m.id
		sreq.InstanceID = kmsg.StringPtr(m.name)
		if jr.LeaderID == jr.MemberID {
			for _, jm := range jr.Members {
				a := kmsg.NewConsumerMemberAssignment()
				sreq.GroupAssignment = append(sreq.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: jm.MemberID, MemberAssignment: a.AppendTo(nil)})
			}
		}
		sent = time.Now()
		kresp, err = m.request(m.session+3*time.Second, sreq)
		if err != nil {
			if m.ctx.Err() == nil {
				m.logf("SyncGroup unanswered after %s: %v", time.Since(sent).Round(time.Millisecond), err)
			}
			continue
		}
		sr := kresp.(*kmsg.SyncGroupResponse)
		if e := kerr.ErrorForCode(sr.ErrorCode); e != nil {
			m.logf("SyncGroup after %s: %v", time.Since(sent).Round(time.Millisecond), e)
			switch e {
			case kerr.UnknownMemberID:
				m.setID("", m.gen)
			case kerr.FencedInstanceID:
				return
			}
			continue
		}
		m.mu.Lock()
		m.stableGen = m.gen
		m.mu.Unlock()
		m.logf("stable in gen %d", m.gen)
		m.heartbeatUntilRebalance()
		m.mu.Lock()
		m.stableGen = -1
		m.mu.Unlock()
	}
}

func (m *member) setID(id string, gen int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.id, m.gen = id, gen
}

func (m *member) hook() func(*member, *kmsg.JoinGroupResponse) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.afterJoin
	m.afterJoin = nil
	return f
}

func (m *member) heartbeat() error {
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 3
	req.Group = testGroup
	req.Generation = m.gen
	req.MemberID = m.id
	req.InstanceID = kmsg.StringPtr(m.name)
	kresp, err := m.request(m.session, req)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(kresp.(*kmsg.HeartbeatResponse).ErrorCode)
}

func (m *member) heartbeatUntilRebalance() {
	tick := time.NewTicker(m.hbEvery)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.rejoinCh:
			m.logf("rejoins (leader rejoin triggers a rebalance)")
			return
		case <-tick.C:
		}
		err := m.heartbeat()
		if err == nil || m.ctx.Err() != nil {
			continue
		}
		m.logf("Heartbeat: %v", err)
		switch err {
		case kerr.UnknownMemberID:
			m.setID("", m.gen)
		case kerr.RebalanceInProgress:
			if d := m.rejoinDelay; d > 0 {
				m.logf("revocation callback runs %s, still heartbeating", d)
				until := time.Now().Add(d)
				for time.Now().Before(until) && m.ctx.Err() == nil {
					time.Sleep(m.hbEvery)
					_ = m.heartbeat()
				}
			}
		}
		return
	}
}

// describe returns the group state and its member ids, sorted.
func describe(ctx context.Context, cl *kgo.Client) (string, []string, error) {
	req := kmsg.NewPtrDescribeGroupsRequest()
	req.Groups = []string{testGroup}
	kresp, err := cl.Request(ctx, req)
	if err != nil {
		return "", nil, err
	}
	g := kresp.(*kmsg.DescribeGroupsResponse).Groups[0]
	var ids []string
	for _, m := range g.Members {
		ids = append(ids, m.MemberID)
	}
	sort.Strings(ids)
	return g.State, ids, nil
}

// waitStable waits until exactly ms form a Stable group, all synced in the
// same generation, and returns how long it took.
func waitStable(t *testing.T, addr string, d time.Duration, ms ...*member) (time.Duration, error) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	began := time.Now()
	var last string
	for {
		ids, gens := []string{}, map[int32]bool{}
		for _, m := range ms {
			id, gen := m.stable()
			ids = append(ids, id)
			gens[gen] = true
		}
		sort.Strings(ids)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		state, members, err := describe(ctx, cl)
		cancel()
		last = fmt.Sprintf("group %s members %v; members' generations %v ids %v (err %v)", state, members, gens, ids, err)
		if err == nil && state == "Stable" && len(gens) == 1 && !gens[-1] && strings.Join(ids, ",") == strings.Join(members, ",") {
			return time.Since(began), nil
		}
		if time.Since(began) > d {
			return time.Since(began), fmt.Errorf("no stable group of %d after %s: %s", len(ms), d, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustStable(t *testing.T, addr string, ms ...*member) {
	t.Helper()
	if _, err := waitStable(t, addr, 20*time.Second, ms...); err != nil {
		t.Fatal(err)
	}
}

// formGroup starts the members one by one, each time until the group is
// stable with all of them. The first one is the leader.
func formGroup(t *testing.T, addr string, session time.Duration, names ...string) []*member {
	var ms []*member
	for _, n := range names {
		ms = append(ms, newMember(t, addr, n, session).start())
		mustStable(t, addr, ms...)
	}
	return ms
}

func expectRebalance(t *testing.T, addr string, want time.Duration, what string, ms ...*member) {
	t.Helper()
	wait := envMs("KFAKE_GROUP_WAIT", want)
	took, err := waitStable(t, addr, wait, ms...)
	if err != nil {
		t.Fatalf("%s: Kafka completes this rebalance within %s; %v", what, want, err)
	}
	if took > want {
		t.Errorf("%s: the rebalance took %s; Kafka completes it within %s", what, took.Round(time.Millisecond), want)
	}
	t.Logf("%s: stable again %s later", what, took.Round(time.Millisecond))
}

// Bug A (nJoining skew, replaceStaticMember): a static member's new
// consumer joins (empty member id, same group.instance.id) while its old
// member is parked in SyncGroup, waiting for a slow leader. removeMember
// decrements nJoining for the old member's parked SyncGroup although only
// JoinGroups are counted (nJoining is 0 in CompletingRebalance), so the
// count is one short for the rest of the rebalance: rebalance() never sees
// nJoining >= len(members) and the group waits for the rebalance timeout
// (librdkafka's max.poll.interval.ms), re-armed by every later join.
// Kafka completes as soon as the three members have rejoined.
func TestKfakeGroupStaticRejoinWhileOldWaitsInSync(t *testing.T) {
	cluster, addr := newGroupCluster(t)
	ms := formGroup(t, addr, time.Minute, "abacus-0", "abacus-1", "abacus-2")
	leader, b, c := ms[0], ms[1], ms[2]
	slowLeaderRebalance(t, cluster, leader)

	// abacus-2's session ends (a commit failed with ILLEGAL_GENERATION):
	// its consumer is closed (static: no LeaveGroup) and a new one joins.
	c.logf("session ends: consumer closed, a new one joins")
	c.kill()
	c2 := newMember(t, addr, "abacus-2", time.Minute).start()

	expectRebalance(t, addr, 3*time.Second, "static rejoin while the old member waits in sync", leader, b, c2)
}

// Bug B (nJoining skew, session expiry): the leader dies (kill -9) between
// its JoinGroup answer and its SyncGroup; the followers wait in SyncGroup
// (librdkafka sends no heartbeat then) and their sessions expire before
// the leader's. updateHeartbeat's expiry calls removeMember on a member
// parked in SyncGroup: nJoining goes to -1, its SyncGroup is never
// answered, and from then on the group only completes on the rebalance
// timeout. Then the follower that rejoined is expired too while it waits in
// JoinGroup (bug C) and its JoinGroup is dropped. Kafka: the followers are
// stable again without the dead leader within a few session timeouts.
func TestKfakeGroupSyncWaitersExpireBeforeDeadLeader(t *testing.T) {
	_, addr := newGroupCluster(t)
	const session = 2 * time.Second
	ms := formGroup(t, addr, session, "abacus-0", "abacus-1", "abacus-2")
	leader, b, c := ms[0], ms[1], ms[2]

	leader.mu.Lock()
	leader.afterJoin = func(m *member, _ *kmsg.JoinGroupResponse) bool {
		// One more heartbeat (its session now ends last), then kill -9.
		time.Sleep(500 * time.Millisecond)
		m.logf("heartbeat before dying: %v", m.heartbeat())
		return false
	}
	leader.mu.Unlock()
	leader.rejoin()

	expectRebalance(t, addr, 3*session+4*time.Second, "followers in sync outlived by a dead leader", b, c)
}

// Bug C (a member awaiting join is expired and its JoinGroup dropped):
// kfake's session timer is only re-armed by heartbeats and replies, not by
// a JoinGroup, and librdkafka sends no heartbeats while its JoinGroup is
// outstanding. When one member takes longer than session.timeout.ms to
// rejoin (here: its revocation callback runs 2 session timeouts, during
// which librdkafka keeps heartbeating), the members already waiting in
// JoinGroup are expired, and removeMember never answers their JoinGroup:
// they hang until librdkafka's request timeout, max.poll.interval.ms + 3 s.
// Kafka keeps members awaiting join alive until the rebalance timeout.
func TestKfakeGroupJoinWaitersExpire(t *testing.T) {
	_, addr := newGroupCluster(t)
	rejoinSlowly(t, addr)
}

// rejoinSlowly forms a group of three with a 2 s session timeout, makes
// the leader rejoin and the third member rejoin two session timeouts
// later (heartbeating meanwhile), and expects the rebalance to complete
// with all three.
func rejoinSlowly(t *testing.T, addr string) {
	t.Helper()
	const session = 2 * time.Second
	ms := formGroup(t, addr, session, "abacus-0", "abacus-1", "abacus-2")
	leader, b, c := ms[0], ms[1], ms[2]
	c.mu.Lock()
	c.rejoinDelay = 2 * session
	c.mu.Unlock()
	leader.rejoin()
	expectRebalance(t, addr, 2*session+3*time.Second, "slow member rejoins after the session timeout", leader, b, c)
}

// The guard caps the rebalance timeout, so a rebalance ends when the cap
// runs out whatever keeps it from completing: here a member that never
// rejoins (its revocation callback runs for a minute, heartbeating
// meanwhile), as a stand-in for any wedge of kfake's groups. Kafka would
// wait for the member's own rebalance timeout (librdkafka's
// max.poll.interval.ms, 5 min); the embedded broker waits for the cap.
func TestKfakeGroupRebalanceTimeoutCapped(t *testing.T) {
	if !useGuard() {
		t.Skip("tests the guard's cap (KFAKE_GROUP_GUARD=0)")
	}
	const capped = 3 * time.Second
	_, addr := newGroupClusterCapped(t, capped)
	ms := formGroup(t, addr, 2*time.Second, "abacus-0", "abacus-1", "abacus-2")
	leader, b, c := ms[0], ms[1], ms[2]
	c.mu.Lock()
	c.rejoinDelay = time.Minute
	c.mu.Unlock()
	leader.rejoin()
	expectRebalance(t, addr, capped+3*time.Second, "a member that does not rejoin", leader, b)
}
