package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
)

// MaxKeyBytes bounds a key in a request path.
const MaxKeyBytes = 4096

// errorBody is every error's JSON shape.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// apiError is an error with its HTTP status and code.
type apiError struct {
	status     int
	code       string
	message    string
	retryAfter string
}

func (e *apiError) Error() string { return e.message }

func fail(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, a...)}
}

func errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &he):
		code := strings.ToLower(strings.ReplaceAll(http.StatusText(he.Code), " ", "_"))
		ae = &apiError{status: he.Code, code: code, message: fmt.Sprint(he.Message)}
	default:
		ae = &apiError{status: http.StatusInternalServerError, code: "internal", message: err.Error()}
	}
	if ae.retryAfter != "" {
		c.Response().Header().Set("Retry-After", ae.retryAfter)
	}
	_ = c.JSON(ae.status, errorBody{Error: errorDetail{Code: ae.code, Message: ae.message}})
}

func (s *Server) healthz(c echo.Context) error {
	if s.cfg.Health != nil && !s.cfg.Health.Alive() {
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"status": "stuck", "state": s.cfg.Health.State()})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(c echo.Context) error {
	state := ""
	if s.cfg.Health != nil {
		state = s.cfg.Health.State()
		if !s.cfg.Health.Ready() {
			body := map[string]string{"status": "not ready", "state": state}
			if reason := s.cfg.Health.Error(); reason != "" {
				body["reason"] = reason
			}
			return c.JSON(http.StatusServiceUnavailable, body)
		}
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ready", "state": state})
}

// pathKey reads the key from the escaped path, so that any byte a key may
// hold ("/", "%", spaces, UTF-8) arrives exactly as the client encoded it.
func pathKey(c echo.Context) (string, error) {
	escaped := c.Request().URL.EscapedPath()
	prefix := "/api/v1/stores/" + url.PathEscape(c.Param("store")) + "/keys/"
	raw, ok := strings.CutPrefix(escaped, prefix)
	if !ok {
		raw = c.Param("key")
	}
	for _, suffix := range []string{"/metadata", "/windows"} {
		if strings.HasSuffix(c.Path(), suffix) {
			raw = strings.TrimSuffix(raw, suffix)
		}
	}
	key, err := url.PathUnescape(raw)
	switch {
	case err != nil:
		return "", fail(http.StatusBadRequest, "bad_key", "key is not valid percent-encoding: %v", err)
	case key == "":
		return "", fail(http.StatusBadRequest, "bad_key", "key must not be empty")
	case len(key) > MaxKeyBytes:
		return "", fail(http.StatusBadRequest, "bad_key", "key is %d bytes; at most %d are allowed", len(key), MaxKeyBytes)
	case !utf8.ValidString(key):
		return "", fail(http.StatusBadRequest, "bad_key", "key is not valid UTF-8")
	}
	return key, nil
}

// streamsStatus is the body of /api/v1/streams/status.
type streamsStatus struct {
	State string `json:"state"`
	// Error is the reason of the ERROR state.
	Error string `json:"error,omitempty"`
	memberTasks
	// Stores are the member's stores: the count store, then the windowed
	// stores.
	Stores []statusStore `json:"stores"`
}

// statusStore is a store as the status lists it.
type statusStore struct {
	Name string `json:"name"`
	// Type is "count", or the windowed store's kind of windows.
	Type string `json:"type"`
}

// memberTasks are this member's tasks by state, as the status and the
// cluster status give them.
type memberTasks struct {
	ActiveTasks    []abacus.TaskStatus `json:"active_tasks"`
	RestoringTasks []abacus.TaskStatus `json:"restoring_tasks"`
	StandbyTasks   []abacus.TaskStatus `json:"standby_tasks"`
}

// tasks sorts this member's tasks by state; empty lists, never null.
func (s *Server) tasks() memberTasks {
	out := memberTasks{ActiveTasks: []abacus.TaskStatus{}, RestoringTasks: []abacus.TaskStatus{}, StandbyTasks: []abacus.TaskStatus{}}
	if s.cfg.Health == nil {
		return out
	}
	for _, t := range s.cfg.Health.Tasks() {
		if t.State == "active" {
			out.ActiveTasks = append(out.ActiveTasks, t)
		} else {
			out.RestoringTasks = append(out.RestoringTasks, t)
		}
	}
	out.StandbyTasks = append(out.StandbyTasks, s.cfg.Health.StandbyTasks()...)
	return out
}

func (s *Server) status(c echo.Context) error {
	out := streamsStatus{memberTasks: s.tasks()}
	out.Stores = []statusStore{{Name: s.cfg.Store, Type: "count"}}
	for _, ws := range s.cfg.WindowStores {
		out.Stores = append(out.Stores, statusStore{Name: ws.Spec.Store, Type: string(ws.Spec.Kind)})
	}
	if s.cfg.Health != nil {
		out.State = s.cfg.Health.State()
		out.Error = s.cfg.Health.Error()
	}
	return c.JSON(http.StatusOK, out)
}

// parseQuery parses the raw query itself, so that broken percent-encoding
// is a 400 with a JSON error instead of silently dropped parameters.
func parseQuery(c echo.Context) (url.Values, error) {
	v, err := url.ParseQuery(c.Request().URL.RawQuery)
	if err != nil {
		return nil, fail(http.StatusBadRequest, "bad_query", "query string is not valid: %v", err)
	}
	return v, nil
}
