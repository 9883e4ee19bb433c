package catalog

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hpcgate/hpcgate/examples/templates"
	"github.com/hpcgate/hpcgate/internal/blob"
)

var fuzzEnvs = []Environment{{Name: "local", Scheduler: "local", Max: Limits{Nodes: 1, CoresPerNode: 4}}}

// FuzzTemplateYAML loads arbitrary template files. A template that loads
// is one the gateway can run safely: a name of the allowed shape, a
// command, input paths that pass the one path check, an environment.
func FuzzTemplateYAML(f *testing.F) {
	for _, name := range []string{"hello.yaml", "wordcount.yaml", "fanout.yaml"} {
		b, err := templates.FS.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("name: x\nversion: 1\ncommand: [a]\nenvironments: [local]\ninputs: [{name: i, path: ../../etc/passwd}]\n"))
	f.Add([]byte("name: x\nversion: 1\ncommand: [a]\nenvironments: [local]\nparameters: {type: object, properties: {a: {type: string, pattern: '('}}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Load(fuzzEnvs, fstest.MapFS{"t.yaml": {Data: data}})
		if err != nil {
			return
		}
		for _, tm := range c.Templates() {
			if !nameRE.MatchString(tm.Name) {
				t.Fatalf("loaded a template named %q", tm.Name)
			}
			if len(tm.Command) == 0 || len(tm.Environments) == 0 {
				t.Fatalf("loaded a template with no command or environment: %+v", tm)
			}
			for _, in := range tm.Inputs {
				if err := blob.CheckPath(in.Path); err != nil {
					t.Fatalf("loaded input path %q: %v", in.Path, err)
				}
			}
			// Its parameter schema validates what it says it does, and its
			// defaults pass it.
			verr := &ValidationError{}
			tm.validateParameters(json.RawMessage(`{}`), verr)
		}
	})
}

// FuzzSchema compiles arbitrary schemas and validates arbitrary values
// against those that compile: no panic, and every failure names a field
// under the root it was given.
func FuzzSchema(f *testing.F) {
	f.Add([]byte(testSchema), []byte(`{"name":"abc","n":3}`))
	f.Add([]byte(testSchema), []byte(`{"name":5,"n":2.5,"tags":[1,1]}`))
	f.Add([]byte(`{"type":"array","items":{"type":"object","required":["a"]}}`), []byte(`[{}, {"a":1}]`))
	f.Add([]byte(`{"type":"string","pattern":"^(a+)+$"}`), []byte(`"aaaaaaaaaaaaaaaaaaaaaaaaaaaa!"`))
	f.Fuzz(func(t *testing.T, schema, value []byte) {
		s, err := CompileSchema(schema)
		if err != nil {
			return
		}
		v, err := decodeJSON(value)
		if err != nil {
			return
		}
		errs := s.Validate(v, "p")
		again := s.Validate(v, "p")
		if len(errs) != len(again) {
			t.Fatalf("validation is not deterministic: %v, then %v", errs, again)
		}
		for _, fe := range errs {
			if fe.Field != "p" && !strings.HasPrefix(fe.Field, "p.") && !strings.HasPrefix(fe.Field, "p[") {
				t.Fatalf("field %q is not under the root p", fe.Field)
			}
			if fe.Message == "" {
				t.Fatalf("no message for %q", fe.Field)
			}
		}
	})
}

// FuzzParseURLInput: whatever it accepts is an https URL with a host, no
// user name and no fragment, and reads the same when parsed again.
func FuzzParseURLInput(f *testing.F) {
	f.Add("https://data.example.org/mesh.tar.gz#sha256=" + strings.Repeat("0f", 32))
	f.Add("https://a/b?c=d")
	f.Add("http://a/b")
	f.Add("https://u:p@a/b")
	f.Add("https://a/%zz")
	f.Fuzz(func(t *testing.T, s string) {
		in, err := ParseURLInput(s)
		if err != nil {
			return
		}
		u, err := url.Parse(in.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.Fragment != "" || strings.Contains(in.URL, "#") {
			t.Fatalf("ParseURLInput(%q) accepted %+v", s, in)
		}
		if in.SHA256 != "" && len(in.SHA256) != 64 {
			t.Fatalf("ParseURLInput(%q): digest %q", s, in.SHA256)
		}
		again, err := ParseURLInput(in.URL)
		if err != nil || again.URL != in.URL {
			t.Fatalf("ParseURLInput(%q) = %+v, which reads as %+v, %v", s, in, again, err)
		}
	})
}
