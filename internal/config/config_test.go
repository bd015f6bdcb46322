package config

import (
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsMatchTheTutorial(t *testing.T) {
	c, err := Load(nil, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.ApplicationID != "counts-app" || c.InputTopic != "input-topic" || c.OutputTopic != "counts-topic" ||
		c.Store != "counts-store" || c.ChangelogTopic() != "counts-app-counts-store-changelog" ||
		c.HTTPAddr != ":8080" || c.ProcessingGuarantee != AtLeastOnce || c.Partitioner != Murmur2 ||
		c.Partitions != 4 || c.EmbeddedBroker != "127.0.0.1:9092" || !c.Embedded() || c.DLQTopic() != "counts-app-dlq" {
		t.Errorf("defaults: %+v", c)
	}
}

func TestSourcesInOrderFileEnvFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "abacus.yaml")
	yaml := "input_topic: from-file\noutput_topic: out-file\ncommit_interval: 5s\nkafka:\n  sasl.mechanism: PLAIN\n  linger.ms: 7\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ABACUS_CONFIG=" + file, "ABACUS_OUTPUT_TOPIC=out-env", "ABACUS_APPLICATION_ID=app-env",
		"ABACUS_KAFKA_SASL_PASSWORD=hunter2", "ABACUS_KAFKA_SECURITY_PROTOCOL=SASL_SSL"}
	c, err := Load([]string{"--application-id=app-flag", "--cache_max_bytes", "1MiB", "--kafka", "linger.ms=9"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]any{
		"input_topic (file)":       c.InputTopic == "from-file",
		"output_topic (env)":       c.OutputTopic == "out-env",
		"application_id (flag)":    c.ApplicationID == "app-flag",
		"commit_interval (file)":   c.CommitInterval == 5*time.Second,
		"cache_max_bytes (flag _)": c.CacheMaxBytes == 1<<20,
		"sasl.password (env)":      c.Kafka["sasl.password"] == "hunter2",
		"security.protocol (env)":  c.Kafka["security.protocol"] == "SASL_SSL",
		"sasl.mechanism (file)":    c.Kafka["sasl.mechanism"] == "PLAIN",
		"linger.ms (flag)":         c.Kafka["linger.ms"] == "9",
	} {
		if got != true {
			t.Errorf("%s not applied: %+v", name, c)
		}
	}
	masked := c.Masked()["kafka"].(map[string]string)
	if masked["sasl.password"] != Mask || masked["security.protocol"] != "SASL_SSL" {
		t.Errorf("masked kafka: %v", masked)
	}
}

func TestBadValuesNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{env: []string{"ABACUS_PROCESSING_GUARANTEE=exactly_once"}, want: `invalid ABACUS_PROCESSING_GUARANTEE="exactly_once": must be one of at_least_once, exactly_once_v2`},
		{args: []string{"--partitions=four"}, want: `invalid --partitions="four": must be a whole number`},
		{env: []string{"ABACUS_ON_ERROR=ignore"}, want: `invalid ABACUS_ON_ERROR="ignore": must be one of dlq, drop, fail`},
		{env: []string{"ABACUS_PEER_URL_TEMPLATE=http://{{.Nope}}"}, want: `invalid ABACUS_PEER_URL_TEMPLATE=`},
		{env: []string{"ABACUS_HTTP_ADDR=8080"}, want: `invalid ABACUS_HTTP_ADDR="8080": must be [host]:port`},
		{env: []string{"ABACUS_CACHE_MAX_BYTES=lots"}, want: `invalid ABACUS_CACHE_MAX_BYTES="lots"`},
		{env: []string{"ABACUS_INPUT_TOPIC="}, want: `invalid ABACUS_INPUT_TOPIC="": must not be empty`},
		{args: []string{"extra"}, want: `unexpected argument "extra"`},
	} {
		_, err := Load(tc.args, tc.env, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v %v: error %v, want one line starting %q", tc.args, tc.env, err, tc.want)
		}
	}
	var fe *FieldError
	if _, err := Load(nil, []string{"ABACUS_PARTITIONER=fnv"}, io.Discard); !errors.As(err, &fe) || fe.Setting != "ABACUS_PARTITIONER" {
		t.Errorf("want a *FieldError naming ABACUS_PARTITIONER, got %v", err)
	}
}

func TestUnknownSettingInFileIsRejected(t *testing.T) {
	file := filepath.Join(t.TempDir(), "abacus.yaml")
	if err := os.WriteFile(file, []byte("input_topc: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load([]string{"--config", file}, nil, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "config file "+file+`: unknown setting "input_topc" (did you mean input_topic?) (known: `) {
		t.Errorf("got %v", err)
	}
}

func TestPeerTemplate(t *testing.T) {
	tpl, err := ParsePeerTemplate("http://127.0.0.{{add .Ordinal 1}}:{{.Port}}")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := tpl.Execute(&sb, PeerTemplateData{Member: "abacus-2", Ordinal: 2, Port: "8080"}); err != nil {
		t.Fatal(err)
	}
	if sb.String() != "http://127.0.0.3:8080" {
		t.Errorf("got %s", sb.String())
	}
}

// With a certificate to serve HTTPS, the default peer template is
// https://; a template given is kept as it is.
func TestPeerTemplateFollowsTLS(t *testing.T) {
	tls := []string{"ABACUS_TLS_CERT_FILE=c.pem", "ABACUS_TLS_KEY_FILE=k.pem"}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, DefaultPeerURLTemplate},
		{tls, DefaultPeerURLTemplateTLS},
		{append(tls, "ABACUS_PEER_URL_TEMPLATE=http://{{.Member}}:{{.Port}}"), "http://{{.Member}}:{{.Port}}"},
	} {
		c, err := Load(nil, tc.env, io.Discard)
		if err != nil || c.PeerURLTemplate != tc.want {
			t.Errorf("%v: %v, template %q; want %q", tc.env, err, c.PeerURLTemplate, tc.want)
		}
	}
}

func TestSecretsAreRecognised(t *testing.T) {
	for k, want := range map[string]bool{"sasl.password": true, "ssl.key.password": true, "sasl.oauthbearer.client.secret": true,
		"sasl.jaas.config": true, "api_token": true, "bootstrap.servers": false, "sasl.username": false} {
		if IsSecret(k) != want {
			t.Errorf("IsSecret(%q) = %v", k, !want)
		}
	}
}

// The configuration document lists every setting.
func TestConfigurationDocListsEverySetting(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range SettingNames() {
		if !strings.Contains(string(doc), "`"+EnvName(name)+"`") && !strings.Contains(string(doc), EnvName(name)+"`") {
			t.Errorf("docs/configuration.md does not list %s", EnvName(name))
		}
	}
}

// An ABACUS_ variable that names no setting stops the start with the
// closest name; the pass-through, ABACUS_CONFIG and Kubernetes' service
// links for a Service named abacus are not settings and are let be.
func TestUnknownVariables(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"ABACUS_COMIT_INTERVAL=1s"}, "unknown environment variable ABACUS_COMIT_INTERVAL (did you mean ABACUS_COMMIT_INTERVAL?): no setting has that name (--help lists them)"},
		{[]string{"ABACUS_INPUT_TOPICS=x", "ABACUS_ZZZ=1"}, "unknown environment variable ABACUS_INPUT_TOPICS (did you mean ABACUS_INPUT_TOPIC?): no setting has that name (--help lists them)"},
		{[]string{"ABACUS_ZZZ=1"}, "unknown environment variable ABACUS_ZZZ: no setting has that name (--help lists them)"},
		{[]string{"ABACUS_KAFKA_SASL_USERNAME=u", "ABACUS_SERVICE_HOST=10.0.0.1", "ABACUS_SERVICE_PORT=8080", "ABACUS_SERVICE_PORT_HTTP=8080",
			"ABACUS_PORT=tcp://10.0.0.1:8080", "ABACUS_PORT_8080_TCP=tcp://10.0.0.1:8080", "ABACUS_PORT_8080_TCP_PROTO=tcp",
			"ABACUS_PORT_8080_TCP_PORT=8080", "ABACUS_PORT_8080_TCP_ADDR=10.0.0.1", "ABACUS_HEADLESS_SERVICE_HOST=10.0.0.2",
			"ABACUS_SERVICE=abacus", "OTHER_THING=1"}, ""},
	} {
		_, err := Load(nil, c.env, io.Discard)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != c.want {
			t.Errorf("%v: %q; want %q", c.env, got, c.want)
		}
	}
}

// A boolean setting's flag stands alone, and does not take the next
// argument as its value.
func TestBareBooleanFlag(t *testing.T) {
	c, err := Load([]string{"--auth-metrics", "--log-level=debug"}, nil, io.Discard)
	if err != nil || !c.AuthMetrics || c.LogLevel != "debug" {
		t.Errorf("got auth_metrics %v, log_level %q, %v", c.AuthMetrics, c.LogLevel, err)
	}
	c, err = Load([]string{"--auth-metrics=false"}, []string{"ABACUS_AUTH_METRICS=true"}, io.Discard)
	if err != nil || c.AuthMetrics {
		t.Errorf("--auth-metrics=false over the environment: %v, %v", c.AuthMetrics, err)
	}
	if _, err := Load([]string{"--auth-metrics=maybe"}, nil, io.Discard); err == nil || err.Error() != `invalid --auth-metrics="maybe": must be true or false` {
		t.Errorf("got %v", err)
	}
}

// --help lists the subcommands and every setting with its flag, variable,
// type, default and meaning.
func TestHelpListsEverySetting(t *testing.T) {
	var out strings.Builder
	if _, err := Load([]string{"--help"}, nil, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	help := out.String()
	for _, want := range []string{
		"  abacus broker [flags]", "  abacus version ",
		"  --commit-interval, ABACUS_COMMIT_INTERVAL (duration, default 1s)\n      how often offsets and state are committed\n",
		"  --auth-metrics, ABACUS_AUTH_METRICS (bool, default false)\n",
		"  --cache-max-bytes, ABACUS_CACHE_MAX_BYTES (size, default 10485760)\n",
		"  --input-topic, ABACUS_INPUT_TOPIC (string, default \"input-topic\")\n",
		"  --windows, ABACUS_WINDOWS (windows, default none)\n",
		"  --kafka property=value, ABACUS_KAFKA_<PROPERTY> (repeatable)\n",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	for _, name := range SettingNames() {
		if !strings.Contains(help, "  --"+FlagName(name)+", "+EnvName(name)+" (") {
			t.Errorf("--help lacks the setting %s", name)
		}
	}
}

// A value Validate refuses is named as it was given: by its flag when a
// flag gave it, by its variable when the environment did.
func TestValidationErrorsNameTheSource(t *testing.T) {
	_, err := Load([]string{"--partitions=0"}, []string{"ABACUS_PARTITIONS=3"}, io.Discard)
	if err == nil || err.Error() != `invalid --partitions="0": must be between 1 and 10000` {
		t.Errorf("flag: %v", err)
	}
	_, err = Load(nil, []string{"ABACUS_PARTITIONS=0"}, io.Discard)
	if err == nil || err.Error() != `invalid ABACUS_PARTITIONS="0": must be between 1 and 10000` {
		t.Errorf("environment: %v", err)
	}
	file := filepath.Join(t.TempDir(), "abacus.yaml")
	if err := os.WriteFile(file, []byte("partitions: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load([]string{"--config=" + file}, nil, io.Discard)
	if err == nil || err.Error() != `invalid `+file+`: partitions="0": must be between 1 and 10000` {
		t.Errorf("file: %v", err)
	}
	// A later source that sets the value again is the one named.
	_, err = Load([]string{"--config=" + file}, []string{"ABACUS_PARTITIONS=0"}, io.Discard)
	if err == nil || err.Error() != `invalid ABACUS_PARTITIONS="0": must be between 1 and 10000` {
		t.Errorf("file, then environment: %v", err)
	}
}
