package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// Acceptance 1: exact counts of a skewed workload, in the store, on the
// output topic and on the changelog.
func TestExactCounts(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	w := skewed(1, 200_000, 5_000)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(nil)})
	in.WaitReady(time.Minute)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)

	waitCounts(t, 3*time.Minute, []*testkit.Instance{in}, w.truth, false)
	checkTopic(t, b.Addr(), output, "read_uncommitted", w.truth, false)
	checkTopic(t, b.Addr(), changelog, "read_uncommitted", w.truth, false)
	if got := metric(t, in, "abacus_records_processed_total"); got != 200_000 {
		t.Errorf("abacus_records_processed_total = %v, want 200000", got)
	}
	if got := metric(t, in, "abacus_partitioner_mismatch_total"); got != 0 {
		t.Errorf("abacus_partitioner_mismatch_total = %v, want 0", got)
	}
}

// With the record cache off every count is sent as it is counted, one
// changelog record per input record, many transactions a second under
// exactly_once_v2: counts stay exact across a restart, and the check that
// no other writer's record lies among a task's own (its transactions'
// markers between them) never takes the member's own markers for one.
func TestExactCountsWithTheRecordCacheOffExactlyOnce(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: steady(map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2", "ABACUS_CACHE_MAX_BYTES": "0",
			"ABACUS_COMMIT_INTERVAL": "50ms"})})
	in.WaitReady(time.Minute)
	w := skewed(41, 5_000, 500)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w.truth, false)
	in.Stop(30 * time.Second)
	in.Restart()
	more := skewed(42, 5_000, 500)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", more.records)
	w = w.add(more)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w.truth, false)
	checkTopic(t, b.Addr(), changelog, "read_committed", w.truth, false)
	if got := metric(t, in, "abacus_session_restarts_total"); got != 0 {
		t.Errorf("abacus_session_restarts_total = %v, want 0:\n%s", got, in.Log())
	}
	if strings.Contains(in.Log(), "another member wrote to") {
		t.Errorf("the member took its own records for another writer's")
	}
}

// Acceptance 2: two, then three instances share the partitions while input
// flows; under exactly_once_v2 the union of their stores is exact.
func TestScaleOutExactlyOnce(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	eos := map[string]string{"ABACUS_PROCESSING_GUARANTEE": "exactly_once_v2"}
	start := func(name string) *testkit.Instance {
		return testkit.StartInstance(t, testkit.InstanceConfig{Name: name, Brokers: b.Addr(), Env: eos})
	}
	a := start("abacus-0")
	a.WaitReady(time.Minute)

	// Input flows in batches until every member has counted some of it
	// (at most 200 batches of 2,000).
	var mu sync.Mutex
	all := workload{truth: map[string]int64{}}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			select {
			case <-stop:
				return
			default:
			}
			batch := skewed(uint64(100+i), 2_000, 1_000)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", batch.records)
			mu.Lock()
			all = all.add(batch)
			mu.Unlock()
		}
	}()
	testkit.Eventually(t, time.Minute, func() error { return atLeastMetric(a, "abacus_records_processed_total", 5_000) })
	bb := start("abacus-1")
	testkit.Eventually(t, 2*time.Minute, func() error { return atLeastMetric(bb, "abacus_records_processed_total", 1) })
	c := start("abacus-2")
	testkit.Eventually(t, 2*time.Minute, func() error { return atLeastMetric(c, "abacus_records_processed_total", 1) })
	close(stop)
	<-done

	instances := []*testkit.Instance{a, bb, c}
	waitCounts(t, 3*time.Minute, instances, all.truth, false)
	checkTopic(t, b.Addr(), output, "read_committed", all.truth, false)
	checkTopic(t, b.Addr(), changelog, "read_committed", all.truth, false)
}

// Acceptance 3 and 4: a graceful restart on the same disk restores
// nothing; a restart on an empty disk restores everything; counts stay exact.
func TestRestart(t *testing.T) {
	for _, guarantee := range []string{"at_least_once", "exactly_once_v2"} {
		t.Run(guarantee, func(t *testing.T) {
			b := testkit.StartBroker(t, 4)
			in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
				Env: steady(map[string]string{"ABACUS_PROCESSING_GUARANTEE": guarantee})})
			in.WaitReady(time.Minute)
			w1 := skewed(2, 20_000, 1_000)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", w1.records)
			waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, w1.truth, false)

			in.Stop(30 * time.Second)
			w2 := skewed(3, 10_000, 1_500)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", w2.records)
			in.Restart()
			in.WaitReady(time.Minute)
			all := w1.add(w2)
			waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, all.truth, false)
			if got := metric(t, in, "abacus_restored_records_total"); got != 0 {
				t.Errorf("restart after a clean stop restored %v records, want 0", got)
			}
			if got := metric(t, in, "abacus_restored_records_total", `partition="0"`); got != 0 {
				t.Errorf("abacus_restored_records_total{partition=0} = %v", got)
			}

			// A pod rescheduled to a new node: an empty disk, a full restore.
			in.Stop(30 * time.Second)
			_, changelogRecords := testkit.LastValues(t, b.Addr(), changelog, "read_committed")
			in.RestartWith(t.TempDir())
			in.WaitReady(time.Minute)
			if got := metric(t, in, "abacus_restored_records_total"); got != float64(changelogRecords) {
				t.Errorf("restore on an empty disk applied %v records, want the changelog's %d", got, changelogRecords)
			}
			w3 := skewed(4, 5_000, 500)
			testkit.Produce(t, b.Addr(), input, "murmur2_random", w3.records)
			waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, all.add(w3).truth, false)
		})
	}
}

// Acceptance 5: kill -9 mid-stream and restart on the same disk. Exactly
// once: exact counts, nothing wiped, only the delta restored. At least
// once: no count below the truth.
func TestCrashRecovery(t *testing.T) {
	for _, guarantee := range []string{"exactly_once_v2", "at_least_once"} {
		t.Run(guarantee, func(t *testing.T) {
			b := testkit.StartBroker(t, 4)
			in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
				Env: map[string]string{"ABACUS_PROCESSING_GUARANTEE": guarantee}})
			in.WaitReady(time.Minute)
			w := skewed(5, 60_000, 3_000)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; i < len(w.records); i += 10_000 {
					testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records[i:i+10_000])
				}
			}()
			testkit.Eventually(t, time.Minute, func() error {
				if err := atLeastMetric(in, "abacus_records_processed_total", 15_000); err != nil {
					return err
				}
				return atLeastMetric(in, "abacus_commits_total", 2) // a checkpoint to restore from
			})
			in.Kill()
			_, changelogRecords := testkit.LastValues(t, b.Addr(), changelog, "read_uncommitted")
			in.Restart()
			<-done
			in.WaitReady(time.Minute)
			atLeast := guarantee == "at_least_once"
			waitCounts(t, 3*time.Minute, []*testkit.Instance{in}, w.truth, atLeast)
			restored := metric(t, in, "abacus_restored_records_total")
			if restored >= float64(changelogRecords) {
				t.Errorf("restored %v records of a changelog of %d: a full restore, not the delta", restored, changelogRecords)
			}
			if wipes := metric(t, in, "abacus_store_wipes_total"); wipes != 0 {
				t.Errorf("%v task stores wiped after a crash; want none", wipes)
			}
			t.Logf("%s: restored %v changelog records after the crash (changelog held %d)", guarantee, restored, changelogRecords)
			checkTopic(t, b.Addr(), changelog, "read_committed", w.truth, atLeast)
		})
	}
}

// Acceptance 6: the broker lost its data, so the local checkpoint lies
// beyond the changelog's end: the task is wiped and restored, with a
// warning, and counts follow the broker's new data exactly.
func TestCheckpointBeyondChangelogEnd(t *testing.T) {
	addr := "127.0.0.1:" + itoa(testkit.FreePort(t))
	b1 := testkit.StartBrokerAt(t, addr, 4, "")
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: addr, Env: steady(nil)})
	in.WaitReady(time.Minute)
	old := skewed(6, 10_000, 500)
	testkit.Produce(t, addr, input, "murmur2_random", old.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, old.truth, false)
	in.Stop(30 * time.Second)

	b1.Close()
	testkit.StartBrokerAt(t, addr, 4, "")
	fresh := skewed(7, 2_000, 100)
	testkit.Produce(t, addr, input, "murmur2_random", fresh.records)
	in.Restart()
	in.WaitReady(time.Minute)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, fresh.truth, false)
	if !strings.Contains(in.Log(), "checkpoint beyond changelog end") {
		t.Errorf("no warning about the checkpoint beyond the changelog's end in the log")
	}
	if wipes := metric(t, in, "abacus_store_wipes_total"); wipes == 0 {
		t.Errorf("abacus_store_wipes_total = 0, want the wiped tasks counted")
	}
	// A key only the lost data knew is gone, not served stale.
	for k := range old.truth {
		if _, ok := fresh.truth[k]; ok {
			continue
		}
		if _, code, err := in.Count(storeName, k); err != nil || code != 404 {
			t.Errorf("key %q of the lost data: status %d, %v; want 404", k, code, err)
		}
		break
	}
}

// Acceptance 7: null keys go to the dead-letter topic with headers naming
// the error and the source; processing goes on.
func TestNullKeysGoToDeadLetterTopic(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: steady(nil)})
	in.WaitReady(time.Minute)
	var records []testkit.Record
	truth := map[string]int64{}
	nulls := 0
	for i := range 3_000 {
		if i%10 == 3 {
			records = append(records, testkit.Record{Value: []byte("orphan-" + itoa(i))})
			nulls++
			continue
		}
		k := "key-" + itoa(i%50)
		records = append(records, testkit.Record{Key: []byte(k), Value: []byte("v")})
		truth[k]++
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", records)
	waitCounts(t, time.Minute, []*testkit.Instance{in}, truth, false)
	testkit.Eventually(t, 30*time.Second, func() error {
		got, err := in.Metric("abacus_records_dead_lettered_total", `reason="null_key"`)
		if err == nil && got != float64(nulls) {
			err = testkit.Errorf("dead-lettered %v, want %d", got, nulls)
		}
		return err
	})
	msgs := testkit.Messages(t, b.Addr(), dlq)
	if len(msgs) != nulls {
		t.Fatalf("dead-letter topic holds %d records, want %d", len(msgs), nulls)
	}
	m := msgs[0]
	headers := map[string]string{}
	for _, h := range m.Headers {
		headers[h.Key] = string(h.Value)
	}
	if m.Key != nil || !strings.HasPrefix(string(m.Value), "orphan-") {
		t.Errorf("dead letter key %q value %q; want the original null key and value", m.Key, m.Value)
	}
	for _, h := range []string{"abacus.error", "abacus.source.topic", "abacus.source.partition", "abacus.source.offset", "abacus.source.timestamp"} {
		if headers[h] == "" {
			t.Errorf("dead letter lacks header %s (has %v)", h, headers)
		}
	}
	if headers["abacus.source.topic"] != input || headers["abacus.error"] != "record has a null key" {
		t.Errorf("headers %v", headers)
	}
}

// abacus version prints the version, the source revision and the Go
// version on stdout, and exits 0.
func TestVersionSubcommand(t *testing.T) {
	cmd := exec.Command(testkit.Binary(t), "version")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	want := fmt.Sprintf("abacus dev (commit %s, %s)\n", testkit.SourceRevision(), runtime.Version())
	if err != nil || string(out) != want || stderr.Len() != 0 {
		t.Errorf("abacus version: %v, stdout %q, stderr %q; want %q on stdout", err, out, stderr.String(), want)
	}
}

// abacus --help lists the subcommands and the settings and exits 0; a
// bare boolean flag takes no argument.
func TestHelpAndBareBooleanFlag(t *testing.T) {
	out, err := exec.Command(testkit.Binary(t), "--help").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "Usage:\n  abacus [--setting=value ...]   run the service\n"+
		"  abacus broker [flags]          run the embedded Kafka-protocol broker alone (abacus broker --help)\n"+
		"  abacus version                 print the version and the source revision\n") ||
		!strings.Contains(string(out), "  --auth-metrics, ABACUS_AUTH_METRICS (bool, default false)\n") {
		t.Errorf("abacus --help: %v\n%s", err, out)
	}
	// --auth-metrics alone, then a setting that fails: the failure is the
	// partitions', so --auth-metrics did not swallow it.
	cmd := exec.Command(testkit.Binary(t), "--auth-metrics", "--partitions=0")
	cmd.Env = []string{"ABACUS_STATE_DIR=" + t.TempDir()}
	out, err = cmd.CombinedOutput()
	if want := `abacus: invalid --partitions="0": must be between 1 and 10000`; err == nil || strings.TrimSpace(string(out)) != want {
		t.Errorf("abacus --auth-metrics --partitions=0: %v %q; want %q", err, out, want)
	}
}

// Bad configuration fails at start with one line naming the setting.
func TestBadConfigurationFailsWithOneClearLine(t *testing.T) {
	for _, tc := range []struct {
		env, want string
	}{
		{"ABACUS_PROCESSING_GUARANTEE=exactly_once", `invalid ABACUS_PROCESSING_GUARANTEE="exactly_once": must be one of at_least_once, exactly_once_v2`},
		{"ABACUS_COMMIT_INTERVAL=often", `invalid ABACUS_COMMIT_INTERVAL="often": must be a duration such as 500ms, 30s or 10m`},
		{"ABACUS_PARTITIONER=fnv", `invalid ABACUS_PARTITIONER="fnv": must be one of murmur2, crc32`},
		{"ABACUS_PARTITIONS=0", `invalid ABACUS_PARTITIONS="0": must be between 1 and 10000`},
		// A typo in a variable's name is not left unread.
		{"ABACUS_COMIT_INTERVAL=5s", `unknown environment variable ABACUS_COMIT_INTERVAL (did you mean ABACUS_COMMIT_INTERVAL?): no setting has that name (--help lists them)`},
		// Windowed stores: each bad specification names its store and field.
		{"ABACUS_WINDOWS=trades-5s=hopping,size=5s,advance=6s", `windows[0] (trades-5s): advance 6s is larger than size 5s`},
		{"ABACUS_WINDOWS=clicks-1m=tumbling,size=1m,advance=10s", `windows[0] (clicks-1m): advance 10s is only for hopping windows, not tumbling`},
		{"ABACUS_WINDOWS=visits=session,size=30m,grace=-1s", `windows[0] (visits): grace -1s must not be negative`},
		{"ABACUS_WINDOWS=clicks-1m=sliding,size=1m", `windows[0] (clicks-1m): type "sliding" is not one of tumbling, hopping, session`},
		{"ABACUS_WINDOWS=clicks=tumbling,size=1m;visits=session,size=30m;clicks=tumbling,size=5m", `windows[2] (clicks): store "clicks" is also the name of windows[0]`},
	} {
		cmd := exec.Command(testkit.Binary(t))
		cmd.Env = []string{tc.env, "ABACUS_STATE_DIR=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: started", tc.env)
			continue
		}
		if got := strings.TrimSpace(string(out)); got != "abacus: "+tc.want {
			t.Errorf("%s: output %q, want %q", tc.env, got, "abacus: "+tc.want)
		}
	}
}

// A configuration file's unknown key and bad value stop the start with
// exit code 1 and one line naming the file and the key.
func TestConfigFileErrorsNameTheFileAndKey(t *testing.T) {
	known := strings.Join(append(config.SettingNames(), "kafka"), ", ")
	for _, tc := range []struct{ file, want string }{
		{"comit_interval: 5s\n", `config file %s: unknown setting "comit_interval" (did you mean commit_interval?) (known: ` + known + `)`},
		{"commit_interval: 1s\npartitions: 0\n", `invalid %s: partitions="0": must be between 1 and 10000`},
	} {
		file := filepath.Join(t.TempDir(), "abacus.yaml")
		if err := os.WriteFile(file, []byte(tc.file), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(testkit.Binary(t), "--config", file)
		cmd.Env = []string{"ABACUS_STATE_DIR=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		want := "abacus: " + fmt.Sprintf(tc.want, file)
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || strings.TrimSpace(string(out)) != want {
			t.Errorf("%q: %v, output %q; want exit 1 and %q", tc.file, err, out, want)
		}
	}
}

// ABACUS_CREATE_TOPICS=false against a broker without the topics stops
// the start with one line listing each missing topic with its partitions
// and configs; with the topics there, the member runs and counts.
func TestCreateTopicsFalse(t *testing.T) {
	b := testkit.StartBroker(t, 2)
	dir := t.TempDir()
	cmd := exec.Command(testkit.Binary(t))
	cmd.Env = []string{"ABACUS_BOOTSTRAP_SERVERS=" + b.Addr(), "ABACUS_STATE_DIR=" + dir, "ABACUS_CREATE_TOPICS=false",
		"ABACUS_HTTP_ADDR=127.0.0.1:" + itoa(testkit.FreePort(t)), "ABACUS_INSTANCE_ID=abacus-0", "ABACUS_PARTITIONS=2"}
	out, err := cmd.CombinedOutput()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := "abacus: topics missing and ABACUS_CREATE_TOPICS=false: create input-topic (2 partitions); counts-topic (2 partitions); " +
		"counts-app-dlq (2 partitions); counts-app-counts-store-changelog (2 partitions, cleanup.policy=compact, segment.bytes=4194304)"
	if err == nil || lines[len(lines)-1] != want {
		t.Fatalf("without the topics: %v, last line %q; want %q", err, lines[len(lines)-1], want)
	}
	for _, topic := range []string{input, output, dlq, changelog} {
		createTopic(t, b.Addr(), topic, 2)
	}
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: map[string]string{"ABACUS_CREATE_TOPICS": "false", "ABACUS_PARTITIONS": "2"}})
	in.WaitReady(time.Minute)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{{Key: []byte("foo"), Value: []byte("x")}})
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"foo": 1}, false)
}
