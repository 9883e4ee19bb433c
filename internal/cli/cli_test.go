package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

var testTemplate = api.Template{
	Name:    "t",
	Version: 1,
	Parameters: json.RawMessage(`{
		"type": "object",
		"required": ["n", "name"],
		"properties": {
			"name":   {"type": "string", "minLength": 1, "maxLength": 64, "description": "Who."},
			"n":      {"type": "integer", "minimum": 1, "maximum": 50},
			"ratio":  {"type": "number"},
			"flag":   {"type": "boolean"},
			"opts":   {"type": "object"},
			"list":   {"type": "array", "items": {"type": "string"}},
			"either": {"type": ["integer", "string"]},
			"maybe":  {"type": ["integer", "null"]},
			"free":   {"description": "no type"}
		}
	}`),
}

func TestCoerceParam(t *testing.T) {
	s, err := parseSchema(testTemplate.Parameters)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value string
		want        string // JSON; "" when an error is wanted
		errHas      string
	}{
		{"name", "Ada", `"Ada"`, ""},
		{"name", "42", `"42"`, ""},
		{"name", `"quoted"`, `"\"quoted\""`, ""},
		{"name", "", `""`, ""},
		{"n", "7", `7`, ""},
		{"n", " 7 ", `7`, ""},
		{"n", "seven", "", `parameter "n"`},
		{"n", "1.5", "", "want integer"},
		{"n", `"7"`, "", "is a string"},
		{"ratio", "1.5", `1.5`, ""},
		{"ratio", "2", `2`, ""},
		{"ratio", "true", "", `parameter "ratio"`},
		{"flag", "true", `true`, ""},
		{"flag", "yes", "", `parameter "flag"`},
		{"opts", `{"a": 1}`, `{"a": 1}`, ""},
		{"opts", `[1]`, "", "is an array"},
		{"list", `["a","b"]`, `["a","b"]`, ""},
		{"list", `["a"] x`, "", `parameter "list"`},
		{"either", "5", `5`, ""},
		{"either", "five", `"five"`, ""},
		{"maybe", "null", `null`, ""},
		{"maybe", "3", `3`, ""},
		{"maybe", "x", "", `parameter "maybe"`},
		{"free", "12", `12`, ""},
		{"free", "hello", `"hello"`, ""},
		{"unknown", `{"x":true}`, `{"x":true}`, ""},
		{"unknown", "plain text", `"plain text"`, ""},
		{"unknown", "false", `false`, ""},
	}
	for _, tc := range tests {
		got, err := coerceParam(s, tc.name, tc.value)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("coerceParam(%s, %q) = %s, %v; want an error with %q", tc.name, tc.value, got, err, tc.errHas)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("coerceParam(%s, %q) = %s, %v; want %s", tc.name, tc.value, got, err, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("coerceParam(%s, %q) = %s: not JSON", tc.name, tc.value, got)
		}
	}
}

func TestBuildParams(t *testing.T) {
	s, err := parseSchema(testTemplate.Parameters)
	if err != nil {
		t.Fatal(err)
	}
	got, err := buildParams(s, []byte(`{"n": 1, "name": "file"}`), []string{"n=3", "flag=true", "note=a=b"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"n": 3.0, "name": "file", "flag": true, "note": "a=b"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("buildParams = %v, want %v", m, want)
	}
	if p, err := buildParams(s, nil, nil); err != nil || p != nil {
		t.Errorf("buildParams(nothing) = %s, %v; want nil", p, err)
	}
	for _, bad := range []struct {
		file   string
		params []string
	}{
		{`[1,2]`, nil},
		{`null`, nil},
		{`{`, nil},
		{"", []string{"novalue"}},
		{"", []string{"=x"}},
		{"", []string{"n=x"}},
	} {
		if _, err := buildParams(s, []byte(bad.file), bad.params); err == nil {
			t.Errorf("buildParams(%q, %q): want an error", bad.file, bad.params)
		}
	}
}

func TestSchemaDisplay(t *testing.T) {
	s, err := parseSchema(testTemplate.Parameters)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range s.props {
		names = append(names, p.name)
	}
	want := []string{"name", "n", "ratio", "flag", "opts", "list", "either", "maybe", "free"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("property order = %v, want %v", names, want)
	}
	if !s.required["n"] || s.required["ratio"] {
		t.Errorf("required = %v", s.required)
	}
	if c := s.prop("n").constraints(); c != "minimum=1 maximum=50" {
		t.Errorf("constraints of n = %q", c)
	}
	if c := s.prop("name").constraints(); c != "minLength=1 maxLength=64" {
		t.Errorf("constraints of name = %q", c)
	}
	if ty := s.prop("either").typeName(); ty != "integer|string" {
		t.Errorf("type of either = %q", ty)
	}
	if ty := s.prop("free").typeName(); ty != "any" {
		t.Errorf("type of free = %q", ty)
	}

	var b bytes.Buffer
	tmpl := testTemplate
	tmpl.Inputs = []api.Input{{Name: "text", Path: "input.txt", Required: true, MaxSize: 100 << 20}}
	tmpl.Outputs = []string{"counts.json"}
	tmpl.Resources.Max.WalltimeS = 3600
	if err := showTemplate(&b, &tmpl); err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{"Template:", "t (version 1)", "minimum=1 maximum=50", "Who.", "input.txt", "100 MiB", "counts.json", "1h0m0s"} {
		if !strings.Contains(b.String(), frag) {
			t.Errorf("template display lacks %q:\n%s", frag, b.String())
		}
	}
}

func TestParseArgsReorders(t *testing.T) {
	tests := []struct {
		args    []string
		pos     []string
		out     string
		json    bool
		follow  bool
		params  []string
		wantErr bool
	}{
		{args: []string{"ID", "--out", "results/"}, pos: []string{"ID"}, out: "results/"},
		{args: []string{"--out", "d", "ID"}, pos: []string{"ID"}, out: "d"},
		{args: []string{"ID", "--out=d", "--json", "X"}, pos: []string{"ID", "X"}, out: "d", json: true},
		{args: []string{"ID", "-f", "Y"}, pos: []string{"ID", "Y"}, follow: true},
		{args: []string{"A", "--param", "k=v", "B", "-param", "j=-w"}, pos: []string{"A", "B"}, params: []string{"k=v", "j=-w"}},
		{args: []string{"--out", "-x", "ID"}, pos: []string{"ID"}, out: "-x"},
		{args: []string{"ID", "--", "--json", "-"}, pos: []string{"ID", "--json", "-"}},
		{args: []string{"-", "--json"}, pos: []string{"-"}, json: true},
		{args: []string{"--json=false", "ID"}, pos: []string{"ID"}},
		{args: []string{"ID", "--nope"}, wantErr: true},
		{args: []string{"ID", "--out"}, wantErr: true},
	}
	for _, tc := range tests {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		out := fs.String("out", "", "")
		asJSON := fs.Bool("json", false, "")
		follow := fs.Bool("follow", false, "")
		fs.BoolVar(follow, "f", false, "")
		var params multiFlag
		fs.Var(&params, "param", "")
		pos, err := parseArgs(fs, tc.args)
		if tc.wantErr {
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != 2 {
				t.Errorf("parseArgs(%q) = %v; want an *ExitError of code 2", tc.args, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tc.args, err)
			continue
		}
		if !reflect.DeepEqual(pos, tc.pos) || *out != tc.out || *asJSON != tc.json || *follow != tc.follow || !reflect.DeepEqual([]string(params), tc.params) {
			t.Errorf("parseArgs(%q) = %q out=%q json=%v follow=%v params=%q; want %q out=%q json=%v follow=%v params=%q",
				tc.args, pos, *out, *asJSON, *follow, params, tc.pos, tc.out, tc.json, tc.follow, tc.params)
		}
	}
}

func TestParseSeconds(t *testing.T) {
	good := map[string]int64{
		"90":         90,
		"3600":       3600,
		"1h30m":      5400,
		"90s":        90,
		"1.5s":       2,
		"500ms":      1,
		"2d":         172800,
		"1:30:00":    5400,
		"30:00":      1800,
		"2-12:00:00": 2*86400 + 12*3600,
		"1-02:30":    86400 + 2*3600 + 30*60,
		" 60 ":       60,
	}
	for in, want := range good {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-5", "-5s", "abc", "1x", "1:99", "1:2:3:4", "d", "x-1:00:00", "1.5", "0s", "0:00"} {
		if got, err := parseSeconds(in); err == nil {
			t.Errorf("parseSeconds(%q) = %d; want an error", in, got)
		}
	}
}

func TestCheckOutputPath(t *testing.T) {
	good := map[string]string{
		"greeting.txt":     "greeting.txt",
		"a/b/c.json":       "a/b/c.json",
		"a//b":             "a/b",
		"./x":              "x",
		"file..txt":        "file..txt",
		"..hidden":         "..hidden",
		"dir.../results.j": "dir.../results.j",
		"a:b":              "a:b",
	}
	for in, want := range good {
		if got, err := checkOutputPath(in); err != nil || got != want {
			t.Errorf("checkOutputPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/etc/passwd", "../x", "a/../b", "a/..", "..", "a\\..\\b", "C:/x", "a\x00b", ".", "a/.."} {
		if got, err := checkOutputPath(in); err == nil {
			t.Errorf("checkOutputPath(%q) = %q; want refused", in, got)
		}
	}
}

func TestRenderProgress(t *testing.T) {
	tests := []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{420 << 20, 1 << 30, time.Second, "  41% [==========>              ]  420 MiB / 1.0 GiB  420 MiB/s"},
		{0, 100, 0, "   0% [>                        ]  0 B / 100 B"},
		{100, 100, 2 * time.Second, " 100% [=========================]  100 B / 100 B  50 B/s"},
		{1536, -1, time.Second, "  1.5 KiB  1.5 KiB/s"},
		{200, 100, time.Second, " 100% [=========================]  200 B / 100 B  200 B/s"},
	}
	for _, tc := range tests {
		if got := renderProgress(tc.done, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("renderProgress(%d, %d, %v) =\n%q; want\n%q", tc.done, tc.total, tc.elapsed, got, tc.want)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 420 << 20: "420 MiB", 1 << 30: "1.0 GiB", 15 << 30: "15 GiB", 3 << 40: "3.0 TiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestProgressThrottlesAndEnds(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	var out bytes.Buffer
	p := newProgressTo(&out, 1000, clk.now)
	r := p.Reader(strings.NewReader(strings.Repeat("x", 1000)))
	buf := make([]byte, 100)
	// Ten reads of 100 bytes, 30 ms apart: draws at 0, 120, 240 ms ...
	for {
		_, err := r.Read(buf)
		if err == io.EOF {
			break
		}
		clk.t = clk.t.Add(30 * time.Millisecond)
	}
	draws := strings.Count(out.String(), "\r")
	if draws < 2 || draws > 4 {
		t.Errorf("%d draws in 300 ms; want about one per 100 ms:\n%q", draws, out.String())
	}
	if strings.Contains(out.String(), "\n") {
		t.Errorf("newline before Done: %q", out.String())
	}
	p.Done()
	s := out.String()
	if !strings.HasSuffix(s, "\n") {
		t.Errorf("no final newline: %q", s)
	}
	last := s[strings.LastIndex(s, "\r")+1:]
	if !strings.HasPrefix(last, " 100% [=========================]  1000 B / 1000 B") {
		t.Errorf("final line = %q", last)
	}
	p.Done() // a second Done draws nothing
	if out.String() != s {
		t.Errorf("second Done wrote %q", out.String()[len(s):])
	}

	// Not a terminal: nothing at all.
	var silent bytes.Buffer
	q := newProgress(&silent, 10)
	io.Copy(io.Discard, q.Reader(strings.NewReader("0123456789")))
	q.Done()
	if silent.Len() != 0 {
		t.Errorf("progress on a non-terminal wrote %q", silent.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Errorf("a regular file is taken for a terminal")
	}
}

func TestProgressPadsShorterLines(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	var out bytes.Buffer
	p := newProgressTo(&out, -1, clk.now)
	clk.t = clk.t.Add(time.Second)
	p.Add(1500) // "  1.5 KiB  1.5 KiB/s"
	clk.t = clk.t.Add(1500 * time.Second)
	p.Add(0) // "  1.5 KiB  0 B/s": 1500 B in 1501 s
	p.Done()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\r")[1:]
	if len(lines) != 3 {
		t.Fatalf("draws = %q", lines)
	}
	if strings.TrimRight(lines[1], " ") != "  1.5 KiB  0 B/s" || len(lines[1]) != len(lines[0]) {
		t.Errorf("a shorter line does not cover the previous one: %q then %q", lines[0], lines[1])
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		5 * time.Second:  "5s ago",
		3 * time.Minute:  "3m ago",
		5 * time.Hour:    "5h ago",
		72 * time.Hour:   "3d ago",
		-time.Minute:     "just now",
		59 * time.Minute: "59m ago",
	} {
		if got := age(now, now.Add(-d)); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
	if got := age(now, time.Time{}); got != "-" {
		t.Errorf("age(zero) = %q", got)
	}
}

func TestRunUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"frobnicate"}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "frobnicate") || !strings.Contains(err.Error(), "hpcgate help") {
		t.Errorf("Run(frobnicate) = %v; want an error naming it and pointing to hpcgate help", err)
	}
	if err := Run(context.Background(), nil, nil, &out, &errb); err == nil {
		t.Errorf("Run() with no command: want an error")
	}
	err = Run(context.Background(), []string{"token", "frob"}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "frob") {
		t.Errorf("Run(token frob) = %v", err)
	}
	err = Run(context.Background(), []string{"token"}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "create") {
		t.Errorf("Run(token) = %v; want the list of subcommands", err)
	}
}

func TestEveryCommandAnswersHelp(t *testing.T) {
	type cmdPath struct {
		args []string
		name string
	}
	var all []cmdPath
	for _, c := range Commands() {
		if c.Summary == "" {
			t.Errorf("command %s has no summary", c.Name)
		}
		all = append(all, cmdPath{[]string{c.Name}, c.Name})
	}
	for _, s := range cmdToken.subs {
		all = append(all, cmdPath{[]string{"token", s.name}, "token " + s.name})
	}
	for _, s := range cmdSweep.subs {
		all = append(all, cmdPath{[]string{"sweep", s.name}, "sweep " + s.name})
	}
	want := []string{"templates", "template", "environments", "environment", "upload", "files", "rm", "cat", "fetch",
		"submit", "sweep", "jobs", "status", "logs", "cancel", "hold", "release", "suspend", "resume", "delete", "wait", "events", "output", "download",
		"results", "parameters", "children", "webhook-secret", "token", "user", "image", "me", "audit", "health"}
	var names []string
	for _, c := range Commands() {
		names = append(names, c.Name)
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Commands() = %q, want %q", names, want)
	}
	for _, cp := range all {
		for _, h := range []string{"--help", "-h"} {
			var out, errb bytes.Buffer
			err := Run(context.Background(), append(append([]string{}, cp.args...), h), nil, &out, &errb)
			if !errors.Is(err, flag.ErrHelp) {
				t.Errorf("%s %s = %v; want flag.ErrHelp", cp.name, h, err)
			}
			u := out.String() // asked for: on standard output
			if !strings.HasPrefix(u, "usage: hpcgate "+cp.name) || errb.Len() > 0 {
				t.Errorf("%s %s: usage starts %q", cp.name, h, firstLine(u))
			}
			for _, l := range strings.Split(u, "\n") {
				if strings.Count(l, "(default") > 1 {
					t.Errorf("%s %s: two defaults in %q", cp.name, h, l)
				}
			}
			if strings.Contains(u, "--quiet") && !strings.Contains(u, "-q, --quiet") {
				t.Errorf("%s %s: --quiet without -q", cp.name, h)
			}
			for _, frag := range []string{"--url", "Example:\n  hpcgate " + cp.name} {
				if !strings.Contains(u, frag) {
					t.Errorf("%s %s: usage lacks %q:\n%s", cp.name, h, frag, u)
				}
			}
		}
	}
	// Help after a positional argument, and through "help".
	var out, errb bytes.Buffer
	if err := Run(context.Background(), []string{"download", "ID", "--help"}, nil, &out, &errb); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "--archive") {
		t.Errorf("download ID --help = %v:\n%s", err, out.String())
	}
	out.Reset()
	if err := Run(context.Background(), []string{"help", "token", "create"}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), "usage: hpcgate token create") {
		t.Errorf("help token create = %v:\n%s", err, out.String())
	}
	out.Reset()
	if err := Run(context.Background(), []string{"help"}, nil, &out, &errb); err != nil || !strings.Contains(out.String(), "submit") {
		t.Errorf("help = %v:\n%s", err, out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"status"},
		{"status", "a", "b"},
		{"output", "ID"},
		{"jobs", "--limit", "many"},
		{"submit", "hello", "--walltime", "soon"},
		{"download", "ID", "--out", "d", "--archive", "a.tgz"},
	} {
		t.Setenv("HPCGATE_URL", "http://127.0.0.1:1")
		t.Setenv("HPCGATE_TOKEN", "x")
		var out, errb bytes.Buffer
		err := Run(context.Background(), args, nil, &out, &errb)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != 2 {
			t.Errorf("Run(%q) = %v; want an *ExitError of code 2", args, err)
		} else if strings.HasPrefix(ee.Error(), "hpcgate ") {
			t.Errorf("Run(%q) = %q: the program's name comes before it already", args, ee.Error())
		}
	}
}

func TestExitError(t *testing.T) {
	inner := errors.New("boom")
	e := &ExitError{Code: 3, Err: inner}
	if e.Error() != "boom" || !errors.Is(e, inner) {
		t.Errorf("ExitError = %q, unwraps to inner: %v", e.Error(), errors.Is(e, inner))
	}
	if (&ExitError{Code: 4}).Error() != "exit status 4" {
		t.Errorf("ExitError without Err = %q", (&ExitError{Code: 4}).Error())
	}
}

// fakeGateway answers a few API calls from memory.
type fakeGateway struct {
	mu       sync.Mutex
	created  []api.JobRequest
	idemKeys []string
	outputs  []api.FileInfo
	files    map[string][]byte
	badSum   bool
	jobState map[string]string
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer secret" {
		w.WriteHeader(401)
		json.NewEncoder(w).Encode(api.Problem{Title: "Unauthorized", Status: 401, Code: api.CodeUnauthenticated})
		return
	}
	writeJSON := func(v any) { json.NewEncoder(w).Encode(v) }
	p := r.URL.Path
	switch {
	case r.Method == "GET" && strings.HasPrefix(p, "/v1/templates/"):
		writeJSON(testTemplate)
	case r.Method == "POST" && p == "/v1/jobs":
		var req api.JobRequest
		json.NewDecoder(r.Body).Decode(&req)
		g.created = append(g.created, req)
		g.idemKeys = append(g.idemKeys, r.Header.Get("Idempotency-Key"))
		w.WriteHeader(201)
		writeJSON(api.Job{ID: "j-1", Template: req.Template, State: api.StateQueued})
	case r.Method == "POST" && p == "/v1/sweeps":
		g.idemKeys = append(g.idemKeys, r.Header.Get("Idempotency-Key"))
		w.WriteHeader(201)
		writeJSON(api.Sweep{ID: "sw-1", Total: 2})
	case r.Method == "GET" && strings.HasPrefix(p, "/v1/jobs/") && strings.HasSuffix(p, "/outputs"):
		writeJSON(api.Page[api.FileInfo]{Items: g.outputs})
	case r.Method == "GET" && strings.HasPrefix(p, "/v1/jobs/") && strings.Contains(p, "/outputs/"):
		name := p[strings.Index(p, "/outputs/")+len("/outputs/"):]
		w.Write(g.files[name])
	case r.Method == "GET" && strings.HasPrefix(p, "/v1/jobs/") && strings.Contains(p, "/logs/"):
		io.WriteString(w, "the job's own output\n")
	case r.Method == "GET" && strings.HasPrefix(p, "/v1/jobs/"):
		id := strings.TrimPrefix(p, "/v1/jobs/")
		st, ok := g.jobState[id]
		if !ok {
			w.WriteHeader(404)
			writeJSON(api.Problem{Title: "Not Found", Status: 404, Code: api.CodeNotFound, Detail: "no job " + id})
			return
		}
		j := api.Job{ID: id, State: st}
		if st == api.StateFailed {
			code := 3
			j.Error, j.ExitCode = "the command failed with exit code 3", &code
		}
		writeJSON(j)
	case r.Method == "PUT" && strings.HasPrefix(p, "/v1/files/"):
		b, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(b)
		hexSum := hex.EncodeToString(sum[:])
		if g.badSum {
			hexSum = strings.Repeat("0", 64)
		}
		w.WriteHeader(201)
		writeJSON(api.FileInfo{Path: strings.TrimPrefix(p, "/v1/files/"), Size: int64(len(b)), SHA256: hexSum})
	default:
		w.WriteHeader(404)
		writeJSON(api.Problem{Title: "Not Found", Status: 404, Code: api.CodeNotFound})
	}
}

func startGateway(t *testing.T, g *fakeGateway) {
	t.Helper()
	serve(t, g.ServeHTTP)
}

func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func TestSubmitSendsCoercedRequest(t *testing.T) {
	g := &fakeGateway{}
	startGateway(t, g)
	dir := t.TempDir()
	pf := filepath.Join(dir, "p.json")
	os.WriteFile(pf, []byte(`{"name": "from file", "ratio": 0.5}`), 0o644)
	out, _, err := run(t, "", "submit", "t", "--param", "n=3", "--param", "flag=true", "--params-file", pf,
		"--param", "name=Ada", "--input", "text=texts/a.txt", "--label", "k=v", "--walltime", "1:00:00",
		"--cores", "2", "--hold", "--idempotency-key", "key-1", "--name", "job one", "--project", "chem01")
	if err != nil {
		t.Fatal(err)
	}
	if out != "created job j-1 (template t, state queued)\n" {
		t.Errorf("output = %q", out)
	}
	if len(g.created) != 1 {
		t.Fatalf("%d jobs created", len(g.created))
	}
	req := g.created[0]
	var params map[string]any
	json.Unmarshal(req.Parameters, &params)
	wantParams := map[string]any{"n": 3.0, "flag": true, "name": "Ada", "ratio": 0.5}
	if !reflect.DeepEqual(params, wantParams) {
		t.Errorf("parameters = %v, want %v", params, wantParams)
	}
	if req.Template != "t" || req.Name != "job one" || !req.Hold || req.Project != "chem01" || req.Inputs["text"] != "texts/a.txt" || req.Labels["k"] != "v" {
		t.Errorf("request = %+v", req)
	}
	if req.Resources == nil || req.Resources.WalltimeS != 3600 || req.Resources.CoresPerNode != 2 || req.Resources.Nodes != 0 {
		t.Errorf("resources = %+v", req.Resources)
	}
	if g.idemKeys[0] != "key-1" {
		t.Errorf("idempotency key = %q", g.idemKeys[0])
	}

	// --quiet prints the id alone; a bad value names the parameter and
	// creates nothing.
	out, _, err = run(t, "", "submit", "t", "--quiet", "--param", "name=x")
	if err != nil || out != "j-1\n" {
		t.Errorf("submit --quiet = %q, %v", out, err)
	}
	_, _, err = run(t, "", "submit", "t", "--param", "n=many")
	if err == nil || !strings.Contains(err.Error(), `"n"`) {
		t.Errorf("submit --param n=many = %v; want an error naming n", err)
	}
	if len(g.created) != 2 {
		t.Errorf("%d jobs created; want 2", len(g.created))
	}
}

// A retried sweep with its key is the sweep the first made (the gateway
// keeps the key): the CLI sends it.
func TestSweepSendsItsKey(t *testing.T) {
	g := &fakeGateway{}
	startGateway(t, g)
	vf := filepath.Join(t.TempDir(), "variants.json")
	os.WriteFile(vf, []byte(`[{"name": "a"}, {"name": "b"}]`), 0o644)
	out, _, err := run(t, "", "sweep", "t", "--variants-file", vf, "--idempotency-key", "k9", "--quiet")
	if err != nil || out != "sw-1\n" {
		t.Fatalf("sweep = %q, %v", out, err)
	}
	if len(g.idemKeys) != 1 || g.idemKeys[0] != "k9" {
		t.Fatalf("keys sent: %q", g.idemKeys)
	}
}

func TestWaitExitCodes(t *testing.T) {
	g := &fakeGateway{jobState: map[string]string{"ok": api.StateSucceeded, "bad": api.StateFailed}}
	startGateway(t, g)
	out, _, err := run(t, "", "wait", "ok")
	if err != nil || out != "ok succeeded\n" {
		t.Errorf("wait ok = %q, %v", out, err)
	}
	out, errOut, err := run(t, "", "wait", "ok", "bad", "missing")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Fatalf("wait ok bad missing = %v; want an *ExitError of code 1", err)
	}
	if out != "ok succeeded\nbad failed\n" || !strings.Contains(errOut, "missing") || !strings.Contains(err.Error(), "2 of 3") {
		t.Errorf("wait ok bad missing: stdout %q stderr %q err %v", out, errOut, err)
	}
}

func TestDownload(t *testing.T) {
	sum := sha256.Sum256([]byte("hello\n"))
	g := &fakeGateway{
		outputs: []api.FileInfo{
			{Path: "greeting.txt", Size: 6, SHA256: hex.EncodeToString(sum[:])},
			{Path: "sub/dir/x.json", Size: 2},
		},
		files: map[string][]byte{"greeting.txt": []byte("hello\n"), "sub/dir/x.json": []byte("{}")},
	}
	startGateway(t, g)
	dir := filepath.Join(t.TempDir(), "out")
	out, _, err := run(t, "", "download", "j-1", "--out", dir)
	if err != nil {
		t.Fatal(err)
	}
	if out != "downloaded 2 files (8 bytes) to "+dir+"\n" {
		t.Errorf("output = %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "sub", "dir", "x.json")); string(b) != "{}" {
		t.Errorf("x.json = %q", b)
	}

	// A listed checksum that does not match fails.
	g.outputs[0].SHA256 = strings.Repeat("a", 64)
	if _, _, err := run(t, "", "download", "j-1", "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("download with a bad checksum = %v", err)
	}

	// An unsafe path refuses the whole download before writing anything.
	g.outputs = append(g.outputs, api.FileInfo{Path: "../escape", Size: 1})
	dir2 := filepath.Join(t.TempDir(), "out2")
	_, _, err = run(t, "", "download", "j-1", "--out", dir2)
	if err == nil || !strings.Contains(err.Error(), "../escape") {
		t.Errorf("download with ../escape = %v; want refused", err)
	}
	if _, err := os.Stat(dir2); !os.IsNotExist(err) {
		t.Errorf("download wrote %s despite an unsafe path", dir2)
	}
}

func TestUploadVerifiesChecksum(t *testing.T) {
	g := &fakeGateway{}
	startGateway(t, g)
	sum := sha256.Sum256([]byte("some data"))
	out, _, err := run(t, "some data", "upload", "-", "in/data.txt")
	want := "uploaded in/data.txt (9 bytes, sha256 " + hex.EncodeToString(sum[:]) + ")\n"
	if err != nil || out != want {
		t.Errorf("upload = %q, %v; want %q", out, err, want)
	}
	local := filepath.Join(t.TempDir(), "f.bin")
	os.WriteFile(local, []byte("file data"), 0o644)
	if out, _, err := run(t, "", "upload", local); err != nil || !strings.HasPrefix(out, "uploaded f.bin (9 bytes") {
		t.Errorf("upload LOCAL = %q, %v", out, err)
	}
	g.badSum = true
	if _, _, err := run(t, "some data", "upload", "-", "x"); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Errorf("upload with a wrong checksum answered = %v; want a mismatch error", err)
	}
}

func TestConnectionFlagsOverrideEnvironment(t *testing.T) {
	g := &fakeGateway{jobState: map[string]string{"ok": api.StateSucceeded}}
	startGateway(t, g)
	t.Setenv("HPCGATE_TOKEN", "wrong")
	_, _, err := run(t, "", "wait", "ok")
	if err == nil {
		t.Fatalf("wait with a wrong token succeeded")
	}
	if out, _, err := run(t, "", "wait", "ok", "--token", "secret"); err != nil || out != "ok succeeded\n" {
		t.Errorf("wait --token secret = %q, %v", out, err)
	}
	if _, _, err := run(t, "", "wait", "ok", "--token", "secret", "--url", "ftp://x"); err == nil {
		t.Errorf("--url ftp://x accepted")
	}
}

// --vary reads value lists and, where the schema wants a number, ranges
// with both ends included; the lists become product or zip variants typed
// by the schema.
func TestSweepVary(t *testing.T) {
	for _, c := range []struct {
		in      string
		numeric bool
		want    string
	}{
		{"0:10:2", true, "[0 2 4 6 8 10]"},
		{"0.1:0.3:0.1", true, "[0.1 0.2 0.3]"},
		{"1:2:5", true, "[1]"},
		{"a,b,c", true, "[a b c]"},
		{"12:30:00", false, "[12:30:00]"},
		{"7", true, "[7]"},
	} {
		got, err := expandValues(c.in, c.numeric, false)
		if err != nil || fmt.Sprint(got) != c.want {
			t.Errorf("expandValues(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"1:5:0", "5:1:1", "0:1000000:1", "0:1:-1"} {
		if _, err := expandValues(bad, true, false); err == nil {
			t.Errorf("expandValues(%q): no error", bad)
		}
	}
	s, err := parseSchema(json.RawMessage(`{"properties": {"re": {"type": "integer"}, "name": {"type": "string"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := varyLists(s, []string{"re=100:300:100", "name=a,b,c"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"mode":"zip","parameters":{"name":["a","b","c"],"re":[100,200,300]}}`; string(raw) != want {
		t.Errorf("varyLists = %s, want %s", raw, want)
	}
	if _, err := varyLists(s, []string{"re=1,2", "re=3"}, false); err == nil {
		t.Error("a parameter varied twice: no error")
	}
	if _, err := varyLists(s, []string{"re=1,two"}, false); err == nil {
		t.Error("a value of the wrong type: no error")
	}
}

func TestParseAfter(t *testing.T) {
	got, err := parseAfter([]string{"j1", "j2:finished", "sweep:s1", "sweep:s2:finished", "j3:succeeded"})
	want := []api.Dependency{{Job: "j1"}, {Job: "j2", When: "finished"}, {Sweep: "s1"}, {Sweep: "s2", When: "finished"}, {Job: "j3", When: "succeeded"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("parseAfter = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "sweep:", "j1:someday", ":finished"} {
		if _, err := parseAfter([]string{bad}); err == nil {
			t.Errorf("parseAfter(%q) took it", bad)
		}
	}
}

// --tree: children below their parents, oldest first, drawn; a job whose
// parent is not listed stands at the top.
func TestTreeOrder(t *testing.T) {
	// newest first, as the gateway lists them
	jobs := []api.Job{{ID: "c2", ParentID: "a"}, {ID: "b"}, {ID: "g1", ParentID: "c1"}, {ID: "c1", ParentID: "a"}, {ID: "orphan", ParentID: "gone"}, {ID: "a"}}
	got, indent := treeOrder(jobs)
	var lines []string
	for i, j := range got {
		lines = append(lines, indent[i]+j.ID)
	}
	want := []string{"b", "orphan", "a", "├─ c1", "│  └─ g1", "└─ c2"}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("tree\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// A TES task's job shows that it is one, and its executors as they ran.
func TestShowTask(t *testing.T) {
	var b bytes.Buffer
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e := &env{stdout: &b, now: func() time.Time { return now }}
	zero := 0
	end := now.Add(-time.Minute)
	j := &api.Job{ID: "t1", Template: "TES", State: api.StateRunning, CreatedAt: now.Add(-time.Hour),
		Steps: []api.Step{
			{Index: 0, StartedAt: now.Add(-2 * time.Minute), EndedAt: &end, ExitCode: &zero, Stdout: [2]int64{0, 12}},
			{Index: 1, StartedAt: end, ExitCode: nil},
		}}
	if err := e.showJob(j, nil); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"none: a GA4GH TES task", "Executors:", "bytes 0-12"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "TES@") {
		t.Errorf("a task shown as a template's job:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "Executors:") })
	if i < 0 || len(lines) < i+4 || !strings.HasPrefix(strings.TrimSpace(lines[i+2]), "0 ") || !strings.Contains(lines[i+3], " - ") {
		t.Errorf("executor rows:\n%s", out)
	}
}

// A followed log outlives a gateway restart: it gave up after five tries
// (7.5 s), less than a restart takes. Here the gateway is away for nine
// tries (connections closed at once, 503s, a stream broken off), then the
// log goes on at the offset reached, to its end, having said once that it
// reconnects. A refusal (404) ends it at once, and so does a gateway
// never reached (a wrong URL is no restart).
func TestFollowOutlivesARestart(t *testing.T) {
	defer func(r, b time.Duration) { followRetry, followBackoff = r, b }(followRetry, followBackoff)
	followRetry, followBackoff = time.Minute, time.Millisecond
	var tries atomic.Int32
	var offsets []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		offsets = append(offsets, r.URL.Query().Get("offset"))
		mu.Unlock()
		switch n := tries.Add(1); {
		case n == 1:
			w.Write([]byte("first "))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // broken off mid-stream
		case n <= 5:
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close() // the gateway went away
		case n <= 9:
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":503,"code":"unavailable"}`))
		default:
			w.Write([]byte("rest"))
		}
	}))
	defer srv.Close()
	c, err := client.New(srv.URL, "t", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out, warn bytes.Buffer
	if err := copyLog(context.Background(), c, "j1", "stdout", 0, true, &out, &warn); err != nil {
		t.Fatalf("copyLog: %v", err)
	}
	if strings.Count(warn.String(), "reconnecting") != 1 {
		t.Errorf("said %q; want one word that it reconnects", warn.String())
	}
	if out.String() != "first rest" || tries.Load() != 10 {
		t.Fatalf("copied %q in %d tries; want \"first rest\" in 10", out.String(), tries.Load())
	}
	if offsets[0] != "" || offsets[len(offsets)-1] != "6" {
		t.Errorf("offsets asked for: %q; want none (0) first, 6 once the first bytes came", offsets)
	}
	tries.Store(100)
	nf := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer nf.Close()
	c, _ = client.New(nf.URL, "t", nil)
	if err := copyLog(context.Background(), c, "j1", "stdout", 0, true, &out, &warn); client.StatusOf(err) != http.StatusNotFound || tries.Load() != 101 {
		t.Errorf("a 404: %v after %d tries; want it at once", err, tries.Load()-100)
	}
	nf.Close() // nothing listens there now
	start := time.Now()
	if err := copyLog(context.Background(), c, "j1", "stdout", 0, true, &out, &warn); err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("a gateway never reached: %v after %v; want an error at once", err, time.Since(start))
	}
}

// A job that fails under --wait is said once, on its own line, and its
// exit code once; --json --follow leaves standard output to the final
// job's JSON (the log goes to standard error).
func TestSubmitWaitSaysTheEndOnce(t *testing.T) {
	g := &fakeGateway{jobState: map[string]string{"j-1": api.StateFailed}}
	startGateway(t, g)
	out, errOut, err := run(t, "", "submit", "t", "--param", "name=x", "--wait")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Err != nil {
		t.Fatalf("submit --wait of a failing job = %v; want exit code 3 with nothing more to say", err)
	}
	end := "job j-1 failed: the command failed with exit code 3\n"
	if out != "created job j-1 (template t, state queued)\n"+end || errOut != "" {
		t.Errorf("stdout %q, stderr %q; want the end once, its exit code once", out, errOut)
	}
	out, errOut, err = run(t, "", "submit", "t", "--param", "name=x", "--follow", "--json")
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("submit --follow --json = %v; want exit code 3", err)
	}
	var j api.Job
	if jerr := json.Unmarshal([]byte(out), &j); jerr != nil || j.ID != "j-1" || j.State != api.StateFailed {
		t.Errorf("stdout is not the final job's JSON: %q (%v)", out, jerr)
	}
	if !strings.Contains(errOut, "the job's own output") {
		t.Errorf("stderr %q: want the job's log", errOut)
	}
}

// The exit code is added to a failure's line unless the line says it
// already: "exit code 1" is not said by "exit code 12".
func TestFinalLine(t *testing.T) {
	code := func(n int) *int { return &n }
	for _, c := range []struct {
		j    api.Job
		want string
	}{
		{api.Job{ID: "a", State: api.StateSucceeded, ExitCode: code(0)}, "job a succeeded"},
		{api.Job{ID: "a", State: api.StateFailed, Error: "the command failed with exit code 3", ExitCode: code(3)}, "job a failed: the command failed with exit code 3"},
		{api.Job{ID: "a", State: api.StateFailed, Error: "the adapter failed with exit code 12", ExitCode: code(1)}, "job a failed: the adapter failed with exit code 12 (exit code 1)"},
		{api.Job{ID: "a", State: api.StateFailed, Error: "out of memory", ExitCode: code(137)}, "job a failed: out of memory (exit code 137)"},
	} {
		if got := finalLine(&c.j); got != c.want {
			t.Errorf("finalLine = %q, want %q", got, c.want)
		}
	}
}

// A sweep has ended when all its jobs have; it went well only if they
// all succeeded and none was deleted (a job waiting for it to succeed
// would be canceled), and the progress line says the deleted.
func TestSweepEnd(t *testing.T) {
	for _, c := range []struct {
		sw          api.Sweep
		ended, fail bool
	}{
		{api.Sweep{Total: 2, Counts: map[string]int{"succeeded": 1, "running": 1}}, false, false},
		{api.Sweep{Total: 2, Counts: map[string]int{"succeeded": 2}}, true, false},
		{api.Sweep{Total: 2, Counts: map[string]int{"succeeded": 1, "failed": 1}}, true, true},
		{api.Sweep{Total: 2, Deleted: 1, Counts: map[string]int{"succeeded": 2}}, true, true},
	} {
		ended, err := sweepEnd("s", &c.sw)
		var ee *ExitError
		if ended != c.ended || (err != nil) != c.fail || (err != nil && (!errors.As(err, &ee) || ee.Code != 3)) {
			t.Errorf("%+v: ended %v, %v", c.sw, ended, err)
		}
	}
	if line := sweepProgress(&api.Sweep{Total: 2, Deleted: 1, Counts: map[string]int{"succeeded": 2}}); !strings.HasSuffix(line, "(1 deleted)") {
		t.Errorf("progress %q", line)
	}
}

// Names, labels and errors come from other users (an admin lists them)
// and from jobs: printed as they were, they could retitle, clear or
// script the reader's terminal. The CLI escapes their control
// characters; a log goes as it is unless to a terminal.
func TestControlCharactersEscaped(t *testing.T) {
	evil := "evil\x1b]0;pwned\x07\x1b[2J"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/logs/stdout"):
			io.WriteString(w, "\x1b[31mred\x1b[0m "+evil+"\n")
		case strings.HasPrefix(r.URL.Path, "/v1/jobs/j1"):
			code := 3
			json.NewEncoder(w).Encode(api.Job{ID: "j1", Name: evil, Template: "t", State: api.StateFailed, Error: evil, ExitCode: &code,
				Labels: map[string]string{"k": evil}, Reason: evil})
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("HPCGATE_URL", srv.URL)
	t.Setenv("HPCGATE_TOKEN", "secret")
	t.Setenv("HPCGATE_CACERT", "")
	out, errOut, _ := run(t, "", "status", "j1")
	if strings.ContainsRune(out+errOut, 0x1b) || strings.ContainsRune(out+errOut, 0x07) {
		t.Errorf("status printed control characters: %q %q", out, errOut)
	}
	if !strings.Contains(out, `evil\x1b]0;pwned\x07\x1b[2J`) {
		t.Errorf("status did not show the name escaped: %q", out)
	}
	// a log to a file or a pipe is its bytes
	out, _, err := run(t, "", "logs", "j1")
	if err != nil || out != "\x1b[31mred\x1b[0m "+evil+"\n" {
		t.Errorf("logs to a buffer = %q, %v", out, err)
	}
	// to a terminal (a character device: /dev/null stands in), a log is
	// escaped unless --raw
	tty, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	if w, _ := logWriter(tty, false); w == io.Writer(tty) {
		t.Error("a log to a terminal is not escaped")
	}
	if w, _ := logWriter(tty, true); w != io.Writer(tty) {
		t.Error("a log to a terminal with --raw is escaped")
	}
	var buf bytes.Buffer
	if w, _ := logWriter(&buf, false); w != io.Writer(&buf) {
		t.Error("a log to a buffer is escaped")
	}
}

// --since takes days, as --expires-in does (found by the sixth probe).
func TestAuditTimeTakesDays(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{"1d": now.Add(-24 * time.Hour), "90m": now.Add(-90 * time.Minute), "2026-11-25T09:00:00Z": time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)} {
		if got, err := auditTime(now, "since", in); err != nil || !got.Equal(want) {
			t.Errorf("auditTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "1-00:00:00", "-1d"} {
		if _, err := auditTime(now, "since", bad); err == nil {
			t.Errorf("auditTime(%q): no error", bad)
		}
	}
}
