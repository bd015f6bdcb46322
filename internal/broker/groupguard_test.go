package broker

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxRebalanceTimeout is the guard's cap on the rebalance timeout.
const maxRebalanceTimeout = 30 * time.Second

// guardGroups works around a kfake classic-group bug (its count of joined
// members, below) from outside kfake, with control functions only.
//
// kfake counts the members parked in JoinGroup (nJoining) and completes a
// rebalance once every member has joined; but when it removes a member
// parked in SyncGroup (session expiry, a static member's replacement, a
// LeaveGroup), it decrements that count as if the member had been joining.
// The count stays one short until the rebalance timeout
// (max.poll.interval.ms, 5 min for librdkafka), re-armed by every join.
//
// The guard makes sure no follower is ever parked in SyncGroup: a
// follower's SyncGroup (one without assignments) is held back, without
// blocking the broker, until the group has left CompletingRebalance, i.e.
// until the leader's SyncGroup made it Stable (the follower then gets its
// assignment at once) or a rebalance started (the follower gets
// REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID and
// rejoins, as it would from Kafka). The leader's SyncGroup passes, and
// kfake answers it at once. The member's requests behind the held SyncGroup
// on its connection wait too; librdkafka sends none that matter meanwhile.
//
// Last, it caps the rebalance timeout members ask for at maxRebalance:
// the rebalance completes by then with the members that rejoined, as
// Kafka's does at the timeout. librdkafka asks for max.poll.interval.ms
// (5 min), which is how long any wedge of kfake's groups the two fixes
// above do not cover would last (such as three live members, all waiting
// in JoinGroup, the group in PreparingRebalance for minutes).
//
// addr is an address the broker listens on (not an advertised proxy's).
func guardGroups(c *kfake.Cluster, addr string, maxRebalance time.Duration) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	cl, err := listenerClient(addr, "abacus-group-guard")
	if err != nil {
		cancel()
		return nil, err
	}
	completing := func(group string) bool {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		defer rcancel()
		kresp, err := cl.Request(rctx, req)
		if err != nil {
			return ctx.Err() == nil // keep holding unless we are closing
		}
		gs := kresp.(*kmsg.DescribeGroupsResponse).Groups
		return len(gs) == 1 && gs[0].State == "CompletingRebalance"
	}
	capMs := int32(maxRebalance.Milliseconds())
	c.ControlKey(int16(kmsg.JoinGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		if req := kreq.(*kmsg.JoinGroupRequest); req.RebalanceTimeoutMillis > capMs {
			req.RebalanceTimeoutMillis = capMs
		}
		return nil, nil, false
	})
	seen := keepJoinersAlive(ctx, c, cl)
	c.ControlKey(int16(kmsg.SyncGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.SyncGroupRequest)
		seen(req.Group, req.MemberID, req.Generation)
		if len(req.GroupAssignment) > 0 {
			return nil, nil, false // the leader's
		}
		c.SleepControl(func() {
			for completing(req.Group) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		})
		return nil, nil, false
	})
	return func() { cancel(); cl.Close() }, nil
}

// keepJoinersAlive works around the second half of the bug: kfake's session
// timer runs on while a member waits in JoinGroup (only heartbeats and
// replies re-arm it), and librdkafka sends no heartbeats meanwhile; so when
// a rebalance lasts longer than session.timeout.ms (another member is slow
// to rejoin, or dead and not expired yet), kfake expires the members that
// already rejoined, and never answers their JoinGroup (they hang until
// librdkafka's request timeout, max.poll.interval.ms + 3 s). Kafka keeps a
// member awaiting join alive until the rebalance completes.
//
// So while a known member's JoinGroup is parked, the guard heartbeats for
// it with the generation it last used, every third of its session timeout.
// kfake answers REBALANCE_IN_PROGRESS and re-arms the member's session
// timer as long as the rebalance is under way; any other answer (a new
// generation: ILLEGAL_GENERATION; UNKNOWN_MEMBER_ID; none) ends it, and so
// does the member's rebalance timeout, Kafka's bound too.
//
// It returns the function that records the generation a member used, for
// the SyncGroup control.
func keepJoinersAlive(ctx context.Context, c *kfake.Cluster, cl *kgo.Client) (seen func(group, member string, gen int32)) {
	type key struct{ group, member string }
	var (
		mu   sync.Mutex
		gens = make(map[key]int32) // the generation each member last used
	)
	seen = func(group, member string, gen int32) {
		mu.Lock()
		gens[key{group, member}] = gen
		mu.Unlock()
	}
	c.ControlKey(int16(kmsg.Heartbeat), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.HeartbeatRequest)
		seen(req.Group, req.MemberID, req.Generation)
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.OffsetCommitRequest)
		if req.MemberID != "" && req.Generation >= 0 {
			seen(req.Group, req.MemberID, req.Generation)
		}
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.JoinGroup), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		req := kreq.(*kmsg.JoinGroupRequest)
		if req.MemberID == "" {
			return nil, nil, false // kfake arms no session timer until it answers
		}
		mu.Lock()
		gen, ok := gens[key{req.Group, req.MemberID}]
		mu.Unlock()
		if !ok {
			return nil, nil, false
		}
		every := time.Duration(req.SessionTimeoutMillis) * time.Millisecond / 3
		until := time.Now().Add(time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond)
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.Generation, hb.MemberID, hb.InstanceID = req.Group, gen, req.MemberID, req.InstanceID
		go func() {
			for time.Now().Before(until) {
				select {
				case <-ctx.Done():
					return
				case <-time.After(every):
				}
				rctx, rcancel := context.WithTimeout(ctx, every)
				kresp, err := cl.Request(rctx, hb)
				rcancel()
				if err != nil || kresp.(*kmsg.HeartbeatResponse).ErrorCode != kerr.RebalanceInProgress.Code {
					return
				}
			}
		}()
		return nil, nil, false
	})
	return seen
}
