package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sessionExpiry times out the group members kfake forgets to time
// (TestSessionExpiryRemovesMemberStoppedWhileJoining; docs/reliability.md,
// "The embedded broker (kfake)").
//
// kfake arms a member's session timer when an answer to it is delivered.
// A member whose process stops while its JoinGroup waits (a pod stopped
// moments after it started) never gets that answer, so it gets no timer:
// the rebalance completes with it, the leader gives it partitions, and the
// group stays Stable with a member nobody runs, its partitions unread,
// until some other member happens to rebalance. Kafka times every member
// from its join on.
//
// So the broker watches its classic groups: every group request that
// names a member (Heartbeat, JoinGroup, SyncGroup, offset commits) shows
// it alive, and a member of a Stable group that has shown nothing for
// 1.5 session timeouts (a live librdkafka member heartbeats several times
// per session timeout) is made to leave, as Kafka would have expired it.
// The LeaveGroup names the member id only, never the instance id, which
// would name the instance's current member instead.
//
// The other way round, kfake times a member whose JoinGroup waits as any
// other: at its session timeout it removes the member and never answers
// the JoinGroup. The rebalance completes without it, while the member,
// still waiting, goes on processing the partitions it kept in the
// cooperative protocol, which the group has just given to others. Kafka
// never expires a member that awaits its JoinGroup's answer; the join
// deadline (the rebalance timeout) bounds the wait instead. So while a
// group prepares a rebalance, the broker heartbeats for each member whose
// JoinGroup it saw, for at most that JoinGroup's rebalance timeout
// (TestSessionExpiryKeepsMemberWaitingInJoinGroup).
type sessionExpiry struct {
	cluster *kfake.Cluster
	client  *kgo.Client
	log     *slog.Logger
	every   time.Duration
	expired atomic.Int64

	mu       sync.Mutex
	sessions map[string]time.Duration // by group: the longest session timeout asked for
	seen     map[string]time.Time     // by member id: the last request naming it
	joins    map[string]pendingJoin   // by group and member: JoinGroups of known members, maybe waiting
	cancel   context.CancelFunc
	done     chan struct{}
}

// expireSessions starts watching c's groups. addr is an address c listens
// on (not an advertised proxy's).
func expireSessions(c *kfake.Cluster, addr string, log *slog.Logger, every time.Duration) (*sessionExpiry, error) {
	cl, err := listenerClient(addr, "abacus-broker-sessions")
	if err != nil {
		return nil, fmt.Errorf("client for the broker's session expiry: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &sessionExpiry{
		cluster: c, client: cl, log: log, every: every,
		sessions: make(map[string]time.Duration), seen: make(map[string]time.Time), joins: make(map[string]pendingJoin),
		cancel: cancel, done: make(chan struct{}),
	}
	observe := func(key kmsg.Key, member func(kmsg.Request) string) {
		c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			if id := member(req); id != "" {
				s.alive(id)
			}
			return nil, nil, false // observed only; kfake handles it
		})
	}
	c.ControlKey(int16(kmsg.JoinGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.JoinGroupRequest)
		s.joined(req.Group, req.MemberID, time.Duration(req.SessionTimeoutMillis)*time.Millisecond)
		s.joining(req)
		return nil, nil, false
	})
	observe(kmsg.Heartbeat, func(r kmsg.Request) string { return r.(*kmsg.HeartbeatRequest).MemberID })
	observe(kmsg.SyncGroup, func(r kmsg.Request) string { return r.(*kmsg.SyncGroupRequest).MemberID })
	observe(kmsg.OffsetCommit, func(r kmsg.Request) string { return r.(*kmsg.OffsetCommitRequest).MemberID })
	observe(kmsg.TxnOffsetCommit, func(r kmsg.Request) string { return r.(*kmsg.TxnOffsetCommitRequest).MemberID })
	go s.run(ctx)
	return s, nil
}

// listenerClient is a client of the broker that always dials addr, the
// listener itself, whatever address the broker advertises.
func listenerClient(addr, clientID string) (*kgo.Client, error) {
	var d net.Dialer
	return kgo.NewClient(
		kgo.SeedBrokers(addr),
		kgo.ClientID(clientID),
		kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		}),
	)
}

func (s *sessionExpiry) alive(member string) {
	s.mu.Lock()
	s.seen[member] = time.Now()
	s.mu.Unlock()
}

func (s *sessionExpiry) joined(group, member string, session time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if session > s.sessions[group] {
		s.sessions[group] = session
	}
	if member != "" {
		s.seen[member] = time.Now()
	}
}

// pendingJoin is a JoinGroup the broker may keep waiting.
type pendingJoin struct {
	group, member string
	instance      *string
	generation    int32     // the group's when the JoinGroup came; the rebalance's end moves it on
	until         time.Time // the JoinGroup's rebalance timeout
}

// joining records a JoinGroup of a member the group knows (a new
// consumer's is known once the group names its instance).
func (s *sessionExpiry) joining(req *kmsg.JoinGroupRequest) {
	if req.MemberID == "" && req.InstanceID == nil {
		return
	}
	// A group kfake does not know yet is created by this JoinGroup, and
	// its first generation is 1.
	var generation int32
	if info := s.cluster.GroupInfo(req.Group); info != nil {
		generation = info.Epoch
	}
	j := pendingJoin{group: req.Group, member: req.MemberID, instance: req.InstanceID, generation: generation,
		until: time.Now().Add(time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond)}
	key := req.Group + "\x00" + req.MemberID
	if req.InstanceID != nil {
		key = req.Group + "\x00\x00" + *req.InstanceID
	}
	s.mu.Lock()
	s.joins[key] = j
	s.mu.Unlock()
}

// keepJoinersAlive heartbeats, while info's group prepares a rebalance,
// for each member whose JoinGroup waits within its rebalance timeout. A
// JoinGroup is answered when the rebalance it joined ends, which moves the
// generation on: then, or in any state but preparing, it is forgotten (a
// member that joined, then stopped, is not kept alive by a later
// rebalance).
func (s *sessionExpiry) keepJoinersAlive(ctx context.Context, info *kfake.GroupInfo) {
	now := time.Now()
	var beat []kfake.GroupMember
	s.mu.Lock()
	for key, j := range s.joins {
		if j.group != info.Group {
			continue
		}
		if info.State != preparingRebalance || info.Epoch != j.generation || now.After(j.until) {
			delete(s.joins, key)
			continue
		}
		for _, m := range info.Members {
			if (j.instance != nil && m.InstanceID != nil && *m.InstanceID == *j.instance) || (j.instance == nil && m.MemberID == j.member) {
				beat = append(beat, m)
			}
		}
	}
	s.mu.Unlock()
	for _, m := range beat {
		req := kmsg.NewPtrHeartbeatRequest()
		req.Group, req.MemberID, req.InstanceID, req.Generation = info.Group, m.MemberID, m.InstanceID, info.Epoch
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if _, err := req.RequestWith(rctx, s.client); err != nil {
			s.log.Debug("heartbeat for a member waiting in JoinGroup", "group", info.Group, "member_id", m.MemberID, "error", err)
		}
		cancel()
	}
}

func (s *sessionExpiry) run(ctx context.Context) {
	defer close(s.done)
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		groups := make(map[string]time.Duration, len(s.sessions))
		for g, d := range s.sessions {
			groups[g] = d
		}
		s.mu.Unlock()
		members := make(map[string]bool)
		for group, session := range groups {
			info := s.cluster.GroupInfo(group)
			if info == nil {
				continue
			}
			for _, m := range info.Members {
				members[m.MemberID] = true
			}
			if info.State == "Stable" {
				s.expireSilent(ctx, info, session)
			}
			s.keepJoinersAlive(ctx, info)
		}
		s.forgetGone(members)
	}
}

// expireSilent makes the members of a Stable group leave that have shown
// nothing for 1.5 session timeouts; a member never seen is first seen now.
func (s *sessionExpiry) expireSilent(ctx context.Context, info *kfake.GroupInfo, session time.Duration) {
	now := time.Now()
	limit := session + session/2
	for _, m := range info.Members {
		s.mu.Lock()
		last, ok := s.seen[m.MemberID]
		if !ok {
			s.seen[m.MemberID] = now
		}
		s.mu.Unlock()
		if !ok || now.Sub(last) <= limit {
			continue
		}
		instance := ""
		if m.InstanceID != nil {
			instance = *m.InstanceID
		}
		s.log.Warn("expiring a group member the broker never timed: nothing from it for longer than its session timeout",
			"group", info.Group, "generation", info.Epoch, "member_id", m.MemberID, "instance_id", instance,
			"silent_for", now.Sub(last).Round(time.Millisecond), "session_timeout", session, "assigned", m.Assignment)
		if err := s.leave(ctx, info.Group, m.MemberID); err != nil {
			s.log.Warn("expiring a group member failed", "group", info.Group, "member_id", m.MemberID, "error", err)
			continue
		}
		s.expired.Add(1)
		s.mu.Lock()
		delete(s.seen, m.MemberID)
		s.mu.Unlock()
	}
}

func (s *sessionExpiry) leave(ctx context.Context, group, member string) error {
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 3 // members by id
	req.Group = group
	req.Members = []kmsg.LeaveGroupRequestMember{{MemberID: member}}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kresp, err := req.RequestWith(rctx, s.client)
	if err != nil {
		return err
	}
	if err := kerr.ErrorForCode(kresp.ErrorCode); err != nil {
		return err
	}
	for _, m := range kresp.Members {
		if err := kerr.ErrorForCode(m.ErrorCode); err != nil && err != kerr.UnknownMemberID {
			return err
		}
	}
	return nil
}

func (s *sessionExpiry) forgetGone(members map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.seen {
		if !members[id] {
			delete(s.seen, id)
		}
	}
}

// expiredMembers is how many members were made to leave so far.
func (s *sessionExpiry) expiredMembers() int64 { return s.expired.Load() }

// stop ends the watch; call it before closing the broker.
func (s *sessionExpiry) stop() {
	s.cancel()
	<-s.done
	s.client.Close()
}
