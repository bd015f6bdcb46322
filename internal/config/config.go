package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/abacus-streams/abacus/internal/window"
)

// Processing guarantees, as Kafka Streams names them.
const (
	AtLeastOnce   = "at_least_once"
	ExactlyOnceV2 = "exactly_once_v2"
)

// Partitioners a producer may use to place keys.
const (
	Murmur2 = "murmur2" // Java clients, Kafka Streams, kafka-console-producer
	CRC32   = "crc32"   // librdkafka's and kcat's default ("consistent_random")
)

// What to do with a record that cannot be counted (null key).
const (
	OnErrorDLQ  = "dlq"
	OnErrorDrop = "drop"
	OnErrorFail = "fail"
)

// DefaultPeerURLTemplate is the StatefulSet's stable DNS name of a member.
const DefaultPeerURLTemplate = "http://{{.Member}}.{{.Service}}.{{.Namespace}}.svc.cluster.local:{{.Port}}"

// DefaultPeerURLTemplateTLS is the default when the members serve HTTPS.
const DefaultPeerURLTemplateTLS = "https://{{.Member}}.{{.Service}}.{{.Namespace}}.svc.cluster.local:{{.Port}}"

// Config is the effective configuration of one abacus instance.
type Config struct {
	// BootstrapServers of the Kafka cluster; empty starts the embedded broker.
	BootstrapServers string
	// EmbeddedBroker is the address the embedded broker listens on.
	EmbeddedBroker string
	ApplicationID  string
	InputTopic     string
	OutputTopic    string
	Store          string
	StateDir       string
	HTTPAddr       string
	// InstanceID is the member name: group.instance.id and transactional.id suffix.
	InstanceID          string
	ProcessingGuarantee string
	CommitInterval      time.Duration
	// CacheMaxBytes bounds the record cache that coalesces updates per key
	// between commits; 0 sends every update to the changelog at once.
	CacheMaxBytes int64
	// MemoryLimit is the Go heap's soft limit; 0 derives it from the
	// caches (GoMemoryLimit).
	MemoryLimit     int64
	PeerURLTemplate string
	Namespace       string
	Service         string
	Partitioner     string
	Partitions      int
	// ReplicationFactor of the topics abacus creates; 0 takes min(3,
	// brokers).
	ReplicationFactor int
	// CreateTopics lets abacus create the topics it needs that are
	// missing; false makes a missing topic a startup error that lists
	// what to create (topics managed by Strimzi KafkaTopics, or ACLs).
	CreateTopics      bool
	OnError           string
	ShutdownTimeout   time.Duration
	StartupTimeout    time.Duration
	StateCleanupDelay time.Duration
	// NumStandbyReplicas is how many warm copies of each task other
	// members keep, tailing its changelog (Kafka Streams'
	// num.standby.replicas).
	NumStandbyReplicas int
	LogLevel           string
	LogFormat          string
	// AccessLog logs one line per HTTP request at info.
	AccessLog bool
	// AuthToken, if set, is the bearer token /api/v1 requires.
	AuthToken string
	// AuthBasic, if set, is the "user:password" /api/v1 accepts.
	AuthBasic string
	// AuthMetrics puts /metrics behind the same auth.
	AuthMetrics bool
	// TLSCertFile and TLSKeyFile, if set, serve HTTPS.
	TLSCertFile string
	TLSKeyFile  string
	// TLSCAFile, if set, holds the CA certificates (PEM) that members'
	// HTTPS certificates are verified with when one calls another;
	// empty: the system's roots.
	TLSCAFile string
	// CORSOrigins lists the origins allowed to call /api/v1 from a browser
	// (comma-separated, "*" for any); empty turns CORS off.
	CORSOrigins string
	// EventsTopic, if set, receives state changes as CloudEvents.
	EventsTopic string
	// MaxSubscribers bounds the SSE subscribers of one instance.
	MaxSubscribers int
	// HTTPMaxInflight bounds the /api/v1 requests one instance serves at
	// once; past it, 503 overloaded.
	HTTPMaxInflight int
	// Kafka holds librdkafka properties passed through to every client.
	Kafka map[string]string
	// Windows are the windowed stores, in the order given. Load fills
	// their defaults (window.Spec.WithDefaults).
	Windows []window.Spec
}

// maxStandbyReplicas bounds ABACUS_NUM_STANDBY_REPLICAS: each copy costs
// every member a share of the whole state on disk and of the changelog
// traffic, and beyond a few copies the odds of losing them all at once
// stop improving.
const maxStandbyReplicas = 5

// Default returns the configuration of the classic tutorial.
func Default() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "abacus-0"
	}
	return Config{
		EmbeddedBroker:      "127.0.0.1:9092",
		ApplicationID:       "counts-app",
		InputTopic:          "input-topic",
		OutputTopic:         "counts-topic",
		Store:               "counts-store",
		StateDir:            "./data",
		HTTPAddr:            ":8080",
		InstanceID:          host,
		ProcessingGuarantee: AtLeastOnce,
		CommitInterval:      time.Second,
		CacheMaxBytes:       10 << 20,
		PeerURLTemplate:     DefaultPeerURLTemplate,
		Namespace:           "default",
		Service:             "abacus",
		Partitioner:         Murmur2,
		Partitions:          4,
		CreateTopics:        true,
		OnError:             OnErrorDLQ,
		ShutdownTimeout:     30 * time.Second,
		StartupTimeout:      2 * time.Minute,
		StateCleanupDelay:   10 * time.Minute,
		LogLevel:            "info",
		LogFormat:           "text",
		MaxSubscribers:      10000,
		HTTPMaxInflight:     512,
		Kafka:               map[string]string{},
	}
}

// Embedded reports whether this configuration runs against the embedded broker.
func (c Config) Embedded() bool { return c.BootstrapServers == "" }

// Brokers is the bootstrap address the clients dial.
func (c Config) Brokers() string {
	if c.Embedded() {
		return c.EmbeddedBroker
	}
	return c.BootstrapServers
}

// ChangelogTopic is the store's changelog, named as Kafka Streams names it.
func (c Config) ChangelogTopic() string {
	return c.ApplicationID + "-" + c.Store + "-changelog"
}

// WindowChangelogTopic is a windowed store's changelog, named as Kafka
// Streams names it.
func (c Config) WindowChangelogTopic(store string) string {
	return c.ApplicationID + "-" + store + "-changelog"
}

// WindowSpec returns the spec of the windowed store named store, with its
// defaults filled, and whether there is one.
func (c Config) WindowSpec(store string) (window.Spec, bool) {
	for _, s := range c.Windows {
		if s.Store == store {
			return s.WithDefaults(), true
		}
	}
	return window.Spec{}, false
}

// GoMemoryLimit is the soft limit for the Go heap: MemoryLimit, or room
// for Badger's memtables and caches (about 100 MiB), the rest of the
// process, and the record cache and the read cache, which a Go map holds
// in up to twice their accounted bytes, one batch in flight besides.
func (c Config) GoMemoryLimit() int64 {
	if c.MemoryLimit > 0 {
		return c.MemoryLimit
	}
	return 192<<20 + 4*c.CacheMaxBytes
}

// DLQTopic receives the records that could not be counted.
func (c Config) DLQTopic() string { return c.ApplicationID + "-dlq" }

// TransactionalID is this member's producer identity under exactly_once_v2.
func (c Config) TransactionalID() string { return c.ApplicationID + "-" + c.InstanceID }

// HTTPPort is the port part of HTTPAddr.
func (c Config) HTTPPort() string {
	_, port, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		return "8080"
	}
	return port
}

// FieldError names the setting that is wrong and what it accepts.
type FieldError struct {
	Setting string // ABACUS_<NAME>
	Value   string
	Reason  string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s=%q: %s", e.Setting, e.Value, e.Reason)
}

// Validate checks every setting and returns the first problem found: a
// *FieldError, or for the windowed stores a *window.SpecError, whose one
// line names the entry of the list and its field.
func (c Config) Validate() error {
	bad := func(name, value, reason string) error {
		return &FieldError{Setting: EnvName(name), Value: value, Reason: reason}
	}
	oneOf := func(name, value string, allowed ...string) error {
		for _, a := range allowed {
			if value == a {
				return nil
			}
		}
		return bad(name, value, "must be one of "+strings.Join(allowed, ", "))
	}
	for _, s := range []struct{ name, value string }{
		{"application_id", c.ApplicationID}, {"input_topic", c.InputTopic},
		{"output_topic", c.OutputTopic}, {"store", c.Store},
		{"state_dir", c.StateDir}, {"http_addr", c.HTTPAddr}, {"instance_id", c.InstanceID},
	} {
		if strings.TrimSpace(s.value) == "" {
			return bad(s.name, s.value, "must not be empty")
		}
	}
	if c.Embedded() {
		if _, _, err := net.SplitHostPort(c.EmbeddedBroker); err != nil {
			return bad("embedded_broker", c.EmbeddedBroker, "must be host:port")
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return bad("http_addr", c.HTTPAddr, "must be [host]:port")
	}
	if err := oneOf("processing_guarantee", c.ProcessingGuarantee, AtLeastOnce, ExactlyOnceV2); err != nil {
		return err
	}
	if err := oneOf("partitioner", c.Partitioner, Murmur2, CRC32); err != nil {
		return err
	}
	if err := oneOf("on_error", c.OnError, OnErrorDLQ, OnErrorDrop, OnErrorFail); err != nil {
		return err
	}
	if err := oneOf("log_level", c.LogLevel, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if err := oneOf("log_format", c.LogFormat, "text", "json"); err != nil {
		return err
	}
	if c.Partitions < 1 || c.Partitions > 10000 {
		return bad("partitions", strconv.Itoa(c.Partitions), "must be between 1 and 10000")
	}
	if c.ReplicationFactor < 0 || c.ReplicationFactor > 32767 {
		return bad("replication_factor", strconv.Itoa(c.ReplicationFactor), "must be between 0 (min(3, brokers)) and 32767")
	}
	if c.CommitInterval < 10*time.Millisecond {
		return bad("commit_interval", c.CommitInterval.String(), "must be at least 10ms")
	}
	if c.MemoryLimit < 0 {
		return bad("memory_limit", strconv.FormatInt(c.MemoryLimit, 10), "must be 0 (derived from the caches) or a positive number of bytes")
	}
	if c.CacheMaxBytes < 0 {
		return bad("cache_max_bytes", strconv.FormatInt(c.CacheMaxBytes, 10), "must be 0 (off) or a positive number of bytes")
	}
	for name, d := range map[string]time.Duration{
		"shutdown_timeout": c.ShutdownTimeout, "startup_timeout": c.StartupTimeout,
	} {
		if d <= 0 {
			return bad(name, d.String(), "must be a positive duration such as 30s")
		}
	}
	if c.AuthBasic != "" && !strings.Contains(c.AuthBasic, ":") {
		return bad("auth_basic", Mask, "must be user:password")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return bad("tls_cert_file", c.TLSCertFile, "ABACUS_TLS_CERT_FILE and ABACUS_TLS_KEY_FILE go together")
	}
	if c.MaxSubscribers < 0 {
		return bad("max_subscribers", strconv.Itoa(c.MaxSubscribers), "must not be negative")
	}
	if c.HTTPMaxInflight < 1 {
		return bad("http_max_inflight", strconv.Itoa(c.HTTPMaxInflight), "must be at least 1")
	}
	if c.StateCleanupDelay < 0 {
		return bad("state_cleanup_delay", c.StateCleanupDelay.String(), "must not be negative")
	}
	if c.NumStandbyReplicas < 0 || c.NumStandbyReplicas > maxStandbyReplicas {
		return bad("num_standby_replicas", strconv.Itoa(c.NumStandbyReplicas), fmt.Sprintf("must be between 0 and %d", maxStandbyReplicas))
	}
	if _, err := ParsePeerTemplate(c.PeerURLTemplate); err != nil {
		return bad("peer_url_template", c.PeerURLTemplate, err.Error())
	}
	if err := window.Validate(c.Windows, c.Store); err != nil {
		return err
	}
	return c.validateWindowTopics()
}

// validateWindowTopics returns a *window.SpecError for the first windowed
// store whose output topic is a topic abacus already reads or writes:
// window.Validate has checked the specs themselves and their names.
func (c Config) validateWindowTopics() error {
	taken := map[string]string{}
	take := func(topic, what string) {
		if _, ok := taken[topic]; !ok {
			taken[topic] = what
		}
	}
	take(c.InputTopic, "the input topic")
	take(c.OutputTopic, "the output topic of the count store")
	take(c.DLQTopic(), "the DLQ topic")
	take(c.ChangelogTopic(), "the changelog topic of the count store")
	if c.EventsTopic != "" {
		take(c.EventsTopic, "the events topic")
	}
	for i, s := range c.Windows {
		take(c.WindowChangelogTopic(s.Store), fmt.Sprintf("the changelog topic of windows[%d] (%s)", i, s.Store))
	}
	for i, s := range c.Windows {
		s = s.WithDefaults()
		what, ok := taken[s.OutputTopic]
		if s.OutputTopic == c.WindowChangelogTopic(s.Store) {
			what, ok = "the store's own changelog topic", true
		}
		if ok {
			return &window.SpecError{Index: i, Store: s.Store, Field: "output_topic",
				Reason: fmt.Sprintf("output_topic %q is %s", s.OutputTopic, what)}
		}
		take(s.OutputTopic, fmt.Sprintf("also the output topic of windows[%d] (%s)", i, s.Store))
	}
	return nil
}

// PeerTemplateData is what ABACUS_PEER_URL_TEMPLATE is executed over.
type PeerTemplateData struct {
	Member    string
	Ordinal   int
	Namespace string
	Service   string
	Port      string
}

// ParsePeerTemplate parses a peer URL template and checks that it executes.
func ParsePeerTemplate(text string) (*template.Template, error) {
	t, err := template.New("peer").Option("missingkey=error").
		Funcs(template.FuncMap{"add": func(a, b int) int { return a + b }}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse template: %w", err)
	}
	var sb strings.Builder
	if err := t.Execute(&sb, PeerTemplateData{Member: "abacus-0", Namespace: "default", Service: "abacus", Port: "8080"}); err != nil {
		return nil, fmt.Errorf("execute template: %w", err)
	}
	return t, nil
}

// secretWords mark a librdkafka property (or setting) whose value is secret.
var secretWords = []string{"password", "secret", "token", "jaas", "private", "key.pem", "credential", "auth_basic"}

// IsSecret reports whether a property's value must never be shown.
func IsSecret(property string) bool {
	p := strings.ToLower(property)
	for _, w := range secretWords {
		if strings.Contains(p, w) {
			return true
		}
	}
	return false
}

// Mask is what a secret value is shown as.
const Mask = "********"

// Masked returns the effective settings by their snake_case names, with the
// Kafka pass-through under "kafka" and every secret replaced by Mask.
func (c Config) Masked() map[string]any {
	out := make(map[string]any, len(settings)+1)
	for _, s := range settings {
		v := s.get(&c)
		if str, ok := v.(string); ok && str != "" && IsSecret(s.name) {
			v = Mask
		}
		out[s.name] = v
	}
	kafka := make(map[string]string, len(c.Kafka))
	for k, v := range c.Kafka {
		if IsSecret(k) {
			v = Mask
		}
		kafka[k] = v
	}
	out["kafka"] = kafka
	return out
}
