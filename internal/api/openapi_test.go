package api

import (
	"net/http/httptest"
	"testing"
)

func TestScratch(t *testing.T) {
	s := New(Config{CORSOrigins: "https://x.example", AuthToken: "t", Store: "counts-store"})
	for _, m := range []string{"OPTIONS", "GET", "POST"} {
		for _, p := range []string{"/api/v1/stores", "/api/v1/nope", "/nope", "/healthz"} {
			req := httptest.NewRequest(m, p, nil)
			req.Header.Set("Origin", "https://x.example")
			req.Header.Set("Access-Control-Request-Method", "GET")
			req.Header.Set("Access-Control-Request-Headers", "authorization")
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			t.Logf("%s %s -> %d %v %s", m, p, rec.Code, rec.Header(), rec.Body.String())
		}
	}
}
