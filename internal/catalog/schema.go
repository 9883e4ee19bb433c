package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/big"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Schema is a compiled parameter schema: the subset of JSON Schema 2020-12
// that describes job parameters. Supported keywords:
//
//	type (one name or a list), enum, const,
//	minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf,
//	minLength, maxLength, pattern,
//	properties, required, additionalProperties (boolean or schema),
//	items, minItems, maxItems, uniqueItems,
//	and the annotations title, description, default, examples, format,
//	deprecated, readOnly, writeOnly, $schema, $comment.
//
// Any other keyword ($ref, allOf, anyOf, oneOf, not, if/then/else, ...) is
// refused when the template loads, so a template never silently means less
// than it says. Validation reports every failure, each with its field path.
type Schema struct {
	types      []string
	enum       []any
	enumKeys   map[string]bool // the enum's values' canonical forms
	constant   any
	constKey   string // its canonical form
	hasConst   bool
	min, max   *float64
	exMin      *float64
	exMax      *float64
	multipleOf *float64
	minLen     *int
	maxLen     *int
	pattern    *regexp.Regexp
	props      map[string]*Schema
	required   []string
	additional *Schema // nil: any
	noExtra    bool    // additionalProperties: false
	items      *Schema
	minItems   *int
	maxItems   *int
	unique     bool
	// Default is the schema's default value, if it has one.
	Default    any
	hasDefault bool
}

var schemaTypes = map[string]bool{"string": true, "integer": true, "number": true, "boolean": true, "object": true, "array": true, "null": true}

var annotations = map[string]bool{"title": true, "description": true, "default": true, "examples": true, "format": true,
	"deprecated": true, "readOnly": true, "writeOnly": true, "$schema": true, "$comment": true}

// CompileSchema compiles a schema from its JSON text.
func CompileSchema(doc []byte) (*Schema, error) {
	v, err := decodeJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	return compileSchema(v, "")
}

// decodeJSON decodes with numbers kept exact (json.Number).
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func compileSchema(v any, at string) (*Schema, error) {
	where := func() string {
		if at == "" {
			return "schema"
		}
		return "schema at " + at
	}
	if b, ok := v.(bool); ok {
		if b {
			return &Schema{}, nil
		}
		return nil, fmt.Errorf("%s: the schema false allows nothing", where())
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: must be an object", where())
	}
	s := &Schema{}
	var errs []error
	bad := func(kw, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", where(), kw, fmt.Sprintf(format, args...)))
	}
	num := func(kw string) *float64 {
		x, ok := m[kw]
		if !ok {
			return nil
		}
		f, ok := toFloat(x)
		if !ok {
			bad(kw, "must be a number")
			return nil
		}
		return &f
	}
	count := func(kw string) *int {
		x, ok := m[kw]
		if !ok {
			return nil
		}
		f, ok := toFloat(x)
		if !ok || f < 0 || f != math.Trunc(f) {
			bad(kw, "must be a whole number ≥ 0")
			return nil
		}
		n := int(f)
		return &n
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		x := m[k]
		switch k {
		case "type":
			switch t := x.(type) {
			case string:
				s.types = []string{t}
			case []any:
				for _, e := range t {
					if name, ok := e.(string); ok {
						s.types = append(s.types, name)
					}
				}
			}
			if len(s.types) == 0 {
				bad(k, "must be a type name or a list of them")
			}
			for _, t := range s.types {
				if !schemaTypes[t] {
					bad(k, "unknown type %q", t)
				}
			}
		case "enum":
			l, ok := x.([]any)
			if !ok || len(l) == 0 {
				bad(k, "must be a non-empty list")
			}
			s.enum, s.enumKeys = l, map[string]bool{}
			for _, e := range l {
				s.enumKeys[canonical(e)] = true
			}
		case "const":
			s.constant, s.constKey, s.hasConst = x, canonical(x), true
		case "minimum":
			s.min = num(k)
		case "maximum":
			s.max = num(k)
		case "exclusiveMinimum":
			s.exMin = num(k)
		case "exclusiveMaximum":
			s.exMax = num(k)
		case "multipleOf":
			if s.multipleOf = num(k); s.multipleOf != nil && *s.multipleOf <= 0 {
				bad(k, "must be greater than 0")
			}
		case "minLength":
			s.minLen = count(k)
		case "maxLength":
			s.maxLen = count(k)
		case "pattern":
			p, ok := x.(string)
			re, err := regexp.Compile(p)
			if !ok || err != nil {
				bad(k, "must be a regular expression (RE2): %v", err)
			}
			s.pattern = re
		case "properties":
			pm, ok := x.(map[string]any)
			if !ok {
				bad(k, "must be an object")
				continue
			}
			s.props = map[string]*Schema{}
			for name, ps := range pm {
				c, err := compileSchema(ps, join(at, name))
				if err != nil {
					errs = append(errs, err)
					continue
				}
				s.props[name] = c
			}
		case "required":
			l, ok := x.([]any)
			if !ok {
				bad(k, "must be a list of names")
			}
			for _, e := range l {
				name, ok := e.(string)
				if !ok {
					bad(k, "must be a list of names")
				}
				s.required = append(s.required, name)
			}
		case "additionalProperties":
			if b, ok := x.(bool); ok {
				s.noExtra = !b
				continue
			}
			c, err := compileSchema(x, join(at, "*"))
			if err != nil {
				errs = append(errs, err)
			}
			s.additional = c
		case "items":
			c, err := compileSchema(x, at+"[]")
			if err != nil {
				errs = append(errs, err)
			}
			s.items = c
		case "minItems":
			s.minItems = count(k)
		case "maxItems":
			s.maxItems = count(k)
		case "uniqueItems":
			s.unique, _ = x.(bool)
		default:
			if !annotations[k] {
				bad(k, "keyword not supported in parameter schemas (supported: type, enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum, multipleOf, minLength, maxLength, pattern, properties, required, additionalProperties, items, minItems, maxItems, uniqueItems)")
			}
		}
	}
	if d, ok := m["default"]; ok {
		s.Default, s.hasDefault = d, true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if s.hasDefault {
		var derrs []string
		s.validate(s.Default, "default", func(f, msg string) { derrs = append(derrs, f+" "+msg) })
		if len(derrs) > 0 {
			return nil, fmt.Errorf("%s: the default does not fit the schema: %s", where(), strings.Join(derrs, "; "))
		}
	}
	return s, nil
}

func join(at, name string) string {
	if at == "" {
		return name
	}
	return at + "." + name
}

func toFloat(x any) (float64, bool) {
	switch n := x.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}

func typeOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64, int:
		f, _ := toFloat(x)
		if f == math.Trunc(f) && !math.IsInf(f, 0) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func hasType(types []string, v any) bool {
	t := typeOf(v)
	for _, want := range types {
		if want == t || (want == "number" && t == "integer") {
			return true
		}
	}
	return false
}

func fmtNum(f float64) string {
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%f", f), "000000"), ".")
}

// canonical is v (decoded JSON) written so that two values are equal, as
// JSON Schema's const, enum and uniqueItems compare them, exactly when
// their canonical forms are: numbers by value (1 and 1.0 are equal),
// objects whatever the order of their members.
func canonical(v any) string {
	var b strings.Builder
	writeCanonical(&b, v)
	return b.String()
}

func writeCanonical(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case string:
		b.WriteString(strconv.Quote(x))
	case json.Number, float64, int:
		f, ok := toFloat(x)
		switch {
		case !ok: // beyond float64 (1e400): compared as written
			b.WriteString("n" + fmt.Sprint(x))
		case f == 0:
			b.WriteString("0") // and -0
		default:
			b.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(maps.Keys(x)) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Quote(k) + ":")
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprintf(b, "%T(%v)", x, x)
	}
}

// validate checks v and calls add for every failure, with its field path.
func (s *Schema) validate(v any, field string, add func(field, msg string)) {
	if len(s.types) > 0 && !hasType(s.types, v) {
		add(field, fmt.Sprintf("must be %s, not %s", strings.Join(s.types, " or "), typeOf(v)))
		return
	}
	if s.hasConst || len(s.enum) > 0 {
		key := canonical(v)
		if s.hasConst && key != s.constKey {
			c, _ := json.Marshal(s.constant)
			add(field, "must be "+string(c))
		}
		if len(s.enum) > 0 && !s.enumKeys[key] {
			var opts []string
			for _, e := range s.enum {
				b, _ := json.Marshal(e)
				opts = append(opts, string(b))
			}
			add(field, "must be one of "+strings.Join(opts, ", "))
		}
	}
	switch x := v.(type) {
	case json.Number, float64, int:
		f, _ := toFloat(x)
		if s.min != nil && f < *s.min {
			add(field, "must be at least "+fmtNum(*s.min))
		}
		if s.max != nil && f > *s.max {
			add(field, "must be at most "+fmtNum(*s.max))
		}
		if s.exMin != nil && f <= *s.exMin {
			add(field, "must be greater than "+fmtNum(*s.exMin))
		}
		if s.exMax != nil && f >= *s.exMax {
			add(field, "must be less than "+fmtNum(*s.exMax))
		}
		if s.multipleOf != nil {
			if q := f / *s.multipleOf; math.Abs(q-math.Round(q)) > 1e-9 {
				add(field, "must be a multiple of "+fmtNum(*s.multipleOf))
			}
		}
	case string:
		n := utf8.RuneCountInString(x)
		if s.minLen != nil && n < *s.minLen {
			add(field, fmt.Sprintf("must be at least %d characters long", *s.minLen))
		}
		if s.maxLen != nil && n > *s.maxLen {
			add(field, fmt.Sprintf("must be at most %d characters long", *s.maxLen))
		}
		if s.pattern != nil && !s.pattern.MatchString(x) {
			add(field, "must match the pattern "+s.pattern.String())
		}
	case []any:
		if s.minItems != nil && len(x) < *s.minItems {
			add(field, fmt.Sprintf("must have at least %d items", *s.minItems))
		}
		if s.maxItems != nil && len(x) > *s.maxItems {
			add(field, fmt.Sprintf("must have at most %d items", *s.maxItems))
		}
		if s.unique {
			first := make(map[string]int, len(x)) // an item's canonical form: its first place
			for i, e := range x {
				k := canonical(e)
				if j, seen := first[k]; seen {
					add(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("repeats item %d; items must be unique", j))
				} else {
					first[k] = i
				}
			}
		}
		if s.items != nil {
			for i, e := range x {
				s.items.validate(e, fmt.Sprintf("%s[%d]", field, i), add)
			}
		}
	case map[string]any:
		for _, r := range s.required {
			if _, ok := x[r]; !ok {
				add(field+"."+r, "is required")
			}
		}
		names := make([]string, 0, len(x))
		for k := range x {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			switch ps, ok := s.props[k]; {
			case ok:
				ps.validate(x[k], field+"."+k, add)
			case s.noExtra:
				add(field+"."+k, "is not allowed here")
			case s.additional != nil:
				s.additional.validate(x[k], field+"."+k, add)
			}
		}
	}
}

// Integers returns v (decoded JSON, valid against the schema) with every
// value the schema says is an integer, and not also any number, written as
// one: 2.0, 1e2 and 20e-1 are integers to JSON Schema, but a job's shell
// test or strtol reads "2.0" as no integer at all (found by the eighth
// probe: fanout's n=2.0 failed in the job). Other numbers stay as given.
func (s *Schema) Integers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if !slices.Contains(s.types, "integer") || slices.Contains(s.types, "number") || !strings.ContainsAny(string(x), ".eE") {
			break
		}
		// Valid, it is an integer to typeOf (a float64 with no
		// fraction), but maybe not exactly (4503599627370496.5 rounds to
		// one): written anew only if the text's exact value is an integer
		// below 2^53, at most 16 digits, so that parameters grow little.
		// Beyond, it stays as given.
		f, err := x.Float64()
		if err != nil || math.Abs(f) >= 1<<53 || len(x) > 64 {
			break
		}
		if r, ok := new(big.Rat).SetString(string(x)); ok && r.IsInt() {
			return json.Number(r.Num().String())
		}
	case []any:
		if s.items != nil {
			for i := range x {
				x[i] = s.items.Integers(x[i])
			}
		}
	case map[string]any:
		for k, e := range x {
			if ps, ok := s.props[k]; ok {
				x[k] = ps.Integers(e)
			} else if s.additional != nil {
				x[k] = s.additional.Integers(e)
			}
		}
	}
	return v
}

// Validate checks v (decoded JSON) against the schema and returns every
// failure; field paths start with root.
func (s *Schema) Validate(v any, root string) []FieldError {
	var out []FieldError
	s.validate(v, root, func(f, msg string) { out = append(out, FieldError{Field: f, Message: msg}) })
	return out
}
