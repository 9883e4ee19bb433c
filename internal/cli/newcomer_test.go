package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hpcgate/hpcgate/api"
	templates "github.com/hpcgate/hpcgate/examples/templates"
)

// What a prober, new to the CLI, ran into: one test each.

// serve answers the CLI's requests with h and points the environment at it.
func serve(t *testing.T, h http.HandlerFunc) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Setenv("HPCGATE_URL", srv.URL)
	t.Setenv("HPCGATE_TOKEN", "secret")
	t.Setenv("HPCGATE_CACERT", "")
}

func exitCodeOf(err error) int {
	var ee *ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.Code
	}
	return 1
}

// The gateway combines varied parameters in the alphabetical order of
// their names, whatever the order of the --vary flags: the help said the
// last --vary varies fastest.
func TestSweepHelpSaysTheOrder(t *testing.T) {
	out, _, err := run(t, "", "sweep", "--help")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(out), " ")
	if strings.Contains(text, "the last --vary varies fastest") || !strings.Contains(text, "alphabetical order of their names") {
		t.Errorf("sweep --help does not say that names are combined in alphabetical order:\n%s", out)
	}
}

// A range's values are START + i*STEP rounded at the precision of the
// numbers typed: a step below 1e-9 made duplicates. A range that is not
// one, or not finite, is said so, naming the --vary.
func TestSweepRanges(t *testing.T) {
	for in, want := range map[string]string{
		"0:1:0.1":       "[0 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1]",
		"0:1e-9:1e-10":  "[0 1e-10 2e-10 3e-10 4e-10 5e-10 6e-10 7e-10 8e-10 9e-10 1e-9]",
		"1e300:1e300:1": "[1e+300]",
		"-1:1:0.5":      "[-1 -0.5 0 0.5 1]",
		"0:0.3:0.1":     "[0 0.1 0.2 0.3]",
		"2.5e1:30:2.5":  "[25 27.5 30]",
		"0.5:1.5:0.25":  "[0.5 0.75 1 1.25 1.5]",
	} {
		got, err := expandValues(in, true, true)
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("expandValues(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	s, err := parseSchema(json.RawMessage(`{"properties": {"x": {"type": "number"}, "n": {"type": "integer"}, "when": {"type": "string"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for vary, want := range map[string]string{
		"x=nan:1:1":             "finite",
		"x=0:inf:1":             "finite",
		"x=0:1:nan":             "finite",
		"x=0:1e400:1":           "finite",
		"x=1:4":                 "START:STOP:STEP",
		"n=1:4:1:2":             "START:STOP:STEP",
		"n=a:b:c":               "START:STOP:STEP",
		"x=-1e308:1e308:1e-300": "more values than a sweep may have",
	} {
		_, err := varyLists(s, []string{vary}, false)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "--vary "+vary[:1]) || strings.Contains(err.Error(), "invalid character") {
			t.Errorf("--vary %s: %v; want an error naming the --vary that says %q", vary, err, want)
		}
	}
	// a string may hold colons
	if raw, err := varyLists(s, []string{"when=12:30:00,13:00:00"}, false); err != nil || !strings.Contains(string(raw), `"when":["12:30:00","13:00:00"]`) {
		t.Errorf("--vary when=12:30:00,13:00:00 = %s, %v", raw, err)
	}
}

// Values with commas go in a JSON array; the help says so.
func TestSweepVaryJSONArray(t *testing.T) {
	s, err := parseSchema(json.RawMessage(`{"properties": {"name": {"type": "string"}, "n": {"type": "integer"}, "list": {"type": "array"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := varyLists(s, []string{`name=["Smith, John", "Doe"]`, `n=[1, "2"]`, `list=[["a"], []]`}, false)
	want := `{"mode":"product","parameters":{"list":[["a"],[]],"n":[1,2],"name":["Smith, John","Doe"]}}`
	if err != nil || string(raw) != want {
		t.Errorf("varyLists = %s, %v; want %s", raw, err, want)
	}
	if _, err := varyLists(s, []string{"name=[]"}, false); err == nil {
		t.Error("an empty array: no error")
	}
	// not an array: a value that starts with [
	if raw, err := varyLists(s, []string{"name=[x],y"}, false); err != nil || !strings.Contains(string(raw), `["[x]","y"]`) {
		t.Errorf("name=[x],y: %s, %v", raw, err)
	}
	out, _, _ := run(t, "", "sweep", "--help")
	if !strings.Contains(out, "JSON array") {
		t.Errorf("sweep --help does not say how to give values with commas:\n%s", out)
	}
}

// CSV into a pipe or a file is the gateway's bytes; on a terminal its
// cells are escaped. A table's cells keep to their row: a newline, a
// carriage return or a tab in a value is escaped.
func TestSweepResultsEscaped(t *testing.T) {
	const csvText = "job,state,result.note\r\nj1,succeeded,\"two\nlines\ttab\x1b]0;x\x07\"\r\n"
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/csv")
		io.WriteString(w, csvText)
	})
	out, _, err := run(t, "", "sweep", "results", "sw1", "--csv")
	if err != nil || out != csvText {
		t.Errorf("--csv to a buffer = %q, %v; want the gateway's bytes", out, err)
	}
	out, _, err = run(t, "", "sweep", "results", "sw1")
	if err != nil || strings.Count(out, "\n") != 2 || strings.ContainsAny(out, "\t\r\x1b\x07") || !strings.Contains(out, `two\nlines\ttab\x1b]0;x\x07`) {
		t.Errorf("table = %q, %v; want two rows, the cell escaped", out, err)
	}
	var b strings.Builder
	if err := writeEscapedCSV(&b, [][]string{{"a", "two\nlines\r\x1b[2J"}}); err != nil || b.String() != `a,two\nlines\r\x1b[2J`+"\n" {
		t.Errorf("CSV for a terminal = %q, %v", b.String(), err)
	}
}

// Columns are as wide as a terminal shows their cells: a CJK character
// takes two columns.
func TestTableWideCharacters(t *testing.T) {
	var b strings.Builder
	tw := newTable(&b)
	tw.row("NAME", "STATE")
	tw.row("日本語", "running")
	tw.row("ab", "queued")
	tw.row("e\u0301t\u00e9", "held") // a combining accent takes none
	tw.Flush()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	for _, l := range lines {
		i := strings.LastIndex(l, "  ")
		if w := width(l[:i+2]); w != 8 {
			t.Errorf("%q: second column at %d, want 8:\n%s", l, w, b.String())
		}
	}
}

// Every example of every --help runs as written: its flags exist, and a
// template it submits is one of examples/ with every required parameter
// and input given, and no other parameter.
func TestHelpExamplesRun(t *testing.T) {
	tmpls := map[string]exampleTemplate{}
	files, _ := fs.Glob(templates.FS, "*.yaml")
	for _, f := range files {
		b, _ := fs.ReadFile(templates.FS, f)
		var y struct {
			Parameters struct {
				Required   []string       `yaml:"required"`
				Properties map[string]any `yaml:"properties"`
			} `yaml:"parameters"`
			Inputs []struct {
				Name     string `yaml:"name"`
				Required bool   `yaml:"required"`
			} `yaml:"inputs"`
		}
		if err := yaml.Unmarshal(b, &y); err != nil {
			t.Fatal(f, err)
		}
		tp := exampleTemplate{required: y.Parameters.Required}
		for p := range y.Parameters.Properties {
			tp.params = append(tp.params, p)
		}
		for _, in := range y.Inputs {
			if in.Required {
				tp.inputs = append(tp.inputs, in.Name)
			}
		}
		tmpls[strings.TrimSuffix(f, ".yaml")] = tp
	}
	var walk func(cmds []*command)
	walk = func(cmds []*command) {
		for _, c := range cmds {
			walk(c.subs)
			for _, line := range strings.Split(c.example, "\n") {
				for _, words := range hpcgateCalls(line) {
					checkExample(t, line, words, tmpls)
				}
			}
		}
	}
	walk(commands)
}

// exampleTemplate is what checkExample needs of a template: its required
// parameters, all its parameters and its required inputs.
type exampleTemplate struct{ required, params, inputs []string }

// hpcgateCalls finds the hpcgate commands of a shell line, as words:
// after "hpcgate", up to a &&, |, ;, >, # or ) outside quotes.
func hpcgateCalls(line string) [][]string {
	var calls [][]string
	var cur []string
	var word strings.Builder
	inWord, in := false, false
	var quote rune
	end := func() {
		if inWord {
			if w := word.String(); in {
				cur = append(cur, w)
			} else if w == "hpcgate" || strings.HasSuffix(w, "$(hpcgate") {
				in = true
			}
		}
		word.Reset()
		inWord = false
	}
	stop := func() {
		end()
		if in {
			calls = append(calls, cur)
		}
		cur, in = nil, false
	}
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			word.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ':
			end()
		case strings.ContainsRune("&|;>#)", r):
			stop()
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	stop()
	return calls
}

func checkExample(t *testing.T, line string, words []string, tmpls map[string]exampleTemplate) {
	t.Helper()
	c := lookup(commands, words[0])
	if c == nil {
		t.Errorf("%s: no command %s", line, words[0])
		return
	}
	args := words[1:]
	for len(c.subs) > 0 && len(args) > 0 && lookup(c.subs, args[0]) != nil {
		c, args = lookup(c.subs, args[0]), args[1:]
	}
	fs, _ := c.flagSet(&env{}, "hpcgate "+c.name)
	pos, err := parseArgs(fs, args)
	if err != nil {
		t.Errorf("%s: %v", line, err)
		return
	}
	if c != cmdSubmit && c != cmdSweep {
		return
	}
	tp, ok := tmpls[pos[0]]
	if !ok {
		t.Errorf("%s: no template %s in examples/templates", line, pos[0])
		return
	}
	given := map[string]bool{}
	for _, name := range []string{"param", "vary", "input"} {
		if f := fs.Lookup(name); f != nil {
			for _, kv := range *f.Value.(*multiFlag) {
				k, _, _ := strings.Cut(kv, "=")
				given[name+":"+k] = true
				if name != "input" && !slices.Contains(tp.params, k) {
					t.Errorf("%s: template %s has no parameter %s", line, pos[0], k)
				}
			}
		}
	}
	for _, p := range tp.required {
		if !given["param:"+p] && !given["vary:"+p] {
			t.Errorf("%s: the required parameter %s of %s is not given", line, p, pos[0])
		}
	}
	for _, in := range tp.inputs {
		if !given["input:"+in] {
			t.Errorf("%s: the required input %s of %s is not given", line, in, pos[0])
		}
	}
}

// Messages in the user's words: what a parameters file must hold, how to
// write a typed parameter, what --timeout takes.
func TestMessagesInPlainWords(t *testing.T) {
	s, err := parseSchema(json.RawMessage(`{"properties": {"min_length": {"type": "integer"}, "on": {"type": "boolean"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{
		`[1]`:  "want a JSON object of parameter names to values",
		`null`: "not null",
		`{`:    "not JSON",
	} {
		_, err := buildParams(s, []byte(file), nil)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "Go value") {
			t.Errorf("parameters file %s: %v; want %q", file, err, want)
		}
	}
	for kv, want := range map[string]string{
		"min_length=abc": `want integer, written as a whole number such as 5; "abc" is not one`,
		"on=yes":         `want boolean, written as true or false; "yes" is not one`,
	} {
		_, err := buildParams(s, nil, []string{kv})
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "invalid character") {
			t.Errorf("--param %s: %v; want %q", kv, err, want)
		}
	}
	t.Setenv("HPCGATE_URL", "http://127.0.0.1:1")
	t.Setenv("HPCGATE_TOKEN", "x")
	_, _, err = run(t, "", "wait", "j1", "--timeout", "bogus")
	if exitCodeOf(err) != 2 || !strings.Contains(err.Error(), "want a duration such as 90s or 10m") {
		t.Errorf("wait --timeout bogus = %v", err)
	}
}

// A parameter given twice is refused, not the last taken: in a
// parameters file (the gateway refuses a member given twice), by two
// --param, and by --param and --vary.
func TestDuplicatesRefused(t *testing.T) {
	s, _ := parseSchema(testTemplate.Parameters)
	for file, want := range map[string]string{
		`{"name": "a", "name": "b"}`:             "name is given twice",
		`{"opts": {"k": 1, "k": 2}}`:             "opts.k is given twice",
		`{"list": [{"a": 1}, {"b": 1, "b": 2}]}`: "list[1].b is given twice",
	} {
		if _, err := buildParams(s, []byte(file), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parameters file %s: %v; want %q", file, err, want)
		}
	}
	if _, err := buildParams(s, nil, []string{"n=1", "n=2"}); err == nil || !strings.Contains(err.Error(), "--param n: given twice") {
		t.Errorf("--param n=1 --param n=2: %v", err)
	}
	g := &fakeGateway{}
	startGateway(t, g)
	_, _, err := run(t, "", "sweep", "t", "--param", "name=X", "--vary", "name=a,b")
	if exitCodeOf(err) != 2 || !strings.Contains(err.Error(), "name") {
		t.Errorf("sweep --param name=X --vary name=a,b = %v; want a usage error naming it", err)
	}
	_, _, err = run(t, "", "submit", "t", "--param", "name=x", "--label", "k=1", "--label", "k=2")
	if exitCodeOf(err) != 2 || !strings.Contains(err.Error(), "--label k: given twice") {
		t.Errorf("--label k twice = %v", err)
	}
	if len(g.created) != 0 {
		t.Errorf("created %d jobs", len(g.created))
	}
}

// fetch into . or any directory puts the file under its base name; into
// a directory that is not there says so, not the name of a temporary
// file.
func TestFetchIntoDirectory(t *testing.T) {
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "the cat sat")
	})
	dir := t.TempDir()
	t.Chdir(dir)
	os.Mkdir("sub", 0o755)
	for _, local := range []string{".", "sub", "sub/", dir} {
		os.Remove(filepath.Join(dir, "story.txt"))
		os.Remove(filepath.Join(dir, "sub", "story.txt"))
		out, _, err := run(t, "", "fetch", "inputs/story.txt", local)
		if err != nil {
			t.Errorf("fetch inputs/story.txt %s: %v", local, err)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(local, "story.txt")); err != nil || string(b) != "the cat sat" {
			t.Errorf("fetch into %s: %q, %v (%s)", local, b, err, out)
		}
	}
	for _, local := range []string{"missing/", "missing/story.txt"} {
		_, _, err := run(t, "", "fetch", "inputs/story.txt", local)
		if err == nil || !strings.Contains(err.Error(), "the directory missing") || !strings.Contains(err.Error(), "does not exist") || strings.Contains(err.Error(), ".part") {
			t.Errorf("fetch into %s: %v; want the directory said not to exist", local, err)
		}
	}
}

// download and upload replace what is there: their help says so.
func TestHelpSaysWhatIsReplaced(t *testing.T) {
	for _, cmd := range []string{"download", "upload"} {
		out, _, _ := run(t, "", cmd, "--help")
		if !strings.Contains(out, "replaced") {
			t.Errorf("%s --help does not say that existing files are replaced:\n%s", cmd, out)
		}
	}
}

// Exit codes: 2 for an unknown command as for other usage errors, 3 for
// a job waited for that did not succeed, 1 for a refused request.
func TestExitCodesApart(t *testing.T) {
	if _, _, err := run(t, "", "nosuch"); exitCodeOf(err) != 2 {
		t.Errorf("hpcgate nosuch = %v; want exit code 2", err)
	}
	if _, _, err := run(t, "", "help", "nosuch"); exitCodeOf(err) != 2 {
		t.Errorf("hpcgate help nosuch = %v; want exit code 2", err)
	}
	g := &fakeGateway{jobState: map[string]string{"ok": api.StateSucceeded, "bad": api.StateFailed, "j-1": api.StateCanceled}}
	startGateway(t, g)
	if _, _, err := run(t, "", "submit", "t", "--param", "name=x", "--wait"); exitCodeOf(err) != 3 {
		t.Errorf("submit --wait of a canceled job = %v; want exit code 3", err)
	}
	if _, _, err := run(t, "", "wait", "ok", "bad"); exitCodeOf(err) != 3 {
		t.Errorf("wait of a failed job = %v; want exit code 3", err)
	}
	if _, _, err := run(t, "", "wait", "bad", "gone"); exitCodeOf(err) != 1 {
		t.Errorf("wait of a job not found = %v; want exit code 1", err)
	}
	if _, _, err := run(t, "", "status", "gone"); exitCodeOf(err) != 1 {
		t.Errorf("status of a job not found = %v; want exit code 1", err)
	}
	if _, ee := sweepEnd("s", &api.Sweep{Total: 1, Counts: map[string]int{"failed": 1}}); exitCodeOf(ee) != 3 {
		t.Errorf("a sweep that failed: %v; want exit code 3", ee)
	}
	out, _, _ := run(t, "", "help")
	if !strings.Contains(out, "Exit codes:") {
		t.Errorf("help does not list the exit codes:\n%s", out)
	}
}

// A REMOTE with a .. is refused naming the argument, not the API's path.
func TestRemotePathNamesTheArgument(t *testing.T) {
	g := &fakeGateway{}
	startGateway(t, g)
	local := filepath.Join(t.TempDir(), "x")
	os.WriteFile(local, []byte("x"), 0o644)
	for _, c := range []struct {
		args  []string
		named string
	}{
		{[]string{"upload", local, "../escape.txt"}, "../escape.txt"},
		{[]string{"fetch", "../escape.txt", t.TempDir()}, "../escape.txt"},
		{[]string{"cat", "a//b"}, "a//b"},
		{[]string{"output", "j-1", "../x"}, "../x"},
	} {
		_, _, err := run(t, "", c.args...)
		if err == nil || strings.Contains(err.Error(), "/v1/") || !strings.Contains(err.Error(), fmt.Sprintf("%q", c.named)) {
			t.Errorf("%q = %v; want %q named, not the API's path", c.args, err, c.named)
		}
	}
}

// user show and image list print JSON too; an admin's list of other
// users' jobs shows their owners; a negative --limit is refused; me
// shows sizes for people, and the jobs of no project so.
func TestListingsForAdmins(t *testing.T) {
	serve(t, func(w http.ResponseWriter, r *http.Request) {
		enc := json.NewEncoder(w)
		switch r.URL.Path {
		case "/v1/users/alice":
			enc.Encode(api.UserState{Name: "alice", Disabled: true})
		case "/v1/images":
			enc.Encode(api.Page[api.FileInfo]{Items: []api.FileInfo{{Path: "solver.tar", Size: 3}}})
		case "/v1/jobs":
			enc.Encode(api.Page[api.Job]{Items: []api.Job{{ID: "j1", Owner: "alice", Template: "hello", State: api.StateRunning, CreatedAt: time.Now()}}})
		case "/v1/me":
			enc.Encode(api.Me{User: "bob", Quotas: map[string]api.Quota{"bytes": {Used: 3489, Limit: 1 << 40}, "jobs": {Used: 2, Limit: 10}},
				Projects: []api.ProjectUsage{{Project: "", Jobs: 2}, {Project: "p1", Jobs: 1}}})
		default:
			w.WriteHeader(404)
		}
	})
	out, _, err := run(t, "", "user", "show", "alice", "--json")
	var u api.UserState
	if err != nil || json.Unmarshal([]byte(out), &u) != nil || u.Name != "alice" || !u.Disabled {
		t.Errorf("user show --json = %q, %v", out, err)
	}
	out, _, err = run(t, "", "image", "list", "--json")
	var imgs []api.FileInfo
	if err != nil || json.Unmarshal([]byte(out), &imgs) != nil || len(imgs) != 1 {
		t.Errorf("image list --json = %q, %v", out, err)
	}
	out, _, err = run(t, "", "jobs", "--user", "*")
	if err != nil || !strings.HasPrefix(out, "ID  OWNER") || !strings.Contains(out, "alice") {
		t.Errorf("jobs --user '*' = %q, %v; want an OWNER column", out, err)
	}
	if out, _, _ = run(t, "", "jobs"); strings.Contains(out, "OWNER") {
		t.Errorf("jobs (one's own) = %q; want no OWNER column", out)
	}
	if _, _, err := run(t, "", "jobs", "--limit", "-1"); exitCodeOf(err) != 2 {
		t.Errorf("jobs --limit -1 = %v; want a usage error", err)
	}
	out, _, err = run(t, "", "me")
	for _, want := range []string{"3.4 KiB of 1.0 TiB", "2 of 10", "No project:", "Project p1:"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("me = %q, %v; want %q", out, err, want)
		}
	}
	if strings.Contains(out, "Project -") {
		t.Errorf("me = %q: a project named -", out)
	}
}

// A dependent the gateway canceled says "canceled" once.
func TestCanceledSaidOnce(t *testing.T) {
	j := &api.Job{ID: "j2", State: api.StateCanceled, Reason: "canceled: job j1 did not succeed, and this job was to run after it succeeded"}
	if got, want := finalLine(j), "job j2 canceled: job j1 did not succeed, and this job was to run after it succeeded"; got != want {
		t.Errorf("finalLine = %q, want %q", got, want)
	}
	var b strings.Builder
	e := &env{stdout: &b, now: time.Now}
	e.showJob(j, nil)
	if strings.Contains(b.String(), "canceled (canceled") {
		t.Errorf("status says canceled twice:\n%s", b.String())
	}
}
