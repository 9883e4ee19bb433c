package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"
)

// A client is told where in its body a value is wrong as a path:
// executors[0].env, parameters.name. Go's decoder names struct fields
// only (executors.env), so these walk the body's tokens to find the rest.

// jsonKind names what JSON a Go type takes, in a client's terms: never
// the Go type's own name (which says how the server is written).
func jsonKind(t reflect.Type) string {
	if t == reflect.TypeFor[json.RawMessage]() {
		return "a JSON value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "another JSON value"
}

// typeErrorField is the path, with array indexes and map keys, of the
// value te is about in doc, the body it was decoded from. It finds the
// value by te.Offset (the end of a scalar, or just past the bracket that
// opens an array or object) and takes it only if its path names te.Field
// or lies within it; otherwise it answers te.Field.
func typeErrorField(doc []byte, te *json.UnmarshalTypeError) string {
	container := te.Value == "array" || te.Value == "object"
	found := ""
	walkJSON(doc, func(p *jsonPos, tok json.Token, raw []byte, end int64) bool {
		if end < te.Offset {
			return true
		}
		if _, isDelim := tok.(json.Delim); end == te.Offset && !p.isKey && isDelim == container {
			found = p.path()
		}
		return false
	})
	if found == "" {
		return te.Field
	}
	// Go matches members case-insensitively, and names no map keys
	if bare := strings.ToLower(stripIndexes(found)); te.Field != "" && bare != strings.ToLower(te.Field) && !strings.HasPrefix(bare, strings.ToLower(te.Field)+".") {
		return te.Field
	}
	return found
}

// keyPath is the path of the member named key in doc, and true, when doc
// has one member of that name, else key and false: Go's decoder names an
// unknown member by its key alone (resources.bogus is "bogus").
func keyPath(doc []byte, key string) (path string, once bool) {
	found, n := key, 0
	walkJSON(doc, func(p *jsonPos, tok json.Token, raw []byte, end int64) bool {
		if p.isKey && tok == key {
			found, n = p.path(), n+1
		}
		return n < 2
	})
	if n != 1 {
		return key, false
	}
	return found, true
}

// stripIndexes is path without its array indexes: a[2].b[0] is a.b, as
// Go's decoder names it.
func stripIndexes(path string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(path, '[')
		if i < 0 {
			b.WriteString(path)
			return b.String()
		}
		b.WriteString(path[:i])
		j := strings.IndexByte(path[i:], ']')
		if j < 0 {
			return b.String()
		}
		path = path[i+j+1:]
	}
}

// invalidUTF8Field returns the path (a.b[2].c) of the first key or string
// in a JSON document whose raw text is not UTF-8, or "" if there is none or
// the document is not JSON.
func invalidUTF8Field(doc []byte) string {
	found := ""
	walkJSON(doc, func(p *jsonPos, tok json.Token, raw []byte, end int64) bool {
		if utf8.Valid(raw) {
			return true
		}
		found = p.path() // a key's with U+FFFD for its bad bytes
		return false
	})
	return found
}

// jsonPos is where a walk through a JSON document is.
type jsonPos struct {
	stack []jsonLevel
	isKey bool // the token is an object's key
}

type jsonLevel struct {
	object bool
	key    string // in an object: the current key
	index  int    // in an array: the next element's index
	inKey  bool   // in an object: the next string is a key
}

func (p *jsonPos) top() *jsonLevel {
	if len(p.stack) == 0 {
		return nil
	}
	return &p.stack[len(p.stack)-1]
}

// path is the current token's path: a value's own, or a key's (the key
// its value will have).
func (p *jsonPos) path() string {
	var b strings.Builder
	for _, l := range p.stack {
		if l.object {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(l.key)
		} else {
			fmt.Fprintf(&b, "[%d]", l.index-1)
		}
	}
	return b.String()
}

// walkJSON calls visit for each key, scalar and opening bracket of doc in
// order, with the token's raw text (the separators before it included)
// and the offset just past it, until visit returns false, the document
// ends, or it is not JSON. Closing brackets are not visited.
func walkJSON(doc []byte, visit func(p *jsonPos, tok json.Token, raw []byte, end int64) bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber() // 1e400 is a token too, not the walk's end
	var p jsonPos
	prev := int64(0)
	for {
		tok, err := dec.Token()
		if err != nil {
			return
		}
		end := dec.InputOffset()
		raw := doc[prev:end]
		prev = end
		top := p.top()
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			p.stack = p.stack[:len(p.stack)-1]
			if top := p.top(); top != nil && top.object {
				top.inKey = true
			}
			continue
		}
		p.isKey = top != nil && top.object && top.inKey
		if p.isKey {
			top.key, top.inKey = tok.(string), false
		} else if top != nil && !top.object {
			top.index++
		}
		if !visit(&p, tok, raw, end) {
			return
		}
		switch {
		case p.isKey:
		case tok == json.Delim('{'):
			p.stack = append(p.stack, jsonLevel{object: true, inKey: true})
		case tok == json.Delim('['):
			p.stack = append(p.stack, jsonLevel{})
		default:
			if top != nil && top.object {
				top.inKey = true
			}
		}
	}
}

// fieldNames is the JSON names of the members of the object at path (a.b,
// without indexes; its last part the unknown member) in a value of type
// t, or nil if the path leads to no struct: what a request may say where
// it said an unknown member (found by the eighth probe: "after[0].
// condition: unknown field" named none of job, sweep and when).
func fieldNames(t reflect.Type, path string) []string {
	parts := strings.Split(path, ".")
	for _, part := range parts[:len(parts)-1] {
		t = elemOf(t)
		if t.Kind() != reflect.Struct {
			return nil
		}
		next := reflect.Type(nil)
		for i := range t.NumField() {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name == part {
				next = t.Field(i).Type
			}
		}
		if next == nil {
			return nil
		}
		t = next
	}
	return memberNames(elemOf(t))
}

// memberNames is the JSON names of struct t's members, those of its
// embedded structs included.
func memberNames(t reflect.Type) []string {
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "":
			names = append(names, memberNames(elemOf(f.Type))...)
		case name != "" && name != "-" && f.IsExported():
			names = append(names, name)
		}
	}
	return names
}

// elemOf is t without its pointers, slices, arrays and maps: the type of
// what is in them.
func elemOf(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	return t
}
