package processor

import (
	"encoding/json"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// librdkafkaStats is the part of librdkafka's statistics JSON abacus uses:
// broker figures for the metrics, the group's state for the membership
// watch, the producer's queue.
type librdkafkaStats struct {
	// Name is the client's name (rdkafka#producer-3), unique in the
	// process: its figures count from zero when a new client starts.
	Name string `json:"name"`
	// MsgCnt is the number of records in the producer's queues.
	MsgCnt  int64 `json:"msg_cnt"`
	Brokers map[string]struct {
		Name      string `json:"name"`
		NodeID    int    `json:"nodeid"`
		TxErrs    int64  `json:"txerrs"`
		RxErrs    int64  `json:"rxerrs"`
		Timeouts  int64  `json:"req_timeouts"`
		TxRetries int64  `json:"txretries"`
		RTT       struct {
			Avg int64 `json:"avg"` // microseconds
			P99 int64 `json:"p99"`
		} `json:"rtt"`
	} `json:"brokers"`
	Cgrp groupStats `json:"cgrp"`
}

type brokerMetrics struct {
	rtt    *prometheus.GaugeVec   // broker, stat (avg, p99: not a summary, so not "quantile")
	errors *prometheus.CounterVec // broker, kind
	// consumerTotals turns the input consumers' cumulative error figures
	// into counter increments.
	consumerTotals *clientTotals
}

func newBrokerMetrics(reg prometheus.Registerer) brokerMetrics {
	m := brokerMetrics{
		rtt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_kafka_broker_rtt_seconds", Help: "Round-trip time to each broker seen by the input consumer over the last statistics window (librdkafka)."},
			[]string{"broker", "stat"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_kafka_broker_errors_total", Help: "Errors on the input consumer's connections to each broker, by kind (tx, rx, timeout; librdkafka)."},
			[]string{"broker", "kind"}),
		consumerTotals: newClientTotals(),
	}
	reg.MustRegister(m.rtt, m.errors)
	return m
}

// producerMetrics are the figures of the producers of changelog, output
// and dead-letter records, from their statistics reports.
type producerMetrics struct {
	queue   prometheus.Gauge
	retries prometheus.Counter
	// errors counts records whose delivery failed.
	errors prometheus.Counter
	totals *clientTotals
}

func newProducerMetrics(reg prometheus.Registerer) producerMetrics {
	m := producerMetrics{
		queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_producer_queue_messages", Help: "Records in the producer's queue, not yet delivered (librdkafka; statistics every 10 s)."}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_producer_retries_total", Help: "Produce requests the producer sent again to a broker (librdkafka)."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_producer_errors_total", Help: "Records the producer failed to deliver; their batch is not committed and is counted again."}),
		totals: newClientTotals(),
	}
	reg.MustRegister(m.queue, m.retries, m.errors)
	return m
}

// clientTotals turns the cumulative figures of a statistics report, which
// start from zero with each new client (a new consumer or producer after
// an error), into increments of a counter that only grows.
type clientTotals struct {
	mu     sync.Mutex
	client string
	last   map[string]int64
}

func newClientTotals() *clientTotals { return &clientTotals{last: map[string]int64{}} }

// add adds to c what the figure named name of client grew by since its
// last report.
func (t *clientTotals) add(client, name string, value int64, c prometheus.Counter) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if client != t.client {
		t.client, t.last = client, map[string]int64{}
	}
	if d := value - t.last[name]; d > 0 {
		c.Add(float64(d))
	}
	t.last[name] = max(t.last[name], value)
}

// parseStats reads the parts of a librdkafka statistics report abacus
// uses; a report it cannot read counts as empty.
func parseStats(raw string) librdkafkaStats {
	var st librdkafkaStats
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return librdkafkaStats{}
	}
	return st
}

// observeBrokers exports an input consumer's statistics report's broker
// figures. Only real brokers are kept (nodeid >= 0), so the label values
// stay bounded.
func (m *metrics) observeBrokers(st librdkafkaStats) {
	for _, b := range st.Brokers {
		if b.NodeID < 0 {
			continue
		}
		m.broker.rtt.WithLabelValues(b.Name, "avg").Set(float64(b.RTT.Avg) / 1e6)
		m.broker.rtt.WithLabelValues(b.Name, "p99").Set(float64(b.RTT.P99) / 1e6)
		for kind, v := range map[string]int64{"tx": b.TxErrs, "rx": b.RxErrs, "timeout": b.Timeouts} {
			m.broker.consumerTotals.add(st.Name, b.Name+"/"+kind, v, m.broker.errors.WithLabelValues(b.Name, kind))
		}
	}
}

// observeProducer exports a producer's statistics report.
func (m *metrics) observeProducer(st librdkafkaStats) {
	m.producer.queue.Set(float64(st.MsgCnt))
	var retries int64
	for _, b := range st.Brokers {
		retries += b.TxRetries
	}
	m.producer.totals.add(st.Name, "retries", retries, m.producer.retries)
}
