package chart

import (
	"strings"
	"testing"
)

// TestLint runs `helm lint --strict` (warnings fail) with the defaults and
// with every option on.
func TestLint(t *testing.T) {
	for _, files := range [][]string{nil, {testdata(t, "all-on.yaml")}} {
		args := []string{"lint", "--strict", chartDir(t)}
		for _, f := range files {
			args = append(args, "--values", f)
		}
		if _, err := run(repoRoot(t), helmBin(t), args...); err != nil {
			t.Error(err)
		}
	}
}

// TestSchemaRejects: values.schema.json (and the templates' own checks) turn
// a mistake into a failed install that names it.
func TestSchemaRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string // under testdata/
		set   string
		wants string // in helm's error
		// templateOnly marks checks made by the templates' fail, which helm
		// lint reports as information only; schema checks fail lint too.
		templateOnly bool
	}{
		{name: "unknown top-level key", file: "bad-unknown-key.yaml", wants: "replicas"},
		{name: "wrong type", file: "bad-type.yaml", wants: "/replicaCount"},
		{name: "wrong type by --set", set: "persistence.enabled=maybe", wants: "/persistence/enabled"},
		{name: "unknown nested key", set: "kafka.bootstrapServer=x:9092", wants: "bootstrapServer"},
		{name: "unknown config key", set: "config.commitIntervall=1s", wants: "commitIntervall"},
		{name: "not a guarantee", set: "config.processingGuarantee=exactly_once", wants: "/config/processingGuarantee"},
		{name: "not a partitioner", set: "config.partitioner=murmur3", wants: "/config/partitioner"},
		{name: "not a duration", set: "config.commitInterval=1 second", wants: "/config/commitInterval"},
		{name: "no bootstrap servers", set: "kafka.bootstrapServers=", wants: "/kafka/bootstrapServers"},
		{name: "property not in librdkafka form", set: "kafka.properties.SASL_PASSWORD=x", wants: "SASL_PASSWORD"},
		{name: "anti-affinity typo", set: "podAntiAffinity.type=hard", wants: "/podAntiAffinity/type"},
		{name: "too many standby replicas", set: "standbyReplicas=6", wants: "/standbyReplicas"},
		{name: "negative standby replicas", set: "standbyReplicas=-1", wants: "/standbyReplicas"},
		{name: "standby replicas not a number", set: "standbyReplicas=one", wants: "/standbyReplicas"},
		{name: "negative replication factor", set: "config.replicationFactor=-1", wants: "/config/replicationFactor"},
		{name: "create topics not a boolean", set: "config.createTopics=sometimes", wants: "/config/createTopics"},
		{name: "tls not a boolean", set: "tls.enabled=yes", wants: "/tls/enabled"},
		{name: "unknown tls key", set: "tls.secretName=abacus-tls", wants: "secretName"},
		{name: "tls server name with a scheme", set: "tls.serverName=https://abacus", wants: "/tls/serverName"},
		{name: "tls without a Secret", set: "tls.enabled=true", wants: "tls.enabled needs tls.existingSecret", templateOnly: true},
		{name: "tls with http peers", file: "bad-tls-http-peers.yaml", wants: "with tls.enabled they serve HTTPS only", templateOnly: true},
		{name: "auth metrics not a boolean", set: "auth.metrics=yes", wants: "/auth/metrics"},
		{name: "unknown auth key", set: "auth.secret=abacus-auth", wants: "secret"},
		{name: "metrics auth without a Secret", set: "auth.metrics=true", wants: "auth.metrics puts /metrics behind authentication, which needs auth.existingSecret", templateOnly: true},
		{name: "auth Secret without keys", file: "bad-auth-no-keys.yaml", wants: `auth.existingSecret "abacus-auth" needs auth.tokenKey or auth.basicKey`, templateOnly: true},
		{name: "metrics auth the ServiceMonitor cannot send", file: "bad-auth-monitor-basic.yaml", wants: "Prometheus needs credentials", templateOnly: true},
		{name: "grace period within shutdown", set: "terminationGracePeriodSeconds=30", wants: "must be larger than config.shutdownTimeoutSeconds", templateOnly: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var files, sets []string
			if tc.file != "" {
				files = append(files, testdata(t, tc.file))
			}
			if tc.set != "" {
				sets = append(sets, tc.set)
			}
			_, err := helmTemplate(t, chartDir(t), files, sets)
			if err == nil {
				t.Fatalf("helm template accepted the values")
			}
			if !strings.Contains(err.Error(), tc.wants) {
				t.Errorf("helm's error does not name %q:\n%v", tc.wants, err)
			}
			if tc.templateOnly {
				return
			}
			// helm lint reads the same schema and fails too.
			args := []string{"lint", "--strict", chartDir(t)}
			for _, f := range files {
				args = append(args, "--values", f)
			}
			for _, s := range sets {
				args = append(args, "--set", s)
			}
			if _, err := run(repoRoot(t), helmBin(t), args...); err == nil {
				t.Errorf("helm lint accepted the values")
			}
		})
	}
}
