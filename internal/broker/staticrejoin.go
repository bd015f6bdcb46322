package broker

import (
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// staticRejoin lets a static member's new consumer take its place in a
// Stable group without a rebalance, as Kafka does (KIP-345).
//
// Kafka gives a restarted static member (same group.instance.id, no member
// id) its old assignment at once whenever the group's protocol is
// unchanged. kfake does so only if the new JoinGroup's protocol metadata
// is byte for byte the old member's. A restarted librdkafka consumer's
// cooperative-sticky metadata never is (it owns nothing yet and has no
// generation), so every restart of a pod rebalanced the whole group: its
// partitions waited for every other member to rejoin (up to a heartbeat
// interval) on each restart of a rolling upgrade.
//
// So the broker remembers the protocols of each static member's last
// JoinGroup and, when that instance's new consumer joins a Stable group
// with the same protocol names, hands kfake the old member's metadata,
// which kfake then finds unchanged. The member gets its old assignment;
// its next JoinGroup, in the next rebalance, carries its own metadata
// again (TestStaticRejoinKeepsTheGroupStable).
type staticRejoin struct {
	cluster *kfake.Cluster
	log     *slog.Logger

	mu    sync.Mutex
	joins map[string][]kmsg.JoinGroupRequestProtocol // by group and instance: the protocols of its last JoinGroup
}

// rejoinStatically installs the rule on c.
func rejoinStatically(c *kfake.Cluster, log *slog.Logger) *staticRejoin {
	r := &staticRejoin{cluster: c, log: log, joins: make(map[string][]kmsg.JoinGroupRequestProtocol)}
	c.ControlKey(int16(kmsg.JoinGroup), r.control)
	return r
}

func (r *staticRejoin) control(kreq kmsg.Request) (kmsg.Response, error, bool) {
	req := kreq.(*kmsg.JoinGroupRequest)
	if req.InstanceID == nil {
		return nil, nil, false
	}
	key := req.Group + "\x00" + *req.InstanceID
	r.mu.Lock()
	old, ok := r.joins[key]
	r.mu.Unlock()
	if req.MemberID == "" && ok && sameProtocolNames(old, req.Protocols) && r.stableWith(req.Group, *req.InstanceID) {
		req.Protocols = cloneProtocols(old)
		r.log.Info("a static member's new consumer takes its place without a rebalance, as on Kafka",
			"group", req.Group, "instance_id", *req.InstanceID)
		return nil, nil, false
	}
	r.mu.Lock()
	r.joins[key] = cloneProtocols(req.Protocols)
	r.mu.Unlock()
	return nil, nil, false // kfake handles it
}

// stableWith reports whether group is Stable with a member of instance.
func (r *staticRejoin) stableWith(group, instance string) bool {
	info := r.cluster.GroupInfo(group)
	if info == nil || info.State != "Stable" {
		return false
	}
	for _, m := range info.Members {
		if m.InstanceID != nil && *m.InstanceID == instance {
			return true
		}
	}
	return false
}

func sameProtocolNames(a, b []kmsg.JoinGroupRequestProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

func cloneProtocols(ps []kmsg.JoinGroupRequestProtocol) []kmsg.JoinGroupRequestProtocol {
	out := make([]kmsg.JoinGroupRequestProtocol, len(ps))
	for i, p := range ps {
		out[i] = p
		out[i].Metadata = append([]byte(nil), p.Metadata...)
	}
	return out
}
