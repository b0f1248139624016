{{/* Names: RELEASE-vcgate (or the release name when it already says vcgate). */}}
{{- define "vcgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 55 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 55 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "vcgate.nats.fullname" -}}
{{- printf "%s-nats" (include "vcgate.fullname" .) -}}
{{- end -}}

{{- define "vcgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "vcgate.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "vcgate.nats.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: nats
{{- end -}}

{{- define "vcgate.tlsSecret" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "vcgate.fullname" .)) -}}
{{- end -}}

{{/* The NATS URLs vcgate connects to: every pod of the chart's cluster by
     its stable name (nats.c learns the rest from the servers), or the
     external list. */}}
{{- define "vcgate.nats.urls" -}}
{{- $urls := list -}}
{{- if .Values.nats.enabled -}}
{{- $n := include "vcgate.nats.fullname" . -}}
{{- range $i := until (int .Values.nats.replicas) -}}
{{- $urls = append $urls (printf "nats://%s-%d.%s-headless.%s.svc:4222" $n $i $n $.Release.Namespace) -}}
{{- end -}}
{{- else -}}
{{- $urls = .Values.nats.externalServers -}}
{{- end -}}
{{- toJson $urls -}}
{{- end -}}

{{/* One libconfig value from a YAML value: strings quoted and escaped,
     numbers as integers (YAML numbers arrive as float64, which would print
     1000000 as 1e+06), 64-bit ones with libconfig's L, lists, groups. */}}
{{- define "vcgate.libconfig.value" -}}
{{- if kindIs "string" . -}}
"{{ . | replace "\\" "\\\\" | replace "\"" "\\\"" }}"
{{- else if kindIs "bool" . -}}
{{ . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}
{{- $i := int64 . -}}
{{ $i }}{{ if or (gt $i 2147483647) (lt $i -2147483648) }}L{{ end }}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "vcgate.libconfig.value" $v }}{{ end }}]
{{- else if kindIs "map" . -}}
{ {{- range $k, $v := . }} {{ $k }} = {{ include "vcgate.libconfig.value" $v }};{{ end }} }
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) to libconfig" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* "name = value;" lines from a map, for the config.* values. */}}
{{- define "vcgate.libconfig.settings" -}}
{{- $lines := list -}}
{{- range $k, $v := . -}}
{{- $lines = append $lines (printf "%s = %s;" $k (include "vcgate.libconfig.value" $v)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/* TLS file settings of a transport, when TLS is on. */}}
{{- define "vcgate.libconfig.tls" -}}
{{- if .Values.tls.enabled }} tls_cert = "/etc/vcgate/tls/tls.crt"; tls_key = "/etc/vcgate/tls/tls.key";{{ end -}}
{{- end -}}
