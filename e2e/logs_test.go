package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
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
