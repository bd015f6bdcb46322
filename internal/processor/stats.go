package processor

import (
	"encoding/json"

	"github.com/prometheus/client_golang/prometheus"
)

// librdkafkaStats is the part of librdkafka's statistics JSON abacus uses:
// broker figures for the metrics, the group's state for the membership
// watch.
type librdkafkaStats struct {
	Brokers map[string]struct {
		Name     string `json:"name"`
		NodeID   int    `json:"nodeid"`
		TxErrs   int64  `json:"txerrs"`
		RxErrs   int64  `json:"rxerrs"`
		Timeouts int64  `json:"req_timeouts"`
		RTT      struct {
			Avg int64 `json:"avg"` // microseconds
			P99 int64 `json:"p99"`
		} `json:"rtt"`
	} `json:"brokers"`
	Cgrp groupStats `json:"cgrp"`
}

type brokerMetrics struct {
	rtt    *prometheus.GaugeVec // broker, stat (avg, p99: not a summary, so not "quantile")
	errors *prometheus.GaugeVec // broker, kind
}

func newBrokerMetrics(reg prometheus.Registerer) brokerMetrics {
	m := brokerMetrics{
		rtt: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_kafka_broker_rtt_seconds", Help: "Round-trip time to each broker seen by the input consumer over the last statistics window (librdkafka)."},
			[]string{"broker", "stat"}),
		errors: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "abacus_kafka_broker_errors", Help: "Errors on the connection to each broker since the consumer started, by kind (tx, rx, timeout; librdkafka)."},
			[]string{"broker", "kind"}),
	}
	reg.MustRegister(m.rtt, m.errors)
	return m
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

// observeBrokers exports a statistics report's broker figures. Only real
// brokers are kept (nodeid >= 0), so the label values stay bounded.
func (m *metrics) observeBrokers(st librdkafkaStats) {
	for _, b := range st.Brokers {
		if b.NodeID < 0 {
			continue
		}
		m.broker.rtt.WithLabelValues(b.Name, "avg").Set(float64(b.RTT.Avg) / 1e6)
		m.broker.rtt.WithLabelValues(b.Name, "p99").Set(float64(b.RTT.P99) / 1e6)
		m.broker.errors.WithLabelValues(b.Name, "tx").Set(float64(b.TxErrs))
		m.broker.errors.WithLabelValues(b.Name, "rx").Set(float64(b.RxErrs))
		m.broker.errors.WithLabelValues(b.Name, "timeout").Set(float64(b.Timeouts))
	}
}
