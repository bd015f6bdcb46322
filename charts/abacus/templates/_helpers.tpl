{{/*
The chart name, or nameOverride.
*/}}
{{- define "abacus.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects. 52 characters at most: the
StatefulSet controller labels each pod with "<name>-<10-character hash>",
and a label value may not exceed 63 characters.
*/}}
{{- define "abacus.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The headless Service that gives each pod its stable DNS name
(<pod>.<headless>.<namespace>.svc.cluster.local); peers forward requests
through it. It is the StatefulSet's serviceName and ABACUS_SERVICE.
*/}}
{{- define "abacus.headlessName" -}}
{{- printf "%s-headless" (include "abacus.fullname" .) }}
{{- end }}

{{- define "abacus.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "abacus.labels" -}}
helm.sh/chart: {{ include "abacus.chart" . }}
{{ include "abacus.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the release's pods; they never change after install.
*/}}
{{- define "abacus.selectorLabels" -}}
app.kubernetes.io/name: {{ include "abacus.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "abacus.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "abacus.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The port abacus serves HTTP on: probes, metrics, the API and peers. It is
ABACUS_HTTP_ADDR's port and the image's EXPOSE, so it is not a value.
*/}}
{{- define "abacus.httpPort" -}}
8080
{{- end }}

{{/*
terminationGracePeriodSeconds: longer than the shutdown timeout, so that
the process commits and checkpoints before the kubelet kills it.
*/}}
{{- define "abacus.terminationGracePeriodSeconds" -}}
{{- $shutdown := int .Values.config.shutdownTimeoutSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $shutdown 15 }}
{{- else }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- if le $grace $shutdown }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than config.shutdownTimeoutSeconds (%d): the pod would be killed in the middle of its shutdown" $grace $shutdown) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
The librdkafka pass-through variable of a property: ABACUS_KAFKA_ and the
property upper-cased with dots as underscores (sasl.password ->
ABACUS_KAFKA_SASL_PASSWORD).
*/}}
{{- define "abacus.kafkaEnvName" -}}
{{- printf "ABACUS_KAFKA_%s" (. | upper | replace "." "_") }}
{{- end }}

{{/*
A scalar value as a string. Numbers from values files arrive as float64,
which would print large integers as 1.048576e+07; whole numbers are printed
as integers instead.
*/}}
{{- define "abacus.scalar" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
Where the TLS Secret is mounted: tls.crt, tls.key and, with tls.caKey,
ca.crt (ABACUS_TLS_CERT_FILE, _KEY_FILE, _CA_FILE).
*/}}
{{- define "abacus.tlsDir" -}}
/etc/abacus/tls
{{- end }}

{{/*
The Secret that holds the CA bundle under tls.caKey.
*/}}
{{- define "abacus.tlsCaSecret" -}}
{{- default .Values.tls.existingSecret .Values.tls.caSecret }}
{{- end }}

{{/*
The peer URL template the pods get, or nothing for the binary's default
(http://...). With TLS and no template of the user's, the binary's default
with https://. Helm renders none of it: the braces reach the process.
*/}}
{{- define "abacus.peerUrlTemplate" -}}
{{- if .Values.config.peerUrlTemplate }}
{{- .Values.config.peerUrlTemplate }}
{{- else if .Values.tls.enabled }}
{{- "https://{{.Member}}.{{.Service}}.{{.Namespace}}.svc.cluster.local:{{.Port}}" }}
{{- end }}
{{- end }}

{{/*
The name Prometheus verifies the pods' certificate against: tls.serverName,
or the first pod's peer DNS name, which a certificate valid for the calls
between pods holds, listed or under *.<headless>.<namespace>.svc.cluster.local.
*/}}
{{- define "abacus.tlsServerName" -}}
{{- if .Values.tls.serverName }}
{{- .Values.tls.serverName }}
{{- else }}
{{- printf "%s-0.%s.%s.svc.cluster.local" (include "abacus.fullname" .) (include "abacus.headlessName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
TLS values that cannot work together fail the install with what to do.
*/}}
{{- define "abacus.checkTls" -}}
{{- if .Values.tls.enabled }}
{{- if not .Values.tls.existingSecret }}
{{- fail "tls.enabled needs tls.existingSecret: the name of a kubernetes.io/tls Secret with tls.crt and tls.key (and ca.crt, the CA the pods verify each other with; see tls.caKey)" }}
{{- end }}
{{- if hasPrefix "http://" .Values.config.peerUrlTemplate }}
{{- fail (printf "config.peerUrlTemplate %q calls the pods over http://, but with tls.enabled they serve HTTPS only: use https://, or leave it empty for the https:// default" .Values.config.peerUrlTemplate) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Authentication values that cannot work together fail the install with what
to do.
*/}}
{{- define "abacus.checkAuth" -}}
{{- $auth := .Values.auth }}
{{- if and $auth.metrics (not $auth.existingSecret) }}
{{- fail "auth.metrics puts /metrics behind authentication, which needs auth.existingSecret: a Secret with a bearer token (auth.tokenKey) and/or user:password (auth.basicKey)" }}
{{- end }}
{{- if and $auth.existingSecret (not $auth.tokenKey) (not $auth.basicKey) }}
{{- fail (printf "auth.existingSecret %q needs auth.tokenKey or auth.basicKey: the keys of its bearer token and of its user:password credentials" $auth.existingSecret) }}
{{- end }}
{{- if and $auth.metrics .Values.metrics.serviceMonitor.enabled (not $auth.tokenKey) (not (and $auth.basicUsernameKey $auth.basicPasswordKey)) }}
{{- fail "auth.metrics with metrics.serviceMonitor.enabled: Prometheus needs credentials: set auth.tokenKey (a bearer token), or auth.basicUsernameKey and auth.basicPasswordKey (Prometheus's basicAuth reads the user and the password from separate keys)" }}
{{- end }}
{{- end }}
