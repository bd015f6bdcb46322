package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-streams/abacus/internal/window"
	"gopkg.in/yaml.v3"
)

// setting is one row of the settings table: its snake_case name (the YAML
// key; ABACUS_<NAME> upper-cased, --<name> with dashes), its help and how it
// is read from and shown as a string.
type setting struct {
	name string
	help string
	// kind names the value's type in --help: string, int, size,
	// duration, bool or windows.
	kind string
	set  func(c *Config, v string) error
	get  func(c *Config) any
	// node, if set, reads a value the YAML file gives as a list, a
	// mapping or nothing (null); a scalar value is read with set, as for
	// every setting.
	node func(c *Config, n *yaml.Node) error
}

func str(name, help string, field func(c *Config) *string) setting {
	return setting{name: name, help: help, kind: "string",
		set: func(c *Config, v string) error { *field(c) = v; return nil },
		get: func(c *Config) any { return *field(c) }}
}

func integer(name, help string, field func(c *Config) *int) setting {
	return setting{name: name, help: help, kind: "int",
		set: func(c *Config, v string) error {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return errors.New("must be a whole number")
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) any { return *field(c) }}
}

func bytesize(name, help string, field func(c *Config) *int64) setting {
	return setting{name: name, help: help, kind: "size",
		set: func(c *Config, v string) error {
			n, err := ParseBytes(v)
			if err != nil {
				return err
			}
			*field(c) = n
			return nil
		},
		get: func(c *Config) any { return *field(c) }}
}

func duration(name, help string, field func(c *Config) *time.Duration) setting {
	return setting{name: name, help: help, kind: "duration",
		set: func(c *Config, v string) error {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil {
				return errors.New("must be a duration such as 500ms, 30s or 10m")
			}
			*field(c) = d
			return nil
		},
		get: func(c *Config) any { return field(c).String() }}
}

// settings is the one description of every setting; Load, the flags, the
// YAML file and Masked all read it.
var settings = []setting{
	str("bootstrap_servers", "Kafka bootstrap servers; empty starts the embedded broker", func(c *Config) *string { return &c.BootstrapServers }),
	str("embedded_broker", "address of the embedded broker", func(c *Config) *string { return &c.EmbeddedBroker }),
	str("application_id", "application id, also the consumer group", func(c *Config) *string { return &c.ApplicationID }),
	str("input_topic", "topic whose records are counted by key", func(c *Config) *string { return &c.InputTopic }),
	str("output_topic", "topic that receives every new count", func(c *Config) *string { return &c.OutputTopic }),
	str("store", "name of the state store", func(c *Config) *string { return &c.Store }),
	windows("windows", "windowed stores, compact form: <store>=<type>,size=5s[,advance=1s,grace=0s,retention=1h,emit=updates,output_topic=NAME];... (YAML: a windows: list)"),
	str("state_dir", "directory of the local stores", func(c *Config) *string { return &c.StateDir }),
	str("http_addr", "HTTP listen address", func(c *Config) *string { return &c.HTTPAddr }),
	str("instance_id", "member name (group.instance.id); defaults to the host name", func(c *Config) *string { return &c.InstanceID }),
	str("processing_guarantee", "at_least_once or exactly_once_v2", func(c *Config) *string { return &c.ProcessingGuarantee }),
	duration("commit_interval", "how often offsets and state are committed", func(c *Config) *time.Duration { return &c.CommitInterval }),
	bytesize("memory_limit", "soft limit of the Go heap (0 = 192MiB + 4 x cache_max_bytes; GOMEMLIMIT in the environment wins over 0)", func(c *Config) *int64 { return &c.MemoryLimit }),
	bytesize("cache_max_bytes", "record cache that coalesces updates per key between commits (0 = off)", func(c *Config) *int64 { return &c.CacheMaxBytes }),
	str("peer_url_template", "Go template of a member's URL (.Member .Ordinal .Namespace .Service .Port, add)", func(c *Config) *string { return &c.PeerURLTemplate }),
	str("namespace", "Kubernetes namespace, for the peer URL template", func(c *Config) *string { return &c.Namespace }),
	str("service", "headless Service name, for the peer URL template", func(c *Config) *string { return &c.Service }),
	str("partitioner", "partitioner the producers use: murmur2 or crc32", func(c *Config) *string { return &c.Partitioner }),
	integer("partitions", "partitions of the topics abacus creates", func(c *Config) *int { return &c.Partitions }),
	integer("replication_factor", "replication factor of the topics abacus creates (0 = min(3, brokers))", func(c *Config) *int { return &c.ReplicationFactor }),
	boolean("create_topics", "create the topics abacus needs that are missing; false: a missing topic stops the start with what to create", func(c *Config) *bool { return &c.CreateTopics }),
	str("on_error", "records that cannot be counted: dlq, drop or fail", func(c *Config) *string { return &c.OnError }),
	duration("shutdown_timeout", "how long a graceful shutdown may take", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	duration("startup_timeout", "how long to wait for the broker and the input topic", func(c *Config) *time.Duration { return &c.StartupTimeout }),
	integer("num_standby_replicas", "warm copies of each task kept on other members (standby replicas)", func(c *Config) *int { return &c.NumStandbyReplicas }),
	duration("state_cleanup_delay", "how long a revoked task's state is kept on disk", func(c *Config) *time.Duration { return &c.StateCleanupDelay }),
	str("log_level", "debug, info, warn or error", func(c *Config) *string { return &c.LogLevel }),
	str("log_format", "text or json", func(c *Config) *string { return &c.LogFormat }),
	boolean("access_log", "log one line per HTTP request at info (a subscription's when its stream ends)", func(c *Config) *bool { return &c.AccessLog }),
	str("auth_token", "bearer token required by /api/v1 (empty: no token auth)", func(c *Config) *string { return &c.AuthToken }),
	str("auth_basic", "user:password accepted by /api/v1 with basic auth (empty: none)", func(c *Config) *string { return &c.AuthBasic }),
	boolean("auth_metrics", "also require auth for /metrics", func(c *Config) *bool { return &c.AuthMetrics }),
	str("tls_cert_file", "TLS certificate (PEM) for the HTTP server", func(c *Config) *string { return &c.TLSCertFile }),
	str("tls_key_file", "TLS private key (PEM) for the HTTP server", func(c *Config) *string { return &c.TLSKeyFile }),
	str("tls_ca_file", "CA certificates (PEM) members' HTTPS certificates are verified with (empty: the system's)", func(c *Config) *string { return &c.TLSCAFile }),
	str("cors_origins", "origins allowed to call /api/v1 from browsers, comma-separated (empty: CORS off)", func(c *Config) *string { return &c.CORSOrigins }),
	str("events_topic", "topic receiving state changes as CloudEvents (empty: none)", func(c *Config) *string { return &c.EventsTopic }),
	integer("max_subscribers", "most live subscriptions one instance serves", func(c *Config) *int { return &c.MaxSubscribers }),
	integer("http_max_inflight", "most API (/api/v1) requests one instance serves at once; past it, 503", func(c *Config) *int { return &c.HTTPMaxInflight }),
}

func boolean(name, help string, field func(c *Config) *bool) setting {
	return setting{name: name, help: help, kind: "bool",
		set: func(c *Config, v string) error {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return errors.New("must be true or false")
			}
			*field(c) = b
			return nil
		},
		get: func(c *Config) any { return *field(c) }}
}

// windows reads the windowed stores. A string is their compact form
// (window.ParseCompact), in the environment, on the command line and in the
// file; the file may give a list of windows instead (Spec.UnmarshalYAML),
// or nothing, for none. Every source replaces the whole list. They are
// shown in the compact form (window.FormatCompact), "" for none.
func windows(name, help string) setting {
	return setting{name: name, help: help, kind: "windows",
		set: func(c *Config, v string) error {
			specs, err := window.ParseCompact(v)
			if err != nil {
				return err
			}
			c.Windows = specs
			return nil
		},
		get: func(c *Config) any { return window.FormatCompact(c.Windows) },
		node: func(c *Config, n *yaml.Node) error {
			switch {
			case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
				c.Windows = nil
				return nil
			case n.Kind != yaml.SequenceNode:
				return fmt.Errorf("%s: line %d: must be a list of windows or their compact form (a string)", name, n.Line)
			}
			var specs []window.Spec
			for i, item := range n.Content {
				var s window.Spec
				if err := item.Decode(&s); err != nil {
					return fmt.Errorf("%s[%d]: %w", name, i, err)
				}
				specs = append(specs, s)
			}
			c.Windows = specs
			return nil
		}}
}

// EnvName is the environment variable of a setting.
func EnvName(name string) string { return "ABACUS_" + strings.ToUpper(name) }

// FlagName is the command-line flag of a setting, without its dashes.
func FlagName(name string) string { return strings.ReplaceAll(name, "_", "-") }

// SettingNames lists every setting's snake_case name.
func SettingNames() []string {
	names := make([]string, len(settings))
	for i, s := range settings {
		names[i] = s.name
	}
	return names
}

const kafkaEnvPrefix = "ABACUS_KAFKA_"

// Load reads the configuration: defaults, then the YAML file named by
// ABACUS_CONFIG (or --config), then the environment, then the flags. environ
// is in os.Environ form. It fills the defaults of the windowed stores and
// validates the result. A --help request returns flag.ErrHelp after
// printing the usage to out.
func Load(args, environ []string, out io.Writer) (Config, error) {
	c := Default()
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}

	fs := flag.NewFlagSet("abacus", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { usage(out) }
	flagValues := map[string]*settingFlag{}
	for _, s := range settings {
		f := &settingFlag{bool: s.kind == "bool"}
		flagValues[s.name] = f
		fs.Var(f, FlagName(s.name), s.help)
	}
	configFile := fs.String("config", env["ABACUS_CONFIG"], "YAML configuration file (env ABACUS_CONFIG)")
	var kafkaFlags kvFlag
	fs.Var(&kafkaFlags, "kafka", "librdkafka property as key=value, repeatable (env ABACUS_KAFKA_<PROPERTY>)")
	if err := fs.Parse(normalizeFlags(args)); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (settings are flags such as --input-topic=NAME)", fs.Arg(0))
	}

	// source names where each setting given was last read from, so that
	// an error Validate finds names it as the user wrote it
	// (TestValidationErrorsNameTheSource).
	source := map[string]string{}
	if *configFile != "" {
		if err := loadYAML(&c, *configFile, source); err != nil {
			return c, err
		}
	}
	if err := unknownVariables(env); err != nil {
		return c, err
	}
	for _, s := range settings {
		if v, ok := env[EnvName(s.name)]; ok {
			source[EnvName(s.name)] = EnvName(s.name)
			if err := s.set(&c, v); err != nil {
				return c, &FieldError{Setting: EnvName(s.name), Value: shown(s.name, v), Reason: err.Error()}
			}
		}
	}
	for k, v := range env {
		if prop, ok := strings.CutPrefix(k, kafkaEnvPrefix); ok && prop != "" {
			c.Kafka[strings.ReplaceAll(strings.ToLower(prop), "_", ".")] = v
		}
	}
	for _, s := range settings {
		if f := flagValues[s.name]; f.given {
			source[EnvName(s.name)] = "--" + FlagName(s.name)
			if err := s.set(&c, f.value); err != nil {
				v := f.value
				return c, &FieldError{Setting: "--" + FlagName(s.name), Value: shown(s.name, v), Reason: err.Error()}
			}
		}
	}
	for k, v := range kafkaFlags {
		c.Kafka[k] = v
	}
	for i, s := range c.Windows {
		c.Windows[i] = s.WithDefaults()
	}
	if c.TLSCertFile != "" && source[EnvName("peer_url_template")] == "" {
		// Members serving HTTPS call each other over HTTPS unless told
		// otherwise (TestPeerTemplateFollowsTLS).
		c.PeerURLTemplate = DefaultPeerURLTemplateTLS
	}
	err := c.Validate()
	var fe *FieldError
	if errors.As(err, &fe) && source[fe.Setting] != "" {
		fe.Setting = source[fe.Setting]
	}
	return c, err
}

func shown(name, v string) string {
	if IsSecret(name) {
		return Mask
	}
	return v
}

// normalizeFlags lets --input_topic stand for --input-topic, so a flag can be
// written exactly as the environment variable's suffix.
func normalizeFlags(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.HasPrefix(a, "-") {
			name, value, hasValue := strings.Cut(a, "=")
			name = strings.ReplaceAll(name, "_", "-")
			if hasValue {
				name += "=" + value
			}
			a = name
		}
		out[i] = a
	}
	return out
}

// loadYAML reads the configuration file into c and notes in source, by
// environment variable name, the file key each setting came from.
func loadYAML(c *Config, path string, source map[string]string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("parse config file %s: %w", path, err)
	}
	byName := map[string]setting{}
	for _, s := range settings {
		byName[s.name] = s
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		n := doc[k]
		if k == "kafka" {
			var m map[string]any
			if n.Kind != yaml.MappingNode || n.Decode(&m) != nil {
				return fmt.Errorf("config file %s: kafka: must be a map of librdkafka properties", path)
			}
			for pk, pv := range m {
				c.Kafka[pk] = fmt.Sprint(pv)
			}
			continue
		}
		s, ok := byName[strings.ReplaceAll(k, "-", "_")]
		if !ok {
			return fmt.Errorf("config file %s: unknown setting %q%s (known: %s, kafka)", path, k, didYouMean(k, append(SettingNames(), "kafka")), strings.Join(SettingNames(), ", "))
		}
		source[EnvName(s.name)] = path + ": " + k
		if s.node != nil && (n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null") {
			if err := s.node(c, &n); err != nil {
				return fmt.Errorf("config file %s: %w", path, err)
			}
			continue
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("parse config file %s: %s: %w", path, k, err)
		}
		if err := s.set(c, fmt.Sprint(v)); err != nil {
			return &FieldError{Setting: path + ": " + k, Value: shown(k, fmt.Sprint(v)), Reason: err.Error()}
		}
	}
	return nil
}

// kvFlag collects repeated key=value flags.
type kvFlag map[string]string

func (f *kvFlag) String() string { return "" }

func (f *kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want property=value, got %q", s)
	}
	if *f == nil {
		*f = kvFlag{}
	}
	(*f)[k] = v
	return nil
}

// ParseBytes reads a byte size: a plain number or one with a KiB/MiB/GiB
// (or KB/MB/GB, read as powers of 1024) suffix.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("must be a size in bytes such as 10485760 or 10MiB")
	}
	return n * mult, nil
}

// settingFlag is a setting's command-line flag: the value given, if any.
// A boolean setting's flag may stand alone (--auth-metrics means true),
// as Go's own boolean flags do; its value is then given with =.
type settingFlag struct {
	value string
	given bool
	bool  bool
}

func (f *settingFlag) String() string { return f.value }

func (f *settingFlag) Set(v string) error {
	f.value, f.given = v, true
	return nil
}

// IsBoolFlag tells the flag package that a boolean setting's flag takes
// no separate argument.
func (f *settingFlag) IsBoolFlag() bool { return f.bool }

// usage writes --help: the subcommands, then every setting of the table
// with its flag, its variable, its type, its default and its meaning.
func usage(out io.Writer) {
	def := Default()
	fmt.Fprint(out, `Usage:
  abacus [--setting=value ...]   run the service
  abacus broker [flags]          run the embedded Kafka-protocol broker alone (abacus broker --help)
  abacus version                 print the version and the source revision

Settings, each a flag, an environment variable or a key of the YAML file
named by --config (ABACUS_CONFIG); flags win over the environment, which
wins over the file (docs/configuration.md):

`)
	for _, s := range settings {
		shown := fmt.Sprint(s.get(&def))
		if shown == "" {
			shown = "none"
		} else if s.kind == "string" {
			shown = strconv.Quote(shown)
		}
		fmt.Fprintf(out, "  --%s, %s (%s, default %s)\n      %s\n", FlagName(s.name), EnvName(s.name), s.kind, shown, s.help)
	}
	fmt.Fprint(out, `  --config, ABACUS_CONFIG (string, default none)
      YAML configuration file
  --kafka property=value, ABACUS_KAFKA_<PROPERTY> (repeatable)
      a librdkafka property passed through (ABACUS_KAFKA_SASL_PASSWORD is sasl.password)
`)
}

// unknownVariables refuses an ABACUS_ variable that names no setting, so
// that a typo (ABACUS_COMIT_INTERVAL) stops the start instead of leaving
// the default in place without a word. ABACUS_CONFIG and the
// ABACUS_KAFKA_ pass-through are known; so are the variables Kubernetes
// injects for a Service named abacus or abacus-... in the pod's
// namespace (ABACUS_SERVICE_HOST, ABACUS_PORT_8080_TCP, ...) when the
// pod does not turn service links off (TestUnknownVariables).
func unknownVariables(env map[string]string) error {
	var unknown []string
	for k := range env {
		if strings.HasPrefix(k, "ABACUS_") && !KnownVariable(k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	names := []string{"ABACUS_CONFIG"}
	for _, s := range settings {
		names = append(names, EnvName(s.name))
	}
	return fmt.Errorf("unknown environment variable %s%s: no setting has that name (--help lists them)", unknown[0], didYouMean(unknown[0], names))
}

// KnownVariable reports whether Load takes the ABACUS_ variable name: a
// setting's, ABACUS_CONFIG, the ABACUS_KAFKA_ pass-through, or one of
// Kubernetes' service links (serviceLink).
func KnownVariable(name string) bool {
	if name == "ABACUS_CONFIG" || strings.HasPrefix(name, kafkaEnvPrefix) || serviceLink.MatchString(name) {
		return true
	}
	for _, s := range settings {
		if EnvName(s.name) == name {
			return true
		}
	}
	return false
}

// serviceLink matches the variables of Kubernetes' service links for a
// Service whose name starts with abacus: <NAME>_SERVICE_HOST,
// <NAME>_SERVICE_PORT[_<PORT NAME>], <NAME>_PORT and
// <NAME>_PORT_<port>_<PROTOCOL>[_PROTO|_PORT|_ADDR].
var serviceLink = regexp.MustCompile(`^ABACUS(_[A-Z0-9_]+)?_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)?)$`)

// didYouMean suggests the known name closest to name, when one is close
// enough to be a typo of it: " (did you mean X?)", or "".
func didYouMean(name string, known []string) string {
	best, bestDist := "", len(name)/3+1
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best == "" {
		return ""
	}
	return " (did you mean " + best + "?)"
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
