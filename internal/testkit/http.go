package testkit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
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
	return FetchWith(client, rawURL, header)
}

// FetchWith is Fetch through the client given.
func FetchWith(client *http.Client, rawURL string, header http.Header) (*http.Response, []byte, error) {
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

// Placement is who runs and who keeps a copy of each partition, as
// members' /api/v1/cluster say.
type Placement struct {
	Active   map[int32]string
	Standbys map[int32][]string // member names, sorted
}

// String lists every partition as "p:active/[standbys]", in order.
func (pl Placement) String() string {
	var sb strings.Builder
	for _, p := range slices.Sorted(maps.Keys(pl.Active)) {
		fmt.Fprintf(&sb, "%d:%s/%v ", p, pl.Active[p], pl.Standbys[p])
	}
	return sb.String()
}

// KeptBy lists the partitions whose standby copy member keeps, in order.
func (pl Placement) KeptBy(member string) []int32 {
	var out []int32
	for p, ms := range pl.Standbys {
		if slices.Contains(ms, member) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// AgreedPlacement reads every instance's view of its group and returns the
// placement, once every view names as many members as there are instances
// and all say the same.
func AgreedPlacement(pods []*Instance) (Placement, error) {
	var agreed Placement
	for i, in := range pods {
		v, code, err := in.Cluster()
		if err != nil || code != 200 {
			return Placement{}, fmt.Errorf("%s: cluster %d %v", in.Name, code, err)
		}
		if len(v.Members) != len(pods) {
			return Placement{}, fmt.Errorf("%s sees %d members, want %d", in.Name, len(v.Members), len(pods))
		}
		pl := Placement{Active: map[int32]string{}, Standbys: map[int32][]string{}}
		for _, m := range v.Members {
			for _, p := range m.Partitions {
				pl.Active[p] = m.Member
			}
			for _, p := range m.Standbys {
				pl.Standbys[p] = append(pl.Standbys[p], m.Member)
			}
		}
		for _, ms := range pl.Standbys {
			slices.Sort(ms)
		}
		if i == 0 {
			agreed = pl
		} else if pl.String() != agreed.String() {
			return Placement{}, fmt.Errorf("%s sees %s, %s sees %s", pods[0].Name, agreed, in.Name, pl)
		}
	}
	return agreed, nil
}
