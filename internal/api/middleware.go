package api

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts requests by route (the route pattern, never the key)
// and status code.
type httpMetrics struct {
	requests  *prometheus.CounterVec
	seconds   *prometheus.HistogramVec
	forwarded *prometheus.CounterVec
	inflight  prometheus.Gauge
	shed      *prometheus.CounterVec
	// snapshots and snapshotBytes count the snapshots served to peers.
	snapshots     *prometheus.CounterVec
	snapshotBytes prometheus.Counter
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_http_requests_total", Help: "HTTP requests served, by route and status code."}, []string{"route", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "abacus_http_request_duration_seconds", Help: "Time to serve an HTTP request, by route.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"route"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_forwarded_queries_total", Help: "Queries forwarded to the owning member, by outcome (ok, error)."}, []string{"outcome"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_http_requests_in_flight", Help: "API (/api/v1) requests being served, counted against ABACUS_HTTP_MAX_INFLIGHT."}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_http_requests_shed_total", Help: "API requests refused with 503 overloaded at ABACUS_HTTP_MAX_INFLIGHT, by route."}, []string{"route"}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_snapshots_served_total", Help: "Snapshots of task stores sent to peers, by outcome (ok, failed)."}, []string{"outcome"}),
		snapshotBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_snapshot_served_bytes_total", Help: "Bytes of the snapshots of task stores sent to peers whole."}),
	}
	m.snapshots.WithLabelValues("ok")
	m.snapshots.WithLabelValues("failed")
	if reg != nil {
		reg.MustRegister(m.requests, m.seconds, m.forwarded, m.inflight, m.shed, m.snapshots, m.snapshotBytes)
	}
	return m
}

func (m *httpMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		began := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, strconv.Itoa(c.Response().Status)).Inc()
		m.seconds.WithLabelValues(route).Observe(time.Since(began).Seconds())
		return nil
	}
}

// authenticate guards a group of routes with the configured bearer token
// and/or basic credentials, or, for a subscription, a ticket (tickets.go);
// with neither configured it lets all through.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	if s.cfg.AuthToken == "" && s.cfg.AuthBasic == "" {
		return next
	}
	return func(c echo.Context) error {
		if s.hasCredentials(c.Request()) {
			return next(c)
		}
		ok, refusal := s.admitTicket(c)
		switch {
		case ok:
			return next(c)
		case refusal != nil:
			// A refused ticket comes from a page's EventSource: a Basic
			// challenge would make the browser ask for a password in a
			// box of its own, so the challenge is the ticket's
			// (TestTicketRefusedWithoutABasicChallenge).
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="abacus", error="invalid_token"`)
			return refusal
		}
		refusal = fail(http.StatusUnauthorized, "unauthorized", "credentials missing or wrong: send Authorization: Bearer <token> or basic auth")
		if s.cfg.AuthBasic != "" {
			c.Response().Header().Set("WWW-Authenticate", `Basic realm="abacus"`)
		} else {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="abacus"`)
		}
		return refusal
	}
}

// hasCredentials reports whether req carries the configured bearer token
// or basic credentials, compared in constant time.
func (s *Server) hasCredentials(req *http.Request) bool {
	h := req.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(h, "Bearer "); ok && s.cfg.AuthToken != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AuthToken)) == 1 {
		return true
	}
	user, pass, ok := req.BasicAuth()
	return ok && s.cfg.AuthBasic != "" && subtle.ConstantTimeCompare([]byte(user+":"+pass), []byte(s.cfg.AuthBasic)) == 1
}

// cors allows browsers from the configured origins; without any, CORS
// stays off (no headers at all).
func (s *Server) cors() echo.MiddlewareFunc {
	if strings.TrimSpace(s.cfg.CORSOrigins) == "" {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	var origins []string
	for _, o := range strings.Split(s.cfg.CORSOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			origins = append(origins, o)
		}
	}
	return middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOrigins: origins, AllowMethods: []string{http.MethodGet, http.MethodPost, http.MethodOptions},
		AllowHeaders: []string{"Authorization", "Last-Event-ID", "Content-Type"},
	})
}

func lower(s string) string { return strings.ToLower(s) }

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
