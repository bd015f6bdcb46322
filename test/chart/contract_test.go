package chart

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/abacus-streams/abacus/internal/api"
	"github.com/abacus-streams/abacus/internal/config"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The contract between the chart and the binary: the chart may only set
// variables the binary reads, with values it accepts, and may only probe and
// scrape paths it serves, on the port it listens on.

// servedPaths is the binary's route table, echo-style ("/healthz",
// "/api/v1/stores/:store/keys/:key").
func servedPaths() []string { return api.ServedPaths() }

// served reports whether a request path (a query is ignored) matches one of
// the served routes; ":name" matches one path segment and "*" the rest.
func served(path string) bool {
	path, _, _ = strings.Cut(path, "?")
	for _, route := range servedPaths() {
		if routeMatches(route, path) {
			return true
		}
	}
	return false
}

func routeMatches(route, path string) bool {
	rs, ps := strings.Split(route, "/"), strings.Split(path, "/")
	for i, r := range rs {
		if r == "*" || strings.HasPrefix(r, "*") {
			return true
		}
		if i >= len(ps) {
			return false
		}
		if strings.HasPrefix(r, ":") {
			if ps[i] == "" {
				return false
			}
			continue
		}
		if r != ps[i] {
			return false
		}
	}
	return len(rs) == len(ps)
}

func TestRouteMatches(t *testing.T) {
	for _, tc := range []struct {
		route, path string
		want        bool
	}{
		{"/healthz", "/healthz", true},
		{"/healthz", "/healthz/x", false},
		{"/readyz", "/healthz", false},
		{"/api/v1/stores/:store/keys/:key", "/api/v1/stores/counts-store/keys/k1", true},
		{"/api/v1/stores/:store/keys/:key", "/api/v1/stores/counts-store/keys/", false},
		{"/api/v1/stores/:store/keys/:key", "/api/v1/stores/counts-store/keys", false},
		{"/static/*", "/static/a/b", true},
	} {
		if got := routeMatches(tc.route, tc.path); got != tc.want {
			t.Errorf("routeMatches(%q, %q) = %v, want %v", tc.route, tc.path, got, tc.want)
		}
	}
}

// TestServedPaths makes sure the route table the other checks rely on is
// there at all.
func TestServedPaths(t *testing.T) {
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if !served(p) {
			t.Errorf("api.ServedPaths() does not list %s: %v", p, servedPaths())
		}
	}
}

// knownSettings is every ABACUS_ variable the binary reads.
func knownSettings() map[string]bool {
	known := map[string]bool{}
	for _, name := range config.SettingNames() {
		known[config.EnvName(name)] = true
	}
	return known
}

// TestContract checks every render case's pod against the binary.
func TestContract(t *testing.T) {
	known := knownSettings()
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			objs := c.render(t)
			checkContract(t, objs, known)
			if c.name == "defaults" {
				checkProbesMatchTheDocs(t, only[*appsv1.StatefulSet](t, objs).Spec.Template.Spec.Containers[0])
			}
		})
	}
}

func checkContract(t *testing.T, objs []object, known map[string]bool) {
	t.Helper()
	sts := only[*appsv1.StatefulSet](t, objs)
	c := container(t, sts)
	pod := sts.Name + "-0"

	// Every ABACUS_ variable is a setting, except the librdkafka
	// pass-through and the config file.
	for _, e := range c.Env {
		if !strings.HasPrefix(e.Name, "ABACUS_") || strings.HasPrefix(e.Name, "ABACUS_KAFKA_") || e.Name == "ABACUS_CONFIG" {
			continue
		}
		if !known[e.Name] {
			t.Errorf("the chart sets %s, which is not a setting of the binary (config.SettingNames)", e.Name)
		}
	}

	// The whole environment passes the binary's own loading and validation.
	cfg, err := config.Load(nil, environ(t, c, pod), io.Discard)
	if err != nil {
		t.Fatalf("the binary rejects the chart's environment: %v", err)
	}
	if cfg.Embedded() {
		t.Error("the chart leaves ABACUS_BOOTSTRAP_SERVERS empty: every pod would run its own embedded broker")
	}
	if cfg.LogFormat != "json" {
		t.Errorf("log format %q, want json", cfg.LogFormat)
	}
	if !fromField(c, "ABACUS_INSTANCE_ID", "metadata.name") || cfg.InstanceID != pod {
		t.Errorf("ABACUS_INSTANCE_ID must be the pod name (downward API metadata.name), got %q", cfg.InstanceID)
	}
	if !fromField(c, "ABACUS_NAMESPACE", "metadata.namespace") {
		t.Error("ABACUS_NAMESPACE must come from the downward API metadata.namespace")
	}
	if cfg.Service != sts.Spec.ServiceName {
		t.Errorf("ABACUS_SERVICE = %q, want the headless Service %q", cfg.Service, sts.Spec.ServiceName)
	}
	if !hasMount(c, "data", cfg.StateDir) {
		t.Errorf("ABACUS_STATE_DIR %s is not where the state volume is mounted", cfg.StateDir)
	}
	for prop := range cfg.Kafka {
		if !regexp.MustCompile(`^[a-z0-9]+(\.[a-z0-9]+)*$`).MatchString(prop) {
			t.Errorf("pass-through variable became librdkafka property %q", prop)
		}
	}

	// One port: the container's http port is ABACUS_HTTP_ADDR's port, and
	// probes, annotations and peer URLs use it.
	port, err := containerPort(c, intstr.FromString("http"))
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(int(port)); cfg.HTTPPort() != want {
		t.Errorf("ABACUS_HTTP_ADDR port %s, container port %s", cfg.HTTPPort(), want)
	}
	checkProbes(t, c, port, cfg)
	checkGracePeriod(t, sts, cfg)
	scheme := "http"
	if cfg.TLSCertFile != "" {
		scheme = "https"
	}
	if ann := sts.Spec.Template.Annotations; ann["prometheus.io/scrape"] == "true" {
		if ann["prometheus.io/port"] != strconv.Itoa(int(port)) {
			t.Errorf("prometheus.io/port %q, container port %d", ann["prometheus.io/port"], port)
		}
		if !served(ann["prometheus.io/path"]) {
			t.Errorf("prometheus.io/path %q is not served (api.ServedPaths: %v)", ann["prometheus.io/path"], servedPaths())
		}
		if got := cmp.Or(ann["prometheus.io/scheme"], "http"); got != scheme {
			t.Errorf("prometheus.io/scheme %q, but the pods serve %s", got, scheme)
		}
	}
	if u := checkPeerURL(t, cfg, pod, port); u != nil && u.Scheme != scheme {
		t.Errorf("peers call each other at %s, but the pods serve %s", u, scheme)
	}
	for _, name := range []string{"ABACUS_TLS_CERT_FILE", "ABACUS_TLS_KEY_FILE", "ABACUS_TLS_CA_FILE"} {
		if path, ok := envValue(c, name); ok {
			if err := mountedFile(sts.Spec.Template.Spec, c, path); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

// mountedFile checks that a path names a file that a Secret volume (plain
// or projected) puts in a read-only mount of the container.
func mountedFile(pod corev1.PodSpec, c *corev1.Container, path string) error {
	dir, file := filepath.Split(path)
	for _, m := range c.VolumeMounts {
		if filepath.Clean(m.MountPath) != filepath.Clean(dir) {
			continue
		}
		if !m.ReadOnly {
			return fmt.Errorf("%s is in mount %s, which is not read-only", path, m.Name)
		}
		v := volume(pod, m.Name)
		if v == nil {
			return fmt.Errorf("mount %s has no volume", m.Name)
		}
		var items []corev1.KeyToPath
		switch {
		case v.Secret != nil:
			items = v.Secret.Items
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil {
					items = append(items, src.Secret.Items...)
				}
			}
		default:
			return fmt.Errorf("%s is in volume %s, which holds no Secret", path, m.Name)
		}
		for _, it := range items {
			if it.Path == file {
				return nil
			}
		}
		return fmt.Errorf("volume %s puts no item at %s (items %+v)", m.Name, file, items)
	}
	return fmt.Errorf("%s is in no mount of the container", path)
}

// fakeSecrets stand for the Secrets the tests name, as the kubelet would
// read them: a missing key of an optional reference leaves its variable
// unset.
var fakeSecrets = map[string]map[string]string{
	"abacus-auth": {
		"token": "t0ken", "basic": "reader:s3cret",
		"api-token": "t0ken", "api-basic": "reader:s3cret",
		"username": "reader", "password": "s3cret",
	},
	"abacus-token-only": {"token": "t0ken"},
}

// environ is the container's environment as the binary would see it in pod
// pod of namespace: downward API fields and fakeSecrets resolved, other
// references faked.
func environ(t *testing.T, c *corev1.Container, pod string) []string {
	t.Helper()
	var env []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			switch {
			case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
				v = pod
			case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
				v = namespace
			case e.ValueFrom.SecretKeyRef != nil && fakeSecrets[e.ValueFrom.SecretKeyRef.Name] != nil:
				ref := e.ValueFrom.SecretKeyRef
				value, ok := fakeSecrets[ref.Name][ref.Key]
				if !ok && (ref.Optional == nil || !*ref.Optional) {
					t.Errorf("%s: Secret %s has no key %s, and the reference is not optional: the pod would not start", e.Name, ref.Name, ref.Key)
				}
				if !ok {
					continue
				}
				v = value
			case strings.HasPrefix(e.Name, "ABACUS_") && !strings.HasPrefix(e.Name, "ABACUS_KAFKA_"):
				t.Errorf("%s comes from a reference the test cannot resolve: %+v", e.Name, e.ValueFrom)
				continue
			default:
				v = "from-reference"
			}
		}
		env = append(env, e.Name+"="+v)
	}
	return env
}

func fromField(c *corev1.Container, name, path string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path
		}
	}
	return false
}

// checkProbes: HTTP probes on served paths and the container's port;
// liveness and startup on /healthz (never readiness's /readyz, which is false
// for as long as a restore takes); the startup window longer than the
// binary's wait for Kafka.
func checkProbes(t *testing.T, c *corev1.Container, port int32, cfg config.Config) {
	t.Helper()
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, "/healthz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an HTTP probe, got %+v", p.kind, p.probe)
			continue
		}
		get := p.probe.HTTPGet
		if !served(get.Path) {
			t.Errorf("%s path %s is not served (api.ServedPaths: %v)", p.kind, get.Path, servedPaths())
		}
		if get.Path != p.path {
			t.Errorf("%s path %s, want %s", p.kind, get.Path, p.path)
		}
		// The kubelet speaks HTTPS to a server that does, and verifies no
		// certificate.
		if want := tlsScheme(cfg); get.Scheme != want && (get.Scheme != "" || want != corev1.URISchemeHTTP) {
			t.Errorf("%s scheme %q, want %s", p.kind, get.Scheme, want)
		}
		if got, err := containerPort(c, get.Port); err != nil || got != port {
			t.Errorf("%s port %s: %d, %v; want the http port %d", p.kind, get.Port.String(), got, err, port)
		}
	}
	if sp := c.StartupProbe; sp != nil {
		window := time.Duration(sp.PeriodSeconds*sp.FailureThreshold) * time.Second
		if window <= cfg.StartupTimeout {
			t.Errorf("startupProbe gives up after %s, before the binary's startup timeout %s", window, cfg.StartupTimeout)
		}
	}
}

// checkProbesMatchTheDocs: the probe timings docs/operations.md gives as
// the chart's defaults are the ones the chart renders by default.
func checkProbesMatchTheDocs(t *testing.T, c corev1.Container) {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	for kind, probe := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		m := regexp.MustCompile(`(?m)^` + kind + `:.*periodSeconds: (\d+), +timeoutSeconds: (\d+), failureThreshold: (\d+)\}`).FindSubmatch(doc)
		if m == nil {
			t.Errorf("docs/operations.md gives no %s line with periodSeconds, timeoutSeconds and failureThreshold", kind)
			continue
		}
		if probe == nil {
			continue
		}
		got := fmt.Sprintf("%d %d %d", probe.PeriodSeconds, probe.TimeoutSeconds, probe.FailureThreshold)
		if want := fmt.Sprintf("%s %s %s", m[1], m[2], m[3]); got != want {
			t.Errorf("%s renders period, timeout, failure threshold %s; docs/operations.md says %s", kind, got, want)
		}
	}
}

// tlsScheme is the scheme the pods serve with the configuration.
func tlsScheme(cfg config.Config) corev1.URIScheme {
	if cfg.TLSCertFile != "" {
		return corev1.URISchemeHTTPS
	}
	return corev1.URISchemeHTTP
}

func checkGracePeriod(t *testing.T, sts *appsv1.StatefulSet, cfg config.Config) {
	t.Helper()
	g := sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil || time.Duration(*g)*time.Second <= cfg.ShutdownTimeout {
		t.Errorf("terminationGracePeriodSeconds %v must exceed ABACUS_SHUTDOWN_TIMEOUT %s", g, cfg.ShutdownTimeout)
	}
}

// checkPeerURL: the peer URL template in force names the pod's stable DNS
// name under the headless Service, on the container's port. It returns the
// pod's URL.
func checkPeerURL(t *testing.T, cfg config.Config, pod string, port int32) *url.URL {
	t.Helper()
	tmpl, err := config.ParsePeerTemplate(cfg.PeerURLTemplate)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	data := config.PeerTemplateData{Member: pod, Ordinal: 0, Namespace: cfg.Namespace, Service: cfg.Service, Port: cfg.HTTPPort()}
	if err := tmpl.Execute(&sb, data); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(sb.String())
	if err != nil {
		t.Fatalf("peer URL %q: %v", sb.String(), err)
	}
	host, p, err := net.SplitHostPort(u.Host)
	wantHost := pod + "." + cfg.Service + "." + namespace + ".svc.cluster.local"
	if err != nil || host != wantHost || p != strconv.Itoa(int(port)) {
		t.Errorf("peer URL %s, want host %s port %d", u, wantHost, port)
	}
	return u
}

// TestNotes renders NOTES.txt and checks its curl lines against the routes.
// helm template does not render NOTES.txt, so the test renders a copy of the
// chart in which the notes are the data of a ConfigMap.
func TestNotes(t *testing.T) {
	text := renderNotes(t)
	for _, want := range []string{
		"curl http://<svc>:8080/api/v1/stores/counts-store/keys/<key>",
		`curl -N "http://<svc>:8080/api/v1/stores/counts-store/subscribe?key=<key>"`,
		"svc/abacus 8080:8080",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, text)
		}
	}
	curls := regexp.MustCompile(`curl (?:-N )?"?http://<svc>:8080([^\s"]+)`).FindAllStringSubmatch(text, -1)
	if len(curls) == 0 {
		t.Fatalf("NOTES.txt has no curl lines:\n%s", text)
	}
	for _, m := range curls {
		if p := strings.ReplaceAll(m[1], "<key>", "k1"); !served(p) {
			t.Errorf("NOTES.txt curls %s, which is not served (api.ServedPaths: %v)", m[1], servedPaths())
		}
	}

	// With TLS every curl line says https, and the notes say how to
	// verify the certificate.
	text = renderNotes(t, "tls.enabled=true", "tls.existingSecret=abacus-tls")
	if n := len(regexp.MustCompile(`curl (?:-N )?"?https://<svc>:8080/`).FindAllString(text, -1)); n != len(curls) || strings.Contains(text, "http://<svc>") {
		t.Errorf("with TLS, want %d curl lines at https://, got %d:\n%s", len(curls), n, text)
	}
	for _, want := range []string{"https://abacus.streams.svc.cluster.local:8080", "--cacert ca.crt, from key ca.crt of Secret abacus-tls", "--resolve abacus.streams.svc:8080:127.0.0.1"} {
		if !strings.Contains(text, want) {
			t.Errorf("NOTES.txt with TLS lacks %q:\n%s", want, text)
		}
	}

	// With authentication the notes say where the credentials are.
	text = renderNotes(t, "auth.existingSecret=abacus-auth", `auth.tokenKey=api\.token`)
	for _, want := range []string{
		`add -H "Authorization: Bearer $TOKEN"`,
		`get secret abacus-auth -o jsonpath='{.data.api\.token}' | base64 -d)`,
		`or -u "$(kubectl --namespace streams get secret abacus-auth -o jsonpath='{.data.basic}' | base64 -d)"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("NOTES.txt with authentication lacks %q:\n%s", want, text)
		}
	}
}

// renderNotes renders NOTES.txt with the given --set pairs.
func renderNotes(t *testing.T, sets ...string) string {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, chartDir(t), dir)
	notes, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt"))
	if err != nil {
		t.Fatal(err)
	}
	wrapper := `{{- define "notes-under-test" }}` + string(notes) + "{{- end }}\n" +
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include \"notes-under-test\" . | quote }}\n"
	if err := os.Remove(filepath.Join(dir, "templates", "NOTES.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "templates", "notes-under-test.yaml"), []byte(wrapper), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := helmTemplate(t, dir, nil, sets)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	cms := all[*corev1.ConfigMap](objs)
	if len(cms) != 1 {
		t.Fatalf("want the notes' ConfigMap, rendered %d ConfigMaps", len(cms))
	}
	return cms[0].Data["notes"]
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
