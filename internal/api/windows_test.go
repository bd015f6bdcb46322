package api_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// manyWindows are windows of keys spread over several partitions: keys
// that are prefixes of others, a UTF-8 key, runs of windows of one key
// longer than a page, and windows of one key and start that differ in
// their end only, which the store orders by end, so that a cursor must
// carry the end.
var manyWindows = func() []api.Window {
	var out []api.Window
	for i, key := range []string{"a", "a/b", "ab", "b", "héllo", "k", "k1", "us-1", "us-2", "z"} {
		for j := range i%4 + 1 {
			out = append(out, api.Window{Key: key, Start: int64(j) * 5000, End: int64(j)*5000 + 5000, Value: int64(i + j + 1)})
		}
	}
	return append(out, api.Window{Key: "k", Start: 0, End: 100, Value: 7}, api.Window{Key: "k", Start: 0, End: 200, Value: 8})
}()

// bytePartition spreads keys over n partitions by the sum of their bytes.
func bytePartition(n int32) func(string) int32 {
	return func(key string) int32 {
		sum := 0
		for _, b := range []byte(key) {
			sum += int(b)
		}
		return int32(sum % int(n))
	}
}

// startWindowMembers serves members abacus-0 to abacus-(n-1), member i
// holding the partitions p of 3 with p%n == i, the windows of data in
// them as trades-5s; it returns abacus-0's URL.
func startWindowMembers(t *testing.T, n int, data []api.Window) string {
	t.Helper()
	const partitions = 3
	router := &fakeRouter{partitions: partitions, refreshed: time.Now()}
	for i := range n {
		m := abacus.Member{Name: fmt.Sprintf("abacus-%d", i)}
		for p := range int32(partitions) {
			if int(p)%n == i {
				m.Partitions = append(m.Partitions, p)
			}
		}
		router.members = append(router.members, m)
	}
	for i := range router.members {
		counts := &fakeCounts{held: map[int32]bool{}}
		for _, p := range router.members[i].Partitions {
			counts.held[p] = true
		}
		srv := httptest.NewServer(api.New(api.Config{
			Instance: router.members[i].Name, Store: "counts-store", ScanSecret: "s", ForwardTimeout: 2 * time.Second,
			Counts: counts, Router: router, Windows: &fakeWindows{counts: counts, data: data, partition: bytePartition(partitions)},
			WindowStores: windowStores,
		}).Handler())
		t.Cleanup(srv.Close)
		router.members[i].URL = srv.URL
	}
	return router.members[0].URL
}

// windowsPage is a page of a scan of windows as a client reads it.
type windowsPage struct {
	Items      []api.Window `json:"items"`
	NextCursor string       `json:"next_cursor"`
}

// walkWindows reads a scan of windows page by page with each next_cursor
// until a page has none, and returns every window in the order read.
func walkWindows(t *testing.T, rawURL string, limit int) []api.Window {
	t.Helper()
	var got []api.Window
	u := rawURL
	for n := 1; ; n++ {
		resp, body := testkit.MustFetch(t, u, nil)
		var page windowsPage
		if resp.StatusCode != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("page %d (%s): %d %s", n, u, resp.StatusCode, body)
		}
		if len(page.Items) > limit || (page.NextCursor != "" && len(page.Items) != limit) {
			t.Fatalf("page %d (%s): %d items with limit %d, next_cursor %q", n, u, len(page.Items), limit, page.NextCursor)
		}
		got = append(got, page.Items...)
		if page.NextCursor == "" {
			return got
		}
		if n > len(manyWindows)+1 {
			t.Fatalf("still a next_cursor after %d pages of %s", n, rawURL)
		}
		u = rawURL + "&cursor=" + url.QueryEscape(page.NextCursor)
	}
}

// The walk a client does over a scan of windows: whatever the page size
// and however many members hold the partitions, the pages hold every
// window within the bounds once, in (key, start, end) order, a key's
// windows running on across pages.
func TestWindowScanPagesAcrossMembers(t *testing.T) {
	sorted := slices.SortedFunc(slices.Values(manyWindows), compareWindows)
	for _, members := range []int{1, 2, 3} {
		base := startWindowMembers(t, members, manyWindows)
		for _, tc := range []struct {
			query string
			keep  func(api.Window) bool
		}{
			{"", func(api.Window) bool { return true }},
			{"prefix=a", func(w api.Window) bool { return strings.HasPrefix(w.Key, "a") }},
			{"from_key=ab&to_key=us-2&from=5000&to=1970-01-01T00:00:10.001Z", func(w api.Window) bool {
				return w.Key >= "ab" && w.Key < "us-2" && w.Start >= 5000 && w.Start < 10001
			}},
		} {
			want := slices.Collect(func(yield func(api.Window) bool) {
				for _, w := range sorted {
					if tc.keep(w) && !yield(w) {
						return
					}
				}
			})
			for _, limit := range []int{1, 2, 3, 1000} {
				got := walkWindows(t, fmt.Sprintf("%s/api/v1/stores/trades-5s/windows?limit=%d&%s", base, limit, tc.query), limit)
				if !slices.Equal(got, want) {
					t.Errorf("%d members, limit %d, %q: pages gave\n%v\nwant\n%v", members, limit, tc.query, got, want)
				}
			}
		}
	}
}

// A cursor of a scan of windows is refused, as a key scan's is, when
// tampered with or passed to the other kind of scan.
func TestWindowScanRefusesCursorsItDidNotIssue(t *testing.T) {
	base := startWindowMembers(t, 2, manyWindows)
	_, body := testkit.MustFetch(t, base+"/api/v1/stores/trades-5s/windows?limit=3", nil)
	var page windowsPage
	if err := json.Unmarshal(body, &page); err != nil || page.NextCursor == "" {
		t.Fatalf("first page %s: %v", body, err)
	}
	_, body = testkit.MustFetch(t, base+"/api/v1/stores/counts-store/keys?limit=1", nil)
	var keyPage windowsPage
	if err := json.Unmarshal(body, &keyPage); err != nil || keyPage.NextCursor == "" {
		t.Fatalf("first page of keys %s: %v", body, err)
	}
	tampered := []byte(page.NextCursor)
	tampered[len(tampered)/2] ^= 1
	const refused = `{"error":{"code":"bad_cursor","message":"cursor is not one this service issued: pass back next_cursor exactly as it was returned"}}`
	for _, target := range []string{
		"/api/v1/stores/trades-5s/windows?limit=3&cursor=" + url.QueryEscape(string(tampered)),
		"/api/v1/stores/trades-5s/windows?limit=3&local=true&cursor=" + url.QueryEscape(string(tampered)),
		"/api/v1/stores/trades-5s/windows?limit=3&cursor=" + url.QueryEscape(keyPage.NextCursor),
		"/api/v1/stores/counts-store/keys?limit=1&cursor=" + url.QueryEscape(page.NextCursor),
	} {
		resp, body := testkit.MustFetch(t, base+target, nil)
		if resp.StatusCode != 400 || !sameJSON(body, []byte(refused)) {
			t.Errorf("GET %s: %d %s; want 400 %s", target, resp.StatusCode, body, refused)
		}
	}
}
