package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Config wires a Seeder.
type Config struct {
	// Self is this member's name; it is never asked.
	Self string
	// View is the current ownership view: the members to ask, and when it
	// was read (zero: not yet).
	View func() (members []abacus.Member, refreshed time.Time)
	// Refresh asks for a new view soon, without waiting (optional).
	Refresh func()
	// Transport carries the calls (api.PeerTransport, as forwarded lookups
	// travel); nil is http.DefaultTransport.
	Transport http.RoundTripper
	// Authorization is the header sent with every call
	// (api.PeerAuthorization); empty sends none.
	Authorization string
	// AskTimeout bounds the question of one member's checkpoint, and the
	// wait for a first view (default 2 s).
	AskTimeout time.Duration
	// IdleTimeout fails a snapshot of which nothing arrives for this long
	// (default 10 s): a stalled peer must not hold a restore up.
	IdleTimeout time.Duration
	Registerer  prometheus.Registerer
	Logger      *slog.Logger
}

// Seeder fills task stores from other members' copies. Its Seed may be
// called from many goroutines at once (one per restoring task).
type Seeder struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	fetched *prometheus.CounterVec
}

// Outcomes of Seed, the label of abacus_snapshots_fetched_total.
const (
	OutcomeSeeded = "seeded"  // a copy was written into the store
	OutcomeNoCopy = "no_copy" // no other member holds one
	OutcomeFailed = "failed"  // the transfer or the snapshot failed
)

// New builds a Seeder; it has no side effects.
func New(cfg Config) *Seeder {
	if cfg.AskTimeout <= 0 {
		cfg.AskTimeout = 2 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	fetched := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "abacus_snapshots_fetched_total",
		Help: "Task stores without a checkpoint that a restore tried to seed from a peer's snapshot, by outcome (seeded, no_copy, failed).",
	}, []string{"outcome"})
	for _, o := range []string{OutcomeSeeded, OutcomeNoCopy, OutcomeFailed} {
		fetched.WithLabelValues(o)
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(fetched)
	}
	// No client timeout: a snapshot takes as long as it takes, bounded
	// by its context and the idle timeout.
	return &Seeder{cfg: cfg, log: cfg.Logger.With("component", "peer"), client: &http.Client{Transport: cfg.Transport}, fetched: fetched}
}

// Seeded is what Seed wrote: the copy's member and what its snapshot
// carried.
type Seeded struct {
	Source string
	store.SnapshotInfo
}

// ErrNoCopy is Seed's error when no other member holds a copy.
var ErrNoCopy = errors.New("no other member holds a copy")

// Seed asks every other member of the view for its checkpoint of the
// partition, at once, and streams the snapshot of the highest into st,
// which must have no checkpoint. It fails with ErrNoCopy when no member
// holds a copy, and with the reason when the snapshot fails (cut off,
// corrupt, stalled past the idle timeout, ctx ended); st is then left
// without a checkpoint, and whatever it got is to be wiped.
func (s *Seeder) Seed(ctx context.Context, partition int32, st *store.Partition) (Seeded, error) {
	copies, asked := s.copies(ctx, partition)
	if len(copies) == 0 {
		s.fetched.WithLabelValues(OutcomeNoCopy).Inc()
		return Seeded{}, fmt.Errorf("partition %d: %w (asked %s)", partition, ErrNoCopy, asked)
	}
	best := copies[0]
	for _, c := range copies[1:] {
		if c.Checkpoint > best.Checkpoint {
			best = c
		}
	}
	info, err := s.fetch(ctx, best, partition, st)
	if err != nil {
		s.fetched.WithLabelValues(OutcomeFailed).Inc()
		return Seeded{Source: best.Member}, fmt.Errorf("snapshot of partition %d from %s (checkpoint %d): %w", partition, best.Member, best.Checkpoint, err)
	}
	s.fetched.WithLabelValues(OutcomeSeeded).Inc()
	return Seeded{Source: best.Member, SnapshotInfo: info}, nil
}

// copyAt is a member's copy of a partition: its checkpoint and where to
// ask for it.
type copyAt struct {
	api.TaskCheckpoint
	url string
}

// copies asks every other member for its checkpoint of the partition and
// returns the copies found, in the view's order, and whom it asked (for
// the error).
func (s *Seeder) copies(ctx context.Context, partition int32) ([]copyAt, string) {
	peers := s.peers(ctx)
	if len(peers) == 0 {
		return nil, "no other member: the view holds none"
	}
	found := make([]*copyAt, len(peers))
	answers := make([]string, len(peers))
	var wg sync.WaitGroup
	for i, m := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cp, err := s.ask(ctx, m, partition)
			switch {
			case err != nil:
				answers[i] = m.Name + ": " + err.Error()
			case cp == nil:
				answers[i] = m.Name + ": no copy"
			default:
				answers[i] = fmt.Sprintf("%s: checkpoint %d", m.Name, cp.Checkpoint)
				found[i] = cp
			}
		}()
	}
	wg.Wait()
	var out []copyAt
	for _, c := range found {
		if c != nil {
			out = append(out, *c)
		}
	}
	s.log.Debug("asked the other members for their copies", "partition", partition, "answers", answers)
	return out, strings.Join(answers, "; ")
}

// peers are the other members of the view that have a URL. A view never
// read yet is waited for, up to AskTimeout: a member's first restores
// begin as it joins, and may come before its first view.
func (s *Seeder) peers(ctx context.Context) []abacus.Member {
	members, refreshed := s.cfg.View()
	if refreshed.IsZero() && s.cfg.Refresh != nil {
		s.cfg.Refresh()
		deadline := time.NewTimer(s.cfg.AskTimeout)
		defer deadline.Stop()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
	wait:
		for refreshed.IsZero() {
			select {
			case <-ctx.Done():
				return nil
			case <-deadline.C:
				break wait
			case <-tick.C:
				members, refreshed = s.cfg.View()
			}
		}
	}
	var out []abacus.Member
	for _, m := range members {
		if m.Name != s.cfg.Self && m.URL != "" {
			out = append(out, m)
		}
	}
	return out
}

// ask asks a member for its checkpoint of the partition: nil when it
// holds no copy.
func (s *Seeder) ask(ctx context.Context, m abacus.Member, partition int32) (*copyAt, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.AskTimeout)
	defer cancel()
	resp, err := s.get(ctx, m.URL+api.TaskCheckpointPath(partition))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, answerError(resp)
	}
	var cp api.TaskCheckpoint
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&cp); err != nil {
		return nil, fmt.Errorf("decode the checkpoint: %w", err)
	}
	if cp.Partition != partition || cp.Checkpoint < 0 {
		return nil, fmt.Errorf("answered checkpoint %d of partition %d", cp.Checkpoint, cp.Partition)
	}
	cp.Member = m.Name // as this member's view names it
	return &copyAt{TaskCheckpoint: cp, url: m.URL}, nil
}

// fetch streams the member's snapshot of the partition into st.
func (s *Seeder) fetch(ctx context.Context, c copyAt, partition int32, st *store.Partition) (store.SnapshotInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := newIdleTimer(s.cfg.IdleTimeout, cancel)
	defer idle.stop()
	idle.wait()
	resp, err := s.get(ctx, c.url+api.TaskSnapshotPath(partition))
	idle.done()
	if err != nil {
		return store.SnapshotInfo{}, idle.explain(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return store.SnapshotInfo{}, errors.New("the copy is gone (404)")
	case resp.StatusCode != http.StatusOK:
		return store.SnapshotInfo{}, answerError(resp)
	case resp.Header.Get("Content-Type") != api.SnapshotContentType:
		return store.SnapshotInfo{}, fmt.Errorf("answered %q, not a snapshot", resp.Header.Get("Content-Type"))
	}
	info, err := st.ReadSnapshot(&idleReader{r: resp.Body, idle: idle})
	return info, idle.explain(err)
}

// get sends a GET with this member's credentials, marked as a call
// between members.
func (s *Seeder) get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(api.HopHeader, s.cfg.Self)
	if s.cfg.Authorization != "" {
		req.Header.Set("Authorization", s.cfg.Authorization)
	}
	return s.client.Do(req)
}

// answerError describes an answer other than the one expected.
func answerError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("answered %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// idleTimer cancels a transfer that waits on its peer for longer than its
// timeout at a time: only the time spent waiting for the peer counts
// (between wait and done), not the time spent writing the store.
type idleTimer struct {
	timeout time.Duration
	t       *time.Timer
	fired   atomic.Bool
}

func newIdleTimer(timeout time.Duration, cancel context.CancelFunc) *idleTimer {
	i := &idleTimer{timeout: timeout}
	i.t = time.AfterFunc(timeout, func() {
		i.fired.Store(true)
		cancel()
	})
	i.t.Stop()
	return i
}

func (i *idleTimer) wait() { i.t.Reset(i.timeout) }
func (i *idleTimer) done() { i.t.Stop() }
func (i *idleTimer) stop() { i.t.Stop() }

// explain names the idle timeout as the cause of an error it caused.
func (i *idleTimer) explain(err error) error {
	if err != nil && i.fired.Load() {
		return fmt.Errorf("nothing arrived for %s: %w", i.timeout, err)
	}
	return err
}

// idleReader reads under an idle timer.
type idleReader struct {
	r    io.Reader
	idle *idleTimer
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.idle.wait()
	defer r.idle.done()
	return r.r.Read(p)
}
