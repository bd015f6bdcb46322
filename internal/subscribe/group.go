package subscribe

import "sync/atomic"

// Group is the hubs of one member that count their streams against one
// MaxSubscribers and report in one set of metrics: the count store's hub
// and the hub of each windowed store. Each store has a hub of its own, so
// that no stream is offered another store's updates, while the bound on
// the streams a member serves stays one. Make it with NewGroup.
type Group struct {
	max     int64
	open    atomic.Int64
	metrics *metrics
}

// NewGroup makes a group bounded by cfg.MaxSubscribers (its default if
// unset) and registers the group's metrics with cfg.Registerer.
func NewGroup(cfg Config) *Group {
	cfg = cfg.withDefaults()
	return &Group{max: int64(cfg.MaxSubscribers), metrics: newMetrics(cfg.Registerer)}
}

// admit counts a stream in, unless max are open already.
func (g *Group) admit() bool {
	if g.open.Add(1) > g.max {
		g.open.Add(-1)
		return false
	}
	return true
}

func (g *Group) leave() { g.open.Add(-1) }
