package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// checkKeys refuses a JSON body that can be read two ways: an object that
// names a member twice (encoding/json keeps the last: "hold":true,
// "hold":false made a job that ran), or twice but for case ("HOLD" and
// "hold"), and a member of a request's own fields named other than
// exactly (encoding/json takes "HOLD" for "hold"). A proxy, a filter or a
// log reads such a body otherwise than the gateway does (found by the
// seventh probe). t is the type the body is decoded into; members of
// maps and raw values (a job's parameters) are checked for twins only.
// Syntax is left to the decoder.
func checkKeys(body []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	err, _ := walkKeys(dec, t, "", 0)
	return err
}

// maxKeyDepth is as deep as checkKeys looks; encoding/json refuses
// deeper bodies itself.
const maxKeyDepth = 10000

// walkKeys checks the next value of dec, of type t (nil: any), at path.
// ok is false when dec cannot go on (a syntax error, for the decoder to
// report).
func walkKeys(dec *json.Decoder, t reflect.Type, path string, depth int) (err error, ok bool) {
	tok, terr := dec.Token()
	if terr != nil || depth > maxKeyDepth {
		return nil, false
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshalerType) {
		t = nil // it reads itself: its members are checked for twins only
	}
	switch tok {
	case json.Delim('{'):
		var fields map[string]jsonField
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Struct && t != rawMessageType {
			fields = structFields(t)
		} else if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		seen := map[string]string{} // folded name → the name as sent
		for dec.More() {
			kt, terr := dec.Token()
			key, isKey := kt.(string)
			if terr != nil || !isKey {
				return nil, false
			}
			at := joinPath(path, key)
			folded := foldName(key)
			if prev, twice := seen[folded]; twice {
				if prev == key {
					return fieldError(at, "is given twice: give each member once"), false
				}
				return fieldError(at, "is given twice, as %q and %q: names are case-sensitive, give each once", prev, key), false
			}
			seen[folded] = key
			vt := elem
			if fields != nil {
				f, known := fields[folded]
				if known && f.name != key {
					return fieldError(at, "unknown field: names are case-sensitive (%q)", f.name), false
				}
				vt = f.typ // nil when unknown: the decoder refuses it, or ignores it
			}
			if err, ok := walkKeys(dec, vt, at, depth+1); err != nil || !ok {
				return err, ok
			}
		}
		_, terr := dec.Token() // '}'
		return nil, terr == nil
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && t != rawMessageType {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err, ok := walkKeys(dec, elem, path+"["+strconv.Itoa(i)+"]", depth+1); err != nil || !ok {
				return err, ok
			}
		}
		_, terr := dec.Token() // ']'
		return nil, terr == nil
	}
	return nil, true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	rawMessageType  = reflect.TypeFor[json.RawMessage]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// jsonField is a struct field as encoding/json names it.
type jsonField struct {
	name string
	typ  reflect.Type
}

var fieldsCache sync.Map // reflect.Type → map[string]jsonField

// structFields returns t's fields by their folded JSON names, those of
// embedded structs included, as encoding/json sees them.
func structFields(t reflect.Type) map[string]jsonField {
	if m, ok := fieldsCache.Load(t); ok {
		return m.(map[string]jsonField)
	}
	m := map[string]jsonField{}
	addFields(m, t)
	fieldsCache.Store(t, m)
	return m
}

func addFields(m map[string]jsonField, t reflect.Type) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if ft := f.Type; f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				embedded = append(embedded, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[foldName(name)] = jsonField{name: name, typ: f.Type}
	}
	for _, et := range embedded { // an outer field hides an embedded one
		inner := map[string]jsonField{}
		addFields(inner, et)
		for k, f := range inner {
			if _, ok := m[k]; !ok {
				m[k] = f
			}
		}
	}
}

// foldName is name with each letter replaced by the least of those it
// equals but for case, so that two names encoding/json takes for each
// other (it folds as bytes.EqualFold does: "K" is the Kelvin sign's too)
// fold alike.
func foldName(name string) string {
	ascii := true
	for i := 0; i < len(name) && ascii; i++ {
		ascii = name[i] < utf8.RuneSelf
	}
	if ascii { // the least of "k", "K" and the Kelvin sign is "K"
		return strings.ToUpper(name)
	}
	var b strings.Builder
	for _, r := range name {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		b.WriteRune(least)
	}
	return b.String()
}

// loneSurrogate returns the offset in body, a JSON text, of an escape of
// half a UTF-16 surrogate pair (\ud800 alone), or -1: encoding/json reads
// one as U+FFFD without a word, as it once read invalid UTF-8 (found by
// the seventh probe).
func loneSurrogate(body []byte) int {
	in := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"':
			in = !in
		case c == '\\' && in && i+1 < len(body):
			if body[i+1] != 'u' {
				i++ // the escaped character
				continue
			}
			u, ok := hex4(body, i+2)
			switch {
			case !ok:
				i++
			case u >= 0xdc00 && u <= 0xdfff:
				return i
			case u >= 0xd800 && u <= 0xdbff:
				if lo, ok := hex4(body, i+8); !ok || i+7 >= len(body) || body[i+6] != '\\' || body[i+7] != 'u' || lo < 0xdc00 || lo > 0xdfff {
					return i
				}
				i += 11 // the pair
			default:
				i += 5
			}
		}
	}
	return -1
}

// hex4 reads the four hex digits at body[i:], if there are.
func hex4(body []byte, i int) (rune, bool) {
	if i+4 > len(body) {
		return 0, false
	}
	var u rune
	for _, c := range body[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			u = u<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			u = u<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			u = u<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return u, true
}
