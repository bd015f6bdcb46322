package sse

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// Knobs, all optional:
//
//	SSE_BENCH_RECORDS      input records of the throughput runs (2,000,000)
//	SSE_BENCH_KEYS         distinct keys among them (100,000)
//	SSE_BENCH_SUBSCRIBERS  reading subscribers of the loaded runs (1,000)
//	SSE_BENCH_SCENARIOS    what the throughput runs serve, comma-separated:
//	                       N (readers) or N+stalled ("0,1000+stalled"); the
//	                       first is the base of the ratios
//	SSE_BENCH_ROUNDS       rounds of the throughput runs, interleaved (5)
//	SSE_BENCH_RATES        produce rates of the latency runs ("1000,10000")
//	SSE_BENCH_LAT_SUBS     subscribers of the latency runs (100)
//	SSE_BENCH_LAT_KEYS     keys they follow, records round-robin (20)
//	SSE_BENCH_DURATION     length of a latency run (20s)
//	SSE_BENCH_WARMUP       records produced before this are not sampled (3s)
const (
	storeName  = "counts-store"
	partitions = 4
	// commitInterval is abacus's default, which the latency target is
	// stated against (testkit's instances otherwise commit every 200 ms).
	commitInterval = time.Second
)

func envInt(b *testing.B, name string, def, lo, hi int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil || n < lo || n > hi {
		b.Fatalf("%s=%q: want an integer in [%d, %d]", name, v, lo, hi)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a positive duration", name, v)
	}
	return d
}

func envInts(b *testing.B, name, def string) []int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("%s=%q: want positive integers, comma-separated", name, v)
		}
		out = append(out, n)
	}
	return out
}

// startAbacus runs one abacus process of its own application (group,
// changelog, output topic) on input, at the default commit interval.
func startAbacus(b *testing.B, brokers, app, input string) *testkit.Instance {
	b.Helper()
	in := testkit.StartInstance(b, testkit.InstanceConfig{Name: "abacus-0", Brokers: brokers, Env: map[string]string{
		"ABACUS_APPLICATION_ID":    app,
		"ABACUS_INPUT_TOPIC":       input,
		"ABACUS_OUTPUT_TOPIC":      app + "-counts",
		"ABACUS_PARTITIONS":        strconv.Itoa(partitions),
		"ABACUS_COMMIT_INTERVAL":   commitInterval.String(),
		"ABACUS_PEER_URL_TEMPLATE": "http://127.0.0.1:1", // one member: nobody to forward to
		"ABACUS_MAX_SUBSCRIBERS":   "5000",
	}})
	in.WaitReady(2 * time.Minute)
	// A prefix subscription needs the member's view of its group.
	testkit.Eventually(b, time.Minute, func() error {
		code, body, err := in.Get("/api/v1/cluster")
		if err != nil || code != 200 || !strings.Contains(string(body), `"partitions":[`) {
			return fmt.Errorf("cluster view: %d %s %v", code, body, err)
		}
		return nil
	})
	return in
}

// countEvent is the data of a count event.
type countEvent struct {
	Key   string `json:"key"`
	Value int64  `json:"value"`
}

// readCounts calls fn with every count event of an SSE stream, as it is
// read, until the stream ends.
func readCounts(r io.Reader, fn func(countEvent)) error {
	br := bufio.NewReaderSize(r, 16<<10)
	event := ""
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			event = ""
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: ") && event == "count":
			var e countEvent
			if err := json.Unmarshal([]byte(line[len("data: "):]), &e); err != nil {
				return fmt.Errorf("bad count data %q: %w", line, err)
			}
			fn(e)
		}
	}
}

// subscribers are many SSE clients of one instance.
type subscribers struct {
	ctx    context.Context
	cancel context.CancelFunc
	client *http.Client
	wg     sync.WaitGroup

	mu     sync.Mutex
	last   []int64 // per subscriber, -1 until its first value
	events int
	errs   []error
}

// subscribe opens len(keys) key subscriptions, 64 at a time, and returns
// once every one has its first value. onEvent, if set, sees every count
// event with the receiving subscriber's index and the time it was read.
func subscribe(b *testing.B, in *testkit.Instance, keys []string, onEvent func(i int, e countEvent, at time.Time, prev int64)) *subscribers {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscribers{ctx: ctx, cancel: cancel, last: make([]int64, len(keys)),
		client: &http.Client{Transport: &http.Transport{
			MaxConnsPerHost: len(keys) + 16, MaxIdleConnsPerHost: len(keys) + 16,
			DialContext:       (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			DisableKeepAlives: false, DisableCompression: true, ResponseHeaderTimeout: 30 * time.Second,
		}}}
	for i := range s.last {
		s.last[i] = -1
	}
	sem := make(chan struct{}, 64)
	for i, key := range keys {
		sem <- struct{}{}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			resp, err := testkit.OpenStream(ctx, s.client, in.SubscribeURL(storeName, key, false), nil)
			<-sem
			if err != nil {
				s.fail(fmt.Errorf("subscribe %q: %w", key, err))
				return
			}
			defer resp.Body.Close()
			err = readCounts(resp.Body, func(e countEvent) {
				at := time.Now()
				s.mu.Lock()
				prev := s.last[i]
				if e.Key != key || e.Value <= prev {
					s.errs = append(s.errs, fmt.Errorf("subscriber of %q: event %+v after %d", key, e, prev))
				}
				s.last[i] = e.Value
				s.events++
				s.mu.Unlock()
				if onEvent != nil {
					onEvent(i, e, at, max(prev, 0))
				}
			})
			if ctx.Err() == nil {
				s.fail(fmt.Errorf("stream of %q ended: %v", key, err))
			}
		}()
	}
	b.Cleanup(s.close)
	testkit.Eventually(b, 2*time.Minute, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.errs) > 0 {
			b.Fatal(errors.Join(s.errs...))
		}
		waiting := 0
		for _, v := range s.last {
			if v < 0 {
				waiting++
			}
		}
		if waiting > 0 {
			return fmt.Errorf("%d of %d subscribers have no first value", waiting, len(keys))
		}
		return nil
	})
	return s
}

func (s *subscribers) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *subscribers) close() {
	s.cancel()
	s.wg.Wait()
	s.client.CloseIdleConnections()
}

// waitFinal waits until subscriber i's last value is want(i), for all.
func (s *subscribers) waitFinal(b *testing.B, within time.Duration, want func(i int) int64) {
	b.Helper()
	testkit.Eventually(b, within, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.errs) > 0 {
			b.Fatal(errors.Join(s.errs[:min(5, len(s.errs))]...))
		}
		behind := 0
		for i, v := range s.last {
			if v != want(i) {
				behind++
			}
		}
		if behind > 0 {
			return fmt.Errorf("%d subscribers not on their final value", behind)
		}
		return nil
	})
}

// stalledSubscriber subscribes to every key over raw TCP with a small
// receive buffer and never reads. It asks with local=true: one stream of
// the member's own hub, which must let it go without slowing anything
// (without it the member would merge a stream per partition for it).
func stalledSubscriber(b *testing.B, in *testkit.Instance) net.Conn {
	b.Helper()
	return testkit.StalledStream(b, in.SubscribeURL(storeName, "", true)+"&local=true")
}

var metric = testkit.MustMetric

// scenario is what an instance serves while it processes the input:
// reading subscribers (one key each) and maybe one stalled client.
type scenario struct {
	subs    int
	stalled bool
}

func (s scenario) String() string {
	if s.stalled {
		return fmt.Sprintf("%d + 1 stalled", s.subs)
	}
	return strconv.Itoa(s.subs)
}

// parseScenarios reads "0,1000+stalled" (a bare "stalled" is 0+stalled).
func parseScenarios(b *testing.B, v string, maxSubs int) []scenario {
	b.Helper()
	var out []scenario
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		var sc scenario
		if f == "stalled" {
			f = "0+stalled"
		}
		if n, ok := strings.CutSuffix(f, "+stalled"); ok {
			f, sc.stalled = n, true
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > maxSubs {
			b.Fatalf("SSE_BENCH_SCENARIOS=%q: want comma-separated N or N+stalled, N in [0, %d]", v, maxSubs)
		}
		sc.subs = n
		out = append(out, sc)
	}
	return out
}

// throughputRun is one run of one scenario.
type throughputRun struct {
	scenario
	rate          float64 // records/s, to every record processed
	window        time.Duration
	cpu           float64 // abacus CPU seconds within that window
	committedIn   time.Duration
	committedRate float64 // records/s, to every input offset committed
	events        float64
	dropped       float64
	commits       float64
}

// BenchmarkSSEThroughput: the same input processed by an instance with no
// subscriber and by one with 1,000 (and one stalled client), rounds
// interleaved; records/s from letting the input through to all of it
// committed.
func BenchmarkSSEThroughput(b *testing.B) {
	nRecords := envInt(b, "SSE_BENCH_RECORDS", 2_000_000, 10_000, 100_000_000)
	nKeys := envInt(b, "SSE_BENCH_KEYS", 100_000, 1_000, nRecords)
	nSubs := envInt(b, "SSE_BENCH_SUBSCRIBERS", 1_000, 1, min(nKeys, 4_000))
	rounds := envInt(b, "SSE_BENCH_ROUNDS", 5, 1, 20)
	spec := os.Getenv("SSE_BENCH_SCENARIOS")
	if spec == "" {
		spec = fmt.Sprintf("0,%d+stalled", nSubs)
	}
	scenarios := parseScenarios(b, spec, min(nKeys, 4_000))
	testkit.Binary(b)

	br := testkit.StartBroker(b, partitions)
	const input = "sse-bench-input"
	keys := make([]string, nKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%07d", i)
	}
	// Every key at least once, the rest uniform, in a fixed shuffled order.
	truth := make(map[string]int64, nKeys)
	records := make([]testkit.Record, nRecords)
	x := uint64(88172645463325252)
	for i := range records {
		k := keys[i%nKeys]
		if i >= nKeys {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			k = keys[x%uint64(nKeys)]
		}
		records[i] = testkit.Record{Key: []byte(k), Value: []byte(strconv.Itoa(i))}
		truth[k]++
	}
	began := time.Now()
	testkit.Produce(b, br.Addr(), input, "murmur2_random", records)
	fmt.Printf("produced %d records over %d keys to %s (%d partitions) in %s\n", nRecords, nKeys, input, partitions, time.Since(began).Round(time.Millisecond))
	gate := fetchGate(br.Cluster())
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": br.Addr(), "log_level": 3})
	if err != nil {
		b.Fatal(err)
	}
	defer admin.Close()

	run := func(round int, sc scenario) throughputRun {
		app := fmt.Sprintf("sse-bench-%d-%v-%d", sc.subs, sc.stalled, round)
		gate.close()
		in := startAbacus(b, br.Addr(), app, input)
		defer in.Kill()
		r := throughputRun{scenario: sc}
		var subsc *subscribers
		if sc.subs > 0 {
			subsc = subscribe(b, in, keys[:sc.subs], nil)
		}
		open := sc.subs
		if sc.stalled {
			stalledSubscriber(b, in)
			open++
		}
		testkit.Eventually(b, time.Minute, func() error {
			if v := metric(b, in, "abacus_sse_subscribers"); v != float64(open) {
				return fmt.Errorf("%v subscribers open, want %d", v, open)
			}
			return nil
		})
		if c := metric(b, in, "abacus_records_processed_total"); c != 0 {
			b.Fatalf("%s processed %v records before its input was let through", app, c)
		}
		// Two windows from letting the input through: to the first poll
		// that sees every record processed (records/s), and to the first
		// that sees every input offset committed by the application's
		// group (the broker's committed offsets, as the core benchmark
		// measures). The second ends on a commit, which comes every
		// second, so it moves in steps of up to a second: the first is
		// the figure compared.
		cpu0, err := testkit.CPUTime(in.Pid())
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		gate.open()
		poll := time.NewTicker(25 * time.Millisecond)
		defer poll.Stop()
		deadline := time.Now().Add(10 * time.Minute)
		for now := range poll.C {
			if r.window == 0 {
				if c := metric(b, in, "abacus_records_processed_total"); c >= float64(nRecords) {
					r.window = time.Since(t0)
					r.rate = c / r.window.Seconds()
					cpu1, err := testkit.CPUTime(in.Pid())
					if err != nil {
						b.Fatal(err)
					}
					r.cpu = (cpu1 - cpu0).Seconds()
				}
			}
			c, err := testkit.CommittedRecords(admin, app, input)
			if err != nil {
				b.Fatalf("%s: committed offsets: %v", app, err)
			}
			if c >= int64(nRecords) && r.window > 0 {
				r.committedIn = time.Since(t0)
				r.committedRate = float64(c) / r.committedIn.Seconds()
				break
			}
			if now.After(deadline) {
				b.Fatalf("%s: %v of %d records committed after 10 minutes", app, c, nRecords)
			}
		}
		// Sanity: every reading subscriber ends on its key's count; the
		// stalled client was dropped.
		if sc.subs > 0 {
			subsc.waitFinal(b, time.Minute, func(i int) int64 { return truth[keys[i]] })
			subsc.close()
		}
		if sc.stalled {
			testkit.Eventually(b, time.Minute, func() error {
				if d := metric(b, in, "abacus_sse_subscribers_dropped_total"); d < 1 {
					return fmt.Errorf("the stalled subscriber was not dropped")
				}
				return nil
			})
		}
		r.events = metric(b, in, "abacus_sse_events_sent_total")
		r.dropped = metric(b, in, "abacus_sse_subscribers_dropped_total")
		r.commits = metric(b, in, "abacus_commits_total")
		return r
	}

	byScenario := make([][]throughputRun, len(scenarios))
	for round := range rounds {
		for i, sc := range scenarios {
			r := run(round, sc)
			fmt.Printf("round %d: %v subscribers: %.0f records/s (all processed in %s, abacus CPU %.2f s; all committed in %s: %.0f records/s), %v events sent, %v dropped, %v commits\n",
				round, sc, r.rate, r.window.Round(time.Millisecond), r.cpu, r.committedIn.Round(time.Millisecond), r.committedRate, r.events, r.dropped, r.commits)
			byScenario[i] = append(byScenario[i], r)
		}
	}
	fmt.Printf("\n| subscribers | records/s processed (median) | every round | ratio to %v | abacus CPU s | every round | records/s committed (median) | every round |\n| --- | ---: | --- | ---: | ---: | --- | ---: | --- |\n", scenarios[0])
	for i, sc := range scenarios {
		var rates, cpus, crates []string
		var cpuVals, crateVals []float64
		for _, r := range byScenario[i] {
			rates = append(rates, fmt.Sprintf("%.0f", r.rate))
			cpus = append(cpus, fmt.Sprintf("%.2f", r.cpu))
			crates = append(crates, fmt.Sprintf("%.0f", r.committedRate))
			cpuVals = append(cpuVals, r.cpu)
			crateVals = append(crateVals, r.committedRate)
		}
		fmt.Printf("| %v | %.0f | %s | %.3f | %.2f | %s | %.0f | %s |\n", sc, median(byScenario[i]), strings.Join(rates, " "),
			median(byScenario[i])/median(byScenario[0]), medianOf(cpuVals), strings.Join(cpus, " "), medianOf(crateVals), strings.Join(crates, " "))
	}
	base, loaded := -1, -1
	for i, sc := range scenarios {
		switch sc {
		case scenario{0, false}:
			base = i
		case scenario{nSubs, true}:
			loaded = i
		}
	}
	if base >= 0 && loaded >= 0 {
		var ratios []string
		for j := range byScenario[base] {
			ratios = append(ratios, fmt.Sprintf("%.2f", byScenario[loaded][j].rate/byScenario[base][j].rate))
		}
		medBase, medLoaded := median(byScenario[base]), median(byScenario[loaded])
		ratio := medLoaded / medBase
		verdict := "met"
		if ratio < 0.9 {
			verdict = "MISSED"
		}
		cpuOf := func(runs []throughputRun) float64 {
			var v []float64
			for _, r := range runs {
				v = append(v, r.cpu)
			}
			return medianOf(v)
		}
		fmt.Printf("\n%v / %v subscribers, records/s processed, medians: %.3f (target >= 0.90: %s); per round %s; abacus CPU per record: %.2fx\n\n",
			scenarios[loaded], scenarios[base], ratio, verdict, strings.Join(ratios, " "), cpuOf(byScenario[loaded])/cpuOf(byScenario[base]))
		b.ReportMetric(medBase, "base_rec/s")
		b.ReportMetric(medLoaded, "loaded_rec/s")
		b.ReportMetric(ratio, "loaded/base")
	}
}

func medianOf(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func median(runs []throughputRun) float64 {
	rates := make([]float64, len(runs))
	for i, r := range runs {
		rates[i] = r.rate
	}
	slices.Sort(rates)
	if len(rates)%2 == 1 {
		return rates[len(rates)/2]
	}
	return (rates[len(rates)/2-1] + rates[len(rates)/2]) / 2
}

// latencyRun is one paced run.
type latencyRun struct {
	rate       int
	achieved   float64
	samples    []time.Duration
	events     int
	commitMean time.Duration
	commitMax  string
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) }

// BenchmarkSSELatency: records produced at a steady rate, round-robin over
// a few keys followed by 100 subscribers; for every record and every
// subscriber of its key, the time from the record's produce call (its
// timestamp) to the first event that carries a count including it.
func BenchmarkSSELatency(b *testing.B) {
	rates := envInts(b, "SSE_BENCH_RATES", "1000,10000")
	nSubs := envInt(b, "SSE_BENCH_LAT_SUBS", 100, 1, 4000)
	nKeys := envInt(b, "SSE_BENCH_LAT_KEYS", 20, 1, nSubs)
	duration := envDuration(b, "SSE_BENCH_DURATION", 20*time.Second)
	warmup := envDuration(b, "SSE_BENCH_WARMUP", 3*time.Second)
	testkit.Binary(b)
	br := testkit.StartBroker(b, partitions)

	var runs []latencyRun
	for _, rate := range rates {
		r := latencyOnce(b, br.Addr(), rate, nSubs, nKeys, duration, warmup)
		fmt.Printf("%d records/s: produced %.0f/s, %d samples, %d events, p50 %s ms, p99 %s ms, max %s ms; commits took %s ms on average\n",
			rate, r.achieved, len(r.samples), r.events, ms(pct(r.samples, 0.5)), ms(pct(r.samples, 0.99)), ms(pct(r.samples, 1)), ms(r.commitMean))
		runs = append(runs, r)
	}
	target := commitInterval + 50*time.Millisecond
	fmt.Printf("\n| records/s | subscribers | samples | events | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | mean commit ms | p99 <= %s ms |\n", ms(target))
	fmt.Printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range runs {
		verdict := "met"
		if pct(r.samples, 0.99) > target {
			verdict = "MISSED"
		}
		fmt.Printf("| %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", r.rate, nSubs, len(r.samples), r.events,
			ms(pct(r.samples, 0.5)), ms(pct(r.samples, 0.9)), ms(pct(r.samples, 0.99)), ms(pct(r.samples, 0.999)), ms(pct(r.samples, 1)), ms(r.commitMean), verdict)
		b.ReportMetric(float64(pct(r.samples, 0.5))/1e6, fmt.Sprintf("p50_ms@%d/s", r.rate))
		b.ReportMetric(float64(pct(r.samples, 0.99))/1e6, fmt.Sprintf("p99_ms@%d/s", r.rate))
	}
	fmt.Println()
}

func latencyOnce(b *testing.B, brokers string, rate, nSubs, nKeys int, duration, warmup time.Duration) latencyRun {
	app := fmt.Sprintf("sse-latency-%d", rate)
	input := app + "-input"
	in := startAbacus(b, brokers, app, input)
	defer in.Kill()

	keys := make([]string, nKeys)
	for i := range keys {
		keys[i] = fmt.Sprintf("lat-%02d", i)
	}
	subKeys := make([]string, nSubs)
	for i := range subKeys {
		subKeys[i] = keys[i%nKeys]
	}
	keyIndex := map[string]int{}
	for i, k := range keys {
		keyIndex[k] = i
	}

	// producedAt[k][j] is when the (j+1)-th record of key k was produced.
	var mu sync.RWMutex
	producedAt := make([][]time.Time, nKeys)
	var sampleFrom time.Time // records produced before it are warm-up
	var samplesMu sync.Mutex
	var samples []time.Duration
	onEvent := func(_ int, e countEvent, at time.Time, prev int64) {
		k := keyIndex[e.Key]
		var got []time.Duration
		mu.RLock()
		for j := prev; j < e.Value && int(j) < len(producedAt[k]); j++ {
			if t := producedAt[k][j]; !t.Before(sampleFrom) {
				got = append(got, at.Sub(t))
			}
		}
		mu.RUnlock()
		samplesMu.Lock()
		samples = append(samples, got...)
		samplesMu.Unlock()
	}
	subs := subscribe(b, in, subKeys, onEvent)

	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": brokers, "partitioner": "murmur2_random", "linger.ms": 5,
		"enable.idempotence": true, "log_level": 3, "enable.metrics.push": false,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	deliveryErr := make(chan error, 1)
	go func() {
		for ev := range p.Events() {
			if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				select {
				case deliveryErr <- m.TopicPartition.Error:
				default:
				}
			}
		}
	}()
	commitsBefore := metric(b, in, "abacus_commit_duration_seconds_count")
	commitSecsBefore := metric(b, in, "abacus_commit_duration_seconds_sum")
	start := time.Now()
	mu.Lock()
	sampleFrom = start.Add(warmup)
	mu.Unlock()
	topic := input
	sent := 0
	tick := time.NewTicker(2 * time.Millisecond)
	for now := range tick.C {
		elapsed := now.Sub(start)
		if elapsed >= duration {
			break
		}
		due := int(elapsed.Seconds()*float64(rate)) - sent
		for range due {
			k := sent % nKeys
			ts := time.Now()
			mu.Lock()
			producedAt[k] = append(producedAt[k], ts)
			mu.Unlock()
			err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key: []byte(keys[k]), Value: []byte("x"), Timestamp: ts}, nil)
			if err != nil {
				b.Fatalf("produce: %v", err)
			}
			sent++
		}
		select {
		case err := <-deliveryErr:
			b.Fatalf("delivery: %v", err)
		default:
		}
	}
	tick.Stop()
	achieved := float64(sent) / time.Since(start).Seconds()
	p.Flush(30_000)
	want := make([]int64, nKeys)
	mu.RLock()
	for k := range keys {
		want[k] = int64(len(producedAt[k]))
	}
	mu.RUnlock()
	subs.waitFinal(b, time.Minute, func(i int) int64 { return want[i%nKeys] })
	subs.close()
	commits := metric(b, in, "abacus_commit_duration_seconds_count") - commitsBefore
	commitSecs := metric(b, in, "abacus_commit_duration_seconds_sum") - commitSecsBefore

	samplesMu.Lock()
	defer samplesMu.Unlock()
	slices.Sort(samples)
	subs.mu.Lock()
	events := subs.events
	subs.mu.Unlock()
	r := latencyRun{rate: rate, achieved: achieved, samples: samples, events: events}
	if commits > 0 {
		r.commitMean = time.Duration(commitSecs / commits * float64(time.Second))
	}
	return r
}

// TestReadCounts checks the SSE reader the benchmark relies on.
func TestReadCounts(t *testing.T) {
	stream := "retry: 1000\n\nevent: count\ndata: {\"key\":\"a\",\"value\":0,\"partition\":1}\n\n: ping\n\n" +
		"id: 1-7\nevent: count\ndata: {\"key\":\"a\",\"value\":3,\"partition\":1}\n\n" +
		"event: moved\ndata: {\"partition\":1,\"reason\":\"x\"}\n\n"
	var got []countEvent
	err := readCounts(strings.NewReader(stream), func(e countEvent) { got = append(got, e) })
	if err != io.EOF || len(got) != 2 || got[0] != (countEvent{"a", 0}) || got[1] != (countEvent{"a", 3}) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

// gate holds every Fetch request the broker gets while it is closed, so
// that an instance can start, be subscribed to, and only then see its
// input: both runs of a pair process the same input from the same start.
// Only consumers fetch; an instance of a fresh application has an empty
// changelog, so its tasks are restored (and subscribable) without one.
type gate struct {
	mu sync.Mutex
	ch chan struct{}
}

func fetchGate(c *kfake.Cluster) *gate {
	g := &gate{ch: make(chan struct{})}
	close(g.ch)
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		g.mu.Lock()
		ch := g.ch
		g.mu.Unlock()
		select {
		case <-ch:
		default:
			c.SleepControl(func() { <-ch })
		}
		return nil, nil, false // then served as usual
	})
	return g
}

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
		g.ch = make(chan struct{})
	default:
	}
}

func (g *gate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.ch:
	default:
		close(g.ch)
	}
}
