package tes

import (
	"slices"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/api"
)

func TestStateOf(t *testing.T) {
	exit := func(n int) *int { return &n }
	for _, c := range []struct {
		job  api.Job
		want State
	}{
		{api.Job{State: api.StatePending}, Queued},
		{api.Job{State: api.StateQueued}, Queued},
		{api.Job{State: api.StateHeld}, Paused},
		{api.Job{State: api.StateSuspended}, Paused},
		{api.Job{State: api.StateStarting}, Initializing},
		{api.Job{State: api.StateRunning}, Running},
		{api.Job{State: api.StateFinishing}, Running},
		{api.Job{State: api.StateSucceeded}, Complete},
		{api.Job{State: api.StateCanceled}, Canceled},
		{api.Job{State: api.StateFailed, ExitCode: exit(2)}, ExecutorError},
		{api.Job{State: api.StateFailed, Error: "the container runtime failed: no image"}, SystemError},
		{api.Job{State: api.StateFailed, ExitCode: exit(0), Error: "an input could not be fetched"}, SystemError},
		{api.Job{State: api.StateFailed, Reason: "the job ended in the engine: PREEMPTED"}, Preempted},
		{api.Job{State: "new"}, Unknown},
	} {
		if got := StateOf(&c.job); got != c.want {
			t.Errorf("StateOf(%+v) = %s, want %s", c.job, got, c.want)
		}
	}
}

func TestViews(t *testing.T) {
	full := Task{ID: "t1", State: Complete, Name: "n", Inputs: []Input{{Path: "/in", Content: "secret-ish"}},
		Executors: []Executor{{Image: "i", Command: []string{"c"}}},
		Logs:      []TaskLog{{Logs: []ExecutorLog{{Stdout: "out", Stderr: "err", ExitCode: 1}}, SystemLogs: []string{"sys"}}}}
	if m := Shown(full, Minimal); m.Name != "" || len(m.Logs) != 0 || m.ID != "t1" || m.State != Complete {
		t.Errorf("MINIMAL: %+v", m)
	}
	basic := Shown(full, Basic)
	if basic.Inputs[0].Content != "" || basic.Logs[0].Logs[0].Stdout != "" || basic.Logs[0].SystemLogs != nil || basic.Logs[0].Logs[0].ExitCode != 1 || basic.Name != "n" {
		t.Errorf("BASIC: %+v", basic)
	}
	if full.Inputs[0].Content == "" || full.Logs[0].Logs[0].Stdout == "" {
		t.Error("BASIC changed the task it was given")
	}
	if f := Shown(full, Full); f.Logs[0].Logs[0].Stderr != "err" || f.Inputs[0].Content == "" {
		t.Errorf("FULL: %+v", f)
	}
	for in, want := range map[string]View{"": Minimal, "MINIMAL": Minimal, "BASIC": Basic, "FULL": Full} {
		if v, ok := ParseView(in); !ok || v != want {
			t.Errorf("ParseView(%q) = %s, %v", in, v, ok)
		}
	}
	if _, ok := ParseView("basic"); ok {
		t.Error(`ParseView("basic") taken`)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		url   string
		input bool
		want  Ref
	}{
		{"s3://hpcgate/data/x.txt", true, Ref{"file", "data/x.txt"}},
		{"data/x.txt", false, Ref{"file", "data/x.txt"}},
		{"s3://hpcgate/out/", false, Ref{}}, // not clean
		{"job:abc/outputs/r.json", true, Ref{"job", "job:abc/outputs/r.json"}},
		{"https://example.org/a.txt", true, Ref{"https", "https://example.org/a.txt"}},
	} {
		got, err := ParseURL(c.url, "hpcgate", c.input)
		if c.want == (Ref{}) {
			if err == nil {
				t.Errorf("ParseURL(%q) = %+v, want an error", c.url, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", c.url, got, err, c.want)
		}
	}
	for _, bad := range []string{"file:///etc/passwd", "s3://other/x", "gs://hpcgate/x", "/abs", "../up", "a/../../b", "job:abc", "https://:443/x", "http://example.org/x", ""} {
		if r, err := ParseURL(bad, "hpcgate", true); err == nil {
			t.Errorf("ParseURL(%q) = %+v, want an error", bad, r)
		}
	}
	for _, out := range []string{"job:abc/outputs/x", "https://example.org/x"} {
		if _, err := ParseURL(out, "hpcgate", false); err == nil {
			t.Errorf("an output to %q was taken", out)
		}
	}
}

func TestCheck(t *testing.T) {
	ok := Task{Executors: []Executor{{Image: "localhost/x", Command: []string{"md5sum", "/data/in"}, Stdout: "/data/out.txt"}},
		Inputs:  []Input{{Path: "/data/in", URL: "s3://hpcgate/in.txt"}, {Path: "/data/note", Content: "hello"}},
		Outputs: []Output{{Path: "/data/out.txt", URL: "results/out.txt"}, {Path: "/data/*.log", PathPrefix: "/data/", URL: "s3://hpcgate/logs"}}}
	if errs := Check(&ok, "hpcgate"); len(errs) != 0 {
		t.Fatalf("a good task: %v", errs)
	}
	bad := Task{Executors: []Executor{{Command: []string{"x"}, Workdir: "rel", Env: map[string]string{"A=B": "v"}}, {Image: "i"},
		{Image: "--privileged", Command: []string{"x"}, Env: map[string]string{"MY-VAR": "v"}}},
		Inputs: []Input{{Path: "in", URL: "file:///etc/passwd"}, {Path: "/x"}, {Path: "/y", URL: "a", Content: "b"}, {Path: "/z", Content: strings.Repeat("x", MaxContent+1)},
			{Path: "/d", Content: "x", Type: Directory}},
		Outputs: []Output{{Path: "/o/*.txt", URL: "out"}, {Path: "/p", URL: "https://example.org/p"}, {Path: "/q/*", PathPrefix: "/r/", URL: "q"},
			{Path: "/out/[", PathPrefix: "/out/", URL: "g"}, {Path: "/z/y", URL: "zy"}}}
	var fields []string
	for _, e := range Check(&bad, "hpcgate") {
		fields = append(fields, e.Field)
	}
	for _, want := range []string{"executors[0].image", "executors[0].workdir", "executors[0].env", "executors[1].command", "executors[2].image", "executors[2].env",
		"inputs[0].path", "inputs[0].url", "inputs[1].url", "inputs[2].content", "inputs[3].content",
		"outputs[0].path_prefix", "outputs[1].url", "outputs[2].path_prefix",
		// found by the seventh probe: content as a DIRECTORY (delivered as
		// a file), a glob that is no pattern (the task delivered nothing
		// and was COMPLETE), an output below a file input (failed when it
		// ran, saying "not a directory (a symbolic link?)")
		"inputs[4].type", "outputs[3].path", "outputs[4].path"} {
		if !slices.Contains(fields, want) {
			t.Errorf("no error on %s (got %v)", want, fields)
		}
	}
	if errs := Check(&Task{}, "hpcgate"); len(errs) != 1 || errs[0].Field != "executors" {
		t.Errorf("no executors: %v", errs)
	}
}

func TestServiceInfo(t *testing.T) {
	si := NewServiceInfo("org.example.hpc", "dev", "Example HPC", "https://hpc.example.org", "hpcgate")
	if si.Type != (ServiceType{"org.ga4gh", "tes", "1.1.0"}) || !slices.Contains(si.Storage, "s3://hpcgate") ||
		!slices.Equal(si.TesResourcesBackendParameters, BackendParameters) {
		t.Fatalf("service-info %+v", si)
	}
	// what it lists as storage, ParseURL takes
	if _, err := ParseURL(si.Storage[0]+"/data/x", "hpcgate", true); err != nil {
		t.Errorf("the listed storage is refused: %v", err)
	}
}

// Inputs that share a place are named once each, whatever their order
// and whatever sorts between a path and its parent ("/in/a-b" sorts
// before "/in/a/b" as text); a directory input may hold others.
func TestInputOverlaps(t *testing.T) {
	for _, c := range []struct {
		paths []string // a trailing "/" makes it a DIRECTORY input
		want  []string
	}{
		{[]string{"/in/a", "/in/a-b", "/in/a/b"}, []string{"inputs[2].path"}},
		{[]string{"/in/a/b", "/in/a"}, []string{"inputs[0].path"}},
		{[]string{"/in/a", "/in/b", "/in/a"}, []string{"inputs[2].path"}},
		{[]string{"/in/d/", "/in/d/x", "/in/d/y/z"}, nil},
		{[]string{"/in/d/", "/in/d/"}, []string{"inputs[1].path"}},
		{[]string{"/x", "/x/y", "/x/y/z", "/x0"}, []string{"inputs[1].path", "inputs[2].path"}},
	} {
		var in []Input
		for _, p := range c.paths {
			if d, ok := strings.CutSuffix(p, "/"); ok {
				in = append(in, Input{Path: d, Type: Directory})
			} else {
				in = append(in, Input{Path: p})
			}
		}
		var got []string
		overlaps(in, func(field, format string, args ...any) { got = append(got, field) })
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("%q: %q, want %q", c.paths, got, c.want)
		}
	}
}
