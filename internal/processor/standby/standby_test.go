package standby

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/testkit"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const partitions = 4

// rig is a Runner over a real broker and store, and the changelog's truth.
type rig struct {
	t       *testing.T
	cfg     config.Config
	db      *store.DB
	dir     string
	insp    *kafka.Consumer
	metrics Metrics
	mu      sync.Mutex
	active  map[int32]bool
	truth   map[string]int64
	seq     int
}

func newRig(t *testing.T, guarantee string) *rig {
	b := testkit.StartBroker(t, partitions)
	cfg := config.Default()
	cfg.BootstrapServers = b.Addr()
	cfg.ProcessingGuarantee = guarantee
	cfg.StateCleanupDelay = time.Hour
	r := &rig{t: t, cfg: cfg, dir: t.TempDir(), active: map[int32]bool{}, truth: map[string]int64{}}
	r.open()
	insp, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": b.Addr(), "group.id": "inspector", "log_level": 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = insp.Close() })
	r.insp = insp
	r.metrics = Metrics{
		Lag:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lag"}, []string{"partition"}),
		Applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "applied"}, []string{"partition"}),
		Wipes:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wipes"}, []string{"reason"}),
	}
	return r
}

func (r *rig) open() {
	db, err := store.Open(store.Config{Dir: r.dir, MinFreeBytes: -1})
	if err != nil {
		r.t.Fatal(err)
	}
	r.db = db
}

func (r *rig) start() *Runner { return r.startWith(func(*Config) {}) }

// startWith starts a Runner with the rig's settings, changed by more.
func (r *rig) startWith(more func(*Config)) *Runner {
	cfg := Config{Config: r.cfg, DB: r.db,
		Inspector: func() (*kafka.Consumer, error) { return r.insp, nil },
		Active: func(p int32) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.active[p]
		},
		Metrics: r.metrics}
	more(&cfg)
	return Start(context.Background(), cfg)
}

// write appends n counts to the changelog, over 50 keys.
func (r *rig) write(n int) {
	recs := make([]testkit.Record, 0, n)
	for range n {
		key := fmt.Sprintf("key-%d", r.seq%50)
		r.seq++
		r.truth[key]++
		recs = append(recs, testkit.Record{Key: []byte(key), Value: []byte(strconv.FormatInt(r.truth[key], 10))})
	}
	testkit.Produce(r.t, r.cfg.Brokers(), r.cfg.ChangelogTopic(), "murmur2_random", recs)
}

// exact waits until the store holds the truth for the keys of the
// partitions given.
func (r *rig) exact(ps ...int32) {
	r.t.Helper()
	want := map[int32]bool{}
	for _, p := range ps {
		want[p] = true
	}
	testkit.Eventually(r.t, 30*time.Second, func() error {
		for key, n := range r.truth {
			p := partitioner.Murmur2([]byte(key), partitions)
			if !want[p] {
				continue
			}
			got, _, err := r.db.Partition(p).Get([]byte(key))
			if err != nil || got != n {
				return fmt.Errorf("%s in partition %d = %d (%v), want %d", key, p, got, err, n)
			}
		}
		return nil
	})
}

func (r *rig) applied() float64 {
	var sum float64
	for p := range partitions {
		sum += testutil.ToFloat64(r.metrics.Applied.WithLabelValues(strconv.Itoa(p)))
	}
	return sum
}

// A standby tails its changelog partitions into the store, reports no
// lag once caught up, and on a restart on the same disk applies only what
// was written while it was down.
func TestStandbyTailsAndRestartsFromItsCheckpoint(t *testing.T) {
	for _, g := range []string{config.AtLeastOnce, config.ExactlyOnceV2} {
		t.Run(g, func(t *testing.T) {
			r := newRig(t, g)
			r.write(400)
			run := r.start()
			run.Set([]int32{0, 1})
			r.exact(0, 1)
			r.write(200)
			r.exact(0, 1)
			testkit.Eventually(t, 10*time.Second, func() error {
				st := run.Status()
				if len(st) != 2 || st[0].Partition != 0 || st[1].Partition != 1 || *st[0].Lag != 0 || *st[1].Lag != 0 {
					return fmt.Errorf("status %+v, want partitions 0 and 1 with no lag", st)
				}
				return nil
			})
			if run.Holds(2) || !run.Holds(0) {
				t.Errorf("holds 2 = %v, 0 = %v", run.Holds(2), run.Holds(0))
			}
			run.Stop()
			before := r.applied()
			if err := r.db.Close(); err != nil {
				t.Fatal(err)
			}
			r.write(100) // while it is down
			r.open()
			run = r.start()
			run.Set([]int32{0, 1})
			r.exact(0, 1)
			run.Stop()
			if delta := r.applied() - before; delta > 100 || delta == 0 {
				t.Errorf("the restarted standby applied %v records; want some of the 100 written while it was down, and no more", delta)
			}
		})
	}
}

// Release hands a standby's store over: once it returns the standby no
// longer writes it, and a Set that still names the partition does not
// take it back while it is a task here.
func TestReleaseHandsTheStoreOver(t *testing.T) {
	r := newRig(t, config.AtLeastOnce)
	r.write(200)
	run := r.start()
	defer run.Stop()
	run.Set([]int32{0, 1, 2, 3})
	r.exact(0, 1, 2, 3)
	r.mu.Lock()
	r.active[2] = true
	r.mu.Unlock()
	run.Release(2)
	if run.Holds(2) {
		t.Fatal("still holds partition 2 after Release")
	}
	cp, err := r.db.Partition(2).Checkpoint()
	if err != nil || cp == store.NoCheckpoint {
		t.Fatalf("partition 2's checkpoint after Release = %d (%v), want one", cp, err)
	}
	run.Set([]int32{0, 1, 2, 3})
	r.write(200)
	r.exact(0, 1, 3)
	if run.Holds(2) {
		t.Fatal("took partition 2 back while it is a task here")
	}
	if got, err := r.db.Partition(2).Checkpoint(); err != nil || got != cp {
		t.Fatalf("partition 2's checkpoint moved to %d (%v) after Release, want %d", got, err, cp)
	}
}

// A store that lingers (a revoked task's, a dropped standby's) is wiped
// after the cleanup delay, but not one that became a standby meanwhile.
func TestLingeringStoresAreWipedUnlessHeld(t *testing.T) {
	r := newRig(t, config.AtLeastOnce)
	r.write(200)
	run := r.start()
	defer run.Stop()
	run.Set([]int32{0, 1})
	r.exact(0, 1)
	run.Set([]int32{1}) // 0 is dropped: it lingers for the cleanup delay (an hour)
	testkit.Eventually(t, 10*time.Second, func() error {
		if run.Holds(0) {
			return fmt.Errorf("partition 0 still a standby")
		}
		return nil
	})
	if cp, _ := r.db.Partition(0).Checkpoint(); cp == store.NoCheckpoint {
		t.Fatal("partition 0 wiped before its cleanup delay")
	}
	run.Linger(0, time.Now())
	run.Linger(1, time.Now()) // held: ignored
	testkit.Eventually(t, 10*time.Second, func() error {
		if cp, _ := r.db.Partition(0).Checkpoint(); cp != store.NoCheckpoint {
			return fmt.Errorf("partition 0 not wiped yet (checkpoint %d)", cp)
		}
		return nil
	})
	if cp, _ := r.db.Partition(1).Checkpoint(); cp == store.NoCheckpoint {
		t.Fatal("partition 1, a standby here, was wiped")
	}
}

// While someone listens, a standby publishes what it applied, each key's
// latest, once readable in its store; while no one does it gathers
// nothing; a standby that stops says so.
func TestStandbyPublishesWhatItAppliesWhileListenedTo(t *testing.T) {
	r := newRig(t, config.ExactlyOnceV2)
	var mu sync.Mutex
	var listening bool
	published := map[string]int64{}
	var dropped []int32
	run := r.startWith(func(c *Config) {
		c.Listening = func() bool { mu.Lock(); defer mu.Unlock(); return listening }
		c.OnApplied = func(us []abacus.Update) {
			mu.Lock()
			defer mu.Unlock()
			for _, u := range us {
				if got, _, err := r.db.Partition(u.Partition).Get([]byte(u.Key)); err != nil || got < u.Value {
					t.Errorf("published %s=%d of partition %d before the store held it (%d, %v)", u.Key, u.Value, u.Partition, got, err)
				}
				published[u.Key] = u.Value
			}
		}
		c.OnDropped = func(p int32) { mu.Lock(); defer mu.Unlock(); dropped = append(dropped, p) }
	})
	defer run.Stop()
	run.Set([]int32{0, 1, 2, 3})
	r.write(200)
	r.exact(0, 1, 2, 3)
	mu.Lock()
	if len(published) != 0 {
		t.Errorf("published %d keys while no one listened", len(published))
	}
	listening = true
	mu.Unlock()
	r.write(200)
	r.exact(0, 1, 2, 3)
	testkit.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		for k, n := range r.truth {
			if published[k] != n {
				return fmt.Errorf("%s published at %d, want %d", k, published[k], n)
			}
		}
		return nil
	})
	run.Set([]int32{0, 1, 2})
	testkit.Eventually(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(dropped, []int32{3}) {
			return fmt.Errorf("dropped %v, want [3]", dropped)
		}
		return nil
	})
}
