{{/* The release's full name, at most 63 characters. */}}
{{- define "ringkv.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object of the chart. */}}
{{- define "ringkv.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ringkv
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* Labels on the operator's objects. */}}
{{- define "ringkv.labels" -}}
{{ include "ringkv.commonLabels" . }}
{{ include "ringkv.operatorSelector" . }}
{{- end -}}

{{/* The labels that select the operator's pods. */}}
{{- define "ringkv.operatorSelector" -}}
app.kubernetes.io/name: ringkv-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ringkv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ringkv.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ringkv.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The namespace of the KVCluster created from values (and of the nodes' NetworkPolicy):
the watched namespace when the operator watches only one, else the release's. */}}
{{- define "ringkv.clusterNamespace" -}}
{{- default .Release.Namespace .Values.watchNamespace -}}
{{- end -}}
