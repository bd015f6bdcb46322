package config

import (
	"errors"
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
	if err == nil || !strings.Contains(err.Error(), `unknown setting "input_topc"`) {
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
