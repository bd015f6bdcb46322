package chart

import (
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/abacus-streams/abacus/internal/config"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestAuth: auth.existingSecret gives the pods the bearer token and the
// basic credentials from optional Secret keys, auth.metrics sets
// ABACUS_AUTH_METRICS, and the ServiceMonitor then sends the token (or,
// without a token key, basic credentials from separate keys).
func TestAuth(t *testing.T) {
	yes := true
	ref := func(secret, key string) *corev1.EnvVarSource {
		return &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key, Optional: &yes}}
	}
	selector := func(secret, key string) *corev1.SecretKeySelector {
		return &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}
	}
	endpoint := smEndpoint{Port: "http", Path: "/metrics", Interval: "30s", ScrapeTimeout: "10s"}
	withAuth := func(a *smAuthorization, b *smBasicAuth) smEndpoint {
		ep := endpoint
		ep.Authorization, ep.BasicAuth = a, b
		return ep
	}
	for _, tc := range []struct {
		name        string
		sets        []string
		wantEnv     []corev1.EnvVar // the ABACUS_AUTH_ variables, in order
		wantMonitor smEndpoint
		// What the binary reads, the Secret resolved as fakeSecrets has it.
		wantToken, wantBasic string
		wantMetrics          bool
	}{
		{
			name:        "off",
			wantEnv:     []corev1.EnvVar{{Name: "ABACUS_AUTH_METRICS", Value: "false"}},
			wantMonitor: endpoint,
		},
		{
			name: "token and basic",
			sets: []string{"auth.existingSecret=abacus-auth"},
			wantEnv: []corev1.EnvVar{
				{Name: "ABACUS_AUTH_TOKEN", ValueFrom: ref("abacus-auth", "token")},
				{Name: "ABACUS_AUTH_BASIC", ValueFrom: ref("abacus-auth", "basic")},
				{Name: "ABACUS_AUTH_METRICS", Value: "false"},
			},
			wantMonitor: endpoint,
			wantToken:   "t0ken", wantBasic: "reader:s3cret",
		},
		{
			name: "a Secret with the token only",
			sets: []string{"auth.existingSecret=abacus-token-only"},
			wantEnv: []corev1.EnvVar{
				{Name: "ABACUS_AUTH_TOKEN", ValueFrom: ref("abacus-token-only", "token")},
				{Name: "ABACUS_AUTH_BASIC", ValueFrom: ref("abacus-token-only", "basic")},
				{Name: "ABACUS_AUTH_METRICS", Value: "false"},
			},
			wantMonitor: endpoint,
			wantToken:   "t0ken",
		},
		{
			name: "other keys, basic only",
			sets: []string{"auth.existingSecret=abacus-auth", "auth.tokenKey=", "auth.basicKey=api-basic"},
			wantEnv: []corev1.EnvVar{
				{Name: "ABACUS_AUTH_BASIC", ValueFrom: ref("abacus-auth", "api-basic")},
				{Name: "ABACUS_AUTH_METRICS", Value: "false"},
			},
			wantMonitor: endpoint,
			wantBasic:   "reader:s3cret",
		},
		{
			name: "metrics with the token",
			sets: []string{"auth.existingSecret=abacus-auth", "auth.metrics=true"},
			wantEnv: []corev1.EnvVar{
				{Name: "ABACUS_AUTH_TOKEN", ValueFrom: ref("abacus-auth", "token")},
				{Name: "ABACUS_AUTH_BASIC", ValueFrom: ref("abacus-auth", "basic")},
				{Name: "ABACUS_AUTH_METRICS", Value: "true"},
			},
			wantMonitor: withAuth(&smAuthorization{Type: "Bearer", Credentials: selector("abacus-auth", "token")}, nil),
			wantToken:   "t0ken", wantBasic: "reader:s3cret", wantMetrics: true,
		},
		{
			name: "metrics with basic credentials",
			sets: []string{"auth.existingSecret=abacus-auth", "auth.metrics=true", "auth.tokenKey=",
				"auth.basicUsernameKey=username", "auth.basicPasswordKey=password"},
			wantEnv: []corev1.EnvVar{
				{Name: "ABACUS_AUTH_BASIC", ValueFrom: ref("abacus-auth", "basic")},
				{Name: "ABACUS_AUTH_METRICS", Value: "true"},
			},
			wantMonitor: withAuth(nil, &smBasicAuth{Username: *selector("abacus-auth", "username"), Password: *selector("abacus-auth", "password")}),
			wantBasic:   "reader:s3cret", wantMetrics: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := render(t, nil, append(tc.sets, "metrics.serviceMonitor.enabled=true")...)
			sts := only[*appsv1.StatefulSet](t, objs)
			c := container(t, sts)
			var env []corev1.EnvVar
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "ABACUS_AUTH_") {
					env = append(env, e)
				}
			}
			if !reflect.DeepEqual(env, tc.wantEnv) {
				t.Errorf("auth variables:\n got %s\nwant %s", dump(env), dump(tc.wantEnv))
			}

			cfg, err := config.Load(nil, environ(t, c, sts.Name+"-0"), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.AuthToken != tc.wantToken || cfg.AuthBasic != tc.wantBasic || cfg.AuthMetrics != tc.wantMetrics {
				t.Errorf("the binary reads token %q, basic %q, metrics %v; want %q, %q, %v",
					cfg.AuthToken, cfg.AuthBasic, cfg.AuthMetrics, tc.wantToken, tc.wantBasic, tc.wantMetrics)
			}

			if eps := onlyServiceMonitor(t, objs).Spec.Endpoints; len(eps) != 1 || !reflect.DeepEqual(eps[0], tc.wantMonitor) {
				t.Errorf("ServiceMonitor endpoints:\n got %s\nwant %s", dump(eps), dump([]smEndpoint{tc.wantMonitor}))
			}
		})
	}
}
