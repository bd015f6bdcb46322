package processor

import "github.com/prometheus/client_golang/prometheus"

// metrics are the processor's Prometheus figures. Labels are bounded: a
// partition, a topic, a reason or a state; never a key.
type metrics struct {
	consumed  prometheus.Counter
	processed prometheus.Counter
	// redelivered counts records the consumer delivered again (they were
	// counted already) and were dropped.
	redelivered prometheus.Counter
	// otherWriter counts tasks whose batch was not stored or committed
	// because another member wrote to their changelog partition meanwhile.
	otherWriter prometheus.Counter
	// commitsDeferred counts offset commits refused because the group was
	// rebalancing; their offsets are committed in the new generation.
	commitsDeferred prometheus.Counter
	produced        *prometheus.CounterVec // topic role: changelog, output, dlq
	// The produced counters resolved once: send runs for every key of
	// every commit, and a label lookup there is a hash per record.
	producedChangelog, producedOutput, producedDLQ prometheus.Counter
	deadLettered                                   *prometheus.CounterVec // reason
	dropped                                        *prometheus.CounterVec // reason
	late                                           *prometheus.CounterVec // store
	lastCommit                                     prometheus.Gauge
	windowsExpired                                 *prometheus.CounterVec // store
	producedWindowChangelog, producedWindowOutput  prometheus.Counter
	partitionMismatch                              prometheus.Counter
	restored                                       *prometheus.CounterVec // partition, source
	restoredBytes                                  *prometheus.CounterVec // partition, source
	restoreRemaining                               *prometheus.GaugeVec   // partition
	lag                                            *prometheus.GaugeVec   // topic, partition
	state                                          *prometheus.GaugeVec   // state
	rebalances                                     prometheus.Counter
	commits                                        prometheus.Counter
	commitSeconds                                  prometheus.Histogram
	aborts                                         prometheus.Counter
	sessionRestarts                                prometheus.Counter
	wipes                                          *prometheus.CounterVec // reason
	e2eSeconds                                     prometheus.Histogram
	kafkaErrors                                    prometheus.Counter
	unconfirmed                                    prometheus.Gauge
	rejoins                                        *prometheus.CounterVec // reason
	standbyLag                                     *prometheus.GaugeVec   // partition
	standbyApplied                                 *prometheus.CounterVec // partition
	processSeconds                                 prometheus.Histogram
	broker                                         brokerMetrics
	producer                                       producerMetrics
	// rebalanceSeconds times a rebalance as this member lives it: from
	// its first callback (a revocation, or the assignment when nothing
	// was revoked) to the end of its assignment callback.
	rebalanceSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_records_consumed_total", Help: "Input records consumed."}),
		processed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_records_processed_total", Help: "Input records counted."}),
		produced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_records_produced_total", Help: "Records produced, by destination (changelog, output, dlq)."}, []string{"destination"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_records_dead_lettered_total", Help: "Input records sent to the dead-letter topic, by reason."}, []string{"reason"}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_last_commit_timestamp_seconds", Help: "When this member last made a batch durable (Unix time; its start before the first): with lag above zero, a stale value means commits stopped."}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_records_late_total", Help: "Input records late for a windowed store (every window of their timestamp closed), not counted there, by store."}, []string{"store"}),
		windowsExpired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_windows_expired_total", Help: "Windows deleted from a windowed store once past its retention, by store."}, []string{"store"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_records_dropped_total", Help: "Input records dropped (on_error=drop), by reason."}, []string{"reason"}),
		partitionMismatch: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_partitioner_mismatch_total", Help: "Input records whose partition disagrees with the configured partitioner (routing of their keys is wrong)."}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_restored_records_total", Help: "Records applied to local task stores by restores since the process started, by partition and source (changelog: changelog records; peer: keys of a peer's snapshot)."}, []string{"partition", "source"}),
		restoredBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_restored_bytes_total", Help: "Bytes applied to local task stores by restores since the process started, by partition and source (changelog records' keys and values; a peer snapshot's bytes)."}, []string{"partition", "source"}),
		restoreRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_restore_remaining_records", Help: "Changelog records left to restore, by partition."}, []string{"partition"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_consumer_lag", Help: "Input records not yet committed: end offset minus committed offset."}, []string{"topic", "partition"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_state", Help: "1 for the current state, 0 for the others."}, []string{"state"}),
		rebalances: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_rebalances_total", Help: "Rebalance callbacks (assignments and revocations)."}),
		commits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_commits_total", Help: "Commits of state and offsets."}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "abacus_commit_duration_seconds", Help: "Time a commit takes.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_transactions_aborted_total", Help: "Transactions aborted (exactly_once_v2); their work is redone."}),
		sessionRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_session_restarts_total", Help: "Processing sessions restarted after an error."}),
		wipes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_store_wipes_total", Help: "Task stores wiped and restored from scratch, by reason."}, []string{"reason"}),
		e2eSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "abacus_end_to_end_latency_seconds", Help: "From an input record's timestamp to its count being durable.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
		kafkaErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_kafka_client_errors_total", Help: "Errors reported by the Kafka clients (most are transient)."}),
		redelivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_records_redelivered_total", Help: "Input records the consumer delivered again after they were counted (librdkafka, around a rebalance), dropped."}),
		otherWriter: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_changelog_other_writer_total", Help: "Task batches not stored or committed because another member wrote to the task's changelog partition meanwhile (a member the group no longer counts on, still writing); each task restores, the other writer's committed records included."}),
		commitsDeferred: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_offset_commits_deferred_total", Help: "Input offset commits the group refused while it was rebalancing (its state was stored); the offsets are committed again in the new generation."}),
		unconfirmed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_group_membership_unconfirmed", Help: "1 while this member, out of reach of the group coordinator, does not answer for its tasks (the group may have given them away)."}),
		standbyLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_standby_lag_records", Help: "Changelog records a standby task of this member has not applied yet, by partition."}, []string{"partition"}),
		standbyApplied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_standby_records_applied_total", Help: "Changelog records standby tasks of this member applied to their stores, by partition."}, []string{"partition"}),
		rejoins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_group_rejoins_total", Help: "Times this member left the consumer group and joined it again to make it rebalance, by reason (orphaned_partitions: input partitions had no owner in a stable group)."}, []string{"reason"}),
	}
	m.processSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "abacus_process_duration_seconds", Help: "Time to count one input record (one record in 64 is timed).",
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)})
	m.broker = newBrokerMetrics(reg)
	m.producer = newProducerMetrics(reg)
	m.rebalanceSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "abacus_rebalance_duration_seconds", Help: "Time a rebalance held this member: from its revocation callback (or its assignment callback when nothing was revoked) to the end of its assignment callback, commits before the revocation included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)})
	reg.MustRegister(m.rebalanceSeconds)
	m.producedChangelog = m.produced.WithLabelValues("changelog")
	m.producedOutput = m.produced.WithLabelValues("output")
	m.producedWindowChangelog = m.produced.WithLabelValues("window_changelog")
	m.producedWindowOutput = m.produced.WithLabelValues("window_output")
	m.producedDLQ = m.produced.WithLabelValues("dlq")
	reg.MustRegister(m.processSeconds)
	reg.MustRegister(m.consumed, m.processed, m.produced, m.deadLettered, m.dropped, m.late, m.windowsExpired, m.lastCommit, m.partitionMismatch,
		m.restored, m.restoredBytes, m.restoreRemaining, m.lag, m.state, m.rebalances, m.commits, m.commitSeconds,
		m.aborts, m.sessionRestarts, m.wipes, m.e2eSeconds, m.kafkaErrors, m.unconfirmed, m.rejoins, m.standbyLag, m.standbyApplied, m.redelivered, m.otherWriter, m.commitsDeferred)
	return m
}
