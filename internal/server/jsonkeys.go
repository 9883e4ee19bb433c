package server

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/hpcgate/hpcgate/api"
)

// checkReading refuses a JSON body that can be read two ways: an object
// that names a member twice (encoding/json keeps the last: "hold":true,
// "hold":false made a job that ran), or twice but for case ("HOLD" and
// "hold"), a member of a request's own fields named other than exactly
// (encoding/json takes "HOLD" for "hold"), and a string that escapes half
// a UTF-16 surrogate pair (encoding/json reads "\ud800" as U+FFFD without
// a word, as it once read invalid UTF-8). A proxy, a filter or a log reads
// such a body otherwise than the gateway does (found by the seventh
// probe). t is the type the body is decoded into; members of maps and raw
// values (a job's parameters) are checked for twins only. Syntax is left
// to the decoder: the scan stops where the text is not JSON. It reads the
// body once, without a decoder's tokens: it runs on every request.
func checkReading(body []byte, t reflect.Type) error {
	sc := keyScanner{b: body, surrogate: -1}
	if err, _ := sc.value(t, nil, 0); err != nil {
		return err
	}
	if sc.surrogate >= 0 {
		return errorf(http.StatusUnprocessableEntity, api.CodeValidation, "the body escapes half a UTF-16 surrogate pair at byte %d (%.6s), which is no character", sc.surrogate, body[sc.surrogate:])
	}
	return nil
}

// maxKeyDepth is as deep as checkReading looks; encoding/json refuses
// deeper bodies itself.
const maxKeyDepth = 10000

// valuePath is where a value is, built into a field name only for an error.
type valuePath struct {
	up    *valuePath
	key   string
	index int // when key is ""
}

func (p *valuePath) String() string {
	if p == nil {
		return ""
	}
	up := p.up.String()
	switch {
	case p.key == "":
		return up + "[" + strconv.Itoa(p.index) + "]"
	case up == "":
		return p.key
	}
	return up + "." + p.key
}

type keyScanner struct {
	b         []byte
	i         int
	surrogate int // the offset of a lone surrogate's escape, once found
}

func (sc *keyScanner) space() {
	for sc.i < len(sc.b) && (sc.b[sc.i] == ' ' || sc.b[sc.i] == '\t' || sc.b[sc.i] == '\n' || sc.b[sc.i] == '\r') {
		sc.i++
	}
}

// str reads a string at sc.i and, if key, returns it unquoted; ok is
// false when there is none. It notes the first lone surrogate's escape.
func (sc *keyScanner) str(key bool) (s string, ok bool) {
	if sc.i >= len(sc.b) || sc.b[sc.i] != '"' {
		return "", false
	}
	start, escaped := sc.i, false
	for sc.i++; sc.i < len(sc.b); sc.i++ {
		switch sc.b[sc.i] {
		case '\\':
			escaped = true
			sc.i++
		case '"':
			sc.i++
			raw := sc.b[start:sc.i]
			if escaped && sc.surrogate < 0 {
				if at := loneSurrogate(raw); at >= 0 {
					sc.surrogate = start + at
				}
			}
			switch {
			case !key:
				return "", true
			case !escaped:
				return string(raw[1 : len(raw)-1]), true
			}
			err := json.Unmarshal(raw, &s)
			return s, err == nil
		}
	}
	return "", false
}

// after reads what follows a member or an element: a comma (more
// follows) or end (the object's or array's end); ok is false for
// anything else.
func (sc *keyScanner) after(end byte) (more, ok bool) {
	sc.space()
	if sc.i >= len(sc.b) {
		return false, false
	}
	switch sc.b[sc.i] {
	case ',':
		sc.i++
		return true, true
	case end:
		sc.i++
		return false, true
	}
	return false, false
}

// value checks the value at sc.i, of type t (nil: any), at path at; ok
// is false when the text is not JSON there.
func (sc *keyScanner) value(t reflect.Type, at *valuePath, depth int) (err error, ok bool) {
	sc.space()
	if sc.i >= len(sc.b) || depth > maxKeyDepth {
		return nil, false
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && reflect.PointerTo(t).Implements(unmarshalerType) {
		t = nil // it reads itself: its members are checked for twins only
	}
	switch sc.b[sc.i] {
	case '{':
		sc.i++
		var fields []jsonField
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = structFields(t)
		} else if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		// A struct's members are twins but for case too (encoding/json
		// takes either for its field); a map's, a parameter object's or
		// an unknown value's only when equal (it keeps "http_proxy" and
		// "HTTP_PROXY" apart).
		fold := fields != nil
		same, index := func(a, b string) bool { return a == b }, func(k string) string { return k }
		if fold {
			same, index = strings.EqualFold, foldName
		}
		var seen []string // the names so far: objects are small
		var many map[string]string
		for first := true; ; first = false {
			sc.space()
			if sc.i < len(sc.b) && sc.b[sc.i] == '}' && first {
				sc.i++
				return nil, true
			}
			key, ok := sc.str(true)
			if !ok {
				return nil, false
			}
			here := &valuePath{up: at, key: key}
			prev, twice := "", false
			if many != nil {
				prev, twice = many[index(key)]
			} else {
				for _, s := range seen {
					if same(s, key) {
						prev, twice = s, true
						break
					}
				}
			}
			if twice {
				if prev == key {
					return fieldError(here.String(), "is given twice: give each member once"), false
				}
				return fieldError(here.String(), "is given twice, as %q and %q: names are case-sensitive, give each once", prev, key), false
			}
			if many == nil && len(seen) == 32 {
				many = make(map[string]string, 64)
				for _, s := range seen {
					many[index(s)] = s
				}
			}
			if many != nil {
				many[index(key)] = key
			} else {
				seen = append(seen, key)
			}
			vt := elem
			if fields != nil {
				vt = nil // unknown: the decoder refuses it, or ignores it
				if i := slices.IndexFunc(fields, func(f jsonField) bool { return f.name == key }); i >= 0 {
					vt = fields[i].typ
				} else if i := slices.IndexFunc(fields, func(f jsonField) bool { return strings.EqualFold(f.name, key) }); i >= 0 {
					return fieldError(here.String(), "unknown field: names are case-sensitive (%q)", fields[i].name), false
				}
			}
			sc.space()
			if sc.i >= len(sc.b) || sc.b[sc.i] != ':' {
				return nil, false
			}
			sc.i++
			if err, ok := sc.value(vt, here, depth+1); err != nil || !ok {
				return err, ok
			}
			if more, ok := sc.after('}'); !more {
				return nil, ok
			}
		}
	case '[':
		sc.i++
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for n := 0; ; n++ {
			sc.space()
			if sc.i < len(sc.b) && sc.b[sc.i] == ']' && n == 0 {
				sc.i++
				return nil, true
			}
			if err, ok := sc.value(elem, &valuePath{up: at, index: n}, depth+1); err != nil || !ok {
				return err, ok
			}
			if more, ok := sc.after(']'); !more {
				return nil, ok
			}
		}
	case '"':
		_, ok := sc.str(false)
		return nil, ok
	}
	// a number, true, false or null: up to what ends it
	start := sc.i
	for sc.i < len(sc.b) && !strings.ContainsRune(",]} \t\n\r", rune(sc.b[sc.i])) {
		sc.i++
	}
	return nil, sc.i > start
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// jsonField is a struct field as encoding/json names it.
type jsonField struct {
	name string
	typ  reflect.Type
}

var fieldsCache sync.Map // reflect.Type → []jsonField

// structFields returns t's fields by their JSON names, those of embedded
// structs included (an outer field hides an embedded one), as
// encoding/json sees them.
func structFields(t reflect.Type) []jsonField {
	if fs, ok := fieldsCache.Load(t); ok {
		return fs.([]jsonField)
	}
	var fs []jsonField
	addFields(&fs, t)
	fieldsCache.Store(t, fs)
	return fs
}

func addFields(fs *[]jsonField, t reflect.Type) {
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
		*fs = append(*fs, jsonField{name: name, typ: f.Type})
	}
	for _, et := range embedded {
		var inner []jsonField
		addFields(&inner, et)
		for _, f := range inner {
			if !slices.ContainsFunc(*fs, func(o jsonField) bool { return strings.EqualFold(o.name, f.name) }) {
				*fs = append(*fs, f)
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

// loneSurrogate returns the offset in body, a JSON text (a string's,
// quotes included), of an escape of half a UTF-16 surrogate pair (\ud800
// alone), or -1.
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
