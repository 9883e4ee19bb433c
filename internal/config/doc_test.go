package config

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// keys returns the YAML keys of a struct type, nested ones dotted and
// list elements marked "[]".
func keys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		key := prefix + name
		ft := f.Type
		switch {
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, keys(ft.Elem(), key+"[].")...)
		case ft.Kind() == reflect.Struct && ft.String() != "time.Time":
			out = append(out, keys(ft, key+".")...)
		default:
			out = append(out, key)
		}
	}
	return out
}

// docs/configuration.md lists every key the config reads, and nothing
// else.
func TestConfigurationDocIsComplete(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	var documented []string
	cell := regexp.MustCompile("`" + `([a-z0-9_]+(?:\[\])?(?:\.[a-z0-9_]+(?:\[\])?)*)` + "`")
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range cell.FindAllStringSubmatch(first, -1) {
			documented = append(documented, m[1])
		}
	}
	known := keys(reflect.TypeOf(Config{}), "")
	for _, k := range known {
		if !slices.Contains(documented, k) {
			t.Errorf("docs/configuration.md does not document %s", k)
		}
	}
	for _, k := range documented {
		if !slices.Contains(known, k) {
			t.Errorf("docs/configuration.md documents %s, which the config does not have", k)
		}
	}
	// The example parses.
	_, ex, ok := strings.Cut(doc, "```yaml\n")
	ex, _, _ = strings.Cut(ex, "```")
	if !ok {
		t.Fatal("no example")
	}
	f, err := os.CreateTemp(t.TempDir(), "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(ex)
	f.Close()
	c, err := Load(f.Name())
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	c.Fill()
	if err := c.Validate(); err != nil {
		t.Fatalf("the example is not valid: %v", err)
	}
}
