// Package kafkaconf builds the librdkafka configuration of every client
// abacus makes from its settings: our defaults, then the user's
// pass-through properties, then the few settings the state protocol depends
// on, which nothing overrides. It also creates every client (clients.go),
// so that none writes librdkafka's log lines to stderr: they go through the
// client's log channel into slog, marked with the client's role
// (TestNoClientBypassesTheLogChannel).
package kafkaconf

import (
	"github.com/abacus-streams/abacus/internal/config"
	"github.com/abacus-streams/abacus/internal/partitioner"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// client starts every client's configuration: the bootstrap servers,
// a client id naming the member, then the user's pass-through properties,
// which win over our defaults but not over the settings the state protocol
// depends on (those are set after, by the callers).
func client(cfg config.Config, role string, defaults kafka.ConfigMap) *kafka.ConfigMap {
	m := kafka.ConfigMap{
		"bootstrap.servers": cfg.Brokers(),
		"client.id":         cfg.ApplicationID + "-" + cfg.InstanceID + "-" + role,
		// librdkafka's lines go to slog (clients.go); keep warnings only.
		"log_level":           4,
		"enable.metrics.push": false,
	}
	for k, v := range defaults {
		m[k] = v
	}
	for k, v := range cfg.Kafka {
		m[k] = v
	}
	// Topics are created only by CreateTopics, with ABACUS_PARTITIONS
	// partitions. A metadata request that names a missing topic would
	// otherwise let a broker with auto.create.topics.enable create it
	// with the broker's own partition count (librdkafka's producer and
	// admin client ask for that by default), and a first start of several
	// members at once would race that against CreateTopics
	// (e2e TestParallelFirstStartCreatesEveryTopicWithItsPartitions).
	m["allow.auto.create.topics"] = false
	return &m
}

// Consumer is the group consumer of the input topic.
func Consumer(cfg config.Config) *kafka.ConfigMap {
	m := client(cfg, "consumer", kafka.ConfigMap{
		"auto.offset.reset": "earliest",
		// librdkafka backs off fetch.queue.backoff.ms (1 s by default)
		// whenever queued.min.messages are queued, which starves a fast
		// processor; 10 ms keeps the queue fed.
		"fetch.queue.backoff.ms":        10,
		"partition.assignment.strategy": "cooperative-sticky",
		// librdkafka prefetches up to 64 MiB per consumer by default; 16 MiB
		// keeps the processor fed and the memory bounded.
		"queued.max.messages.kbytes": 16384,
		"queued.min.messages":        20000,
		// Broker round-trip times and errors for the metrics, and the
		// group coordinator's reachability for the membership watch
		// (processor/membership.go), which must notice within a second.
		"statistics.interval.ms": 1000,
	})
	isolation := "read_uncommitted"
	if cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
		isolation = "read_committed"
	}
	for k, v := range map[string]kafka.ConfigValue{
		"group.id":                 cfg.ApplicationID,
		"group.instance.id":        cfg.InstanceID,
		"enable.auto.commit":       false,
		"enable.auto.offset.store": false,
		"isolation.level":          isolation,
		"enable.partition.eof":     false,
	} {
		(*m)[k] = v
	}
	return m
}

// Producer is the producer of changelog, output and dead-letter records.
func Producer(cfg config.Config) *kafka.ConfigMap {
	m := client(cfg, "producer", kafka.ConfigMap{
		"linger.ms":          5,
		"batch.num.messages": 10000,
		// A commit's sends wait here until the broker has them: a bound in
		// records is a bound in memory (librdkafka keeps ~250 bytes a
		// record beyond its key and value), and past it the committer
		// waits for deliveries instead of growing the queue.
		"queue.buffering.max.messages": 100000,
		"queue.buffering.max.kbytes":   262144,
		// confluent-kafka-go sizes its Go channels for a million events
		// by default; the delivery reports on the events channel are read
		// as they come (the processor's delivery tracker), so these stay small.
		"go.produce.channel.size": 1000,
		"go.events.channel.size":  1000,
		// The queue and the retries for the metrics (processor/stats.go).
		// A producer's report lists every partition of every topic it
		// writes; made and parsed each second, it cost make bench's
		// at_least_once ratio about 0.05 (BENCHMARKS.md), and a scrape
		// every 30 s needs no more than one every 10 s.
		"statistics.interval.ms": 10000,
	})
	(*m)["partitioner"] = partitioner.LibrdkafkaName(cfg.Partitioner)
	(*m)["enable.idempotence"] = true
	(*m)["acks"] = "all"
	(*m)["go.delivery.reports"] = true
	(*m)["go.delivery.report.fields"] = "none"
	delete(*m, "transactional.id")
	if cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
		(*m)["transactional.id"] = cfg.TransactionalID()
		if _, set := cfg.Kafka["transaction.timeout.ms"]; !set {
			// Kafka Streams' choice: a crashed member's open transaction
			// blocks read_committed readers of its partitions this long.
			(*m)["transaction.timeout.ms"] = 10000
		}
	}
	return m
}

// Restore is the consumer that reads a changelog partition back.
func Restore(cfg config.Config) *kafka.ConfigMap {
	m := client(cfg, "restore", kafka.ConfigMap{
		"fetch.queue.backoff.ms": 10,
		// A fetch at the end of the changelog would wait this long for
		// data that is not coming (500 ms by default) before the restore
		// learns it is done: a restore reads a finished log.
		"fetch.wait.max.ms": 10,
		// One restore consumer per restoring task: keep each one's prefetch small.
		"queued.max.messages.kbytes": 8192,
		"queued.min.messages":        20000,
	})
	isolation := "read_uncommitted"
	if cfg.ProcessingGuarantee == config.ExactlyOnceV2 {
		isolation = "read_committed"
	}
	for k, v := range map[string]kafka.ConfigValue{
		// Assign-only; the group id is never joined or committed to.
		"group.id":             cfg.ApplicationID + "-restore",
		"enable.auto.commit":   false,
		"enable.partition.eof": true,
		"auto.offset.reset":    "earliest",
		"isolation.level":      isolation,
	} {
		(*m)[k] = v
	}
	delete(*m, "group.instance.id")
	return m
}

// Admin is the admin client that checks topics and describes the group.
func Admin(cfg config.Config) *kafka.ConfigMap {
	return client(cfg, "admin", nil)
}

// Standby is the consumer that tails the changelog partitions of the
// member's standby tasks: a restore's consumer that stays at the end of
// the log, so its fetches wait there for new records (250 ms, where a
// restore's return at once), and one consumer serves every standby task.
func Standby(cfg config.Config) *kafka.ConfigMap {
	m := Restore(cfg)
	(*m)["client.id"] = cfg.ApplicationID + "-" + cfg.InstanceID + "-standby"
	for k, v := range map[string]kafka.ConfigValue{"fetch.wait.max.ms": 250, "fetch.queue.backoff.ms": 100} {
		if _, set := cfg.Kafka[k]; !set {
			(*m)[k] = v
		}
	}
	return m
}
