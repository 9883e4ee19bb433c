// Package tesspec holds the GA4GH TES 1.1 OpenAPI document and checks JSON
// documents against its schemas, strictly, so that tests can hold the
// gateway's TES answers to exactly the shapes the spec defines.
//
// The validator understands the part of OpenAPI 3.0's schema language the
// spec uses: $ref, allOf, type, properties, required, items, enum,
// additionalProperties and format (date-time is RFC 3339; int32 and int64
// are ranges, on integers and on decimal strings; double, float, boolean
// and uri are annotations), and it ignores description, example, default,
// title and readOnly. Any other keyword is refused when the spec is loaded,
// so that a check never means less than it says. Beyond the spec, an object
// schema without additionalProperties admits no member it does not name.
//
// tesServiceInfo and tesServiceType refer to GA4GH service-info 1.0.0 by
// URL; service-info.yaml here is that document. NOTICE says where both
// came from.
package tesspec

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

//go:embed task_execution_service-1.1.openapi.yaml service-info.yaml NOTICE LICENSE
var files embed.FS // NOTICE and LICENSE go with the documents into the binary

const (
	tesFile         = "task_execution_service-1.1.openapi.yaml"
	serviceInfoFile = "service-info.yaml"
	serviceInfoURL  = "https://raw.githubusercontent.com/ga4gh-discovery/ga4gh-service-info/v1.0.0/service-info.yaml"
)

// Failure is one way a document departs from its schema, at Path: members
// and indexes from the document's root ("tasks[0].state"), or "$" for the
// root itself.
type Failure struct {
	Path, Message string
}

func (f Failure) String() string { return f.Path + ": " + f.Message }

// Failures is every failure Validate found; it is the error Validate
// returns for a document that is JSON but not of the schema's shape.
type Failures []Failure

func (fs Failures) Error() string {
	lines := make([]string, len(fs))
	for i, f := range fs {
		lines[i] = f.String()
	}
	return strings.Join(lines, "\n")
}

// Validate checks doc (a JSON document) against the schema the spec's
// components.schemas names (e.g. "tesTask", "tesListTasksResponse",
// "tesServiceInfo", "tesCreateTaskResponse", "tesCancelTaskResponse"),
// strictly: every failure with its JSON path, as Failures.
//
// Validate holds a task to tesTask as the spec writes it, with executors
// required, which only a FULL or BASIC task has; ValidateView checks a
// MINIMAL one.
func Validate(schema string, doc []byte) error { return ValidateView("FULL", schema, doc) }

// ValidateView is Validate for an answer given in a task view: "FULL" is
// Validate; "BASIC" also fails an executor log's stdout or stderr, an
// input's content or a task log's system_logs; "MINIMAL" holds each task
// to an id and a state and nothing else (the spec's view parameter says
// so, though tesTask requires executors: task-execution-schemas issue 136).
func ValidateView(view, schema string, doc []byte) error {
	rules, ok := views[view]
	if !ok {
		return fmt.Errorf("tesspec: no task view %q (MINIMAL, BASIC or FULL)", view)
	}
	sp, err := load()
	if err != nil {
		return err
	}
	s, ok := sp.schemas[schema]
	if !ok {
		return fmt.Errorf("tesspec: the spec has no schema %q", schema)
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("tesspec: the document is not JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("tesspec: the document goes on after its JSON value")
	}
	c := checker{rules: rules}
	c.check(s, v, "", false)
	if len(c.fails) > 0 {
		return c.fails
	}
	return nil
}

// Schemas lists the names of the spec's components.schemas, sorted.
func Schemas() []string {
	sp, err := load()
	if err != nil {
		return nil
	}
	return slices.Sorted(maps.Keys(sp.schemas))
}

// A viewRule limits the members of one named schema in a view: only those
// in only (all of them required), none of those in hide.
type viewRule struct{ only, hide []string }

var views = map[string]map[string]viewRule{
	"FULL": {},
	"BASIC": {
		"tesExecutorLog": {hide: []string{"stdout", "stderr"}},
		"tesInput":       {hide: []string{"content"}},
		"tesTaskLog":     {hide: []string{"system_logs"}},
	},
	"MINIMAL": {"tesTask": {only: []string{"id", "state"}}},
}

// schema is one compiled schema. A $ref compiles to its target's pointer.
type schema struct {
	name     string // its name in components.schemas, or ""
	allOf    []*schema
	typ      string
	format   string
	props    map[string]*schema
	required []string
	items    *schema
	enum     []string
	addl     *schema // additionalProperties as a schema
	open     bool    // additionalProperties is true or a schema
}

var load = sync.OnceValues(func() (*compiler, error) {
	c := &compiler{docs: map[string]map[string]*yaml.Node{}, files: map[string]string{}, memo: map[string]*schema{}}
	for doc, file := range map[string]string{"": tesFile, serviceInfoURL: serviceInfoFile} {
		data, err := files.ReadFile(file)
		if err == nil {
			err = c.add(doc, file, data)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, c.compileAll("")
})

// compiler turns documents' components.schemas into schemas; doc "" is the
// TES spec, and another document is known by the URL $refs use for it.
type compiler struct {
	docs    map[string]map[string]*yaml.Node
	files   map[string]string
	memo    map[string]*schema // by doc + "#" + name
	schemas map[string]*schema // doc ""'s, by name
}

func (c *compiler) add(doc, file string, data []byte) error {
	var d struct {
		Components struct{ Schemas map[string]yaml.Node }
	}
	if err := yaml.Unmarshal(data, &d); err != nil {
		return fmt.Errorf("tesspec: %s: %w", file, err)
	}
	c.docs[doc], c.files[doc] = map[string]*yaml.Node{}, file
	for name, n := range d.Components.Schemas {
		c.docs[doc][name] = &n
	}
	return nil
}

func (c *compiler) compileAll(doc string) error {
	c.schemas = map[string]*schema{}
	for name := range c.docs[doc] {
		s, err := c.named(doc, name)
		if err != nil {
			return err
		}
		c.schemas[name] = s
	}
	return nil
}

func (c *compiler) named(doc, name string) (*schema, error) {
	key := doc + "#" + name
	if s := c.memo[key]; s != nil {
		return s, nil
	}
	n, ok := c.docs[doc][name]
	if !ok {
		return nil, fmt.Errorf("tesspec: %s has no schema %s", c.files[doc], name)
	}
	s := &schema{name: name}
	c.memo[key] = s // before filling it, for recursive schemas
	return s, c.fill(s, doc, n)
}

func (c *compiler) compile(doc string, n *yaml.Node) (*schema, error) {
	if n.Kind == yaml.MappingNode && len(n.Content) == 2 && n.Content[0].Value == "$ref" {
		target, frag, _ := strings.Cut(n.Content[1].Value, "#")
		name, ok := strings.CutPrefix(frag, "/components/schemas/")
		if target == "" {
			target = doc
		}
		if _, known := c.docs[target]; !ok || !known {
			return nil, c.errorf(doc, n, "unresolvable $ref %s", n.Content[1].Value)
		}
		return c.named(target, name)
	}
	s := &schema{}
	return s, c.fill(s, doc, n)
}

func (c *compiler) fill(s *schema, doc string, n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return c.errorf(doc, n, "a schema must be a mapping")
	}
	var err error
	hasAddl := false
	for i := 0; i < len(n.Content) && err == nil; i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "description", "example", "default", "title", "readOnly":
		case "type":
			s.typ = v.Value
			if !slices.Contains([]string{"object", "array", "string", "integer", "number", "boolean"}, s.typ) {
				err = c.errorf(doc, v, "unsupported type %q", s.typ)
			}
		case "format":
			s.format = v.Value
			if !slices.Contains([]string{"date-time", "int32", "int64", "double", "float", "boolean", "uri"}, s.format) {
				err = c.errorf(doc, v, "unsupported format %q", s.format)
			}
		case "required":
			err = v.Decode(&s.required)
		case "enum":
			for _, e := range v.Content {
				if e.Tag != "!!str" {
					return c.errorf(doc, e, "unsupported enum value %s (strings only)", e.Value)
				}
			}
			err = v.Decode(&s.enum)
		case "items":
			s.items, err = c.compile(doc, v)
		case "properties":
			s.props = map[string]*schema{}
			for j := 0; j+1 < len(v.Content) && err == nil; j += 2 {
				s.props[v.Content[j].Value], err = c.compile(doc, v.Content[j+1])
			}
		case "additionalProperties":
			hasAddl = true
			if v.Kind == yaml.ScalarNode {
				err = v.Decode(&s.open)
			} else {
				s.open = true
				s.addl, err = c.compile(doc, v)
			}
		case "allOf":
			for _, b := range v.Content {
				var bs *schema
				if bs, err = c.compile(doc, b); err != nil {
					break
				}
				s.allOf = append(s.allOf, bs)
			}
		default:
			err = c.errorf(doc, k, "unsupported keyword %s", k.Value)
		}
	}
	switch {
	case err != nil:
		return err
	case s.allOf != nil && (s.typ != "" || s.format != "" || s.enum != nil || hasAddl):
		return c.errorf(doc, n, "allOf beside validation keywords")
	case s.typ != "object" && (s.props != nil || s.required != nil || hasAddl):
		return c.errorf(doc, n, "object keywords in a schema of type %q", s.typ)
	case s.typ != "array" && s.items != nil:
		return c.errorf(doc, n, "items in a schema of type %q", s.typ)
	}
	return nil
}

func (c *compiler) errorf(doc string, n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("tesspec: %s:%d: %s", c.files[doc], n.Line, fmt.Sprintf(format, args...))
}

// checker collects the failures of one document.
type checker struct {
	rules map[string]viewRule
	fails Failures
}

func (c *checker) fail(path, format string, args ...any) {
	if path == "" {
		path = "$"
	}
	// allOf's branches may check one member twice (tesServiceInfo's type).
	if f := (Failure{path, fmt.Sprintf(format, args...)}); !slices.Contains(c.fails, f) {
		c.fails = append(c.fails, f)
	}
}

// check checks v at path against s. Within allOf, branch is true and the
// members the branches name together are checked once, by the allOf.
func (c *checker) check(s *schema, v any, path string, branch bool) {
	if s.allOf != nil {
		for _, b := range s.allOf {
			c.check(b, v, path, true)
		}
		if obj, ok := v.(map[string]any); ok && !branch {
			names, open := map[string]bool{}, false
			members(s, names, &open)
			for _, k := range sortedKeys(obj) {
				if !open && !names[k] {
					c.fail(member(path, k), "unknown member %s", k)
				}
			}
		}
		return
	}
	if s.typ != "" && s.typ != typeOf(v) && !(s.typ == "number" && typeOf(v) == "integer") {
		c.fail(path, "want %s, have %s", s.typ, typeOf(v))
		return
	}
	switch v := v.(type) {
	case string:
		if s.enum != nil && !slices.Contains(s.enum, v) {
			c.fail(path, "%q is not one of %s", v, strings.Join(s.enum, ", "))
		}
		c.format(s.format, v, path)
	case json.Number:
		c.format(s.format, v, path)
	case []any:
		for i, e := range v {
			if s.items != nil {
				c.check(s.items, e, fmt.Sprintf("%s[%d]", path, i), false)
			}
		}
	case map[string]any:
		c.object(s, v, path, branch)
	}
}

func (c *checker) object(s *schema, obj map[string]any, path string, branch bool) {
	rule := c.rules[s.name]
	required := s.required
	if rule.only != nil {
		required = rule.only
	}
	for _, r := range required {
		if _, ok := obj[r]; !ok {
			c.fail(path, "missing required member %s", r)
		}
	}
	for _, k := range sortedKeys(obj) {
		p, ps := member(path, k), s.props[k]
		switch {
		case rule.only != nil && !slices.Contains(rule.only, k) || slices.Contains(rule.hide, k):
			c.fail(p, "member %s is not in this task view", k)
		case ps != nil:
			c.check(ps, obj[k], p, false)
		case s.addl != nil:
			c.check(s.addl, obj[k], p, false)
		case !s.open && !branch:
			c.fail(p, "unknown member %s", k)
		}
	}
}

// members gathers the members s names, through allOf and $ref, and
// whether any part of it admits others.
func members(s *schema, names map[string]bool, open *bool) {
	for k := range s.props {
		names[k] = true
	}
	*open = *open || s.open
	for _, b := range s.allOf {
		members(b, names, open)
	}
}

func (c *checker) format(format string, v any, path string) {
	switch format {
	case "date-time":
		if str, ok := v.(string); ok && !validTime(str) {
			c.fail(path, "%q is not an RFC 3339 date-time", v)
		}
	case "int32", "int64":
		var n *big.Int
		switch v := v.(type) {
		case string: // int64 as a decimal string, as proto3's JSON writes it
			n, _ = new(big.Int).SetString(v, 10)
		case json.Number:
			if r, ok := new(big.Rat).SetString(string(v)); ok && r.IsInt() {
				n = r.Num()
			}
		}
		lo, hi := big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)
		if format == "int32" {
			lo, hi = big.NewInt(math.MinInt32), big.NewInt(math.MaxInt32)
		}
		if n == nil {
			c.fail(path, "%q is not a decimal integer (%s)", v, format)
		} else if n.Cmp(lo) < 0 || n.Cmp(hi) > 0 {
			c.fail(path, "%s is out of the %s range", n, format)
		}
	}
}

// validTime is whether s is an RFC 3339 date-time, with an upper-case T
// and Z (RFC 3339 also allows lower case; time.Parse and this check do
// not). time.Parse also takes a comma before fractional seconds, which
// RFC 3339 does not.
func validTime(s string) bool {
	_, err := time.Parse(time.RFC3339, s)
	return err == nil && !strings.Contains(s, ",")
}

// typeOf is v's JSON type, "integer" for a number without a fraction.
func typeOf(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(v)); ok && r.IsInt() {
			return "integer"
		}
		return "number"
	}
	return fmt.Sprintf("%T", v)
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func member(path, k string) string {
	if !identifier.MatchString(k) {
		return path + "[" + strconv.Quote(k) + "]"
	}
	if path == "" {
		return k
	}
	return path + "." + k
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
