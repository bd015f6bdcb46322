package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// eventSource follows a subscription as a browser's EventSource does: it
// reconnects one second after its stream ends or its connection fails,
// sending the last id it saw as Last-Event-ID, and gives up for good on an
// answer that is not 200.
type eventSource struct {
	url string

	mu       sync.Mutex
	lastID   string
	values   map[string][]int64 // key -> every value received, in order
	answers  []int              // the status of every answer
	streams  int                // 200 answers
	refusal  string             // the non-200 answer that ended it
	stopped  chan struct{}
	cancel   context.CancelFunc
	failures int // connections that failed before an answer
}

func startEventSource(t *testing.T, u string) *eventSource {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	es := &eventSource{url: u, values: map[string][]int64{}, stopped: make(chan struct{}), cancel: cancel}
	go es.run(ctx)
	t.Cleanup(func() {
		cancel()
		<-es.stopped
	})
	return es
}

func (es *eventSource) run(ctx context.Context) {
	defer close(es.stopped)
	for ctx.Err() == nil {
		if !es.once(ctx) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second): // the retry field abacus sends
		}
	}
}

// once makes one request and reads its stream to the end; false when the
// answer was not 200.
func (es *eventSource) once(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, es.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	es.mu.Lock()
	if es.lastID != "" {
		req.Header.Set("Last-Event-ID", es.lastID)
	}
	es.mu.Unlock()
	resp, err := sseClient.Do(req)
	if err != nil {
		es.mu.Lock()
		es.failures++
		es.mu.Unlock()
		return true
	}
	defer resp.Body.Close()
	es.mu.Lock()
	es.answers = append(es.answers, resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		body := make([]byte, 512)
		n, _ := resp.Body.Read(body)
		es.refusal = fmt.Sprintf("%d %s", resp.StatusCode, body[:n])
		es.mu.Unlock()
		return false
	}
	es.streams++
	es.mu.Unlock()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var event, data, id string
	hasID := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			es.dispatch(event, data, id, hasID)
			event, data, id, hasID = "", "", "", false
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			event = value
		case "data":
			data = value
		case "id":
			id, hasID = value, true
		}
	}
	return true
}

func (es *eventSource) dispatch(event, data, id string, hasID bool) {
	es.mu.Lock()
	defer es.mu.Unlock()
	if hasID {
		es.lastID = id
	}
	if event != "count" {
		return
	}
	var d struct {
		Key   string `json:"key"`
		Value int64  `json:"value"`
	}
	if json.Unmarshal([]byte(data), &d) == nil {
		es.values[d.Key] = append(es.values[d.Key], d.Value)
	}
}

// waitValues waits until the last value of every key in want is want's.
func (es *eventSource) waitValues(t *testing.T, within time.Duration, want map[string]int64) {
	t.Helper()
	testkit.Eventually(t, within, func() error {
		es.mu.Lock()
		defer es.mu.Unlock()
		if es.refusal != "" {
			t.Fatalf("%s: refused with %s", es.url, es.refusal)
		}
		behind := 0
		example := ""
		for k, v := range want {
			got := es.values[k]
			if len(got) == 0 || got[len(got)-1] != v {
				behind++
				example = fmt.Sprintf("%q at %v, want %d", k, got[max(0, len(got)-3):], v)
			}
		}
		if behind > 0 {
			return fmt.Errorf("%s: %d keys behind, e.g. %s", es.url, behind, example)
		}
		return nil
	})
}

// check fails the test unless every answer was 200 and every key's values
// strictly increased; it returns the streams opened and the connections
// that failed before an answer.
func (es *eventSource) check(t *testing.T) (streams, failures int) {
	t.Helper()
	es.mu.Lock()
	defer es.mu.Unlock()
	for _, code := range es.answers {
		if code != http.StatusOK {
			t.Errorf("%s: answered %d (%s); want 200 every time", es.url, code, es.refusal)
		}
	}
	for k, vs := range es.values {
		for i := 1; i < len(vs); i++ {
			if vs[i] <= vs[i-1] {
				t.Errorf("%s: %q went from %d to %d; values must strictly increase", es.url, k, vs[i-1], vs[i])
			}
		}
	}
	return es.streams, es.failures
}

// A key's subscribers, one through a member that does not own the key and
// one in headless Chromium (an EventSource), both following the key as
// clients pinned to that member do (reconnecting to it, with Last-Event-ID,
// when it restarts), see strictly increasing values ending at the truth,
// and are never answered anything but 200: through a rolling restart of
// all three members (SIGTERM, same disk), and through a kill -9 of the
// key's owner, restarted once its partitions moved, input flowing all
// along.
func TestSubscriptionsThroughARollingRestartAndAKill(t *testing.T) {
	ps := newSSEPageServer(t)
	b := testkit.StartBroker(t, 6)
	pods := testkit.StartMembers(t, b.Addr(), 3, map[string]string{
		"ABACUS_PARTITIONS":                  "6",
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS":    "12000",
		"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS": "2000",
		"ABACUS_CORS_ORIGINS":                ps.URL,
	})
	w := skewed(21, 35_000, 3_000)
	key, most := w.hottest()
	owner, others, _ := sseOwner(t, pods, key)
	entry := others[0]
	t.Logf("%q (%d records) is owned by %s; subscribers ask %s", key, most, owner.Name, entry.Name)

	sub := startEventSource(t, sseURL(entry, key, false))
	page := ps.URL + "/sse.html?" + url.Values{"src": {sseURL(entry, key, false)}}.Encode()
	br := startBrowser(t, page, 6*time.Minute)
	ps.waitReport(t, time.Minute, "count", "0", br.done)

	f := startFeeder(t, b.Addr(), w, 1_000)
	waitProgress(t, f, 0.05)
	// A StatefulSet rolls from the highest ordinal down.
	for _, in := range slices.Backward(pods) {
		in.Stop(time.Minute)
		in.Restart()
		in.WaitReady(2 * time.Minute)
		t.Logf("%s restarted; feeder at %.0f%%", in.Name, 100*f.progress())
	}
	victim, survivors, _ := sseOwner(t, pods, key)
	victim.Kill()
	testkit.Eventually(t, time.Minute, func() error {
		if now, _ := sseOwnerOf(t, survivors[0], key); now == victim.Name {
			return fmt.Errorf("%s still owns %q", now, key)
		}
		return nil
	})
	victim.Restart()
	victim.WaitReady(2 * time.Minute)
	t.Logf("%s killed and restarted once its partitions moved; feeder at %.0f%%", victim.Name, 100*f.progress())
	<-f.done
	f.check(t)
	want := map[string]int64{key: w.truth[key]}
	waitCounts(t, 2*time.Minute, pods[:1], want, false)

	sub.waitValues(t, 2*time.Minute, want)
	streams, failures := sub.check(t)
	t.Logf("the subscriber opened %d streams (%d connections failed on the way)", streams, failures)

	ps.waitReport(t, 2*time.Minute, "count", strconv.FormatInt(want[key], 10), br.done)
	dom := br.dom(t, ps)
	var shown []int64
	for _, m := range regexp.MustCompile(`<li data-key="[^"]*" data-partition="\d+" data-id="[^"]*">(\d+)</li>`).FindAllStringSubmatch(dom, -1) {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		shown = append(shown, v)
	}
	for i := 1; i < len(shown); i++ {
		if shown[i] <= shown[i-1] {
			t.Errorf("the page showed %d after %d", shown[i], shown[i-1])
		}
	}
	if len(shown) == 0 || shown[len(shown)-1] != want[key] {
		t.Errorf("the page showed %v last; want %d", shown[max(0, len(shown)-3):], want[key])
	}
	ps.mu.Lock()
	for _, r := range ps.reports {
		if r.kind == "error" && r.value == "2" { // EventSource.CLOSED: a non-200 answer
			t.Errorf("the page's EventSource was closed for good: %v", ps.reports)
			break
		}
	}
	ps.mu.Unlock()
	t.Logf("the page showed %d values, the last %d", len(shown), shown[len(shown)-1])
}

// A prefix subscription through a member that owns none of the prefix's
// partitions follows every key while the members scale 3 -> 1 -> 3
// (SIGTERM, then restarts on the same disks, as a StatefulSet scales),
// input flowing: one stream, never ended, every key's values strictly
// increasing to the truth.
func TestPrefixSubscriptionThroughAScaleDownAndUp(t *testing.T) {
	b := testkit.StartBroker(t, 6)
	pods := testkit.StartMembers(t, b.Addr(), 3, map[string]string{
		"ABACUS_PARTITIONS":                  "6",
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS":    "12000",
		"ABACUS_KAFKA_HEARTBEAT_INTERVAL_MS": "2000",
	})
	entry := pods[0] // a StatefulSet scaled to 1 keeps abacus-0
	// Keys with the prefix, all in partitions the entry does not own.
	const prefix = "scaled/"
	var keys []string
	for i := 0; len(keys) < 40 && i < 1000; i++ {
		k := fmt.Sprintf("%s%03d", prefix, i)
		if o, _ := sseOwnerOf(t, entry, k); o != entry.Name {
			keys = append(keys, k)
		}
	}
	var recs []testkit.Record
	truth := map[string]int64{}
	for i := range 14_000 {
		k := keys[i%len(keys)]
		recs = append(recs, testkit.Record{Key: []byte(k), Value: []byte("x")})
		truth[k]++
	}
	sub := startEventSource(t, sseURL(entry, prefix, true))
	f := startFeeder(t, b.Addr(), workload{records: recs, truth: truth}, 400)
	waitProgress(t, f, 0.05)
	for _, in := range []*testkit.Instance{pods[2], pods[1]} {
		in.Stop(time.Minute)
		t.Logf("%s stopped; feeder at %.0f%%", in.Name, 100*f.progress())
	}
	testkit.Eventually(t, time.Minute, func() error {
		if v, _, _ := entry.Cluster(); len(v.Members) != 1 {
			return fmt.Errorf("cluster view %+v, want %s alone", v, entry.Name)
		}
		return nil
	})
	waitProgress(t, f, f.progress()+0.1)
	for _, in := range []*testkit.Instance{pods[1], pods[2]} {
		in.Restart()
		in.WaitReady(2 * time.Minute)
		t.Logf("%s back; feeder at %.0f%%", in.Name, 100*f.progress())
	}
	<-f.done
	f.check(t)
	waitCounts(t, 2*time.Minute, pods[:1], truth, false)
	sub.waitValues(t, 2*time.Minute, truth)
	streams, failures := sub.check(t)
	if streams != 1 || failures != 0 {
		t.Errorf("the subscriber opened %d streams (%d connections failed); want one that never ended", streams, failures)
	}
	t.Logf("one stream followed %d keys to the truth", len(truth))
}
