package processor

import (
	"fmt"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Offsets the group refused while it rebalanced stay owed by the task
// until a batch commits them, and a task with nothing new hands them over
// again.
func TestOwedOffsetIsHandedOverUntilCommitted(t *testing.T) {
	tk := newTask(0, nil)
	tk.nextOffset, tk.rewindTo = 10, 5
	tk.dirty["k"] = 3
	b := mustHandOff(t, tk)
	tk.durable(b, 1<<20, true)
	if tk.owed != 10 || tk.committed != -1 {
		t.Fatalf("after a refused commit: owed %d, committed %d; want 10 and -1", tk.owed, tk.committed)
	}
	again := mustHandOff(t, tk)
	if again.nextOffset != 10 || len(again.counts) != 0 {
		t.Fatalf("a task owing offset 10 with nothing new hands over %+v; want offset 10 and no counts", again)
	}
	tk.nextOffset = 12
	newer := mustHandOff(t, tk)
	if newer.nextOffset != 12 {
		t.Fatalf("a task owing 10 that counted up to 12 hands over offset %d; want 12", newer.nextOffset)
	}
	tk.durable(newer, 1<<20, false)
	if tk.owed != -1 || tk.committed != 12 {
		t.Fatalf("after the commit: owed %d, committed %d; want -1 and 12", tk.owed, tk.committed)
	}
}

// Only the refusals of a rebalance under way are owed; the others end the
// session as before.
func TestRebalancingRefusals(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{kafka.NewError(kafka.ErrIllegalGeneration, "illegal generation", false), true},
		{kafka.NewError(kafka.ErrRebalanceInProgress, "rebalance in progress", false), true},
		{fmt.Errorf("partition 3: %w", kafka.NewError(kafka.ErrIllegalGeneration, "", false)), true},
		{kafka.NewError(kafka.ErrUnknownMemberID, "unknown member", false), false},
		{kafka.NewError(kafka.ErrFencedInstanceID, "fenced", true), false},
		{fmt.Errorf("no kafka error"), false},
	} {
		if got := rebalancing(tc.err); got != tc.want {
			t.Errorf("rebalancing(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func mustHandOff(t *testing.T, tk *task) taskBatch {
	t.Helper()
	b, err := tk.handOff(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
