package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/hpcgate/hpcgate/examples/templates"
	"github.com/hpcgate/hpcgate/internal/job"
)

var localEnv = []Environment{{Name: "local", Scheduler: "local", Max: Limits{Nodes: 1, CoresPerNode: 2, WalltimeS: 7200}}}

func load(t *testing.T) *Catalog {
	t.Helper()
	c, err := Load(localEnv, templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func files(m map[string]int64) StatFunc {
	return func(p string) (int64, error) {
		if n, ok := m[p]; ok {
			return n, nil
		}
		return 0, fmt.Errorf("%s: %w", p, ErrNotFound)
	}
}

func fields(err error) string {
	verr, ok := err.(*ValidationError)
	if !ok {
		return fmt.Sprintf("not a ValidationError: %v", err)
	}
	var out []string
	for _, f := range verr.Fields {
		out = append(out, f.Field)
	}
	return strings.Join(out, " ")
}

func TestBuiltinTemplatesLoad(t *testing.T) {
	c := load(t)
	var names []string
	for _, tp := range c.Templates() {
		names = append(names, tp.Name)
	}
	if got := strings.Join(names, " "); got != "evaluate fanout hello mpi-pi optimize reduce sweep-reduce wordcount" {
		t.Fatalf("templates = %s", got)
	}
}

func TestInstantiateAppliesDefaults(t *testing.T) {
	c := load(t)
	inst, err := c.Instantiate(Request{Template: "wordcount", Inputs: map[string]string{"text": "in/story.txt"}}, files(map[string]int64{"in/story.txt": 100}))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	json.Unmarshal(inst.Parameters, &p)
	if p["min_length"] != float64(1) {
		t.Fatalf("parameters %s: default min_length not applied", inst.Parameters)
	}
	if inst.Resources != (job.Resources{Nodes: 1, CoresPerNode: 1, WalltimeS: 600}) {
		t.Fatalf("resources %+v, want the template defaults", inst.Resources)
	}
	if inst.Environment.Name != "local" || inst.InputSizes["text"] != 100 {
		t.Fatalf("instance %+v", inst)
	}
}

func TestInstantiateReportsEveryField(t *testing.T) {
	c := load(t)
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"missing required parameter", Request{Template: "hello"}, "parameters.name"},
		{"too long", Request{Template: "hello", Parameters: json.RawMessage(`{"name":"` + strings.Repeat("x", 65) + `"}`)}, "parameters.name"},
		{"wrong type and unknown key", Request{Template: "hello", Parameters: json.RawMessage(`{"name": 5, "colour": "red"}`)}, "parameters.colour parameters.name"},
		{"not an object", Request{Template: "hello", Parameters: json.RawMessage(`[1]`)}, "parameters"},
		{"range", Request{Template: "fanout", Parameters: json.RawMessage(`{"n": 51}`)}, "parameters.n"},
		{"missing input", Request{Template: "wordcount"}, "inputs.text"},
		{"input does not exist", Request{Template: "wordcount", Inputs: map[string]string{"text": "nope.txt"}}, "inputs.text"},
		{"input too large", Request{Template: "wordcount", Inputs: map[string]string{"text": "big.txt"}}, "inputs.text"},
		{"input traversal", Request{Template: "wordcount", Inputs: map[string]string{"text": "../../etc/passwd"}}, "inputs.text"},
		{"undeclared input", Request{Template: "hello", Parameters: json.RawMessage(`{"name":"x"}`), Inputs: map[string]string{"extra": "in/story.txt"}}, "inputs.extra"},
		{"resources over template and environment", Request{Template: "wordcount", Inputs: map[string]string{"text": "in/story.txt"},
			Resources: &job.Resources{CoresPerNode: 8, WalltimeS: 99999}}, "resources.cores_per_node resources.cores_per_node resources.walltime_s resources.walltime_s"},
		{"unknown environment", Request{Template: "hello", Parameters: json.RawMessage(`{"name":"x"}`), Environment: "mars"}, "environment"},
		{"unknown template", Request{Template: "nope"}, "template"},
		{"bad label", Request{Template: "hello", Parameters: json.RawMessage(`{"name":"x"}`), Labels: map[string]string{"bad key!": "v"}}, "labels.bad key!"},
		{"negative counts", Request{Template: "hello", Parameters: json.RawMessage(`{"name":"x"}`), Resources: &job.Resources{Nodes: -1, CoresPerNode: -5}}, "resources.cores_per_node resources.nodes"},
		{"NUL in a string", Request{Template: "hello", Parameters: json.RawMessage(`{"name":"a\u0000b"}`)}, "parameters.name"},
		{"number out of range", Request{Template: "fanout", Parameters: json.RawMessage(`{"n": 1e400}`)}, "parameters.n"},
		{"everything at once", Request{Template: "wordcount", Parameters: json.RawMessage(`{"min_length": 0, "x": 1}`), Resources: &job.Resources{Nodes: 2}},
			"inputs.text parameters.min_length parameters.x resources.nodes resources.nodes"},
	}
	stat := files(map[string]int64{"in/story.txt": 10, "big.txt": 200 << 20})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Instantiate(tt.req, stat)
			if got := fields(err); got != tt.want {
				t.Fatalf("fields = %q, want %q (%v)", got, tt.want, err)
			}
		})
	}
}

func TestBadTemplatesRefused(t *testing.T) {
	fsys := fstest.MapFS{
		"b.yaml": {Data: []byte("name: b\nversion: 1\ncommand: [x]\nenvironments: [local]\nparameters: {type: 12}\n")},
		"c.yaml": {Data: []byte("name: c\nversion: 1\ncommand: [x]\nenvironments: [local]\ninputs: [{name: i, path: ../x}]\n")},
		"d.yaml": {Data: []byte("name: d\nversion: 1\ncommand: [x]\nenvironments: [local]\nunknown_field: 1\n")},
		// found by the sixth probe: two inputs at one path, or one inside
		// another's unpacked directory (the job got one and said nothing),
		// and a required parameter no job may have
		"e.yaml": {Data: []byte("name: e\nversion: 1\ncommand: [x]\nenvironments: [local]\ninputs: [{name: a, path: a.txt}, {name: b, path: a.txt}]\n")},
		"f.yaml": {Data: []byte("name: f\nversion: 1\ncommand: [x]\nenvironments: [local]\ninputs: [{name: c, path: data, unpack: true}, {name: d, path: data/x.txt}]\n")},
		"h.yaml": {Data: []byte("name: h\nversion: 1\ncommand: [x]\nenvironments: [local]\nresources: {default: {walltime_s: 100}, max: {walltime_s: 60}}\ninputs: [{name: Y, path: y}]\n")},
		"g.yaml": {Data: []byte("name: g\nversion: 1\ncommand: [x]\nenvironments: [local]\nparameters: {type: object, additionalProperties: false, required: [nope], properties: {s: {type: string}}}\n")},
		// a negative number is named (it was "resources: no number may be
		// negative", once for each of default and max)
		"i.yaml": {Data: []byte("name: i\nversion: 1\ncommand: [x]\nenvironments: [local]\nresources: {default: {cores_per_node: -1}, max: {walltime_s: -600}}\n")},
	}
	_, err := Load(localEnv, fsys)
	if err == nil {
		t.Fatal("bad templates loaded")
	}
	// every line names its file (found by the sixth probe: only the first
	// of a file's problems did)
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, "template file ") {
			t.Errorf("a line that names no file: %q", line)
		}
	}
	for _, want := range []string{"b.yaml", "c.yaml", "d.yaml", "e.yaml: inputs a and b", "f.yaml: inputs c and d", `g.yaml: parameters: "nope" is required`,
		"h.yaml: resources: default.walltime_s 100 exceeds max.walltime_s 60",
		"i.yaml: resources: default.cores_per_node -1: must not be negative", "i.yaml: resources: max.walltime_s -600: must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

// An environment's keys are its engine's, and its limits not negative:
// a Slurm key on a local environment, or Grid Engine's queue on a Slurm
// one, was ignored without a word, and max.walltime_s -10 was no limit
// (found by the sixth probe).
func TestEnvironmentKeysAndLimits(t *testing.T) {
	for _, tc := range []struct {
		env  Environment
		want string
	}{
		{Environment{Name: "a", Scheduler: "slurm", Queue: "all.q"}, "queue is for scheduler sge, not slurm"},
		{Environment{Name: "b", Scheduler: "local", Partition: "debug"}, "partition is for scheduler slurm, not local"},
		{Environment{Name: "c", Scheduler: "local", SlurmConf: "/x"}, "slurm_conf is for scheduler slurm, not local"},
		{Environment{Name: "d", Scheduler: "sge", QOS: "high"}, "qos is for scheduler slurm, not sge"},
		{Environment{Name: "e", Scheduler: "slurm", SlurmConf: "x"}, `slurm_conf "x": want an absolute path`},
		{Environment{Name: "f", Scheduler: "slurm", Max: Limits{WalltimeS: -10}}, "max.walltime_s -10: must not be negative (0 or none: no limit)"},
	} {
		if _, err := Load([]Environment{tc.env}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.env, err, tc.want)
		}
	}
}

// A YAML syntax error names the line an editor shows. yaml.v3 counts its
// parser's lines from 0, so it named the line before, and no line for
// the first (found by the sixth probe).
func TestYAMLSyntaxErrorLine(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"name: a\nversion: 1\noutputs: [a.txt\nenvironments: [local]\n", "line 3: did not find expected ',' or ']'"},
		{"{a: b, c d: e f: g}\n", "line 1: did not find expected ',' or '}'"},
		{"a: b\n- c\n", "line 2: did not find expected key"},
		{"name: a\nparameters: {type: object\n", "line 2: did not find expected ',' or '}'"},
		{"- a\n- b\nc: d\n", "line 3: did not find expected '-' indicator"},
		// the scanner's own errors were right, and stay so
		{"name: a\nversion: 1\n description: x\n", "line 3: mapping values are not allowed in this context"},
	} {
		_, err := parseTemplate([]byte(tc.doc))
		if err == nil || err.Error() != "yaml: "+tc.want {
			t.Errorf("%q: %v, want yaml: %s", tc.doc, err, tc.want)
		}
	}
	// type errors in plain words, not Go's (found by the eighth probe)
	for doc, want := range map[string]string{
		"name: a\nversion: x\n":              `yaml: line 2: want a whole number, not "x"`,
		"name: a\nversoin: 1\n":              `yaml: line 2: unknown key "versoin"`,
		"name: a\ncommand: {a: b}\nnam: b\n": `yaml: line 2: want a list, not a mapping (key: value lines); line 3: unknown key "nam"`,
	} {
		if _, err := parseTemplate([]byte(doc)); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %s", doc, err, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"512": 512, "64KiB": 64 << 10, "100MiB": 100 << 20, "10GiB": 10 << 30, "2 MB": 2e6, "1.5GiB": 3 << 29, "0.5 KB": 500} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "10XB", "-1.5GiB", "1e3MB", "NaN", "Inf", "0x10", "10G"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

func TestTemplatesOfOtherEnvironments(t *testing.T) {
	fsys := fstest.MapFS{
		"a.yaml": {Data: []byte("name: a\nversion: 1\ncommand: [x]\nenvironments: [slurm, local]\n")},
		"b.yaml": {Data: []byte("name: b\nversion: 1\ncommand: [x]\nenvironments: [sge]\n")},
	}
	c, err := Load(localEnv, fsys)
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Template("a", 0)
	if err != nil || len(a.Environments) != 1 || a.Environments[0] != "local" {
		t.Fatalf("template a: %+v, %v; want it offered in local only", a, err)
	}
	if _, err := c.Template("b", 0); err == nil {
		t.Fatal("a template for an environment this gateway lacks is offered")
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "b.yaml") {
		t.Fatalf("warnings %q", c.Warnings)
	}
}

// A template with an image runs only where a container runtime allows its
// image (and its network): elsewhere it is not offered, a job naming such
// an environment gets a field error saying why, and a template that can run
// nowhere is left out with a warning that says why.
func TestImageTemplatesRunWhereAllowed(t *testing.T) {
	envs := []Environment{
		{Name: "local", Scheduler: "local"},
		{Name: "pod", Scheduler: "local", ContainerRuntime: "podman", Images: []string{"localhost/", "docker.io/library/alpine:3"}},
		{Name: "net", Scheduler: "local", ContainerRuntime: "podman", ContainerNetwork: true},
	}
	tmpl := func(name, image, extra string) string {
		return "name: " + name + "\nversion: 1\nimage: " + image + "\ncommand: [\"true\"]\nenvironments: [local, pod, net]\n" + extra
	}
	fsys := fstest.MapFS{
		"a.yaml": {Data: []byte(tmpl("a", "localhost/solver:1", ""))},
		"b.yaml": {Data: []byte(tmpl("b", "docker.io/library/alpine:3.19", ""))},
		"c.yaml": {Data: []byte(tmpl("c", "localhost/solver:1", "container: {network: true}\n"))},
		"h.yaml": {Data: []byte("name: h\nversion: 1\ncommand: [\"true\"]\nenvironments: [local, pod]\n")},
	}
	c, err := Load(envs, fsys)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]string{"a": {"pod", "net"}, "b": {"net"}, "c": {"net"}, "h": {"local", "pod"}} {
		tm, err := c.Template(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(tm.Environments, want) {
			t.Errorf("template %s runs in %v, want %v", name, tm.Environments, want)
		}
	}
	_, err = c.Instantiate(Request{Template: "b", Environment: "pod"}, files(nil))
	if f := fmt.Sprint(err); !strings.Contains(f, "environment: template b cannot run in environment pod") || !strings.Contains(f, "limited to localhost/, docker.io/library/alpine:3") {
		t.Errorf("job of b in pod: %v", err)
	}
	_, err = c.Instantiate(Request{Template: "a", Environment: "local"}, files(nil))
	if f := fmt.Sprint(err); !strings.Contains(f, "no container runtime") {
		t.Errorf("job of a in local: %v", err)
	}
	if inst, err := c.Instantiate(Request{Template: "a"}, files(nil)); err != nil || inst.Environment.Name != "pod" {
		t.Errorf("job of a: %+v, %v", inst, err)
	}
	// an image template for environments without a runtime: left out, saying why
	c, err = Load(envs[:1], fstest.MapFS{"a.yaml": fsys["a.yaml"]})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Template("a", 0); err == nil || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "no container runtime") {
		t.Errorf("warnings %q, template a offered: %v", c.Warnings, err == nil)
	}
	// images that could be taken for options, and bad workdirs, are refused
	for _, bad := range []string{tmpl("x", "--privileged", ""), tmpl("x", "a b", ""), tmpl("x", "localhost/s:1", "container: {workdir: work}\n"), tmpl("x", "localhost/s:1", "container: {workdir: /}\n"), tmpl("x", "localhost/s:1", "inputs: [{name: a, path: 'a:b'}]\n"), tmpl("x", "localhost/s:1", "inputs: [{name: a, path: params.json}]\n"), tmpl("x", "localhost/s:1", "---\nname: y\n"), tmpl("x", "localhost/s:1", "resources: {default: {walltime_s: 7200}, max: {walltime_s: 3600}}\n"), tmpl("x", "localhost/s:1", "resources: {default: {nodes: -1}}\n")} {
		if _, err := Load(envs, fstest.MapFS{"x.yaml": {Data: []byte(bad)}}); err == nil {
			t.Errorf("accepted:\n%s", bad)
		}
	}
	// an unknown runtime is refused
	if _, err := Load([]Environment{{Name: "x", Scheduler: "local", ContainerRuntime: "singularity"}}); err == nil {
		t.Error("an unknown container runtime was accepted")
	}
}

// What an environment says about its nodes is checked at load, and a job
// asking for more nodes than its engine can place is refused.
func TestEnvironmentNodes(t *testing.T) {
	for _, bad := range []Environment{
		{Name: "l", Scheduler: "local", Max: Limits{Nodes: 2}},
		{Name: "g", Scheduler: "sge", ParallelEnv: "smp", Max: Limits{Nodes: 2}},
		{Name: "g", Scheduler: "sge", ParallelEnv: "mpi-%s"},
		{Name: "g", Scheduler: "sge", ParallelEnv: "mpi-%d-%d"},
		{Name: "g", Scheduler: "sge", ParallelEnv: "mpi %d"},
		{Name: "s", Scheduler: "slurm", Launcher: []string{"srun;", "x"}},
		{Name: "s", Scheduler: "slurm", Launcher: []string{"$(id)"}},
		{Name: "s", Scheduler: "slurm", SlurmConf: "slurm.conf"},
		{Name: "g", Scheduler: "sge", SlurmConf: "/etc/slurm/slurm.conf"},
		{Name: "s", Scheduler: "slurm", GatewayHost: "10.0.0.1:8443"},
		{Name: "s", Scheduler: "slurm", GatewayHost: "host name"},
	} {
		if _, err := Load([]Environment{bad}); err == nil {
			t.Errorf("environment %+v was taken", bad)
		}
	}
	envs := []Environment{
		{Name: "multi", Scheduler: "sge", ParallelEnv: "mpi-%d", GatewayHost: "10.78.0.1", Launcher: []string{"mpirun", "--bind-to", "none"}, Max: Limits{Nodes: 2}},
		{Name: "smp", Scheduler: "sge"},
		{Name: "cluster", Scheduler: "slurm", SlurmConf: "/etc/slurm-multi/slurm.conf", GatewayHost: "head.example.org", Max: Limits{Nodes: 3}},
	}
	fsys := fstest.MapFS{
		"run.yaml": {Data: []byte("name: run\nversion: 1\ncommand: [x]\nenvironments: [multi, smp, cluster]\n")},
		"ctr.yaml": {Data: []byte("name: ctr\nversion: 1\nimage: localhost/x\ncommand: [x]\nenvironments: [cluster]\n")},
	}
	envs[2].ContainerRuntime = "podman"
	c, err := Load(envs, fsys)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		tpl, env string
		nodes    int
		want     string // "" for taken
	}{
		{"run", "multi", 2, ""},
		{"run", "multi", 3, "3 is more than the environment multi allows (2)"},
		{"run", "smp", 1, ""},
		{"run", "smp", 2, "2 is more than the environment smp allows (1)"},
		{"run", "cluster", 3, ""},
		{"ctr", "cluster", 2, "a template with an image runs on one node"},
	} {
		_, err := c.Instantiate(Request{Template: tt.tpl, Environment: tt.env, Resources: &job.Resources{Nodes: tt.nodes}}, files(nil))
		switch verr, _ := err.(*ValidationError); {
		case tt.want == "" && err != nil:
			t.Errorf("%s on %s, %d nodes: %v", tt.tpl, tt.env, tt.nodes, err)
		case tt.want != "" && (verr == nil || len(verr.Fields) != 1 || verr.Fields[0].Field != "resources.nodes" || verr.Fields[0].Message != tt.want):
			t.Errorf("%s on %s, %d nodes: %v, want resources.nodes: %s", tt.tpl, tt.env, tt.nodes, err, tt.want)
		}
	}
}

// What no schema need say is refused at any depth, named by its path.
func TestUnfitValues(t *testing.T) {
	v, err := decodeJSON([]byte(`{"a": [1, {"b": "x\u0000"}], "c": {"d": -1e999, "e": 1e-999}, "ok": "fine", "k\u0000": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	verr := &ValidationError{}
	if !unfitValues(v, "parameters", verr) {
		t.Fatal("nothing found")
	}
	got := strings.Fields(fields(verr))
	slices.Sort(got)
	if strings.Join(got, " ") != "parameters parameters.a[1].b parameters.c.d" {
		t.Fatalf("fields %q", got)
	}
}

// A template defined twice names both files and the sets they are in (the
// gateway names its sets: the built-in templates, a directory); the
// message named one file, and no directory (found by the sixth probe).
func TestTemplateDefinedTwiceSaysWhere(t *testing.T) {
	a := namedSet{fstest.MapFS{"hello.yaml": {Data: []byte("name: hello\nversion: 1\ncommand: [x]\nenvironments: [local]\n")}}, "the built-in templates"}
	b := namedSet{fstest.MapFS{"mine.yaml": {Data: []byte("name: hello\nversion: 1\ncommand: [y]\nenvironments: [local]\n")}}, "/etc/hpcgate/templates"}
	_, err := Load(localEnv, a, b)
	if err == nil || !strings.Contains(err.Error(), "hello.yaml in the built-in templates and mine.yaml in /etc/hpcgate/templates") {
		t.Fatalf("Load: %v", err)
	}
}

type namedSet struct {
	fstest.MapFS
	name string
}

func (n namedSet) String() string { return n.name }

// An integer parameter given as 2.0 or 1e0 is valid (JSON Schema counts
// it an integer) and reaches the job as the integer: fanout's shell test
// failed on "2.0" (found by the eighth probe).
func TestIntegerParametersWrittenAsIntegers(t *testing.T) {
	c := load(t)
	for given, want := range map[string]string{"2.0": "2", "1e0": "1", "20e-1": "2", "50": "50"} {
		inst, err := c.Instantiate(Request{Template: "fanout", Parameters: json.RawMessage(`{"n": ` + given + `}`)}, files(nil))
		if err != nil {
			t.Fatalf("n=%s: %v", given, err)
		}
		if got := string(inst.Parameters); !strings.Contains(got, `"n":`+want+`}`) && !strings.Contains(got, `"n":`+want+`,`) {
			t.Errorf("n=%s: parameters %s, want n %s", given, got, want)
		}
	}
}

func TestSchemaIntegers(t *testing.T) {
	s, err := CompileSchema([]byte(`{"type": "object", "properties": {
		"i": {"type": "integer"}, "x": {"type": "number"}, "ix": {"type": ["integer", "null"]},
		"list": {"type": "array", "items": {"type": "integer"}},
		"map": {"type": "object", "additionalProperties": {"type": "integer"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := decodeJSON([]byte(`{"i": 1e2, "x": 2.0, "ix": -0.0e1, "list": [3.0, 4], "map": {"a": 5E0}, "other": 6.0}`))
	if fs := s.Validate(v, "p"); len(fs) > 0 {
		t.Fatal(fs)
	}
	out, _ := json.Marshal(s.Integers(v))
	want := `{"i":100,"ix":0,"list":[3,4],"map":{"a":5},"other":6.0,"x":2.0}`
	if string(out) != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
	// From 2^53 a float64 no longer tells integers apart, nor from
	// 2^52 halves: such values stay as given, and none grows (1e308 would
	// be 309 digits: parameters past their size limit, found by review).
	i, _ := CompileSchema([]byte(`{"type": "integer"}`))
	for _, given := range []string{"1.5e20", "1e308", "9007199254740993.0", "4503599627370496.5"} {
		if got := i.Integers(json.Number(given)); got != json.Number(given) {
			t.Errorf("%s became %v", given, got)
		}
	}
	if got := i.Integers(json.Number("9007199254740991.0")); got != json.Number("9007199254740991") {
		t.Errorf("2^53-1 written as %v", got)
	}
}

// An unknown template, version or environment is answered with what
// there is: a near name, the versions, the environments (the eighth
// probe's "no template "hello" (version 5; 0 is the newest)").
func TestNotFoundSaysWhatThereIs(t *testing.T) {
	c := load(t)
	for _, tc := range []struct {
		req  Request
		want string
	}{
		{Request{Template: "helo"}, `no template "helo" (did you mean "hello"?)`},
		{Request{Template: "Wordcont"}, `no template "Wordcont" (did you mean "wordcount"?)`},
		{Request{Template: "xyz"}, `no template "xyz"`},
		{Request{Template: "hello", Version: 5}, `template "hello" has no version 5; its versions: 1`},
		{Request{Template: "hello", Environment: "nowhere"}, `no environment "nowhere"; the environments: local`},
	} {
		_, err := c.Instantiate(tc.req, files(nil))
		verr, ok := err.(*ValidationError)
		if !ok || len(verr.Fields) == 0 {
			t.Fatalf("%+v: %v", tc.req, err)
		}
		if got := verr.Fields[0].Message; got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.req, got, tc.want)
		}
	}
	if _, err := c.Template("nope", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown template: %v, want ErrNotFound", err)
	}
}
