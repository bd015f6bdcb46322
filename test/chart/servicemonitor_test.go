package chart

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// serviceMonitor is the part of monitoring.coreos.com/v1 ServiceMonitor the
// chart renders. The operator's Go types are not imported (they would pull
// the operator's module in for one struct), so the fields the chart may use
// are declared here and the manifest is decoded into them with unknown
// fields rejected, as the strict decoder does for k8s.io/api types.
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string `json:"jobLabel,omitempty"`
		NamespaceSelector struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector"`
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []smEndpoint         `json:"endpoints"`
	} `json:"spec"`
}

// smEndpoint is one endpoint of a ServiceMonitor.
type smEndpoint struct {
	Port          string           `json:"port"`
	Path          string           `json:"path"`
	Interval      string           `json:"interval,omitempty"`
	ScrapeTimeout string           `json:"scrapeTimeout,omitempty"`
	Scheme        string           `json:"scheme,omitempty"`
	TLSConfig     *smTLSConfig     `json:"tlsConfig,omitempty"`
	Authorization *smAuthorization `json:"authorization,omitempty"`
	BasicAuth     *smBasicAuth     `json:"basicAuth,omitempty"`
}

// smAuthorization is the operator's SafeAuthorization: an Authorization
// header of the type with credentials from a Secret's key.
type smAuthorization struct {
	Type        string                    `json:"type,omitempty"`
	Credentials *corev1.SecretKeySelector `json:"credentials,omitempty"`
}

// smBasicAuth is the operator's BasicAuth: user and password from Secrets'
// keys.
type smBasicAuth struct {
	Username corev1.SecretKeySelector `json:"username"`
	Password corev1.SecretKeySelector `json:"password"`
}

// smTLSConfig is the operator's TLSConfig, as far as the chart fills it.
type smTLSConfig struct {
	ServerName         string               `json:"serverName,omitempty"`
	InsecureSkipVerify *bool                `json:"insecureSkipVerify,omitempty"`
	CA                 *smSecretOrConfigMap `json:"ca,omitempty"`
}

// smSecretOrConfigMap is the operator's reference to a key of a Secret (or
// ConfigMap, which the chart does not use).
type smSecretOrConfigMap struct {
	Secret *corev1.SecretKeySelector `json:"secret,omitempty"`
}

// dump shows a value as JSON, for messages that compare nested structs.
func dump(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// decodeServiceMonitor decodes a rendered ServiceMonitor by hand,
// rejecting fields the chart is not meant to render.
func decodeServiceMonitor(t *testing.T, o object) *serviceMonitor {
	t.Helper()
	js, err := yaml.YAMLToJSONStrict(o.Raw)
	if err != nil {
		t.Fatalf("%s: %v", o.Source, err)
	}
	var sm serviceMonitor
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sm); err != nil {
		t.Fatalf("%s: %s does not decode strictly: %v", o.Source, o.Kind, err)
	}
	return &sm
}

// checkServiceMonitor: it selects exactly the headless Service in the
// release's namespace and scrapes its http port at the metrics path.
func checkServiceMonitor(t *testing.T, o object, objs []object) {
	t.Helper()
	sm := decodeServiceMonitor(t, o)
	if sm.APIVersion != "monitoring.coreos.com/v1" || sm.Kind != "ServiceMonitor" {
		t.Errorf("ServiceMonitor is %s %s", sm.APIVersion, sm.Kind)
	}
	if !reflect.DeepEqual(sm.Spec.NamespaceSelector.MatchNames, []string{namespace}) {
		t.Errorf("ServiceMonitor looks in namespaces %v, want [%s]", sm.Spec.NamespaceSelector.MatchNames, namespace)
	}
	if len(sm.Spec.Selector.MatchExpressions) != 0 {
		t.Error("ServiceMonitor selector uses expressions the test cannot evaluate")
	}
	sts := only[*appsv1.StatefulSet](t, objs)
	var selected []*corev1.Service
	for _, svc := range all[*corev1.Service](objs) {
		if subset(sm.Spec.Selector.MatchLabels, svc.Labels) {
			selected = append(selected, svc)
		}
	}
	// The headless Service, so that pods that are still restoring (not
	// ready) are scraped too.
	if len(selected) != 1 || selected[0].Name != sts.Spec.ServiceName {
		var names []string
		for _, s := range selected {
			names = append(names, s.Name)
		}
		t.Fatalf("ServiceMonitor selects Services %v, want only the headless %s", names, sts.Spec.ServiceName)
	}
	if len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("want one endpoint, got %d", len(sm.Spec.Endpoints))
	}
	ep := sm.Spec.Endpoints[0]
	found := false
	for _, p := range selected[0].Spec.Ports {
		found = found || p.Name == ep.Port
	}
	if !found {
		t.Errorf("ServiceMonitor scrapes port %q, which Service %s does not have", ep.Port, selected[0].Name)
	}
	if !served(ep.Path) {
		t.Errorf("ServiceMonitor scrapes %s, which abacus does not serve (api.ServedPaths: %v)", ep.Path, servedPaths())
	}
	// The scheme the pods serve, and a certificate Prometheus verifies.
	c := container(t, sts)
	if _, tls := envValue(c, "ABACUS_TLS_CERT_FILE"); tls {
		if ep.Scheme != "https" || ep.TLSConfig == nil || ep.TLSConfig.ServerName == "" ||
			ep.TLSConfig.InsecureSkipVerify == nil || *ep.TLSConfig.InsecureSkipVerify {
			t.Errorf("the pods serve HTTPS; want scheme https and a verifying tlsConfig with a serverName, got %q %+v", ep.Scheme, ep.TLSConfig)
		}
	} else if ep.Scheme != "" || ep.TLSConfig != nil {
		t.Errorf("the pods serve HTTP; got scheme %q and tlsConfig %+v", ep.Scheme, ep.TLSConfig)
	}
	// Credentials when /metrics needs them: the pods' token, or basic ones.
	if metricsAuth, _ := envValue(c, "ABACUS_AUTH_METRICS"); metricsAuth == "true" {
		switch {
		case ep.Authorization != nil:
			token := envSecret(c, "ABACUS_AUTH_TOKEN")
			if ep.Authorization.Type != "Bearer" || token == nil || ep.Authorization.Credentials == nil ||
				ep.Authorization.Credentials.Name != token.Name || ep.Authorization.Credentials.Key != token.Key {
				t.Errorf("ServiceMonitor authorization %s, want Bearer with the pods' token %s", dump(ep.Authorization), dump(token))
			}
		case ep.BasicAuth != nil:
			if ep.BasicAuth.Username.Key == "" || ep.BasicAuth.Password.Key == "" || envSecret(c, "ABACUS_AUTH_BASIC") == nil {
				t.Errorf("ServiceMonitor basicAuth %s, want a user and a password key beside the pods' basic credentials", dump(ep.BasicAuth))
			}
		default:
			t.Error("/metrics needs credentials (ABACUS_AUTH_METRICS=true), and the ServiceMonitor sends none")
		}
	} else if ep.Authorization != nil || ep.BasicAuth != nil {
		t.Errorf("/metrics needs no credentials, and the ServiceMonitor sends %s %s", dump(ep.Authorization), dump(ep.BasicAuth))
	}
	interval, err1 := time.ParseDuration(ep.Interval)
	timeout, err2 := time.ParseDuration(ep.ScrapeTimeout)
	if err1 != nil || err2 != nil || timeout > interval {
		t.Errorf("interval %q and scrapeTimeout %q: want durations with timeout <= interval", ep.Interval, ep.ScrapeTimeout)
	}
}

// onlyServiceMonitor decodes the one ServiceMonitor rendered, failing unless
// there is exactly one.
func onlyServiceMonitor(t *testing.T, objs []object) *serviceMonitor {
	t.Helper()
	var monitors []*serviceMonitor
	for _, o := range objs {
		if o.Kind == "ServiceMonitor" {
			monitors = append(monitors, decodeServiceMonitor(t, o))
		}
	}
	if len(monitors) != 1 {
		t.Fatalf("want one ServiceMonitor, rendered %d", len(monitors))
	}
	return monitors[0]
}
