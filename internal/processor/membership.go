package processor

import (
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// groupStats is the consumer group part of librdkafka's statistics.
type groupStats struct {
	State     string `json:"state"`      // "up" while the coordinator is known and reachable
	StateAge  int64  `json:"stateage"`   // milliseconds in State
	JoinState string `json:"join_state"` // "steady" outside rebalances
}

// membershipWatch decides from the consumer's statistics whether this
// member can still be sure that the group has not given its partitions to
// another member (e2e TestMemberOutOfReachStopsAnsweringUntilConfirmed,
// TestMembershipWatch).
//
// librdkafka notices a lost session by itself only in the steady state: a
// member cut off from the coordinator in the middle of a rebalance keeps
// its partitions, and serves them, while the coordinator expires it and
// hands them to another member. So once the coordinator has been out of
// reach for half the session timeout (the group may expire the member at
// the full timeout, and a statistics report comes every second), the
// member is unconfirmed: it stops answering for its tasks. It is
// confirmed again by the next rebalance callback (which tells what it
// owns), or once it has been back with the coordinator, steady, for two
// heartbeat intervals: had the coordinator expired it, the first
// heartbeat would have said so and librdkafka would have revoked the
// partitions by then.
//
// Used by the loop only.
type membershipWatch struct {
	sessionTimeout time.Duration
	heartbeat      time.Duration
	unconfirmed    bool
}

// newMembershipWatch takes the timeouts from the consumer's configuration,
// librdkafka's defaults where unset.
func newMembershipWatch(conf *kafka.ConfigMap) membershipWatch {
	ms := func(key string, def time.Duration) time.Duration {
		v, err := conf.Get(key, nil)
		if err != nil || v == nil {
			return def
		}
		var n int64
		switch x := v.(type) {
		case int:
			n = int64(x)
		case string:
			if n, err = strconv.ParseInt(x, 10, 64); err != nil {
				return def
			}
		default:
			return def
		}
		return time.Duration(n) * time.Millisecond
	}
	return membershipWatch{
		sessionTimeout: ms("session.timeout.ms", 45*time.Second),
		heartbeat:      ms("heartbeat.interval.ms", 3*time.Second),
	}
}

// observe takes one statistics report and says whether the member's state
// changed (then unconfirmed tells which way).
func (w *membershipWatch) observe(g groupStats) (changed bool) {
	age := time.Duration(g.StateAge) * time.Millisecond
	switch {
	case !w.unconfirmed && g.State != "" && g.State != "up" && age >= w.sessionTimeout/2:
		w.unconfirmed = true
		return true
	case w.unconfirmed && g.State == "up" && g.JoinState == "steady" && age >= 2*w.heartbeat:
		w.unconfirmed = false
		return true
	}
	return false
}

// rebalanced records a rebalance callback: the group has told the member
// what it owns.
func (w *membershipWatch) rebalanced() (changed bool) {
	changed = w.unconfirmed
	w.unconfirmed = false
	return changed
}
