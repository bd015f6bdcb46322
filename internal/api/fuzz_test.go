package api

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/window"
)

// Fuzz targets for what a client controls: the key in the path (of a
// count, its metadata and its windows), the query string of lookups and
// scans (cursors included), the time bounds of windows. `go test` runs
// them on their seeds; `make chaos` runs each listed in the Makefile with
// -fuzz for a while. Their properties: the server never panics and never
// answers 5xx to bad input; every answer is JSON, errors
// {"error":{"code","message"}}; a key reaches the store exactly as the
// client percent-encoded it; a scan's parameters reach the store as
// url.ParseQuery reads them.

// fuzzCounts is a store that records what it is asked and answers every
// key with its length (a key named "missing" is not found).
type fuzzCounts struct {
	mu    sync.Mutex
	keys  []string
	scans []ScanQuery
	// ranges are the bounds [from, to) of the windows asked for.
	ranges [][2]int64
}

// fuzzWindowStore is the one windowed store of fuzzServer.
const fuzzWindowStore = "trades"

// GetWindows records the key and the range, as Get does the key, and
// answers one window of a key (none of one named "missing").
func (f *fuzzCounts) GetWindows(store string, key []byte, from, to int64) ([]Window, error) {
	if store != fuzzWindowStore {
		return nil, abacus.ErrUnknownStore
	}
	f.mu.Lock()
	f.keys = append(f.keys, string(key))
	f.ranges = append(f.ranges, [2]int64{from, to})
	f.mu.Unlock()
	if string(key) == "missing" || from >= to {
		return nil, nil
	}
	return []Window{{Key: string(key), Start: from, End: from + 5000, Value: int64(len(key))}}, nil
}

func (f *fuzzCounts) ScanWindows(store string, q WindowScanQuery) ([]Window, []int32, error) {
	if store != fuzzWindowStore {
		return nil, nil, abacus.ErrUnknownStore
	}
	return nil, []int32{0}, nil
}

func (f *fuzzCounts) WaitPosition(context.Context, int32, int64) (int64, error) {
	return 0, abacus.ErrNotOwned
}

func (f *fuzzCounts) GetCopy(store string, key []byte, _ int64) (Count, bool, error) {
	c, found, err := f.Get(store, key)
	lag, stale := int64(0), false
	c.Lag, c.Stale = &lag, &stale
	return c, found, err
}

func (f *fuzzCounts) Get(store string, key []byte) (Count, bool, error) {
	if store != "counts-store" {
		return Count{}, false, abacus.ErrUnknownStore
	}
	f.mu.Lock()
	f.keys = append(f.keys, string(key))
	f.mu.Unlock()
	return Count{Value: int64(len(key)), Partition: 0}, string(key) != "missing", nil
}

// fuzzStoreKeys are the keys of the store's one partition, in byte order.
var fuzzStoreKeys = []string{"a", "a\x00", "a/b", "apple", "b", "héllo", "us-1", "us-2", "us-3", "zz"}

func (f *fuzzCounts) ScanCopies(store string, q ScanQuery, _ int64) ([]Item, []PartitionCopy, error) {
	items, _, err := f.Scan(store, q)
	return items, []PartitionCopy{{Partition: 0}}, err
}

func (f *fuzzCounts) Scan(store string, q ScanQuery) ([]Item, []int32, error) {
	if store != "counts-store" {
		return nil, nil, abacus.ErrUnknownStore
	}
	f.mu.Lock()
	f.scans = append(f.scans, q)
	f.mu.Unlock()
	var items []Item
	for _, k := range fuzzStoreKeys {
		if strings.HasPrefix(k, q.Prefix) && k >= q.From && (q.To == "" || k < q.To) && len(items) < q.Limit {
			items = append(items, Item{Key: k, Value: 1})
		}
	}
	return items, []int32{0}, nil
}

// fuzzRouter: one member, this one, owns the one partition.
type fuzzRouter struct{}

func (fuzzRouter) PartitionOf([]byte) (int32, error) { return 0, nil }
func (fuzzRouter) Refresh()                          {}
func (fuzzRouter) Members() ([]abacus.Member, time.Time, int32) {
	return []abacus.Member{{Name: "abacus-0", URL: "http://127.0.0.1:1", Partitions: []int32{0}}}, time.Now(), 1
}

func fuzzServer() (*Server, *fuzzCounts) {
	counts := &fuzzCounts{}
	return New(Config{Instance: "abacus-0", Store: "counts-store", ScanSecret: "fuzz", Counts: counts, Router: fuzzRouter{},
		Windows: counts, WindowStores: []WindowStore{{Spec: window.Spec{Store: fuzzWindowStore, Kind: window.Tumbling, Size: 5 * time.Second}}}}), counts
}

// serveTarget sends "GET target" as Go's HTTP server would hand it to the
// handler; ok is false for a target the server itself rejects.
func serveTarget(s *Server, target string) (rec *httptest.ResponseRecorder, ok bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil || strings.ContainsAny(target, " \t\r\n") {
		return nil, false // Go's server answers 400 before any handler
	}
	req := &http.Request{Method: http.MethodGet, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Host: "abacus", RemoteAddr: "127.0.0.1:1"}
	rec = httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	return rec, true
}

// serve forgets what the store was asked, sends "GET target" as
// serveTarget does and, when the server takes it, checks the answer's
// shape.
func (f *fuzzCounts) serve(t *testing.T, s *Server, target string) (rec *httptest.ResponseRecorder, ok bool) {
	t.Helper()
	f.mu.Lock()
	f.keys, f.scans, f.ranges = f.keys[:0], f.scans[:0], f.ranges[:0]
	f.mu.Unlock()
	rec, ok = serveTarget(s, target)
	if ok {
		checkAnswerShape(t, target, rec)
	}
	return rec, ok
}

// asked is what the store was asked since serve: the keys looked up and
// the scans.
func (f *fuzzCounts) asked() ([]string, []ScanQuery) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.keys), slices.Clone(f.scans)
}

// checkAnswerShape fails unless the answer is a non-5xx JSON document and,
// for an error, the error body.
func checkAnswerShape(t *testing.T, target string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("GET %q: %d %s", target, rec.Code, rec.Body.Bytes())
	}
	if !json.Valid(rec.Body.Bytes()) {
		t.Fatalf("GET %q: %d with a body that is not JSON: %q", target, rec.Code, rec.Body.Bytes())
	}
	if rec.Code >= 400 {
		var e errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Fatalf("GET %q: %d without an error code and message: %s", target, rec.Code, rec.Body.Bytes())
		}
	}
}

// askedRanges is what ranges of windows the store was asked for since
// serve.
func (f *fuzzCounts) askedRanges() [][2]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ranges)
}

// keyRoutes are the routes of a key, as the prefix and the suffix of its
// path segment: its count, its metadata and its windows.
var keyRoutes = [][2]string{
	{"/api/v1/stores/counts-store/keys/", ""},
	{"/api/v1/stores/counts-store/keys/", "/metadata"},
	{"/api/v1/stores/" + fuzzWindowStore + "/keys/", "/windows"},
}

// validKey is what the API accepts as a key.
func validKey(k string) bool { return k != "" && len(k) <= MaxKeyBytes && utf8.ValidString(k) }

// FuzzKeyPath sends any escaped path segment as a key, with any query: the
// answer is well formed, and the store is only ever asked for a valid key,
// the path segment's exact unescaping.
func FuzzKeyPath(f *testing.F) {
	for _, seed := range [][2]string{
		{"foo", ""}, {"a%2Fb%20c%25d", ""}, {"h%C3%A9llo", "local=true"}, {"%C3%28", ""}, {"%zz", ""}, {"", ""},
		{"foo/metadata", ""}, {"foo%2Fmetadata", "local=false"}, {"foo", "local=maybe"}, {"%00", ""}, {"..%2F..", ""},
		{"missing", ""}, {strings.Repeat("k", 4097), ""}, {"a;b=c", "x=%zz"}, {"%E6%97%A5%E6%9C%AC-1", ""}, {"+", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	s, counts := fuzzServer()
	f.Fuzz(func(t *testing.T, segment, query string) {
		for _, route := range keyRoutes {
			target := route[0] + segment + route[1]
			if query != "" {
				target += "?" + query
			}
			rec, ok := counts.serve(t, s, target)
			if !ok {
				continue
			}
			asked, _ := counts.asked()
			for _, k := range asked {
				if !validKey(k) {
					t.Fatalf("GET %q: the store was asked for the invalid key %q", target, k)
				}
			}
			if rec.Code == http.StatusOK {
				var body struct {
					Key string `json:"key"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !validKey(body.Key) {
					t.Fatalf("GET %q: 200 with key %q (%v)", target, body.Key, err)
				}
				if len(asked) > 0 && asked[0] != body.Key {
					t.Fatalf("GET %q: the store was asked for %q but the answer names %q", target, asked[0], body.Key)
				}
			}
		}
	})
}

// FuzzKeyRoundTrip: any valid key, percent-encoded as url.PathEscape does,
// reaches the store as itself and comes back in the answer, for the
// lookup, its metadata and its windows; any invalid one is a 400 bad_key.
func FuzzKeyRoundTrip(f *testing.F) {
	for _, k := range []string{"foo", "a/b c%d", "héllo-wörld-1", "日本-3", "x/y 5%", "a:b:2", "metadata", "x/metadata", "windows", "x/windows",
		"keys/", "/", "%2F", "..", ".", "a?b#c", "\x00", "\xff", "", strings.Repeat("é", 2049), "missing"} {
		f.Add(k)
	}
	s, counts := fuzzServer()
	f.Fuzz(func(t *testing.T, key string) {
		for _, route := range keyRoutes {
			suffix := route[1]
			target := route[0] + url.PathEscape(key) + suffix
			rec, ok := counts.serve(t, s, target)
			if !ok {
				t.Fatalf("GET %q: url.PathEscape(%q) made a target Go's server rejects", target, key)
			}
			var body struct {
				Key   string `json:"key"`
				Error struct{ Code string }
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &body)
			switch {
			case !validKey(key):
				// The empty key's lookup is /keys/ (its own 400); its
				// metadata path /keys//metadata is no route at all.
				if rec.Code != http.StatusBadRequest && !(key == "" && rec.Code == http.StatusNotFound) {
					t.Fatalf("GET %q: invalid key %q answered %d %s; want 400 bad_key", target, key, rec.Code, rec.Body.Bytes())
				}
			case key == "missing" && suffix == "":
				if rec.Code != http.StatusNotFound || body.Error.Code != "key_not_found" {
					t.Fatalf("GET %q: %d %s; want 404 key_not_found", target, rec.Code, rec.Body.Bytes())
				}
			default:
				if rec.Code != http.StatusOK || body.Key != key {
					t.Fatalf("GET %q: key %q answered %d %s", target, key, rec.Code, rec.Body.Bytes())
				}
				asked, _ := counts.asked()
				if suffix != "/metadata" && (len(asked) != 1 || asked[0] != key) {
					t.Fatalf("GET %q: the store was asked for %q, want [%q]", target, asked, key)
				}
			}
		}
	})
}

// FuzzScanQuery sends any query string to the scan route: a query that
// url.ParseQuery rejects is a 400 bad_query; otherwise the store sees the
// prefix, bounds and limit (+1, to know whether a page follows) exactly as
// parsed, or the answer is a 400; a page is sorted, within its bounds and
// limit, and carries a cursor naming its last key only when full.
func FuzzScanQuery(f *testing.F) {
	s, counts := fuzzServer()
	cursor := encodeCursor("fuzz", "us-1")
	for _, q := range []string{"", "prefix=us-", "prefix=us-&limit=1", "limit=2&cursor=" + cursor, "cursor=" + cursor + "&from=a",
		"from=a&to=b", "from=b&to=a", "limit=0", "limit=1001", "limit=ten", "limit=-1", "limit=99999999999999999999",
		"prefix=%zz", "prefix=%C3%28", "cursor=!!", "cursor=Zm9vYmFyYmF6cXV4cXV1eHh4eHh4eA", "local=true&prefix=a",
		"local=maybe", "prefix=" + strings.Repeat("p", 4097), "to=%00", "from=&to=", "prefix=a&prefix=b", ";", "&&&", "limit=1&limit=1000"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, query string) {
		target := "/api/v1/stores/counts-store/keys?" + query
		rec, ok := counts.serve(t, s, target)
		if !ok {
			return
		}
		params, perr := url.ParseQuery(query)
		if perr != nil {
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"bad_query"`) {
				t.Fatalf("GET %q: a query url.ParseQuery rejects (%v) answered %d %s; want 400 bad_query", target, perr, rec.Code, rec.Body.Bytes())
			}
			return
		}
		_, scans := counts.asked()
		if rec.Code != http.StatusOK {
			if len(scans) > 0 {
				t.Fatalf("GET %q: answered %d after scanning the store", target, rec.Code)
			}
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("GET %q: %d %s", target, rec.Code, rec.Body.Bytes())
			}
			return
		}
		if len(scans) != 1 {
			t.Fatalf("GET %q: the store was scanned %d times", target, len(scans))
		}
		q := scans[0]
		limit := defaultScanLimit
		if v := params.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("GET %q: limit %q accepted", target, v)
			}
			limit = n
		}
		from := params.Get("from")
		if c := params.Get("cursor"); c != "" {
			after, err := decodeCursor("fuzz", c)
			if err != nil {
				t.Fatalf("GET %q: a bad cursor was accepted", target)
			}
			from = max(from, after+"\x00")
		}
		// The store may be asked for one more than the page (to know
		// whether another follows).
		if q.Prefix != params.Get("prefix") || q.To != params.Get("to") || q.From != from || (q.Limit != limit && q.Limit != limit+1) {
			t.Fatalf("GET %q: the store was asked for %+v; the query says prefix %q from %q to %q limit %d", target, q, params.Get("prefix"), from, params.Get("to"), limit)
		}
		for _, v := range []string{q.Prefix, q.From, q.To} {
			if !utf8.ValidString(v) {
				t.Fatalf("GET %q: the store was asked for invalid UTF-8 %q", target, v)
			}
		}
		if q.Limit < 1 || q.Limit > maxScanLimit+1 {
			t.Fatalf("GET %q: scan limit %d", target, q.Limit)
		}
		var page scanPage
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Items) > limit || (page.NextCursor != "" && len(page.Items) != limit) {
			t.Fatalf("GET %q: %d items, limit %d, cursor %q", target, len(page.Items), limit, page.NextCursor)
		}
		for i, it := range page.Items {
			if i > 0 && page.Items[i-1].Key >= it.Key {
				t.Fatalf("GET %q: items out of order: %q then %q", target, page.Items[i-1].Key, it.Key)
			}
			if !strings.HasPrefix(it.Key, q.Prefix) || it.Key < q.From || (q.To != "" && it.Key >= q.To) {
				t.Fatalf("GET %q: item %q outside prefix %q from %q to %q", target, it.Key, q.Prefix, q.From, q.To)
			}
		}
		if page.NextCursor != "" {
			if after, err := decodeCursor("fuzz", page.NextCursor); err != nil || after != page.Items[len(page.Items)-1].Key {
				t.Fatalf("GET %q: next_cursor %q does not name the page's last key (%q, %v)", target, page.NextCursor, after, err)
			}
		}
	})
}

// FuzzWindowTime sends any value as the from and the to of a key's
// windows: parseWindowTime takes epoch milliseconds, 0 or more, as they
// are and an RFC 3339 time as the least whole millisecond at or after it,
// never a time before the epoch; the route answers 400 naming the
// parameter for a value it refuses, and otherwise asks the store for
// exactly that bound.
func FuzzWindowTime(f *testing.F) {
	for _, v := range []string{"0", "5000", "1714564800000", "-1", "+5", "9223372036854775807", "9223372036854775808",
		"2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00", "2024-05-01T14:00:00 02:00", "2024-05-01T12:00:00.0001Z",
		"2024-05-01T12:00:00.999999999-00:30", "1970-01-01T00:00:00Z", "1969-12-31T23:59:59.9999Z", "1969-12-31T23:59:59Z",
		"0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2024-13-01T00:00:00Z", "yesterday", "1e3", "0x10", "", " "} {
		f.Add(v)
	}
	s, counts := fuzzServer()
	f.Fuzz(func(t *testing.T, v string) {
		ms, err := parseWindowTime(v)
		if err == nil {
			if ms < 0 {
				t.Fatalf("parseWindowTime(%q) = %d, before the epoch", v, ms)
			}
			if n, perr := strconv.ParseInt(v, 10, 64); perr == nil && n != ms {
				t.Fatalf("parseWindowTime(%q) = %d, not the milliseconds given", v, ms)
			} else if perr != nil {
				tm, terr := time.Parse(time.RFC3339Nano, strings.ReplaceAll(v, " ", "+"))
				if terr != nil || time.UnixMilli(ms).Before(tm) || !time.UnixMilli(ms-1).Before(tm) {
					t.Fatalf("parseWindowTime(%q) = %d, not the least millisecond at or after %v (%v)", v, ms, tm, terr)
				}
			}
		}
		for _, name := range []string{"from", "to"} {
			target := "/api/v1/stores/" + fuzzWindowStore + "/keys/k/windows?" + name + "=" + url.QueryEscape(v)
			rec, ok := counts.serve(t, s, target)
			if !ok {
				t.Fatalf("GET %q: url.QueryEscape(%q) made a target Go's server rejects", target, v)
			}
			ranges := counts.askedRanges()
			switch {
			case v == "":
				if rec.Code != http.StatusOK || len(ranges) != 1 || ranges[0] != [2]int64{0, math.MaxInt64} {
					t.Fatalf("GET %q: %d %s, the store asked for %v; want 200 for [0, no bound)", target, rec.Code, rec.Body.Bytes(), ranges)
				}
			case err != nil:
				if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"message":"`+name+` must be`) || len(ranges) != 0 {
					t.Fatalf("GET %q: %d %s after asking the store for %v; want 400 naming %s", target, rec.Code, rec.Body.Bytes(), ranges, name)
				}
			case rec.Code != http.StatusOK || len(ranges) != 1:
				t.Fatalf("GET %q: %d %s, the store asked for %v", target, rec.Code, rec.Body.Bytes(), ranges)
			case name == "from" && ranges[0] != [2]int64{ms, math.MaxInt64}, name == "to" && ranges[0] != [2]int64{0, ms}:
				t.Fatalf("GET %q: the store was asked for [%d, %d); %s is %d", target, ranges[0][0], ranges[0][1], name, ms)
			}
		}
	})
}
