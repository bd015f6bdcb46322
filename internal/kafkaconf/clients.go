package kafkaconf

import (
	"context"
	"log/slog"
	"maps"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The attributes of a librdkafka log line, beside the owner's own (its
// component, its task) and its level (Level).
const (
	// KeyLogger is "librdkafka" on every line librdkafka wrote: it marks
	// them among the process's own.
	KeyLogger = "logger"
	// KeyClient is the client's role in abacus (the Role constants).
	KeyClient = "client"
	// KeyName is librdkafka's name of the client instance: its client.id,
	// "#", its type and a number ("counts-app-abacus-0-consumer#consumer-1").
	KeyName = "rdkafka_name"
	// KeyFacility is librdkafka's facility of the line (FAIL, CONFWARN,
	// REQTMOUT, ...).
	KeyFacility = "facility"
	// KeySyslogLevel is librdkafka's own level, a syslog level 0-7.
	KeySyslogLevel = "syslog_level"
)

// LoggerLibrdkafka is the KeyLogger value of librdkafka's lines.
const LoggerLibrdkafka = "librdkafka"

// The roles of the clients abacus makes, the KeyClient value of their
// lines.
const (
	RoleConsumer        = "consumer"         // the group consumer of the input topic
	RoleProducer        = "producer"         // changelog, output and DLQ records (transactional under exactly_once_v2)
	RoleRestore         = "restore"          // reads a task's changelog back
	RoleStandby         = "standby"          // tails the changelogs of the standby tasks
	RoleInspector       = "inspector"        // offset and watermark queries
	RoleChangelogReader = "changelog-reader" // tells another producer's markers from its records
	RoleAdmin           = "admin"            // topics and the group's description
	RoleEvents          = "events"           // state-change events
)

// Level is the slog level of a librdkafka line of syslog level syslog:
// 0-3 (emergency, alert, critical, error) are errors, 4 (warning) a
// warning, 5-6 (notice, info) info, 7 (debug) debug. librdkafka logs
// nothing below its log_level (4 unless ABACUS_KAFKA_LOG_LEVEL says
// otherwise), and a line at a slog level under ABACUS_LOG_LEVEL is dropped
// here: its debug lines (ABACUS_KAFKA_DEBUG) need ABACUS_LOG_LEVEL=debug.
func Level(syslog int) slog.Level {
	switch {
	case syslog <= 3:
		return slog.LevelError
	case syslog == 4:
		return slog.LevelWarn
	case syslog <= 6:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// NewConsumer creates a consumer from conf whose librdkafka log lines go
// to log, marked with role (drainLogs).
func NewConsumer(conf *kafka.ConfigMap, log *slog.Logger, role string) (*kafka.Consumer, error) {
	c, err := kafka.NewConsumer(withLogs(conf))
	if err != nil {
		return nil, err
	}
	go drainLogs(c.Logs(), log, role)
	return c, nil
}

// NewProducer creates a producer from conf whose librdkafka log lines go
// to log, marked with role (drainLogs).
func NewProducer(conf *kafka.ConfigMap, log *slog.Logger, role string) (*kafka.Producer, error) {
	p, err := kafka.NewProducer(withLogs(conf))
	if err != nil {
		return nil, err
	}
	go drainLogs(p.Logs(), log, role)
	return p, nil
}

// AdminClient is an admin client whose librdkafka log lines go to slog.
// confluent-kafka-go's own admin client takes no log channel (its lines
// would go to stderr), so this one is derived from a producer that has
// one; Close closes both.
type AdminClient struct {
	*kafka.AdminClient
	producer *kafka.Producer
}

// NewAdmin creates an admin client from conf whose librdkafka log lines
// go to log, marked with role.
func NewAdmin(conf *kafka.ConfigMap, log *slog.Logger, role string) (*AdminClient, error) {
	m := maps.Clone(*conf)
	// The producer sends nothing: its channels stay small, and the client
	// errors on its events channel (also in its log lines) are dropped
	// until Close closes it, as an admin client of its own drops them.
	m["go.delivery.reports"] = false
	m["go.events.channel.size"] = 100
	m["go.produce.channel.size"] = 1
	p, err := NewProducer(&m, log, role)
	if err != nil {
		return nil, err
	}
	a, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		p.Close()
		return nil, err
	}
	go func() {
		for range p.Events() {
		}
	}()
	return &AdminClient{AdminClient: a, producer: p}, nil
}

// Close closes the admin client and its producer.
func (a *AdminClient) Close() {
	a.AdminClient.Close()
	a.producer.Close()
}

// withLogs is conf with librdkafka's lines on the client's log channel
// instead of stderr. The channel is the client's own: its Close closes
// it, after the last line, which ends drainLogs.
func withLogs(conf *kafka.ConfigMap) *kafka.ConfigMap {
	m := maps.Clone(*conf)
	m["go.logs.channel.enable"] = true
	delete(m, "go.logs.channel")
	return &m
}

// drainLogs writes each line of a client's log channel to log until the
// channel closes: its owner is the client, whose Close closes it
// (confluent-kafka-go closes a log channel it made once its log poller
// has stopped), so it never outlives the client.
func drainLogs(logs <-chan kafka.LogEvent, log *slog.Logger, role string) {
	h := log.Handler()
	ctx := context.Background()
	for ev := range logs {
		level := Level(ev.Level)
		if !h.Enabled(ctx, level) {
			continue
		}
		r := slog.NewRecord(ev.Timestamp, level, strings.TrimSpace(ev.Message), 0)
		r.AddAttrs(
			slog.String(KeyLogger, LoggerLibrdkafka),
			slog.String(KeyClient, role),
			slog.String(KeyName, ev.Name),
			slog.String(KeyFacility, ev.Tag),
			slog.Int(KeySyslogLevel, ev.Level),
		)
		_ = h.Handle(ctx, r)
	}
}
