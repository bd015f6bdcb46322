package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// A scale-out seeds the new member's tasks from the old member's copies
// (docs/state.md, "Peer snapshots"): one member counts a workload alone, a
// second joins, and the tasks it takes over start from the first member's
// snapshots, not from their changelogs. Every peer call to the first
// member goes through an HTTP proxy, which in the fault cases cuts each
// snapshot off in transit or changes one of its bytes, in a way HTTP lets
// through: the new member refuses the snapshot, says so, and restores the
// task from its changelog. Every key stays exact, under both guarantees.
func TestPeerSnapshotSeedsAScaleOut(t *testing.T) {
	for _, guarantee := range []string{"at_least_once", "exactly_once_v2"} {
		t.Run(guarantee, func(t *testing.T) {
			for _, tc := range []struct {
				name  string
				fault testkit.BodyFault
				// refusal is what the new member's log says of a faulted snapshot.
				refusal []string
			}{
				{name: "intact"},
				{name: "cut off in transit", fault: testkit.BodyFault{CutAfter: 2000}, refusal: []string{"snapshot cut off after 2000 bytes"}},
				{name: "corrupted in transit", fault: testkit.BodyFault{Flip: true, FlipAt: 3000},
					refusal: []string{"snapshot corrupt", "snapshot cut off"}},
			} {
				t.Run(tc.name, func(t *testing.T) { scaleOutFromSnapshots(t, guarantee, tc.fault, tc.refusal) })
			}
		})
	}
}

func scaleOutFromSnapshots(t *testing.T, guarantee string, fault testkit.BodyFault, refusal []string) {
	b := testkit.StartBroker(t, 4)
	// Members find each other at 127.0.0.(ordinal+1): abacus-0's address
	// is the proxy's, and abacus-0 itself listens behind it.
	port := testkit.FreePort(t)
	// The record cache off sends every count to the changelog: a
	// changelog of many records per key, as a long-lived one is (kfake
	// never compacts), against which a snapshot holds one per key.
	env := steady(map[string]string{
		"ABACUS_CACHE_MAX_BYTES":      "0",
		"ABACUS_PROCESSING_GUARANTEE": guarantee,
		"ABACUS_PEER_URL_TEMPLATE":    fmt.Sprintf("http://127.0.0.{{add .Ordinal 1}}:%d", port),
	})
	const firstHost = "127.0.0.9"
	proxy := testkit.StartHTTPProxy(t, fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("http://%s:%d", firstHost, port))
	first := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Host: firstHost, Port: port, Env: env})
	first.WaitReady(time.Minute)
	w := skewed(31, 20_000, 2_000)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{first}, w.truth, false)

	fault.PathSuffix = "/snapshot"
	proxy.SetFault(fault)
	second := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-1", Brokers: b.Addr(), Host: "127.0.0.2", Port: port, Env: env})
	second.WaitReady(2 * time.Minute)
	taken := takenOver(t, first, second)
	members := []*testkit.Instance{first, second}
	waitCounts(t, time.Minute, members, w.truth, false)

	keys := 0 // the keys of the partitions taken over
	for k := range w.truth {
		if slices.Contains(taken, partitioner.Murmur2([]byte(k), 4)) {
			keys++
		}
	}
	logged := changelogRecords(t, b.Addr(), taken, nil)
	fetched := func(outcome string) float64 {
		return metric(t, second, "abacus_snapshots_fetched_total", `outcome="`+outcome+`"`)
	}
	peerRecords := metric(t, second, "abacus_restored_records_total", `source="peer"`)
	fromChangelog := metric(t, second, "abacus_restored_records_total", `source="changelog"`)
	t.Logf("abacus-1 took partitions %v over (%d keys, %d changelog records): %v records from abacus-0's snapshots (%v bytes), %v from the changelog",
		taken, keys, logged, peerRecords, metric(t, second, "abacus_restored_bytes_total", `source="peer"`), fromChangelog)
	if got := metric(t, first, "abacus_snapshots_served_total", `outcome="ok"`); got != float64(len(taken)) {
		t.Errorf("abacus-0 sent %v snapshots whole; want one per partition taken over (%d)", got, len(taken))
	}
	if got := proxy.Matched(); got != int64(len(taken)) {
		t.Errorf("%d snapshot answers went through the proxy; want %d", got, len(taken))
	}
	if refusal == nil {
		if fetched("seeded") != float64(len(taken)) || fetched("failed") != 0 || fetched("no_copy") != 0 {
			t.Errorf("abacus-1's snapshots: seeded %v, failed %v, no copy %v; want every one of the %d seeded",
				fetched("seeded"), fetched("failed"), fetched("no_copy"), len(taken))
		}
		if peerRecords != float64(keys) {
			t.Errorf("abacus-1 seeded %v records from abacus-0; want the %d keys of its partitions", peerRecords, keys)
		}
		// abacus-0 committed its last counts of them before it let them go.
		if fromChangelog != 0 {
			t.Errorf("abacus-1 restored %v changelog records past the snapshots; want none", fromChangelog)
		}
		sent, got := metric(t, first, "abacus_snapshot_served_bytes_total"), metric(t, second, "abacus_restored_bytes_total", `source="peer"`)
		if sent != got || got <= 0 {
			t.Errorf("abacus-1 seeded %v bytes; abacus-0 sent %v", got, sent)
		}
		checkLiveSnapshots(t, first, second, taken, w.truth)
	} else {
		if got := proxy.Faulted(); got != int64(len(taken)) {
			t.Errorf("the proxy damaged %d snapshots; want %d (are the snapshots shorter than the fault's offset?)", got, len(taken))
		}
		if fetched("failed") != float64(len(taken)) || fetched("seeded") != 0 {
			t.Errorf("abacus-1's snapshots: seeded %v, failed %v; want every one of the %d refused", fetched("seeded"), fetched("failed"), len(taken))
		}
		if peerRecords != 0 || fromChangelog != float64(logged) {
			t.Errorf("abacus-1 restored %v records from snapshots and %v from the changelog; want none and all %d", peerRecords, fromChangelog, logged)
		}
		log := second.Log()
		refused := strings.Count(log, "no copy of the task from a peer: restoring it from the changelog")
		said := slices.ContainsFunc(refusal, func(s string) bool { return strings.Contains(log, s) })
		if refused != len(taken) || !said {
			t.Errorf("abacus-1 logged %d refused copies; want %d, saying one of %q", refused, len(taken), refusal)
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "no copy of the task from a peer") {
				t.Logf("abacus-1: %s", line)
			}
		}
	}

	// Counting goes on from the tasks' new state.
	more := skewed(32, 4_000, 2_000)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
	all := w.add(more)
	waitCounts(t, 2*time.Minute, members, all.truth, false)
	checkTopic(t, b.Addr(), changelog, "read_committed", all.truth, false)
}

// checkLiveSnapshots checks the routes between members as openapi.yaml
// describes them, and that a live snapshot holds exactly its partition's
// counts: the first member's of a partition it kept, and a copy it kept of
// one it gave up, and the second member's answer for a partition it
// holds no copy of.
func checkLiveSnapshots(t *testing.T, first, second *testkit.Instance, taken []int32, truth map[string]int64) {
	t.Helper()
	spec := loadOpenAPI(t)
	var kept int32
	for slices.Contains(taken, kept) {
		kept++
	}
	for _, p := range []int32{kept, taken[0]} {
		resp, body := testkit.MustFetch(t, first.URL+api.TaskCheckpointPath(p), nil)
		if err := spec.check(resp, body, "", openapi3filter.Options{}); err != nil || resp.StatusCode != 200 {
			t.Errorf("abacus-0's checkpoint of partition %d: %d %s: %v", p, resp.StatusCode, body, err)
		}
		resp, body = testkit.MustFetch(t, first.URL+api.TaskSnapshotPath(p), nil)
		if err := spec.check(resp, nil, "", openapi3filter.Options{ExcludeResponseBody: true}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("abacus-0's snapshot of partition %d: %d: %v", p, resp.StatusCode, err)
		}
		db, err := store.Open(store.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		st := db.Partition(p)
		if _, err := st.ReadSnapshot(bytes.NewReader(body)); err != nil {
			t.Errorf("abacus-0's snapshot of partition %d: %v", p, err)
		}
		got := map[string]int64{}
		if err := st.Scan(store.ScanOptions{}, func(k []byte, v int64) bool { got[string(k)] = v; return true }); err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{}
		for k, n := range truth {
			if partitioner.Murmur2([]byte(k), 4) == p {
				want[k] = n
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("abacus-0's snapshot of partition %d holds %d keys; want the %d of the partition with their counts", p, len(got), len(want))
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, path := range []string{api.TaskCheckpointPath(kept), api.TaskSnapshotPath(kept)} {
		resp, body := testkit.MustFetch(t, second.URL+path, nil)
		if err := spec.check(resp, body, "", openapi3filter.Options{}); err != nil || resp.StatusCode != 404 || !strings.Contains(string(body), `"no_copy"`) {
			t.Errorf("abacus-1's %s: %d %s: %v; want 404 no_copy", path, resp.StatusCode, body, err)
		}
	}
}

// takenOver waits until the second member owns partitions, every one of
// the four is active on one member, and returns the second's.
func takenOver(t *testing.T, first, second *testkit.Instance) []int32 {
	t.Helper()
	var taken []int32
	testkit.Eventually(t, 2*time.Minute, func() error {
		var all []int32
		taken = nil
		for _, in := range []*testkit.Instance{first, second} {
			var st struct {
				ActiveTasks []struct{ Partition int32 } `json:"active_tasks"`
			}
			code, body, err := in.Get("/api/v1/streams/status")
			if err != nil || code != 200 || json.Unmarshal(body, &st) != nil {
				return fmt.Errorf("status of %s: %d %s %v", in.Name, code, body, err)
			}
			for _, tk := range st.ActiveTasks {
				all = append(all, tk.Partition)
				if in == second {
					taken = append(taken, tk.Partition)
				}
			}
		}
		slices.Sort(all)
		if len(taken) == 0 || !slices.Equal(all, []int32{0, 1, 2, 3}) {
			return fmt.Errorf("active tasks %v, of them %v on %s", all, taken, second.Name)
		}
		return nil
	})
	slices.Sort(taken)
	return taken
}
