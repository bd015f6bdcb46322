package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/broker"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/discovery"
	"github.com/abacus-streams/abacus/internal/processor"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// livenessBound is how long the processing loop may go without a turn
// before /healthz fails; a turn happens at least every poll timeout, even
// when the broker is away.
const livenessBound = 30 * time.Second

// serve runs the service until ctx ends.
func serve(ctx context.Context, args, environ []string, stderr io.Writer) error {
	cfg, err := config.Load(args, environ, stderr)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat).With("member", cfg.InstanceID)
	log.Info("starting abacus", "version", version, "application_id", cfg.ApplicationID,
		"input_topic", cfg.InputTopic, "processing_guarantee", cfg.ProcessingGuarantee)

	if cfg.Embedded() {
		dataDir := filepath.Join(cfg.StateDir, "broker")
		b, err := broker.Start(broker.Config{Addr: cfg.EmbeddedBroker, Partitions: cfg.Partitions, DataDir: dataDir, Logger: log})
		if err != nil {
			return fmt.Errorf("%w (set ABACUS_BOOTSTRAP_SERVERS to use a Kafka cluster, or ABACUS_EMBEDDED_BROKER to move the embedded one)", err)
		}
		defer b.Close()
		log.Warn("NO ABACUS_BOOTSTRAP_SERVERS SET: running an EMBEDDED Kafka-protocol broker for development; point ABACUS_BOOTSTRAP_SERVERS at a real cluster in production",
			"addr", b.Addr(), "data_dir", dataDir)
	}

	db, err := store.Open(store.Config{Dir: store.DirOf(cfg.StateDir, cfg.ApplicationID, cfg.Store), Logger: log.With("component", "store")})
	if err != nil {
		return err
	}
	defer func() {
		if err := db.Close(); err != nil {
			log.Error("close store", "error", err)
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	disc, err := discovery.New(discovery.Config{Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	proc, err := processor.New(processor.Config{
		Config: cfg, Logger: log, Registerer: reg,
		OnAssignment: func([]int32) { disc.Trigger() },
	}, db)
	if err != nil {
		return err
	}
	srv := api.New(api.Config{
		Instance:   cfg.InstanceID,
		Store:      cfg.Store,
		ScanSecret: cfg.ApplicationID,
		Counts:     counts{proc, cfg.InstanceID},
		Router:     router{disc},
		Health:     health{proc},
		Gatherer:   reg,
		Logger:     log.With("component", "http"),
	})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var procErr, httpErr error
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := disc.Run(ctx); err != nil {
			log.Error("discovery stopped", "error", err)
		}
	}()
	go func() {
		defer wg.Done()
		defer cancel()
		procErr = proc.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		defer cancel()
		httpErr = srv.Serve(ctx, cfg.HTTPAddr)
		if httpErr != nil {
			httpErr = fmt.Errorf("serve HTTP on %s: %w", cfg.HTTPAddr, httpErr)
		}
	}()
	log.Info("serving HTTP", "addr", cfg.HTTPAddr)
	wg.Wait()
	log.Info("stopped")
	return errors.Join(procErr, httpErr)
}

// counts adapts the processor to the api's Counts.
type counts struct {
	p        *processor.Processor
	instance string
}

func (c counts) Get(storeName string, key []byte) (api.Count, bool, error) {
	v, part, found, err := c.p.Get(storeName, key)
	count := api.Count{Value: v, Partition: part, ServedBy: c.instance}
	switch {
	case errors.Is(err, processor.ErrUnknownStore):
		err = api.ErrUnknownStore
	case errors.Is(err, processor.ErrNotOwned):
		err = api.ErrNotOwned
	case errors.Is(err, processor.ErrRestoring):
		err = api.ErrRestoring
	}
	return count, found, err
}

func (c counts) Scan(storeName string, q api.ScanQuery) ([]api.Item, []int32, error) {
	items, covered, err := c.p.ScanLocal(storeName, store.ScanOptions{
		Prefix: []byte(q.Prefix), From: []byte(q.From), To: []byte(q.To), Limit: q.Limit,
	})
	if errors.Is(err, processor.ErrUnknownStore) {
		return nil, nil, api.ErrUnknownStore
	}
	out := make([]api.Item, len(items))
	for i, it := range items {
		out[i] = api.Item{Key: string(it.Key), Value: it.Value, Partition: it.Partition}
	}
	return out, covered, err
}

// router adapts discovery to the api's Router.
type router struct{ d *discovery.Discovery }

func (r router) PartitionOf(key []byte) (int32, error) { return r.d.PartitionOf(key) }
func (r router) Refresh()                              { r.d.Trigger() }

func (r router) Members() ([]api.Member, time.Time, int32) {
	v := r.d.View()
	out := make([]api.Member, len(v.Members))
	for i, m := range v.Members {
		out[i] = api.Member(m)
	}
	return out, v.Refreshed, v.Partitions
}

// health adapts the processor to the api's Health.
type health struct{ p *processor.Processor }

func (h health) Alive() bool   { return h.p.Alive(livenessBound) }
func (h health) Ready() bool   { return h.p.Ready() }
func (h health) State() string { return string(h.p.State()) }

func (h health) Tasks() []api.TaskStatus {
	tasks := h.p.Tasks()
	out := make([]api.TaskStatus, len(tasks))
	for i, t := range tasks {
		out[i] = api.TaskStatus(t)
	}
	return out
}
