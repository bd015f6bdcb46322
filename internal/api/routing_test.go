package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
)

// notHere is a member that owns nothing (its Counts always says so).
type notHere struct{}

func (notHere) Get(string, []byte) (Count, bool, error) {
	return Count{Partition: 0}, false, abacus.ErrNotOwned
}
func (notHere) GetCopy(string, []byte, int64) (Count, bool, error) {
	return Count{Partition: 0}, false, abacus.ErrNotOwned
}
func (notHere) WaitPosition(context.Context, int32, int64) (int64, error) {
	return -1, abacus.ErrNotOwned
}
func (notHere) Scan(string, ScanQuery) ([]Item, []int32, error) {
	return nil, nil, nil
}

func (notHere) ScanCopies(string, ScanQuery, int64) ([]Item, []PartitionCopy, error) {
	return nil, nil, nil
}

// staleRouter believes owner owns every partition.
type staleRouter struct {
	owner     *abacus.Member
	refreshes atomic.Int32
}

func (r *staleRouter) PartitionOf([]byte) (int32, error) { return 0, nil }
func (r *staleRouter) Refresh()                          { r.refreshes.Add(1) }
func (r *staleRouter) Members() ([]abacus.Member, time.Time, int32) {
	return []abacus.Member{*r.owner}, time.Now(), 1
}

// Acceptance 4 (query issue): with a deliberately stale ownership view on
// both sides (each believes the other owns the key), a forwarded request
// is never forwarded again: one hop, then a 503 with Retry-After.
func TestForwardedRequestIsNeverForwardedAgain(t *testing.T) {
	var hitsA, hitsB atomic.Int32
	memberA, memberB := &abacus.Member{Name: "abacus-0", Partitions: []int32{0}}, &abacus.Member{Name: "abacus-1", Partitions: []int32{0}}
	routerA, routerB := &staleRouter{owner: memberB}, &staleRouter{owner: memberA}
	a := New(Config{Instance: "abacus-0", Store: "counts-store", Counts: notHere{}, Router: routerA})
	b := New(Config{Instance: "abacus-1", Store: "counts-store", Counts: notHere{}, Router: routerB})
	srvA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsA.Add(1); a.Handler().ServeHTTP(w, r) }))
	defer srvA.Close()
	srvB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hitsB.Add(1); b.Handler().ServeHTTP(w, r) }))
	defer srvB.Close()
	memberA.URL, memberB.URL = srvA.URL, srvB.URL

	resp, err := http.Get(srvA.URL + "/api/v1/stores/counts-store/keys/foo")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || e.Error.Code != "not_owner" {
		t.Errorf("got %d Retry-After=%q %s; want 503 not_owner with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if hitsA.Load() != 1 || hitsB.Load() != 1 {
		t.Errorf("requests: A %d, B %d; want one each (one hop, never back)", hitsA.Load(), hitsB.Load())
	}
	if routerB.refreshes.Load() == 0 || routerA.refreshes.Load() == 0 {
		t.Errorf("a routing miss must trigger a refresh of the view on both sides")
	}
}

// A view that names this member as the owner of a partition it does not
// have is stale too: no forward to itself, a 503.
func TestOwnerIsSelfInStaleViewIsNotForwarded(t *testing.T) {
	self := &abacus.Member{Name: "abacus-0", URL: "http://127.0.0.1:1", Partitions: []int32{0}}
	r := &staleRouter{owner: self}
	s := New(Config{Instance: "abacus-0", Store: "counts-store", Counts: notHere{}, Router: r})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/stores/counts-store/keys/foo", nil))
	if rec.Code != 503 || r.refreshes.Load() != 1 {
		t.Errorf("got %d, %d refreshes; want 503 and a refresh", rec.Code, r.refreshes.Load())
	}
}

func TestCursorRoundTripAndForgery(t *testing.T) {
	for _, key := range []string{"a", "us-007", "héllo wörld", "x/y%z", ""} {
		got, err := decodeCursor("s", encodeCursor("s", key))
		if err != nil || got != key {
			t.Errorf("round trip %q: %q %v", key, got, err)
		}
	}
	if _, err := decodeCursor("other", encodeCursor("s", "k")); err == nil {
		t.Error("a cursor signed with another secret was accepted")
	}
	c := []byte(encodeCursor("s", "us-007"))
	c[2] ^= 1
	if _, err := decodeCursor("s", string(c)); err == nil {
		t.Error("a tampered cursor was accepted")
	}
}

// FuzzDecodeCursor reads any cursor as a key scan's and as a window
// scan's: what either accepts it made, and no cursor is both.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor("s", "k"))
	f.Add(encodeWindowCursor("s", Window{Key: "k", Start: 5000, End: 10000}))
	f.Add("!!")
	f.Fuzz(func(t *testing.T, cursor string) {
		key, err := decodeCursor("s", cursor)
		if err == nil && encodeCursor("s", key) != cursor {
			// RawURLEncoding is canonical for what we emit; anything else
			// that decodes must still carry a valid signature.
			if _, err := decodeCursor("s", encodeCursor("s", key)); err != nil {
				t.Fatal(err)
			}
		}
		w, werr := decodeWindowCursor("s", cursor)
		if werr == nil {
			if err == nil {
				t.Fatalf("cursor %q reads as key %q and as window %+v", cursor, key, w)
			}
			if got, err := decodeWindowCursor("s", encodeWindowCursor("s", w)); err != nil || got != w {
				t.Fatalf("window %+v of cursor %q: round trip %+v %v", w, cursor, got, err)
			}
		}
	})
}
