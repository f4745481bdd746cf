{{/* Chart name, overridable. */}}
{{- define "highpress.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name prefix: the release name, plus the chart name unless already in it. */}}
{{- define "highpress.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of the operator's Deployment, Service, ClusterRole and friends. */}}
{{- define "highpress.operatorName" -}}
{{- printf "%s-operator" (include "highpress.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "highpress.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "highpress.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "highpress.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every object of this chart carries. */}}
{{- define "highpress.labels" -}}
helm.sh/chart: {{ include "highpress.chart" . }}
app.kubernetes.io/name: {{ include "highpress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: highpress
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the operator pods (stable across upgrades). */}}
{{- define "highpress.operatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "highpress.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "highpress.operatorLabels" -}}
{{ include "highpress.labels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "highpress.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
