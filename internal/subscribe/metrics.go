package subscribe

import "github.com/prometheus/client_golang/prometheus"

// Reasons a stream is dropped, the values of the reason label.
const (
	// DropOverflow: a prefix stream's pending set outgrew Config.Buffer.
	DropOverflow = "overflow"
	// DropWriteTimeout: one write blocked longer than Config.WriteTimeout.
	DropWriteTimeout = "write_timeout"
)

// metrics are the hub's Prometheus figures; labels are bounded (a reason),
// never a key.
type metrics struct {
	subscribers prometheus.Gauge
	eventsSent  prometheus.Counter
	coalesced   prometheus.Counter
	dropped     *prometheus.CounterVec // reason
	rejected    prometheus.Counter
	moved       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "abacus_sse_subscribers", Help: "Open SSE subscription streams."}),
		eventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_sse_events_sent_total", Help: "SSE events written to subscribers (count and moved; not heartbeats)."}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_sse_updates_coalesced_total", Help: "Updates replaced by a newer value of the same key before they were sent (in the hub's queue or in a subscriber's pending set)."}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "abacus_sse_subscribers_dropped_total", Help: "SSE streams closed because the subscriber was too slow, by reason."}, []string{"reason"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_sse_subscribers_rejected_total", Help: "SSE subscriptions refused because MaxSubscribers streams were open."}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "abacus_sse_subscribers_moved_total", Help: "SSE streams ended with a moved event because a partition left this instance."}),
	}
	m.dropped.WithLabelValues(DropOverflow)
	m.dropped.WithLabelValues(DropWriteTimeout)
	reg.MustRegister(m.subscribers, m.eventsSent, m.coalesced, m.dropped, m.rejected, m.moved)
	return m
}
