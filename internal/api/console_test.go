package api_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/console"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// With auth on, the console's files are served without credentials at
// "/" and under /console/, the API still asks for them, and any other
// path is the JSON 404 of a path without a route.
func TestConsoleServedWithoutAuth(t *testing.T) {
	ui, err := console.New(console.Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Instance: "abacus-0", Console: ui, AuthToken: "tok"}).Handler())
	t.Cleanup(srv.Close)
	for _, p := range ui.Paths() {
		resp, body := testkit.MustFetch(t, srv.URL+p, nil)
		if resp.StatusCode != 200 || len(body) == 0 || resp.Header.Get("Content-Security-Policy") != console.Policy {
			t.Errorf("GET %s: %d, %d bytes, CSP %q; want 200 with the file and the console's policy",
				p, resp.StatusCode, len(body), resp.Header.Get("Content-Security-Policy"))
		}
	}
	if resp, body := testkit.MustFetch(t, srv.URL+"/", nil); !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), console.Prefix) {
		t.Errorf("GET /: %s %.200s; want the page, naming its assets under %s", resp.Header.Get("Content-Type"), body, console.Prefix)
	}
	for _, p := range []string{"/console/nope.js", "/console/", "/index.html", "/nothing-here"} {
		resp, body := testkit.MustFetch(t, srv.URL+p, nil)
		var e struct{ Error struct{ Code string } }
		if resp.StatusCode != 404 || json.Unmarshal(body, &e) != nil || e.Error.Code != "not_found" {
			t.Errorf("GET %s: %d %s; want the JSON 404 not_found", p, resp.StatusCode, body)
		}
	}
	if resp, body := testkit.MustFetch(t, srv.URL+"/api/v1/streams", nil); resp.StatusCode != 401 {
		t.Errorf("GET /api/v1/streams without credentials: %d %s; want 401 (the console opens no hole in auth)", resp.StatusCode, body)
	}
}

// Without a console "/" is a path without a route.
func TestNoConsole(t *testing.T) {
	srv := httptest.NewServer(api.New(api.Config{Instance: "abacus-0"}).Handler())
	t.Cleanup(srv.Close)
	if resp, body := testkit.MustFetch(t, srv.URL+"/", nil); resp.StatusCode != 404 || !strings.Contains(string(body), `"not_found"`) {
		t.Errorf("GET / without a console: %d %s; want the JSON 404", resp.StatusCode, body)
	}
}
