package catalog

import (
	"strings"
	"testing"
)

const testSchema = `{
  "type": "object",
  "additionalProperties": false,
  "required": ["name", "n"],
  "properties": {
    "name":  {"type": "string", "minLength": 1, "maxLength": 5, "pattern": "^[a-z]+$"},
    "n":     {"type": "integer", "minimum": 1, "maximum": 10},
    "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.5},
    "step":  {"type": "number", "multipleOf": 0.5},
    "mode":  {"enum": ["fast", "exact"]},
    "fixed": {"const": 3},
    "tags":  {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3, "uniqueItems": true},
    "mesh":  {"type": "object", "properties": {"size": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    "opt":   {"type": ["string", "null"]}
  }
}`

func TestSchemaValidate(t *testing.T) {
	s, err := CompileSchema([]byte(testSchema))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		doc  string
		want string // field: message fragments, joined by " | "
	}{
		{`{"name":"abc","n":3}`, ""},
		{`{"name":"abc","n":3.0,"ratio":0.25,"step":1.5,"mode":"fast","fixed":3,"tags":["a","b"],"mesh":{"size":2,"x":"y"},"opt":null}`, ""},
		{`{}`, "p.name: is required | p.n: is required"},
		{`{"name":"ABCDEFG","n":0}`, "p.n: at least 1 | p.name: at most 5 | p.name: pattern"},
		{`{"name":5,"n":2.5}`, "p.n: must be integer, not number | p.name: must be string, not integer"},
		{`{"name":"a","n":11,"ratio":1,"step":0.7,"mode":"slow","fixed":4}`, "p.fixed: must be 3 | p.mode: one of | p.n: at most 10 | p.ratio: less than 1 | p.step: multiple of 0.5"},
		{`{"name":"a","n":1,"tags":[],"extra":1}`, "p.extra: not allowed | p.tags: at least 1 items"},
		{`{"name":"a","n":1,"tags":["x","y","x",4]}`, "p.tags: at most 3 | p.tags[2]: unique | p.tags[3]: must be string"},
		{`{"name":"a","n":1,"mesh":{"size":"big","x":1}}`, "p.mesh.size: must be integer | p.mesh.x: must be string"},
	}
	for _, tt := range tests {
		v, err := decodeJSON([]byte(tt.doc))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, f := range s.Validate(v, "p") {
			got = append(got, f.Field+": "+f.Message)
		}
		wants := strings.Split(tt.want, " | ")
		if tt.want == "" {
			wants = nil
		}
		if len(got) != len(wants) {
			t.Errorf("%s: got %q, want %q", tt.doc, got, wants)
			continue
		}
		for i, w := range wants {
			field, frag, _ := strings.Cut(w, ": ")
			if !strings.HasPrefix(got[i], field+": ") || !strings.Contains(got[i], frag) {
				t.Errorf("%s: error %d = %q, want %q", tt.doc, i, got[i], w)
			}
		}
	}
}

func TestSchemaRefusesWhatItDoesNotSupport(t *testing.T) {
	for _, doc := range []string{
		`{"type":"object","properties":{"a":{"$ref":"#/defs/x"}}}`,
		`{"anyOf":[{"type":"string"}]}`,
		`{"type":"strnig"}`,
		`{"pattern":"("}`,
		`{"type":"integer","minimum":"1"}`,
		`{"type":"integer","default":"one"}`,
		`{"minLength":-1}`,
		`false`,
	} {
		if _, err := CompileSchema([]byte(doc)); err == nil {
			t.Errorf("CompileSchema(%s) accepted", doc)
		}
	}
}
