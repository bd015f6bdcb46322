package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/broker"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/discovery"
	"github.com/abacus-streams/abacus/internal/events"
	"github.com/abacus-streams/abacus/internal/processor"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/subscribe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// serve runs the service until ctx ends.
func serve(ctx context.Context, args, environ []string, stderr io.Writer) error {
	cfg, err := config.Load(args, environ, stderr)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat).With("member", cfg.InstanceID)
	log.Info("starting abacus", "version", version, "application_id", cfg.ApplicationID,
		"input_topic", cfg.InputTopic, "processing_guarantee", cfg.ProcessingGuarantee)
	setMemoryLimit(cfg, environ, log)

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

	storeCfg := store.Config{Dir: store.DirOf(cfg.StateDir, cfg.ApplicationID, cfg.Store), Logger: log.With("component", "store")}
	openStore := func() (*store.DB, error) { return store.Open(storeCfg) }
	db, err := openStore()
	switch {
	case store.IsDiskFull(err):
		// Exiting would only crash-loop until space returns: serve HTTP
		// (state ERROR, with the reason) while the processor retries.
		log.Error("state store cannot open on a full disk: starting without it; the processor retries", "error", err)
		db = nil
	case err != nil:
		return err
	default:
		defer func() {
			if err := db.Close(); err != nil {
				log.Error("close store", "error", err)
			}
		}()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	disc, err := discovery.New(discovery.Config{Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	var publisher *events.Publisher
	onStateChange := func(processor.State, processor.State, []abacus.TaskStatus) {}
	if cfg.EventsTopic != "" {
		publisher = events.New(cfg, log, reg)
		onStateChange = func(from, to processor.State, tasks []abacus.TaskStatus) {
			publisher.StateChanged(string(from), string(to), tasks)
		}
	}
	hubCfg := subscribe.Config{MaxSubscribers: cfg.MaxSubscribers, WriteTimeout: subscribe.DefaultWriteTimeout,
		Registerer: reg, Logger: log.With("component", "subscribe")}
	hub := subscribe.New(hubCfg)
	var owned map[int32]bool
	proc, err := processor.New(processor.Config{
		Config: cfg, Logger: log, Registerer: reg,
		OnAssignment: func(partitions []int32) {
			disc.Trigger()
			// Streams of partitions that left end, so their clients
			// reconnect to the new owner.
			now := make(map[int32]bool, len(partitions))
			for _, p := range partitions {
				now[p] = true
			}
			for p := range owned {
				if !now[p] {
					hub.EndPartition(p, "revoked")
				}
			}
			owned = now
		},
		OnCommit:      hub.Publish,
		OnStateChange: onStateChange,
		OpenStore:     openStore,
	}, db)
	if err != nil {
		return err
	}
	srv := api.New(api.Config{
		ApplicationID:  cfg.ApplicationID,
		Instance:       cfg.InstanceID,
		Version:        version,
		Store:          cfg.Store,
		ChangelogTopic: cfg.ChangelogTopic(),
		ScanSecret:     cfg.ApplicationID,
		Counts:         counts{proc, cfg.InstanceID},
		Router:         router{disc},
		Health:         health{proc},
		Operations:     operations{proc, cfg},
		Subscriptions:  subscriptions{hub, counts{proc, cfg.InstanceID}, cfg.Store},
		Gatherer:       reg,
		Registerer:     reg,
		Logger:         log.With("component", "http"),
		AuthToken:      cfg.AuthToken,
		AuthBasic:      cfg.AuthBasic,
		AuthMetrics:    cfg.AuthMetrics,
		CORSOrigins:    cfg.CORSOrigins,
		TLSCertFile:    cfg.TLSCertFile,
		TLSKeyFile:     cfg.TLSKeyFile,
		MaxInflight:    cfg.HTTPMaxInflight,

		// Streams passed through let a stalled client go as the hub does.
		StreamWriteTimeout: hubCfg.WriteTimeout,
	})

	// The processor stops first (on a signal, or by itself on a fatal
	// error); HTTP keeps answering meanwhile, /readyz false, so probes and
	// peers see PENDING_SHUTDOWN rather than a refused connection.
	procCtx, stopProc := context.WithCancel(ctx)
	defer stopProc()
	httpCtx, stopHTTP := context.WithCancel(context.Background())
	defer stopHTTP()
	var wg sync.WaitGroup
	var procErr, httpErr error
	if publisher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := publisher.Run(httpCtx); err != nil {
				log.Error("state events stopped", "error", err)
			}
		}()
	}
	wg.Add(4)
	go func() {
		defer wg.Done()
		if err := hub.Run(httpCtx); err != nil {
			log.Error("subscriptions stopped", "error", err)
		}
	}()
	go func() {
		defer wg.Done()
		if err := disc.Run(httpCtx); err != nil {
			log.Error("discovery stopped", "error", err)
		}
	}()
	go func() {
		defer wg.Done()
		defer stopHTTP()
		procErr = proc.Run(procCtx)
	}()
	go func() {
		defer wg.Done()
		defer stopProc()
		httpErr = srv.Serve(httpCtx, cfg.HTTPAddr)
		if httpErr != nil {
			httpErr = fmt.Errorf("serve HTTP on %s: %w", cfg.HTTPAddr, httpErr)
		}
	}()
	log.Info("serving HTTP", "addr", cfg.HTTPAddr)
	wg.Wait()
	log.Info("stopped")
	return errors.Join(procErr, httpErr)
}

// setMemoryLimit gives the Go heap its soft limit: without one the heap
// runs up to twice its live size between collections, which at a million
// keys is most of a pod's memory. GOMEMLIMIT in the environment is the Go
// runtime's own and is left alone, unless ABACUS_MEMORY_LIMIT is set too.
func setMemoryLimit(cfg config.Config, environ []string, log *slog.Logger) {
	if cfg.MemoryLimit == 0 && slices.ContainsFunc(environ, func(kv string) bool { return strings.HasPrefix(kv, "GOMEMLIMIT=") }) {
		log.Info("Go heap soft limit from GOMEMLIMIT", "limit_bytes", debug.SetMemoryLimit(-1))
		return
	}
	debug.SetMemoryLimit(cfg.GoMemoryLimit())
	log.Info("Go heap soft limit", "limit_bytes", cfg.GoMemoryLimit())
}
