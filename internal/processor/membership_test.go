package processor

import (
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestMembershipWatch(t *testing.T) {
	type report struct {
		g    groupStats
		want bool // unconfirmed after it
	}
	up := func(age int64, join string) groupStats {
		return groupStats{State: "up", StateAge: age, JoinState: join}
	}
	away := func(state string, age int64, join string) groupStats {
		return groupStats{State: state, StateAge: age, JoinState: join}
	}
	for _, tc := range []struct {
		name    string
		reports []report
		rebal   int // a rebalance callback after this many reports (-1: none)
	}{
		{"steady member stays confirmed", []report{{up(1000, "steady"), false}, {up(60000, "steady"), false}}, -1},
		{"short coordinator loss is tolerated", []report{{away("query-coord", 1000, "steady"), false}, {away("query-coord", 2999, "steady"), false}, {up(10, "steady"), false}}, -1},
		{"half a session away, mid-rebalance: unconfirmed", []report{{away("query-coord", 2000, "wait-join"), false}, {away("query-coord", 3000, "wait-join"), true}, {away("wait-broker-transport", 10, "wait-join"), true}}, -1},
		{"back and steady for two heartbeats: confirmed", []report{{away("query-coord", 3500, "steady"), true}, {up(500, "steady"), true}, {up(1999, "steady"), true}, {up(2000, "steady"), false}}, -1},
		{"back but still rejoining: not yet", []report{{away("query-coord", 3500, "steady"), true}, {up(5000, "wait-join"), true}}, -1},
		{"a rebalance callback confirms", []report{{away("query-coord", 4000, "wait-sync"), true}, {up(100, "steady"), false}}, 1},
		{"no statistics: nothing decided", []report{{groupStats{}, false}}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := membershipWatch{sessionTimeout: 6 * time.Second, heartbeat: time.Second}
			for i, r := range tc.reports {
				if i == tc.rebal {
					w.rebalanced()
				}
				w.observe(r.g)
				if w.unconfirmed != r.want {
					t.Fatalf("after report %d (%+v): unconfirmed %v, want %v", i, r.g, w.unconfirmed, r.want)
				}
			}
		})
	}
}

func TestMembershipWatchTimeouts(t *testing.T) {
	w := newMembershipWatch(&kafka.ConfigMap{"session.timeout.ms": "6000", "heartbeat.interval.ms": 500})
	if w.sessionTimeout != 6*time.Second || w.heartbeat != 500*time.Millisecond {
		t.Fatalf("got session %s, heartbeat %s; want 6s and 500ms", w.sessionTimeout, w.heartbeat)
	}
	w = newMembershipWatch(&kafka.ConfigMap{})
	if w.sessionTimeout != 45*time.Second || w.heartbeat != 3*time.Second {
		t.Fatalf("defaults: got session %s, heartbeat %s; want librdkafka's 45s and 3s", w.sessionTimeout, w.heartbeat)
	}
}
