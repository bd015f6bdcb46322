package chart

import (
	"fmt"
	"io"
	"testing"

	"github.com/abacus-streams/abacus/internal/config"

	appsv1 "k8s.io/api/apps/v1"
)

// TestTopicSettings: config.replicationFactor and config.createTopics reach
// the pods as ABACUS_REPLICATION_FACTOR and ABACUS_CREATE_TOPICS, and the
// binary reads them as given.
func TestTopicSettings(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sets       []string
		wantRF     string
		wantCreate string
	}{
		{name: "defaults", wantRF: "0", wantCreate: "true"},
		{name: "set", sets: []string{"config.replicationFactor=3", "config.createTopics=false"}, wantRF: "3", wantCreate: "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sts := only[*appsv1.StatefulSet](t, render(t, nil, tc.sets...))
			c := container(t, sts)
			if got, _ := envValue(c, "ABACUS_REPLICATION_FACTOR"); got != tc.wantRF {
				t.Errorf("ABACUS_REPLICATION_FACTOR = %q, want %q", got, tc.wantRF)
			}
			if got, _ := envValue(c, "ABACUS_CREATE_TOPICS"); got != tc.wantCreate {
				t.Errorf("ABACUS_CREATE_TOPICS = %q, want %q", got, tc.wantCreate)
			}
			cfg, err := config.Load(nil, environ(t, c, sts.Name+"-0"), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(cfg.ReplicationFactor); got != tc.wantRF {
				t.Errorf("the binary reads replication factor %s, want %s", got, tc.wantRF)
			}
			if got := fmt.Sprint(cfg.CreateTopics); got != tc.wantCreate {
				t.Errorf("the binary reads create topics %s, want %s", got, tc.wantCreate)
			}
		})
	}
}
