package processor

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A client's figures start from zero when a new client replaces it; the
// counter keeps growing by what each client adds.
func TestClientTotalsCountAcrossNewClients(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "c_total", Help: "h"})
	totals := newClientTotals()
	for _, step := range []struct {
		client string
		value  int64
		want   float64
	}{
		{"rdkafka#producer-1", 0, 0},
		{"rdkafka#producer-1", 3, 3},
		{"rdkafka#producer-1", 3, 3},
		{"rdkafka#producer-1", 7, 7},
		{"rdkafka#producer-2", 5, 12}, // a new client: all of its 5 are new
		{"rdkafka#producer-2", 6, 13},
	} {
		totals.add(step.client, "retries", step.value, c)
		if got := testutil.ToFloat64(c); got != step.want {
			t.Fatalf("after %s at %d: counter %v, want %v", step.client, step.value, got, step.want)
		}
	}
}
