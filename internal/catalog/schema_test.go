package catalog

import (
	"fmt"
	"strings"
	"testing"
	"time"
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

// uniqueItems compared every item with every one before it, and named
// every pair: an array of n equal items in a request gave n(n-1)/2
// errors, and one of 20,000 different strings took minutes. Each repeated
// item is named once, with the first item it repeats, in one pass.
func TestUniqueItemsIsLinear(t *testing.T) {
	s, err := CompileSchema([]byte(`{"type":"array","uniqueItems":true}`))
	if err != nil {
		t.Fatal(err)
	}
	list := func(n int, item func(i int) string) any {
		items := make([]string, n)
		for i := range items {
			items[i] = item(i)
		}
		v, err := decodeJSON([]byte("[" + strings.Join(items, ",") + "]"))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	fails := s.Validate(list(1000, func(int) string { return `{"a":[1]}` }), "p")
	if len(fails) != 999 || fails[998].Field != "p[999]" || !strings.Contains(fails[998].Message, "repeats item 0") {
		t.Fatalf("1,000 equal items: %d errors, want 999, one per repeat, each naming item 0 (last: %v)", len(fails), fails[len(fails)-1:])
	}
	// equal as JSON Schema compares: numbers by value, also within
	// arrays and objects, and objects whatever the order of their members
	same := list(8, func(i int) string {
		return []string{"1", "1.0", `{"a":1,"b":2}`, `{"b":2,"a":1.0}`, "[-0]", "[0]", `"1"`, "true"}[i]
	})
	if fails := s.Validate(same, "p"); len(fails) != 3 || fails[0].Field != "p[1]" || fails[1].Field != "p[3]" || fails[2].Field != "p[5]" {
		t.Fatalf("1 and 1.0, objects in another order, [-0] and [0] (and not \"1\" nor true): %v", fails)
	}
	distinct := list(20000, func(i int) string { return fmt.Sprintf(`"item %d"`, i) })
	done := make(chan []FieldError, 1)
	go func() { done <- s.Validate(distinct, "p") }()
	select {
	case fails := <-done:
		if len(fails) != 0 {
			t.Fatalf("20,000 different items: %v", fails[:1])
		}
	case <-time.After(30 * time.Second): // a pass takes milliseconds; comparing every pair took minutes
		t.Fatal("20,000 different items still being compared after 30 s")
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
