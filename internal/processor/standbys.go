package processor

import (
	"context"
	"slices"

	"github.com/abacus-streams/abacus/internal/processor/standby"
)

// The processor's side of standby tasks (package standby): which
// partitions are tasks here, which standbys the placement wants here, and
// the Runner that keeps them.

// setActive marks partition p as a task of this member (active or
// restoring) or no longer one. A standby never runs on a task here.
func (p *Processor) setActive(partition int32, on bool) {
	p.activeMu.Lock()
	defer p.activeMu.Unlock()
	if on {
		p.active[partition] = true
	} else {
		delete(p.active, partition)
	}
}

func (p *Processor) isActive(partition int32) bool {
	p.activeMu.Lock()
	defer p.activeMu.Unlock()
	return p.active[partition]
}

// releaseStandby takes partition's store over from a standby here, if
// there is one: it runs on the task's restore goroutine (restore.Config.Acquire),
// after addTask marked the partition active.
func (p *Processor) releaseStandby(partition int32) {
	if r := p.standby.Load(); r != nil {
		r.Release(partition)
	}
}

// SetStandbys sets the partitions whose standby copy this member keeps,
// as the placement computed from the group's description says; those
// that are tasks here are left out. It never blocks.
func (p *Processor) SetStandbys(partitions []int32) {
	ps := slices.Clone(partitions)
	p.standbyWant.Store(&ps)
	if r := p.standby.Load(); r != nil {
		r.Set(ps)
	}
}

// startStandby starts the Runner once the store is open; it keeps the
// standbys and wipes the stores of tasks gone from here.
func (p *Processor) startStandby(ctx context.Context) {
	if p.standby.Load() != nil {
		return
	}
	r := standby.Start(ctx, standby.Config{
		Config: p.cfg.Config, DB: p.db, Inspector: p.inspectorClient, Active: p.isActive, Logger: p.log,
		OnApplied: p.cfg.OnStandbyApplied, Listening: p.cfg.OnStandbyListening, OnDropped: p.cfg.OnStandbyDropped,
		Metrics: standby.Metrics{Lag: p.metrics.standbyLag, Applied: p.metrics.standbyApplied, Wipes: p.metrics.wipes},
	})
	if want := p.standbyWant.Load(); want != nil {
		r.Set(*want)
	}
	p.standby.Store(r)
}

// stopStandby stops the Runner: its standbys write their checkpoints.
func (p *Processor) stopStandby() {
	if r := p.standby.Swap(nil); r != nil {
		r.Stop()
	}
}
