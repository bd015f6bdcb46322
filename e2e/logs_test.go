package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// jsonLines parses every line of out as a JSON object, failing the test
// on any other line.
func jsonLines(t *testing.T, who, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for i, raw := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(raw), &line); err != nil {
			t.Errorf("%s: line %d is not JSON: %q", who, i+1, raw)
			continue
		}
		lines = append(lines, line)
	}
	return lines
}

// numbered makes n records of keys prefix0..prefix(n-1), one each.
func numbered(prefix string, n int) ([]testkit.Record, map[string]int64) {
	records := make([]testkit.Record, n)
	truth := make(map[string]int64, n)
	for i := range records {
		k := prefix + itoa(i)
		records[i] = testkit.Record{Key: []byte(k), Value: []byte("x")}
		truth[k] = 1
	}
	return records, truth
}

// With ABACUS_LOG_FORMAT=json every line an instance writes, on stdout
// and stderr, is a JSON object, librdkafka's included: through a 10 s
// cut of every broker connection librdkafka complains at warn or error
// level, as lines of the instance's log marked logger=librdkafka, and
// once the broker is back records are counted again.
func TestJSONLogsThroughBrokerCut(t *testing.T) {
	_, proxy := testkit.StartBrokerBehindProxy(t, 4)
	brokers := proxy.Addr()
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: brokers,
		Env: map[string]string{"ABACUS_LOG_FORMAT": "json"}})
	in.WaitReady(time.Minute)
	before, truth := numbered("before-", 200)
	testkit.Produce(t, brokers, input, "murmur2_random", before)
	waitCounts(t, 30*time.Second, []*testkit.Instance{in}, truth, false)

	cutFrom := len(in.Log())
	proxy.Cut()
	time.Sleep(10 * time.Second) // the outage is what is tested
	cutTo := len(in.Log())
	proxy.Restore()

	after, more := numbered("after-", 200)
	testkit.Produce(t, brokers, input, "murmur2_random", after)
	waitCounts(t, 45*time.Second, []*testkit.Instance{in}, more, false)
	waitCounts(t, 5*time.Second, []*testkit.Instance{in}, truth, false)
	in.Stop(30 * time.Second)

	jsonLines(t, in.Name, in.Log())
	var fromLibrdkafka []map[string]any
	for _, line := range jsonLines(t, in.Name, in.Log()[cutFrom:cutTo]) {
		if line["logger"] == "librdkafka" && (line["level"] == "WARN" || line["level"] == "ERROR") {
			fromLibrdkafka = append(fromLibrdkafka, line)
		}
	}
	if len(fromLibrdkafka) == 0 {
		t.Fatalf("no librdkafka line at warn or error during the cut; the log then:\n%s", in.Log()[cutFrom:cutTo])
	}
	for _, line := range fromLibrdkafka {
		for _, k := range []string{"time", "msg", "member", "component", "client", "rdkafka_name", "facility", "syslog_level"} {
			if _, ok := line[k]; !ok {
				t.Errorf("librdkafka line without %s: %v", k, line)
			}
		}
	}
	t.Logf("%d librdkafka lines at warn or error during the cut, the first: %v", len(fromLibrdkafka), fromLibrdkafka[0])
}

// With ABACUS_ACCESS_LOG=true every request is one line at info with
// exactly the documented attributes (docs/operations.md, "Logs"); a
// subscription's comes when its stream ends. Neither the token nor the
// query is ever logged.
func TestAccessLog(t *testing.T) {
	b := testkit.StartBroker(t, 4)
	const token = "access-log-s3cret"
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(),
		Env: map[string]string{"ABACUS_LOG_FORMAT": "json", "ABACUS_ACCESS_LOG": "true", "ABACUS_AUTH_TOKEN": token}})
	in.WaitReady(time.Minute)
	auth := http.Header{"Authorization": {"Bearer " + token}}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sseRecords("logged", 1))
	stream := sseMustSubscribe(t, sseURL(in, "logged", false), auth)
	stream.waitValues(t, 30*time.Second, map[string]int64{"logged": 1})
	testkit.Produce(t, b.Addr(), input, "murmur2_random", sseRecords("logged", 1))
	stream.waitValues(t, 30*time.Second, map[string]int64{"logged": 2})
	stream.close()

	withID := http.Header{"Authorization": {"Bearer " + token}, "X-Request-Id": {"req-7"}}
	keyPath := "/api/v1/stores/" + storeName + "/keys/logged"
	if code, body, err := in.GetWith(keyPath+"?local=true&password=q-s3cret", withID); err != nil || code != 200 {
		t.Fatalf("lookup: %d %s %v", code, body, err)
	}
	if code, _, err := in.Get("/api/v1/streams?token=q-s3cret"); err != nil || code != 401 {
		t.Fatalf("without credentials: %d %v", code, err)
	}

	// Each line is written as its answer ends: wait for the last one.
	subscribePath := "/api/v1/stores/" + storeName + "/subscribe"
	byPath := map[string]map[string]any{}
	testkit.Eventually(t, 10*time.Second, func() error {
		for _, line := range jsonLines(t, in.Name, in.Log()) {
			if line["msg"] == "http request" {
				byPath[fmt.Sprint(line["path"])] = line
			}
		}
		for _, p := range []string{subscribePath, keyPath, "/api/v1/streams", "/readyz"} {
			if byPath[p] == nil {
				return fmt.Errorf("no access log line of %s yet", p)
			}
		}
		return nil
	})

	attrs := []string{"time", "level", "msg", "member", "component", "method", "route", "path", "status", "duration_ms", "bytes_out", "remote_addr"}
	for _, w := range []struct {
		path, route string
		status      float64
		more        map[string]any
	}{
		{subscribePath, "/api/v1/stores/:store/subscribe", 200, nil},
		{keyPath, "/api/v1/stores/:store/keys/:key", 200, map[string]any{"request_id": "req-7"}},
		{"/api/v1/streams", "/api/v1/streams", 401, nil},
		{"/readyz", "/readyz", 200, nil},
	} {
		line := byPath[w.path]
		want := slices.Clone(attrs)
		for k, v := range w.more {
			want = append(want, k)
			if line[k] != v {
				t.Errorf("%s: %s %v, want %v", w.path, k, line[k], v)
			}
		}
		var got []string
		for k := range line {
			got = append(got, k)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: attributes %v, want %v", w.path, got, want)
		}
		if line["level"] != "INFO" || line["member"] != "abacus-0" || line["component"] != "http" || line["method"] != "GET" ||
			line["route"] != w.route || line["status"] != w.status {
			t.Errorf("%s: %v; want GET %s %v at INFO from abacus-0's http", w.path, line, w.route, w.status)
		}
		if addr, _ := line["remote_addr"].(string); !strings.HasPrefix(addr, "127.0.0.1:") {
			t.Errorf("%s: remote_addr %q", w.path, addr)
		}
		if n, _ := line["bytes_out"].(float64); n <= 0 {
			t.Errorf("%s: bytes_out %v", w.path, line["bytes_out"])
		}
	}
	// The stream's line came at its end: it lasted through two counts.
	if d, _ := byPath[subscribePath]["duration_ms"].(float64); d < byPath[keyPath]["duration_ms"].(float64) {
		t.Errorf("the stream's duration_ms %v is not its whole life", d)
	}
	for _, secret := range []string{token, "q-s3cret"} {
		if strings.Contains(in.Log(), secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// With ABACUS_LOG_FORMAT=json even the error the process exits with is a
// JSON line, also when it is the configuration's own.
func TestJSONExitLine(t *testing.T) {
	cmd := exec.Command(testkit.Binary(t))
	cmd.Env = []string{"ABACUS_LOG_FORMAT=json", "ABACUS_COMMIT_INTERVAL=often", "ABACUS_STATE_DIR=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("started with a bad commit interval")
	}
	lines := jsonLines(t, "abacus", string(out))
	if len(lines) != 1 || lines[0]["level"] != "ERROR" || lines[0]["msg"] != "exiting on error" ||
		lines[0]["error"] != `invalid ABACUS_COMMIT_INTERVAL="often": must be a duration such as 500ms, 30s or 10m` {
		t.Errorf("exit lines %v; want one error line naming ABACUS_COMMIT_INTERVAL", lines)
	}
}
