package window

import "time"

// Kind is the shape of a windowed store's windows.
type Kind string

// The kinds of windows, as Kafka Streams names them.
const (
	Tumbling Kind = "tumbling" // fixed size, no overlap: advance = size
	Hopping  Kind = "hopping"  // fixed size, a new window every advance
	Session  Kind = "session"  // per key, closed by a gap of inactivity
)

// kinds lists the valid kinds in the order error messages name them.
var kinds = []Kind{Tumbling, Hopping, Session}

// Emit says when a windowed store publishes a window's count.
type Emit string

// The emit modes.
const (
	// EmitUpdates publishes every new count of a window, as Kafka Streams
	// does by default.
	EmitUpdates Emit = "updates"
	// EmitFinal publishes a window's count once, when the window closes
	// (Kafka Streams' EmitStrategy.onWindowClose).
	EmitFinal Emit = "final"
)

var emits = []Emit{EmitUpdates, EmitFinal}

// DefaultMinRetention is the shortest default retention: windows stay
// queryable for at least an hour after they end unless a retention is set.
const DefaultMinRetention = time.Hour

// Spec describes one windowed store: the YAML windows: list holds one per
// store, ABACUS_WINDOWS their compact form (ParseCompact).
//
// The methods that assign records to windows use the spec as it is: give
// them a spec that went through WithDefaults and Validate.
type Spec struct {
	// Store names the store in HTTP paths and in topic names.
	Store string `yaml:"store"`
	Kind  Kind   `yaml:"type"`
	// Size is the length of a time window, or the inactivity gap that
	// ends a session.
	Size time.Duration `yaml:"size"`
	// Advance is the distance between the starts of hopping windows.
	Advance time.Duration `yaml:"advance"`
	// Grace is how long past its end a window still takes records that
	// arrive out of order (for a session, past its end and its gap).
	Grace time.Duration `yaml:"grace"`
	// Retention is how long past its end a window stays in the store and
	// answers queries.
	Retention time.Duration `yaml:"retention"`
	Emit      Emit          `yaml:"emit"`
	// OutputTopic receives the store's counts.
	OutputTopic string `yaml:"output_topic"`
}

// WithDefaults returns s with its unset fields filled: emit updates,
// output topic "<store>-topic", retention max(size + grace, 1h) (for a
// session the size is its gap, so max(gap + grace, 1h)). Grace defaults to
// 0, which is its zero value already. Only zero fields change, so a
// negative retention stays for Validate to reject.
func (s Spec) WithDefaults() Spec {
	if s.Emit == "" {
		s.Emit = EmitUpdates
	}
	if s.OutputTopic == "" {
		s.OutputTopic = s.Store + "-topic"
	}
	if s.Retention == 0 {
		s.Retention = max(addDuration(s.Size, s.Grace), DefaultMinRetention)
	}
	return s
}

// addDuration is a + b, held at the largest duration instead of wrapping.
func addDuration(a, b time.Duration) time.Duration {
	return time.Duration(addSat(int64(a), int64(b)))
}

// addSat is a + b, held at math.MaxInt64 where a positive b would carry
// it past: a window that would end past the largest timestamp ends at it,
// as in Kafka Streams.
func addSat(a, b int64) int64 {
	const maxInt64 = 1<<63 - 1
	if b > 0 && a > maxInt64-b {
		return maxInt64
	}
	return a + b
}
