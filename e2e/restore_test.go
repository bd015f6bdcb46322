package e2e

import (
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// Under at_least_once a restore keeps the larger of the stored and the
// changelog's count of a key: a member that lost its partitions can have
// sends that land after the new owner's newer counts, and replaying them in
// order would take counts back for good (the input offsets behind the
// newer counts are committed). The test appends lower counts to the
// changelog after the real ones, as such late sends do, and one higher
// count, then restores: from the checkpoint on the member's own disk, and
// the whole changelog on an empty one.
func TestRestoreKeepsTheLargerCountAtLeastOnce(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(nil)})
	in.WaitReady(time.Minute)
	w := skewed(21, 5_000, 500)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w.truth, false)
	in.Stop(30 * time.Second)

	// The ten hottest keys get a late, lower count; one more key a newer,
	// higher one (which a restore must take).
	keys := slices.SortedFunc(maps.Keys(w.truth), func(a, b string) int { return int(w.truth[b] - w.truth[a]) })
	want := maps.Clone(w.truth)
	var late []testkit.Record
	for _, k := range keys[:10] {
		late = append(late, testkit.Record{Key: []byte(k), Value: []byte(strconv.FormatInt(w.truth[k]/2, 10))})
	}
	raised := keys[10]
	want[raised] += 3
	late = append(late, testkit.Record{Key: []byte(raised), Value: []byte(strconv.FormatInt(want[raised], 10))})
	// murmur2, as abacus places a key's changelog records: its task's partition.
	testkit.Produce(t, b.Addr(), changelog, "murmur2_random", late)

	in.Restart()
	in.WaitReady(time.Minute)
	if got := metric(t, in, "abacus_restored_records_total"); got != float64(len(late)) {
		t.Errorf("restart on its disk restored %v changelog records, want the %d appended", got, len(late))
	}
	waitCounts(t, 30*time.Second, []*testkit.Instance{in}, want, false)

	// An empty disk: the higher and the lower count meet in one restore.
	in.Stop(30 * time.Second)
	in.RestartWith(t.TempDir())
	in.WaitReady(time.Minute)
	waitCounts(t, 30*time.Second, []*testkit.Instance{in}, want, false)

	// Counting goes on from the kept count, and the changelog heals.
	more := workload{truth: map[string]int64{}}
	for _, k := range keys[:11] {
		more.records = append(more.records, testkit.Record{Key: []byte(k), Value: []byte("again")})
		more.truth[k]++
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
	for k, n := range more.truth {
		want[k] += n
	}
	waitCounts(t, time.Minute, []*testkit.Instance{in}, want, false)
	checkTopic(t, b.Addr(), changelog, "read_uncommitted", want, false)
}
