package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The HTTP helpers that the tests of several packages (e2e, bench, api,
// subscribe) use against abacus's routes.

// client serves Fetch and an Instance's requests: at most 10 s a request.
var client = &http.Client{Timeout: 10 * time.Second}

// NewGet is a GET of rawURL, ended with ctx, carrying header (may be nil)
// as given.
func NewGet(ctx context.Context, rawURL string, header http.Header) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return req, nil
}

// Fetch GETs rawURL with header and reads the whole answer.
func Fetch(rawURL string, header http.Header) (*http.Response, []byte, error) {
	req, err := NewGet(context.Background(), rawURL, header)
	if err != nil {
		return nil, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// MustFetch is Fetch, failing the test on an error.
func MustFetch(t testing.TB, rawURL string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := Fetch(rawURL, header)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// OpenStream GETs rawURL with client, ended with ctx, and returns the
// answer of a 200 for the caller to read and close; any other status is
// an error that carries the answer's body.
func OpenStream(ctx context.Context, client *http.Client, rawURL string, header http.Header) (*http.Response, error) {
	req, err := NewGet(ctx, rawURL, header)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return resp, nil
}

// SubscribeURL is the URL of a live subscription to key of store at the
// instance, or to every key starting with key when prefix is set.
func (in *Instance) SubscribeURL(store, key string, prefix bool) string {
	q := url.Values{"key": {key}}
	if prefix {
		q = url.Values{"prefix": {key}}
	}
	return in.URL + "/api/v1/stores/" + url.PathEscape(store) + "/subscribe?" + q.Encode()
}

// KeyPage is a page of a key scan (GET /api/v1/stores/{store}/keys).
type KeyPage struct {
	Items []struct {
		Key   string `json:"key"`
		Value int64  `json:"value"`
	} `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// ScanPages walks a key scan page by page, as a client does: from rawURL
// (the scan with its query, no cursor), then with each next_cursor, until
// a page has none. It hands fn every page with its number (from 1) and the
// answer it came in. It fails the test on an answer other than a 200 with
// a page, and on a next_cursor after more than maxPages pages.
func ScanPages(t testing.TB, rawURL string, maxPages int, fn func(n int, resp *http.Response, body []byte, page KeyPage)) {
	t.Helper()
	sep := "?"
	if strings.Contains(rawURL, "?") {
		sep = "&"
	}
	u := rawURL
	for n := 1; ; n++ {
		resp, body := MustFetch(t, u, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scan page %d (%s): %d %s", n, u, resp.StatusCode, body)
		}
		var page KeyPage
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("scan page %d (%s): %v: %s", n, u, err, body)
		}
		fn(n, resp, body, page)
		if page.NextCursor == "" {
			return
		}
		if n > maxPages {
			t.Fatalf("still a next_cursor after %d pages of %s", n, rawURL)
		}
		u = rawURL + sep + "cursor=" + url.QueryEscape(page.NextCursor)
	}
}

// ClusterView is a member's view of its group (GET /api/v1/cluster).
type ClusterView struct {
	Members []struct {
		Member     string  `json:"member"`
		URL        string  `json:"url"`
		Partitions []int32 `json:"partitions"`
		Standbys   []int32 `json:"standby_partitions"`
	} `json:"members"`
	Partitions int32 `json:"partitions"`
}

// Cluster reads the instance's view of its group; code is the HTTP status.
func (in *Instance) Cluster() (ClusterView, int, error) {
	var v ClusterView
	code, _, err := in.GetJSON("/api/v1/cluster", &v)
	return v, code, err
}
