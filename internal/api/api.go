package api

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/ticket"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Count is one key's committed count.
type Count struct {
	Key       string `json:"key"`
	Value     int64  `json:"value"`
	Partition int32  `json:"partition"`
	ServedBy  string `json:"served_by"`
	// Lag and Stale answer a bounded lookup (?max_lag) only: the
	// changelog records the copy had not applied, and whether the copy
	// is not the owner's committed state.
	Lag   *int64 `json:"lag,omitempty"`
	Stale *bool  `json:"stale,omitempty"`
	// Position is where the owner's answer stands on the key's input
	// partition: every record of it below the offset is counted. Strict
	// and read-your-writes (?after) answers carry it, and bounded answers
	// from the owner's committed state; a stale copy's does not.
	Position *Position `json:"position,omitempty"`
}

// Counts answers from this instance's stores; its methods may be called
// from many goroutines at once.
type Counts interface {
	// Get returns a key's committed count; found is false for a key never
	// counted. It fails with one of abacus's errors when it cannot answer.
	Get(store string, key []byte) (c Count, found bool, err error)
	// GetCopy answers a key from the task here or any other copy of it
	// here that lags at most maxLag changelog records, with Lag and Stale
	// set. It fails with abacus.ErrNotOwned when there is no copy here,
	// and with an *abacus.StaleError when the copy here lags more.
	GetCopy(store string, key []byte, maxLag int64) (c Count, found bool, err error)
	// WaitPosition waits until every record of the input partition below
	// offset+1 is counted and durable here, and returns the position
	// reached; abacus.ErrNotYet when ctx ends first (with the position),
	// abacus.ErrNotOwned when the partition is not a task here.
	WaitPosition(ctx context.Context, partition int32, offset int64) (int64, error)
	// Scan returns up to q.Limit keys in byte order from the active tasks
	// here, and the partitions the answer covers.
	Scan(store string, q ScanQuery) (items []Item, covered []int32, err error)
	// ScanCopies returns up to q.Limit keys in byte order from the copies
	// here (GetCopy's) that lag at most maxLag, and every copy here with
	// its lag, fresh enough or not.
	ScanCopies(store string, q ScanQuery, maxLag int64) (items []Item, copies []PartitionCopy, err error)
}

// PartitionCopy says how fresh a member's copy of a partition is.
type PartitionCopy struct {
	Partition int32 `json:"partition"`
	Lag       int64 `json:"lag"`
	Stale     bool  `json:"stale"`
}

// Item is one entry of a scan.
type Item struct {
	Key       string `json:"key"`
	Value     int64  `json:"value"`
	Partition int32  `json:"partition"`
}

// ScanQuery bounds a scan: keys with Prefix, From <= key < To, at most Limit.
type ScanQuery struct {
	Prefix, From, To string
	Limit            int
}

// Router knows who owns what; its methods may be called concurrently.
type Router interface {
	// PartitionOf is the key's partition under the producers' partitioner.
	PartitionOf(key []byte) (int32, error)
	// Members is the last known ownership view, when it was read, and the
	// input topic's partition count.
	Members() (members []abacus.Member, refreshed time.Time, partitions int32)
	// Refresh asks for a new view soon, without waiting for it.
	Refresh()
}

// Health tells the probes about the pipeline.
type Health interface {
	// Alive is false when the processing loop is stuck.
	Alive() bool
	// Ready is true when RUNNING with every active task restored.
	Ready() bool
	// State is the lifecycle state's name.
	State() string
	// Tasks describes this instance's tasks.
	Tasks() []abacus.TaskStatus
	// StandbyTasks describes this instance's standby tasks.
	StandbyTasks() []abacus.TaskStatus
	// Error is the reason of the ERROR state, empty in any other.
	Error() string
}

// Console serves the web console's files (package console); its
// methods may be called concurrently.
type Console interface {
	http.Handler
	// Paths are the paths it serves: "/", the page, and its assets.
	Paths() []string
}

// Config wires a Server.
type Config struct {
	ApplicationID string
	Instance      string
	Version       string
	// Store is the name of the store served here, and ChangelogTopic the
	// topic that backs it (config.Config.ChangelogTopic), named in /stores.
	Store          string
	ChangelogTopic string
	// ScanSecret keys the cursors; every member must share it.
	ScanSecret string
	// ForwardTimeout bounds a request forwarded to the owner (default 3s).
	ForwardTimeout time.Duration
	Counts         Counts
	Router         Router
	Health         Health
	Operations     Operations
	// Windows answers the windowed stores that WindowStores describes, in
	// the order /stores lists them; nil: there are none, and WindowStores
	// is ignored.
	Windows      Windows
	WindowStores []WindowStore
	// Subscriptions serves live streams from this instance (optional).
	Subscriptions Subscriptions
	// WindowSubscriptions serves live streams of the windowed stores'
	// windows from this instance (optional).
	WindowSubscriptions WindowSubscriptions
	// Snapshots serves this member's copies of task stores to peers
	// (optional: without, the member holds none).
	Snapshots Snapshots
	// Console serves the web console at "/" and its assets, without
	// auth: they hold no data, and every call the page makes goes to
	// /api/v1 with the user's credentials. Nil: no console, and "/" is a
	// 404 as any path without a route.
	Console    Console
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// AccessLog logs one line per request to Logger at info
	// (accesslog.go).
	AccessLog bool

	// MaxInflight bounds the /api/v1 requests served at once; one more is
	// answered 503 overloaded with Retry-After (default 512). The probes
	// and /metrics are not counted, nor are subscriptions once their
	// stream has started.
	MaxInflight int

	// StreamWriteTimeout bounds one write to a subscription streamed
	// through from other members; a client whose write blocks longer is
	// let go, as Subscriptions lets go of its own (default 10s).
	StreamWriteTimeout time.Duration

	// AuthToken and AuthBasic ("user:password"), when set, guard /api/v1
	// (and /metrics with AuthMetrics); the probes are never guarded.
	AuthToken   string
	AuthBasic   string
	AuthMetrics bool
	// CORSOrigins, comma-separated, allows browsers from those origins.
	CORSOrigins string
	// TLSCertFile and TLSKeyFile make Serve speak HTTPS.
	TLSCertFile, TLSKeyFile string
	// PeerTLS verifies the certificates of members serving HTTPS when
	// this one forwards to them; nil uses the system's roots.
	PeerTLS *tls.Config
}

// Server serves the HTTP surface.
type Server struct {
	cfg Config
	// stopping closes when Serve begins its shutdown: streams that wait
	// for an owner end then (follow.go).
	stopping     chan struct{}
	stoppingOnce sync.Once
	echo         *echo.Echo
	client       *http.Client
	// streamClient relays subscriptions from other members.
	streamClient *http.Client
	// waitClient forwards lookups that wait (?after): their deadline is
	// the request's own.
	waitClient *http.Client
	metrics    *httpMetrics
	// tickets signs and verifies the tickets that open subscriptions
	// (tickets.go).
	tickets *ticket.Signer
}

// Paths of the routes, shared with the chart's tests.
const (
	PathHealthz   = "/healthz"
	PathReadyz    = "/readyz"
	PathMetrics   = "/metrics"
	PathKey       = "/api/v1/stores/:store/keys/:key"
	PathKeys      = "/api/v1/stores/:store/keys"
	PathMetadata  = "/api/v1/stores/:store/keys/:key/metadata"
	PathSubscribe = "/api/v1/stores/:store/subscribe"
	PathCluster   = "/api/v1/cluster"
	PathStores    = "/api/v1/stores"
	PathStreams   = "/api/v1/streams"
	PathStatus    = "/api/v1/streams/status"
	PathConfig    = "/api/v1/streams/config"
	PathMetricsJS = "/api/v1/streams/metrics"
	PathTopology  = "/api/v1/streams/topology"
	PathOffsets   = "/api/v1/streams/offsets"

	// A key's windows and a scan of windows, of a windowed store.
	PathKeyWindows = "/api/v1/stores/:store/keys/:key/windows"
	PathWindows    = "/api/v1/stores/:store/windows"
)

// HopHeader marks a forwarded request; such a request is never forwarded again.
const HopHeader = "X-Abacus-Forwarded-By"

// MaxRequestBody bounds a request body (the API takes none worth more).
const MaxRequestBody = "64K"

// ServedPaths lists every GET route the server serves, echo-style.
func ServedPaths() []string {
	var out []string
	for _, r := range ServedRoutes() {
		if p, ok := strings.CutPrefix(r, http.MethodGet+" "); ok {
			out = append(out, p)
		}
	}
	return out
}

// ServedRoutes lists every route the server serves as "METHOD path",
// echo-style: the GET routes of ServedPaths and the others (POST
// /api/v1/tickets).
func ServedRoutes() []string {
	s := New(Config{})
	var out []string
	for _, r := range s.echo.Routes() {
		if !strings.HasSuffix(r.Path, "/*") && (r.Method == http.MethodGet || r.Method == http.MethodPost) {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// New builds the server and its routes; it does not listen.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	if cfg.ForwardTimeout <= 0 {
		cfg.ForwardTimeout = 3 * time.Second
	}
	if cfg.StreamWriteTimeout <= 0 {
		cfg.StreamWriteTimeout = DefaultStreamWriteTimeout
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	if cfg.Windows == nil {
		cfg.WindowStores = nil
	}
	// Filled as the processor fills them, so that /stores says what each
	// store does; a copy, the caller's slice is left alone.
	cfg.WindowStores = slices.Clone(cfg.WindowStores)
	for i := range cfg.WindowStores {
		cfg.WindowStores[i].Spec = cfg.WindowStores[i].Spec.WithDefaults()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	// Echo's own logger writes to stdout in a format of its own: its
	// lines go to Logger (nothing of ours uses it; a third party might).
	e.Logger.SetOutput(logWriter{cfg.Logger, slog.LevelError})
	e.Logger.SetHeader("")
	e.StdLogger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelError)
	e.HTTPErrorHandler = errorHandler
	transport := forwardTransport(cfg.PeerTLS)
	s := &Server{cfg: cfg, echo: e, stopping: make(chan struct{}), metrics: newHTTPMetrics(cfg.Registerer),
		client: &http.Client{Timeout: cfg.ForwardTimeout, Transport: transport}, waitClient: &http.Client{Transport: transport},
		streamClient: newStreamClient(cfg.PeerTLS), tickets: newTickets(cfg)}
	limit := &inflight{max: int64(cfg.MaxInflight), metrics: s.metrics}
	if cfg.AccessLog {
		// Outermost: it sees the status the error handler answered.
		e.Use(s.accessLog)
	}
	// Recover turns a handler's panic into a 500 JSON answer (and a metric)
	// instead of a dropped connection, and logs it with its stack.
	recoverCfg := middleware.RecoverConfig{DisableStackAll: true, LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		cfg.Logger.Error("HTTP handler panicked", "method", c.Request().Method, "route", c.Path(), "error", err, "stack", string(stack))
		return err
	}}
	e.Use(s.metrics.middleware, middleware.RecoverWithConfig(recoverCfg), middleware.BodyLimit(MaxRequestBody))
	if cfg.Console != nil {
		// One route per file, so that any other path is echo's JSON 404.
		for _, p := range cfg.Console.Paths() {
			e.GET(p, echo.WrapHandler(cfg.Console))
		}
	}
	e.GET(PathHealthz, s.healthz)
	e.GET(PathReadyz, s.readyz)
	metrics := echo.WrapHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	if cfg.AuthMetrics {
		e.GET(PathMetrics, metrics, s.authenticate)
	} else {
		e.GET(PathMetrics, metrics)
	}
	v1 := e.Group("/api/v1", s.cors(), limit.shed, s.authenticate)
	v1.GET("/stores", s.stores)
	v1.GET("/stores/:store/keys", s.scanKeys)
	v1.GET("/stores/:store/keys/", s.emptyKey)
	v1.GET("/stores/:store/keys/:key", s.getKey)
	v1.GET("/stores/:store/keys/:key/metadata", s.keyMetadata)
	v1.GET("/stores/:store/keys/:key/windows", s.getKeyWindows)
	v1.GET("/stores/:store/windows", s.scanWindows)
	v1.GET("/cluster", s.cluster)
	v1.GET("/cluster/status", s.clusterStatus)
	v1.GET("/streams", s.streams)
	v1.GET("/streams/status", s.status)
	v1.GET("/streams/config", s.streamsConfig)
	v1.GET("/streams/metrics", s.streamsMetrics)
	v1.GET("/streams/topology", s.streamsTopology)
	v1.GET("/streams/offsets", s.streamsOffsets)
	v1.GET("/stores/:store/subscribe", s.subscribe)
	v1.POST("/tickets", s.issueTicket)
	v1.GET("/internal/tasks/:partition/checkpoint", s.taskCheckpoint)
	v1.GET("/internal/tasks/:partition/snapshot", s.taskSnapshot)
	return s
}

// Handler is the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve listens on addr until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, addr string) error {
	srv := &http.Server{
		Addr: addr, Handler: s.echo,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 1 << 20,
		// net/http's own complaints (TLS handshakes that fail, ...)
		// would go to stderr as plain text.
		ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() {
		if s.cfg.TLSCertFile != "" {
			errc <- srv.ListenAndServeTLS(s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
			return
		}
		errc <- srv.ListenAndServe()
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.stoppingOnce.Do(func() { close(s.stopping) })
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		// Connections still busy (or dialled and never used) past the
		// grace period are cut: shutdown must not wait on clients.
		s.cfg.Logger.Warn("closing HTTP connections still open after the grace period", "error", err)
		_ = srv.Close()
	}
	<-errc
	return nil
}
