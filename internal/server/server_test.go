package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
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
		// no range at all (RFC 9110 §14.2): ignored, the whole file sent;
		// it was a 416 (found by the seventh probe)
		{"bytes=9-3", 0, 0, false, false},
		{"bytes=a-3", 0, 0, false, false},
		{"bytes=-", 0, 0, false, false},
		{"bytes=+1-3", 0, 0, false, false},
		{"bytes=0-1,5-6", 0, 0, false, false},
		{"items=0-1", 0, 0, false, false},
		// an end past any int64 is past the file's end, as any other
		{"bytes=2-99999999999999999999999", 2, 98, true, false},
		{"bytes=99999999999999999999999-", 0, 0, false, true},
		{"bytes=-0", 0, 0, false, true},
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
		`{"grid": [[1e400], [2, "3"]]}`:                                     "grid[0][0]",
		`{"Executors": [{"Env": {"A": 1}}]}`:                                "Executors[0].Env.A",
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

// Every refusal of a bad query or path is a status the OpenAPI documents
// for its route, with the code it documents for that status: the spec
// said 400 where the server answers 422, and knew none of four codes.
func TestRefusalsAreDocumented(t *testing.T) {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Responses map[string]json.RawMessage `json:"responses"`
			Schemas   struct {
				Problem struct {
					Properties struct {
						Code struct {
							Enum []string `json:"enum"`
						} `json:"code"`
					} `json:"properties"`
				} `json:"Problem"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatal(err)
	}
	// every code of package api, read from its source
	f, err := parser.ParseFile(token.NewFileSet(), "../../api/api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i >= len(vs.Values) {
					break // iota: no string of its own
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(n.Name, "Code") {
					if code, _ := strconv.Unquote(lit.Value); !slices.Contains(doc.Components.Schemas.Problem.Properties.Code.Enum, code) {
						t.Errorf("api.%s (%q) is not in the OpenAPI's problem codes", n.Name, code)
					}
				}
			}
		}
	}

	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, userScopes...)
	var j api.Job
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated).decode(t, &j)
	for _, c := range []struct{ method, route, url string }{
		{"GET", "/v1/jobs", "/v1/jobs?limit=abc"},
		{"GET", "/v1/jobs", "/v1/jobs?state=bogus"},
		{"GET", "/v1/jobs", "/v1/jobs?page_token=garbage"},
		{"GET", "/v1/files", "/v1/files?limit=-1"},
		{"GET", "/v1/files", "/v1/files?page_token=garbage"},
		{"GET", "/v1/templates", "/v1/templates?version=abc"},
		{"GET", "/v1/templates/{name}", "/v1/templates/hello?version=abc"},
		{"GET", "/v1/jobs/{id}/logs/{stream}", "/v1/jobs/" + j.ID + "/logs/stdout?offset=-1"},
		{"GET", "/v1/jobs/{id}/logs/{stream}", "/v1/jobs/" + j.ID + "/logs/stdout?tail=x"},
		{"GET", "/v1/jobs/{id}/children", "/v1/jobs/" + j.ID + "/children?page_token=zzz"},
		{"GET", "/v1/images", "/v1/images?limit=0"},
		{"GET", "/v1/events", "/v1/events?after=abc"},
		{"GET", "/v1/tokens", "/v1/tokens?user=bob"},
		{"PUT", "/v1/files/{path}", "/v1/files/%2E%2E/x"},
		{"GET", "/v1/jobs/{id}/outputs/{path}", "/v1/jobs/" + j.ID + "/outputs/a%5Cb"},
		{"DELETE", "/v1/jobs/{id}", "/v1/files/../jobs/" + j.ID},
		{"DELETE", "/v1/tokens/{id}", "/v1/tokens//x"},
		{"POST", "/v1/jobs/{id}/cancel", "/v1/jobs/%2E%2E/cancel"},
	} {
		r := h.do(c.method, c.url, alice, nil)
		if r.status < 400 {
			t.Errorf("%s %s: %d, want a refusal", c.method, c.url, r.status)
			continue
		}
		var op struct {
			Responses map[string]struct {
				Ref string `json:"$ref"`
			} `json:"responses"`
		}
		if err := json.Unmarshal(doc.Paths[c.route][strings.ToLower(c.method)], &op); err != nil {
			t.Fatalf("%s %s: %v", c.method, c.route, err)
		}
		resp, ok := op.Responses[strconv.Itoa(r.status)]
		if !ok {
			t.Errorf("%s %s answers %d (%s), which the OpenAPI does not document for %s", c.method, c.url, r.status, r.problem.Code, c.route)
			continue
		}
		if ref := path.Base(resp.Ref); ref != "." && ref != "" && !strings.Contains(string(doc.Components.Responses[ref]), "`"+r.problem.Code+"`") && r.problem.Code != "" {
			t.Errorf("%s %s answers %d with code %s; the OpenAPI's %s does not name it", c.method, c.url, r.status, r.problem.Code, ref)
		}
	}
}

// Conditional requests on a file (RFC 9110 §13), whose ETag is its
// SHA-256: they were ignored, so that a download resumed with If-Range
// after the file changed joined old and new bytes, and PUT with
// If-None-Match: * replaced a file (found by the seventh probe).
func TestConditionalRequests(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	r := h.do("PUT", "/v1/files/c.txt", tok, "0123456789").want(t, http.StatusCreated)
	var fi api.FileInfo
	r.decode(t, &fi)
	etag := `"` + fi.SHA256 + `"`
	r = h.do("GET", "/v1/files/c.txt", tok, nil).want(t, http.StatusOK)
	if r.header.Get("ETag") != etag {
		t.Fatalf("ETag %q, want %q", r.header.Get("ETag"), etag)
	}
	lastMod := r.header.Get("Last-Modified")
	for _, tc := range []struct {
		name    string
		headers []string
		status  int
		body    string
	}{
		{"If-Range, same file", []string{"Range", "bytes=2-4", "If-Range", etag}, 206, "234"},
		{"If-Range, changed file", []string{"Range", "bytes=2-4", "If-Range", `"other"`}, 200, "0123456789"},
		{"If-Range, weak", []string{"Range", "bytes=2-4", "If-Range", "W/" + etag}, 200, "0123456789"},
		{"If-Range, its date", []string{"Range", "bytes=2-4", "If-Range", lastMod}, 206, "234"},
		{"If-None-Match, same", []string{"If-None-Match", etag}, 304, ""},
		{"If-None-Match, weak", []string{"If-None-Match", `"x", W/` + etag}, 304, ""},
		{"If-None-Match, other", []string{"If-None-Match", `"x"`}, 200, "0123456789"},
		{"If-Modified-Since, later", []string{"If-Modified-Since", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}, 304, ""},
		{"If-Match, other", []string{"If-Match", `"x"`}, 412, ""},
		{"If-Match, same", []string{"If-Match", etag}, 200, "0123456789"},
		{"If-Unmodified-Since, earlier", []string{"If-Unmodified-Since", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)}, 412, ""},
		{"an unsatisfiable range", []string{"Range", "bytes=10-"}, 416, ""},
	} {
		r := h.do("GET", "/v1/files/c.txt", tok, nil, tc.headers...)
		if r.status != tc.status || tc.body != "" && string(r.body) != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.name, r.status, r.body, tc.status, tc.body)
		}
		if r.status == 416 && r.header.Get("Content-Range") != "bytes */10" {
			t.Errorf("%s: Content-Range %q, want bytes */10", tc.name, r.header.Get("Content-Range"))
		}
	}
	// writes: nothing changes when a precondition fails
	h.do("PUT", "/v1/files/c.txt", tok, "new", "If-None-Match", "*").want(t, http.StatusPreconditionFailed)
	h.do("PUT", "/v1/files/c.txt", tok, "new", "If-Match", `"x"`).want(t, http.StatusPreconditionFailed)
	h.do("DELETE", "/v1/files/c.txt", tok, nil, "If-Match", `"x"`).want(t, http.StatusPreconditionFailed)
	if r := h.do("GET", "/v1/files/c.txt", tok, nil).want(t, http.StatusOK); string(r.body) != "0123456789" {
		t.Fatalf("after refused writes: %q", r.body)
	}
	h.do("PUT", "/v1/files/d.txt", tok, "d", "If-None-Match", "*").want(t, http.StatusCreated)
	h.do("PUT", "/v1/files/e.txt", tok, "e", "If-Match", "*").want(t, http.StatusPreconditionFailed)
	h.do("PUT", "/v1/files/c.txt", tok, "new", "If-Unmodified-Since", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)).want(t, http.StatusPreconditionFailed)
	h.do("GET", "/v1/files/c.txt?redirect=true", tok, nil, "If-Match", `"x"`).want(t, http.StatusPreconditionFailed)
	h.do("PUT", "/v1/files/c.txt", tok, "new", "If-Match", etag).want(t, http.StatusCreated)
	h.do("DELETE", "/v1/files/c.txt", tok, nil, "If-Match", etag).want(t, http.StatusPreconditionFailed) // it changed
	h.do("DELETE", "/v1/files/c.txt", tok, nil, "If-Match", "*").want(t, http.StatusNoContent)
	var me api.Me
	h.do("GET", "/v1/me", tok, nil).want(t, http.StatusOK).decode(t, &me)
	if me.Quotas["files"].Used != 1 || me.Quotas["bytes"].Used != 1 { // d.txt
		t.Errorf("use after refused writes: %+v", me.Quotas)
	}
}

// A method a path does not take answers 405 with the methods it does
// (Allow), where it was a 404; a route's base (PUT /v1/files) answers in
// problem JSON, where http.ServeMux redirected it to the route with no
// body (found by the seventh probe).
func TestMethodNotAllowed(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"DELETE", "/v1/me", "GET, HEAD"},
		{"POST", "/v1/files/a.txt", "GET, HEAD, PUT, DELETE"},
		{"PUT", "/v1/files", "GET, HEAD"},
		{"DELETE", "/v1/files", "GET, HEAD"},
		{"PATCH", "/v1/jobs", "GET, HEAD, POST"},
	} {
		r := h.do(tc.method, tc.path, tok, nil)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != tc.allow || r.problem.Code != api.CodeMethodNotAllowed {
			t.Errorf("%s %s: %d, Allow %q, %s; want 405, Allow %q", tc.method, tc.path, r.status, r.header.Get("Allow"), r.body, tc.allow)
		}
	}
	if r := h.do("GET", "/v1/no-such-route", tok, nil); r.status != http.StatusNotFound || r.problem.Code != api.CodeNotFound {
		t.Errorf("no route: %d %s", r.status, r.body)
	}
	if r := h.do("PUT", "/v1/jobs/x/outputs", tok, nil); r.status/100 != 4 || r.problem.Code == "" {
		t.Errorf("PUT /v1/jobs/x/outputs: %d %s", r.status, r.body)
	}
}

// Every route only an agent calls, but the reads a job's container may do
// itself (its inputs, its image), is one the agent's socket for the
// container refuses (api.AgentOnly): a TES task's deliveries passed it
// (found by the seventh probe).
func TestAgentOnlyRoutesAreListed(t *testing.T) {
	h := newHarness(t, nil)
	for _, rt := range h.srv.routes {
		if rt.access != jobOnly || rt.pattern == "GET /v1/jobs/{id}/inputs/{name}" || rt.pattern == "GET /v1/jobs/{id}/image" {
			continue
		}
		if !slices.ContainsFunc(api.AgentOnly, func(p string) bool {
			return rt.pattern == p || strings.HasSuffix(p, "/") && strings.HasPrefix(rt.pattern, p)
		}) {
			t.Errorf("%s: only an agent calls it, and api.AgentOnly does not list it", rt.pattern)
		}
	}
}

// A mistyped state filter is answered with the states there are (the
// eighth probe's "--state runnin" said only that it was unknown).
func TestUnknownStateListsStates(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, userScopes...)
	r := h.do("GET", "/v1/jobs?state=runnin", alice, nil)
	if r.status < 400 || r.status >= 500 || !strings.Contains(r.problem.Detail, `unknown state "runnin"; the states: pending held queued`) {
		t.Fatalf("%d %s", r.status, r.body)
	}
}
