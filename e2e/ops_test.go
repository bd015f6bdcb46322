package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

var opsRoutes = []string{
	"/healthz", "/readyz", "/metrics", "/api/v1/streams", "/api/v1/streams/status", "/api/v1/streams/config",
	"/api/v1/streams/metrics", "/api/v1/streams/topology", "/api/v1/streams/offsets", "/api/v1/cluster", "/api/v1/cluster/status", "/api/v1/stores",
	"/api/v1/stores/counts-store/keys", "/api/v1/stores/counts-store/keys/foo", "/api/v1/stores/counts-store/keys/foo/metadata",
}

// Acceptance 2: a secret passed through to librdkafka appears in no
// endpoint, log line or error.
func TestSecretsAreMaskedEverywhere(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: map[string]string{
		"ABACUS_KAFKA_SASL_PASSWORD": "hunter2", "ABACUS_KAFKA_SASL_USERNAME": "alice", "ABACUS_AUTH_TOKEN": "tok-hunter2",
	}})
	in.WaitReady(time.Minute)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", []testkit.Record{{Key: []byte("foo"), Value: []byte("x")}})
	auth := http.Header{"Authorization": {"Bearer tok-hunter2"}}
	testkit.Eventually(t, 30*time.Second, func() error {
		code, _, err := in.GetWith("/api/v1/stores/counts-store/keys/foo", auth)
		if err == nil && code != 200 {
			err = fmt.Errorf("foo: %d", code)
		}
		return err
	})
	for _, route := range opsRoutes {
		for _, h := range []http.Header{nil, auth} {
			_, body, err := in.GetWith(route, h)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(body, []byte("hunter2")) {
				t.Errorf("%s shows the secret: %s", route, body)
			}
		}
	}
	_, body, _ := in.GetWith("/api/v1/streams/config", auth)
	var cfg struct {
		Kafka     map[string]string `json:"kafka"`
		AuthToken string            `json:"auth_token"`
	}
	if err := json.Unmarshal(body, &cfg); err != nil || cfg.Kafka["sasl.password"] != "********" || cfg.Kafka["sasl.username"] != "alice" || cfg.AuthToken != "********" {
		t.Errorf("config endpoint: %s %v", body, err)
	}
	in.Stop(30 * time.Second)
	if strings.Contains(in.Log(), "hunter2") {
		t.Errorf("the log shows the secret")
	}
}

// Acceptance 3: promlint finds nothing in /metrics, and the lag metric is
// end minus committed after a controlled produce (commits held back by an
// hour-long commit interval).
func TestMetricsLintAndLag(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: map[string]string{
		"ABACUS_COMMIT_INTERVAL": "1h", "ABACUS_CACHE_MAX_BYTES": "1GiB",
	}})
	in.WaitReady(time.Minute)
	// Every owned partition has its lag series from the assignment on, at
	// 0 on an empty input, so that absent() alerts mean "nobody owns it".
	_, body, err := in.Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		series := fmt.Sprintf("\nabacus_consumer_lag{partition=\"%d\",topic=\"input-topic\"} 0\n", p)
		if !bytes.Contains(body, []byte(series)) {
			t.Errorf("/metrics lacks %q once the member is ready", series[1:])
		}
	}
	w := skewed(30, 1_000, 100)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	testkit.Eventually(t, time.Minute, func() error {
		processed, err := in.Metric("abacus_records_processed_total")
		if err != nil {
			return err
		}
		lag, err := in.Metric("abacus_consumer_lag", `topic="input-topic"`)
		if err == nil && (processed != 1000 || lag != 1000) {
			err = fmt.Errorf("processed %v, lag %v; want 1000 and 1000 (nothing committed)", processed, lag)
		}
		return err
	})
	code, body, err := in.Get("/api/v1/streams/offsets")
	var offsets struct {
		Partitions []struct {
			Committed, End, Lag int64
		} `json:"partitions"`
	}
	if err == nil {
		err = json.Unmarshal(body, &offsets)
	}
	var lag, end int64
	for _, p := range offsets.Partitions {
		lag += p.Lag
		end += p.End
		if p.Committed != -1 {
			t.Errorf("partition committed %d before any commit", p.Committed)
		}
	}
	if code != 200 || err != nil || lag != 1000 || end != 1000 {
		t.Errorf("offsets: %d %s %v (lag %d, end %d)", code, body, err, lag, end)
	}

	_, body, err = in.Get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, name := range []string{"abacus_records_processed_total", "abacus_restored_records_total", "abacus_consumer_lag", "abacus_state",
		"abacus_http_requests_total", "abacus_commit_duration_seconds", "abacus_process_duration_seconds", "abacus_store_disk_bytes",
		"go_goroutines", "process_resident_memory_bytes"} {
		if !bytes.Contains(body, []byte("\n"+name)) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	// The member's tasks by state, what it runs, and when it last
	// committed: nothing yet, so its start.
	for state, want := range map[string]float64{"active": 4, "restoring": 0, "standby": 0} {
		if got := testkit.SumMetric(body, "abacus_tasks", `state="`+state+`"`); got != want {
			t.Errorf("abacus_tasks{state=%q} %v; want %v", state, got, want)
		}
	}
	info := fmt.Sprintf(`abacus_build_info{commit=%q,goversion=%q,version="dev"} 1`, testkit.SourceRevision(), runtime.Version())
	if !bytes.Contains(body, []byte("\n"+info+"\n")) {
		t.Errorf("/metrics lacks %s", info)
	}
	if last := testkit.SumMetric(body, "abacus_last_commit_timestamp_seconds"); last < float64(in.Started().Unix()-1) || last > float64(time.Now().Unix()) {
		t.Errorf("abacus_last_commit_timestamp_seconds %v before any commit; want the member's start, %d", last, in.Started().Unix())
	}
	// Broker errors are a counter; the producer's figures are there with
	// nothing sent yet (the commit interval is an hour); the member's one
	// rebalance, its first assignment, was timed.
	for _, line := range []string{
		"# TYPE abacus_kafka_broker_errors_total counter",
		"abacus_producer_queue_messages 0", "abacus_producer_retries_total 0", "abacus_producer_errors_total 0",
		"abacus_rebalance_duration_seconds_count 1",
	} {
		if !bytes.Contains(body, []byte("\n"+line+"\n")) {
			t.Errorf("/metrics lacks the line %q", line)
		}
	}
}

// Acceptance 4: readiness is false while a large changelog restores and
// true once it is done; liveness stays true throughout, and through a 30 s
// broker outage, after which the pipeline resumes with exact counts.
func TestProbesThroughRestoreAndBrokerOutage(t *testing.T) {
	_, proxy := testkit.StartBrokerBehindProxy(t, 4)
	brokers := proxy.Addr()
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: brokers})
	in.WaitReady(time.Minute)
	var records []testkit.Record
	truth := map[string]int64{}
	for i := range 200_000 {
		k := fmt.Sprintf("restore-key-%06d", i)
		records = append(records, testkit.Record{Key: []byte(k), Value: []byte("x")})
		truth[k] = 1
	}
	testkit.Produce(t, brokers, input, "murmur2_random", records)
	testkit.Eventually(t, 2*time.Minute, func() error { return atLeastMetric(in, "abacus_records_processed_total", 200_000) })
	waitCounts(t, time.Minute, []*testkit.Instance{in}, map[string]int64{"restore-key-000000": 1, "restore-key-199999": 1}, false)
	in.Stop(30 * time.Second)

	in.RestartWith(t.TempDir())
	sawNotReady, sawRestoring := false, false
	testkit.Eventually(t, 2*time.Minute, func() error {
		code, body, err := in.Get("/healthz")
		if err == nil && code != 200 {
			t.Fatalf("liveness failed during restore: %d %s", code, body)
		}
		code, body, err = in.Get("/readyz")
		if err != nil {
			return err
		}
		if code == 503 {
			sawNotReady = true
			_, status, _ := in.Get("/api/v1/streams/status")
			if bytes.Contains(status, []byte(`"restoring_tasks":[{`)) {
				sawRestoring = true
				// A restoring task's partition has its lag series already,
				// so absent() alerts do not fire through a restore.
				if _, metrics, err := in.Get("/metrics"); err == nil {
					if n := bytes.Count(metrics, []byte("\nabacus_consumer_lag{")); n != 4 {
						t.Errorf("%d abacus_consumer_lag series while restoring; want one per assigned partition, 4", n)
					}
				}
			}
			return fmt.Errorf("not ready: %s", body)
		}
		return nil
	})
	if !sawNotReady || !sawRestoring {
		t.Errorf("readiness never went false (%v) or no task was seen restoring (%v) during a 200k-record restore", sawNotReady, sawRestoring)
	}
	if got := metric(t, in, "abacus_restored_records_total"); got != 200_000 {
		t.Errorf("restored %v records, want 200000", got)
	}

	// A 30 s broker outage: liveness holds, then the pipeline resumes.
	proxy.Cut()
	outageEnds := time.Now().Add(30 * time.Second)
	for time.Now().Before(outageEnds) {
		code, body, err := in.Get("/healthz")
		if err != nil || code != 200 {
			t.Fatalf("liveness failed during the broker outage: %d %s %v", code, body, err)
		}
		time.Sleep(500 * time.Millisecond) // sampling the probe, as the kubelet does
	}
	proxy.Restore()
	more := skewed(31, 5_000, 500)
	testkit.Produce(t, brokers, input, "murmur2_random", more.records)
	waitCounts(t, 2*time.Minute, []*testkit.Instance{in}, more.truth, false)
	in.WaitReady(time.Minute)
}

// Acceptance 5: with auth on, /api/v1 needs credentials; probes never do.
func TestAuth(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: map[string]string{
		"ABACUS_AUTH_TOKEN": "s3cret", "ABACUS_AUTH_BASIC": "ops:pa55",
	}})
	in.WaitReady(time.Minute)
	for _, route := range opsRoutes {
		code, body, err := in.Get(route)
		if err != nil {
			t.Fatal(err)
		}
		open := route == "/healthz" || route == "/readyz" || route == "/metrics"
		switch {
		case open && code != 200:
			t.Errorf("%s without credentials: %d %s, want 200", route, code, body)
		case !open && (code != 401 || !strings.Contains(string(body), `"code":"unauthorized"`)):
			t.Errorf("%s without credentials: %d %s, want 401", route, code, body)
		}
		if open {
			continue
		}
		for _, h := range []http.Header{{"Authorization": {"Bearer s3cret"}}, {"Authorization": {"Basic b3BzOnBhNTU="}}} {
			code, body, _ := in.GetWith(route, h)
			if code == 401 {
				t.Errorf("%s with %v: 401 %s", route, h, body)
			}
		}
		if code, _, _ := in.GetWith(route, http.Header{"Authorization": {"Bearer wrong"}}); code != 401 {
			t.Errorf("%s with a wrong token: %d", route, code)
		}
	}
	checkTicket(t, in, http.Header{"Authorization": {"Basic b3BzOnBhNTU="}})
}

// checkTicket: a ticket asked for with the credentials given opens a
// subscription without them, and nothing else.
func checkTicket(t *testing.T, in *testkit.Instance, creds http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, in.URL+"/api/v1/tickets", nil)
	req.Header = creds
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Ticket string }
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if resp.StatusCode != 201 || err != nil || got.Ticket == "" {
		t.Fatalf("POST /api/v1/tickets: %d %v; want 201 with a ticket", resp.StatusCode, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := testkit.OpenStream(ctx, http.DefaultClient, in.SubscribeURL("counts-store", "foo", false)+"&ticket="+url.QueryEscape(got.Ticket), nil)
	if err != nil {
		t.Fatalf("subscribe with a ticket: %v", err)
	}
	defer stream.Body.Close()
	if event, data, err := firstEvent(bufio.NewReader(stream.Body)); err != nil || event != "count" {
		t.Errorf("subscribe with a ticket: first event %q %s %v; want a count", event, data, err)
	}
	if code, body, _ := in.Get("/api/v1/stores/counts-store/keys/foo?ticket=" + url.QueryEscape(got.Ticket)); code != 401 {
		t.Errorf("a lookup with a ticket: %d %s; want 401", code, body)
	}
}

// State transitions reach the events topic as CloudEvents.
func TestStateEventsAsCloudEvents(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Env: map[string]string{"ABACUS_EVENTS_TOPIC": "abacus-events"}})
	in.WaitReady(time.Minute)
	in.Stop(30 * time.Second)
	var transitions []string
	for _, m := range testkit.Messages(t, b.Addr(), "abacus-events") {
		var ev struct {
			SpecVersion string `json:"specversion"`
			Type        string `json:"type"`
			Source      string `json:"source"`
			Data        struct{ From, To string }
		}
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			t.Fatalf("event %s: %v", m.Value, err)
		}
		if ev.SpecVersion != "1.0" || ev.Type != "io.abacus.streams.state.changed" || ev.Source != "/abacus/counts-app/abacus-0" {
			t.Errorf("event %s", m.Value)
		}
		transitions = append(transitions, ev.Data.From+">"+ev.Data.To)
	}
	got := strings.Join(transitions, " ")
	if !strings.Contains(got, "REBALANCING>RUNNING") || !strings.Contains(got, "RUNNING>PENDING_SHUTDOWN") || !strings.Contains(got, "PENDING_SHUTDOWN>NOT_RUNNING") {
		t.Errorf("transitions %q", got)
	}
}
