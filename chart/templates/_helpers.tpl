{{- /*
cutover.image: the reference of an image from values ({repository, tag, digest}); a digest
pins it and wins over the tag.
*/}}
{{- define "cutover.image" -}}
{{ .repository }}{{ if .digest }}@{{ .digest }}{{ else }}:{{ .tag }}{{ end }}
{{- end }}

{{- /*
cutover.shippedImage: the image the plain files under steps/, daemonset/ and hooks/ name.
They stay plain manifests (the service's `plan` and `demo` read them as they are), so the
chart swaps this exact reference for the one the values choose.
*/}}
{{- define "cutover.shippedImage" -}}
image: docker.io/alpine/k8s:1.33.4
{{- end }}

{{- /* cutover.withImage: file text (.text) with the shipped image swapped for .image's. */}}
{{- define "cutover.withImage" -}}
{{ .text | replace (include "cutover.shippedImage" .) (printf "image: %s" (include "cutover.image" .image)) }}
{{- end }}

{{- /*
cutover.runnerMeta: the metadata of one of the step runner's RBAC objects; called with
(list $ NAME NAMESPACE), NAMESPACE empty for the release's (or a cluster-scoped object).
*/}}
{{- define "cutover.runnerMeta" -}}
metadata:
  name: {{ index . 1 }}
  {{- with index . 2 }}
  namespace: {{ . }}
  {{- end }}
  labels:
    app.kubernetes.io/part-of: self-sovereign-cutover
    app.kubernetes.io/component: cutover-runner
{{- end }}

{{- /*
cutover.runnerRole: the head of a Role (NAMESPACE set or empty) or ClusterRole of the step
runner and, after it, its binding to the runner's ServiceAccount; called with
(list $ KIND NAME NAMESPACE RULES), RULES the rules' YAML. A step's rights are one such call.
*/}}
{{- define "cutover.runnerRole" -}}
{{- $root := index . 0 }}{{ $kind := index . 1 }}{{ $name := index . 2 }}{{ $ns := index . 3 -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $kind }}
{{ include "cutover.runnerMeta" (list $root $name $ns) }}
rules:
{{ index . 4 | trim | indent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ $kind }}Binding
{{ include "cutover.runnerMeta" (list $root $name $ns) }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ $kind }}
  name: {{ $name }}
subjects:
  - kind: ServiceAccount
    name: cutover-runner
    namespace: {{ $root.Release.Namespace }}
{{- end }}
