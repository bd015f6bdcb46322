package api_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// At its limit of requests in flight a member refuses one more API request
// at once, with 503 overloaded, Retry-After and a JSON error, and counts
// it; the probes and /metrics still answer; the requests it admitted are
// served once they can, and their slots come back.
func TestLoadSheddingAtTheInflightLimit(t *testing.T) {
	c := healthy()
	c.self.hold = make(chan struct{})
	c.config = func(cfg *api.Config) { cfg.MaxInflight = 3 }
	base := c.start(t)

	var wg sync.WaitGroup
	admitted := make([]int, 3)
	for i := range admitted {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := testkit.Fetch(base+"/api/v1/stores/counts-store/keys/apple", nil)
			if err != nil {
				t.Errorf("an admitted lookup: %v", err)
				return
			}
			if !sameJSON(body, []byte(`{"key":"apple","value":3,"partition":0,"served_by":"abacus-0"}`)) {
				t.Errorf("an admitted lookup answered %d %s", resp.StatusCode, body)
			}
			admitted[i] = resp.StatusCode
		}()
	}
	waitMetric(t, base, "abacus_http_requests_in_flight", 3)

	resp, body := testkit.MustFetch(t, base+"/api/v1/stores/counts-store/keys/banana", nil)
	want := `{"error":{"code":"overloaded","message":"this member is serving 3 API requests, its limit; retry shortly"}}` + "\n"
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != want ||
		resp.Header.Get("Retry-After") != "1" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("past the limit: %d Retry-After=%q Content-Type=%q %q; want 503, Retry-After 1, %q",
			resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body, want)
	}
	for _, probe := range []string{"/healthz", "/readyz", "/metrics"} {
		if resp, body := testkit.MustFetch(t, base+probe, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s at the limit: %d %s; want 200", probe, resp.StatusCode, body)
		}
	}
	waitMetric(t, base, `abacus_http_requests_shed_total{route="/api/v1/stores/:store/keys/:key"}`, 1)

	close(c.self.hold)
	wg.Wait()
	for i, code := range admitted {
		if code != http.StatusOK {
			t.Errorf("admitted lookup %d answered %d", i, code)
		}
	}
	waitMetric(t, base, "abacus_http_requests_in_flight", 0)
	if resp, body := testkit.MustFetch(t, base+"/api/v1/stores/counts-store/keys/banana", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after the burst: %d %s; want 200", resp.StatusCode, body)
	}
}

// streamingSubs answers every subscription with a stream that stays open
// until the client leaves; setup, when set, holds each before its answer
// starts.
type streamingSubs struct{ setup chan struct{} }

func (s streamingSubs) ServeCopy(w http.ResponseWriter, r *http.Request, key string, prefix bool, partition int32, _ int64) error {
	return s.Serve(w, r, key, prefix, partition)
}

func (s streamingSubs) Serve(w http.ResponseWriter, r *http.Request, _ string, _ bool, _ int32) error {
	if s.setup != nil {
		<-s.setup
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
	<-r.Context().Done()
	return nil
}

// A subscription counts against the limit while it is set up, and no
// longer once its stream has started: open streams have their own limit.
func TestSubscriptionCountsUntilItsStreamStarts(t *testing.T) {
	setup := make(chan struct{})
	c := healthy()
	c.config = func(cfg *api.Config) { cfg.MaxInflight, cfg.Subscriptions = 1, streamingSubs{setup: setup} }
	base := c.start(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opened := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/stores/counts-store/subscribe?key=apple", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("subscribe: %v", err)
			close(opened)
			return
		}
		opened <- resp
	}()
	waitMetric(t, base, "abacus_http_requests_in_flight", 1)
	if resp, body := testkit.MustFetch(t, base+"/api/v1/streams", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("while a subscription is set up at a limit of 1: %d %s; want 503 overloaded", resp.StatusCode, body)
	}

	close(setup)
	resp := <-opened
	if resp == nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("subscribe: %d %s", resp.StatusCode, body)
	}
	waitMetric(t, base, "abacus_http_requests_in_flight", 0)
	if resp, body := testkit.MustFetch(t, base+"/api/v1/streams", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("while a stream is open at a limit of 1: %d %s; want 200", resp.StatusCode, body)
	}
}
