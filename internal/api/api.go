package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Errors a Counts implementation returns for keys it cannot answer.
var (
	ErrUnknownStore = errors.New("unknown store")
	ErrNotOwned     = errors.New("partition owned by another instance")
	ErrRestoring    = errors.New("partition is restoring")
)

// Count is one key's committed count.
type Count struct {
	Key       string `json:"key"`
	Value     int64  `json:"value"`
	Partition int32  `json:"partition"`
	ServedBy  string `json:"served_by"`
}

// Counts answers from this instance's stores. Get may be called from many
// goroutines at once. found is false for a key never counted.
type Counts interface {
	Get(store string, key []byte) (c Count, found bool, err error)
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
	Tasks() []TaskStatus
}

// TaskStatus is one task of this instance.
type TaskStatus struct {
	Partition  int32  `json:"partition"`
	State      string `json:"state"` // active or restoring
	Checkpoint int64  `json:"checkpoint"`
	// Restore progress in changelog records: done of total.
	RestoreDone  int64 `json:"restore_done"`
	RestoreTotal int64 `json:"restore_total"`
}

// Config wires a Server.
type Config struct {
	Instance string
	Counts   Counts
	Health   Health
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
}

// Server serves the HTTP surface.
type Server struct {
	cfg  Config
	echo *echo.Echo
}

// Paths of the routes, shared with the chart's tests.
const (
	PathHealthz = "/healthz"
	PathReadyz  = "/readyz"
	PathMetrics = "/metrics"
	PathKey     = "/api/v1/stores/:store/keys/:key"
	PathStatus  = "/api/v1/streams/status"
)

// ServedPaths lists every route the server serves, echo-style.
func ServedPaths() []string {
	s := New(Config{})
	var out []string
	for _, r := range s.echo.Routes() {
		out = append(out, r.Path)
	}
	return out
}

// New builds the server and its routes; it does not listen.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.NewRegistry()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler
	s := &Server{cfg: cfg, echo: e}
	e.GET(PathHealthz, s.healthz)
	e.GET(PathReadyz, s.readyz)
	e.GET(PathMetrics, echo.WrapHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	e.GET(PathKey, s.getKey)
	e.GET(PathStatus, s.status)
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
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
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
