package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/discovery"
	"github.com/abacus-streams/abacus/internal/processor"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/subscribe"
)

// livenessBound is how long the processing loop may go without a turn
// before /healthz fails; a turn happens at least every poll timeout, even
// when the broker is away.
const livenessBound = 30 * time.Second

// counts adapts the processor to the api's Counts.
type counts struct {
	p        *processor.Processor
	instance string
}

func (c counts) Get(storeName string, key []byte) (api.Count, bool, error) {
	v, part, found, pos, err := c.p.GetAt(storeName, key)
	count := api.Count{Value: v, Partition: part, ServedBy: c.instance}
	if pos >= 0 {
		count.Position = &api.Position{Partition: part, Offset: pos}
	}
	return count, found, err
}

func (c counts) GetCopy(storeName string, key []byte, maxLag int64) (api.Count, bool, error) {
	cp, err := c.p.GetCopy(storeName, key, maxLag)
	count := api.Count{Value: cp.Value, Partition: cp.Partition, ServedBy: c.instance, Lag: &cp.Lag, Stale: &cp.Stale}
	if !cp.Stale && cp.Position >= 0 {
		count.Position = &api.Position{Partition: cp.Partition, Offset: cp.Position}
	}
	return count, cp.Found, err
}

func (c counts) WaitPosition(ctx context.Context, partition int32, offset int64) (int64, error) {
	return c.p.WaitPosition(ctx, partition, offset)
}

func (c counts) Scan(storeName string, q api.ScanQuery) ([]api.Item, []int32, error) {
	items, covered, err := c.p.ScanLocal(storeName, scanOptions(q))
	return apiItems(items), covered, err
}

func (c counts) ScanCopies(storeName string, q api.ScanQuery, maxLag int64) ([]api.Item, []api.PartitionCopy, error) {
	items, copies, err := c.p.ScanCopies(storeName, scanOptions(q), maxLag)
	cs := make([]api.PartitionCopy, len(copies))
	for i, cp := range copies {
		cs[i] = api.PartitionCopy{Partition: cp.Partition, Lag: cp.Lag, Stale: cp.Stale}
	}
	return apiItems(items), cs, err
}

func scanOptions(q api.ScanQuery) store.ScanOptions {
	return store.ScanOptions{Prefix: []byte(q.Prefix), From: []byte(q.From), To: []byte(q.To), Limit: q.Limit}
}

func apiItems(items []processor.Item) []api.Item {
	out := make([]api.Item, len(items))
	for i, it := range items {
		out[i] = api.Item{Key: string(it.Key), Value: it.Value, Partition: it.Partition}
	}
	return out
}

// operations adapts the processor and configuration to the api's Operations.
type operations struct {
	p   *processor.Processor
	cfg config.Config
}

func (o operations) Config() map[string]any { return o.cfg.Masked() }

func (o operations) Offsets(ctx context.Context) ([]abacus.PartitionOffsets, error) {
	return o.p.Offsets(ctx)
}

func (o operations) Topology() api.Topology {
	c := o.cfg
	t := api.Topology{
		Source: api.TopologyNode{Name: "source", Topic: c.InputTopic, Description: "consumes the input topic in group " + c.ApplicationID},
		Processors: []api.TopologyNode{
			{Name: "count-by-key", Description: "adds one to the record key's count in store " + c.Store + "; null keys go by on_error=" + c.OnError},
		},
		Stores: []api.TopologyNode{{Name: c.Store, Changelog: c.ChangelogTopic(), Description: "per-partition Badger store of counts, backed by its compacted changelog"}},
		Sinks: []api.TopologyNode{
			{Name: "output", Topic: c.OutputTopic, Description: "every new count: key, count as a decimal string"},
			{Name: "dead-letter", Topic: c.DLQTopic(), Description: "records that could not be counted, with error headers"},
		},
	}
	if c.EventsTopic != "" {
		t.Sinks = append(t.Sinks, api.TopologyNode{Name: "state-events", Topic: c.EventsTopic, Description: "state transitions as CloudEvents"})
	}
	return t
}

// subscriptions serves live streams from the processor's stores: the
// active tasks' through hub, the standby copies' through copyHub.
type subscriptions struct {
	hub, copyHub *subscribe.Hub
	counts       counts
	store        string
}

// ServeCopy streams from the copy of the partition here (GetCopy's) that
// lags at most maxLag, fed by the standby's updates.
func (s subscriptions) ServeCopy(w http.ResponseWriter, r *http.Request, key string, prefix bool, partition int32, maxLag int64) error {
	src := subscribe.Source{
		Current: func(key string) (int64, int32, bool, error) {
			cp, err := s.counts.p.GetCopy(s.store, []byte(key), maxLag)
			return cp.Value, cp.Partition, cp.Found, err
		},
		CurrentPrefix: func(prefix string, partition int32, fn func(string, int64, int32) bool) error {
			if partition < 0 {
				return fmt.Errorf("%w: a prefix stream of copies is of one partition", subscribe.ErrBadQuery)
			}
			items, err := s.counts.p.ScanCopy(s.store, partition, snapshotOf(prefix), maxLag)
			feed(apiItems(items), fn)
			return err
		},
	}
	return s.copyHub.Serve(w, r, hubQuery(key, prefix, partition), src)
}

func (s subscriptions) Serve(w http.ResponseWriter, r *http.Request, key string, prefix bool, partition int32) error {
	src := subscribe.Source{
		Current: func(key string) (int64, int32, bool, error) {
			c, found, err := s.counts.Get(s.store, []byte(key))
			return c.Value, c.Partition, found, err
		},
		CurrentPrefix: func(prefix string, partition int32, fn func(string, int64, int32) bool) error {
			if partition >= 0 {
				items, err := s.counts.p.ScanPartition(s.store, partition, snapshotOf(prefix))
				feed(apiItems(items), fn)
				return err
			}
			items, covered, err := s.counts.Scan(s.store, api.ScanQuery{Prefix: prefix, Limit: subscribe.DefaultSnapshotLimit + 1})
			if err == nil && len(covered) != len(s.counts.p.Tasks()) {
				// A task here is restoring: its keys would be missing from
				// the snapshot and never shown if they do not change.
				return abacus.ErrRestoring
			}
			feed(items, fn)
			return err
		},
	}
	return s.hub.Serve(w, r, hubQuery(key, prefix, partition), src)
}

// windowSubscriptions serves live streams of the windowed stores' windows
// from the processor's active tasks, each store's through its own hub.
type windowSubscriptions struct {
	hubs map[string]*subscribe.Hub
	p    *processor.Processor
}

func (s windowSubscriptions) ServeWindows(w http.ResponseWriter, r *http.Request, storeName, key string, prefix bool, partition int32) error {
	h := s.hubs[storeName]
	if h == nil {
		return abacus.ErrUnknownStore
	}
	src := subscribe.Source{Windows: func(key string, prefix bool, partition int32, fn func(abacus.WindowUpdate) bool) (map[int32]int64, error) {
		if !prefix {
			part, ws, cp, err := s.p.GetWindowsAt(storeName, []byte(key))
			if err != nil {
				return nil, err
			}
			feedWindows(ws, part, cp, fn)
			return map[int32]int64{part: cp}, nil
		}
		parts := []int32{partition}
		if partition < 0 {
			parts = parts[:0]
			for _, t := range s.p.Tasks() {
				parts = append(parts, t.Partition)
			}
		}
		checkpoints := make(map[int32]int64, len(parts))
		for _, p := range parts {
			// A restoring task fails the read: its windows would be
			// missing from the snapshot.
			ws, cp, err := s.p.ScanWindowsPartitionAt(storeName, p, store.WindowScanOptions{Prefix: []byte(key), Limit: subscribe.DefaultSnapshotLimit + 1})
			if err != nil {
				return nil, err
			}
			checkpoints[p] = cp
			if !feedWindows(ws, p, cp, fn) {
				break
			}
		}
		return checkpoints, nil
	}}
	return h.Serve(w, r, hubQuery(key, prefix, partition), src)
}

// feedWindows hands a partition's windows, read at checkpoint, to a
// stream's snapshot until it has enough; false then.
func feedWindows(ws []store.WindowCount, partition int32, checkpoint int64, fn func(abacus.WindowUpdate) bool) bool {
	for _, w := range ws {
		if !fn(abacus.WindowUpdate{Key: string(w.Key), Start: w.Start, End: w.End, Value: w.Count, Partition: partition, Offset: checkpoint}) {
			return false
		}
	}
	return true
}

// snapshotOf bounds the current values a prefix stream starts with: one
// more than the hub sends, so that it can say it cut the snapshot short.
func snapshotOf(prefix string) store.ScanOptions {
	return store.ScanOptions{Prefix: []byte(prefix), Limit: subscribe.DefaultSnapshotLimit + 1}
}

// feed hands items to a stream's snapshot until it has enough.
func feed(items []api.Item, fn func(string, int64, int32) bool) {
	for _, it := range items {
		if !fn(it.Key, it.Value, it.Partition) {
			return
		}
	}
}

// hubQuery is a subscription as the hub takes it; a partition of 0 or
// more narrows a prefix.
func hubQuery(key string, prefix bool, partition int32) subscribe.Query {
	return subscribe.Query{Key: key, Prefix: prefix, OnePartition: partition >= 0, Partition: max(partition, 0)}
}

// router adapts discovery to the api's Router.
type router struct{ d *discovery.Discovery }

func (r router) PartitionOf(key []byte) (int32, error) { return r.d.PartitionOf(key) }
func (r router) Refresh()                              { r.d.Trigger() }

// Members hands out the view's own slice: a published view is never
// changed, and the api only reads it.
func (r router) Members() ([]abacus.Member, time.Time, int32) {
	v := r.d.View()
	return v.Members, v.Refreshed, v.Partitions
}

// health adapts the processor to the api's Health.
type health struct{ p *processor.Processor }

func (h health) Alive() bool   { return h.p.Alive(livenessBound) }
func (h health) Ready() bool   { return h.p.Ready() }
func (h health) State() string { return string(h.p.State()) }
func (h health) Error() string { return h.p.LastError() }

func (h health) Tasks() []abacus.TaskStatus { return h.p.Tasks() }

func (h health) StandbyTasks() []abacus.TaskStatus { return h.p.StandbyTasks() }

// windows adapts the processor to the api's Windows.
type windows struct{ p *processor.Processor }

func (w windows) GetWindows(storeName string, key []byte, from, to int64) ([]api.Window, error) {
	_, got, err := w.p.GetWindows(storeName, key, from, to)
	out := make([]api.Window, len(got))
	for i, wc := range got {
		out[i] = api.Window{Key: string(wc.Key), Start: wc.Start, End: wc.End, Value: wc.Count}
	}
	return out, err
}

func (w windows) ScanWindows(storeName string, q api.WindowScanQuery) ([]api.Window, []int32, error) {
	o := store.WindowScanOptions{Prefix: []byte(q.Prefix), From: []byte(q.From), To: []byte(q.To), StartFrom: q.StartFrom, StartTo: q.StartTo, Limit: q.Limit}
	if q.After != nil {
		o.After = store.EncodeWindowKey(store.Window{Key: []byte(q.After.Key), Start: q.After.Start, End: q.After.End})
	}
	items, covered, err := w.p.ScanWindowsLocal(storeName, o)
	out := make([]api.Window, len(items))
	for i, it := range items {
		out[i] = api.Window{Key: string(it.Key), Start: it.Start, End: it.End, Value: it.Count}
	}
	return out, covered, err
}

// windowStores describes the configured windowed stores for the api.
func windowStores(cfg config.Config) []api.WindowStore {
	var out []api.WindowStore
	for _, spec := range cfg.Windows {
		out = append(out, api.WindowStore{Spec: spec.WithDefaults(), ChangelogTopic: cfg.WindowChangelogTopic(spec.Store)})
	}
	return out
}
