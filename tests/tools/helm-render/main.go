// helm-render renders a Helm chart as `helm template` does, for the tests
// of deploy/helm/jitgate where no helm binary can be installed (Debian has
// none; only Debian's Go packages reach these machines). It uses what
// Helm's engine is built on, Go's text/template and the sprig functions,
// and adds Helm's own (include, tpl, required, toYaml, fromYaml, lookup),
// its values merge and its top-level objects. Where helm is present the
// tests use `helm template` itself.
//
//	helm-render [-f values.yaml]... [--name RELEASE] [--namespace NS] CHART_DIR
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"github.com/ghodss/yaml"
)

type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	var valueFiles files
	flag.Var(&valueFiles, "f", "values file (repeatable; later ones win)")
	name := flag.String("name", "jitgate", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "1.30.0", "Kubernetes version for .Capabilities")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: helm-render [-f values.yaml]... [--name RELEASE] [--namespace NS] CHART_DIR")
		os.Exit(2)
	}
	out, err := render(flag.Arg(0), valueFiles, *name, *namespace, *kubeVersion)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
	fmt.Print(out)
}

func readYaml(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// merge lays src over dst as Helm coalesces values: maps merge key by
// key, anything else replaces, null removes.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sv, sok := v.(map[string]interface{})
		dv, dok := dst[k].(map[string]interface{})
		if sok && dok {
			dst[k] = merge(dv, sv)
		} else {
			dst[k] = v
		}
	}
	return dst
}

// chartObject gives Chart.yaml's fields as Helm does (.Chart.Name,
// .Chart.AppVersion).
func chartObject(meta map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range meta {
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}

func render(chart string, valueFiles []string, name, namespace, kubeVersion string) (string, error) {
	meta, err := readYaml(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	values, err := readYaml(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return "", err
	}
	for _, f := range valueFiles {
		v, err := readYaml(f)
		if err != nil {
			return "", err
		}
		values = merge(values, v)
	}
	paths, err := filepath.Glob(filepath.Join(chart, "templates", "*"))
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	chartName, _ := meta["name"].(string)
	parts := strings.SplitN(strings.TrimPrefix(kubeVersion, "v"), ".", 3)
	top := map[string]interface{}{
		"Values": values,
		"Chart":  chartObject(meta),
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{
				"Version": "v" + kubeVersion, "GitVersion": "v" + kubeVersion,
				"Major": parts[0], "Minor": parts[1],
			},
		},
	}

	root := template.New(chartName)
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	funcs["required"] = func(warn string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(warn)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(warn)
		}
		return v, nil
	}
	funcs["lookup"] = func(...interface{}) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	root.Funcs(funcs).Option("missingkey=zero")

	var rendered []string
	for _, path := range paths {
		base := filepath.Base(path)
		text, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if _, err := root.New(chartName + "/templates/" + base).Parse(string(text)); err != nil {
			return "", err
		}
		if !strings.HasPrefix(base, "_") && base != "NOTES.txt" {
			rendered = append(rendered, base)
		}
	}
	var out strings.Builder
	for _, base := range rendered {
		source := chartName + "/templates/" + base
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": source, "BasePath": chartName + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, source, data); err != nil {
			return "", err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", source, strings.TrimSpace(text))
	}
	return out.String(), nil
}
