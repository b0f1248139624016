// helm-render: render a Helm chart's templates the way `helm template`
// does, for checking contrib/helm/vcgate where the helm binary cannot be
// installed.  Built from Debian packages only (golang-go, sprig, ghodss/yaml,
// gojsonschema) in GOPATH mode, with no network.
//
//	helm-render [-f values.yaml]... [--set a.b=v,...]... [--name R] [--namespace N] [-o yaml|json] CHART
//
// What it implements of Helm 3's rendering (pkg/engine, pkg/chartutil), and
// how faithfully, is written next to each piece; README.md's "Helm chart"
// section summarises it.  Anything a chart uses beyond this subset (.Files,
// .Capabilities, lookup against a cluster, subcharts, hooks) is not here:
// templates that use it fail to render rather than render differently.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	sprig "github.com/Masterminds/sprig" // v3 (Debian: GOPATH mode has no /v3 suffix)
	"github.com/ghodss/yaml"
	"github.com/xeipuuv/gojsonschema"
)

// Metadata is Chart.yaml as templates see it in .Chart (Helm's
// chart.Metadata: exported field names, so {{ .Chart.AppVersion }}).
type Metadata struct {
	Name         string            `json:"name"`
	Version      string            `json:"version"`
	AppVersion   string            `json:"appVersion,omitempty"`
	Description  string            `json:"description,omitempty"`
	Type         string            `json:"type,omitempty"`
	APIVersion   string            `json:"apiVersion"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// readValues parses YAML as Helm does (sigs.k8s.io/yaml, of which
// ghodss/yaml is the original): through JSON, so numbers from files are
// float64 -- and 1000000 renders as 1e+06, exactly Helm's behaviour.
func readValues(data []byte) (map[string]interface{}, error) {
	v := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	if v == nil {
		v = map[string]interface{}{}
	}
	return v, nil
}

// mergeMaps is Helm's merge of -f files and --set (pkg/cli/values): b
// wins, maps merge recursively.
func mergeMaps(a, b map[string]interface{}) map[string]interface{} {
	out := make(map[string]interface{}, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bv, ok := v.(map[string]interface{}); ok {
			if av, ok := out[k].(map[string]interface{}); ok {
				out[k] = mergeMaps(av, bv)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// coalesce is chartutil.CoalesceTables for one chart: the user's values
// over the chart's defaults, recursively for maps; a user value of null
// deletes the key, default included.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, dv := range defaults {
		uv, present := user[k]
		switch {
		case !present:
			out[k] = dv
		case uv == nil:
			// null: removed
		default:
			um, uok := uv.(map[string]interface{})
			dm, dok := dv.(map[string]interface{})
			if uok && dok {
				out[k] = coalesce(um, dm)
			} else {
				out[k] = uv
			}
		}
	}
	for k, uv := range user {
		if _, done := defaults[k]; !done && uv != nil {
			out[k] = uv
		}
	}
	return out
}

// parseSet reads --set the way Helm's strvals does for the forms it
// supports here: comma-separated a.b.c=value pairs, {x,y} lists, and typed
// scalars (int64, true/false, null); strings otherwise.  Not supported:
// escapes, list indices (a[0]=x) and --set-string/--set-file.
func parseSet(s string, into map[string]interface{}) error {
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return fmt.Errorf("--set %q: expected key=value", s)
		}
		key := s[:eq]
		s = s[eq+1:]
		var val interface{}
		if strings.HasPrefix(s, "{") {
			end := strings.IndexByte(s, '}')
			if end < 0 {
				return fmt.Errorf("--set %s: unterminated list", key)
			}
			list := []interface{}{}
			for _, item := range strings.Split(s[1:end], ",") {
				if item != "" {
					list = append(list, typed(item))
				}
			}
			val = list
			s = strings.TrimPrefix(s[end+1:], ",")
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val = typed(s[:end])
			s = strings.TrimPrefix(s[end:], ",")
		}
		parts := strings.Split(key, ".")
		m := into
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]interface{})
			if !ok {
				next = map[string]interface{}{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = val
	}
	return nil
}

func typed(s string) interface{} {
	switch s {
	case "true":
		return true
	case "false":
		return false
	case "null":
		return nil
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i
	}
	return s
}

// funcMap is Helm's (pkg/engine/funcs.go): sprig's text functions without
// env and expandenv, plus toYaml/fromYaml/toJson/fromJson, required, and
// include/tpl bound to the template set when rendering.
func funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return "" // Helm swallows the error the same way
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	// The *Array forms answer a one-element list holding the error, as Helm's do.
	f["fromJsonArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := json.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		a := []interface{}{}
		if err := yaml.Unmarshal([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	// lookup queries a cluster; `helm template` has none and returns an
	// empty map, as here.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["include"] = func(string, interface{}) (string, error) { return "", errors.New("include outside rendering") }
	f["tpl"] = func(string, interface{}) (string, error) { return "", errors.New("tpl outside rendering") }
	return f
}

// render parses every file under templates/ into one set (named
// CHART/templates/FILE, as Helm names them) and executes each file that
// is not a partial (leading underscore) or NOTES.txt.
func render(chartDir string, meta *Metadata, values map[string]interface{}, release map[string]interface{}) (map[string]string, error) {
	tdir := filepath.Join(chartDir, "templates")
	var files []string
	err := filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !info.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	root := template.New("gotpl")
	// Helm's non-strict mode: a missing key renders as the zero value, and
	// the "<no value>" text/template writes for it is removed afterwards.
	root.Option("missingkey=zero")
	fm := funcMap()
	var set *template.Template
	includedDepth := 0
	fm["include"] = func(name string, data interface{}) (string, error) {
		// Helm bounds recursion (1000 levels); so does this.
		if includedDepth > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		includedDepth++
		defer func() { includedDepth-- }()
		var buf bytes.Buffer
		if err := set.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	fm["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := set.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	root.Funcs(fm)
	names := map[string]string{}
	for _, f := range files {
		rel, _ := filepath.Rel(chartDir, f)
		name := path.Join(meta.Name, filepath.ToSlash(rel))
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if _, err := root.New(name).Parse(string(data)); err != nil {
			return nil, fmt.Errorf("parse error in %s: %w", name, err)
		}
		names[name] = f
	}
	set = root
	out := map[string]string{}
	for name := range names {
		base := path.Base(name)
		if strings.HasPrefix(base, "_") || base == "NOTES.txt" {
			continue
		}
		top := map[string]interface{}{
			"Values":  values,
			"Release": release,
			"Chart":   meta,
			"Template": map[string]interface{}{
				"Name":     name,
				"BasePath": path.Join(meta.Name, "templates"),
			},
		}
		var buf bytes.Buffer
		if err := set.ExecuteTemplate(&buf, name, top); err != nil {
			return nil, err
		}
		out[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

// installOrder is Helm's kind order for installing (pkg/releaseutil),
// which `helm template` also prints in; unknown kinds go last.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
	"ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService",
}

type manifest struct {
	Source string                 `json:"source"`
	Object map[string]interface{} `json:"object"`
	text   string
	order  int
}

var (
	docSep      = regexp.MustCompile(`(?m)^---[ \t]*$`)
	commentLine = regexp.MustCompile(`(?m)^\s*#.*$`)
)

// split cuts rendered files into documents, drops empty ones (a template
// whose condition was false; comment-only ones too, which helm would print
// as empty documents), and parses each: invalid YAML is an error, as it is
// for Helm.
func split(rendered map[string]string) ([]manifest, error) {
	rank := map[string]int{}
	for i, k := range installOrder {
		rank[k] = i
	}
	var names []string
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []manifest
	for _, n := range names {
		for _, doc := range docSep.Split(rendered[n], -1) {
			if strings.TrimSpace(commentLine.ReplaceAllString(doc, "")) == "" {
				continue
			}
			obj := map[string]interface{}{}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return nil, fmt.Errorf("YAML parse error on %s: %v\n%s", n, err, doc)
			}
			kind, _ := obj["kind"].(string)
			r, ok := rank[kind]
			if !ok {
				r = len(installOrder)
			}
			out = append(out, manifest{Source: n, Object: obj, text: strings.Trim(doc, "\n"), order: r})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].order < out[j].order })
	return out, nil
}

// validateValues checks the final values against values.schema.json, as
// Helm 3 does before rendering (it used gojsonschema too).
func validateValues(chartDir, chartName string, values map[string]interface{}) error {
	schema, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	doc, err := json.Marshal(values)
	if err != nil {
		return err
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	if res.Valid() {
		return nil
	}
	var b strings.Builder
	b.WriteString("values don't meet the specifications of the schema(s) in the following chart(s):\n")
	b.WriteString(chartName + ":\n")
	for _, e := range res.Errors() {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	return errors.New(strings.TrimSuffix(b.String(), "\n"))
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("helm-render", flag.ContinueOnError)
	var files, sets multiFlag
	fs.Var(&files, "f", "values file (repeatable; later files win)")
	fs.Var(&sets, "set", "a.b=value[,c=value] (repeatable; after -f)")
	name := fs.String("name", "release-name", "release name (helm template's default)")
	ns := fs.String("namespace", "default", "release namespace")
	format := fs.String("o", "yaml", "yaml (helm template's stream) or json (an array of {source, object})")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: helm-render [-f values.yaml]... [--set k=v]... [--name R] [--namespace N] [-o yaml|json] CHART")
	}
	chartDir := fs.Arg(0)
	meta := &Metadata{}
	data, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, meta); err != nil {
		return fmt.Errorf("Chart.yaml: %w", err)
	}
	if meta.APIVersion != "v2" || meta.Name == "" || meta.Version == "" {
		return errors.New("Chart.yaml: apiVersion v2, name and version are required")
	}
	data, err = os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	defaults, err := readValues(data)
	if err != nil {
		return fmt.Errorf("values.yaml: %w", err)
	}
	user := map[string]interface{}{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		v, err := readValues(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		user = mergeMaps(user, v)
	}
	for _, s := range sets {
		v := map[string]interface{}{}
		if err := parseSet(s, v); err != nil {
			return err
		}
		user = mergeMaps(user, v)
	}
	values := coalesce(user, defaults)
	if err := validateValues(chartDir, meta.Name, values); err != nil {
		return err
	}
	release := map[string]interface{}{
		"Name": *name, "Namespace": *ns, "Service": "Helm",
		"IsInstall": true, "IsUpgrade": false, "Revision": 1,
	}
	rendered, err := render(chartDir, meta, values, release)
	if err != nil {
		return err
	}
	ms, err := split(rendered)
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", " ")
		if ms == nil {
			ms = []manifest{}
		}
		return enc.Encode(ms)
	}
	for _, m := range ms {
		fmt.Fprintf(stdout, "---\n# Source: %s\n%s\n", m.Source, m.text)
	}
	return nil
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
