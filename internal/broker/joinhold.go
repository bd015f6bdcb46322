package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// joinHold holds back, without blocking the broker, the JoinGroups that
// kfake's classic groups would mishandle (docs/reliability.md, "The
// embedded broker (kfake)"; TestJoinHoldStaticRejoinWhileOldWaitsInSync,
// TestJoinDeadlineEndsRebalanceThatCountsOneShort).
//
// kfake completes a rebalance as soon as it counts every member joined,
// or else on a timer that every JoinGroup re-arms. Its count goes one
// short when it removes a member parked in SyncGroup (removeMember counts
// it as a joiner), and then only the timer ends the rebalance: a wait of
// a whole rebalance timeout (librdkafka's max.poll.interval.ms), and a
// livelock when the members' JoinGroups, timed out and sent again
// (librdkafka: the rebalance timeout + 3 s), never leave the timer a
// whole period (every key unavailable for as long as they keep rejoining).
// Two rules, each about JoinGroups Kafka would not have let into the
// rebalance under way either:
//
//   - Static replacement after the sync: a JoinGroup with no member id
//     from a static instance (a member's new consumer after its session
//     ended) whose old member waits in SyncGroup waits until the group is
//     Stable or rebalancing again. Then the old member is no longer
//     parked, and replacing it leaves the count right. The most frequent
//     way in (our session restarts) is closed. An old member that never
//     sent its SyncGroup (it died first) is replaced at once, as before.
//   - The join deadline: a JoinGroup that arrives when its group has been
//     preparing a rebalance for longer than the rebalance timeout waits
//     until kfake completes it, which it does within one rebalance
//     timeout once nothing re-arms the timer. Kafka's join deadline runs
//     from the rebalance's start. Completing resets kfake's count, so the
//     next rebalance counts right. This bounds what the other ways in (a
//     member parked in SyncGroup expiring) still cost.
//
// A real Kafka cluster needs none of it.
type joinHold struct {
	cluster *kfake.Cluster
	log     *slog.Logger
	rules   joinRules
	held    atomic.Int64

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup            // GroupInfo calls, which need the broker's loop
	began    map[string]rebalanceBegan // by group: the rebalance under way
	synced   map[string]syncedMembers  // by group: who sent SyncGroup, and in which generation
}

// syncedMembers are the members that sent a SyncGroup in one generation.
type syncedMembers struct {
	generation int32
	members    map[string]bool
}

// joinRules are the rules in force (both, except in tests of one).
type joinRules struct {
	afterSync, deadline bool
}

var allJoinRules = joinRules{afterSync: true, deadline: true}

// rebalanceBegan is when the broker was first seen preparing a group's
// rebalance of one generation.
type rebalanceBegan struct {
	generation int32
	at         time.Time
}

// kfake's GroupInfo.State
const (
	preparingRebalance  = "PreparingRebalance"
	completingRebalance = "CompletingRebalance"
)

// holdJoins installs the holds on c; stop them before closing c.
func holdJoins(c *kfake.Cluster, log *slog.Logger, rules joinRules) *joinHold {
	h := &joinHold{cluster: c, log: log, rules: rules, began: make(map[string]rebalanceBegan), synced: make(map[string]syncedMembers)}
	// Control functions run on the broker's loop; GroupInfo is served by
	// that loop meanwhile, and SleepControl lets it go on while a request
	// is held.
	c.ControlKey(int16(kmsg.JoinGroup), h.control)
	c.ControlKey(int16(kmsg.SyncGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.SyncGroupRequest)
		h.sentSync(req.Group, req.MemberID, req.Generation)
		return nil, nil, false // observed only
	})
	return h
}

func (h *joinHold) sentSync(group, member string, generation int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.synced[group]
	if !ok || s.generation != generation {
		s = syncedMembers{generation: generation, members: make(map[string]bool)}
		h.synced[group] = s
	}
	s.members[member] = true
}

// waitsInSync reports whether instance's member in info sent a SyncGroup
// in info's generation: in CompletingRebalance, kfake has parked it.
func (h *joinHold) waitsInSync(info *kfake.GroupInfo, instance string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.synced[info.Group]
	if !ok || s.generation != info.Epoch {
		return false
	}
	for _, m := range info.Members {
		if m.InstanceID != nil && *m.InstanceID == instance {
			return s.members[m.MemberID]
		}
	}
	return false
}

func (h *joinHold) control(kreq kmsg.Request) (kmsg.Response, error, bool) {
	req := kreq.(*kmsg.JoinGroupRequest)
	info := h.groupInfo(req.Group)
	if info == nil {
		return nil, nil, false
	}
	switch info.State {
	case completingRebalance:
		h.forget(req.Group)
		if h.rules.afterSync && req.MemberID == "" && req.InstanceID != nil && h.waitsInSync(info, *req.InstanceID) {
			h.hold(req, info, "a static member's new consumer waits until its old member's SyncGroup is answered", 0)
		}
	case preparingRebalance:
		timeout := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
		if since := time.Since(h.rebalanceBegan(req.Group, info.Epoch)); h.rules.deadline && since > timeout {
			h.hold(req, info, "a JoinGroup past its rebalance's deadline waits until the broker completes the rebalance", since)
		}
	default:
		h.forget(req.Group)
	}
	return nil, nil, false // kfake handles it now
}

// hold keeps req until its group leaves the state and generation of info.
func (h *joinHold) hold(req *kmsg.JoinGroupRequest, info *kfake.GroupInfo, why string, rebalancing time.Duration) {
	h.held.Add(1)
	instance := ""
	if req.InstanceID != nil {
		instance = *req.InstanceID
	}
	h.log.Info(why, "group", req.Group, "state", info.State, "generation", info.Epoch,
		"member_id", req.MemberID, "instance_id", instance,
		"rebalancing_for", rebalancing.Round(time.Millisecond),
		"rebalance_timeout", time.Duration(req.RebalanceTimeoutMillis)*time.Millisecond)
	h.cluster.SleepControl(func() { h.awaitChange(req.Group, info.State, info.Epoch) })
}

// rebalanceBegan returns when the rebalance of group at generation was
// first seen, recording now if it is new.
func (h *joinHold) rebalanceBegan(group string, generation int32) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	b, ok := h.began[group]
	if !ok || b.generation != generation {
		b = rebalanceBegan{generation: generation, at: time.Now()}
		h.began[group] = b
	}
	return b.at
}

func (h *joinHold) forget(group string) {
	h.mu.Lock()
	delete(h.began, group)
	h.mu.Unlock()
}

// awaitChange returns once group has left state at generation (or is
// gone), or the holds are stopped.
func (h *joinHold) awaitChange(group, state string, generation int32) {
	for {
		info := h.groupInfo(group)
		if info == nil || info.State != state || info.Epoch != generation {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// groupInfo is kfake's view of group; nil if it has none or the holds are
// stopped (GroupInfo would wait for a closed broker's loop forever).
func (h *joinHold) groupInfo(group string) *kfake.GroupInfo {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.inflight.Add(1)
	h.mu.Unlock()
	defer h.inflight.Done()
	return h.cluster.GroupInfo(group)
}

// heldJoins is how many JoinGroups were held so far.
func (h *joinHold) heldJoins() int64 { return h.held.Load() }

// stop releases every held JoinGroup and waits for the calls into the
// broker's loop to return, so the broker can close.
func (h *joinHold) stop() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.inflight.Wait()
}
