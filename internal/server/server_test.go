package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/catalog"
)

func newTestServer(t *testing.T) *Server {
	t.Helper()
	cat, err := catalog.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(nil, nil, cat, nil, nil, nil, NewHub(), slog.New(slog.DiscardHandler), nil)
}

// TestOpenAPIMatchesRoutes keeps the OpenAPI document and the route table
// in step: every route is documented, and nothing is documented that is
// not served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q, want 3.1", doc.OpenAPI)
	}
	served := map[string]bool{}
	for _, pat := range newTestServer(t).Routes() {
		method, path, _ := strings.Cut(pat, " ")
		path = strings.ReplaceAll(path, "{path...}", "{path}")
		key := strings.ToLower(method) + " " + path
		served[key] = true
		if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
			t.Errorf("route %s is not in openapi.json", pat)
		}
	}
	for path, ops := range doc.Paths {
		for method := range ops {
			if !slices.Contains([]string{"get", "put", "post", "delete", "head", "patch"}, method) {
				continue
			}
			if !served[method+" "+path] {
				t.Errorf("openapi.json documents %s %s, which is not served", strings.ToUpper(method), path)
			}
		}
	}
}

// Building the route table panics on conflicting patterns; this test
// builds it.
func TestRouteTableBuilds(t *testing.T) {
	s := newTestServer(t)
	if len(s.Routes()) < 30 {
		t.Fatalf("only %d routes", len(s.Routes()))
	}
}

func TestParseRange(t *testing.T) {
	tests := []struct {
		h             string
		off, n        int64
		partial, fail bool
	}{
		{"", 0, 0, false, false},
		{"bytes=0-9", 0, 10, true, false},
		{"bytes=5-", 5, 95, true, false},
		{"bytes=-10", 90, 10, true, false},
		{"bytes=90-200", 90, 10, true, false},
		{"bytes=100-", 0, 0, false, true},
		{"bytes=9-3", 0, 0, false, true},
		{"bytes=0-1,5-6", 0, 0, false, false},
		{"items=0-1", 0, 0, false, false},
	}
	for _, tt := range tests {
		off, n, partial, err := parseRange(tt.h, 100)
		if (err != nil) != tt.fail || partial != tt.partial || off != tt.off || n != tt.n {
			t.Errorf("parseRange(%q) = %d, %d, %v, %v", tt.h, off, n, partial, err)
		}
	}
}

func TestParamEnv(t *testing.T) {
	env := ParamEnv(json.RawMessage(`{"name":"a b; $(x)","min_length":3,"flag":true,"nested":{"k":[1, 2]},"with-dash":"v"}`))
	want := map[string]string{
		"HPCGATE_PARAM_NAME":       "a b; $(x)",
		"HPCGATE_PARAM_MIN_LENGTH": "3",
		"HPCGATE_PARAM_FLAG":       "true",
		"HPCGATE_PARAM_NESTED":     `{"k":[1,2]}`,
		"HPCGATE_PARAM_WITH_DASH":  "v",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

func TestInternalErrorsSayNothing(t *testing.T) {
	pe := problemFor(http.ErrHandlerTimeout)
	if pe.status != 500 || strings.Contains(pe.detail, "timeout") {
		t.Fatalf("internal error leaked: %+v", pe)
	}
}

func TestInvalidUTF8Field(t *testing.T) {
	bad := "\xff"
	tests := map[string]string{
		`{"a":"ok","b":"` + bad + `"}`:                          "b",
		`{"parameters":{"name":"x` + bad + `"}}`:                "parameters.name",
		`{"p":{"list":["a","b","` + bad + `"]}}`:                "p.list[2]",
		`{"p":[{"x":1},{"y":"` + bad + `"}]}`:                   "p[1].y",
		`{"a":[1,2],"k` + bad + `":1}`:                          "k\uFFFD",
		`{"a":"fine"}`:                                          "",
		`{"labels":{"k":"v"},"parameters":{"n":"` + bad + `"}}`: "parameters.n",
	}
	for doc, want := range tests {
		if got := invalidUTF8Field([]byte(doc)); got != want {
			t.Errorf("invalidUTF8Field(%q) = %q, want %q", doc, got, want)
		}
	}
}

// A type error is named by its whole path, array indexes and map keys
// included, which Go's decoder leaves out (it would say executors.env and
// inputs); where the path cannot be found, Go's field name stands.
func TestTypeErrorField(t *testing.T) {
	type exec struct {
		Command []string          `json:"command"`
		Env     map[string]string `json:"env"`
	}
	type body struct {
		Name   string            `json:"name"`
		Execs  []exec            `json:"executors"`
		Inputs map[string]string `json:"inputs"`
		Grid   [][]int           `json:"grid"`
		Sub    *struct {
			N int `json:"n"`
		} `json:"sub"`
	}
	tests := map[string]string{
		`{"name": 5}`:       "name",
		`{"executors": {}}`: "executors",
		`{"executors": [{"command": ["a"]}, {"command": "a b"}]}`:           "executors[1].command",
		`{"executors": [{"env": {"A": "1"}}, {"env": {"A": "1", "B": 2}}]}`: "executors[1].env.B",
		`{"executors": [{"command": ["a", 2]}]}`:                            "executors[0].command[1]",
		`{"executors": [{"env": []}]}`:                                      "executors[0].env",
		`{"inputs": {"x": "a", "y": {"z": 1}}}`:                             "inputs.y",
		`{"grid": [[1], [2, "3"]]}`:                                         "grid[1][1]",
		`{"grid": [[1], {}]}`:                                               "grid[1]",
		"{\"sub\":\n  {\"n\": true}}":                                       "sub.n",
		`  {"name": "ok", "sub": {"n": 1.5}}`:                               "sub.n",
		`[1]`:                                                               "",
	}
	for doc, want := range tests {
		var v body
		err := json.Unmarshal([]byte(doc), &v)
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			t.Fatalf("%s: no type error: %v", doc, err)
		}
		if got := typeErrorField([]byte(doc), te); got != want {
			t.Errorf("%s: %q, want %q (Go says %q)", doc, got, want, te.Field)
		}
	}
	// an offset that is not a value's end, or a path that is not the
	// field's, leaves Go's name
	doc := []byte(`{"executors": [{"command": ["a", 2]}]}`)
	for _, te := range []*json.UnmarshalTypeError{
		{Value: "number", Field: "executors.command", Offset: 3},
		{Value: "number", Field: "name", Offset: int64(bytes.Index(doc, []byte("2")) + 1)},
		{Value: "object", Field: "executors.command", Offset: int64(bytes.Index(doc, []byte("2")) + 1)},
	} {
		if got := typeErrorField(doc, te); got != te.Field {
			t.Errorf("%+v: %q, want Go's %q", te, got, te.Field)
		}
	}
}

// Job ids begin with the time, so that jobs made together share their
// first characters (and the store's pages); they are unique, 16 letters
// and digits of the ids' alphabet.
func TestJobIDsAreTimeOrdered(t *testing.T) {
	seen := map[string]bool{}
	first := newJobID()
	for range 1000 {
		id := newJobID()
		if len(id) != 16 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" || seen[id] {
			t.Fatalf("id %q: want 16 new characters of a-z and 2-7", id)
		}
		seen[id] = true
	}
	if last := newJobID(); first[:4] != last[:4] {
		t.Errorf("ids made within moments share no prefix: %s, %s", first, last)
	}
	b, err := idEncoding.DecodeString(first)
	if err != nil {
		t.Fatal(err)
	}
	var ms int64
	for _, x := range b[:5] {
		ms = ms<<8 | int64(x)
	}
	if d := time.Now().UnixMilli()%(1<<40) - ms; d < 0 || d > 60_000 {
		t.Errorf("the id's time is %d ms off", d)
	}
}
