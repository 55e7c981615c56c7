{{- /*
cutover.image: the reference of an image from values ({repository, tag, digest}); a digest
pins it and wins over the tag.
*/}}
{{- define "cutover.image" -}}
{{ .repository }}{{ if .digest }}@{{ .digest }}{{ else }}:{{ .tag }}{{ end }}
{{- end }}

{{- /*
cutover.shippedImage: the image the plain files under steps/ and hooks/ name.
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
