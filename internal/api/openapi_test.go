package api_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/abacus-streams/abacus/internal/window"
)

// These tests hold openapi.yaml to what the server does: the spec names
// exactly the routes the server serves, and every answer of an in-process
// server (fakes of its Counts, Router, Health and Operations; no Kafka),
// successes and errors alike, matches the spec: its status is documented
// for the route, its headers and its JSON body match the schema.

// routesOutsideSpec are served routes the spec leaves out on purpose.
var routesOutsideSpec = map[string]string{
	// Only there to answer an empty key ("/keys/") with 400 bad_key rather
	// than echo's 404; the spec documents that 400 under .../keys/{key}.
	"/api/v1/stores/:store/keys/": "the empty key of .../keys/{key}",
}

type spec struct {
	doc    *openapi3.T
	router routers.Router
}

var loadSpecOnce = sync.OnceValues(func() (*spec, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../../openapi.yaml")
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi.yaml is not a valid OpenAPI document: %w", err)
	}
	// The server in the spec is an example; match routes on paths alone.
	doc.Servers = nil
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &spec{doc: doc, router: router}, nil
})

func loadSpec(t *testing.T) *spec {
	t.Helper()
	s, err := loadSpecOnce()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// echoPath turns "/stores/{store}" into echo's "/stores/:store".
func echoPath(openapiPath string) string {
	var b strings.Builder
	for i, seg := range strings.Split(openapiPath, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			seg = ":" + seg[1:len(seg)-1]
		}
		b.WriteString(seg)
	}
	return b.String()
}

func TestOpenAPIDescribesExactlyTheServedRoutes(t *testing.T) {
	s := loadSpec(t)
	inSpec := map[string]bool{} // "METHOD path", echo-style
	for path, item := range s.doc.Paths.Map() {
		for method := range item.Operations() {
			inSpec[method+" "+echoPath(path)] = true
		}
	}
	served := map[string]bool{}
	for _, r := range api.ServedRoutes() {
		served[r] = true
		path := strings.TrimPrefix(r, http.MethodGet+" ")
		if !inSpec[r] && routesOutsideSpec[path] == "" {
			t.Errorf("%s is served but missing from openapi.yaml", r)
		}
	}
	for r := range inSpec {
		if !served[r] {
			t.Errorf("openapi.yaml describes %s, which the server does not serve", r)
		}
	}
	for p := range routesOutsideSpec {
		if !served[http.MethodGet+" "+p] {
			t.Errorf("routesOutsideSpec names %s, which is not served any more: drop it", p)
		}
	}
}

// validate checks one answer against the spec: the route's operation must
// document its status, and its headers and body must match. as, when set,
// is a path standing in for req's to find the operation (for the empty key).
func (s *spec) validate(req *http.Request, as string, status int, header http.Header, body []byte) (op string, err error) {
	find := req
	if as != "" {
		find = req.Clone(req.Context())
		if find.URL, err = url.Parse(as); err != nil {
			return "", err
		}
	}
	route, params, err := s.router.FindRoute(find)
	if err != nil {
		return "", fmt.Errorf("no operation in the spec for %s %s: %w", find.Method, find.URL.EscapedPath(), err)
	}
	err = openapi3filter.ValidateResponse(req.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		// An undocumented status is an error too.
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	return route.Method + " " + route.Path, err
}

// ---- fakes of the server's seams ----

// The world's keys. Keys not listed here live in partition len(key)%2.
var keys = map[string]api.Item{
	"apple":   {Key: "apple", Value: 3, Partition: 0},
	"banana":  {Key: "banana", Value: 1, Partition: 0},
	"héllo":   {Key: "héllo", Value: 4, Partition: 0},
	"cherry":  {Key: "cherry", Value: 2, Partition: 1},
	"date":    {Key: "date", Value: 5, Partition: 1},
	"a/b c%d": {Key: "a/b c%d", Value: 1, Partition: 1},
}

func partitionOf(key string) int32 {
	if it, ok := keys[key]; ok {
		return it.Partition
	}
	return int32(len(key) % 2)
}

// fakeCounts is one member's part of counts-store.
type fakeCounts struct {
	held      map[int32]bool // partitions this member holds
	restoring map[int32]bool
	// copies are the partitions of which this member keeps a copy that
	// is not an answering task (a standby), with the copy's lag.
	copies map[int32]int64
	broken error // every read fails with it
	// hold, when set, keeps every lookup waiting until it is closed.
	hold chan struct{}
}

func (f *fakeCounts) Get(store string, key []byte) (api.Count, bool, error) {
	if f.hold != nil {
		<-f.hold
	}
	p := partitionOf(string(key))
	switch {
	case store != "counts-store":
		return api.Count{}, false, abacus.ErrUnknownStore
	case f.broken != nil:
		return api.Count{}, false, f.broken
	case !f.held[p]:
		return api.Count{Partition: p}, false, abacus.ErrNotOwned
	case f.restoring[p]:
		return api.Count{Partition: p}, false, abacus.ErrRestoring
	}
	it, ok := keys[string(key)]
	return api.Count{Value: it.Value, Partition: p}, ok, nil
}

func (f *fakeCounts) GetCopy(store string, key []byte, maxLag int64) (api.Count, bool, error) {
	c, found, err := f.Get(store, key)
	lag, stale := int64(0), false
	if lag, ok := f.copies[c.Partition]; ok && (errors.Is(err, abacus.ErrNotOwned) || errors.Is(err, abacus.ErrRestoring)) {
		if lag > maxLag {
			return c, false, &abacus.StaleError{Lag: lag}
		}
		it, ok := keys[string(key)]
		stale := true
		return api.Count{Value: it.Value, Partition: c.Partition, Lag: &lag, Stale: &stale}, ok, nil
	}
	c.Lag, c.Stale = &lag, &stale
	return c, found, err
}

// fakePosition is where every partition a fakeCounts holds is counted up to.
const fakePosition = 100

func (f *fakeCounts) WaitPosition(ctx context.Context, partition int32, offset int64) (int64, error) {
	if !f.held[partition] {
		return -1, abacus.ErrNotOwned
	}
	if offset < fakePosition {
		return fakePosition, nil
	}
	<-ctx.Done()
	return fakePosition, abacus.ErrNotYet
}

func (f *fakeCounts) Scan(store string, q api.ScanQuery) ([]api.Item, []int32, error) {
	if store != "counts-store" {
		return nil, nil, abacus.ErrUnknownStore
	}
	if f.broken != nil {
		return nil, nil, f.broken
	}
	var items []api.Item
	for k, it := range keys {
		if f.held[it.Partition] && !f.restoring[it.Partition] && strings.HasPrefix(k, q.Prefix) && k >= q.From && (q.To == "" || k < q.To) {
			items = append(items, it)
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	var covered []int32
	for p := range f.held {
		if !f.restoring[p] {
			covered = append(covered, p)
		}
	}
	slices.Sort(covered)
	return items[:min(len(items), q.Limit)], covered, nil
}

// ScanCopies answers from the partitions held (lag 0, not stale unless
// restoring) and the copies (stale, with their lag).
func (f *fakeCounts) ScanCopies(store string, q api.ScanQuery, maxLag int64) ([]api.Item, []api.PartitionCopy, error) {
	if store != "counts-store" {
		return nil, nil, abacus.ErrUnknownStore
	}
	if f.broken != nil {
		return nil, nil, f.broken
	}
	var copies []api.PartitionCopy
	for p := range int32(2) {
		if lag, ok := f.copies[p]; ok && (!f.held[p] || f.restoring[p]) {
			copies = append(copies, api.PartitionCopy{Partition: p, Lag: lag, Stale: true})
		} else if f.held[p] && !f.restoring[p] {
			copies = append(copies, api.PartitionCopy{Partition: p})
		}
	}
	var items []api.Item
	for k, it := range keys {
		fresh := slices.ContainsFunc(copies, func(c api.PartitionCopy) bool { return c.Partition == it.Partition && c.Lag <= maxLag })
		if fresh && strings.HasPrefix(k, q.Prefix) && k >= q.From && (q.To == "" || k < q.To) {
			items = append(items, it)
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Key < items[j].Key })
	return items[:min(len(items), q.Limit)], copies, nil
}

// The world's windows, of the windowed store trades-5s (tumbling, 5 s),
// in (key, start, end) order; each lives in its key's partition. The
// windowed store visits (of session windows) holds none.
var windows = []api.Window{
	{Key: "a/b c%d", Start: 0, End: 5000, Value: 1},
	{Key: "apple", Start: 0, End: 5000, Value: 2},
	{Key: "apple", Start: 5000, End: 10000, Value: 1},
	{Key: "cherry", Start: 5000, End: 10000, Value: 2},
	{Key: "héllo", Start: 1714564800000, End: 1714564805000, Value: 3}, // 2024-05-01T12:00:00Z
	{Key: "héllo", Start: 1714564805000, End: 1714564810000, Value: 1},
}

// windowStores are the windowed stores of the cluster's members.
var windowStores = []api.WindowStore{
	{Spec: window.Spec{Store: "trades-5s", Kind: window.Tumbling, Size: 5 * time.Second, Grace: time.Second}, ChangelogTopic: "counts-app-trades-5s-changelog"},
	{Spec: window.Spec{Store: "visits", Kind: window.Session, Size: 30 * time.Minute, Emit: window.EmitFinal, OutputTopic: "visits-out"}, ChangelogTopic: "counts-app-visits-changelog"},
}

// fakeWindows is one member's part of the windowed stores: the windows
// of data in the partitions its counts hold (partition maps a key to its
// partition), answering as its counts do.
type fakeWindows struct {
	counts    *fakeCounts
	data      []api.Window
	partition func(key string) int32
}

func newFakeWindows(counts *fakeCounts) *fakeWindows {
	return &fakeWindows{counts: counts, data: windows, partition: partitionOf}
}

func (f *fakeWindows) GetWindows(store string, key []byte, from, to int64) ([]api.Window, error) {
	p := f.partition(string(key))
	switch {
	case store != "trades-5s" && store != "visits":
		return nil, abacus.ErrUnknownStore
	case f.counts.broken != nil:
		return nil, f.counts.broken
	case !f.counts.held[p]:
		return nil, abacus.ErrNotOwned
	case f.counts.restoring[p]:
		return nil, abacus.ErrRestoring
	}
	var out []api.Window
	for _, w := range f.data {
		if store == "trades-5s" && w.Key == string(key) && w.Start >= from && w.Start < to {
			out = append(out, w)
		}
	}
	return out, nil
}

func (f *fakeWindows) ScanWindows(store string, q api.WindowScanQuery) ([]api.Window, []int32, error) {
	switch {
	case store != "trades-5s" && store != "visits":
		return nil, nil, abacus.ErrUnknownStore
	case f.counts.broken != nil:
		return nil, nil, f.counts.broken
	}
	var items []api.Window
	for _, w := range f.data {
		p := f.partition(w.Key)
		if store == "trades-5s" && f.counts.held[p] && !f.counts.restoring[p] && strings.HasPrefix(w.Key, q.Prefix) &&
			w.Key >= q.From && (q.To == "" || w.Key < q.To) && w.Start >= q.StartFrom && (q.StartTo == 0 || w.Start < q.StartTo) &&
			(q.After == nil || compareWindows(w, *q.After) > 0) {
			items = append(items, w)
		}
	}
	slices.SortFunc(items, compareWindows)
	var covered []int32
	for p := range f.counts.held {
		if !f.counts.restoring[p] {
			covered = append(covered, p)
		}
	}
	slices.Sort(covered)
	return items[:min(len(items), q.Limit)], covered, nil
}

// compareWindows orders windows by key, start and end.
func compareWindows(a, b api.Window) int {
	return cmp.Or(strings.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End))
}

// fakeSnapshots is one member's copies of task stores.
type fakeSnapshots struct {
	copies map[int32]int64 // checkpoint by partition
	broken error           // every read fails with it
}

func (f *fakeSnapshots) Checkpoint(p int32) (int64, bool, error) {
	if f.broken != nil {
		return 0, false, f.broken
	}
	cp, ok := f.copies[p]
	return cp, ok, nil
}

func (f *fakeSnapshots) WriteSnapshot(p int32, w io.Writer) (int64, error) {
	if f.broken != nil {
		return 0, f.broken
	}
	cp, ok := f.copies[p]
	if !ok {
		return 0, api.ErrNoCopy
	}
	n, err := fmt.Fprintf(w, "the copy of partition %d at %d", p, cp)
	return int64(n), err
}

type fakeRouter struct {
	members    []abacus.Member
	refreshed  time.Time
	partitions int32
	starting   bool // the partition count is not known yet
}

func (r *fakeRouter) PartitionOf(key []byte) (int32, error) {
	if r.starting {
		return 0, errors.New("the input topic's partitions are not known yet")
	}
	return partitionOf(string(key)), nil
}
func (r *fakeRouter) Members() ([]abacus.Member, time.Time, int32) {
	return r.members, r.refreshed, r.partitions
}
func (r *fakeRouter) Refresh() {}

type fakeHealth struct {
	alive, ready bool
	state        string
	reason       string // of the ERROR state
	tasks        []abacus.TaskStatus
	standbys     []abacus.TaskStatus
}

func (h *fakeHealth) Alive() bool                { return h.alive }
func (h *fakeHealth) Ready() bool                { return h.ready }
func (h *fakeHealth) State() string              { return h.state }
func (h *fakeHealth) Tasks() []abacus.TaskStatus { return h.tasks }
func (h *fakeHealth) StandbyTasks() []abacus.TaskStatus {
	return append([]abacus.TaskStatus{}, h.standbys...)
}
func (h *fakeHealth) Error() string { return h.reason }

type fakeOps struct{ offsetsErr error }

func (fakeOps) Config() map[string]any {
	return map[string]any{
		"bootstrap_servers": "kafka:9092", "embedded_broker": "127.0.0.1:9092", "application_id": "counts-app",
		"input_topic": "input-topic", "output_topic": "counts-topic", "store": "counts-store", "windows": "", "state_dir": "/data",
		"http_addr": ":8080", "instance_id": "abacus-0", "processing_guarantee": "exactly_once_v2",
		"commit_interval": "1s", "cache_max_bytes": 10 << 20, "memory_limit": 0, "peer_url_template": "http://{{.Member}}.{{.Service}}:{{.Port}}",
		"namespace": "default", "service": "abacus", "partitioner": "murmur2", "partitions": 4, "replication_factor": 0, "create_topics": true, "on_error": "dlq",
		"shutdown_timeout": "30s", "startup_timeout": "2m0s", "state_cleanup_delay": "10m0s", "num_standby_replicas": 1, "log_level": "info",
		"log_format": "text", "access_log": false, "auth_token": "********", "auth_basic": "", "auth_metrics": false, "tls_cert_file": "",
		"tls_key_file": "", "tls_ca_file": "", "cors_origins": "", "events_topic": "", "max_subscribers": 10000,
		"http_max_inflight": 512, "kafka": map[string]string{"sasl.password": "********", "security.protocol": "SASL_SSL"},
	}
}

func (fakeOps) Topology() api.Topology {
	return api.Topology{
		Source:     api.TopologyNode{Name: "source", Topic: "input-topic", Description: "consumes the input topic"},
		Processors: []api.TopologyNode{{Name: "count-by-key", Description: "counts"}},
		Stores:     []api.TopologyNode{{Name: "counts-store", Changelog: "counts-app-counts-store-changelog", Description: "counts"}},
		Sinks:      []api.TopologyNode{{Name: "output", Topic: "counts-topic", Description: "every new count"}},
	}
}

func (o fakeOps) Offsets(context.Context) ([]abacus.PartitionOffsets, error) {
	if o.offsetsErr != nil {
		return nil, o.offsetsErr
	}
	cp, end, lag := int64(41), int64(42), int64(0)
	return []abacus.PartitionOffsets{
		{Partition: 0, Committed: 100, End: 104, Lag: 4, Local: true, Checkpoint: &cp, ChangelogEnd: &end, RestoreLag: &lag},
		{Partition: 1, Committed: -1, End: 7, Lag: 7},
	}, nil
}

// ---- a two-member cluster in process ----

// cluster is what the fakes answer: abacus-0 (the member asked) holds
// partition 0, abacus-1 holds partition 1. Tests change it before start.
type cluster struct {
	health   fakeHealth
	self     fakeCounts
	peer     fakeCounts
	snaps    fakeSnapshots // abacus-0's copies
	router   fakeRouter
	ops      fakeOps
	peerDown bool // abacus-1 does not answer
	// windowStores are both members' windowed stores.
	windowStores []api.WindowStore
	config       func(c *api.Config) // more settings of abacus-0
	peerConfig   func(c *api.Config) // more settings of abacus-1
}

func healthy() *cluster {
	return &cluster{
		health: fakeHealth{alive: true, ready: true, state: "RUNNING", tasks: []abacus.TaskStatus{
			{Partition: 0, State: "active", Checkpoint: 41, RestoreDone: 42, RestoreTotal: 42},
		}, standbys: []abacus.TaskStatus{{Partition: 1, State: "standby", Checkpoint: 97, Lag: ptr(int64(3))}}},
		self:         fakeCounts{held: map[int32]bool{0: true}},
		peer:         fakeCounts{held: map[int32]bool{1: true}},
		snaps:        fakeSnapshots{copies: map[int32]int64{0: 41}},
		windowStores: windowStores,
		router: fakeRouter{partitions: 2, refreshed: time.Now().Add(-2 * time.Second), members: []abacus.Member{
			{Name: "abacus-0", Partitions: []int32{0}, Standbys: []int32{1}}, {Name: "abacus-1", Partitions: []int32{1}, Standbys: []int32{0}},
		}},
	}
}

func ptr[T any](v T) *T { return &v }

// start serves both members and returns abacus-0's URL.
func (c *cluster) start(t *testing.T) string {
	t.Helper()
	newServer := func(instance string, counts *fakeCounts, snaps api.Snapshots, more func(*api.Config)) *httptest.Server {
		reg := prometheus.NewRegistry()
		cfg := api.Config{
			ApplicationID: "counts-app", Instance: instance, Version: "test", Store: "counts-store", ScanSecret: "s",
			ChangelogTopic: "counts-app-counts-store-changelog",
			ForwardTimeout: 2 * time.Second, Counts: counts, Router: &c.router, Health: &c.health, Operations: c.ops,
			Snapshots: snaps, Gatherer: reg, Registerer: reg,
			Windows: newFakeWindows(counts), WindowStores: c.windowStores,
		}
		registerSampleMetrics(reg)
		if more != nil {
			more(&cfg)
		}
		srv := httptest.NewServer(api.New(cfg).Handler())
		t.Cleanup(srv.Close)
		return srv
	}
	peer := newServer("abacus-1", &c.peer, nil, c.peerConfig)
	if c.peerDown {
		peer.Close()
	}
	self := newServer("abacus-0", &c.self, &c.snaps, c.config)
	if len(c.router.members) == 2 { // (a case may have no view yet)
		c.router.members[0].URL, c.router.members[1].URL = self.URL, peer.URL
	}
	return self.URL
}

// registerSampleMetrics adds one metric of each kind, so that every shape
// of /api/v1/streams/metrics is seen.
func registerSampleMetrics(reg *prometheus.Registry) {
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "abacus_records_processed_total", Help: "Input records counted."})
	gauge := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "abacus_consumer_lag", Help: "Lag."}, []string{"topic", "partition"})
	hist := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "abacus_commit_seconds", Help: "Commit time.", Buckets: []float64{0.01, 0.1}})
	summary := prometheus.NewSummary(prometheus.SummaryOpts{Name: "abacus_restore_seconds", Help: "Restore time."})
	untyped := prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "abacus_build_info_untyped", Help: "Untyped."}, func() float64 { return 1 })
	reg.MustRegister(counter, gauge, hist, summary, untyped)
	counter.Add(5)
	gauge.WithLabelValues("input-topic", "0").Set(4)
	hist.Observe(0.05)
	summary.Observe(1.5)
}

// brokenGatherer fails, as a collector that cannot read its source does.
type brokenGatherer struct{}

func (brokenGatherer) Gather() ([]*dto.MetricFamily, error) {
	return nil, errors.New("collector failed")
}

// ---- the answers ----

type answerCase struct {
	name   string
	setup  func(c *cluster) // changes to the healthy cluster
	method string           // GET when empty
	path   string
	header http.Header
	as     string // validate as this path's operation (see spec.validate)

	status int
	code   string // the error code, for errors
	body   string // the exact JSON body, when the case pins it
}

var answerCases = []answerCase{
	// Probes: exact bodies in each state.
	{name: "alive", path: "/healthz", status: 200, body: `{"status":"ok"}`},
	{name: "stuck", path: "/healthz", status: 503, body: `{"status":"stuck","state":"RUNNING"}`,
		setup: func(c *cluster) { c.health.alive = false }},
	{name: "ready", path: "/readyz", status: 200, body: `{"state":"RUNNING","status":"ready"}`},
	{name: "not ready while rebalancing", path: "/readyz", status: 503, body: `{"state":"REBALANCING","status":"not ready"}`,
		setup: func(c *cluster) { c.health.ready, c.health.state = false, "REBALANCING" }},
	{name: "not ready after a failure", path: "/readyz", status: 503, setup: failed,
		body: `{"reason":"commit: broker unreachable","state":"ERROR","status":"not ready"}`},

	// Metrics.
	{name: "metrics", path: "/metrics", status: 200},
	{name: "metrics stay open when only /api/v1 has auth", path: "/metrics", status: 200,
		setup: withAuth("tok", "", false)},
	{name: "metrics behind auth", path: "/metrics", status: 401, code: "unauthorized",
		setup: withAuth("tok", "", true)},
	{name: "metrics as JSON", path: "/api/v1/streams/metrics", status: 200},
	{name: "metrics as JSON when a collector fails", path: "/api/v1/streams/metrics", status: 500, code: "internal",
		setup: func(c *cluster) { c.config = func(cfg *api.Config) { cfg.Gatherer = brokenGatherer{} } }},

	// Operations.
	{name: "streams", path: "/api/v1/streams", status: 200,
		body: `{"application_id":"counts-app","instance":"abacus-0","version":"test","state":"RUNNING"}`},
	{name: "status running", path: "/api/v1/streams/status", status: 200,
		body: `{"state":"RUNNING","active_tasks":[{"partition":0,"state":"active","checkpoint":41,"restore_done":42,"restore_total":42}],"restoring_tasks":[],"standby_tasks":[{"partition":1,"state":"standby","checkpoint":97,"restore_done":0,"restore_total":0,"lag":3}],` + statusStores + `}`},
	{name: "status restoring", path: "/api/v1/streams/status", status: 200, setup: restoring,
		body: `{"state":"REBALANCING","active_tasks":[{"partition":0,"state":"active","checkpoint":41,"restore_done":42,"restore_total":42}],` +
			`"restoring_tasks":[{"partition":2,"state":"restoring","checkpoint":-1,"restore_done":10,"restore_total":500}],` +
			`"standby_tasks":[{"partition":1,"state":"standby","checkpoint":97,"restore_done":0,"restore_total":0,"lag":3}],` + statusStores + `}`},
	{name: "status shutting down", path: "/api/v1/streams/status", status: 200,
		setup: func(c *cluster) {
			c.health.state, c.health.ready, c.health.tasks, c.health.standbys = "PENDING_SHUTDOWN", false, nil, nil
		},
		body: `{"state":"PENDING_SHUTDOWN","active_tasks":[],"restoring_tasks":[],"standby_tasks":[],` + statusStores + `}`},
	{name: "status after a failure", path: "/api/v1/streams/status", status: 200, setup: failed,
		body: `{"state":"ERROR","error":"commit: broker unreachable","active_tasks":[],"restoring_tasks":[],"standby_tasks":[],` + statusStores + `}`},
	{name: "config", path: "/api/v1/streams/config", status: 200},
	{name: "topology", path: "/api/v1/streams/topology", status: 200, setup: func(c *cluster) { c.windowStores = nil },
		body: `{"source":{"name":"source","topic":"input-topic","description":"consumes the input topic"},` +
			`"processors":[{"name":"count-by-key","description":"counts"}],` +
			`"stores":[{"name":"counts-store","changelog":"counts-app-counts-store-changelog","description":"counts"}],` +
			`"sinks":[{"name":"output","topic":"counts-topic","description":"every new count"}]}`},
	{name: "topology with windowed stores", path: "/api/v1/streams/topology", status: 200,
		body: `{"source":{"name":"source","topic":"input-topic","description":"consumes the input topic"},` +
			`"processors":[{"name":"count-by-key","description":"counts"},` +
			`{"name":"count-by-window-trades-5s","description":"adds one to the count of each tumbling window (size 5s, grace 1s) of the record key that the record's timestamp falls in, in store trades-5s"},` +
			`{"name":"count-by-window-visits","description":"adds one to the count of each session window (inactivity gap 30m0s, grace 0s) of the record key that the record's timestamp falls in, in store visits"}],` +
			`"stores":[{"name":"counts-store","changelog":"counts-app-counts-store-changelog","description":"counts"},` +
			`{"name":"trades-5s","changelog":"counts-app-trades-5s-changelog","description":"per-partition Badger store of the tumbling windows of each key and their counts, kept 1h0m0s past their end, backed by its compacted changelog"},` +
			`{"name":"visits","changelog":"counts-app-visits-changelog","description":"per-partition Badger store of the session windows of each key and their counts, kept 1h0m0s past their end, backed by its compacted changelog"}],` +
			`"sinks":[{"name":"output","topic":"counts-topic","description":"every new count"},` +
			`{"name":"output-trades-5s","topic":"trades-5s-topic","description":"every new count of a window of store trades-5s"},` +
			`{"name":"output-visits","topic":"visits-out","description":"the final count of each window of store visits, once, when the window closes"}]}`},
	{name: "offsets", path: "/api/v1/streams/offsets", status: 200},
	{name: "offsets while the broker is away", path: "/api/v1/streams/offsets", status: 503, code: "offsets_unavailable",
		setup: func(c *cluster) { c.ops.offsetsErr = errors.New("broker down") }},
	{name: "cluster", path: "/api/v1/cluster", status: 200},
	{name: "cluster before the first view", path: "/api/v1/cluster", status: 200,
		setup: func(c *cluster) { c.router.refreshed, c.router.partitions = time.Time{}, 0 }},
	{name: "cluster status", path: "/api/v1/cluster/status", status: 200},
	{name: "cluster status while a member is down", path: "/api/v1/cluster/status", status: 200,
		setup: func(c *cluster) { c.peerDown = true }},
	{name: "cluster status after a failure", path: "/api/v1/cluster/status", status: 200, setup: failed},
	{name: "cluster status before the first view", path: "/api/v1/cluster/status", status: 200,
		setup: func(c *cluster) { c.router.members, c.router.refreshed, c.router.partitions = nil, time.Time{}, 0 },
		body:  `{"self":"abacus-0","partitions":0,"refreshed_at":"","age_seconds":0,"members":[],"partition_map":[]}`},
	{name: "local cluster status", path: "/api/v1/cluster/status?local=true", status: 200},
	{name: "cluster status with local not a boolean", path: "/api/v1/cluster/status?local=maybe", status: 400, code: "bad_parameter"},
	{name: "stores", path: "/api/v1/stores", status: 200, setup: func(c *cluster) { c.windowStores = nil },
		body: `{"stores":[{"name":"counts-store","changelog":"counts-app-counts-store-changelog",` +
			`"partitions":[{"partition":0,"state":"active","checkpoint":41,"restore_done":42,"restore_total":42}]}]}`},
	{name: "stores with windowed stores", path: "/api/v1/stores", status: 200,
		body: `{"stores":[{"name":"counts-store","changelog":"counts-app-counts-store-changelog",` +
			`"partitions":[{"partition":0,"state":"active","checkpoint":41,"restore_done":42,"restore_total":42}]},` +
			`{"name":"trades-5s","type":"tumbling","size":"5s","advance":"5s","grace":"1s","retention":"1h0m0s","emit":"updates",` +
			`"output_topic":"trades-5s-topic","changelog_topic":"counts-app-trades-5s-changelog"},` +
			`{"name":"visits","type":"session","size":"30m0s","grace":"0s","retention":"1h0m0s","emit":"final",` +
			`"output_topic":"visits-out","changelog_topic":"counts-app-visits-changelog"}]}`},
	{name: "stores with a hopping windowed store", path: "/api/v1/stores", status: 200,
		setup: func(c *cluster) {
			c.windowStores = []api.WindowStore{{Spec: window.Spec{Store: "trades-1m", Kind: window.Hopping, Size: time.Minute, Advance: 10 * time.Second,
				Retention: 2 * time.Hour, OutputTopic: "trades-1m-out"}, ChangelogTopic: "counts-app-trades-1m-changelog"}}
		},
		body: `{"stores":[{"name":"counts-store","changelog":"counts-app-counts-store-changelog",` +
			`"partitions":[{"partition":0,"state":"active","checkpoint":41,"restore_done":42,"restore_total":42}]},` +
			`{"name":"trades-1m","type":"hopping","size":"1m0s","advance":"10s","grace":"0s","retention":"2h0m0s","emit":"updates",` +
			`"output_topic":"trades-1m-out","changelog_topic":"counts-app-trades-1m-changelog"}]}`},

	// Key lookups.
	{name: "key held here", path: "/api/v1/stores/counts-store/keys/apple", status: 200,
		body: `{"key":"apple","value":3,"partition":0,"served_by":"abacus-0"}`},
	{name: "key held by the other member", path: "/api/v1/stores/counts-store/keys/cherry", status: 200,
		body: `{"key":"cherry","value":2,"partition":1,"served_by":"abacus-1"}`},
	{name: "key with a slash, a space and a percent sign", path: "/api/v1/stores/counts-store/keys/a%2Fb%20c%25d", status: 200,
		body: `{"key":"a/b c%d","value":1,"partition":1,"served_by":"abacus-1"}`},
	{name: "UTF-8 key", path: "/api/v1/stores/counts-store/keys/h%C3%A9llo", status: 200,
		body: `{"key":"héllo","value":4,"partition":0,"served_by":"abacus-0"}`},
	{name: "key never counted", path: "/api/v1/stores/counts-store/keys/nope", status: 404, code: "key_not_found"},
	{name: "key never counted, at the other member", path: "/api/v1/stores/counts-store/keys/nope1", status: 404, code: "key_not_found"},
	{name: "key of an unknown store", path: "/api/v1/stores/nope/keys/apple", status: 404, code: "unknown_store"},
	{name: "empty key", path: "/api/v1/stores/counts-store/keys/", as: "/api/v1/stores/counts-store/keys/x", status: 400, code: "bad_key"},
	{name: "key over 4096 bytes", path: "/api/v1/stores/counts-store/keys/" + strings.Repeat("k", 4097), status: 400, code: "bad_key"},
	{name: "key not UTF-8", path: "/api/v1/stores/counts-store/keys/%C3%28", status: 400, code: "bad_key"},
	{name: "local not a boolean", path: "/api/v1/stores/counts-store/keys/apple?local=maybe", status: 400, code: "bad_parameter"},
	{name: "local key held elsewhere", path: "/api/v1/stores/counts-store/keys/cherry?local=true", status: 503, code: "not_owner"},
	{name: "key restoring", path: "/api/v1/stores/counts-store/keys/apple", status: 503, code: "restoring",
		setup: func(c *cluster) { c.self.restoring = map[int32]bool{0: true} }},
	{name: "key of a partition nobody owns", path: "/api/v1/stores/counts-store/keys/cherry", status: 503, code: "moving",
		setup: func(c *cluster) { c.router.members[1].Partitions = nil }},
	{name: "key being handed over", path: "/api/v1/stores/counts-store/keys/apple", status: 503, code: "moving",
		setup: func(c *cluster) { c.self.broken = abacus.ErrHandingOver }},
	{name: "key whose owner is down", path: "/api/v1/stores/counts-store/keys/cherry", status: 503, code: "owner_unreachable",
		setup: func(c *cluster) { c.peerDown = true }},
	{name: "key from a broken store", path: "/api/v1/stores/counts-store/keys/apple", status: 500, code: "internal",
		setup: func(c *cluster) { c.self.broken = errors.New("badger: corrupt") }},
	{name: "bounded key at its owner", path: "/api/v1/stores/counts-store/keys/apple?max_lag=0", status: 200,
		body: `{"key":"apple","value":3,"partition":0,"served_by":"abacus-0","lag":0,"stale":false}`},
	{name: "bounded key from its owner elsewhere", path: "/api/v1/stores/counts-store/keys/cherry?max_lag=5", status: 200,
		body: `{"key":"cherry","value":2,"partition":1,"served_by":"abacus-1","lag":0,"stale":false}`},
	{name: "bounded key from a standby here, its owner down", path: "/api/v1/stores/counts-store/keys/cherry?max_lag=10", status: 200,
		setup: func(c *cluster) { c.peerDown, c.self.copies = true, map[int32]int64{1: 3} },
		body:  `{"key":"cherry","value":2,"partition":1,"served_by":"abacus-0","lag":3,"stale":true}`},
	{name: "bounded key from a standby elsewhere, its owner restoring", path: "/api/v1/stores/counts-store/keys/apple?max_lag=10", status: 200,
		setup: func(c *cluster) {
			c.self.restoring, c.peer.copies = map[int32]bool{0: true}, map[int32]int64{0: 4}
		},
		body: `{"key":"apple","value":3,"partition":0,"served_by":"abacus-1","lag":4,"stale":true}`},
	{name: "bounded key whose copies all lag too much", path: "/api/v1/stores/counts-store/keys/cherry?max_lag=1", status: 503, code: "too_stale",
		setup: func(c *cluster) { c.peerDown, c.self.copies = true, map[int32]int64{1: 7} }},
	{name: "key after a position at its owner", path: "/api/v1/stores/counts-store/keys/apple?after=0:5", status: 200,
		body: `{"key":"apple","value":3,"partition":0,"served_by":"abacus-0","position":{"partition":0,"offset":100}}`},
	{name: "key after a position, forwarded to its owner", path: "/api/v1/stores/counts-store/keys/cherry?after=1:99&wait=1s", status: 200,
		body: `{"key":"cherry","value":2,"partition":1,"served_by":"abacus-1","position":{"partition":1,"offset":100}}`},
	{name: "key after a position not reached in time", path: "/api/v1/stores/counts-store/keys/apple?after=0:100&wait=20ms", status: 504, code: "not_yet"},
	{name: "key after a position of another partition", path: "/api/v1/stores/counts-store/keys/apple?after=1:5", status: 400, code: "bad_parameter"},
	{name: "after not partition:offset", path: "/api/v1/stores/counts-store/keys/apple?after=5", status: 400, code: "bad_parameter"},
	{name: "wait without after", path: "/api/v1/stores/counts-store/keys/apple?wait=1s", status: 400, code: "bad_parameter"},
	{name: "max_lag not a number of records", path: "/api/v1/stores/counts-store/keys/apple?max_lag=-1", status: 400, code: "bad_parameter"},

	// Key metadata.
	{name: "metadata", path: "/api/v1/stores/counts-store/keys/cherry/metadata", status: 200},
	{name: "metadata of a key with a slash", path: "/api/v1/stores/counts-store/keys/a%2Fb%20c%25d/metadata", status: 200},
	{name: "metadata of an unknown store", path: "/api/v1/stores/nope/keys/apple/metadata", status: 404, code: "unknown_store"},
	{name: "metadata of a key not UTF-8", path: "/api/v1/stores/counts-store/keys/%C3%28/metadata", status: 400, code: "bad_key"},
	{name: "metadata while starting", path: "/api/v1/stores/counts-store/keys/apple/metadata", status: 503, code: "starting",
		setup: func(c *cluster) { c.router.starting = true }},
	{name: "metadata of a partition nobody owns", path: "/api/v1/stores/counts-store/keys/cherry/metadata", status: 503, code: "moving",
		setup: func(c *cluster) { c.router.members[1].Partitions = nil }},

	// A key's windows.
	{name: "windows of a key held here", path: "/api/v1/stores/trades-5s/keys/apple/windows", status: 200,
		body: `{"key":"apple","partition":0,"served_by":"abacus-0","windows":[{"start":0,"end":5000,"value":2},{"start":5000,"end":10000,"value":1}]}`},
	{name: "windows of a key held by the other member", path: "/api/v1/stores/trades-5s/keys/cherry/windows", status: 200,
		body: `{"key":"cherry","partition":1,"served_by":"abacus-1","windows":[{"start":5000,"end":10000,"value":2}]}`},
	{name: "windows of a key with a slash, a space and a percent sign", path: "/api/v1/stores/trades-5s/keys/a%2Fb%20c%25d/windows", status: 200,
		body: `{"key":"a/b c%d","partition":1,"served_by":"abacus-1","windows":[{"start":0,"end":5000,"value":1}]}`},
	{name: "windows from a time in epoch milliseconds", path: "/api/v1/stores/trades-5s/keys/apple/windows?from=5000", status: 200,
		body: `{"key":"apple","partition":0,"served_by":"abacus-0","windows":[{"start":5000,"end":10000,"value":1}]}`},
	{name: "windows to a time in epoch milliseconds", path: "/api/v1/stores/trades-5s/keys/apple/windows?from=0&to=5000", status: 200,
		body: `{"key":"apple","partition":0,"served_by":"abacus-0","windows":[{"start":0,"end":5000,"value":2}]}`},
	{name: "windows between RFC 3339 times", path: "/api/v1/stores/trades-5s/keys/h%C3%A9llo/windows?from=2024-05-01T14:00:00%2B02:00&to=2024-05-01T12:00:04.999Z", status: 200,
		body: `{"key":"héllo","partition":0,"served_by":"abacus-0","windows":[{"start":1714564800000,"end":1714564805000,"value":3}]}`},
	{name: "windows after a time a hair past a start", path: "/api/v1/stores/trades-5s/keys/h%C3%A9llo/windows?from=2024-05-01T12:00:00.0001Z", status: 200,
		body: `{"key":"héllo","partition":0,"served_by":"abacus-0","windows":[{"start":1714564805000,"end":1714564810000,"value":1}]}`},
	{name: "windows of a key without any", path: "/api/v1/stores/trades-5s/keys/banana/windows", status: 200,
		body: `{"key":"banana","partition":0,"served_by":"abacus-0","windows":[]}`},
	{name: "windows of a key none of whose start in the range", path: "/api/v1/stores/trades-5s/keys/cherry/windows?from=0&to=5000", status: 200,
		body: `{"key":"cherry","partition":1,"served_by":"abacus-1","windows":[]}`},
	{name: "windows of an empty range", path: "/api/v1/stores/trades-5s/keys/apple/windows?from=5000&to=5000", status: 200,
		body: `{"key":"apple","partition":0,"served_by":"abacus-0","windows":[]}`},
	{name: "windows of a session store", path: "/api/v1/stores/visits/keys/apple/windows", status: 200,
		body: `{"key":"apple","partition":0,"served_by":"abacus-0","windows":[]}`},
	{name: "windows from a time that is none", path: "/api/v1/stores/trades-5s/keys/apple/windows?from=yesterday", status: 400,
		body: `{"error":{"code":"bad_parameter","message":"from must be epoch milliseconds, 0 or more, or an RFC 3339 time such as 2024-05-01T12:00:00Z, not \"yesterday\""}}`},
	{name: "windows to a time before the epoch", path: "/api/v1/stores/trades-5s/keys/apple/windows?to=-1", status: 400,
		body: `{"error":{"code":"bad_parameter","message":"to must be epoch milliseconds, 0 or more, or an RFC 3339 time such as 2024-05-01T12:00:00Z, not \"-1\""}}`},
	{name: "windows from after to", path: "/api/v1/stores/trades-5s/keys/apple/windows?from=2024-05-01T12:00:00Z&to=5000", status: 400,
		body: `{"error":{"code":"bad_parameter","message":"from (1714564800000) must not be after to (5000)"}}`},
	{name: "windows of a key not UTF-8", path: "/api/v1/stores/trades-5s/keys/%C3%28/windows", status: 400, code: "bad_key"},
	{name: "windows with broken query encoding", path: "/api/v1/stores/trades-5s/keys/apple/windows?from=%zz", status: 400, code: "bad_query"},
	{name: "windows of an unknown store", path: "/api/v1/stores/nope/keys/apple/windows", status: 404,
		body: `{"error":{"code":"unknown_store","message":"no windowed store named \"nope\""}}`},
	{name: "windows of the count store", path: "/api/v1/stores/counts-store/keys/apple/windows", status: 404,
		body: `{"error":{"code":"unknown_store","message":"store \"counts-store\" is the count store, not a windowed store: its counts are under /api/v1/stores/counts-store/keys"}}`},
	{name: "windows without windowed stores", path: "/api/v1/stores/trades-5s/keys/apple/windows", status: 404, code: "unknown_store",
		setup: func(c *cluster) { c.windowStores = nil }},
	{name: "count of a windowed store", path: "/api/v1/stores/trades-5s/keys/apple", status: 404,
		body: `{"error":{"code":"unknown_store","message":"store \"trades-5s\" is a windowed store, not the count store: its windows are under /api/v1/stores/trades-5s/windows"}}`},
	{name: "metadata of a windowed store's key", path: "/api/v1/stores/trades-5s/keys/cherry/metadata", status: 200},
	{name: "local windows of a key held elsewhere", path: "/api/v1/stores/trades-5s/keys/cherry/windows?local=true", status: 503, code: "not_owner"},
	{name: "windows of a key restoring", path: "/api/v1/stores/trades-5s/keys/apple/windows", status: 503, code: "restoring",
		setup: func(c *cluster) { c.self.restoring = map[int32]bool{0: true} }},
	{name: "windows of a key restoring at its owner", path: "/api/v1/stores/trades-5s/keys/cherry/windows", status: 503, code: "restoring",
		setup: func(c *cluster) { c.peer.restoring = map[int32]bool{1: true} }},
	{name: "windows of a key being handed over", path: "/api/v1/stores/trades-5s/keys/apple/windows", status: 503, code: "moving",
		setup: func(c *cluster) { c.self.broken = abacus.ErrHandingOver }},
	{name: "windows of a key whose owner is out of reach of the coordinator", path: "/api/v1/stores/trades-5s/keys/apple/windows", status: 503, code: "moving",
		setup: func(c *cluster) { c.self.broken = abacus.ErrUnconfirmed }},
	{name: "windows of a partition nobody owns", path: "/api/v1/stores/trades-5s/keys/cherry/windows", status: 503, code: "moving",
		setup: func(c *cluster) { c.router.members[1].Partitions = nil }},
	{name: "windows of a key whose owner is down", path: "/api/v1/stores/trades-5s/keys/cherry/windows", status: 503, code: "owner_unreachable",
		setup: func(c *cluster) { c.peerDown = true }},
	{name: "windows while starting", path: "/api/v1/stores/trades-5s/keys/apple/windows", status: 503, code: "starting",
		setup: func(c *cluster) { c.router.starting = true }},
	{name: "windows from a broken store", path: "/api/v1/stores/trades-5s/keys/apple/windows", status: 500, code: "internal",
		setup: func(c *cluster) { c.self.broken = errors.New("badger: corrupt") }},

	// Scans.
	{name: "scan first page", path: "/api/v1/stores/counts-store/keys?limit=2", status: 200},
	{name: "scan by prefix", path: "/api/v1/stores/counts-store/keys?prefix=a", status: 200,
		body: `{"items":[{"key":"a/b c%d","value":1,"partition":1},{"key":"apple","value":3,"partition":0}]}`},
	{name: "scan that matches nothing", path: "/api/v1/stores/counts-store/keys?prefix=zzz", status: 200, body: `{"items":[]}`},
	{name: "scan of a range", path: "/api/v1/stores/counts-store/keys?from=b&to=d", status: 200,
		body: `{"items":[{"key":"banana","value":1,"partition":0},{"key":"cherry","value":2,"partition":1}]}`},
	{name: "local scan", path: "/api/v1/stores/counts-store/keys?local=true", status: 200,
		body: `{"items":[{"key":"apple","value":3,"partition":0},{"key":"banana","value":1,"partition":0},{"key":"héllo","value":4,"partition":0}],"partitions":[0]}`},
	{name: "bounded scan of the owners", path: "/api/v1/stores/counts-store/keys?prefix=a&max_lag=0", status: 200,
		body: `{"items":[{"key":"a/b c%d","value":1,"partition":1},{"key":"apple","value":3,"partition":0}],"lag":0,"stale":false}`},
	{name: "bounded scan with a standby here, an owner down", path: "/api/v1/stores/counts-store/keys?prefix=a&max_lag=5", status: 200,
		setup: func(c *cluster) { c.peerDown, c.self.copies = true, map[int32]int64{1: 3} },
		body:  `{"items":[{"key":"a/b c%d","value":1,"partition":1},{"key":"apple","value":3,"partition":0}],"lag":3,"stale":true}`},
	{name: "bounded scan prefers the owner to a standby", path: "/api/v1/stores/counts-store/keys?from=c&max_lag=5", status: 200,
		setup: func(c *cluster) { c.self.copies = map[int32]int64{1: 3} },
		body:  `{"items":[{"key":"cherry","value":2,"partition":1},{"key":"date","value":5,"partition":1},{"key":"héllo","value":4,"partition":0}],"lag":0,"stale":false}`},
	{name: "bounded scan whose copies lag too much", path: "/api/v1/stores/counts-store/keys?max_lag=1", status: 503, code: "too_stale",
		setup: func(c *cluster) { c.peerDown, c.self.copies = true, map[int32]int64{1: 7} }},
	{name: "bounded scan of a partition without a copy", path: "/api/v1/stores/counts-store/keys?max_lag=1", status: 503, code: "incomplete",
		setup: func(c *cluster) { c.peerDown = true }},
	{name: "local bounded scan", path: "/api/v1/stores/counts-store/keys?local=true&max_lag=2&prefix=a", status: 200,
		setup: func(c *cluster) { c.self.copies = map[int32]int64{1: 3} },
		body:  `{"items":[{"key":"apple","value":3,"partition":0}],"partitions":[0],"copies":[{"partition":0,"lag":0,"stale":false},{"partition":1,"lag":3,"stale":true}],"lag":0,"stale":false}`},
	{name: "scan max_lag not a number of records", path: "/api/v1/stores/counts-store/keys?max_lag=x", status: 400, code: "bad_parameter"},
	{name: "scan with a forged cursor", path: "/api/v1/stores/counts-store/keys?cursor=Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eA", status: 400, code: "bad_cursor"},
	{name: "scan limit 0", path: "/api/v1/stores/counts-store/keys?limit=0", status: 400, code: "bad_parameter"},
	{name: "scan limit 1001", path: "/api/v1/stores/counts-store/keys?limit=1001", status: 400, code: "bad_parameter"},
	{name: "scan from after to", path: "/api/v1/stores/counts-store/keys?from=b&to=a", status: 400, code: "bad_parameter"},
	{name: "scan with broken query encoding", path: "/api/v1/stores/counts-store/keys?prefix=%zz", status: 400, code: "bad_query"},
	{name: "scan of an unknown store", path: "/api/v1/stores/nope/keys", status: 404, code: "unknown_store"},
	{name: "scan while a partition restores", path: "/api/v1/stores/counts-store/keys", status: 503, code: "incomplete",
		setup: func(c *cluster) { c.peer.restoring = map[int32]bool{1: true} }},
	{name: "scan while a member is down", path: "/api/v1/stores/counts-store/keys", status: 503, code: "owner_unreachable",
		setup: func(c *cluster) { c.peerDown = true }},
	{name: "scan while starting", path: "/api/v1/stores/counts-store/keys", status: 503, code: "starting",
		setup: func(c *cluster) { c.router.partitions = 0 }},
	{name: "local scan of a broken store", path: "/api/v1/stores/counts-store/keys?local=true", status: 500, code: "internal",
		setup: func(c *cluster) { c.self.broken = errors.New("badger: corrupt") }},

	// Scans of windows.
	{name: "windows scan first page", path: "/api/v1/stores/trades-5s/windows?limit=2", status: 200},
	{name: "windows scan of everything", path: "/api/v1/stores/trades-5s/windows", status: 200,
		body: `{"items":[{"key":"a/b c%d","start":0,"end":5000,"value":1},{"key":"apple","start":0,"end":5000,"value":2},{"key":"apple","start":5000,"end":10000,"value":1},{"key":"cherry","start":5000,"end":10000,"value":2},{"key":"héllo","start":1714564800000,"end":1714564805000,"value":3},{"key":"héllo","start":1714564805000,"end":1714564810000,"value":1}]}`},
	{name: "windows scan by prefix", path: "/api/v1/stores/trades-5s/windows?prefix=a", status: 200,
		body: `{"items":[{"key":"a/b c%d","start":0,"end":5000,"value":1},{"key":"apple","start":0,"end":5000,"value":2},{"key":"apple","start":5000,"end":10000,"value":1}]}`},
	{name: "windows scan of a range of keys", path: "/api/v1/stores/trades-5s/windows?from_key=b&to_key=d", status: 200,
		body: `{"items":[{"key":"cherry","start":5000,"end":10000,"value":2}]}`},
	{name: "windows scan from a time in epoch milliseconds", path: "/api/v1/stores/trades-5s/windows?from=5000", status: 200,
		body: `{"items":[{"key":"apple","start":5000,"end":10000,"value":1},{"key":"cherry","start":5000,"end":10000,"value":2},{"key":"héllo","start":1714564800000,"end":1714564805000,"value":3},{"key":"héllo","start":1714564805000,"end":1714564810000,"value":1}]}`},
	{name: "windows scan between RFC 3339 times", path: "/api/v1/stores/trades-5s/windows?from=1970-01-01T00:00:01Z&to=2024-05-01T14:00:00.0001%2B02:00", status: 200,
		body: `{"items":[{"key":"apple","start":5000,"end":10000,"value":1},{"key":"cherry","start":5000,"end":10000,"value":2},{"key":"héllo","start":1714564800000,"end":1714564805000,"value":3}]}`},
	{name: "windows scan of an empty range", path: "/api/v1/stores/trades-5s/windows?from=5000&to=5000", status: 200, body: `{"items":[]}`},
	{name: "windows scan to the epoch", path: "/api/v1/stores/trades-5s/windows?to=0", status: 200, body: `{"items":[]}`},
	{name: "windows scan of a session store", path: "/api/v1/stores/visits/windows", status: 200, body: `{"items":[]}`},
	{name: "local windows scan", path: "/api/v1/stores/trades-5s/windows?local=true", status: 200,
		body: `{"items":[{"key":"apple","start":0,"end":5000,"value":2},{"key":"apple","start":5000,"end":10000,"value":1},{"key":"héllo","start":1714564800000,"end":1714564805000,"value":3},{"key":"héllo","start":1714564805000,"end":1714564810000,"value":1}],"partitions":[0]}`},
	{name: "windows scan with a forged cursor", path: "/api/v1/stores/trades-5s/windows?cursor=Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eA", status: 400,
		body: `{"error":{"code":"bad_cursor","message":"cursor is not one this service issued: pass back next_cursor exactly as it was returned"}}`},
	{name: "windows scan limit 0", path: "/api/v1/stores/trades-5s/windows?limit=0", status: 400, code: "bad_parameter"},
	{name: "windows scan from_key after to_key", path: "/api/v1/stores/trades-5s/windows?from_key=b&to_key=a", status: 400,
		body: `{"error":{"code":"bad_parameter","message":"from_key must be before to_key"}}`},
	{name: "windows scan from a time that is none", path: "/api/v1/stores/trades-5s/windows?from=noon", status: 400,
		body: `{"error":{"code":"bad_parameter","message":"from must be epoch milliseconds, 0 or more, or an RFC 3339 time such as 2024-05-01T12:00:00Z, not \"noon\""}}`},
	{name: "windows scan from after to", path: "/api/v1/stores/trades-5s/windows?from=2&to=1", status: 400,
		body: `{"error":{"code":"bad_parameter","message":"from (2) must not be after to (1)"}}`},
	{name: "windows scan with broken query encoding", path: "/api/v1/stores/trades-5s/windows?prefix=%zz", status: 400, code: "bad_query"},
	{name: "windows scan of an unknown store", path: "/api/v1/stores/nope/windows", status: 404,
		body: `{"error":{"code":"unknown_store","message":"no windowed store named \"nope\""}}`},
	{name: "windows scan of the count store", path: "/api/v1/stores/counts-store/windows?local=true", status: 404,
		body: `{"error":{"code":"unknown_store","message":"store \"counts-store\" is the count store, not a windowed store: its counts are under /api/v1/stores/counts-store/keys"}}`},
	{name: "key scan of a windowed store", path: "/api/v1/stores/trades-5s/keys", status: 404,
		body: `{"error":{"code":"unknown_store","message":"store \"trades-5s\" is a windowed store, not the count store: its windows are under /api/v1/stores/trades-5s/windows"}}`},
	{name: "local key scan of a windowed store", path: "/api/v1/stores/trades-5s/keys?local=true", status: 404, code: "unknown_store"},
	{name: "windows scan while a partition restores", path: "/api/v1/stores/trades-5s/windows", status: 503, code: "incomplete",
		setup: func(c *cluster) { c.peer.restoring = map[int32]bool{1: true} }},
	{name: "windows scan while a member is down", path: "/api/v1/stores/trades-5s/windows", status: 503, code: "owner_unreachable",
		setup: func(c *cluster) { c.peerDown = true }},
	{name: "windows scan while starting", path: "/api/v1/stores/trades-5s/windows", status: 503, code: "starting",
		setup: func(c *cluster) { c.router.partitions = 0 }},
	{name: "windows scan at a member with a broken store", path: "/api/v1/stores/trades-5s/windows", status: 503, code: "owner_unreachable",
		setup: func(c *cluster) { c.peer.broken = errors.New("badger: corrupt") }},
	{name: "local windows scan of a broken store", path: "/api/v1/stores/trades-5s/windows?local=true", status: 500, code: "internal",
		setup: func(c *cluster) { c.self.broken = errors.New("badger: corrupt") }},

	// Between members.
	{name: "task checkpoint", path: "/api/v1/internal/tasks/0/checkpoint", status: 200,
		body: `{"partition":0,"checkpoint":41,"member":"abacus-0"}`},
	{name: "task checkpoint without a copy here", path: "/api/v1/internal/tasks/1/checkpoint", status: 404, code: "no_copy"},
	{name: "task checkpoint of a negative partition", path: "/api/v1/internal/tasks/-1/checkpoint", status: 400, code: "bad_parameter"},
	{name: "task checkpoint from a broken store", path: "/api/v1/internal/tasks/0/checkpoint", status: 500, code: "internal",
		setup: func(c *cluster) { c.snaps.broken = errors.New("badger: corrupt") }},
	{name: "task snapshot", path: "/api/v1/internal/tasks/0/snapshot", status: 200},
	{name: "task snapshot without a copy here", path: "/api/v1/internal/tasks/1/snapshot", status: 404, code: "no_copy"},
	{name: "task snapshot of no partition", path: "/api/v1/internal/tasks/x/snapshot", status: 400, code: "bad_parameter"},
	{name: "task snapshot from a broken store", path: "/api/v1/internal/tasks/0/snapshot", status: 500, code: "internal",
		setup: func(c *cluster) { c.snaps.broken = errors.New("badger: corrupt") }},

	// Auth.
	{name: "no token", path: "/api/v1/streams", status: 401, code: "unauthorized", setup: withAuth("tok", "", false)},
	{name: "wrong token", path: "/api/v1/stores/counts-store/keys/apple", status: 401, code: "unauthorized",
		setup: withAuth("tok", "", false), header: http.Header{"Authorization": {"Bearer nope"}}},
	{name: "right token", path: "/api/v1/stores/counts-store/keys/apple", status: 200,
		setup: withAuth("tok", "", false), header: http.Header{"Authorization": {"Bearer tok"}}},
	{name: "cluster status with credentials, passed on to the other member", path: "/api/v1/cluster/status", status: 200,
		setup: func(c *cluster) { withAuth("tok", "", false)(c); c.peerConfig = c.config }, header: http.Header{"Authorization": {"Bearer tok"}}},
	{name: "ticket", method: http.MethodPost, path: "/api/v1/tickets", status: 201},
	{name: "ticket with credentials", method: http.MethodPost, path: "/api/v1/tickets", status: 201,
		setup: withAuth("tok", "", false), header: http.Header{"Authorization": {"Bearer tok"}}},
	{name: "no basic credentials", path: "/api/v1/cluster", status: 401, code: "unauthorized", setup: withAuth("tok", "ops:pw", false)},
	{name: "right basic credentials", path: "/api/v1/cluster", status: 200,
		setup: withAuth("tok", "ops:pw", false), header: http.Header{"Authorization": {"Basic b3BzOnB3"}}},
	{name: "auth never guards probes", path: "/readyz", status: 200, setup: withAuth("tok", "ops:pw", true)},
}

func withAuth(token, basic string, metrics bool) func(c *cluster) {
	return func(c *cluster) {
		c.config = func(cfg *api.Config) { cfg.AuthToken, cfg.AuthBasic, cfg.AuthMetrics = token, basic, metrics }
	}
}

// restoring: REBALANCING while partition 2 restores here.
func restoring(c *cluster) {
	c.health.state, c.health.ready = "REBALANCING", false
	c.health.tasks = append(c.health.tasks, abacus.TaskStatus{Partition: 2, State: "restoring", Checkpoint: -1, RestoreDone: 10, RestoreTotal: 500})
}

// apiRoute is an operation of the spec: its method, and its path with
// its parameters filled.
type apiRoute struct{ method, path string }

// apiRoutes are the spec's routes under /api/v1 served in process (not
// the subscription), with a store and a key in their parameters.
func apiRoutes(s *spec) []apiRoute {
	var out []apiRoute
	for _, path := range s.doc.Paths.InMatchingOrder() {
		if !strings.HasPrefix(path, "/api/v1/") || strings.HasSuffix(path, "/subscribe") {
			continue // (the subscription is not served in process)
		}
		filled := strings.NewReplacer("{store}", "counts-store", "{key}", "apple", "{partition}", "0").Replace(path)
		for method := range s.doc.Paths.Value(path).Operations() {
			out = append(out, apiRoute{method, filled})
		}
	}
	return out
}

// unauthorizedCases asks every route under /api/v1 without credentials
// while auth is on.
func unauthorizedCases(s *spec) []answerCase {
	var out []answerCase
	for _, r := range apiRoutes(s) {
		out = append(out, answerCase{name: "no credentials for " + r.method + " " + r.path, method: r.method, path: r.path,
			status: 401, code: "unauthorized", setup: withAuth("tok", "ops:pw", false)})
	}
	return out
}

// overloadedCases asks every route under /api/v1 while the member serves
// its limit of requests (one, a lookup held in flight).
func overloadedCases(s *spec) []answerCase {
	var out []answerCase
	for _, r := range apiRoutes(s) {
		out = append(out, answerCase{name: "overloaded " + r.method + " " + r.path, method: r.method, path: r.path,
			status: 503, code: "overloaded", setup: busy})
	}
	return out
}

// busy: the limit of requests in flight is one, and lookups here wait.
// With it, a case first sends a lookup, which holds the one slot.
func busy(c *cluster) {
	c.self.hold = make(chan struct{})
	c.config = func(cfg *api.Config) { cfg.MaxInflight = 1 }
}

// holdSlots sends n lookups that wait on the cluster's hold, waits until
// they are in flight, and lets them go at the test's end.
func holdSlots(t *testing.T, c *cluster, base string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = testkit.Fetch(base+"/api/v1/stores/counts-store/keys/apple", nil)
		}()
	}
	t.Cleanup(func() {
		close(c.self.hold)
		wg.Wait()
	})
	waitMetric(t, base, "abacus_http_requests_in_flight", float64(n))
}

// waitMetric polls /metrics until the metric (summed over its series, "name
// value" or "name{...} value" lines) has the value.
func waitMetric(t *testing.T, base, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := testkit.MustFetch(t, base+"/metrics", nil)
		got := 0.0
		for _, line := range strings.Split(string(body), "\n") {
			if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
				var v float64
				if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
					got += v
				}
			}
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %v after 10 s, want %v", name, got, want)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronising
	}
}

// failed: ERROR, backing off from a failed session.
func failed(c *cluster) {
	c.health.state, c.health.ready, c.health.reason, c.health.tasks, c.health.standbys = "ERROR", false, "commit: broker unreachable", nil, nil
}

// exercised records which documented answers (operation and status) the
// cases produced.
type exercised struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (e *exercised) add(op string, status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen[fmt.Sprintf("%s %d", op, status)] = true
}

func TestOpenAPIAnswersMatchTheSpec(t *testing.T) {
	s := loadSpec(t)
	seen := &exercised{seen: map[string]bool{}}
	cases := append(append(answerCases, unauthorizedCases(s)...), overloadedCases(s)...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := healthy()
			if tc.setup != nil {
				tc.setup(c)
			}
			base := c.start(t)
			if c.self.hold != nil {
				holdSlots(t, c, base, 1)
			}
			resp, body := fetchCase(t, base, tc)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %.80s: %d %s; want %d", resp.Request.Method, tc.path, resp.StatusCode, body, tc.status)
			}
			op, err := s.validate(resp.Request, tc.as, resp.StatusCode, resp.Header, body)
			if err != nil {
				t.Errorf("%s %.80s: the answer does not match openapi.yaml: %v\nbody: %.500s", resp.Request.Method, tc.path, err, body)
			}
			seen.add(op, resp.StatusCode)
			checkAnswer(t, tc, resp, body)
		})
	}
	// Every answer the spec documents was produced and checked above, but
	// the subscription's (its handler is wired in cmd/server; e2e checks it).
	for path, item := range s.doc.Paths.Map() {
		if strings.HasSuffix(path, "/subscribe") {
			continue
		}
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if !seen.seen[method+" "+path+" "+status] {
					t.Errorf("no case produces the documented answer %s of %s %s", status, method, path)
				}
			}
		}
	}
}

// fetchCase sends a case's request (a GET unless it says otherwise) and
// reads the answer.
func fetchCase(t *testing.T, base string, tc answerCase) (*http.Response, []byte) {
	t.Helper()
	if tc.method == "" || tc.method == http.MethodGet {
		return testkit.MustFetch(t, base+tc.path, tc.header)
	}
	req, err := http.NewRequest(tc.method, base+tc.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range tc.header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// checkAnswer checks what a user of the route looks at.
func checkAnswer(t *testing.T, tc answerCase, resp *http.Response, body []byte) {
	t.Helper()
	if tc.code != "" {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("body %s; want error code %s with a message", body, tc.code)
		}
	}
	if tc.status == 503 && strings.HasPrefix(tc.path, "/api/v1/") && resp.Header.Get("Retry-After") == "" {
		t.Errorf("503 without Retry-After")
	}
	if tc.status == 401 && resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate")
	}
	if tc.body != "" && !sameJSON(body, []byte(tc.body)) {
		t.Errorf("body %s\nwant %s", body, tc.body)
	}
}

// The walk a scan client does: page after page with next_cursor, every
// page valid, every key once, in byte order.
func TestOpenAPIScanPages(t *testing.T) {
	s := loadSpec(t)
	base := healthy().start(t)
	var got []string
	testkit.ScanPages(t, base+"/api/v1/stores/counts-store/keys?limit=2", len(keys), func(n int, resp *http.Response, body []byte, page testkit.KeyPage) {
		if _, err := s.validate(resp.Request, "", resp.StatusCode, resp.Header, body); err != nil {
			t.Fatalf("page %d: %d %s: %v", n, resp.StatusCode, body, err)
		}
		for _, it := range page.Items {
			got = append(got, it.Key)
		}
	})
	var want []string
	for k := range keys {
		want = append(want, k)
	}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("pages gave %q; want %q", got, want)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// statusStores is the stores part of the status of the members these
// cases run: the count store, then their two windowed stores.
const statusStores = `"stores":[{"name":"counts-store","type":"count"},{"name":"trades-5s","type":"tumbling"},{"name":"visits","type":"session"}]`
