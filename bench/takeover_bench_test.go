package bench

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// The takeover benchmark: three members, one lost with its disk.
const (
	takeoverPartitions = 6
	// takeoverSample keys of each moved partition are asked until they
	// answer; a task answers all its keys or none (a restoring task is a
	// 503), so a few per partition time it, and every key is checked once
	// afterwards.
	takeoverSample = 20

	// A short session timeout, so that the group moves a lost static
	// member's tasks after 6 s rather than the chart's 60 s: the wait is
	// the same with and without standbys, and the restore after it is what
	// is measured.
	takeoverSessionMS   = "6000"
	takeoverHeartbeatMS = "1000"

	// With a copy on every survivor (2 standbys of 3 members) the restore
	// must not grow with the state: the time to the last moved task active
	// at 1M keys at most twice that at 100k keys. With one standby a moved task lands on its copy only when
	// the group's assignor, which knows nothing of standbys, happens to put
	// it there; elsewhere it is copied from the peer, which grows with the
	// keys: that run is reported by path, without a target. With any
	// standby the changelog serves at most a tenth of the moved keys (the
	// rest is already on the survivors).
	targetTakeoverGrowth    = 2.0
	targetTakeoverChangelog = 0.10
	everySurvivor           = 2 // standbys that put a copy on every survivor
)

// takeoverSizes are the state sizes, in keys (one record each), and
// takeoverStandbys the ABACUS_NUM_STANDBY_REPLICAS of the runs.
var (
	takeoverSizes    = []int{100_000, 1_000_000}
	takeoverStandbys = []int{0, 1, everySurvivor}
)

// Restore sources, as abacus labels them.
var restoreSources = []string{"changelog", "peer"}

// takeoverRun is what one takeover measured.
type takeoverRun struct {
	keys, standbys int
	victim         string
	moved          []int32 // the victim's partitions
	movedKeys      int
	// per moved partition: the survivor that took it, whether that
	// survivor kept a standby of it before the kill, and what its restore
	// read from each source
	owner      map[int32]string
	hadStandby map[int32]bool
	records    map[int32]map[string]float64
	bytes      map[int32]map[string]float64
	toMoved    time.Duration // (1) kill to every moved partition a survivor's task
	toAnswered time.Duration // (2) from then to every sampled key answered
	toActive   time.Duration // from the end of (1) to the last moved task's "task active" log line
	// per moved partition: from the end of (1) to its sampled keys
	// answered, and to its "task active" log line
	answered, active map[int32]time.Duration
	check            time.Duration // the check of every moved key, after (2)
	wrong            []string      // moved keys that did not answer their count
	standbyRecs      float64       // standby records the survivors applied from the kill to the end of the check
	logs             []string      // what the survivors logged about restores, peers and standbys after the kill
}

// path is where moved partition p's restore took its state from: the
// survivor's own standby, a peer's snapshot, or the changelog alone.
func (r takeoverRun) path(p int32) string {
	switch {
	case r.hadStandby[p]:
		return "its standby"
	case r.records[p]["peer"] > 0:
		return "peer snapshot"
	}
	return "changelog"
}

// pathAnswered is the longest (2) of the moved partitions restored by
// path, and whether there was one.
func (r takeoverRun) pathAnswered(path string) (time.Duration, bool) {
	var d time.Duration
	found := false
	for _, p := range r.moved {
		if r.path(p) == path {
			d, found = max(d, r.answered[p]), true
		}
	}
	return d, found
}

func (r takeoverRun) sum(m map[int32]map[string]float64, source string) float64 {
	var s float64
	for _, p := range r.moved {
		s += m[p][source]
	}
	return s
}

// BenchmarkTakeover measures the takeover of a member lost with its disk
// (kill -9, its state directory deleted, never back) by the two others,
// with 0, 1 and 2 standby replicas and 100k and 1M keys: (1) the time
// from the kill until every partition of the victim is a task of a
// survivor (the session timeout, mostly) and (2) the time from then until
// every key of those partitions answers its exact count through a
// survivor (the restore). Restored from a standby copy, (2) must not grow
// with the state.
func BenchmarkTakeover(b *testing.B) {
	testkit.Binary(b) // build before any clock starts
	stall0, psiErr := cpuStall()
	wall0 := time.Now()
	var runs []takeoverRun
	for _, keys := range takeoverSizes {
		b.Run(sizeLabel(keys), func(b *testing.B) {
			for range b.N {
				br := testkit.StartBroker(b, takeoverPartitions)
				admin := newAdmin(b, br.Addr())
				for _, n := range takeoverStandbys {
					r := takeover(b, br.Addr(), admin, keys, n)
					fmt.Printf("takeover: %s keys, %d standby: %d keys moved, (1) %s s, (2) %.3f s; restored %.0f changelog records, %.0f peer records\n",
						sizeLabel(keys), n, r.movedKeys, secs(r.toMoved), r.toAnswered.Seconds(), r.sum(r.records, "changelog"), r.sum(r.records, "peer"))
					b.ReportMetric(r.toMoved.Seconds(), fmt.Sprintf("moved_s_standby%d", n))
					b.ReportMetric(r.toAnswered.Seconds(), fmt.Sprintf("restore_s_standby%d", n))
					runs = append(runs, r)
				}
			}
		})
	}
	pressure := -1.0 // unknown
	if stall1, err := cpuStall(); err == nil && psiErr == nil {
		pressure = float64(stall1-stall0) / float64(time.Since(wall0))
	}
	reportTakeover(os.Stdout, runs, pressure)
}

// distinctKeys makes one record per key, "key-0000042" in order.
func distinctKeys(n int) []testkit.Record {
	out := make([]testkit.Record, n)
	for i := range out {
		out[i] = testkit.Record{Key: fmt.Appendf(nil, "key-%07d", i), Value: []byte("1")}
	}
	return out
}

func sizeLabel(keys int) string {
	if keys >= 1_000_000 && keys%1_000_000 == 0 {
		return fmt.Sprintf("%dM", keys/1_000_000)
	}
	return fmt.Sprintf("%dk", keys/1_000)
}

// takeover runs three members of a fresh application with n standbys,
// gives them their input (keys records, one per key) once the group has
// settled, kills one with its disk once every standby is caught up, and
// times the takeover.
func takeover(b *testing.B, brokers string, admin *kafkaAdmin, keys, n int) takeoverRun {
	b.Helper()
	app := fmt.Sprintf("takeover-%s-%d", sizeLabel(keys), n)
	input := app + "-input"
	admin.createTopic(input, takeoverPartitions)
	pods := testkit.StartMembers(b, brokers, 3, map[string]string{
		"ABACUS_APPLICATION_ID":              app,
		"ABACUS_INPUT_TOPIC":                 input,
		"ABACUS_OUTPUT_TOPIC":                app + "-counts",
		"ABACUS_PARTITIONS":                  fmt.Sprint(takeoverPartitions),
		"ABACUS_NUM_STANDBY_REPLICAS":        fmt.Sprint(n),
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS":    takeoverSessionMS,
		"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS": takeoverHeartbeatMS,
	})
	// The survivors stop here, not when the benchmark ends, so that one
	// run's members do not take CPU from the next.
	defer func() {
		for _, in := range pods {
			in.Kill()
		}
	}()
	// The input comes once the group has settled: a member that counts
	// partitions before the group gives them to another keeps their store
	// after it (for the cleanup delay), a copy of the victim's tasks that
	// neither a standby nor a peer snapshot of a real takeover would have
	// (without standbys the takeover would restore from it, not from the
	// changelog).
	awaitSettled(b, pods)
	began := time.Now()
	testkit.Produce(b, brokers, input, "murmur2_random", distinctKeys(keys))
	fmt.Printf("takeover: produced %d keys (one record each) to %s in %s\n", keys, input, time.Since(began).Round(time.Millisecond))
	poll(b, pods[0], app+": input fully committed", 5*time.Minute, 100*time.Millisecond, func() (bool, error) {
		c, err := admin.committed(app, input)
		return c >= int64(keys), err
	})
	// Warm standbys first: otherwise the takeover would measure their
	// warm-up, not the takeover.
	active, standbys := awaitWarm(b, pods, admin, changelogOf(app), n)

	// The victim's tasks go to the survivors as the group's assignor
	// decides, which knows nothing of standbys: a moved task lands on the
	// survivor that keeps its standby or on the other one, which then
	// seeds it from a peer's snapshot. Which of the two happens depends on
	// the partitions the victim held, so on the order in which the members
	// joined; the report says which path each moved task took.
	victim, survivors := pods[1], []*testkit.Instance{pods[0], pods[2]}
	r := takeoverRun{keys: keys, standbys: n, victim: victim.Name, owner: map[int32]string{}, hadStandby: map[int32]bool{},
		records: map[int32]map[string]float64{}, bytes: map[int32]map[string]float64{},
		answered: map[int32]time.Duration{}, active: map[int32]time.Duration{}}
	for p, m := range active {
		if m == victim.Name {
			r.moved = append(r.moved, p)
		}
	}
	slices.Sort(r.moved)
	if len(r.moved) == 0 {
		b.Fatalf("%s owns no partition: %v", victim.Name, active)
	}
	movedKeys := map[int32][]string{}
	for i := range keys {
		k := fmt.Sprintf("key-%07d", i)
		if p := partitioner.Murmur2([]byte(k), takeoverPartitions); slices.Contains(r.moved, p) {
			movedKeys[p] = append(movedKeys[p], k)
			r.movedKeys++
		}
	}
	recordsBefore, bytesBefore := restoredBy(b, survivors, r.moved)
	applied0 := standbyApplied(b, survivors)

	killed := time.Now()
	victim.Kill()
	if err := os.RemoveAll(victim.StateDir); err != nil {
		b.Fatal(err)
	}

	// (1) Each survivor's own task list says when it got a partition; the
	// cluster view would say it later (it is refreshed from the group's
	// description after the rebalance).
	movedAt := poll(b, survivors[0], app+": the victim's partitions tasks of survivors", 2*time.Minute, 5*time.Millisecond, func() (bool, error) {
		for _, in := range survivors {
			st, err := status(in)
			if err != nil {
				continue // the other survivor may answer
			}
			for _, t := range slices.Concat(st.Active, st.Restoring) {
				if slices.Contains(r.moved, t.Partition) && r.owner[t.Partition] == "" {
					r.owner[t.Partition] = in.Name
				}
			}
		}
		return len(r.owner) == len(r.moved), nil
	})
	r.toMoved = movedAt.Sub(killed)
	for _, p := range r.moved {
		r.hadStandby[p] = slices.Contains(standbys[p], r.owner[p])
	}

	// (2) A sample of each moved partition's keys, asked through both
	// survivors in turn, until each has been answered once: a 200 or a 404
	// comes only from a restored task, and the check of every key below
	// tells a wrong count, so that a wrong answer ends the wait instead of
	// holding it to its deadline. A partition's first key is asked every
	// 2 ms, its others only once it has answered (a task answers all its
	// keys or none), so that the polling neither blurs the end of a
	// restore of a few milliseconds nor takes much CPU from a longer one.
	var pending [][]string // per moved partition, the sampled keys not answered yet
	for _, p := range r.moved {
		ks := movedKeys[p]
		m := min(takeoverSample, len(ks))
		var sample []string
		for i := range m {
			sample = append(sample, ks[i*len(ks)/m])
		}
		pending = append(pending, sample)
	}
	asked := 0
	answeredAt := poll(b, survivors[0], app+": the sampled keys answering", 5*time.Minute, 2*time.Millisecond, func() (bool, error) {
		done := true
		for i, ks := range pending {
			if len(ks) == 0 {
				continue
			}
			for len(ks) > 0 {
				asked++
				if _, code, err := survivors[asked%2].Count(storeName, ks[0]); err != nil || (code != 200 && code != 404) {
					break
				}
				ks = ks[1:]
			}
			if pending[i] = ks; len(ks) == 0 {
				r.answered[r.moved[i]] = time.Since(movedAt)
			}
			done = done && len(ks) == 0
		}
		return done, nil
	})
	r.toAnswered = answeredAt.Sub(movedAt)
	// The owners' own word on when each moved task became active: it
	// tells the restore from the answers' way through the survivors.
	for _, p := range r.moved {
		for _, in := range survivors {
			if in.Name == r.owner[p] {
				r.active[p] = logTime(in.Log(), killed, `msg="task active"`, fmt.Sprintf(" task=%d ", p)).Sub(movedAt)
				r.toActive = max(r.toActive, r.active[p])
			}
		}
	}

	// Every moved key, once.
	checked := time.Now()
	r.wrong = checkEvery(slices.Concat(slices.Collect(maps.Values(movedKeys))...), survivors)
	r.check = time.Since(checked)
	if len(r.wrong) > 0 {
		b.Errorf("%s: %d of the %d moved keys did not answer a count of 1 after the takeover, e.g. %s",
			app, len(r.wrong), r.movedKeys, strings.Join(r.wrong[:min(5, len(r.wrong))], "; "))
	}

	r.standbyRecs = standbyApplied(b, survivors) - applied0
	recordsAfter, bytesAfter := restoredBy(b, survivors, r.moved)
	for _, p := range r.moved {
		r.records[p], r.bytes[p] = map[string]float64{}, map[string]float64{}
		for _, s := range restoreSources {
			r.records[p][s] = recordsAfter[p][s] - recordsBefore[p][s]
			r.bytes[p][s] = bytesAfter[p][s] - bytesBefore[p][s]
		}
	}
	for _, in := range survivors {
		for _, line := range restoreLines(in.Log(), killed) {
			r.logs = append(r.logs, in.Name+": "+line)
		}
	}
	return r
}

// takeoverStatus is the part of /api/v1/streams/status the takeover reads.
type takeoverStatus struct {
	Active    []takeoverTask `json:"active_tasks"`
	Restoring []takeoverTask `json:"restoring_tasks"`
	Standby   []takeoverTask `json:"standby_tasks"`
}

type takeoverTask struct {
	Partition  int32  `json:"partition"`
	Checkpoint int64  `json:"checkpoint"`
	Lag        *int64 `json:"lag"`
}

func status(in *testkit.Instance) (takeoverStatus, error) {
	var st takeoverStatus
	code, body, err := in.GetJSON("/api/v1/streams/status", &st)
	if err == nil && code != 200 {
		err = fmt.Errorf("status %d: %s", code, body)
	}
	return st, err
}

// awaitSettled waits until every member's view names the three members,
// each the owner of a third of the partitions (the end of the group's
// cooperative rebalances), the same everywhere, and every member runs
// exactly the tasks its view gives it.
func awaitSettled(b *testing.B, pods []*testkit.Instance) {
	b.Helper()
	testkit.Eventually(b, 2*time.Minute, func() error {
		pl, err := testkit.AgreedPlacement(pods)
		if err != nil {
			return err
		}
		for _, in := range pods {
			var mine []int32
			for p, m := range pl.Active {
				if m == in.Name {
					mine = append(mine, p)
				}
			}
			if len(mine) != takeoverPartitions/len(pods) {
				return fmt.Errorf("%s owns %v: %s", in.Name, mine, pl)
			}
			st, err := status(in)
			if err != nil {
				return fmt.Errorf("%s: %v", in.Name, err)
			}
			var tasks []int32
			for _, t := range slices.Concat(st.Active, st.Restoring) {
				tasks = append(tasks, t.Partition)
			}
			slices.Sort(tasks)
			slices.Sort(mine)
			if !slices.Equal(tasks, mine) {
				return fmt.Errorf("%s runs tasks %v, its view gives it %v", in.Name, tasks, mine)
			}
		}
		return nil
	})
}

// awaitWarm waits until every member's view names the three members and
// the same owner of every partition, every partition has n standbys off
// its active member, and every member runs exactly the standbys placed on
// it, each with lag 0 and its checkpoint at its changelog's last offset.
// It returns each partition's active member and standbys.
func awaitWarm(b *testing.B, pods []*testkit.Instance, admin *kafkaAdmin, changelog string, n int) (map[int32]string, map[int32][]string) {
	b.Helper()
	var active map[int32]string
	var standbys map[int32][]string
	testkit.Eventually(b, 3*time.Minute, func() error {
		pl, err := testkit.AgreedPlacement(pods)
		if err != nil {
			return err
		}
		if len(pl.Active) != takeoverPartitions {
			return fmt.Errorf("%d partitions owned, want %d", len(pl.Active), takeoverPartitions)
		}
		for p := range int32(takeoverPartitions) {
			if len(pl.Standbys[p]) != n || slices.Contains(pl.Standbys[p], pl.Active[p]) {
				return fmt.Errorf("partition %d, active on %s, has standbys %v; want %d elsewhere", p, pl.Active[p], pl.Standbys[p], n)
			}
		}
		active, standbys = pl.Active, pl.Standbys
		ends := changelogEnds(admin, changelog)
		for _, in := range pods {
			st, err := status(in)
			if err != nil {
				return fmt.Errorf("%s: %v", in.Name, err)
			}
			var running []int32
			for _, t := range st.Standby {
				if t.Lag == nil || *t.Lag != 0 || t.Checkpoint < ends[t.Partition]-1 {
					return fmt.Errorf("%s: standby %d at checkpoint %d (lag %v), changelog ends at %d", in.Name, t.Partition, t.Checkpoint, t.Lag, ends[t.Partition])
				}
				running = append(running, t.Partition)
			}
			slices.Sort(running)
			if placed := pl.KeptBy(in.Name); !slices.Equal(running, placed) {
				return fmt.Errorf("%s runs standbys %v, placed %v", in.Name, running, placed)
			}
		}
		return nil
	})
	return active, standbys
}

// changelogEnds is each changelog partition's end offset.
func changelogEnds(admin *kafkaAdmin, topic string) map[int32]int64 {
	return admin.offsets(topic, kafka.LatestOffsetSpec)
}

// restoredBy sums the survivors' abacus_restored_records_total and
// abacus_restored_bytes_total by partition and source.
func restoredBy(b *testing.B, pods []*testkit.Instance, partitions []int32) (records, bytes map[int32]map[string]float64) {
	b.Helper()
	records, bytes = map[int32]map[string]float64{}, map[int32]map[string]float64{}
	for _, p := range partitions {
		records[p], bytes[p] = map[string]float64{}, map[string]float64{}
	}
	for _, in := range pods {
		code, body, err := in.Get("/metrics")
		if err != nil || code != 200 {
			b.Fatalf("%s: /metrics: %d %v", in.Name, code, err)
		}
		for _, p := range partitions {
			part := fmt.Sprintf("partition=%q", fmt.Sprint(p))
			for _, s := range restoreSources {
				src := fmt.Sprintf("source=%q", s)
				records[p][s] += testkit.SumMetric(body, "abacus_restored_records_total", part, src)
				bytes[p][s] += testkit.SumMetric(body, "abacus_restored_bytes_total", part, src)
			}
		}
	}
	return records, bytes
}

// standbyApplied sums the survivors' abacus_standby_records_applied_total.
func standbyApplied(b *testing.B, pods []*testkit.Instance) float64 {
	b.Helper()
	var sum float64
	for _, in := range pods {
		sum += testkit.MustMetric(b, in, "abacus_standby_records_applied_total")
	}
	return sum
}

// checkEvery asks for every key through the members in turn, eight at a
// time, and returns those that did not answer a count of 1: a 404 or
// another count at once, a 503 or no answer for a minute.
func checkEvery(keys []string, pods []*testkit.Instance) []string {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		wrong []string
		wg    sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				k := keys[i]
				deadline := time.Now().Add(time.Minute)
				for {
					kc, code, err := pods[i%len(pods)].Count(storeName, k)
					if err == nil && code == 200 && kc.Value == 1 {
						break
					}
					if (err == nil && code != 503) || time.Now().After(deadline) {
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("%s: %d %d %v", k, code, kc.Value, err))
						mu.Unlock()
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	return wrong
}

// logTime is the time of the first log line at or after since that holds
// every one of parts (zero if there is none).
func logTime(log string, since time.Time, parts ...string) time.Time {
	for line := range strings.Lines(log) {
		if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(line, s) }) {
			stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil && !t.Before(since) {
				return t
			}
		}
	}
	return time.Time{}
}

// restoreLines are the log lines about restores, peer copies and standbys
// written at or after since (slog's text format: time=<RFC 3339> first).
func restoreLines(log string, since time.Time) []string {
	var out []string
	for line := range strings.Lines(log) {
		if !slices.ContainsFunc([]string{"seeded", "peer", "standby", `msg="restoring task from changelog"`, `msg="task restored"`},
			func(s string) bool { return strings.Contains(line, s) }) {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if t, err := time.Parse(time.RFC3339Nano, stamp); err == nil && t.Before(since) {
			continue
		}
		out = append(out, strings.TrimSpace(line))
	}
	return out
}

// reportTakeover prints the runs and the targets; pressure is the share of
// the runs during which some task waited for a CPU (< 0: unknown).
func reportTakeover(w io.Writer, runs []takeoverRun, pressure float64) {
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(w, "\ntakeover of a lost member: 3 members, %d partitions, one record per key; kill -9 of %s, its state dir deleted, never back; session timeout %s ms, heartbeat %s ms\n",
		takeoverPartitions, runs[0].victim, takeoverSessionMS, takeoverHeartbeatMS)
	if pressure >= 0 {
		fmt.Fprintf(w, "machine load: some task waited for a CPU during %.0f%% of the runs (PSI cpu some)\n", 100*pressure)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "keys\tstandbys\tmoved partitions\ttaken by their standby\tkeys moved\tchangelog records\tchangelog bytes\tpeer records\tpeer bytes\t(1) kill to moved s\t(2) moved to answered s\tof which to task active s\tkill to answered s\tcheck of every moved key s\tstandby records applied\t")
	for _, r := range runs {
		onStandby := 0
		for _, p := range r.moved {
			if r.hadStandby[p] {
				onStandby++
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%v\t%d of %d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%s\t%.3f\t%.3f\t%s\t%s\t%.0f\t\n",
			sizeLabel(r.keys), r.standbys, r.moved, onStandby, len(r.moved), r.movedKeys,
			r.sum(r.records, "changelog"), r.sum(r.bytes, "changelog"), r.sum(r.records, "peer"), r.sum(r.bytes, "peer"),
			secs(r.toMoved), r.toAnswered.Seconds(), r.toActive.Seconds(), secs(r.toMoved+r.toAnswered), secs(r.check), r.standbyRecs)
	}
	tw.Flush()
	fmt.Fprintf(w, "(1): the kill to every moved partition a task (restoring or active) of a survivor, their status polled every 5 ms; (2): from then to %d keys of each moved partition answered through the survivors in turn, polled every 2 ms; to task active: the owners' \"task active\" log lines; standby records applied: by the survivors from the kill to the end of the check, rebuilding the copies lost with the victim\n",
		takeoverSample)

	fmt.Fprintf(w, "\nper moved partition: the survivor that took it, whether it kept the standby of it (the group's assignor knows nothing of standbys), what its restore read, and its own (2)\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "keys\tstandbys\tpartition\ttaken by\tits standby\tstate from\tchangelog records\tpeer records\t(2) s\tto task active s\t")
	for _, r := range runs {
		for _, p := range r.moved {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%.0f\t%.0f\t%.3f\t%.3f\t\n", sizeLabel(r.keys), r.standbys, p, r.owner[p],
				map[bool]string{true: "yes", false: "no"}[r.hadStandby[p]], r.path(p), r.records[p]["changelog"], r.records[p]["peer"],
				r.answered[p].Seconds(), r.active[p].Seconds())
		}
	}
	tw.Flush()

	fmt.Fprintf(w, "\nwhat the survivors logged about restores, peers and standbys after the kill:\n")
	for _, r := range runs {
		fmt.Fprintf(w, "%s keys, %d standby:\n", sizeLabel(r.keys), r.standbys)
		for _, line := range r.logs {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tvalue\ttarget\tresult")
	small, large := slices.Min(takeoverSizes), slices.Max(takeoverSizes)
	for _, n := range takeoverStandbys {
		var s, l *takeoverRun
		for i := range runs {
			if runs[i].standbys == n && runs[i].keys == small {
				s = &runs[i]
			}
			if runs[i].standbys == n && runs[i].keys == large {
				l = &runs[i]
			}
		}
		if s == nil || l == nil {
			continue
		}
		ratio := l.toAnswered.Seconds() / s.toAnswered.Seconds()
		name := fmt.Sprintf("(2) at %s / (2) at %s, %d standby", sizeLabel(large), sizeLabel(small), n)
		fmt.Fprintf(tw, "%s\t%.2f (%.3f s / %.3f s)\t-\t-\n", name, ratio, l.toAnswered.Seconds(), s.toAnswered.Seconds())
		// The target is on the restore itself, to the last moved task
		// active: (2) adds the lookups' own way to the new owner, whose
		// time on a loaded machine is not the restore's.
		active := l.toActive.Seconds() / s.toActive.Seconds()
		name = fmt.Sprintf("  to task active at %s / at %s, %d standby", sizeLabel(large), sizeLabel(small), n)
		if n != everySurvivor {
			fmt.Fprintf(tw, "%s\t%.2f (%.3f s / %.3f s)\t-\t-\n", name, active, l.toActive.Seconds(), s.toActive.Seconds())
		} else {
			fmt.Fprintf(tw, "%s\t%.2f (%.3f s / %.3f s)\t<= %.2f\t%s\n", name, active, l.toActive.Seconds(), s.toActive.Seconds(),
				targetTakeoverGrowth, verdict(active <= targetTakeoverGrowth))
		}
		if n == 0 {
			continue
		}
		// The same by path, (2) above being its slowest moved task's: the
		// two runs may have taken different paths (see takeover).
		for _, path := range []string{"its standby", "peer snapshot", "changelog"} {
			ds, oks := s.pathAnswered(path)
			dl, okl := l.pathAnswered(path)
			switch {
			case oks && okl:
				fmt.Fprintf(tw, "  of the tasks restored from %s\t%.2f (%.3f s / %.3f s)\t-\t-\n", path, dl.Seconds()/ds.Seconds(), dl.Seconds(), ds.Seconds())
			case oks:
				fmt.Fprintf(tw, "  of the tasks restored from %s\tonly at %s (%.3f s)\t-\t-\n", path, sizeLabel(small), ds.Seconds())
			case okl:
				fmt.Fprintf(tw, "  of the tasks restored from %s\tonly at %s (%.3f s)\t-\t-\n", path, sizeLabel(large), dl.Seconds())
			}
		}
	}
	for _, r := range runs {
		if r.standbys == 0 {
			continue
		}
		share := r.sum(r.records, "changelog") / float64(r.movedKeys)
		fmt.Fprintf(tw, "changelog records / keys moved, %s keys, %d standby\t%.3f (%.0f / %d)\t<= %.2f\t%s\n",
			sizeLabel(r.keys), r.standbys, share, r.sum(r.records, "changelog"), r.movedKeys, targetTakeoverChangelog, verdict(share <= targetTakeoverChangelog))
	}
	tw.Flush()
}
