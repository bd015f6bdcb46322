package subscribe

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultMaxSubscribers    = 10_000
	DefaultBuffer            = 1024
	DefaultSnapshotLimit     = 10_000
	DefaultHeartbeatInterval = 15 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultRetry             = time.Second
)

// Config tunes a Hub. Zero fields take their defaults in New.
type Config struct {
	// MaxSubscribers bounds the open streams of this instance; one more is
	// answered 503 too_many_subscribers with Retry-After.
	MaxSubscribers int
	// Buffer bounds the keys a stream may have pending (not yet written).
	// Updates of a pending key replace its value, so a key subscription
	// never holds more than one; a prefix subscription whose pending set
	// would grow past Buffer distinct keys is dropped.
	Buffer int
	// SnapshotLimit caps the current values a prefix subscription is sent
	// when it starts.
	SnapshotLimit int
	// HeartbeatInterval is the period of the ": ping" comments that keep
	// idle streams open through proxies.
	HeartbeatInterval time.Duration
	// WriteTimeout bounds one write to a stream; a stream whose write
	// blocks longer is dropped.
	WriteTimeout time.Duration
	// Retry is the reconnection delay sent to clients in the retry field.
	Retry time.Duration
	// Windows makes the hub a windowed store's: it is fed PublishWindows,
	// starts its streams with Source.Windows, and frames windows.
	Windows bool
	// Group, if set, is the hubs this one shares MaxSubscribers and
	// metrics with; the hub then uses neither its own MaxSubscribers nor
	// its Registerer. Nil: the hub is a group of its own.
	Group *Group

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Default is the configuration New completes a zero Config with.
func Default() Config {
	return Config{
		MaxSubscribers:    DefaultMaxSubscribers,
		Buffer:            DefaultBuffer,
		SnapshotLimit:     DefaultSnapshotLimit,
		HeartbeatInterval: DefaultHeartbeatInterval,
		WriteTimeout:      DefaultWriteTimeout,
		Retry:             DefaultRetry,
	}
}

// FieldError names the setting that is wrong and why.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("subscribe: invalid %s=%s: %s", e.Field, e.Value, e.Reason)
}

// Validate returns a *FieldError for the first negative setting. Zero
// means the default and is valid.
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
		text string
	}{
		{"MaxSubscribers", int64(c.MaxSubscribers), fmt.Sprint(c.MaxSubscribers)},
		{"Buffer", int64(c.Buffer), fmt.Sprint(c.Buffer)},
		{"SnapshotLimit", int64(c.SnapshotLimit), fmt.Sprint(c.SnapshotLimit)},
		{"HeartbeatInterval", int64(c.HeartbeatInterval), c.HeartbeatInterval.String()},
		{"WriteTimeout", int64(c.WriteTimeout), c.WriteTimeout.String()},
		{"Retry", int64(c.Retry), c.Retry.String()},
	} {
		if f.v < 0 {
			return &FieldError{Field: f.name, Value: f.text, Reason: "must not be negative (0 means the default)"}
		}
	}
	return nil
}

// withDefaults fills every zero or negative field with its default.
func (c Config) withDefaults() Config {
	d := Default()
	if c.MaxSubscribers <= 0 {
		c.MaxSubscribers = d.MaxSubscribers
	}
	if c.Buffer <= 0 {
		c.Buffer = d.Buffer
	}
	if c.SnapshotLimit <= 0 {
		c.SnapshotLimit = d.SnapshotLimit
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Retry <= 0 {
		c.Retry = d.Retry
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return c
}
