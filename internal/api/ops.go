package api

import (
	"context"
	"math"
	"net/http"
	"sort"
	"time"

	"github.com/abacus-streams/abacus/internal/abacus"
	"github.com/labstack/echo/v4"
	dto "github.com/prometheus/client_model/go"
)

// Operations answers the operations API; its methods may run concurrently.
type Operations interface {
	// Config is the effective configuration with every secret masked.
	Config() map[string]any
	// Topology describes what the application does with the count store;
	// the server adds the windowed stores of Config.WindowStores.
	Topology() Topology
	// Offsets reports every input partition and this instance's stores.
	Offsets(ctx context.Context) ([]abacus.PartitionOffsets, error)
}

// Info names the application and this instance.
type Info struct {
	ApplicationID string `json:"application_id"`
	Instance      string `json:"instance"`
	Version       string `json:"version"`
	State         string `json:"state"`
}

// Topology is the shape of the application, as Kafka Streams describes one.
type Topology struct {
	Source     TopologyNode   `json:"source"`
	Processors []TopologyNode `json:"processors"`
	Stores     []TopologyNode `json:"stores"`
	Sinks      []TopologyNode `json:"sinks"`
}

// TopologyNode is one node of the topology.
type TopologyNode struct {
	Name  string `json:"name"`
	Topic string `json:"topic,omitempty"`
	// Changelog is a store's changelog topic.
	Changelog string `json:"changelog,omitempty"`
	// What the node does, in a line.
	Description string `json:"description"`
}

func (s *Server) streams(c echo.Context) error {
	info := Info{ApplicationID: s.cfg.ApplicationID, Instance: s.cfg.Instance, Version: s.cfg.Version}
	if s.cfg.Health != nil {
		info.State = s.cfg.Health.State()
	}
	return c.JSON(http.StatusOK, info)
}

func (s *Server) streamsConfig(c echo.Context) error {
	return c.JSON(http.StatusOK, s.cfg.Operations.Config())
}

func (s *Server) streamsTopology(c echo.Context) error {
	return c.JSON(http.StatusOK, s.windowTopology(s.cfg.Operations.Topology()))
}

// offsetsBody is the body of /api/v1/streams/offsets.
type offsetsBody struct {
	Partitions []abacus.PartitionOffsets `json:"partitions"`
}

func (s *Server) streamsOffsets(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 5*time.Second)
	defer cancel()
	offsets, err := s.cfg.Operations.Offsets(ctx)
	if err != nil {
		return unavailable("offsets_unavailable", "offsets cannot be read right now: %v; retry shortly", err)
	}
	return c.JSON(http.StatusOK, offsetsBody{Partitions: offsets})
}

// metricFamily is one metric of /api/v1/streams/metrics.
type metricFamily struct {
	Name    string         `json:"name"`
	Help    string         `json:"help"`
	Type    string         `json:"type"`
	Samples []metricSample `json:"samples"`
}

type metricSample struct {
	Labels map[string]string `json:"labels"`
	// Value of a counter or gauge; Count and Sum of a histogram or summary.
	Value *float64 `json:"value,omitempty"`
	Count *uint64  `json:"count,omitempty"`
	Sum   *float64 `json:"sum,omitempty"`
	// Buckets of a histogram: upper bound (as text, "+Inf" last) to cumulative count.
	Buckets map[string]uint64 `json:"buckets,omitempty"`
}

// streamsMetrics serves the same figures as /metrics, as JSON.
func (s *Server) streamsMetrics(c echo.Context) error {
	families, err := s.cfg.Gatherer.Gather()
	if err != nil {
		return err
	}
	out := make([]metricFamily, 0, len(families))
	for _, f := range families {
		mf := metricFamily{Name: f.GetName(), Help: f.GetHelp(), Type: lower(f.GetType().String()), Samples: []metricSample{}}
		for _, m := range f.GetMetric() {
			smp := metricSample{Labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				smp.Labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				smp.Value = finite(m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				smp.Value = finite(m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				smp.Value = finite(m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				smp.Count, smp.Sum = ptr(h.GetSampleCount()), finite(h.GetSampleSum())
				smp.Buckets = map[string]uint64{"+Inf": h.GetSampleCount()}
				for _, b := range h.GetBucket() {
					smp.Buckets[formatFloat(b.GetUpperBound())] = b.GetCumulativeCount()
				}
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				smp.Count, smp.Sum = ptr(sm.GetSampleCount()), finite(sm.GetSampleSum())
			}
			mf.Samples = append(mf.Samples, smp)
		}
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return c.JSON(http.StatusOK, map[string]any{"metrics": out})
}

func ptr[T any](v T) *T { return &v }

// finite leaves out values JSON cannot carry (NaN, ±Inf).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}
