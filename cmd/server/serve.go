package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/broker"
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/console"
	"github.com/abacus-streams/abacus/internal/discovery"
	"github.com/abacus-streams/abacus/internal/events"
	"github.com/abacus-streams/abacus/internal/peer"
	"github.com/abacus-streams/abacus/internal/processor"
	"github.com/abacus-streams/abacus/internal/processor/restore"
	"github.com/abacus-streams/abacus/internal/store"
	"github.com/abacus-streams/abacus/internal/subscribe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
)

// serve runs the service until ctx ends. With ABACUS_LOG_FORMAT=json the
// error it stops with is logged as its last line.
func serve(ctx context.Context, args, environ []string, stderr io.Writer) (err error) {
	cfg, err := config.Load(args, environ, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && wantsJSON(cfg, args, environ) {
			return logExit(newLogger(stderr, "error", "json"), err)
		}
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat).With("member", cfg.InstanceID)
	// What logs with Go's log package (net/http, a library) goes through
	// slog too, in the log's format.
	slog.SetDefault(log)
	if cfg.LogFormat == "json" {
		defer func() {
			if err != nil {
				err = logExit(log, err)
			}
		}()
	}
	svc, err := build(cfg, log, environ)
	if err != nil {
		return err
	}
	defer svc.close()
	return svc.run(ctx)
}

// wantsJSON reports whether a configuration that did not load asked for
// JSON logs: Load stops at the first bad setting, maybe before
// log_format, so the environment and the flags are read for it too.
func wantsJSON(cfg config.Config, args, environ []string) bool {
	format := cfg.LogFormat
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, config.EnvName("log_format")+"="); ok {
			format = v
		}
	}
	for i, a := range args {
		name, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name != "log-format" && name != "log_format" || !strings.HasPrefix(a, "-") {
			continue
		}
		if !hasValue && i+1 < len(args) {
			v = args[i+1]
		}
		format = v
	}
	return format == "json"
}

// service is one instance with every part built and wired, none running.
type service struct {
	cfg config.Config
	log *slog.Logger
	// peerTLS verifies other members' HTTPS certificates (nil: the
	// system's roots).
	peerTLS *tls.Config
	proc    *processor.Processor
	http    *api.Server
	hub     *subscribe.Hub // streams of the active tasks
	copyHub *subscribe.Hub // streams of standby copies (?max_lag)
	// windowHubs stream each windowed store's windows from the active
	// tasks, by store; they and hub share ABACUS_MAX_SUBSCRIBERS. Not
	// changed after build.
	windowHubs map[string]*subscribe.Hub
	disc       *discovery.Discovery
	publisher  *events.Publisher // nil without an events topic
	copies     *peer.Copies      // this member's copies of task stores, for peers
	// closers release what build acquired; close runs them last first, so
	// the store closes before the embedded broker goes.
	closers []func()
}

// build makes every part of the service from its configuration. Of
// them only the embedded broker runs yet, since it must listen before any
// client dials it; on failure build releases what it acquired. Its errors
// are the parts' own, unwrapped: they already say what failed, and they
// are the one line the process exits with.
func build(cfg config.Config, log *slog.Logger, environ []string) (_ *service, err error) {
	peerTLS, err := loadPeerTLS(cfg.TLSCAFile)
	if err != nil {
		return nil, err
	}
	log.Info("starting abacus", "version", version, "application_id", cfg.ApplicationID,
		"input_topic", cfg.InputTopic, "processing_guarantee", cfg.ProcessingGuarantee)
	setMemoryLimit(cfg, environ, log)

	s := &service{cfg: cfg, log: log, peerTLS: peerTLS}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if cfg.Embedded() {
		if err := s.startBroker(); err != nil {
			return nil, err
		}
	}
	db, openStore, err := s.openStore()
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newBuildInfo())
	// The hooks run once Run starts, after build has set s.proc.
	rejoin := func([]int32) { s.proc.Rejoin("orphaned_partitions") }
	if s.disc, err = discovery.New(discovery.Config{Config: cfg, Logger: log, OnOrphaned: rejoin, OnView: s.placeStandbys}); err != nil {
		return nil, err
	}
	if cfg.EventsTopic != "" {
		s.publisher = events.New(cfg, log, reg)
	}
	hubCfg := subscribe.Config{MaxSubscribers: cfg.MaxSubscribers, WriteTimeout: subscribe.DefaultWriteTimeout,
		Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"source": "active"}, reg), Logger: log.With("component", "subscribe")}
	// The windowed stores' hubs, one per store, count their streams with
	// the count store's against one ABACUS_MAX_SUBSCRIBERS, and in the
	// same metrics: they all serve the active tasks.
	hubCfg.Group = subscribe.NewGroup(hubCfg)
	s.hub = subscribe.New(hubCfg)
	s.windowHubs = make(map[string]*subscribe.Hub, len(cfg.Windows))
	for _, spec := range cfg.Windows {
		wcfg := hubCfg
		wcfg.Windows = true
		wcfg.Logger = log.With("component", "subscribe", "store", spec.Store)
		s.windowHubs[spec.Store] = subscribe.New(wcfg)
	}
	copyCfg := hubCfg
	copyCfg.Group = nil
	copyCfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"source": "standby"}, reg)
	copyCfg.Logger = log.With("component", "subscribe", "source", "standby")
	s.copyHub = subscribe.New(copyCfg)
	// Closed before the store (closers run last first): the store must
	// not close under a snapshot being sent.
	s.copies = peer.NewCopies(db)
	s.closers = append(s.closers, s.copies.Close)
	if s.proc, err = s.newProcessor(reg, db, openStore); err != nil {
		return nil, err
	}
	if s.http, err = s.newAPI(reg, hubCfg.WriteTimeout); err != nil {
		return nil, err
	}
	return s, nil
}

// placeStandbys gives the processor the standbys the placement puts on
// this member. Only a Stable view places them: a group that rebalances is
// described without its members' assignments, which would place every
// partition as unowned and move standbys back and forth on every
// rebalance. A view without this member (it is joining) leaves them as
// they are.
func (s *service) placeStandbys(v *discovery.View) {
	if !v.Stable || s.cfg.NumStandbyReplicas == 0 {
		return
	}
	if mine := v.StandbysOf(s.cfg.InstanceID); mine != nil {
		s.proc.SetStandbys(mine)
	}
}

// startBroker starts the embedded Kafka-protocol broker, for development
// without a Kafka cluster.
func (s *service) startBroker() error {
	dataDir := filepath.Join(s.cfg.StateDir, "broker")
	b, err := broker.Start(broker.Config{Addr: s.cfg.EmbeddedBroker, Partitions: s.cfg.Partitions, DataDir: dataDir, Logger: s.log})
	if err != nil {
		return fmt.Errorf("%w (set ABACUS_BOOTSTRAP_SERVERS to use a Kafka cluster, or ABACUS_EMBEDDED_BROKER to move the embedded one)", err)
	}
	s.closers = append(s.closers, b.Close)
	s.log.Warn("NO ABACUS_BOOTSTRAP_SERVERS SET: running an EMBEDDED Kafka-protocol broker for development; point ABACUS_BOOTSTRAP_SERVERS at a real cluster in production",
		"addr", b.Addr(), "data_dir", dataDir)
	return nil
}

// openStore opens the state store, and returns how to open it again for
// the processor. On a full disk it returns no store and no error.
func (s *service) openStore() (*store.DB, func() (*store.DB, error), error) {
	storeCfg := store.Config{Dir: store.DirOf(s.cfg.StateDir, s.cfg.ApplicationID, s.cfg.Store), Logger: s.log.With("component", "store")}
	open := func() (*store.DB, error) { return store.Open(storeCfg) }
	db, err := open()
	switch {
	case store.IsDiskFull(err):
		// Exiting would only crash-loop until space returns: serve HTTP
		// (state ERROR, with the reason) while the processor retries.
		s.log.Error("state store cannot open on a full disk: starting without it; the processor retries", "error", err)
		return nil, open, nil
	case err != nil:
		return nil, nil, err
	}
	s.closers = append(s.closers, func() {
		if err := db.Close(); err != nil {
			s.log.Error("close store", "error", err)
		}
	})
	return db, open, nil
}

// newProcessor builds the counting pipeline and has it tell discovery,
// the subscriptions and the state events what it does.
func (s *service) newProcessor(reg prometheus.Registerer, db *store.DB, openStore func() (*store.DB, error)) (*processor.Processor, error) {
	var onStateChange func(from, to processor.State, tasks []abacus.TaskStatus)
	if s.publisher != nil {
		onStateChange = func(from, to processor.State, tasks []abacus.TaskStatus) {
			s.publisher.StateChanged(string(from), string(to), tasks)
		}
	}
	var owned map[int32]bool // the session loop's alone: it makes every call
	onAssignment := func(partitions []int32) {
		s.disc.Trigger()
		// Streams of partitions that left end, so their clients
		// reconnect to the new owner.
		now := make(map[int32]bool, len(partitions))
		for _, p := range partitions {
			now[p] = true
		}
		for p := range owned {
			if !now[p] {
				s.hub.EndPartition(p, "revoked")
				for _, h := range s.windowHubs {
					h.EndPartition(p, "revoked")
				}
			}
		}
		owned = now
	}
	return processor.New(processor.Config{
		Config: s.cfg, Logger: s.log, Registerer: reg,
		OnAssignment: onAssignment,
		OnCommit:     s.hub.Publish,
		OnWindowCommit: func(store string, updates []abacus.WindowUpdate) {
			if h := s.windowHubs[store]; h != nil {
				h.PublishWindows(updates)
			}
		},
		// A standby's streams end when it stops: their members go back
		// to the partition's owner.
		OnStandbyApplied:   s.copyHub.Publish,
		OnStandbyListening: s.copyHub.Serving,
		OnStandbyDropped:   func(p int32) { s.copyHub.EndPartition(p, "standby stopped") },
		OnStateChange:      onStateChange,
		OpenStore:          openStore,
		Seed:               s.newSeed(reg),
	}, db)
}

// newSeed fills a task store without a checkpoint from the most advanced
// copy another member of discovery's view holds (docs/state.md, "Peer
// snapshots"), asked as a forwarded lookup is: the same transport, this
// member's own credentials.
func (s *service) newSeed(reg prometheus.Registerer) func(context.Context, int32, *store.Partition) (restore.Seeded, error) {
	seeder := peer.New(peer.Config{
		Self: s.cfg.InstanceID,
		View: func() ([]abacus.Member, time.Time) {
			v := s.disc.View()
			return v.Members, v.Refreshed
		},
		Refresh:       s.disc.Trigger,
		Transport:     api.PeerTransport(s.peerTLS),
		Authorization: api.PeerAuthorization(s.cfg.AuthToken, s.cfg.AuthBasic),
		Registerer:    reg,
		Logger:        s.log,
	})
	return func(ctx context.Context, partition int32, st *store.Partition) (restore.Seeded, error) {
		got, err := seeder.Seed(ctx, partition, st)
		return restore.Seeded{Source: got.Source, Records: got.Entries, Bytes: got.Bytes, Checkpoint: got.Checkpoint}, err
	}
}

// newAPI builds the HTTP surface over the other parts, the web console
// included.
func (s *service) newAPI(reg *prometheus.Registry, streamWriteTimeout time.Duration) (*api.Server, error) {
	cfg := s.cfg
	c := counts{s.proc, cfg.InstanceID}
	ui, err := console.New(console.Config{})
	if err != nil {
		return nil, err
	}
	return api.New(api.Config{
		ApplicationID:       cfg.ApplicationID,
		Instance:            cfg.InstanceID,
		Version:             version,
		Store:               cfg.Store,
		ChangelogTopic:      cfg.ChangelogTopic(),
		ScanSecret:          cfg.ApplicationID,
		Counts:              c,
		Router:              router{s.disc},
		Health:              health{s.proc},
		Operations:          operations{s.proc, cfg},
		Windows:             windows{s.proc},
		WindowStores:        windowStores(cfg),
		Subscriptions:       subscriptions{hub: s.hub, copyHub: s.copyHub, counts: c, store: cfg.Store},
		WindowSubscriptions: windowSubscriptions{hubs: s.windowHubs, p: s.proc},
		Snapshots:           s.copies,
		Console:             ui,
		Gatherer:            reg,
		Registerer:          reg,
		Logger:              s.log.With("component", "http"),
		AccessLog:           cfg.AccessLog,
		AuthToken:           cfg.AuthToken,
		AuthBasic:           cfg.AuthBasic,
		AuthMetrics:         cfg.AuthMetrics,
		CORSOrigins:         cfg.CORSOrigins,
		TLSCertFile:         cfg.TLSCertFile,
		TLSKeyFile:          cfg.TLSKeyFile,
		PeerTLS:             s.peerTLS,
		MaxInflight:         cfg.HTTPMaxInflight,

		// Streams passed through let a stalled client go as the hub does.
		StreamWriteTimeout: streamWriteTimeout,
	}), nil
}

// run runs every part until ctx ends or the processor or HTTP fails, and
// returns when all have stopped, with the first failure.
//
// The processor stops first (on a signal, or by itself on a fatal error,
// or because HTTP failed); HTTP and the helpers keep running until it has
// stopped, /readyz false, so probes and peers see PENDING_SHUTDOWN rather
// than a refused connection.
func (s *service) run(ctx context.Context) error {
	// The group's context is the processor's: a signal or the first
	// failure ends it.
	g, procCtx := errgroup.WithContext(ctx)
	// Not under ctx: a signal must reach HTTP only through the processor.
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	if s.publisher != nil {
		s.goHelper(httpCtx, g, "state events stopped", s.publisher.Run)
	}
	s.goHelper(httpCtx, g, "subscriptions stopped", s.hub.Run)
	s.goHelper(httpCtx, g, "subscriptions of standbys stopped", s.copyHub.Run)
	for name, h := range s.windowHubs {
		s.goHelper(httpCtx, g, "subscriptions of windowed store "+name+" stopped", h.Run)
	}
	s.goHelper(httpCtx, g, "discovery stopped", s.disc.Run)
	g.Go(func() error {
		defer stopHTTP()
		// Unwrapped: the processor's errors name what failed, and are
		// the line the process exits with.
		return s.proc.Run(procCtx)
	})
	g.Go(func() error {
		// Serve returns nil only once httpCtx ends, after the processor
		// stopped; its failure stops the processor through the group.
		if err := s.http.Serve(httpCtx, s.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("serve HTTP on %s: %w", s.cfg.HTTPAddr, err)
		}
		return nil
	})
	s.log.Info("serving HTTP", "addr", s.cfg.HTTPAddr)
	err := g.Wait()
	s.log.Info("stopped")
	return err
}

// goHelper runs a helper of the processor and HTTP in g until ctx ends.
// Helpers fail only as they start (creating a client); such a failure is
// logged and stops nothing, since counting and lookups can go on without
// state events, routing refreshes or streams.
func (s *service) goHelper(ctx context.Context, g *errgroup.Group, stopped string, run func(context.Context) error) {
	g.Go(func() error {
		if err := run(ctx); err != nil {
			s.log.Error(stopped, "error", err)
		}
		return nil
	})
}

// close releases what build acquired, last acquired first.
func (s *service) close() {
	for _, c := range slices.Backward(s.closers) {
		c()
	}
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

// loadPeerTLS reads the CA certificates that other members' HTTPS
// certificates are verified with; none (nil) for an empty path, which
// leaves the system's roots (TestTLSBetweenMembers).
func loadPeerTLS(caFile string) (*tls.Config, error) {
	if caFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read ABACUS_TLS_CA_FILE: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ABACUS_TLS_CA_FILE %s holds no PEM certificate", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}
