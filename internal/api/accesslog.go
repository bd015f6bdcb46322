package api

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// RequestIDHeader is the request id a caller (an ingress, a mesh) may
// send; the access log names it.
const RequestIDHeader = "X-Request-Id"

// The attributes of an access log line (docs/operations.md, "Logs").
const (
	KeyMethod      = "method"
	KeyRoute       = "route"        // the route pattern, "unmatched" for none
	KeyPath        = "path"         // the path as sent, without the query
	KeyStatus      = "status"       // the status code answered
	KeyDurationMS  = "duration_ms"  // from the request's arrival to the end of the answer (of the stream)
	KeyBytesOut    = "bytes_out"    // bytes of the answer's body
	KeyRemoteAddr  = "remote_addr"  // the peer's address (not X-Forwarded-For)
	KeyForwardedTo = "forwarded_to" // the members asked for (part of) the answer, comma-separated
	KeyForwardedBy = "forwarded_by" // the member that forwarded the request here
	KeyRequestID   = "request_id"   // the X-Request-Id header
)

// AccessLogMessage is the message of an access log line.
const AccessLogMessage = "http request"

// accessLog logs one line per request at info, once it is answered: a
// subscription's stream once it ends. It never logs a header but the hop
// header and the request id, nor the query, which may carry credentials.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		began := time.Now()
		req := c.Request()
		fw := &forwards{}
		c.SetRequest(req.WithContext(context.WithValue(req.Context(), forwardsKey{}, fw)))
		if err := next(c); err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		resp := c.Response()
		attrs := []slog.Attr{
			slog.String(KeyMethod, req.Method),
			slog.String(KeyRoute, route),
			slog.String(KeyPath, req.URL.EscapedPath()),
			slog.Int(KeyStatus, resp.Status),
			slog.Float64(KeyDurationMS, float64(time.Since(began).Microseconds())/1000),
			slog.Int64(KeyBytesOut, resp.Size),
			slog.String(KeyRemoteAddr, req.RemoteAddr),
		}
		if to := fw.String(); to != "" {
			attrs = append(attrs, slog.String(KeyForwardedTo, to))
		}
		if by := req.Header.Get(HopHeader); by != "" {
			attrs = append(attrs, slog.String(KeyForwardedBy, by))
		}
		if id := req.Header.Get(RequestIDHeader); id != "" {
			attrs = append(attrs, slog.String(KeyRequestID, id))
		}
		s.cfg.Logger.LogAttrs(context.Background(), slog.LevelInfo, AccessLogMessage, attrs...)
		return nil
	}
}

// forwards are the members a request went to, whole or in part (a scan's
// page, a stream's partition), for its access log line; handlers that
// ask members at once add to it from several goroutines.
type forwards struct {
	mu    sync.Mutex
	names []string
}

type forwardsKey struct{}

// noteForward records that the request of ctx asked member name; without
// an access log it does nothing.
func noteForward(ctx context.Context, name string) {
	fw, _ := ctx.Value(forwardsKey{}).(*forwards)
	if fw == nil {
		return
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if !slices.Contains(fw.names, name) {
		fw.names = append(fw.names, name)
	}
}

func (fw *forwards) String() string {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	return strings.Join(fw.names, ",")
}
