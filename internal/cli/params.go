package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// schema is what the CLI needs of a template's parameter schema: its
// properties in the order they are written, and which are required.
type schema struct {
	props    []property
	required map[string]bool
}

// property is one property of a parameter schema.
type property struct {
	name  string
	types []string                   // the "type" keyword: one or several JSON types
	kw    map[string]json.RawMessage // every keyword of the property
}

// parseSchema reads a JSON Schema of an object. An empty schema has no
// properties.
func parseSchema(raw json.RawMessage) (*schema, error) {
	s := &schema{required: map[string]bool{}}
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return s, nil
	}
	var top struct {
		Properties json.RawMessage `json:"properties"`
		Required   []string        `json:"required"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("parameter schema: %w", err)
	}
	for _, r := range top.Required {
		s.required[r] = true
	}
	if len(top.Properties) == 0 {
		return s, nil
	}
	names, err := objectKeys(top.Properties)
	if err != nil {
		return nil, fmt.Errorf("parameter schema: properties: %w", err)
	}
	var props map[string]map[string]json.RawMessage
	if err := json.Unmarshal(top.Properties, &props); err != nil {
		return nil, fmt.Errorf("parameter schema: properties: %w", err)
	}
	for _, n := range names {
		p := property{name: n, kw: props[n]}
		if t, ok := p.kw["type"]; ok {
			var one string
			if json.Unmarshal(t, &one) == nil {
				p.types = []string{one}
			} else if err := json.Unmarshal(t, &p.types); err != nil {
				return nil, fmt.Errorf("parameter schema: %s: type: %w", n, err)
			}
		}
		s.props = append(s.props, p)
	}
	return s, nil
}

// objectKeys returns the keys of a JSON object in the order written.
func objectKeys(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func (s *schema) prop(name string) *property {
	for i := range s.props {
		if s.props[i].name == name {
			return &s.props[i]
		}
	}
	return nil
}

// typeName is the property's type for people: "integer", "string|null", or
// "any" when the schema does not say.
func (p *property) typeName() string {
	if len(p.types) > 0 {
		return strings.Join(p.types, "|")
	}
	if _, ok := p.kw["enum"]; ok {
		return "enum"
	}
	return "any"
}

// constraintKeywords are the validation keywords shown, in this order.
var constraintKeywords = []string{
	"enum", "const", "format", "pattern",
	"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf",
	"minLength", "maxLength",
	"minItems", "maxItems", "uniqueItems", "items",
	"minProperties", "maxProperties",
}

// constraints lists the property's validation keywords as keyword=value.
func (p *property) constraints() string {
	var out []string
	for _, k := range constraintKeywords {
		v, ok := p.kw[k]
		if !ok {
			continue
		}
		var b bytes.Buffer
		if json.Compact(&b, v) != nil {
			b.Reset()
			b.Write(v)
		}
		out = append(out, k+"="+b.String())
	}
	return strings.Join(out, " ")
}

// jsonKind is the JSON Schema type of a decoded JSON value ("integer" for
// whole numbers, which are numbers too).
func jsonKind(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if f, err := x.Float64(); err == nil && f == math.Trunc(f) && !math.IsInf(f, 0) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

// kindFits reports whether a value of JSON kind fits schema type t.
func kindFits(kind, t string) bool {
	return kind == t || (t == "number" && kind == "integer")
}

// decodeJSON decodes one JSON value (and nothing after it), numbers as
// json.Number.
func decodeJSON(s string) (any, error) {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// coerceParam turns the text of --param name=value into a JSON value by
// the schema type of property name: a string is taken as is; integer,
// number, boolean, object, array and null are parsed as JSON. A property
// the schema does not declare, or declares without a type, is JSON if the
// text parses as JSON and a string otherwise.
func coerceParam(s *schema, name, value string) (json.RawMessage, error) {
	var p *property
	if s != nil {
		p = s.prop(name)
	}
	if p == nil || len(p.types) == 0 {
		if _, err := decodeJSON(value); err == nil {
			return json.RawMessage(strings.TrimSpace(value)), nil
		}
		return json.Marshal(value)
	}
	if len(p.types) == 1 && p.types[0] == "string" {
		return json.Marshal(value)
	}
	v, err := decodeJSON(value)
	if err == nil {
		kind := jsonKind(v)
		for _, t := range p.types {
			if t != "string" && kindFits(kind, t) {
				return json.RawMessage(strings.TrimSpace(value)), nil
			}
		}
	}
	if slices.Contains(p.types, "string") {
		return json.Marshal(value)
	}
	want := strings.Join(p.types, " or ")
	var how []string
	for _, t := range p.types {
		how = append(how, typeExample[t])
	}
	if err != nil {
		return nil, fmt.Errorf("parameter %q: want %s, written as %s; %q is not one", name, want, strings.Join(how, ", or "), value)
	}
	return nil, fmt.Errorf("parameter %q: want %s, written as %s; %q is %s", name, want, strings.Join(how, ", or "), value, aKind(jsonKind(v)))
}

// typeExample says how to write a value of each JSON Schema type but
// string (which is taken as it is).
var typeExample = map[string]string{
	"integer": "a whole number such as 5",
	"number":  "a number such as 2.5",
	"boolean": "true or false",
	"object":  `a JSON object such as {"k": 1}`,
	"array":   `a JSON array such as [1, 2]`,
	"null":    "null",
}

// aKind is a JSON kind with its article: "an integer", "a string",
// "null".
func aKind(kind string) string {
	switch {
	case kind == "null":
		return kind
	case kind != "" && strings.ContainsRune("aeiou", rune(kind[0])):
		return "an " + kind
	}
	return "a " + kind
}

// buildParams merges a JSON object (from --params-file, may be empty) and
// the --param k=v entries, which override it, coerced by the schema.
func buildParams(s *schema, file []byte, params []string) (json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(file)) > 0 {
		v, err := decodeJSON(string(file))
		if err != nil {
			return nil, fmt.Errorf("parameters file: not JSON: %v", strings.TrimPrefix(err.Error(), "json: "))
		}
		if kind := jsonKind(v); kind != "object" {
			return nil, fmt.Errorf("parameters file: want a JSON object of parameter names to values, such as {\"name\": \"Ada\"}, not %s", aKind(kind))
		}
		// the gateway refuses a member given twice; unmarshalled, the
		// last would be sent without a word
		if dup := duplicateMember(file); dup != "" {
			return nil, fmt.Errorf("parameters file: %s is given twice", dup)
		}
		if err := json.Unmarshal(file, &obj); err != nil {
			return nil, fmt.Errorf("parameters file: %v", err)
		}
	}
	given := map[string]bool{}
	for _, kv := range params {
		k, v, err := keyValue("param", kv)
		if err != nil {
			return nil, err
		}
		if given[k] {
			return nil, fmt.Errorf("--param %s: given twice", k)
		}
		given[k] = true
		raw, err := coerceParam(s, k, v)
		if err != nil {
			return nil, err
		}
		obj[k] = raw
	}
	if len(obj) == 0 && len(file) == 0 {
		return nil, nil
	}
	return json.Marshal(obj)
}

// duplicateMember returns the first member of an object in the JSON
// document raw, at any depth, that is given twice, by its path (name,
// opts.k, list[2].k), or "" if none is.
func duplicateMember(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	var walk func(path string) string
	walk = func(path string) string {
		t, err := dec.Token()
		if err != nil {
			return ""
		}
		switch t {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				t, err := dec.Token()
				if err != nil {
					return ""
				}
				k, _ := t.(string)
				p := k
				if path != "" {
					p = path + "." + k
				}
				if seen[k] {
					return p
				}
				seen[k] = true
				if dup := walk(p); dup != "" {
					return dup
				}
			}
			dec.Token() // }
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if dup := walk(fmt.Sprintf("%s[%d]", path, i)); dup != "" {
					return dup
				}
			}
			dec.Token() // ]
		}
		return ""
	}
	return walk("")
}

// parseSeconds reads a duration as whole seconds: a number of seconds
// (3600), a Go duration (1h30m, 90s, rounded up to the second), days (2d),
// or a clock time [D-]HH:MM:SS or MM:SS as batch systems write them. It
// must be more than zero.
func parseSeconds(s string) (int64, error) {
	s = strings.TrimSpace(s)
	bad := func() (int64, error) {
		return 0, fmt.Errorf("duration %q: want seconds (3600), a duration (1h30m, 2d) or [D-]HH:MM:SS", s)
	}
	var secs int64
	switch {
	case s == "":
		return bad()
	case isDigits(s):
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return bad()
		}
		secs = n
	case strings.HasSuffix(s, "d") && isDigits(s[:len(s)-1]):
		n, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
		if err != nil || n > math.MaxInt64/86400 {
			return bad()
		}
		secs = n * 86400
	case strings.Contains(s, ":"):
		var days int64
		clock := s
		if d, rest, ok := strings.Cut(s, "-"); ok {
			n, err := strconv.ParseInt(d, 10, 64)
			if err != nil || !isDigits(d) {
				return bad()
			}
			days, clock = n, rest
		}
		parts := strings.Split(clock, ":")
		if len(parts) > 3 || (days > 0 && len(parts) < 2) {
			return bad()
		}
		for i, p := range parts {
			n, err := strconv.ParseInt(p, 10, 64)
			if err != nil || !isDigits(p) || (i > 0 && n > 59) {
				return bad()
			}
			secs = secs*60 + n
		}
		if len(parts) == 2 && days > 0 {
			secs *= 60 // D-HH:MM
		}
		secs += days * 86400
	default:
		d, err := time.ParseDuration(s)
		if err != nil {
			return bad()
		}
		secs = int64((d + time.Second - 1) / time.Second)
	}
	if secs <= 0 {
		return 0, fmt.Errorf("duration %q: must be more than zero", s)
	}
	return secs, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// formatSeconds formats seconds as a Go duration (1h30m0s), or "-" for 0.
func formatSeconds(s int64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s) * time.Second).String()
}

// checkOutputPath refuses a path of an output that could land outside the
// download directory: empty, absolute, with a ".." element, a backslash
// or a NUL byte. It returns the path cleaned.
func checkOutputPath(p string) (string, error) {
	if p == "" {
		return "", errors.New("empty output path")
	}
	if strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") || hasDriveLetter(p) {
		return "", fmt.Errorf("refusing output path %q: absolute or not portable", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return "", fmt.Errorf("refusing output path %q: it contains ..", p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", fmt.Errorf("refusing output path %q: not a file", p)
	}
	return c, nil
}

// hasDriveLetter reports whether p starts like C: or C:/ (absolute or
// drive-relative on Windows).
func hasDriveLetter(p string) bool {
	if len(p) < 2 || p[1] != ':' {
		return false
	}
	c := p[0] | 0x20
	return c >= 'a' && c <= 'z' && (len(p) == 2 || p[2] == '/')
}

// resourcesText formats resources for people.
func resourcesText(r api.Resources) string {
	var parts []string
	if r.Nodes > 0 {
		parts = append(parts, plural(int64(r.Nodes), "node"))
	}
	if r.CoresPerNode > 0 {
		parts = append(parts, plural(int64(r.CoresPerNode), "core")+" per node")
	}
	if r.MemoryMB > 0 {
		parts = append(parts, fmt.Sprintf("%d MB memory", r.MemoryMB))
	}
	if r.WalltimeS > 0 {
		parts = append(parts, "walltime "+formatSeconds(r.WalltimeS))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
