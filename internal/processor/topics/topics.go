// Package topics creates the topics a counting application needs when
// they are missing (input, output, dead letters, events, the compacted
// changelog, and each windowed store's changelog and output) and checks
// those that exist: a changelog must have as many partitions as the
// input.
package topics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/kafkaconf"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ChangelogSegmentBytes keeps changelog segments small so compaction, which
// only cleans closed segments, leaves restores less to read.
const ChangelogSegmentBytes = 4 << 20

// WindowChangelogExtraRetention is how much longer than its store a
// windowed store's changelog keeps records.
const WindowChangelogExtraRetention = 24 * time.Hour

// Ensure waits for the broker, creates the topics that are missing and
// returns the input topic's partition count. It retries with backoff until
// the startup timeout; a changelog whose partition count differs from the
// input's is an error no retry mends.
func Ensure(ctx context.Context, cfg config.Config, log *slog.Logger) (int32, error) {
	admin, err := kafkaconf.NewAdmin(kafkaconf.Admin(cfg), log, kafkaconf.RoleAdmin)
	if err != nil {
		return 0, fmt.Errorf("create admin client: %w", err)
	}
	defer admin.Close()

	ctx, cancel := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancel()
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		n, err := ensureOnce(ctx, admin.AdminClient, cfg, log, false)
		if err == nil {
			return n, nil
		}
		var p *permanentError
		if errors.As(err, &p) {
			return 0, err
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("broker %s or topic %s not available within startup timeout %s (ABACUS_STARTUP_TIMEOUT): %w",
				cfg.Brokers(), cfg.InputTopic, cfg.StartupTimeout, err)
		}
		log.Warn("waiting for the broker and the topics", "brokers", cfg.Brokers(), "attempt", attempt, "retry_in", backoff, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

func ensureOnce(ctx context.Context, admin *kafka.AdminClient, cfg config.Config, log *slog.Logger, created bool) (int32, error) {
	md, err := admin.GetMetadata(nil, true, 5000)
	if err != nil {
		return 0, fmt.Errorf("read cluster metadata: %w", err)
	}
	rf := min(3, len(md.Brokers))
	if cfg.ReplicationFactor > 0 {
		rf = cfg.ReplicationFactor
	}
	partitions := func(topic string) (int, bool) {
		t, ok := md.Topics[topic]
		if !ok || t.Error.Code() == kafka.ErrUnknownTopicOrPart || t.Error.Code() == kafka.ErrUnknownTopic {
			return 0, false
		}
		return len(t.Partitions), true
	}
	var specs []kafka.TopicSpecification
	inputN, ok := partitions(cfg.InputTopic)
	if !ok {
		inputN = cfg.Partitions
		specs = append(specs, kafka.TopicSpecification{Topic: cfg.InputTopic, NumPartitions: cfg.Partitions, ReplicationFactor: rf})
	}
	outputs := []string{cfg.OutputTopic, cfg.DLQTopic(), cfg.EventsTopic}
	for _, w := range cfg.Windows {
		outputs = append(outputs, w.WithDefaults().OutputTopic)
	}
	for _, t := range outputs {
		if _, ok := partitions(t); !ok && t != "" {
			specs = append(specs, kafka.TopicSpecification{Topic: t, NumPartitions: cfg.Partitions, ReplicationFactor: rf})
		}
	}
	changelogs := []kafka.TopicSpecification{{
		Topic: cfg.ChangelogTopic(), NumPartitions: inputN, ReplicationFactor: rf,
		Config: map[string]string{"cleanup.policy": "compact", "segment.bytes": strconv.Itoa(ChangelogSegmentBytes)},
	}}
	for _, w := range cfg.Windows {
		// A windowed store's changelog drops what is older than the
		// store keeps, a day later (as Kafka Streams' window store
		// changelogs, windowstore.changelog.additional.retention.ms):
		// its expired windows are never restored for long.
		retention := w.WithDefaults().Retention + WindowChangelogExtraRetention
		changelogs = append(changelogs, kafka.TopicSpecification{
			Topic: cfg.WindowChangelogTopic(w.Store), NumPartitions: inputN, ReplicationFactor: rf,
			Config: map[string]string{"cleanup.policy": "compact,delete", "retention.ms": strconv.FormatInt(retention.Milliseconds(), 10),
				"segment.bytes": strconv.Itoa(ChangelogSegmentBytes)},
		})
	}
	for _, spec := range changelogs {
		if n, ok := partitions(spec.Topic); ok && n != inputN {
			return 0, permanentf("changelog topic %s has %d partitions but input topic %s has %d: they must match (recreate the changelog, or point ABACUS_APPLICATION_ID at a new application)",
				spec.Topic, n, cfg.InputTopic, inputN)
		} else if !ok {
			specs = append(specs, spec)
		}
	}
	if len(specs) > 0 && !cfg.CreateTopics {
		return 0, permanentf("topics missing and ABACUS_CREATE_TOPICS=false: create %s", describeTopics(specs))
	}
	if len(specs) > 0 && created {
		return 0, fmt.Errorf("topic %s not visible in metadata yet", specs[0].Topic)
	}
	if len(specs) > 0 {
		results, err := admin.CreateTopics(ctx, specs, kafka.SetAdminOperationTimeout(10*time.Second))
		if err != nil {
			return 0, fmt.Errorf("create topics: %w", err)
		}
		for _, r := range results {
			switch r.Error.Code() {
			case kafka.ErrNoError:
				log.Info("created topic", "topic", r.Topic)
			case kafka.ErrTopicAlreadyExists:
			default:
				return 0, fmt.Errorf("create topic %s: %w", r.Topic, r.Error)
			}
		}
		// Read back what exists now: another member may have raced us.
		return ensureOnce(ctx, admin, cfg, log, true)
	}
	if inputN <= 0 {
		return 0, fmt.Errorf("input topic %s has no partitions yet", cfg.InputTopic)
	}
	return int32(inputN), nil
}

// describeTopics lists topics to create with their partitions and
// configs, for a user who creates them.
func describeTopics(specs []kafka.TopicSpecification) string {
	parts := make([]string, len(specs))
	for i, sp := range specs {
		desc := fmt.Sprintf("%s (%d partitions", sp.Topic, sp.NumPartitions)
		keys := make([]string, 0, len(sp.Config))
		for k := range sp.Config {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			desc += fmt.Sprintf(", %s=%s", k, sp.Config[k])
		}
		parts[i] = desc + ")"
	}
	return strings.Join(parts, "; ")
}

// permanentError is a failure that retrying does not mend.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanentf(format string, a ...any) error { return &permanentError{fmt.Errorf(format, a...)} }
