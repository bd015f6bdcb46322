package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/testkit"
)

// streamedSnapshots writes body, then fails with fail (if set); it
// reports on done what WriteSnapshot returned.
type streamedSnapshots struct {
	body []byte
	fail error
	// endless writes body again and again until a write fails.
	endless bool
	done    chan error
}

func (s *streamedSnapshots) Checkpoint(int32) (int64, bool, error) { return 7, true, nil }

func (s *streamedSnapshots) WriteSnapshot(_ int32, w io.Writer) (n int64, err error) {
	defer func() {
		if s.done != nil {
			s.done <- err
		}
	}()
	for {
		m, err := w.Write(s.body)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if !s.endless {
			break
		}
	}
	return n, s.fail
}

func serveSnapshots(t *testing.T, snaps api.Snapshots, more func(*api.Config)) (string, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := api.Config{Instance: "abacus-0", Store: "counts-store", Snapshots: snaps, Gatherer: reg, Registerer: reg}
	if more != nil {
		more(&cfg)
	}
	srv := httptest.NewServer(api.New(cfg).Handler())
	t.Cleanup(srv.Close)
	return srv.URL, reg
}

func TestSnapshotIsStreamedAsWritten(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	base, _ := serveSnapshots(t, &streamedSnapshots{body: body}, nil)
	resp, got := testkit.MustFetch(t, base+api.TaskSnapshotPath(3), nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != api.SnapshotContentType || !bytes.Equal(got, body) {
		t.Fatalf("snapshot: %d %s, %d bytes; want 200 %s with the %d bytes written", resp.StatusCode,
			resp.Header.Get("Content-Type"), len(got), api.SnapshotContentType, len(body))
	}
	waitMetric(t, base, `abacus_snapshots_served_total{outcome="ok"}`, 1)
	waitMetric(t, base, "abacus_snapshot_served_bytes_total", float64(len(body)))
}

// A snapshot that fails once its answer has begun can only end it: the
// peer gets the bytes so far without the trailer it verifies a snapshot
// by, which it refuses as cut off.
func TestSnapshotFailingAfterItBeganEndsItsAnswer(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100<<10)
	base, _ := serveSnapshots(t, &streamedSnapshots{body: body, fail: errors.New("badger: corrupt block")}, nil)
	resp, got, err := testkit.Fetch(base+api.TaskSnapshotPath(3), nil)
	if resp == nil || resp.StatusCode != 200 || len(got) > len(body) {
		t.Fatalf("snapshot failing after %d bytes: %v, %d bytes, %v", len(body), resp, len(got), err)
	}
	waitMetric(t, base, `abacus_snapshots_served_total{outcome="failed"}`, 1)
	waitMetric(t, base, `abacus_snapshots_served_total{outcome="ok"}`, 0)
}

// A peer that stops reading a snapshot is let go after the write timeout:
// the store's read transaction behind the snapshot must not stay open.
func TestSnapshotLetsAStalledPeerGo(t *testing.T) {
	snaps := &streamedSnapshots{body: bytes.Repeat([]byte("y"), 64<<10), endless: true, done: make(chan error, 1)}
	base, _ := serveSnapshots(t, snaps, func(c *api.Config) { c.StreamWriteTimeout = 200 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, err := testkit.NewGet(ctx, base+api.TaskSnapshotPath(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// Read nothing more: the socket buffers fill, and the writes block.
	select {
	case err := <-snaps.done:
		if err == nil {
			t.Fatal("an endless snapshot ended without an error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the snapshot still writes to a peer that stopped reading 30 s ago")
	}
}

// A member's own calls carry the credentials every member is configured
// with, which the others accept.
func TestPeerAuthorizationIsAccepted(t *testing.T) {
	for _, tc := range []struct{ token, basic string }{{"tok", ""}, {"", "ops:pw"}, {"tok", "ops:pw"}} {
		base, _ := serveSnapshots(t, &streamedSnapshots{body: []byte("z")}, func(c *api.Config) {
			c.AuthToken, c.AuthBasic = tc.token, tc.basic
		})
		if resp, body := testkit.MustFetch(t, base+api.TaskCheckpointPath(0), nil); resp.StatusCode != 401 {
			t.Errorf("token %q, basic %q: no credentials got %d %s; want 401", tc.token, tc.basic, resp.StatusCode, body)
		}
		h := http.Header{"Authorization": {api.PeerAuthorization(tc.token, tc.basic)}}
		if resp, body := testkit.MustFetch(t, base+api.TaskCheckpointPath(0), h); resp.StatusCode != 200 {
			t.Errorf("token %q, basic %q: %s got %d %s; want 200", tc.token, tc.basic, h.Get("Authorization"), resp.StatusCode, body)
		}
	}
	if h := api.PeerAuthorization("", ""); h != "" {
		t.Errorf("without auth the peer header is %q; want none", h)
	}
}
