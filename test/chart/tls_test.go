package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/abacus-streams/abacus/internal/config"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// tlsDir is where the chart mounts the TLS Secret.
const tlsDir = "/etc/abacus/tls"

// TestTLS: with tls.enabled the Secret is mounted read-only, the binary is
// told where the certificate, key and CA are, the probes speak HTTPS, the
// peers call https:// URLs and the ServiceMonitor scrapes over HTTPS,
// verifying the certificate against one name.
func TestTLS(t *testing.T) {
	on := []string{"tls.enabled=true", "tls.existingSecret=abacus-tls", "metrics.serviceMonitor.enabled=true"}
	httpsPeers := strings.Replace(config.DefaultPeerURLTemplate, "http://", "https://", 1)
	if httpsPeers == config.DefaultPeerURLTemplate {
		t.Fatalf("the binary's default peer URL template %q is not http://", config.DefaultPeerURLTemplate)
	}
	certItems := []corev1.KeyToPath{{Key: "tls.crt", Path: "tls.crt"}, {Key: "tls.key", Path: "tls.key"}}
	verify := false
	for _, tc := range []struct {
		name  string
		sets  []string
		files map[string]string // values files written for the case
		// want* are the exact objects; a nil volume means none.
		wantVolume  *corev1.Volume
		wantEnv     map[string]string // TLS and peer variables; "" = unset
		wantMonitor smEndpoint
	}{
		{
			name:        "off",
			sets:        []string{"metrics.serviceMonitor.enabled=true"},
			wantEnv:     map[string]string{"ABACUS_TLS_CERT_FILE": "", "ABACUS_TLS_KEY_FILE": "", "ABACUS_TLS_CA_FILE": "", "ABACUS_PEER_URL_TEMPLATE": ""},
			wantMonitor: smEndpoint{Port: "http", Path: "/metrics", Interval: "30s", ScrapeTimeout: "10s"},
		},
		{
			name: "on",
			sets: on,
			wantVolume: &corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: "abacus-tls"},
					Items:                append(certItems, corev1.KeyToPath{Key: "ca.crt", Path: "ca.crt"}),
				}}},
			}}},
			wantEnv: map[string]string{
				"ABACUS_TLS_CERT_FILE":     tlsDir + "/tls.crt",
				"ABACUS_TLS_KEY_FILE":      tlsDir + "/tls.key",
				"ABACUS_TLS_CA_FILE":       tlsDir + "/ca.crt",
				"ABACUS_PEER_URL_TEMPLATE": httpsPeers,
			},
			wantMonitor: smEndpoint{Port: "http", Path: "/metrics", Interval: "30s", ScrapeTimeout: "10s", Scheme: "https",
				TLSConfig: tlsConfig("abacus-0.abacus-headless.streams.svc.cluster.local", &verify, "abacus-tls", "ca.crt")},
		},
		{
			name: "ca-in-another-secret",
			sets: append(on, "tls.caSecret=trust-bundle", "tls.caKey=bundle.pem", "tls.serverName=abacus.streams.svc"),
			wantVolume: &corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "abacus-tls"}, Items: certItems}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "trust-bundle"},
						Items: []corev1.KeyToPath{{Key: "bundle.pem", Path: "ca.crt"}}}},
				},
			}}},
			wantEnv: map[string]string{
				"ABACUS_TLS_CERT_FILE":     tlsDir + "/tls.crt",
				"ABACUS_TLS_KEY_FILE":      tlsDir + "/tls.key",
				"ABACUS_TLS_CA_FILE":       tlsDir + "/ca.crt",
				"ABACUS_PEER_URL_TEMPLATE": httpsPeers,
			},
			wantMonitor: smEndpoint{Port: "http", Path: "/metrics", Interval: "30s", ScrapeTimeout: "10s", Scheme: "https",
				TLSConfig: tlsConfig("abacus.streams.svc", &verify, "trust-bundle", "bundle.pem")},
		},
		{
			name: "system-roots",
			sets: append(on, "tls.caKey="),
			wantVolume: &corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: "abacus-tls"}, Items: certItems}}},
			}}},
			wantEnv: map[string]string{
				"ABACUS_TLS_CERT_FILE":     tlsDir + "/tls.crt",
				"ABACUS_TLS_KEY_FILE":      tlsDir + "/tls.key",
				"ABACUS_TLS_CA_FILE":       "",
				"ABACUS_PEER_URL_TEMPLATE": httpsPeers,
			},
			wantMonitor: smEndpoint{Port: "http", Path: "/metrics", Interval: "30s", ScrapeTimeout: "10s", Scheme: "https",
				TLSConfig: tlsConfig("abacus-0.abacus-headless.streams.svc.cluster.local", &verify, "", "")},
		},
		{
			name:  "own-peer-template",
			sets:  on,
			files: map[string]string{"peers.yaml": "config:\n  peerUrlTemplate: \"https://{{.Member}}.{{.Service}}.{{.Namespace}}.svc.cluster.local:{{.Port}}/\"\n"},
			wantVolume: &corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: "abacus-tls"},
					Items:                append(certItems, corev1.KeyToPath{Key: "ca.crt", Path: "ca.crt"}),
				}}},
			}}},
			wantEnv: map[string]string{
				"ABACUS_TLS_CERT_FILE":     tlsDir + "/tls.crt",
				"ABACUS_TLS_KEY_FILE":      tlsDir + "/tls.key",
				"ABACUS_TLS_CA_FILE":       tlsDir + "/ca.crt",
				"ABACUS_PEER_URL_TEMPLATE": "https://{{.Member}}.{{.Service}}.{{.Namespace}}.svc.cluster.local:{{.Port}}/",
			},
			wantMonitor: smEndpoint{Port: "http", Path: "/metrics", Interval: "30s", ScrapeTimeout: "10s", Scheme: "https",
				TLSConfig: tlsConfig("abacus-0.abacus-headless.streams.svc.cluster.local", &verify, "abacus-tls", "ca.crt")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var files []string
			for name, content := range tc.files {
				p := filepath.Join(t.TempDir(), name)
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				files = append(files, p)
			}
			objs := render(t, files, tc.sets...)
			sts := only[*appsv1.StatefulSet](t, objs)
			pod := sts.Spec.Template.Spec
			c := container(t, sts)

			if got := volume(pod, "tls"); !reflect.DeepEqual(got, tc.wantVolume) {
				t.Errorf("volume tls:\n got %+v\nwant %+v", got, tc.wantVolume)
			}
			var mounts []corev1.VolumeMount
			for _, m := range c.VolumeMounts {
				if m.Name == "tls" {
					mounts = append(mounts, m)
				}
			}
			var wantMounts []corev1.VolumeMount
			if tc.wantVolume != nil {
				wantMounts = []corev1.VolumeMount{{Name: "tls", MountPath: tlsDir, ReadOnly: true}}
			}
			if !reflect.DeepEqual(mounts, wantMounts) {
				t.Errorf("mounts of tls %+v, want %+v", mounts, wantMounts)
			}
			for name, want := range tc.wantEnv {
				got, ok := envValue(c, name)
				if ok != (want != "") || got != want {
					t.Errorf("%s = %q (set: %v), want %q", name, got, ok, want)
				}
			}

			wantScheme := corev1.URISchemeHTTP
			if tc.wantVolume != nil {
				wantScheme = corev1.URISchemeHTTPS
			}
			for kind, p := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
				// HTTP is the API server's default, filled in on admission.
				if got := p.HTTPGet.Scheme; got != wantScheme && !(got == "" && wantScheme == corev1.URISchemeHTTP) {
					t.Errorf("%s scheme %q, want %s", kind, got, wantScheme)
				}
			}
			if got, want := sts.Spec.Template.Annotations["prometheus.io/scheme"], map[bool]string{true: "https"}[tc.wantVolume != nil]; got != want {
				t.Errorf("annotation prometheus.io/scheme %q, want %q", got, want)
			}

			if eps := onlyServiceMonitor(t, objs).Spec.Endpoints; len(eps) != 1 || !reflect.DeepEqual(eps[0], tc.wantMonitor) {
				t.Errorf("ServiceMonitor endpoints:\n got %s\nwant %s", dump(eps), dump([]smEndpoint{tc.wantMonitor}))
			}
		})
	}
}

// tlsConfig is the ServiceMonitor's tlsConfig with a CA from a Secret's key
// (none when secret is empty).
func tlsConfig(serverName string, insecure *bool, secret, key string) *smTLSConfig {
	c := &smTLSConfig{ServerName: serverName, InsecureSkipVerify: insecure}
	if secret != "" {
		c.CA = &smSecretOrConfigMap{Secret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: key}}
	}
	return c
}
