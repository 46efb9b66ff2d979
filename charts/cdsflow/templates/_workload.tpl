{{/*
The one workload template of the three services. A service's thin template calls it with:
  root       the chart's top context
  component  listener | reasoner | writeback
  service    the service's values (image, replicas, port, resources, pdb, autoscaling, ...)
  settings   KEY -> value: the service's CDSFLOW_KEY environment, one ConfigMap
  otelEnv    OTEL_* name -> value, in the same ConfigMap
  secretEnv  env entries read from Secrets (valueFrom), beside the ConfigMap
  volumes, volumeMounts   extra ones (adapters, keys), beside the emptyDir /tmp
  ingressFrom  NetworkPolicy peers that may reach the service's port (empty: anyone)
  egress     NetworkPolicy egress rules beside DNS
  replicasManaged  true when an autoscaler (HPA or KEDA) owns the replica count
  readsAdapters    true when the service runs the adapters (its pods roll when they change)
It renders the ConfigMap, Deployment, Service, PodDisruptionBudget, HPA (when enabled) and
the NetworkPolicy that opens what the service needs inside the default deny.
*/}}
{{- define "cdsflow.workload" -}}
{{- $root := .root -}}
{{- $svc := .service -}}
{{- $name := include "cdsflow.componentName" . -}}
{{- $ctx := dict "root" $root "component" .component -}}
{{- $tag := default $root.Chart.AppVersion (default $root.Values.image.tag $svc.image.tag) -}}
{{- $repository := $svc.image.repository -}}
{{- if $root.Values.image.registry }}{{ $repository = printf "%s/%s" $root.Values.image.registry $repository }}{{ end -}}
{{- $configMap := dict -}}
{{- range $key, $value := .settings }}
{{- if not (and (kindIs "string" $value) (eq $value "")) }}
{{- $_ := set $configMap (printf "CDSFLOW_%s" $key) (include "cdsflow.settingValue" $value) }}
{{- end }}
{{- end -}}
{{- range $key, $value := .otelEnv }}
{{- if $value }}{{ $_ := set $configMap $key $value }}{{ end }}
{{- end -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $name }}-env
  labels:
    {{- include "cdsflow.labels" $ctx | nindent 4 }}
data:
  {{- range $key := keys $configMap | sortAlpha }}
  {{ $key }}: {{ get $configMap $key | quote }}
  {{- end }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdsflow.labels" $ctx | nindent 4 }}
spec:
  {{- if not .replicasManaged }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "cdsflow.selectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "cdsflow.labels" $ctx | nindent 8 }}
      annotations:
        checksum/env: {{ toJson $configMap | sha256sum }}
        {{- if .readsAdapters }}
        # a changed adapter (a version promoted from shadow to active) rolls the pods
        checksum/adapters: {{ include (print $root.Template.BasePath "/adapters-configmap.yaml") $root | sha256sum }}
        {{- end }}
        {{- with $svc.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "cdsflow.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "cdsflow.podSecurityContext" (dict "uid" 10001) | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .component }}
          image: "{{ $repository }}:{{ $tag }}"
          imagePullPolicy: {{ default $root.Values.image.pullPolicy $svc.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ $svc.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ $name }}-env
          {{- with .secretEnv }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 3
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "cdsflow.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .volumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 256Mi
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $svc.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $svc.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdsflow.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "cdsflow.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: {{ $svc.port }}
      targetPort: http
      protocol: TCP
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdsflow.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ $svc.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "cdsflow.selectorLabels" $ctx | nindent 6 }}
{{- if and $svc.autoscaling $svc.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdsflow.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $svc.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if $root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $name }}
  labels:
    {{- include "cdsflow.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "cdsflow.selectorLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- if .ingressOpen }}
    - ports:
        - {protocol: TCP, port: {{ $svc.port }}}
      {{- with .ingressFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- end }}
    # /metrics (on the service's port) for Prometheus
    - ports:
        - {protocol: TCP, port: {{ $svc.port }}}
      {{- with $root.Values.networkPolicy.metricsFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  egress:
    {{- include "cdsflow.dnsEgress" $root | nindent 4 }}
    {{- with .egress }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end -}}
