// Package broker runs the embedded Kafka-protocol broker (franz-go's kfake)
// that makes `go run ./cmd/server` a working system with no Kafka around,
// and that `abacus broker` runs alone for local multi-instance runs and
// tests. It speaks the real wire protocol, so librdkafka talks to it over
// TCP exactly as to Kafka.
package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// neverMs is a compaction interval of ten years, in milliseconds.
const neverMs = "315360000000"

// Config describes the embedded broker.
type Config struct {
	// Addr is the host:port to listen on.
	Addr string
	// Partitions is the partition count of auto-created topics.
	Partitions int
	// DataDir keeps the broker's log across restarts; empty keeps it in memory.
	DataDir string
	// Advertise, if set, is the address given to clients in metadata instead
	// of the listening one (a proxy in front of the broker, in tests).
	Advertise string
	// Logger gets the broker's lines: kfake's own (logger=kfake) and
	// those of the workarounds below; nil discards them.
	Logger *slog.Logger
}

// Broker is a running embedded broker.
type Broker struct {
	cluster  *kfake.Cluster
	sessions *sessionExpiry
	joins    *joinHold
	addr     string
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Broker, error) {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 4
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen for embedded broker on %s: %w", cfg.Addr, err)
	}
	var listener net.Listener = ln
	if cfg.Advertise != "" {
		adv, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("advertised address %s: %w", cfg.Advertise, err)
		}
		listener = advertised{ln, adv}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "broker")
	opts := []kfake.Opt{
		kfake.WithLogger(kfakeLogger{log}),
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ListenFn(func(string, string) (net.Listener, error) { return listener, nil }),
		kfake.ClusterID("abacus-embedded"),
		// Never compact (kfake compacts on this timer only): kfake's
		// compaction loses committed records of transactional producers
		// (TestKfakeCompactionLosesTransactionalRecords shows how), and
		// under exactly-once a restore reads the changelog read_committed.
		// Changelogs grow with every count instead; a restore from an
		// empty disk reads all of it.
		kfake.BrokerConfigs(map[string]string{"log.cleaner.backoff.ms": neverMs}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	// Workarounds of kfake's group coordinator where it differs from
	// Kafka's (sessions.go, staticrejoin.go, joinhold.go; docs/reliability.md,
	// "The embedded broker (kfake)"). The session expiry first: its
	// JoinGroup observer must run before the join holds may hold the
	// request.
	sessions, err := expireSessions(c, ln.Addr().String(), log, time.Second)
	if err != nil {
		c.Close()
		return nil, err
	}
	// Before the holds: it rewrites only JoinGroups of Stable groups,
	// which the holds never keep.
	rejoinStatically(c, log)
	joins := holdJoins(c, log, allJoinRules)
	return &Broker{cluster: c, sessions: sessions, joins: joins, addr: ln.Addr().String()}, nil
}

// Addr is the address clients bootstrap from.
func (b *Broker) Addr() string { return b.addr }

// Cluster exposes the fake cluster for tests (fault injection).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// JoinsHeld is how many JoinGroups the broker held back so that kfake's
// group coordinator does not miscount them (joinhold.go).
func (b *Broker) JoinsHeld() int64 { return b.joins.heldJoins() }

// MembersExpired is how many group members the broker made to leave
// because kfake never timed their sessions (sessions.go).
func (b *Broker) MembersExpired() int64 { return b.sessions.expiredMembers() }

// Close stops the broker and, with a data dir, flushes its log to disk.
func (b *Broker) Close() {
	b.sessions.stop()
	b.joins.stop()
	b.cluster.Close()
}

// advertised reports another address than the one it listens on; kfake
// advertises its listener's address to clients.
type advertised struct {
	net.Listener
	addr net.Addr
}

func (a advertised) Addr() net.Addr { return a.addr }

// kfakeLogger writes kfake's own lines to the broker's logger, marked
// logger=kfake, at the level kfake gives them.
type kfakeLogger struct{ log *slog.Logger }

func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	case kfake.LogLevelInfo:
		l = slog.LevelInfo
	case kfake.LogLevelDebug:
		l = slog.LevelDebug
	default:
		return
	}
	ctx := context.Background()
	if !k.log.Enabled(ctx, l) {
		return
	}
	k.log.Log(ctx, l, fmt.Sprintf(format, args...), "logger", "kfake")
}
