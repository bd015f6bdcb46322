package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/abacus-streams/abacus/internal/testkit"
)

// openAPI is openapi.yaml, loaded and checked, with a router that finds
// the operation of a request.
type openAPI struct {
	doc    *openapi3.T
	router routers.Router
}

func loadOpenAPI(t *testing.T) *openAPI {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI document: %v", err)
	}
	doc.Servers = nil // the spec's server is an example: match on paths alone
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &openAPI{doc: doc, router: router}
}

// check validates one live answer against the operation of the path as
// (or of the request's own path when as is empty): its status must be
// documented and its headers and body must match.
func (o *openAPI) check(resp *http.Response, body []byte, as string, opts openapi3filter.Options) error {
	find := resp.Request
	if as != "" {
		find = resp.Request.Clone(context.Background())
		find.URL, _ = url.Parse(as)
	}
	route, params, err := o.router.FindRoute(find)
	if err != nil {
		return fmt.Errorf("no operation in openapi.yaml for %s %s: %w", find.Method, find.URL.EscapedPath(), err)
	}
	opts.IncludeResponseStatus, opts.MultiError = true, true
	return openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: resp.Request, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &opts,
	})
}

// One real instance on a kfake broker: every route of the spec, and the
// errors a user runs into, answer as openapi.yaml says.
func TestOpenAPILiveAnswers(t *testing.T) {
	spec := loadOpenAPI(t)
	b := testkit.StartBroker(t, 4)
	port := testkit.FreePort(t)
	in := testkit.StartInstance(t, testkit.InstanceConfig{Name: "abacus-0", Brokers: b.Addr(), Port: port, Env: map[string]string{
		"ABACUS_PEER_URL_TEMPLATE": fmt.Sprintf("http://127.0.0.1:%d", port),
		"ABACUS_MAX_SUBSCRIBERS":   "1",
		"ABACUS_WINDOWS":           "clicks-1m=tumbling,size=1m;visits=session,size=30m",
	}})
	in.WaitReady(time.Minute)
	truth := map[string]int64{"apple": 3, "banana": 1, "cherry": 2, "a/b c%d": 1, "héllo": 4}
	var records []testkit.Record
	for key, n := range truth {
		for range n {
			records = append(records, testkit.Record{Key: []byte(key), Value: []byte("v")})
		}
	}
	testkit.Produce(t, b.Addr(), input, "murmur2_random", records)
	waitCounts(t, time.Minute, []*testkit.Instance{in}, truth, false)

	for _, tc := range []struct {
		path   string
		as     string // validate as this path's operation (the empty key has none of its own)
		status int
		code   string // the error code, for errors
	}{
		{path: "/healthz", status: 200},
		{path: "/readyz", status: 200},
		{path: "/metrics", status: 200},
		{path: "/api/v1/streams", status: 200},
		{path: "/api/v1/streams/status", status: 200},
		{path: "/api/v1/streams/config", status: 200},
		{path: "/api/v1/streams/metrics", status: 200},
		{path: "/api/v1/streams/topology", status: 200},
		{path: "/api/v1/streams/offsets", status: 200},
		{path: "/api/v1/cluster", status: 200},
		{path: "/api/v1/cluster/status", status: 200},
		{path: "/api/v1/cluster/status?local=true", status: 200},
		{path: "/api/v1/cluster/status?local=maybe", status: 400, code: "bad_parameter"},
		{path: "/api/v1/stores", status: 200},
		{path: "/api/v1/stores/counts-store/keys/apple", status: 200},
		{path: "/api/v1/stores/counts-store/keys/a%2Fb%20c%25d", status: 200},
		{path: "/api/v1/stores/counts-store/keys/h%C3%A9llo?local=true", status: 200},
		{path: "/api/v1/stores/counts-store/keys/apple/metadata", status: 200},
		{path: "/api/v1/stores/counts-store/keys/never-counted/metadata", status: 200},
		{path: "/api/v1/stores/counts-store/keys", status: 200},
		{path: "/api/v1/stores/counts-store/keys?prefix=a&limit=1", status: 200},
		{path: "/api/v1/stores/counts-store/keys?from=b&to=d", status: 200},
		{path: "/api/v1/stores/counts-store/keys?local=true", status: 200},
		{path: "/api/v1/stores/clicks-1m/keys/apple/windows", status: 200},
		{path: "/api/v1/stores/visits/keys/h%C3%A9llo/windows?from=0&to=2100-01-01T00:00:00Z", status: 200},
		{path: "/api/v1/stores/clicks-1m/keys/never-counted/windows", status: 200},
		{path: "/api/v1/stores/clicks-1m/windows", status: 200},
		{path: "/api/v1/stores/visits/windows?prefix=a&limit=1", status: 200},
		{path: "/api/v1/stores/clicks-1m/keys/apple/windows?from=yesterday", status: 400, code: "bad_parameter"},
		{path: "/api/v1/stores/counts-store/keys/apple/windows", status: 404, code: "unknown_store"},
		{path: "/api/v1/stores/nope/windows", status: 404, code: "unknown_store"},

		{path: "/api/v1/stores/counts-store/keys/never-counted", status: 404, code: "key_not_found"},
		{path: "/api/v1/stores/nope/keys/apple", status: 404, code: "unknown_store"},
		{path: "/api/v1/stores/nope/keys/apple/metadata", status: 404, code: "unknown_store"},
		{path: "/api/v1/stores/nope/keys", status: 404, code: "unknown_store"},
		{path: "/api/v1/stores/counts-store/keys/", as: "/api/v1/stores/counts-store/keys/x", status: 400, code: "bad_key"},
		{path: "/api/v1/stores/counts-store/keys/%C3%28", status: 400, code: "bad_key"},
		{path: "/api/v1/stores/counts-store/keys/apple?local=maybe", status: 400, code: "bad_parameter"},
		{path: "/api/v1/stores/counts-store/keys?cursor=Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eA", status: 400, code: "bad_cursor"},
		{path: "/api/v1/stores/counts-store/keys?limit=0", status: 400, code: "bad_parameter"},
		{path: "/api/v1/stores/counts-store/keys?limit=1001", status: 400, code: "bad_parameter"},
		{path: "/api/v1/stores/counts-store/keys?from=b&to=a", status: 400, code: "bad_parameter"},
		{path: "/api/v1/stores/counts-store/keys?prefix=%zz", status: 400, code: "bad_query"},
	} {
		resp, body := testkit.MustFetch(t, in.URL+tc.path, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s: %d %.300s; want %d", tc.path, resp.StatusCode, body, tc.status)
			continue
		}
		if err := spec.check(resp, body, tc.as, openapi3filter.Options{}); err != nil {
			t.Errorf("GET %s: the answer does not match openapi.yaml: %v\nbody: %.500s", tc.path, err, body)
		}
		if tc.code != "" && !strings.Contains(string(body), `"code":"`+tc.code+`"`) {
			t.Errorf("GET %s: %s; want error code %s", tc.path, body, tc.code)
		}
	}

	t.Run("scan pages", func(t *testing.T) { checkLiveScanPages(t, spec, in, truth) })
	t.Run("subscribe", func(t *testing.T) { checkLiveSubscription(t, spec, in, "apple", truth["apple"]) })
	t.Run("console", func(t *testing.T) { checkLiveConsole(t, in) })
	t.Run("ticket", func(t *testing.T) { checkLiveTicket(t, spec, in) })
}

// checkLiveTicket: POST /api/v1/tickets answers as the spec says.
func checkLiveTicket(t *testing.T, spec *openAPI, in *testkit.Instance) {
	resp, err := http.Post(in.URL+"/api/v1/tickets", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 201 {
		t.Fatalf("POST /api/v1/tickets: %d %s; want 201", resp.StatusCode, body)
	}
	if err := spec.check(resp, body, "", openapi3filter.Options{}); err != nil {
		t.Errorf("POST /api/v1/tickets: the answer does not match openapi.yaml: %v\nbody: %s", err, body)
	}
}

// checkLiveConsole: the binary serves the web console, outside the spec,
// at "/" with its policy; a path beside it is the spec's JSON 404.
func checkLiveConsole(t *testing.T, in *testkit.Instance) {
	resp, body := testkit.MustFetch(t, in.URL+"/", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") || !strings.Contains(string(body), "/console/") {
		t.Errorf("GET /: %d %s CSP %q %.200s; want the console's page", resp.StatusCode, resp.Header.Get("Content-Type"),
			resp.Header.Get("Content-Security-Policy"), body)
	}
	if code, body, err := in.Get("/console/nope.js"); err != nil || code != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Errorf("GET /console/nope.js: %d %s %v; want the JSON 404 not_found", code, body, err)
	}
}

// checkLiveScanPages walks the store two keys a page, as a client does:
// every page valid, every key once, in byte order, with its count.
func checkLiveScanPages(t *testing.T, spec *openAPI, in *testkit.Instance, truth map[string]int64) {
	got := map[string]int64{}
	var order []string
	testkit.ScanPages(t, in.URL+"/api/v1/stores/counts-store/keys?limit=2", len(truth), func(n int, resp *http.Response, body []byte, page testkit.KeyPage) {
		if err := spec.check(resp, body, "", openapi3filter.Options{}); err != nil {
			t.Errorf("page %d does not match openapi.yaml: %v\nbody: %s", n, err, body)
		}
		for _, it := range page.Items {
			got[it.Key] = it.Value
			order = append(order, it.Key)
		}
	})
	if !slices.IsSorted(order) || len(order) != len(got) {
		t.Errorf("keys over the pages: %q; want each once, in byte order", order)
	}
	want := make([]string, 0, len(truth))
	for k := range truth {
		want = append(want, k)
	}
	sort.Strings(want)
	for _, k := range want {
		if got[k] != truth[k] {
			t.Errorf("scan: %q counted %d, want %d", k, got[k], truth[k])
		}
	}
}

// checkLiveSubscription opens a subscription to key (the instance allows
// one at a time): a 200 event stream whose first event is the key's
// current count, and a second subscription is refused with 503.
func checkLiveSubscription(t *testing.T, spec *openAPI, in *testkit.Instance, key string, count int64) {
	subscribe := in.SubscribeURL("counts-store", key, false)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, subscribe, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		body, _ := io.ReadAll(resp.Body)
		t.Skipf("GET %s is not served yet (404 %s): the SSE route is wired through api.Config.Extra in cmd/server", subscribe, body)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("subscribe: %d %s %s; want 200 text/event-stream", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// The stream never ends by itself: check status and headers, not the body.
	if err := spec.check(resp, nil, "", openapi3filter.Options{ExcludeResponseBody: true}); err != nil {
		t.Errorf("subscribe: the answer does not match openapi.yaml: %v", err)
	}
	event, data, err := firstEvent(bufio.NewReader(resp.Body))
	if err != nil {
		t.Fatalf("subscribe: reading the first event: %v", err)
	}
	var value any
	if err := json.Unmarshal([]byte(data), &value); err != nil {
		t.Fatalf("subscribe: event %q carries %q, not JSON: %v", event, data, err)
	}
	if err := spec.doc.Components.Schemas["CountEvent"].Value.VisitJSON(value); event != "count" || err != nil {
		t.Errorf("subscribe: first event %q %s; want a count event matching CountEvent: %v", event, data, err)
	}
	if want := fmt.Sprintf(`"value":%d`, count); !strings.Contains(data, want) {
		t.Errorf("subscribe: first event %s; want the current count (%s)", data, want)
	}

	// A second subscription is one too many for ABACUS_MAX_SUBSCRIBERS=1.
	for _, tc := range []struct {
		query  string
		status int
	}{{"?key=" + url.QueryEscape(key), 503}, {"", 400}} {
		r, body := testkit.MustFetch(t, in.URL+"/api/v1/stores/counts-store/subscribe"+tc.query, nil)
		if r.StatusCode != tc.status {
			t.Errorf("subscribe%s while one is open: %d %s; want %d", tc.query, r.StatusCode, body, tc.status)
			continue
		}
		if err := spec.check(r, body, "", openapi3filter.Options{}); err != nil {
			t.Errorf("subscribe%s: the answer does not match openapi.yaml: %v\nbody: %s", tc.query, err, body)
		}
	}
}

// firstEvent reads Server-Sent Events up to the first one with a type or
// data, skipping the retry line and comments.
func firstEvent(r *bufio.Reader) (event, data string, err error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && (event != "" || data != ""):
			return event, data, nil
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
}
