{{/* The release's name for its objects, at most 63 characters. */}}
{{- define "plumbline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "plumbline.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "plumbline.labels" -}}
{{ include "plumbline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The webhooks' serving certificate's Secret. */}}
{{- define "plumbline.tlsSecret" -}}
{{ include "plumbline.fullname" . }}-tls
{{- end -}}

{{/* The NATS this release uses: the one given, or the one it installs. */}}
{{- define "plumbline.natsUrl" -}}
{{- if .Values.nats.url -}}
{{ .Values.nats.url }}
{{- else -}}
{{- $name := printf "%s-nats" (include "plumbline.fullname" .) -}}
{{- $urls := list -}}
{{- range $i := until 3 -}}
{{- $urls = append $urls (printf "nats://%s-%d.%s.%s.svc:4222" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{ join "," $urls }}
{{- end -}}
{{- end -}}
