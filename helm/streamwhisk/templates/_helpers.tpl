{{/* Names: every object is <release>-streamwhisk-<part> (or the release name if it already says streamwhisk). */}}
{{- define "sw.fullname" -}}
{{- if contains "streamwhisk" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-streamwhisk" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "sw.name" -}}
{{- printf "%s-%s" (include "sw.fullname" .root) .part -}}
{{- end -}}

{{- define "sw.labels" -}}
app.kubernetes.io/name: streamwhisk
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .part }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels; streamwhisk.io/platform marks the pods allowed to reach Kafka and CouchDB. */}}
{{- define "sw.selector" -}}
app.kubernetes.io/name: streamwhisk
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .part }}
{{- end -}}

{{- define "sw.podLabels" -}}
{{ include "sw.selector" . }}
streamwhisk.io/platform: "true"
{{- end -}}

{{- define "sw.secretName" -}}
{{- default (include "sw.name" (dict "root" . "part" "keys")) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "sw.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- $n := include "sw.name" (dict "root" . "part" "kafka") -}}
{{- printf "%s.%s.svc:9092" $n .Release.Namespace -}}
{{- else -}}
{{- required "kafka.external.bootstrapServers is required when kafka.enabled=false" .Values.kafka.external.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "sw.couchdbUrl" -}}
{{- if .Values.couchdb.enabled -}}
{{- $n := include "sw.name" (dict "root" . "part" "couchdb") -}}
{{- if .Values.couchdb.password -}}
{{- printf "http://%s:%s@%s.%s.svc:5984" (.Values.couchdb.user | urlquery) (.Values.couchdb.password | urlquery) $n .Release.Namespace -}}
{{- else -}}
{{- printf "http://%s.%s.svc:5984" $n .Release.Namespace -}}
{{- end -}}
{{- else -}}
{{- required "couchdb.external.url is required when couchdb.enabled=false" .Values.couchdb.external.url -}}
{{- end -}}
{{- end -}}

{{/* WSK_* settings for every Streamwhisk container: plain ones from the ConfigMap, the CouchDB URL from the Secret. */}}
{{- define "sw.env" -}}
envFrom:
- configMapRef:
    name: {{ include "sw.name" (dict "root" . "part" "config") }}
env:
- name: WSK_COUCHDB
  valueFrom:
    secretKeyRef:
      name: {{ include "sw.secretName" . }}
      key: couchdb-url
# Shared by the API (verifies) and the invokers (mint): activation-scoped keys (contracts/keys.py).
- name: WSK_ACTIVATION_KEY_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "sw.secretName" . }}
      key: activation-key-secret
{{- end -}}

{{- define "sw.pullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
- name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod security for the unprivileged parts. */}}
{{- define "sw.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 65534
  runAsGroup: 65534
  fsGroup: 65534
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "sw.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{- define "sw.probeTiming" -}}
initialDelaySeconds: {{ .Values.probes.initialDelaySeconds }}
periodSeconds: {{ .Values.probes.periodSeconds }}
timeoutSeconds: {{ .Values.probes.timeoutSeconds }}
failureThreshold: {{ .Values.probes.failureThreshold }}
{{- end -}}

{{/* Init container: create the topics with the configured partitions before a part starts (idempotent). */}}
{{- define "sw.topicsInit" -}}
- name: topics
  image: {{ .Values.images.streamwhisk }}
  imagePullPolicy: {{ .Values.images.pullPolicy }}
  command: ["python3", "/etc/streamwhisk/k8s_init.py", "topics"]
  {{- include "sw.env" . | nindent 2 }}
  resources: {{- toYaml .Values.initJobs.resources | nindent 4 }}
  {{- include "sw.containerSecurity" . | nindent 2 }}
  volumeMounts:
  - {name: scripts, mountPath: /etc/streamwhisk/k8s_init.py, subPath: k8s_init.py, readOnly: true}
{{- end -}}

{{- define "sw.scriptsVolume" -}}
- name: scripts
  configMap:
    name: {{ include "sw.name" (dict "root" . "part" "scripts") }}
    defaultMode: 0555
{{- end -}}

{{/* Metrics (values: metrics): every Streamwhisk container serves /metrics on metrics.port (WSK_METRICS_PORT). */}}
{{- define "sw.metricsAnnotations" -}}
{{- if and .Values.metrics.enabled .Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* More items for a container's env list (after sw.env): Prometheus scrapes the pod IP, so all interfaces. */}}
{{- define "sw.metricsEnv" -}}
{{- if .Values.metrics.enabled -}}
- {name: WSK_METRICS_PORT, value: {{ .Values.metrics.port | quote }}}
- {name: WSK_METRICS_HOST, value: "0.0.0.0"}
{{- end -}}
{{- end -}}

{{/* A container's ports list: just metrics (containers that have other ports list this item themselves). */}}
{{- define "sw.metricsPorts" -}}
{{- if .Values.metrics.enabled -}}
ports:
- {name: metrics, containerPort: {{ int .Values.metrics.port }}, protocol: TCP}
{{- end -}}
{{- end -}}

{{/* An ingress rule for a NetworkPolicy that closes a metrics pod: Prometheus (metrics.scrapeFrom) on the port. */}}
{{- define "sw.metricsIngressRule" -}}
{{- if .Values.metrics.enabled -}}
- from: {{- toYaml .Values.metrics.scrapeFrom | nindent 2 }}
  ports:
  - {protocol: TCP, port: {{ .Values.metrics.port }}}
{{- end -}}
{{- end -}}
