package e2e

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// standbyEnv are the settings of the standby tests: six partitions, one
// standby copy of each, a 15 s session timeout (scaling).
func standbyEnv(guarantee string) map[string]string {
	return scaling(map[string]string{"ABACUS_PARTITIONS": "6", "ABACUS_NUM_STANDBY_REPLICAS": "1", "ABACUS_PROCESSING_GUARANTEE": guarantee})
}

// standbyStatus is the part of /api/v1/streams/status about standbys.
type standbyStatus struct {
	StandbyTasks []struct {
		Partition int32 `json:"partition"`
		Lag       int64 `json:"lag"`
	} `json:"standby_tasks"`
}

// awaitStandbys waits until every member's view names the same members,
// owners and standbys; every partition has its n standbys (fewer when the
// group is smaller), never on its active member; and every standby runs
// where the placement puts it, caught up with its changelog. It returns
// the placement.
func awaitStandbys(t *testing.T, pods []*testkit.Instance, partitions, n int) testkit.Placement {
	t.Helper()
	var got testkit.Placement
	testkit.Eventually(t, 2*time.Minute, func() error {
		pl, err := testkit.AgreedPlacement(pods)
		if err != nil {
			return err
		}
		if len(pl.Active) != partitions {
			return fmt.Errorf("%d partitions owned, want %d", len(pl.Active), partitions)
		}
		for p := range int32(partitions) {
			if len(pl.Standbys[p]) != min(n, len(pods)-1) {
				return fmt.Errorf("partition %d has standbys %v, want %d", p, pl.Standbys[p], min(n, len(pods)-1))
			}
			if slices.Contains(pl.Standbys[p], pl.Active[p]) {
				t.Fatalf("partition %d's standby is on its active member %s: %s", p, pl.Active[p], pl)
			}
		}
		for _, in := range pods {
			var st standbyStatus
			if code, body, err := in.GetJSON("/api/v1/streams/status", &st); err != nil || code != 200 {
				return fmt.Errorf("%s: status %d %s %v", in.Name, code, body, err)
			}
			var running []int32
			for _, s := range st.StandbyTasks {
				if s.Lag != 0 {
					return fmt.Errorf("%s: standby %d lags %d records", in.Name, s.Partition, s.Lag)
				}
				running = append(running, s.Partition)
			}
			if placed := pl.KeptBy(in.Name); !slices.Equal(running, placed) {
				return fmt.Errorf("%s runs standbys %v, placed %v", in.Name, running, placed)
			}
		}
		got = pl
		return nil
	})
	return got
}

// changelogEnds reads the end offset of each changelog partition.
func changelogEnds(t *testing.T, brokers string, partitions int) []int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": brokers, "group.id": "changelog-ends", "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	ends := make([]int64, partitions)
	for p := range partitions {
		_, high, err := c.QueryWatermarkOffsets(changelog, int32(p), 10_000)
		if err != nil {
			t.Fatalf("changelog partition %d's end: %v", p, err)
		}
		ends[p] = high
	}
	return ends
}

// changelogRecords counts the committed records of the changelog
// partitions given, from offset from[p] on (all of them without from).
func changelogRecords(t *testing.T, brokers string, partitions []int32, from []int64) int {
	t.Helper()
	n := 0
	testkit.ReadTopic(t, brokers, changelog, "read_committed", func(m *kafka.Message) {
		p := m.TopicPartition.Partition
		if slices.Contains(partitions, p) && (from == nil || int64(m.TopicPartition.Offset) >= from[p]) {
			n++
		}
	})
	return n
}

// restoredFrom sums a member's restored records from one source.
func restoredFrom(t *testing.T, pods []*testkit.Instance, source string) float64 {
	t.Helper()
	var sum float64
	for _, in := range pods {
		sum += metric(t, in, "abacus_restored_records_total", `source="`+source+`"`)
	}
	return sum
}

// A member lost with its disk (kill -9, state directory deleted, never
// back) costs the survivors only a delta: its tasks restore from a
// standby copy, the survivor's own or a peer's snapshot, and no more than
// 10% of the lost tasks' keys come from the changelog. Every key is exact
// on the survivors, under both guarantees.
func TestLostMemberIsTakenOverFromStandbys(t *testing.T) {
	for _, guarantee := range []string{"at_least_once", "exactly_once_v2"} {
		t.Run(guarantee, func(t *testing.T) {
			b := testkit.StartBroker(t, 6)
			pods := trio(t, b.Addr(), standbyEnv(guarantee))
			w := skewed(91, 30_000, 3_000)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
			waitCounts(t, 2*time.Minute, pods, w.truth, false)
			pl := awaitStandbys(t, pods, 6, 1)

			victim, survivors := pods[1], []*testkit.Instance{pods[0], pods[2]}
			lost := map[int32]bool{}
			for p, m := range pl.Active {
				if m == victim.Name {
					lost[p] = true
				}
			}
			lostKeys := 0
			for k := range w.truth {
				if lost[partitioner.Murmur2([]byte(k), 6)] {
					lostKeys++
				}
			}
			changelogBefore := restoredFrom(t, survivors, "changelog")
			peerBefore := restoredFrom(t, survivors, "peer")
			victim.Kill()
			if err := os.RemoveAll(victim.StateDir); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			// Input keeps coming while the group has not noticed yet.
			more := skewed(92, 6_000, 3_000)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
			all := w.add(more)
			waitCounts(t, 2*time.Minute, survivors, all.truth, false)
			took := time.Since(killed)
			exactOnEveryMember(t, survivors, all.truth)
			noSessionFailures(t, survivors)

			fromChangelog := restoredFrom(t, survivors, "changelog") - changelogBefore
			fromPeers := restoredFrom(t, survivors, "peer") - peerBefore
			t.Logf("lost partitions %v (%d keys); every key exact %.1f s after the kill; survivors restored %v changelog records and %v keys of peers' snapshots",
				slices.Sorted(func(yield func(int32) bool) {
					for p := range lost {
						if !yield(p) {
							return
						}
					}
				}), lostKeys, took.Seconds(), fromChangelog, fromPeers)
			if fromChangelog > 0.10*float64(lostKeys) {
				t.Errorf("the survivors restored %v changelog records, more than 10%% of the %d keys of the lost tasks", fromChangelog, lostKeys)
			}
		})
	}
}

// Standbys follow the members: with 3, then 4, then 2 members every
// member computes the same placement, no standby is on its partition's
// active member, each partition has its copy, and each copy runs where it
// is placed, caught up.
func TestStandbyPlacementFollowsMembers(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := testkit.StartMembers(t, b.Addr(), 4, standbyEnv("at_least_once"))
	pods[3].Stop(time.Minute) // started with the others for its address; joins later
	w := skewed(93, 12_000, 1_500)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, pods[:3], w.truth, false)
	three := awaitStandbys(t, pods[:3], 6, 1)

	pods[3].Restart()
	pods[3].WaitReady(2 * time.Minute)
	four := awaitStandbys(t, pods, 6, 1)
	if four.String() == three.String() {
		t.Errorf("the placement did not change when a fourth member joined: %s", four)
	}

	pods[2].Stop(time.Minute)
	pods[3].Stop(time.Minute)
	two := awaitStandbys(t, pods[:2], 6, 1) // after the session timeout
	t.Logf("placements:\n3 members: %s\n4 members: %s\n2 members: %s", three, four, two)
	waitCounts(t, 2*time.Minute, pods[:2], w.truth, false)
	noSessionFailures(t, pods)
}

// appliedOnceCaughtUp waits up to a minute for the standbys of partitions
// on in to apply want changelog records in all, and returns how many they
// applied: want, or what they had when the minute ran out.
func appliedOnceCaughtUp(t *testing.T, in *testkit.Instance, partitions []int32, want int) float64 {
	t.Helper()
	var applied float64
	deadline := time.Now().Add(time.Minute)
	for {
		applied = 0
		for _, p := range partitions {
			applied += metric(t, in, "abacus_standby_records_applied_total", fmt.Sprintf("partition=\"%d\"", p))
		}
		if applied >= float64(want) || time.Now().After(deadline) {
			return applied
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A standby restarted on its own disk applies only what its changelogs
// gained while it was down. Restarted on a damaged disk it starts over
// from an empty store (the damaged one is moved aside, never read), and a
// takeover afterwards is exact.
func TestStandbyRestartsOnItsDiskAndRebuildsADamagedOne(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	env := standbyEnv("exactly_once_v2")
	// The member comes back within its session timeout: the group keeps
	// its place and the placement stays as it was.
	env["ABACUS_KAFKA_SESSION_TIMEOUT_MS"] = "30000"
	pods := trio(t, b.Addr(), env)
	w := skewed(94, 20_000, 2_000)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, pods, w.truth, false)
	pl := awaitStandbys(t, pods, 6, 1)

	keeper := pods[2]
	var kept, owned []int32
	for p := range int32(6) {
		if slices.Contains(pl.Standbys[p], keeper.Name) {
			kept = append(kept, p)
		}
		if pl.Active[p] == keeper.Name {
			owned = append(owned, p)
		}
	}
	before := changelogEnds(t, b.Addr(), 6)
	keeper.Stop(time.Minute)
	// Counted by the others while it is down: the keys of partitions it
	// does not own, its standbys' among them.
	more := skewed(95, 6_000, 2_000)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
	all := w.add(more)
	othersTruth := map[string]int64{}
	for k, n := range all.truth {
		if !slices.Contains(owned, partitioner.Murmur2([]byte(k), 6)) {
			othersTruth[k] = n
		}
	}
	waitCounts(t, 2*time.Minute, pods[:2], othersTruth, false)
	gained := changelogRecords(t, b.Addr(), kept, before)
	keeper.Restart()
	keeper.WaitReady(2 * time.Minute)
	awaitStandbys(t, pods, 6, 1)
	// The standbys catch up after the placement shows them: wait until
	// they applied what the changelogs gained.
	applied := appliedOnceCaughtUp(t, keeper, kept, gained)
	t.Logf("standbys %v: applied %v records after the restart; their changelogs gained %d records while it was down", kept, applied, gained)
	if applied != float64(gained) || gained == 0 {
		t.Errorf("restarted on its disk, the standbys applied %v records; want the %d their changelogs gained while it was down", applied, gained)
	}
	waitCounts(t, 2*time.Minute, pods, all.truth, false)

	// Damage: the store's MANIFEST is garbage when it starts again.
	keeper.Stop(time.Minute)
	dir := storeDir(keeper)
	testkit.Scribble(0.5)(t, dir+"/MANIFEST")
	keeper.Restart()
	keeper.WaitReady(2 * time.Minute)
	if !strings.Contains(keeper.Log(), "state store damaged") {
		t.Fatalf("the damaged store was not noticed:\n%s", tail(keeper.Log(), 40))
	}
	pl = awaitStandbys(t, pods, 6, 1)
	full := changelogRecords(t, b.Addr(), kept, nil)
	rebuilt := appliedOnceCaughtUp(t, keeper, kept, full)
	t.Logf("after the damage the standbys applied %v records, their changelogs hold %d", rebuilt, full)
	if rebuilt != float64(full) {
		t.Errorf("after the damage the standbys applied %v records; want all %d of their changelogs (rebuilt from the start)", rebuilt, full)
	}

	// A takeover from the rebuilt copy: the active of one of its standby
	// partitions is lost with its disk.
	var victim *testkit.Instance
	for _, in := range pods[:2] {
		if in.Name == pl.Active[kept[0]] {
			victim = in
		}
	}
	if victim == nil {
		t.Fatalf("partition %d's active is %s", kept[0], pl.Active[kept[0]])
	}
	victim.Kill()
	if err := os.RemoveAll(victim.StateDir); err != nil {
		t.Fatal(err)
	}
	var survivors []*testkit.Instance
	for _, in := range pods {
		if in != victim {
			survivors = append(survivors, in)
		}
	}
	waitCounts(t, 2*time.Minute, survivors, all.truth, false)
	exactOnEveryMember(t, survivors, all.truth)
	noSessionFailures(t, survivors)
}
