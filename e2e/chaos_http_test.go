package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// probe measures how long a member takes to answer /healthz and a key
// lookup, every 100 ms until stopped, and keeps the worst (and the worst
// of /healthz alone).
type probe struct {
	halt          func()
	mu            sync.Mutex
	worst         time.Duration
	worstHealthz  time.Duration
	failures      []string
	probes        int
	lookupsServed int
}

func startProbe(in *testkit.Instance, keys map[string]int64) *probe {
	p := &probe{}
	var key string
	var want int64
	for k, v := range keys {
		key, want = k, v
		break
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	p.halt = every(100*time.Millisecond, func() {
		for _, path := range []string{"/healthz", "/api/v1/stores/counts-store/keys/" + url.PathEscape(key)} {
			began := time.Now()
			resp, err := c.Get(in.URL + path)
			took := time.Since(began)
			var body []byte
			if err == nil {
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			p.mu.Lock()
			p.probes++
			p.worst = max(p.worst, took)
			if path == "/healthz" {
				p.worstHealthz = max(p.worstHealthz, took)
			}
			switch {
			case err != nil:
				p.failures = append(p.failures, fmt.Sprintf("%s: %v", path, err))
			case resp.StatusCode != 200 && !(resp.StatusCode == 503 && path != "/healthz"):
				p.failures = append(p.failures, fmt.Sprintf("%s: %d %s", path, resp.StatusCode, body))
			case resp.StatusCode == 200 && path != "/healthz":
				p.lookupsServed++
				if !strings.Contains(string(body), fmt.Sprintf(`"value":%d`, want)) {
					p.failures = append(p.failures, fmt.Sprintf("%s: %s, want value %d", path, body, want))
				}
			}
			p.mu.Unlock()
		}
	})
	return p
}

func (p *probe) finish() (worst time.Duration, probes, served int, failures []string) {
	p.halt()
	return p.worst, p.probes, p.lookupsServed, p.failures
}

func (p *probe) healthzWorst() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.worstHealthz
}

// answersPromptly checks that /healthz and every key answer within 2 s.
func answersPromptly(t *testing.T, pods []*testkit.Instance, truth map[string]int64) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	for _, in := range pods {
		resp, err := c.Get(in.URL + "/healthz")
		if err != nil {
			t.Fatalf("%s: /healthz did not answer within 2 s: %v", in.Name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: /healthz %d", in.Name, resp.StatusCode)
		}
	}
	waitCounts(t, 30*time.Second, pods, truth, false)
}

// TestChaosHTTPAbuse: slow-loris clients (many connections sending their
// headers a byte at a time) and a burst of 10,000 concurrent requests do
// not take a member down: during them it still answers /healthz, after
// them it answers every key exactly and /healthz promptly.
func TestChaosHTTPAbuse(t *testing.T) {
	seed := chaosSeed(t, 7005)
	b := testkit.StartBroker(t, 6)
	pods := trio(t, b.Addr(), map[string]string{"ABACUS_PARTITIONS": "6"})
	w := skewed(seed, 20_000, 2_000)
	testkit.Produce(t, b.Addr(), input, "murmur2_random", w.records)
	waitCounts(t, 2*time.Minute, pods, w.truth, false)
	target := pods[0]
	host := strings.TrimPrefix(target.URL, "http://")

	// Slow loris: every connection sends a request line and then one
	// header byte a second, never finishing its headers.
	loris := 1_000
	if chaosLong() {
		loris = 5_000
	}
	p := startProbe(target, w.truth)
	began := time.Now()
	var opened, cut atomic.Int64
	var cutAfter []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range loris {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", host, 10*time.Second)
			if err != nil {
				return
			}
			defer conn.Close()
			opened.Add(1)
			start := time.Now()
			if _, err := fmt.Fprintf(conn, "GET /api/v1/stores/counts-store/keys/k%d HTTP/1.1\r\nHost: %s\r\nX-Slow: ", i, host); err != nil {
				return
			}
			for time.Since(start) < 20*time.Second {
				if _, err := conn.Write([]byte("a")); err != nil {
					break
				}
				// A connection the server closed reads EOF (or its 408).
				_ = conn.SetReadDeadline(time.Now().Add(time.Second))
				buf := make([]byte, 512)
				if _, err := conn.Read(buf); err == nil || !isTimeout(err) {
					break
				}
			}
			if took := time.Since(start); took < 20*time.Second {
				cut.Add(1)
				mu.Lock()
				cutAfter = append(cutAfter, took)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	worst, probes, served, failures := p.finish()
	sort.Slice(cutAfter, func(i, j int) bool { return cutAfter[i] < cutAfter[j] })
	median := time.Duration(0)
	if len(cutAfter) > 0 {
		median = cutAfter[len(cutAfter)/2]
	}
	t.Logf("slow loris: %d of %d connections opened, %d cut by the server (median after %s) within %s; meanwhile %d probes of /healthz and a lookup, worst %s, %d lookups exact, failures %d %v",
		opened.Load(), loris, cut.Load(), median.Round(100*time.Millisecond), time.Since(began).Round(time.Second), probes, worst.Round(time.Millisecond), served, len(failures), firstN(failures, 3))
	if cut.Load() < opened.Load() {
		t.Errorf("%d slow connections were still open after 20 s: headers are not read with a deadline", opened.Load()-cut.Load())
	}
	if len(failures) > 0 || worst > 5*time.Second {
		t.Errorf("during the slow loris the member answered probes with %d failures (%v), worst %s", len(failures), firstN(failures, 3), worst)
	}
	answersPromptly(t, pods, w.truth)

	// A burst of 10,000 concurrent requests: key lookups (two thirds are
	// forwarded to the owner), scans, probes, metrics.
	keys := make([]string, 0, len(w.truth))
	for k := range w.truth {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	r := rand.New(rand.NewPCG(seed, 9))
	const burst = 10_000
	paths := make([]string, burst)
	for i := range paths {
		switch n := r.IntN(100); {
		case n < 80:
			paths[i] = "/api/v1/stores/counts-store/keys/" + url.PathEscape(keys[r.IntN(len(keys))])
		case n < 85:
			paths[i] = "/api/v1/stores/counts-store/keys?limit=100&prefix=user"
		case n < 95:
			paths[i] = "/healthz"
		default:
			paths[i] = "/metrics"
		}
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: burst, DisableKeepAlives: true, DialContext: (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
	}}
	p = startProbe(target, w.truth)
	statuses := map[string]int{}
	var latencies []time.Duration
	var healthzInBurst time.Duration // the worst of the burst's own /healthz
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gate := make(chan struct{})
	began = time.Now()
	for _, path := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target.URL+path, nil)
			start := time.Now()
			resp, err := client.Do(req)
			outcome := ""
			if err != nil {
				outcome = "error: " + errorKind(err)
			} else {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				outcome = fmt.Sprint(resp.StatusCode)
				if resp.StatusCode == 503 {
					outcome += " " + errorCode(body)
				}
				if resp.StatusCode == 200 && strings.Contains(path, "/keys/") {
					var kc testkit.KeyCount
					if jsonErr := json.Unmarshal(body, &kc); jsonErr != nil || kc.Value != w.truth[kc.Key] {
						outcome = "wrong count"
					}
				}
			}
			took := time.Since(start)
			mu.Lock()
			statuses[outcome]++
			latencies = append(latencies, took)
			if path == "/healthz" {
				healthzInBurst = max(healthzInBurst, took)
			}
			mu.Unlock()
		}()
	}
	close(gate)
	wg.Wait()
	elapsed := time.Since(began)
	healthzWorst := p.healthzWorst()
	worst, probes, served, failures = p.finish()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	t.Logf("burst of %d concurrent requests took %s: outcomes %v; latency p50 %s, p99 %s, max %s; meanwhile %d probes, worst %s (/healthz %s; the burst's own /healthz: worst %s), %d lookups exact, failures %d %v",
		burst, elapsed.Round(100*time.Millisecond), statuses, latencies[len(latencies)/2].Round(time.Millisecond),
		latencies[len(latencies)*99/100].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond),
		probes, worst.Round(time.Millisecond), healthzWorst.Round(time.Millisecond), healthzInBurst.Round(time.Millisecond), served, len(failures), firstN(failures, 3))
	if statuses["wrong count"] > 0 {
		t.Errorf("%d lookups of the burst answered a wrong count", statuses["wrong count"])
	}
	for outcome, n := range statuses {
		if strings.HasPrefix(outcome, "5") && !strings.HasPrefix(outcome, "503") {
			t.Errorf("%d requests of the burst answered %s", n, outcome)
		}
	}
	for _, in := range pods {
		if in.Exited() {
			t.Fatalf("%s went down during the burst:\n%s", in.Name, tail(in.Log(), 40))
		}
	}
	answersPromptly(t, pods, w.truth)
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// errorKind names a client error briefly, for a tally.
func errorKind(err error) string {
	msg := err.Error()
	for _, kind := range []string{"timeout", "deadline exceeded", "connection reset", "connection refused", "server closed idle connection", "EOF", "broken pipe", "too many open files"} {
		if strings.Contains(msg, kind) {
			return kind
		}
	}
	return msg
}

// errorCode is the code of an error body.
func errorCode(body []byte) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error.Code
}

func firstN(s []string, n int) []string { return s[:min(n, len(s))] }
