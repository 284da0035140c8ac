{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "jitgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of a component's objects: pass (list . "broker"). */}}
{{- define "jitgate.labels" -}}
{{- $ := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $.Chart.Name $.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
{{ include "jitgate.selectorLabels" . }}
{{- end -}}

{{/* Selector labels of a component: pass (list . "broker"). */}}
{{- define "jitgate.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "jitgate.brokerImage" -}}
{{ .Values.image.broker.repository }}:{{ .Values.image.broker.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "jitgate.agentImage" -}}
{{ .Values.image.agent.repository }}:{{ .Values.image.agent.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* In-cluster addresses of the API and the hub. */}}
{{- define "jitgate.apiHost" -}}
{{ include "jitgate.fullname" . }}-api.{{ .Release.Namespace }}.svc
{{- end -}}
{{- define "jitgate.hubHost" -}}
{{ include "jitgate.fullname" . }}-hub.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* The names the server certificates are issued for: the operator's
first (the first is what `jitgate-broker ready` and links use), then the
Services' in-cluster names, which in-cluster agents use. */}}
{{- define "jitgate.serverNames" -}}
{{- $fullname := include "jitgate.fullname" . -}}
{{- $names := concat .Values.broker.serverNames (list (include "jitgate.apiHost" .) (include "jitgate.hubHost" .) (printf "%s-api" $fullname) (printf "%s-hub" $fullname) "localhost" "127.0.0.1") -}}
{{- $names | uniq | join "," -}}
{{- end -}}

{{/* Several brokers need PostgreSQL, a database URL and shared keys. */}}
{{- define "jitgate.checkStore" -}}
{{- if not (has .Values.broker.store (list "sled" "postgres")) -}}
{{- fail (printf "broker.store must be sled or postgres, not %q" .Values.broker.store) -}}
{{- end -}}
{{- if eq .Values.broker.store "postgres" -}}
{{- $_ := required "broker.store = postgres needs database.urlSecret.name: a Secret holding the PostgreSQL URL" .Values.database.urlSecret.name -}}
{{- $_ := required "broker.store = postgres needs keys.existingSecret: the CA and keys every broker shares (docs/deploying.md)" .Values.keys.existingSecret -}}
{{- end -}}
{{- end -}}

{{/* The broker's pod template, for the StatefulSet (sled) or the
Deployment (postgres). */}}
{{- define "jitgate.brokerPod" -}}
metadata:
  labels:
    {{- include "jitgate.labels" (list . "broker") | nindent 4 }}
  annotations:
    checksum/policies: {{ toYaml .Values.broker.policies | sha256sum }}
    checksum/config: {{ .Values.broker.config | sha256sum }}
    {{- with .Values.broker.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 10001
    runAsGroup: 10001
    {{- if eq .Values.broker.store "sled" }}
    # The store's volume is the broker's; keys it writes are owner-only.
    fsGroup: 10001
    fsGroupChangePolicy: OnRootMismatch
    {{- end }}
    seccompProfile:
      type: RuntimeDefault
  {{- if eq .Values.broker.store "postgres" }}
  initContainers:
    # The shared keys, copied owner-only into the data directory (a
    # Secret's files are not the broker's own to read otherwise).
    - name: keys
      image: {{ include "jitgate.brokerImage" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: ["/bin/sh", "-ec", "for f in ca.pem ca.key command.key audit.key; do install -m 0600 /keys/$f /var/lib/jitgate/$f; done"]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
      volumeMounts:
        - name: keys
          mountPath: /keys
          readOnly: true
        - name: data
          mountPath: /var/lib/jitgate
  {{- end }}
  containers:
    - name: broker
      image: {{ include "jitgate.brokerImage" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      env:
        - name: JITGATE_SERVER_NAMES
          value: {{ include "jitgate.serverNames" . | quote }}
        {{- with .Values.broker.publicUrl }}
        - name: JITGATE_PUBLIC_URL
          value: {{ . | quote }}
        {{- end }}
        - name: JITGATE_STORE
          value: {{ .Values.broker.store | quote }}
        {{- if .Values.broker.config }}
        - name: JITGATE_CONFIG
          value: /etc/jitgate/config/broker.toml
        {{- end }}
        {{- if eq .Values.broker.store "postgres" }}
        - name: JITGATE_DATABASE_URL
          valueFrom:
            secretKeyRef:
              name: {{ .Values.database.urlSecret.name }}
              key: {{ .Values.database.urlSecret.key }}
        {{- end }}
        {{- range $name, $value := .Values.broker.env }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
      {{- with .Values.broker.envFromSecrets }}
      envFrom:
        {{- range . }}
        - secretRef:
            name: {{ . }}
        {{- end }}
      {{- end }}
      ports:
        - name: api
          containerPort: 8443
          protocol: TCP
        - name: hub
          containerPort: 8444
          protocol: TCP
      startupProbe:
        httpGet:
          path: /healthz
          port: api
          scheme: HTTPS
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet:
          path: /healthz
          port: api
          scheme: HTTPS
        periodSeconds: 10
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: api
          scheme: HTTPS
        periodSeconds: 5
        failureThreshold: 2
      resources:
        {{- toYaml .Values.broker.resources | nindent 8 }}
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: [ALL]
      volumeMounts:
        - name: data
          mountPath: /var/lib/jitgate
        {{- if .Values.broker.policies }}
        - name: policies
          mountPath: /etc/jitgate/policies
          readOnly: true
        {{- end }}
        {{- if .Values.broker.config }}
        - name: config
          mountPath: /etc/jitgate/config
          readOnly: true
        {{- end }}
  {{- with .Values.broker.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.broker.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.broker.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumes:
    {{- if .Values.broker.policies }}
    - name: policies
      configMap:
        name: {{ include "jitgate.fullname" . }}-policies
    {{- end }}
    {{- if .Values.broker.config }}
    - name: config
      configMap:
        name: {{ include "jitgate.fullname" . }}-config
    {{- end }}
    {{- if eq .Values.broker.store "postgres" }}
    # The data directory holds only the keys and the control socket.
    - name: data
      emptyDir: {}
    - name: keys
      secret:
        secretName: {{ .Values.keys.existingSecret }}
        defaultMode: 0444
    {{- end }}
{{- end -}}
