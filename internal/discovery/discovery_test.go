package discovery

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
)

// OnView gets each view a refresh reads, standbys placed, once View
// returns it; a failed refresh and a pinned view call it not at all, and
// the orphan watch goes on beside it.
func TestOnViewGetsEveryRefreshedView(t *testing.T) {
	cfg := config.Default()
	cfg.InstanceID = "abacus-0"
	cfg.NumStandbyReplicas = 1
	var d *Discovery
	var seen []*View
	var orphaned [][]int32
	d, err := New(Config{
		Config:      cfg,
		OrphanGrace: time.Microsecond,
		OnView: func(v *View) {
			if d.View() != v {
				t.Error("OnView called before View returns the new view")
			}
			seen = append(seen, v)
		},
		OnOrphaned: func(ps []int32) { orphaned = append(orphaned, ps) },
	})
	if err != nil {
		t.Fatal(err)
	}
	// Partition 3 has no owner in a Stable group: the second sight of it
	// makes abacus-0, ranked first, act.
	next := func() *View {
		return viewOf(true, 4, map[string][]int32{"abacus-0": {0, 1}, "abacus-1": {2}})
	}
	var describeErr error
	var described []*View
	d.describe = func(context.Context) (*View, error) {
		if describeErr != nil {
			return nil, describeErr
		}
		v := next()
		described = append(described, v)
		return v, nil
	}
	ctx := context.Background()

	d.refresh(ctx)
	time.Sleep(time.Millisecond)
	d.refresh(ctx)
	if !slices.Equal(seen, described) || len(seen) != 2 {
		t.Fatalf("OnView saw %d views, not the %d described", len(seen), len(described))
	}
	if len(orphaned) != 1 || !slices.Equal(orphaned[0], []int32{3}) {
		t.Errorf("OnOrphaned calls %v, want one for [3]", orphaned)
	}
	v := seen[1]
	if got := v.StandbyMembers(0); len(got) != 1 || got[0].Name != "abacus-1" {
		t.Errorf("standbys of partition 0 (active abacus-0, 2 members) = %v, want abacus-1", got)
	}
	if got := v.StandbysOf("abacus-1"); !slices.Contains(got, 0) || !slices.Contains(got, 1) {
		t.Errorf("abacus-1 keeps %v, want abacus-0's partitions 0 and 1 among them", got)
	}

	describeErr = errors.New("broker away")
	d.refresh(ctx)
	if len(seen) != 2 || d.View() != v {
		t.Errorf("a failed refresh called OnView or replaced the view: %d calls", len(seen))
	}

	describeErr = nil
	d.Pin(next())
	d.refresh(ctx)
	if len(seen) != 2 {
		t.Errorf("a pinned view called OnView: %d calls", len(seen))
	}
}
