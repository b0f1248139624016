package main

// Helm's rendering semantics that the vcgate chart relies on, each pinned
// to what `helm template` (Helm 3) prints for the same input.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chart writes a throwaway chart with the given values.yaml and templates.
func chart(t *testing.T, values string, templates map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "Chart.yaml"), []byte("apiVersion: v2\nname: c\nversion: 1.2.3\nappVersion: \"9.9\"\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "values.yaml"), []byte(values), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "templates"), 0o755))
	for n, body := range templates {
		must(os.WriteFile(filepath.Join(dir, "templates", n), []byte(body), 0o644))
	}
	return dir
}

func renderOut(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(args, &out)
	return out.String(), err
}

func TestHelmTemplateSemantics(t *testing.T) {
	dir := chart(t, "big: 1000000\nsmall: 8080\nname: x\nnested: {a: 1, keep: 2}\nlist: [b, a]\n", map[string]string{
		"_helpers.tpl": `{{- define "c.name" -}}{{ .Release.Name }}-{{ .Chart.Name }}{{- end -}}
{{- define "c.labels" -}}
a: "1"
b: "2"
{{- end -}}`,
		"cm.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "c.name" . }}
  labels: {{- include "c.labels" . | nindent 4 }}
data:
  big: "{{ .Values.big }}"
  small: "{{ .Values.small }}"
  missing: "{{ .Values.nope }}"
  version: "{{ .Chart.Version }}/{{ .Chart.AppVersion }}/{{ .Release.Namespace }}/{{ .Release.Service }}"
  yaml: {{ toYaml .Values.nested | quote }}
  list: {{ toJson .Values.list | quote }}
  tpl: {{ tpl "{{ .Values.name }}-{{ include \"c.name\" . }}" . | quote }}
  template: {{ .Template.Name | quote }}
  keep: "{{ .Values.nested.keep }}"
  a: "{{ .Values.nested.a }}"
`,
		"svc.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\n# only a comment\n---\n",
		"dep.yaml": "{{- if .Values.name }}\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n{{- end }}\n",
	})
	vals := filepath.Join(t.TempDir(), "v.yaml")
	if err := os.WriteFile(vals, []byte("nested: {a: null}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := renderOut(t, "--name", "rel", "--namespace", "ns", "-f", vals, "--set", "small=9090", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`name: rel-c`,
		"labels:\n    a: \"1\"\n    b: \"2\"", // include | nindent
		`big: "1e+06"`,                        // file numbers are float64, as in Helm
		`small: "9090"`,                       // --set numbers are int64
		`missing: ""`,                         // missingkey=zero and "<no value>" removed
		`version: "1.2.3/9.9/ns/Helm"`,
		`yaml: "keep: 2"`,     // toYaml, trailing newline trimmed; null deleted the default
		`list: "[\"b\",\"a\"]"`,
		`tpl: "x-rel-c"`,
		`template: "c/templates/cm.yaml"`,
		`keep: "2"`,
		`a: ""`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Install order: ConfigMap, Service, Deployment; sources named; the
	// comment-only document is dropped.
	ci, si, di := strings.Index(out, "kind: ConfigMap"), strings.Index(out, "kind: Service"), strings.Index(out, "kind: Deployment")
	if !(ci >= 0 && ci < si && si < di) {
		t.Errorf("kinds not in Helm's install order:\n%s", out)
	}
	if strings.Count(out, "---\n# Source: c/templates/") != 3 || strings.Contains(out, "only a comment") {
		t.Errorf("documents:\n%s", out)
	}
}

func TestRequiredFailAndSchema(t *testing.T) {
	dir := chart(t, "x: \"\"\nnum: 1\n", map[string]string{
		"a.yaml": "v: {{ required \"x is required\" .Values.x }}\n",
	})
	if _, err := renderOut(t, dir); err == nil || !strings.Contains(err.Error(), "x is required") {
		t.Errorf("required on an empty string: %v", err)
	}
	if out, err := renderOut(t, "--set", "x=ok", dir); err != nil || !strings.Contains(out, "v: ok") {
		t.Errorf("required with a value: %v %s", err, out)
	}
	schema := `{"type":"object","additionalProperties":false,"properties":{"x":{"type":"string"},"num":{"type":"integer"}}}`
	if err := os.WriteFile(filepath.Join(dir, "values.schema.json"), []byte(schema), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := renderOut(t, "--set", "x=ok,num=two,extra=1", dir)
	if err == nil || !strings.Contains(err.Error(), "num: Invalid type") || !strings.Contains(err.Error(), "extra") {
		t.Errorf("schema: %v", err)
	}
	// Whole-number floats from files satisfy "integer", as in Helm.
	if _, err := renderOut(t, "--set", "x=ok", dir); err != nil {
		t.Errorf("valid values refused: %v", err)
	}
}

func TestFailAndBadYAML(t *testing.T) {
	// Through a missing map, Helm 3 fails (text/template's nil pointer)
	// rather than rendering nothing: charts must guard with `with`/`dig`.
	dir := chart(t, "a: {}\n", map[string]string{"a.yaml": "v: {{ .Values.a.b.c }}\n"})
	if _, err := renderOut(t, dir); err == nil || !strings.Contains(err.Error(), "nil pointer evaluating interface {}.c") {
		t.Errorf("missing map: %v", err)
	}
	dir = chart(t, "", map[string]string{"a.yaml": "{{ fail \"no way\" }}"})
	if _, err := renderOut(t, dir); err == nil || !strings.Contains(err.Error(), "no way") {
		t.Errorf("fail: %v", err)
	}
	dir = chart(t, "", map[string]string{"a.yaml": "a: [unclosed\n"})
	if _, err := renderOut(t, dir); err == nil || !strings.Contains(err.Error(), "YAML parse error") {
		t.Errorf("bad YAML: %v", err)
	}
	dir = chart(t, "", map[string]string{"a.yaml": "{{ env \"HOME\" }}"})
	if _, err := renderOut(t, dir); err == nil || !strings.Contains(err.Error(), `"env" not defined`) {
		t.Errorf("env must not exist, as in Helm: %v", err)
	}
}

func TestSetSyntax(t *testing.T) {
	v := map[string]interface{}{}
	if err := parseSet("a.b=1,c=true,d=null,e={x,2},f=str", v); err != nil {
		t.Fatal(err)
	}
	a := v["a"].(map[string]interface{})
	if a["b"] != int64(1) || v["c"] != true || v["d"] != nil || v["f"] != "str" {
		t.Errorf("typed values: %#v", v)
	}
	if l := v["e"].([]interface{}); len(l) != 2 || l[0] != "x" || l[1] != int64(2) {
		t.Errorf("list: %#v", v["e"])
	}
	if err := parseSet("novalue", map[string]interface{}{}); err == nil {
		t.Error("a pair without = is accepted")
	}
}
