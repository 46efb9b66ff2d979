{{/* Names, labels and the pieces every workload shares. */}}

{{- define "cdsflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "<release>-cdsflow-<component>" */}}
{{- define "cdsflow.componentName" -}}
{{- printf "%s-%s" (include "cdsflow.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cdsflow.selectorLabels" -}}
app.kubernetes.io/name: cdsflow
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cdsflow.labels" -}}
{{ include "cdsflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: cdsflow
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "cdsflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cdsflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A setting's value as the service's pydantic-settings reads it: strings as they are,
numbers, booleans, lists and maps as JSON (never Go's 1e+06 notation). */}}
{{- define "cdsflow.settingValue" -}}
{{- if kindIs "string" . -}}
{{- . -}}
{{- else -}}
{{- toJson . -}}
{{- end -}}
{{- end -}}

{{/* The Pod Security "restricted" container securityContext, on every container. */}}
{{- define "cdsflow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cdsflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "cdsflow.tritonServiceName" -}}
{{- include "cdsflow.componentName" (dict "root" . "component" "triton") -}}
{{- end -}}

{{/* The Kafka client environment every Kafka user shares (services and the topic Job). */}}
{{- define "cdsflow.kafkaEnv" -}}
{{- $kafka := .Values.kafka -}}
- name: CDSFLOW_KAFKA_BOOTSTRAP
  value: {{ $kafka.bootstrapServers | quote }}
{{- if or $kafka.tls.enabled $kafka.sasl.enabled }}
- name: CDSFLOW_KAFKA_SECURITY_PROTOCOL
  value: {{ ternary (ternary "SASL_SSL" "SSL" $kafka.sasl.enabled) "SASL_PLAINTEXT" $kafka.tls.enabled | quote }}
{{- end }}
{{- if $kafka.tls.enabled }}
- name: CDSFLOW_KAFKA_SSL_CA_FILE
  value: /etc/cdsflow/kafka-ca/{{ $kafka.tls.caKey }}
{{- end }}
{{- if $kafka.sasl.enabled }}
- name: CDSFLOW_KAFKA_SASL_MECHANISM
  value: {{ $kafka.sasl.mechanism | quote }}
{{- if ne $kafka.sasl.mechanism "OAUTHBEARER" }}
- name: CDSFLOW_KAFKA_SASL_USERNAME
  value: {{ $kafka.sasl.username | quote }}
{{- end }}
- name: CDSFLOW_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.keys.kafkaSaslPassword }}
{{- if eq $kafka.sasl.mechanism "OAUTHBEARER" }}
- name: CDSFLOW_KAFKA_OAUTH_TOKEN_URL
  value: {{ $kafka.sasl.oauth.tokenEndpointUrl | quote }}
- name: CDSFLOW_KAFKA_OAUTH_CLIENT_ID
  value: {{ $kafka.sasl.oauth.clientId | quote }}
- name: CDSFLOW_KAFKA_OAUTH_SCOPE
  value: {{ $kafka.sasl.oauth.scope | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "cdsflow.kafkaCaVolume" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  secret:
    secretName: {{ required "kafka.tls.caSecret names the Secret with the cluster CA" .Values.kafka.tls.caSecret }}
{{- end }}
{{- end -}}

{{- define "cdsflow.kafkaCaMount" -}}
{{- if .Values.kafka.tls.enabled }}
- name: kafka-ca
  mountPath: /etc/cdsflow/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* DNS egress, for every pod. */}}
{{- define "cdsflow.dnsEgress" -}}
- to:
    - namespaceSelector:
        {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 8 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{/* An egress rule to `to` peers (any address when empty) on `ports`. */}}
{{- define "cdsflow.egressRule" -}}
- ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The settings every service reads alike (ServiceSettings, TelemetrySettings), as
KEY: value for CDSFLOW_KEY; call with (dict "root" $ "service" <service values>). */}}
{{- define "cdsflow.commonSettings" -}}
{{- $v := .root.Values -}}
EHR_BASE_URL: {{ $v.ehr.baseUrl | quote }}
EHR_AUTH: {{ $v.ehr.auth | quote }}
EHR_CLIENT_ID: {{ $v.ehr.clientId | quote }}
EHR_KEY_ID: {{ $v.ehr.keyId | quote }}
EHR_TOKEN_URL: {{ $v.ehr.tokenUrl | quote }}
{{- if eq $v.ehr.auth "smart-backend" }}
EHR_PRIVATE_KEY_FILE: /etc/cdsflow/ehr-key/{{ $v.secrets.keys.ehrPrivateKey }}
{{- end }}
KAFKA_IDEMPOTENCE: {{ $v.kafka.idempotence }}
{{- /* a service's own settings entry wins (the writeback waits longer: it mostly idles) */}}
KAFKA_FETCH_MAX_WAIT_MS: {{ (.service.settings | default dict).KAFKA_FETCH_MAX_WAIT_MS | default $v.kafka.fetchMaxWaitMs }}
HTTP_HOST: 0.0.0.0
HTTP_PORT: {{ .service.port }}
LOG_LEVEL: {{ $v.telemetry.logLevel | quote }}
{{- end -}}

{{- define "cdsflow.otelEnv" -}}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ .root.Values.telemetry.otlpEndpoint | quote }}
OTEL_EXPORTER_OTLP_PROTOCOL: http/protobuf
OTEL_SERVICE_NAME: cdsflow-{{ .component }}
{{- end -}}

{{/* Env read from Secrets (and Kafka's client settings) that every service takes. */}}
{{- define "cdsflow.secretEnv" -}}
- name: CDSFLOW_PSEUDONYM_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.keys.pseudonymKey }}
{{- if eq .Values.ehr.auth "bearer" }}
- name: CDSFLOW_EHR_BEARER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.secrets.existingSecret }}
      key: {{ .Values.secrets.keys.ehrBearerToken }}
{{- end }}
{{ include "cdsflow.kafkaEnv" . }}
{{- end -}}

{{- define "cdsflow.secretVolumes" -}}
{{- if eq .Values.ehr.auth "smart-backend" }}
- name: ehr-key
  secret:
    secretName: {{ .Values.secrets.existingSecret }}
    defaultMode: 0400
    items:
      - key: {{ .Values.secrets.keys.ehrPrivateKey }}
        path: {{ .Values.secrets.keys.ehrPrivateKey }}
{{- end }}
{{ include "cdsflow.kafkaCaVolume" . }}
{{- end -}}

{{- define "cdsflow.secretMounts" -}}
{{- if eq .Values.ehr.auth "smart-backend" }}
- name: ehr-key
  mountPath: /etc/cdsflow/ehr-key
  readOnly: true
{{- end }}
{{ include "cdsflow.kafkaCaMount" . }}
{{- end -}}

{{/* Egress every service needs beside DNS: Kafka, the EHR, the OTLP collector. */}}
{{- define "cdsflow.commonEgress" -}}
{{ include "cdsflow.egressRule" .Values.kafka.egress }}
{{ include "cdsflow.egressRule" .Values.ehr.egress }}
{{- if .Values.telemetry.otlpEndpoint }}
{{ include "cdsflow.egressRule" .Values.telemetry.egress }}
{{- end }}
{{- end -}}

{{/* Egress to Triton's gRPC port (the reasoner; the writeback's on-demand scoring). */}}
{{- define "cdsflow.tritonEgress" -}}
- ports:
    - {protocol: TCP, port: 8001}
  to:
    - podSelector:
        matchLabels:
          {{- include "cdsflow.selectorLabels" (dict "root" . "component" "triton") | nindent 10 }}
{{- end -}}

{{- define "cdsflow.adaptersVolume" -}}
- name: adapters
  configMap:
    name: {{ include "cdsflow.componentName" (dict "root" . "component" "adapters") }}
{{- end -}}

{{- define "cdsflow.adaptersMount" -}}
- name: adapters
  mountPath: {{ .Values.adapters.mountPath }}
  readOnly: true
{{- end -}}
