package api

import (
	"crypto/tls"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
)

// DefaultMaxInflight is Config.MaxInflight's default.
const DefaultMaxInflight = 512

// forwardConnsPerHost bounds the connections to one member that lookups and
// scans are forwarded over; a forward past it waits for one, within the
// forward timeout. With MaxInflight it keeps one busy member from piling
// every request of the others onto the one it depends on.
const forwardConnsPerHost = 128

// inflight bounds the /api/v1 requests a member serves at once. A request
// past the bound is answered at once with 503 overloaded and Retry-After
// rather than queued: under a burst the requests admitted finish in time,
// and the probes and /metrics, which bypass the bound, still answer,
// instead of everything waiting behind everything else.
type inflight struct {
	max     int64
	n       atomic.Int64
	metrics *httpMetrics
}

// shed is the middleware of /api/v1. A subscription counts while it is set
// up (parsed, its current values read, the other members' parts opened)
// and leaves the count when its answer starts: an open stream is bounded
// by the subscribers' own limit, not by this one.
func (l *inflight) shed(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if l.n.Add(1) > l.max {
			l.n.Add(-1)
			l.metrics.shed.WithLabelValues(c.Path()).Inc()
			return unavailable("overloaded", "this member is serving %d API requests, its limit; retry shortly", l.max)
		}
		l.metrics.inflight.Inc()
		var once sync.Once
		release := func() {
			once.Do(func() {
				l.n.Add(-1)
				l.metrics.inflight.Dec()
			})
		}
		defer release()
		if c.Path() == PathSubscribe {
			c.Response().Before(release)
		}
		return next(c)
	}
}

// forwardTransport is the transport of forwarded lookups and scans;
// peerTLS (nil: the system's roots) verifies members serving HTTPS.
func forwardTransport(peerTLS *tls.Config) *http.Transport {
	return &http.Transport{
		MaxConnsPerHost: forwardConnsPerHost, MaxIdleConnsPerHost: forwardConnsPerHost,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		TLSClientConfig: peerTLS.Clone(),
	}
}
