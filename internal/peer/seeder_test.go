package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/store"
)

// member is a member in process: a store and the api serving its copies.
type member struct {
	abacus.Member
	db *store.DB
}

func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// startMember serves a member's copies; wrap, if set, stands between the
// api and the network.
func startMember(t *testing.T, name string, wrap func(http.Handler) http.Handler, more func(*api.Config)) *member {
	t.Helper()
	m := &member{Member: abacus.Member{Name: name}, db: openDB(t)}
	copies := NewCopies(m.db)
	cfg := api.Config{Instance: name, Store: "counts-store", Snapshots: copies}
	if more != nil {
		more(&cfg)
	}
	var h http.Handler = api.New(cfg).Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(copies.Close)
	m.URL = srv.URL
	return m
}

func commit(t *testing.T, m *member, p int32, counts map[string]int64, checkpoint int64) {
	t.Helper()
	if err := m.db.Partition(p).Commit(store.Batch{Counts: counts, Checkpoint: checkpoint}); err != nil {
		t.Fatal(err)
	}
}

func contents(t *testing.T, p *store.Partition) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := p.Scan(store.ScanOptions{}, func(k []byte, v int64) bool { out[string(k)] = v; return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func checkpoint(t *testing.T, p *store.Partition) int64 {
	t.Helper()
	cp, err := p.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// view is a view of the members, read now.
func view(members ...*member) func() ([]abacus.Member, time.Time) {
	var out []abacus.Member
	for _, m := range members {
		out = append(out, m.Member)
	}
	return func() ([]abacus.Member, time.Time) { return out, time.Now() }
}

func newSeeder(cfg Config) (*Seeder, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	if cfg.Self == "" {
		cfg.Self = "me"
	}
	cfg.Registerer = reg
	return New(cfg), reg
}

func fetched(t *testing.T, s *Seeder, outcome string) float64 {
	t.Helper()
	return testutil.ToFloat64(s.fetched.WithLabelValues(outcome))
}

func counts(n int, tag string) map[string]int64 {
	out := map[string]int64{}
	for i := range n {
		out[fmt.Sprintf("%s-%04d", tag, i)] = int64(i + 1)
	}
	return out
}

// Every other member is asked; the copy with the highest checkpoint is
// streamed in, with its checkpoint. The member itself is never asked.
func TestSeedTakesTheMostAdvancedCopy(t *testing.T) {
	behind, ahead, none := startMember(t, "abacus-0", nil, nil), startMember(t, "abacus-1", nil, nil), startMember(t, "abacus-2", nil, nil)
	var askedSelf atomic.Bool
	self := startMember(t, "me", func(http.Handler) http.Handler {
		return http.HandlerFunc(func(http.ResponseWriter, *http.Request) { askedSelf.Store(true) })
	}, nil)
	commit(t, behind, 3, counts(100, "old"), 10)
	want := counts(300, "new")
	commit(t, ahead, 3, want, 20)
	commit(t, none, 2, counts(5, "other"), 30) // another partition's copy

	s, _ := newSeeder(Config{View: view(self, behind, ahead, none), Transport: api.PeerTransport(nil)})
	st := openDB(t).Partition(3)
	got, err := s.Seed(context.Background(), 3, st)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "abacus-1" || got.Checkpoint != 20 || got.Entries != 300 || got.Bytes <= 0 {
		t.Errorf("Seed = %+v; want abacus-1's 300 keys at checkpoint 20", got)
	}
	if c := contents(t, st); !maps.Equal(c, want) || checkpoint(t, st) != 20 {
		t.Errorf("the store holds %d keys at checkpoint %d; want abacus-1's %d at 20", len(c), checkpoint(t, st), len(want))
	}
	if askedSelf.Load() {
		t.Error("the member asked itself")
	}
	if n := fetched(t, s, OutcomeSeeded); n != 1 {
		t.Errorf("seeded %v; want 1", n)
	}
}

// No copy anywhere (no member holds one, one does not answer, one refuses
// the credentials) is ErrNoCopy, and the error says what each answered.
func TestSeedWithoutACopyFails(t *testing.T) {
	empty := startMember(t, "abacus-0", nil, nil)
	guarded := startMember(t, "abacus-1", nil, func(c *api.Config) { c.AuthToken = "secret" })
	commit(t, guarded, 0, counts(3, "k"), 5)
	down := startMember(t, "abacus-2", nil, nil)
	srv := httptest.NewServer(http.NotFoundHandler())
	down.URL = srv.URL
	srv.Close()

	s, _ := newSeeder(Config{View: view(empty, guarded, down), Authorization: api.PeerAuthorization("wrong", "")})
	st := openDB(t).Partition(0)
	_, err := s.Seed(context.Background(), 0, st)
	if !errors.Is(err, ErrNoCopy) {
		t.Fatalf("Seed: %v; want ErrNoCopy", err)
	}
	for _, want := range []string{"abacus-0: no copy", "abacus-1: answered 401", "abacus-2: "} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q; want it to say %q", err, want)
		}
	}
	if checkpoint(t, st) != store.NoCheckpoint {
		t.Error("a failed seed left a checkpoint")
	}
	// The right credentials get the copy.
	s, _ = newSeeder(Config{View: view(empty, guarded, down), Authorization: api.PeerAuthorization("secret", "")})
	if got, err := s.Seed(context.Background(), 0, st); err != nil || got.Source != "abacus-1" {
		t.Errorf("Seed with the right token: %+v, %v; want abacus-1's copy", got, err)
	}
	// A member alone asks no one.
	s, _ = newSeeder(Config{Self: "abacus-0", View: view(empty)})
	if _, err := s.Seed(context.Background(), 0, openDB(t).Partition(0)); !errors.Is(err, ErrNoCopy) || fetched(t, s, OutcomeNoCopy) != 1 {
		t.Errorf("Seed alone: %v; want ErrNoCopy, counted", err)
	}
}

// A member's first restores may begin before its first view: Seed asks
// for one and waits for it.
func TestSeedWaitsForAFirstView(t *testing.T) {
	peer := startMember(t, "abacus-0", nil, nil)
	commit(t, peer, 1, counts(10, "k"), 7)
	var refreshed atomic.Bool
	s, _ := newSeeder(Config{
		View: func() ([]abacus.Member, time.Time) {
			if !refreshed.Load() {
				return nil, time.Time{}
			}
			return []abacus.Member{peer.Member}, time.Now()
		},
		Refresh: func() { go func() { time.Sleep(100 * time.Millisecond); refreshed.Store(true) }() },
	})
	if got, err := s.Seed(context.Background(), 1, openDB(t).Partition(1)); err != nil || got.Checkpoint != 7 {
		t.Fatalf("Seed before the first view: %+v, %v; want abacus-0's copy at 7", got, err)
	}
}

// flipByte changes the body byte at offset of every snapshot answer.
func flipByte(offset int) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasSuffix(r.URL.Path, "/snapshot") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if len(body) > offset {
				body[offset] ^= 0x20
			}
			w.Header().Set("Content-Type", rec.Header().Get("Content-Type"))
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
		})
	}
}

// A snapshot changed in transit is refused and leaves no checkpoint.
func TestSeedRefusesACorruptedSnapshot(t *testing.T) {
	peer := startMember(t, "abacus-0", flipByte(500), nil)
	commit(t, peer, 2, counts(200, "k"), 9)
	s, _ := newSeeder(Config{View: view(peer)})
	st := openDB(t).Partition(2)
	_, err := s.Seed(context.Background(), 2, st)
	if !errors.Is(err, store.ErrSnapshotCorrupt) || !strings.Contains(err.Error(), "abacus-0") {
		t.Fatalf("Seed of a corrupted snapshot: %v; want ErrSnapshotCorrupt naming abacus-0", err)
	}
	if checkpoint(t, st) != store.NoCheckpoint || fetched(t, s, OutcomeFailed) != 1 {
		t.Errorf("after a corrupted snapshot: checkpoint %d, failed %v; want none and 1", checkpoint(t, st), fetched(t, s, OutcomeFailed))
	}
}

// A peer that stops sending in the middle of a snapshot is given up on
// after the idle timeout, however long the restore's context lasts.
func TestSeedGivesUpOnAStalledPeer(t *testing.T) {
	source := startMember(t, "abacus-0", nil, nil)
	commit(t, source, 0, counts(500, "k"), 11)
	var snap bytes.Buffer
	if _, err := source.db.Partition(0).WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/checkpoint") {
			fmt.Fprint(w, `{"partition":0,"checkpoint":11,"member":"abacus-0"}`)
			return
		}
		w.Header().Set("Content-Type", api.SnapshotContentType)
		_, _ = w.Write(snap.Bytes()[:snap.Len()/2])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stalled.Close()
	s, _ := newSeeder(Config{View: view(&member{Member: abacus.Member{Name: "abacus-0", URL: stalled.URL}}), IdleTimeout: 300 * time.Millisecond})
	st := openDB(t).Partition(0)
	began := time.Now()
	_, err := s.Seed(context.Background(), 0, st)
	if err == nil || !strings.Contains(err.Error(), "nothing arrived for 300ms") {
		t.Fatalf("Seed from a stalled peer: %v; want the idle timeout named", err)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("gave up after %s", took)
	}
	if checkpoint(t, st) != store.NoCheckpoint {
		t.Error("a stalled snapshot left a checkpoint")
	}
}

// The restore's context ends a snapshot under way.
func TestSeedEndsWithItsContext(t *testing.T) {
	peer := startMember(t, "abacus-0", nil, nil)
	commit(t, peer, 0, counts(10, "k"), 3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, _ := newSeeder(Config{View: view(peer)})
	if _, err := s.Seed(ctx, 0, openDB(t).Partition(0)); err == nil {
		t.Fatal("Seed with an ended context succeeded")
	}
}
