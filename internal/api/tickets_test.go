package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/abacus-streams/abacus/internal/ticket"
)

// fakeSubs is a member's subscriptions: each stream it serves sends the
// key's count, 3, and stays open; it records what each request carried.
type fakeSubs struct {
	mu     sync.Mutex
	served []servedStream
}

type servedStream struct {
	query                      url.Values
	authorization, lastEventID string
}

func (f *fakeSubs) Serve(w http.ResponseWriter, r *http.Request, key string, prefix bool, partition int32) error {
	f.mu.Lock()
	f.served = append(f.served, servedStream{r.URL.Query(), r.Header.Get("Authorization"), r.Header.Get("Last-Event-ID")})
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "id: 3\nevent: count\ndata: {\"key\":%q,\"value\":3,\"partition\":%d}\n\n", key, partitionOf(key))
	_ = http.NewResponseController(w).Flush()
	<-r.Context().Done()
	return nil
}

func (f *fakeSubs) ServeCopy(http.ResponseWriter, *http.Request, string, bool, int32, int64) error {
	return fmt.Errorf("no copies here")
}

func (f *fakeSubs) streams() []servedStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]servedStream(nil), f.served...)
}

// ticketCluster is the two-member cluster with auth on (the token "tok"
// at both, unless peerToken says otherwise) and subscriptions served;
// each member logs its access lines to its buffer.
type ticketCluster struct {
	*cluster
	base               string
	selfSubs, peerSubs fakeSubs
	selfLog, peerLog   testkit.LogBuffer
}

func startTicketCluster(t *testing.T, token, peerToken string) *ticketCluster {
	t.Helper()
	tc := &ticketCluster{cluster: healthy()}
	tc.config = func(cfg *api.Config) {
		cfg.AuthToken, cfg.Subscriptions, cfg.AccessLog = token, &tc.selfSubs, true
		cfg.Logger = slog.New(slog.NewJSONHandler(&tc.selfLog, nil))
	}
	tc.peerConfig = func(cfg *api.Config) {
		cfg.AuthToken, cfg.Subscriptions, cfg.AccessLog = peerToken, &tc.peerSubs, true
		cfg.Logger = slog.New(slog.NewJSONHandler(&tc.peerLog, nil))
	}
	tc.base = tc.start(t)
	return tc
}

// issueTicket asks base for a ticket with the header given.
func issueTicket(t *testing.T, base string, header http.Header) string {
	t.Helper()
	resp, body := fetchCase(t, base, answerCase{method: http.MethodPost, path: "/api/v1/tickets", header: header})
	var got struct {
		Ticket    string `json:"ticket"`
		ExpiresAt string `json:"expires_at"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &got) != nil || got.Ticket == "" {
		t.Fatalf("POST /api/v1/tickets: %d %s; want 201 with a ticket", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("a ticket's answer: Cache-Control %q; want no-store", resp.Header.Get("Cache-Control"))
	}
	expires, err := time.Parse(time.RFC3339, got.ExpiresAt)
	if left := time.Until(expires); err != nil || left < 55*time.Second || left > api.TicketLifetime {
		t.Errorf("expires_at %q (%v): want about %s from now", got.ExpiresAt, err, api.TicketLifetime)
	}
	return got.Ticket
}

var bearerTok = http.Header{"Authorization": {"Bearer tok"}}

// openStream opens a subscription at base with path and query and
// returns its first count event's data, and how to close it (else it
// closes with the test).
func openStream(t *testing.T, base, pathQuery string, header http.Header) (data string, close func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	resp, err := testkit.OpenStream(ctx, http.DefaultClient, base+pathQuery, header)
	if err != nil {
		t.Fatal(err)
	}
	close = func() { resp.Body.Close(); cancel() }
	t.Cleanup(close)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d; want 200", pathQuery, resp.StatusCode)
	}
	if _, err := loadSpec(t).validateHead(resp); err != nil {
		t.Errorf("GET %s: the stream's head does not match openapi.yaml: %v", pathQuery, err)
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("GET %s: no count event: %v", pathQuery, err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			return strings.TrimSpace(data), close
		}
	}
}

// validateHead checks a stream's status and headers against the spec.
func (s *spec) validateHead(resp *http.Response) (string, error) {
	route, params, err := s.router.FindRoute(resp.Request)
	if err != nil {
		return "", err
	}
	return route.Path, openapi3filter.ValidateResponse(resp.Request.Context(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: resp.Request, PathParams: params, Route: route},
		Status:                 resp.StatusCode, Header: resp.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: true},
	})
}

func TestTicketOpensAStream(t *testing.T) {
	c := startTicketCluster(t, "tok", "tok")
	tk := issueTicket(t, c.base, bearerTok)
	data, _ := openStream(t, c.base, "/api/v1/stores/counts-store/subscribe?key=apple&ticket="+url.QueryEscape(tk), nil)
	if data != `{"key":"apple","value":3,"partition":0}` {
		t.Errorf("first event %s; want apple's count", data)
	}
	served := c.selfSubs.streams()
	if len(served) != 1 || served[0].query.Has("ticket") {
		t.Errorf("streams served here: %+v; want one, its query without the ticket", served)
	}
}

// A ticket refused is the 401 of missing credentials, with why.
func TestTicketRefused(t *testing.T) {
	c := startTicketCluster(t, "tok", "other")
	signer := ticket.New(ticket.Key("counts-app", "tok", ""))
	mint := func(purpose string, expires time.Time) string {
		tk, err := signer.Issue(purpose, expires)
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	valid := issueTicket(t, c.base, bearerTok)
	peerURL := c.router.members[1].URL
	for _, tc := range []struct {
		name, ticket, why string
	}{
		{"no ticket", "", "credentials missing"},
		{"expired", mint("subscribe", time.Now().Add(-time.Second)), "expired"},
		{"changed", valid[:len(valid)-2] + "xx", "not issued with the credentials in force"},
		{"for another purpose", mint("other", time.Now().Add(time.Minute)), "another purpose"},
		{"of another application", func() string {
			tk, _ := ticket.New(ticket.Key("other-app", "tok", "")).Issue("subscribe", time.Now().Add(time.Minute))
			return tk
		}(), "not issued with the credentials in force"},
		{"from a member with other credentials", issueTicket(t, peerURL, http.Header{"Authorization": {"Bearer other"}}), "not issued with the credentials in force"},
		{"not a ticket", "hello", "not a ticket"},
	} {
		resp, body := testkit.MustFetch(t, c.base+"/api/v1/stores/counts-store/subscribe?key=apple&ticket="+url.QueryEscape(tc.ticket), nil)
		var e struct {
			Error struct{ Code, Message string }
		}
		if resp.StatusCode != 401 || json.Unmarshal(body, &e) != nil || e.Error.Code != "unauthorized" ||
			!strings.Contains(e.Error.Message, tc.why) || resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: %d %s; want 401 unauthorized saying %q, with WWW-Authenticate", tc.name, resp.StatusCode, body, tc.why)
			continue
		}
		if _, err := loadSpec(t).validate(resp.Request, "", resp.StatusCode, resp.Header, body); err != nil {
			t.Errorf("%s: the answer does not match openapi.yaml: %v", tc.name, err)
		}
	}
	if n := len(c.selfSubs.streams()); n != 0 {
		t.Errorf("%d streams served; want none", n)
	}
}

// With basic credentials configured, a refused ticket is challenged as a
// bad token, never with Basic, which would make a browser open its own
// password box over the page; a request without any credentials still
// gets the Basic challenge.
func TestTicketRefusedWithoutABasicChallenge(t *testing.T) {
	tc := &ticketCluster{cluster: healthy()}
	tc.config = func(cfg *api.Config) { cfg.AuthBasic, cfg.Subscriptions = "u:p", &tc.selfSubs }
	tc.peerConfig = func(cfg *api.Config) { cfg.AuthBasic, cfg.Subscriptions = "u:p", &tc.peerSubs }
	base := tc.start(t)
	for ticket, want := range map[string]string{
		"v1.subscribe.1.xx": `Bearer realm="abacus", error="invalid_token"`,
		"":                  `Basic realm="abacus"`,
	} {
		resp, body := testkit.MustFetch(t, base+"/api/v1/stores/counts-store/subscribe?key=apple&ticket="+url.QueryEscape(ticket), nil)
		if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != want {
			t.Errorf("ticket %q: %d %s, WWW-Authenticate %q; want 401 with %q", ticket, resp.StatusCode, body, got, want)
		}
	}
}

// A ticket opens subscriptions, nothing else: a lookup, a status or
// another ticket asked for with one is refused as without credentials.
func TestTicketOnALookup(t *testing.T) {
	c := startTicketCluster(t, "tok", "tok")
	q := "?ticket=" + url.QueryEscape(issueTicket(t, c.base, bearerTok))
	for _, tc := range []answerCase{
		{path: "/api/v1/stores/counts-store/keys/apple" + q},
		{path: "/api/v1/stores/counts-store/keys" + q},
		{path: "/api/v1/cluster/status" + q},
		{path: "/api/v1/stores/counts-store/keys/apple/windows" + q},
		{method: http.MethodPost, path: "/api/v1/tickets" + q},
	} {
		if resp, body := fetchCase(t, c.base, tc); resp.StatusCode != 401 || !strings.Contains(string(body), `"unauthorized"`) {
			t.Errorf("%s %s: %d %s; want 401 unauthorized", tc.method, tc.path, resp.StatusCode, body)
		}
	}
}

// A stream opened with a ticket at a member that does not own the key is
// streamed from the owner with the member's own credentials, without the
// ticket, and with the client's last event id; no access log line holds
// the ticket.
func TestTicketStreamForwardedToTheOwner(t *testing.T) {
	c := startTicketCluster(t, "tok", "tok")
	tk := issueTicket(t, c.base, bearerTok)
	data, closeStream := openStream(t, c.base, "/api/v1/stores/counts-store/subscribe?key=cherry&last_event_id=2&ticket="+url.QueryEscape(tk), nil)
	if data != `{"key":"cherry","value":3,"partition":1}` {
		t.Errorf("first event %s; want cherry's count from its owner", data)
	}
	served := c.peerSubs.streams()
	if len(served) != 1 {
		t.Fatalf("streams served by the owner: %+v; want one", served)
	}
	got := served[0]
	if got.authorization != api.PeerAuthorization("tok", "") || got.query.Has("ticket") || got.query.Has("last_event_id") ||
		got.lastEventID != "2" || got.query.Get("local") != "true" {
		t.Errorf("the owner was asked with %+v; want the member's credentials, Last-Event-ID 2, local=true, and no ticket", got)
	}
	// A stream's access log line comes when it ends.
	closeStream()
	for name, log := range map[string]*testkit.LogBuffer{"abacus-0": &c.selfLog, "abacus-1": &c.peerLog} {
		testkit.Eventually(t, 5*time.Second, func() error {
			if !strings.Contains(log.String(), `"route":"`+api.PathSubscribe+`"`) {
				return fmt.Errorf("no access log line of the stream at %s yet", name)
			}
			return nil
		})
		if strings.Contains(log.String(), tk[strings.LastIndexByte(tk, '.')+1:]) {
			t.Errorf("%s's log holds the ticket:\n%s", name, log.String())
		}
	}
}

// With auth off tickets are issued, and ignored.
func TestTicketsWithAuthOff(t *testing.T) {
	c := startTicketCluster(t, "", "")
	issueTicket(t, c.base, nil)
	openStream(t, c.base, "/api/v1/stores/counts-store/subscribe?key=apple&ticket=not-one", nil)
	if served := c.selfSubs.streams(); len(served) != 1 || served[0].query.Has("ticket") {
		t.Errorf("streams served: %+v; want one, without the ticket in its query", served)
	}
}

// ?last_event_id= stands for Last-Event-ID; the header wins.
func TestLastEventIDQuery(t *testing.T) {
	c := startTicketCluster(t, "", "")
	openStream(t, c.base, "/api/v1/stores/counts-store/subscribe?key=apple&last_event_id=2", nil)
	openStream(t, c.base, "/api/v1/stores/counts-store/subscribe?key=apple&last_event_id=2", http.Header{"Last-Event-ID": {"5"}})
	served := c.selfSubs.streams()
	if len(served) != 2 || served[0].lastEventID != "2" || served[1].lastEventID != "5" || served[0].query.Has("last_event_id") {
		t.Errorf("streams served: %+v; want Last-Event-ID 2 from the query, then 5 from the header, and the query without it", served)
	}
}
