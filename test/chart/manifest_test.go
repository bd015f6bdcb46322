package chart

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// renderCase is one way to install the chart.
type renderCase struct {
	name  string
	files []string // under testdata/
	sets  []string
	// kinds are the kinds the case must render, sorted, with repeats.
	kinds []string
}

var baseKinds = []string{"PodDisruptionBudget", "Service", "Service", "ServiceAccount", "StatefulSet"}

func renderCases() []renderCase {
	return []renderCase{
		{name: "defaults", kinds: baseKinds},
		{name: "all-on", files: []string{"all-on.yaml"},
			kinds: []string{"ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Service", "Service", "ServiceAccount", "ServiceMonitor", "StatefulSet"}},
		{name: "no-persistence", sets: []string{"persistence.enabled=false"}, kinds: baseKinds},
		{name: "no-standbys", sets: []string{"standbyReplicas=0"}, kinds: baseKinds},
		{name: "no-storage-class", sets: []string{"persistence.storageClassName=-"}, kinds: baseKinds},
		{name: "custom-affinity", files: []string{"custom-affinity.yaml"}, kinds: baseKinds},
		{name: "everything-off", sets: []string{
			"podAntiAffinity.type=none", "topologySpread.enabled=false", "podDisruptionBudget.enabled=false",
			"serviceAccount.create=false", "metrics.podAnnotations=false", "kafka.sessionTimeoutMs=null",
		}, kinds: []string{"Service", "Service", "StatefulSet"}},
		{name: "long-name", sets: []string{"fullnameOverride=" + strings.Repeat("a-very-long-release-name-", 4)}, kinds: baseKinds},
	}
}

func (c renderCase) render(t *testing.T) []object {
	t.Helper()
	var files []string
	for _, f := range c.files {
		files = append(files, testdata(t, f))
	}
	return render(t, files, c.sets...)
}

// TestManifests renders every case (each object decoding strictly into its
// k8s.io/api type) and checks that the objects fit together.
func TestManifests(t *testing.T) {
	for _, c := range renderCases() {
		t.Run(c.name, func(t *testing.T) {
			objs := c.render(t)
			var kinds []string
			for _, o := range objs {
				kinds = append(kinds, o.Kind)
			}
			sort.Strings(kinds)
			if !reflect.DeepEqual(kinds, c.kinds) {
				t.Errorf("rendered kinds %v, want %v", kinds, c.kinds)
			}
			checkMetadata(t, objs)
			checkStatefulSet(t, objs)
			checkServices(t, objs)
			checkDisruptionBudget(t, objs)
			checkNetworkPolicy(t, objs)
			for _, o := range objs {
				if o.Kind == "ServiceMonitor" {
					checkServiceMonitor(t, o, objs)
				}
			}
		})
	}
}

// TestDefaults pins what `helm install abacus charts/abacus` gives.
func TestDefaults(t *testing.T) {
	objs := render(t, nil)
	sts := only[*appsv1.StatefulSet](t, objs)
	pod := sts.Spec.Template.Spec
	if got := *sts.Spec.Replicas; got != 3 {
		t.Errorf("replicas = %d, want 3", got)
	}
	if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 ||
		len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
		t.Errorf("want one preferred pod anti-affinity term by default, got %+v", a)
	}
	if len(pod.TopologySpreadConstraints) != 1 {
		t.Errorf("want one topology spread constraint, got %d", len(pod.TopologySpreadConstraints))
	}
	if vct := sts.Spec.VolumeClaimTemplates; len(vct) != 1 || vct[0].Spec.StorageClassName != nil {
		t.Errorf("want one volume claim template with the cluster's default class, got %+v", vct)
	}
	for k, want := range map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"} {
		if got := sts.Spec.Template.Annotations[k]; got != want {
			t.Errorf("pod annotation %s = %q, want %q", k, got, want)
		}
	}
	if c := container(t, sts); c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("want CPU requests and a memory limit by default, got %+v", c.Resources)
	}
	if _, ok := envValue(container(t, sts), "ABACUS_PEER_URL_TEMPLATE"); ok {
		t.Error("ABACUS_PEER_URL_TEMPLATE is set by default; the binary's default should apply")
	}
	// One standby copy of each task by default, so that losing a pod with
	// its disk restores a delta, not whole changelogs.
	if got, _ := envValue(container(t, sts), "ABACUS_NUM_STANDBY_REPLICAS"); got != "1" {
		t.Errorf("ABACUS_NUM_STANDBY_REPLICAS = %q, want 1", got)
	}
}

// TestAllOn checks that each option of testdata/all-on.yaml reached the
// objects.
func TestAllOn(t *testing.T) {
	objs := render(t, []string{testdata(t, "all-on.yaml")})
	sts := only[*appsv1.StatefulSet](t, objs)
	pod := sts.Spec.Template.Spec
	c := container(t, sts)

	if got := *sts.Spec.Replicas; got != 5 {
		t.Errorf("replicas = %d, want 5", got)
	}
	if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Errorf("want a required pod anti-affinity term, got %+v", a)
	}
	if got := pod.TopologySpreadConstraints[0].WhenUnsatisfiable; got != corev1.DoNotSchedule {
		t.Errorf("whenUnsatisfiable = %s", got)
	}
	if c.Image != "registry.example.com/abacus:1.2.3" || c.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s (%s)", c.Image, c.ImagePullPolicy)
	}
	if len(pod.ImagePullSecrets) != 1 || pod.PriorityClassName != "streaming" || len(pod.Tolerations) != 1 || pod.NodeSelector["disk"] != "ssd" {
		t.Errorf("pull secrets, priority class, tolerations or node selector missing: %+v", pod)
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds != 90 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 90", pod.TerminationGracePeriodSeconds)
	}
	vct := sts.Spec.VolumeClaimTemplates[0]
	if vct.Spec.StorageClassName == nil || *vct.Spec.StorageClassName != "fast-ssd" || vct.Spec.Resources.Requests.Storage().String() != "50Gi" {
		t.Errorf("volume claim template %+v", vct.Spec)
	}
	if p := sts.Spec.PersistentVolumeClaimRetentionPolicy; p == nil || p.WhenDeleted != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		t.Errorf("retention policy %+v", p)
	}
	if len(c.EnvFrom) != 2 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "abacus-kafka" {
		t.Errorf("want envFrom the Kafka Secret then the extra source, got %+v", c.EnvFrom)
	}
	for name, want := range map[string]string{
		"ABACUS_KAFKA_SECURITY_PROTOCOL":                   "SASL_SSL",
		"ABACUS_KAFKA_FETCH_MAX_BYTES":                     "52428800",
		"ABACUS_KAFKA_ENABLE_SSL_CERTIFICATE_VERIFICATION": "true",
		"ABACUS_KAFKA_SESSION_TIMEOUT_MS":                  "120000",
		"ABACUS_PEER_URL_TEMPLATE":                         "https://{{.Member}}.{{.Service}}.{{.Namespace}}.svc.cluster.local:{{.Port}}",
		"ABACUS_TLS_CERT_FILE":                             "/etc/abacus/tls/tls.crt",
		"ABACUS_TLS_KEY_FILE":                              "/etc/abacus/tls/tls.key",
		"ABACUS_TLS_CA_FILE":                               "/etc/abacus/tls/ca.crt",
		"ABACUS_AUTH_METRICS":                              "true",
		"ABACUS_CACHE_MAX_BYTES":                           "0",
		"ABACUS_PROCESSING_GUARANTEE":                      "exactly_once_v2",
		"ABACUS_KAFKA_STATISTICS_INTERVAL_MS":              "60000",
		"ABACUS_SHUTDOWN_TIMEOUT":                          "60s",
		"ABACUS_NUM_STANDBY_REPLICAS":                      "2",
		"ABACUS_REPLICATION_FACTOR":                        "3",
		"ABACUS_CREATE_TOPICS":                             "false",
	} {
		if got, _ := envValue(c, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for name, key := range map[string]string{"ABACUS_AUTH_TOKEN": "api-token", "ABACUS_AUTH_BASIC": "api-basic"} {
		if ref := envSecret(c, name); ref == nil || ref.Name != "abacus-auth" || ref.Key != key {
			t.Errorf("%s from %+v, want key %s of Secret abacus-auth", name, ref, key)
		}
	}
	if ep := onlyServiceMonitor(t, objs).Spec.Endpoints[0]; ep.Authorization == nil || ep.Authorization.Credentials.Key != "api-token" {
		t.Errorf("ServiceMonitor authorization %s, want the token of key api-token", dump(ep.Authorization))
	}
	if _, ok := envValue(c, "GOMEMLIMIT"); !ok {
		t.Error("extraEnv GOMEMLIMIT missing")
	}
	if !hasMount(c, "kafka-tls", "/etc/abacus/kafka-tls") || volume(pod, "kafka-tls") == nil {
		t.Error("extra volume kafka-tls is not mounted")
	}
	if v := volume(pod, "tls"); !hasMount(c, "tls", "/etc/abacus/tls") || v == nil || v.Projected == nil || len(v.Projected.Sources) != 2 ||
		v.Projected.Sources[1].Secret.Name != "abacus-ca" || v.Projected.Sources[1].Secret.Items[0].Key != "ca.pem" {
		t.Errorf("want the TLS Secret and the CA Secret's ca.pem mounted at /etc/abacus/tls, got %+v", v)
	}
	if sts.Spec.Template.Labels["team"] != "streams" || sts.Spec.Template.Annotations["example.com/owner"] != "streams" {
		t.Error("podLabels or podAnnotations missing")
	}
	client := serviceNamed(t, objs, "counts")
	if client.Spec.Ports[0].Port != 80 || client.Annotations["example.com/lb"] != "internal" {
		t.Errorf("client Service %+v", client)
	}
	np := only[*networkingv1.NetworkPolicy](t, objs)
	if from := np.Spec.Ingress[0].From; len(from) != 3 {
		t.Errorf("want peers plus the two listed sources, got %+v", from)
	}
	if sa := only[*corev1.ServiceAccount](t, objs); sa.Name != "counts-sa" || sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
		t.Errorf("ServiceAccount %+v", sa.ObjectMeta)
	} else if pod.ServiceAccountName != sa.Name {
		t.Errorf("pods run as %q, not the chart's ServiceAccount %q", pod.ServiceAccountName, sa.Name)
	}
}

// TestVariants checks the options that all-on cannot show at once.
func TestVariants(t *testing.T) {
	t.Run("no-persistence", func(t *testing.T) {
		sts := only[*appsv1.StatefulSet](t, render(t, nil, "persistence.enabled=false"))
		if len(sts.Spec.VolumeClaimTemplates) != 0 || sts.Spec.PersistentVolumeClaimRetentionPolicy != nil {
			t.Error("volume claims rendered with persistence disabled")
		}
		if v := volume(sts.Spec.Template.Spec, "data"); v == nil || v.EmptyDir == nil {
			t.Errorf("want an emptyDir data volume, got %+v", v)
		}
	})
	t.Run("no-storage-class", func(t *testing.T) {
		sts := only[*appsv1.StatefulSet](t, render(t, nil, "persistence.storageClassName=-"))
		if sc := sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName; sc == nil || *sc != "" {
			t.Errorf(`storageClassName "-" should render as "", got %v`, sc)
		}
	})
	t.Run("custom-affinity", func(t *testing.T) {
		sts := only[*appsv1.StatefulSet](t, render(t, []string{testdata(t, "custom-affinity.yaml")}))
		if a := sts.Spec.Template.Spec.Affinity; a == nil || a.NodeAffinity == nil || a.PodAntiAffinity != nil {
			t.Errorf("affinity should replace the generated anti-affinity, got %+v", a)
		}
	})
	t.Run("everything-off", func(t *testing.T) {
		sts := only[*appsv1.StatefulSet](t, render(t, nil, "podAntiAffinity.type=none", "topologySpread.enabled=false",
			"metrics.podAnnotations=false", "serviceAccount.create=false", "kafka.sessionTimeoutMs=null"))
		pod := sts.Spec.Template.Spec
		if pod.Affinity != nil || len(pod.TopologySpreadConstraints) != 0 || len(sts.Spec.Template.Annotations) != 0 {
			t.Errorf("affinity %+v, spread %+v, annotations %v", pod.Affinity, pod.TopologySpreadConstraints, sts.Spec.Template.Annotations)
		}
		if pod.ServiceAccountName != "default" {
			t.Errorf("serviceAccountName = %q, want default", pod.ServiceAccountName)
		}
		if _, ok := envValue(container(t, sts), "ABACUS_KAFKA_SESSION_TIMEOUT_MS"); ok {
			t.Error("sessionTimeoutMs null should leave librdkafka's default")
		}
	})
	t.Run("session-timeout-property-wins", func(t *testing.T) {
		sts := only[*appsv1.StatefulSet](t, render(t, nil, `kafka.properties.session\.timeout\.ms=30000`))
		c := container(t, sts)
		if got, _ := envValue(c, "ABACUS_KAFKA_SESSION_TIMEOUT_MS"); got != "30000" || countEnv(c, "ABACUS_KAFKA_SESSION_TIMEOUT_MS") != 1 {
			t.Errorf("want the property's 30000 once, got %q (%d times)", got, countEnv(c, "ABACUS_KAFKA_SESSION_TIMEOUT_MS"))
		}
	})
	t.Run("no-standbys", func(t *testing.T) {
		sts := only[*appsv1.StatefulSet](t, render(t, nil, "standbyReplicas=0"))
		if got, _ := envValue(container(t, sts), "ABACUS_NUM_STANDBY_REPLICAS"); got != "0" {
			t.Errorf("ABACUS_NUM_STANDBY_REPLICAS = %q, want 0", got)
		}
	})
	t.Run("grace-period-derived", func(t *testing.T) {
		sts := only[*appsv1.StatefulSet](t, render(t, nil, "config.shutdownTimeoutSeconds=100"))
		if g := sts.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g != 115 {
			t.Errorf("terminationGracePeriodSeconds = %v, want 115", g)
		}
	})
}

// checkMetadata: every object is in the release's namespace, labelled as the
// release's, and named as Kubernetes allows.
func checkMetadata(t *testing.T, objs []object) {
	t.Helper()
	for _, o := range objs {
		meta, ok := o.Obj.(metav1.Object)
		if !ok {
			t.Errorf("%s: %T has no metadata", o.Source, o.Obj)
			continue
		}
		// The dashboard's ConfigMap goes where Grafana's sidecar looks
		// (grafanaDashboard.namespace; TestGrafanaDashboardValues).
		if meta.GetNamespace() != namespace && !strings.HasSuffix(o.Source, "/dashboard-configmap.yaml") {
			t.Errorf("%s %s: namespace %q, want %q", o.Kind, o.Name, meta.GetNamespace(), namespace)
		}
		if meta.GetLabels()["app.kubernetes.io/instance"] != release {
			t.Errorf("%s %s: missing the release label", o.Kind, o.Name)
		}
		for k, v := range meta.GetLabels() {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s %s: label %s=%q: %v", o.Kind, o.Name, k, v, errs)
			}
		}
		if errs := validation.IsDNS1035Label(o.Name); len(errs) > 0 {
			t.Errorf("%s name %q: %v", o.Kind, o.Name, errs)
		}
	}
}

// checkStatefulSet holds the pod template to the rules a StatefulSet of
// abacus needs: parallel start, a selector that selects its pods, one
// container, no service links, a locked-down security context.
func checkStatefulSet(t *testing.T, objs []object) {
	t.Helper()
	sts := only[*appsv1.StatefulSet](t, objs)
	// The controller labels each pod with "<name>-<10-character hash>".
	if len(sts.Name) > 52 {
		t.Errorf("StatefulSet name %q is longer than 52 characters", sts.Name)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy = %q, want Parallel", sts.Spec.PodManagementPolicy)
	}
	if !subset(sts.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) {
		t.Errorf("selector %v does not select the pod labels %v", sts.Spec.Selector.MatchLabels, sts.Spec.Template.Labels)
	}
	pod := sts.Spec.Template.Spec
	c := container(t, sts)
	if len(pod.Containers) != 1 {
		t.Errorf("want one container, got %d", len(pod.Containers))
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks must be false: Service links inject ABACUS_* look-alike variables")
	}

	// Security: non-root, read-only root, no capabilities, RuntimeDefault
	// seccomp, and an fsGroup so the state volume is writable.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.FSGroup == nil ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v", psc)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v", sc)
	}

	// Every mount has a volume, from the pod or from a claim template, and
	// the state volume claims are ReadWriteOnce.
	claims := map[string]corev1.PersistentVolumeClaim{}
	for _, vct := range sts.Spec.VolumeClaimTemplates {
		claims[vct.Name] = vct
		if !reflect.DeepEqual(vct.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
			t.Errorf("claim %s: access modes %v, want ReadWriteOnce", vct.Name, vct.Spec.AccessModes)
		}
		if vct.Spec.Resources.Requests.Storage().IsZero() {
			t.Errorf("claim %s requests no storage", vct.Name)
		}
	}
	for _, m := range c.VolumeMounts {
		_, claimed := claims[m.Name]
		if volume(pod, m.Name) == nil && !claimed {
			t.Errorf("mount %s at %s has no volume", m.Name, m.MountPath)
		}
		if volume(pod, m.Name) != nil && claimed {
			t.Errorf("volume %s is both a pod volume and a claim template", m.Name)
		}
	}
	if !hasMount(c, "data", "/data") {
		t.Error("the state volume data is not mounted at /data")
	}
	if !hasMount(c, "tmp", "/tmp") {
		t.Error("no writable /tmp under a read-only root file system")
	}
	if len(pod.TopologySpreadConstraints) > 0 && !subset(pod.TopologySpreadConstraints[0].LabelSelector.MatchLabels, sts.Spec.Template.Labels) {
		t.Error("the topology spread constraint does not select the pods")
	}
	if a := pod.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			if !subset(term.PodAffinityTerm.LabelSelector.MatchLabels, sts.Spec.Template.Labels) {
				t.Error("the preferred anti-affinity term does not select the pods")
			}
		}
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if !subset(term.LabelSelector.MatchLabels, sts.Spec.Template.Labels) {
				t.Error("the required anti-affinity term does not select the pods")
			}
		}
	}
	names := map[string]int{}
	for _, e := range c.Env {
		names[e.Name]++
	}
	for name, n := range names {
		if n > 1 {
			t.Errorf("environment variable %s is set %d times", name, n)
		}
	}
}

// checkServices: a headless Service publishing not-ready pods is the
// StatefulSet's serviceName; every Service selects the pods and targets the
// container's http port.
func checkServices(t *testing.T, objs []object) {
	t.Helper()
	sts := only[*appsv1.StatefulSet](t, objs)
	c := container(t, sts)
	var headless, clients int
	for _, svc := range all[*corev1.Service](objs) {
		if !reflect.DeepEqual(svc.Spec.Selector, sts.Spec.Selector.MatchLabels) {
			t.Errorf("Service %s selects %v, the StatefulSet %v", svc.Name, svc.Spec.Selector, sts.Spec.Selector.MatchLabels)
		}
		for _, p := range svc.Spec.Ports {
			if _, err := containerPort(c, p.TargetPort); err != nil {
				t.Errorf("Service %s port %s: %v", svc.Name, p.Name, err)
			}
		}
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			headless++
			if svc.Name != sts.Spec.ServiceName {
				t.Errorf("headless Service %s is not the StatefulSet's serviceName %s", svc.Name, sts.Spec.ServiceName)
			}
			if !svc.Spec.PublishNotReadyAddresses {
				t.Errorf("headless Service %s must publish not-ready addresses so peers reach restoring pods", svc.Name)
			}
		} else {
			clients++
		}
	}
	if headless != 1 || clients != 1 {
		t.Errorf("want one headless and one client Service, got %d and %d", headless, clients)
	}
}

func checkDisruptionBudget(t *testing.T, objs []object) {
	t.Helper()
	sts := only[*appsv1.StatefulSet](t, objs)
	for _, pdb := range all[*policyv1.PodDisruptionBudget](objs) {
		if !reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, sts.Spec.Selector.MatchLabels) {
			t.Errorf("PodDisruptionBudget selects %v, the StatefulSet %v", pdb.Spec.Selector.MatchLabels, sts.Spec.Selector.MatchLabels)
		}
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MinAvailable != nil {
			t.Errorf("want maxUnavailable only, got %+v", pdb.Spec)
		}
	}
}

func checkNetworkPolicy(t *testing.T, objs []object) {
	t.Helper()
	sts := only[*appsv1.StatefulSet](t, objs)
	c := container(t, sts)
	for _, np := range all[*networkingv1.NetworkPolicy](objs) {
		if !reflect.DeepEqual(np.Spec.PodSelector.MatchLabels, sts.Spec.Selector.MatchLabels) {
			t.Errorf("NetworkPolicy selects %v", np.Spec.PodSelector.MatchLabels)
		}
		peersAllowed := false
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if _, err := containerPort(c, *p.Port); err != nil {
					t.Errorf("NetworkPolicy port: %v", err)
				}
			}
			if len(rule.From) == 0 {
				peersAllowed = true
			}
			for _, from := range rule.From {
				if from.PodSelector != nil && from.NamespaceSelector == nil && subset(from.PodSelector.MatchLabels, sts.Spec.Template.Labels) {
					peersAllowed = true
				}
			}
		}
		if !peersAllowed {
			t.Error("the NetworkPolicy keeps peers from forwarding requests to each other")
		}
	}
}

// container is the abacus container of the StatefulSet.
func container(t *testing.T, sts *appsv1.StatefulSet) *corev1.Container {
	t.Helper()
	for i := range sts.Spec.Template.Spec.Containers {
		if c := &sts.Spec.Template.Spec.Containers[i]; c.Name == "abacus" {
			return c
		}
	}
	t.Fatal("no container named abacus")
	return nil
}

// containerPort resolves a port given by name or number against the
// container's ports.
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, error) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("port %s is not a port of container %s", p.String(), c.Name)
}

func envValue(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

// envSecret is the Secret key a variable comes from, or nil.
func envSecret(c *corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

func countEnv(c *corev1.Container, name string) int {
	n := 0
	for _, e := range c.Env {
		if e.Name == name {
			n++
		}
	}
	return n
}

func hasMount(c *corev1.Container, name, path string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == name && m.MountPath == path {
			return true
		}
	}
	return false
}

func volume(pod corev1.PodSpec, name string) *corev1.Volume {
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == name {
			return &pod.Volumes[i]
		}
	}
	return nil
}

func serviceNamed(t *testing.T, objs []object, name string) *corev1.Service {
	t.Helper()
	for _, svc := range all[*corev1.Service](objs) {
		if svc.Name == name {
			return svc
		}
	}
	t.Fatalf("no Service %s", name)
	return nil
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
