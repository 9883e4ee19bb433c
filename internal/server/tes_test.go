package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/tes"
	"github.com/hpcgate/hpcgate/internal/tes/tesspec"
)

const tesBase = "/ga4gh/tes/v1"

// tesHarness is a server with environments for tasks: "pods" runs podman
// with localhost/ images (the default for tasks), "other" only
// registry.example/ images, "bare" no container runtime, "open" podman
// without an allow-list.
func tesHarness(t *testing.T) *harness {
	return newHarness(t, &harnessOptions{envs: tesEnvs(), opts: &Options{TES: TESOptions{Environment: "pods"}}})
}

func tesEnvs() []catalog.Environment {
	return []catalog.Environment{
		{Name: "pods", Scheduler: "local", ContainerRuntime: "podman", Images: []string{"localhost/"}, Max: catalog.Limits{Nodes: 1, CoresPerNode: 4, MemoryMB: 8192, WalltimeS: 3600}},
		{Name: "other", Scheduler: "local", ContainerRuntime: "podman", Images: []string{"registry.example/"}},
		{Name: "bare", Scheduler: "local"},
		{Name: "open", Scheduler: "local", ContainerRuntime: "podman"},
		{Name: "local", Scheduler: "local"}, // the built-in templates name it
	}
}

// conform fails the test unless the body is the TES schema's, in view.
func conform(t *testing.T, view, schema string, r *response) {
	t.Helper()
	if err := tesspec.ValidateView(view, schema, r.body); err != nil {
		t.Fatalf("%s (%s) does not conform: %v\n%s", schema, view, err, r.body)
	}
}

func simpleTask(name string) map[string]any {
	return map[string]any{
		"name":      name,
		"executors": []any{map[string]any{"image": "localhost/tools:1", "command": []string{"echo", "hi"}}},
	}
}

func createTask(t *testing.T, h *harness, tok string, task any) string {
	t.Helper()
	r := h.do("POST", tesBase+"/tasks", tok, task).want(t, http.StatusOK)
	conform(t, "FULL", "tesCreateTaskResponse", r)
	var out tes.CreateTaskResponse
	r.decode(t, &out)
	return out.ID
}

func TestTESServiceInfo(t *testing.T) {
	h := tesHarness(t)
	for _, p := range []string{tesBase + "/service-info", "/v1/service-info", "/v1/tasks/service-info"} {
		r := h.do("GET", p, "", nil).want(t, http.StatusOK)
		conform(t, "FULL", "tesServiceInfo", r)
		var si tes.ServiceInfo
		r.decode(t, &si)
		if si.Type.Artifact != "tes" || si.Type.Version != "1.1.0" || si.Storage[0] != "s3://hpcgate" {
			t.Errorf("%s: %+v", p, si)
		}
	}
}

func TestTESCreateNeedsTheTasksScope(t *testing.T) {
	h := tesHarness(t)
	user := h.token("alice", time.Time{}, api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite)
	r := h.do("POST", tesBase+"/tasks", user, simpleTask("x")).want(t, http.StatusForbidden)
	if !strings.Contains(r.problem.Detail, "tasks") {
		t.Errorf("refusal %q does not name the scope", r.problem.Detail)
	}
	if jobs, _, _ := h.store.ListJobs(context.Background(), storeFilter("alice")); len(jobs) != 0 {
		t.Errorf("a refused task made %d jobs", len(jobs))
	}
	// a user cannot give themself the scope
	h.do("POST", "/v1/tokens", user, map[string]any{"scopes": []string{"tasks"}}).want(t, http.StatusForbidden)
	// an admin can
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	var tok api.Token
	h.do("POST", "/v1/tokens", admin, map[string]any{"user": "alice", "scopes": []string{"tasks", "jobs:read"}}).want(t, http.StatusCreated).decode(t, &tok)
	createTask(t, h, tok.Token, simpleTask("x"))
}

func TestTESInvalidTasks(t *testing.T) {
	h := tesHarness(t)
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeFilesRead, api.ScopeFilesWrite)
	h.put("alice", "data/in.txt", "hello")
	h.put("bob", "secret.txt", "bob's")
	ex := func(image string) []any {
		return []any{map[string]any{"image": image, "command": []string{"true"}}}
	}
	tests := []struct {
		name  string
		task  map[string]any
		field string
	}{
		{"no executors", map[string]any{"executors": []any{}}, "executors"},
		{"long name", map[string]any{"executors": ex("localhost/a"), "name": strings.Repeat("n", api.MaxJobName+1)}, "name"},
		{"no image", map[string]any{"executors": []any{map[string]any{"command": []string{"true"}}}}, "executors[0].image"},
		{"relative path", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"url": "data/in.txt", "path": "in.txt"}}}, "inputs[0].path"},
		{"file url", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"url": "file:///etc/passwd", "path": "/in"}}}, "inputs[0].url"},
		{"other bucket", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"url": "s3://elsewhere/data/in.txt", "path": "/in"}}}, "inputs[0].url"},
		{"traversal", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"url": "../bob/files/secret.txt", "path": "/in"}}}, "inputs[0].url"},
		{"missing file", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"url": "nope.txt", "path": "/in"}}}, "inputs[0].url"},
		{"another user's file", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"url": "secret.txt", "path": "/in"}}}, "inputs[0].url"},
		{"over the container's own", map[string]any{"executors": ex("localhost/a"), "volumes": []string{"/proc/x"}}, "volumes[0]"},
		{"output to a job", map[string]any{"executors": ex("localhost/a"), "outputs": []any{map[string]any{"url": "job:x/outputs/y", "path": "/out"}}}, "outputs[0].url"},
		{"image not allowed", map[string]any{"executors": ex("docker.io/library/alpine")}, "executors[0].image"},
		{"no such environment", map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"backend_parameters": map[string]string{"environment": "mars"}}}, "resources.backend_parameters.environment"},
		{"no runtime", map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"backend_parameters": map[string]string{"environment": "bare"}}}, "resources.backend_parameters.environment"},
		{"no allow-list", map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"backend_parameters": map[string]string{"environment": "open"}}}, "resources.backend_parameters.environment"},
		{"too many cores", map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"cpu_cores": 64}}, "resources.cpu_cores"},
		{"too much memory", map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"ram_gb": 64}}, "resources.ram_gb"},
		{"strict parameters", map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"backend_parameters": map[string]string{"gpu": "1"}, "backend_parameters_strict": true}}, "resources.backend_parameters.gpu"},
		{"zones elsewhere", map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"zones": []string{"mars"}}}, "resources.zones"},
		{"bad tag", map[string]any{"executors": ex("localhost/a"), "tags": map[string]string{"a b": "c"}}, "tags.a b"},
		{"env not strings", map[string]any{"executors": []any{map[string]any{"image": "localhost/a", "command": []string{"x"}}, map[string]any{"image": "localhost/a", "command": []string{"x"}, "env": map[string]any{"A": 1}}}}, "executors[1].env.A"},
		{"two inputs at one path", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"content": "1", "path": "/in/a"}, map[string]any{"content": "2", "path": "/in/a"}}}, "inputs[1].path"},
		{"an input below a file input", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"content": "1", "path": "/in/a"}, map[string]any{"content": "2", "path": "/in/a/b"}}}, "inputs[1].path"},
		{"a file input above another", map[string]any{"executors": ex("localhost/a"), "inputs": []any{map[string]any{"content": "1", "path": "/in/a/b"}, map[string]any{"content": "2", "path": "/in/a"}}}, "inputs[0].path"},
		{"NUL in the command", map[string]any{"executors": []any{map[string]any{"image": "localhost/a", "command": []string{"echo", "a\x00b"}}}}, "executors[0].command[1]"},
		{"command not strings", map[string]any{"executors": []any{map[string]any{"image": "localhost/a", "command": []any{"x", 2}}}}, "executors[0].command[1]"},
		{"glob without prefix", map[string]any{"executors": ex("localhost/a"), "outputs": []any{map[string]any{"url": "out", "path": "/data/*.txt"}}}, "outputs[0].path_prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do("POST", tesBase+"/tasks", tok, tt.task).want(t, http.StatusBadRequest)
			if r.field(tt.field) == "" {
				t.Errorf("no error for %s: %s", tt.field, r.body)
			}
		})
	}
	if jobs, _, _ := h.store.ListJobs(context.Background(), storeFilter("alice")); len(jobs) != 0 {
		t.Errorf("invalid tasks made %d jobs", len(jobs))
	}
	// a lax parameter is ignored without backend_parameters_strict
	createTask(t, h, tok, map[string]any{"executors": ex("localhost/a"), "resources": map[string]any{"backend_parameters": map[string]string{"gpu": "1"}}})
	// TES members of other versions are ignored, as clients send them
	createTask(t, h, tok, map[string]any{"executors": ex("localhost/a"), "state": "UNKNOWN", "some_future_field": 1})
}

func TestTESScopesForFiles(t *testing.T) {
	h := tesHarness(t)
	h.put("alice", "in.txt", "x")
	tok := h.token("alice", time.Time{}, api.ScopeTasks)
	task := simpleTask("x")
	task["inputs"] = []any{map[string]any{"url": "in.txt", "path": "/in.txt"}}
	h.do("POST", tesBase+"/tasks", tok, task).want(t, http.StatusForbidden)
	task = simpleTask("x")
	task["outputs"] = []any{map[string]any{"url": "out.txt", "path": "/out/out.txt"}}
	h.do("POST", tesBase+"/tasks", tok, task).want(t, http.StatusForbidden)
	// content and https:// need no files scope
	task = simpleTask("x")
	task["inputs"] = []any{map[string]any{"content": "abc", "path": "/in.txt"}, map[string]any{"url": "https://example.org/x", "path": "/x"}}
	createTask(t, h, tok, task)
}

// A task becomes a job: its inputs, environment and resources; the
// native API shows it; TES shows it in every view, conforming.
func TestTESTaskIsAJob(t *testing.T) {
	h := tesHarness(t)
	ctx := context.Background()
	h.put("alice", "data/in.txt", "hello")
	h.put("alice", "refs/a.txt", "A")
	h.put("alice", "refs/sub/b.txt", "BB")
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite)
	task := map[string]any{
		"name": "align-1", "description": "aligns", "tags": map[string]string{"run": "r1", "sample": "s1"},
		"inputs": []any{
			map[string]any{"url": "s3://hpcgate/data/in.txt", "path": "/data/in.txt"},
			map[string]any{"content": "the content", "path": "/data/c.txt"},
			map[string]any{"url": "refs", "path": "/refs", "type": "DIRECTORY"},
		},
		"outputs": []any{
			map[string]any{"url": "s3://hpcgate/results/out.txt", "path": "/out/out.txt"},
			map[string]any{"url": "results/all", "path": "/out/all", "type": "DIRECTORY"},
		},
		"volumes":   []string{"/scratch"},
		"resources": map[string]any{"cpu_cores": 2, "ram_gb": 1.5, "backend_parameters": map[string]string{"walltime_s": "600"}},
		"executors": []any{
			map[string]any{"image": "localhost/tools:1", "command": []string{"sh", "-c", "cat /data/in.txt"}, "workdir": "/data", "env": map[string]string{"A": "1"}, "stdout": "/out/out.txt"},
			map[string]any{"image": "localhost/other:2", "command": []string{"false"}, "ignore_error": true},
		},
	}
	id := createTask(t, h, tok, task)
	j, err := h.store.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if j.Template != catalog.TaskTemplate || j.Environment != "pods" || j.Owner != "alice" || j.Name != "align-1" ||
		j.Resources != (job.Resources{Nodes: 1, CoresPerNode: 2, MemoryMB: 1536, WalltimeS: 600}) || j.Labels["run"] != "r1" {
		t.Errorf("job %+v", j)
	}
	want := map[string]string{"in0": "data/in.txt", "in2.0": "refs/a.txt", "in2.1": "refs/sub/b.txt"}
	if fmt.Sprint(j.Inputs) != fmt.Sprint(want) || j.InputSizes["in2.1"] != 2 {
		t.Errorf("inputs %v sizes %v, want %v", j.Inputs, j.InputSizes, want)
	}
	// the native API shows it
	var aj api.Job
	h.do("GET", "/v1/jobs/"+id, tok, nil).want(t, http.StatusOK).decode(t, &aj)
	if aj.Template != "TES" || aj.State != api.StatePending {
		t.Errorf("native job %+v", aj)
	}
	// every view conforms; MINIMAL is the default
	for _, v := range []string{"", "MINIMAL", "BASIC", "FULL"} {
		r := h.do("GET", tesBase+"/tasks/"+id+"?view="+v, tok, nil).want(t, http.StatusOK)
		view := v
		if view == "" {
			view = "MINIMAL"
		}
		conform(t, view, "tesTask", r)
		var got tes.Task
		r.decode(t, &got)
		if got.ID != id || got.State != tes.Queued {
			t.Errorf("%s: %+v", view, got)
		}
		switch view {
		case "MINIMAL":
			if got.Name != "" || len(got.Executors) != 0 {
				t.Errorf("MINIMAL shows more: %s", r.body)
			}
		case "BASIC":
			if got.Inputs[1].Content != "" || len(got.Executors) != 2 || got.Name != "align-1" {
				t.Errorf("BASIC: %s", r.body)
			}
		case "FULL":
			if got.Inputs[1].Content != "the content" || got.Executors[0].Env["A"] != "1" || !got.Executors[1].IgnoreError ||
				got.Resources.RAMGB != 1.5 || got.Tags["sample"] != "s1" || got.Volumes[0] != "/scratch" || got.CreationTime == nil {
				t.Errorf("FULL: %s", r.body)
			}
		}
	}
	h.do("GET", tesBase+"/tasks/"+id+"?view=ALL", tok, nil).want(t, http.StatusBadRequest)
	// another user's task is not found, in TES as natively
	bob := h.token("bob", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeJobsWrite)
	h.do("GET", tesBase+"/tasks/"+id, bob, nil).want(t, http.StatusNotFound)
	h.do("POST", tesBase+"/tasks/"+id+":cancel", bob, nil).want(t, http.StatusNotFound)
	if j, _ := h.store.GetJob(ctx, id); j.State != job.Pending {
		t.Errorf("bob's cancel changed the task: %s", j.State)
	}
}

// The agent's side: the spec of a task, the executors' reports, the
// deliveries of outputs; then the task's logs in the FULL view.
func TestTESAgentSide(t *testing.T) {
	h := tesHarness(t)
	ctx := context.Background()
	h.put("alice", "data/in.txt", "hello")
	h.put("alice", "refs/a.txt", "A")
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeFilesRead, api.ScopeFilesWrite)
	id := createTask(t, h, tok, map[string]any{
		"inputs": []any{
			map[string]any{"url": "data/in.txt", "path": "/data/in.txt"},
			map[string]any{"content": "c", "path": "/data/c.txt"},
			map[string]any{"url": "refs", "path": "/refs", "type": "DIRECTORY"},
		},
		"outputs": []any{
			map[string]any{"url": "results/out.txt", "path": "/out/out.txt"},
			map[string]any{"url": "results/many", "path": "/out/*.csv", "path_prefix": "/out/"},
		},
		"executors": []any{
			map[string]any{"image": "localhost/a", "command": []string{"a"}},
			map[string]any{"image": "localhost/b", "command": []string{"b"}},
		},
	})
	if _, err := h.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(job.Starting, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	jt := h.tokenForJob("alice", id)
	var spec api.Spec
	h.do("GET", "/v1/jobs/"+id+"/spec", jt, nil).want(t, http.StatusOK).decode(t, &spec)
	if spec.Task == nil || spec.Task.Runtime != "podman" || len(spec.Task.Executors) != 2 || spec.Image != "" || len(spec.Command) != 0 {
		t.Fatalf("spec %+v", spec)
	}
	paths := map[string]string{}
	for _, in := range spec.Inputs {
		paths[in.Name] = in.Path
	}
	if fmt.Sprint(paths) != fmt.Sprint(map[string]string{"in0": "root/data/in.txt", "in2.0": "root/refs/a.txt"}) {
		t.Errorf("stored inputs at %v", paths)
	}
	if len(spec.Task.Contents) != 1 || spec.Task.Contents[0].Path != "/data/c.txt" || len(spec.Task.Outputs) != 2 {
		t.Errorf("task spec %+v", spec.Task)
	}

	// executor 0 ran and wrote 6 bytes of stdout; executor 1 failed
	if r := h.do("POST", "/v1/jobs/"+id+"/logs/stdout?offset=0", jt, "first\nsecond\n"); r.status != http.StatusOK {
		t.Fatalf("log: %d %s", r.status, r.body)
	}
	zero, one := 0, 1
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	t1 := t0.Add(time.Second)
	h.do("POST", "/v1/jobs/"+id+"/state", jt, api.StateReport{State: "running", Step: &api.Step{Index: 0, StartedAt: t0, EndedAt: &t1, ExitCode: &zero, Stdout: [2]int64{0, 6}}}).want(t, http.StatusOK)
	h.do("POST", "/v1/jobs/"+id+"/state", jt, api.StateReport{State: "running", Step: &api.Step{Index: 1, StartedAt: t1, EndedAt: &t1, ExitCode: &one, Stdout: [2]int64{6, 13}}}).want(t, http.StatusOK)
	h.do("POST", "/v1/jobs/"+id+"/state", jt, api.StateReport{State: "running", Step: &api.Step{Index: 100}}).want(t, http.StatusUnprocessableEntity)

	// deliveries: only where an output goes
	h.do("PUT", "/v1/jobs/"+id+"/deliveries/results/out.txt?from=/out/out.txt", jt, "result").want(t, http.StatusCreated)
	h.do("PUT", "/v1/jobs/"+id+"/deliveries/results/many/a.csv?from=/out/a.csv", jt, "1,2").want(t, http.StatusCreated)
	for _, bad := range []string{
		"results/elsewhere.txt?from=/out/out.txt", // another destination
		"results/out.txt?from=/etc/passwd",        // another source
		"results/many/a.txt?from=/out/a.txt",      // not the glob
		"data/in.txt?from=/data/in.txt",           // an input
	} {
		h.do("PUT", "/v1/jobs/"+id+"/deliveries/"+bad, jt, "x").want(t, http.StatusForbidden)
	}
	r := h.do("GET", "/v1/files/results/out.txt", tok, nil).want(t, http.StatusOK)
	if string(r.body) != "result" {
		t.Errorf("delivered %q", r.body)
	}
	if r := h.do("GET", "/v1/files/data/in.txt", tok, nil); string(r.body) != "hello" {
		t.Errorf("a refused delivery changed an input: %q", r.body)
	}
	// another user's job token cannot deliver to it
	_, other := h.jobToken("bob", nil)
	h.do("PUT", "/v1/jobs/"+id+"/deliveries/results/out.txt?from=/out/out.txt", other, "x").want(t, http.StatusNotFound)

	h.do("POST", "/v1/jobs/"+id+"/state", jt, api.StateReport{State: "succeeded", ExitCode: &zero}).want(t, http.StatusOK)
	r = h.do("GET", tesBase+"/tasks/"+id+"?view=FULL", tok, nil).want(t, http.StatusOK)
	conform(t, "FULL", "tesTask", r)
	var got tes.Task
	r.decode(t, &got)
	if got.State != tes.Complete || len(got.Logs) != 1 || len(got.Logs[0].Logs) != 2 {
		t.Fatalf("task %s", r.body)
	}
	l := got.Logs[0]
	if l.Logs[0].Stdout != "first\n" || l.Logs[1].Stdout != "second\n" || l.Logs[1].ExitCode != 1 || l.Logs[0].StartTime == "" || l.EndTime == "" {
		t.Errorf("executor logs %+v", l.Logs)
	}
	if len(l.Outputs) != 2 || l.Outputs[0].URL != "s3://hpcgate/results/out.txt" || l.Outputs[0].Path != "/out/out.txt" || l.Outputs[0].SizeBytes != "6" {
		t.Errorf("output logs %+v", l.Outputs)
	}
	r = h.do("GET", tesBase+"/tasks/"+id+"?view=BASIC", tok, nil).want(t, http.StatusOK)
	conform(t, "BASIC", "tesTask", r)
	if strings.Contains(string(r.body), "first") {
		t.Errorf("BASIC shows stdout: %s", r.body)
	}
}

// A task's delivered files are records of their own: each delivery used
// to rewrite the job's row with the whole list, so the bytes written grew
// with the square of the files (20 MB a rewrite at the limit). The row no
// longer holds them; the view shows them in order, with records a row of
// the release before still holds; the limit holds before a file is
// stored; and a delivery that fails leaves the file's record as it was.
func TestTESDeliveriesAreRecordsOfTheirOwn(t *testing.T) {
	defer func(n int) { maxDelivered = n }(maxDelivered)
	maxDelivered = 4
	h := newHarness(t, &harnessOptions{envs: tesEnvs(), opts: &Options{TES: TESOptions{Environment: "pods"}, MaxUploadBytes: 8}})
	ctx := context.Background()
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeFilesRead, api.ScopeFilesWrite)
	id := createTask(t, h, tok, map[string]any{
		"outputs":   []any{map[string]any{"url": "res", "path": "/out/*", "path_prefix": "/out/"}},
		"executors": []any{map[string]any{"image": "localhost/a", "command": []string{"a"}}},
	})
	// a row of the release before holds two records
	if _, err := h.store.UpdateJob(ctx, id, func(j *job.Job) error {
		j.Delivered = []job.Delivered{{Path: "/out/old", File: "res/old", Size: 3}, {Path: "/out/older", File: "res/older", Size: 4}}
		return j.SetState(job.Starting, "test", time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	jt := h.tokenForJob("alice", id)
	deliver := func(name, body string) *response {
		return h.do("PUT", "/v1/jobs/"+id+"/deliveries/res/"+name+"?from=/out/"+name, jt, body)
	}
	for _, f := range []string{"c", "a", "b", "older"} {
		deliver(f, "x").want(t, http.StatusCreated)
	}
	// the limit: refused, and nothing stored
	deliver("d", "x").want(t, http.StatusConflict)
	h.do("GET", "/v1/files/res/d", tok, nil).want(t, http.StatusNotFound)
	// a file delivered again is no new record, even at the limit
	deliver("a", "again").want(t, http.StatusCreated)
	// one whose upload fails leaves its record as it was
	deliver("b", "too large").want(t, http.StatusRequestEntityTooLarge)

	j, err := h.store.GetJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(j.Delivered) != 2 {
		t.Errorf("the job's row holds %d delivered files, want only the old two", len(j.Delivered))
	}
	zero := 0
	h.do("POST", "/v1/jobs/"+id+"/state", jt, api.StateReport{State: "succeeded", ExitCode: &zero}).want(t, http.StatusOK)
	var got tes.Task
	h.do("GET", tesBase+"/tasks/"+id+"?view=BASIC", tok, nil).want(t, http.StatusOK).decode(t, &got)
	var shown []string
	for _, o := range got.Logs[0].Outputs {
		shown = append(shown, o.Path+"="+o.SizeBytes)
	}
	if want := []string{"/out/old=3", "/out/c=1", "/out/a=5", "/out/b=1", "/out/older=1"}; !slices.Equal(shown, want) {
		t.Errorf("outputs shown %q, want %q", shown, want)
	}
}

func TestTESListAndCancel(t *testing.T) {
	h := tesHarness(t)
	ctx := context.Background()
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeJobsWrite)
	var ids []string
	for i := range 5 {
		task := simpleTask(fmt.Sprintf("run-%d", i))
		task["tags"] = map[string]string{"batch": fmt.Sprint(i % 2)}
		ids = append(ids, createTask(t, h, tok, task))
	}
	other := createTask(t, h, tok, simpleTask("other"))
	bob := h.token("bob", time.Time{}, api.ScopeTasks, api.ScopeJobsRead)
	createTask(t, h, bob, simpleTask("run-bob"))
	// a host template's job is not a task
	hostJob := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}}).want(t, http.StatusCreated)
	var hj api.Job
	hostJob.decode(t, &hj)
	h.do("GET", tesBase+"/tasks/"+hj.ID, tok, nil).want(t, http.StatusNotFound)

	list := func(query string) (names []string, next string) {
		t.Helper()
		r := h.do("GET", tesBase+"/tasks?"+query, tok, nil).want(t, http.StatusOK)
		conform(t, "FULL", "tesListTasksResponse", r)
		var out tes.ListTasksResponse
		r.decode(t, &out)
		for _, tk := range out.Tasks {
			names = append(names, tk.Name+":"+string(tk.State))
		}
		return names, out.NextPageToken
	}
	if got, _ := list("view=BASIC"); len(got) != 6 || got[0] != "other:QUEUED" {
		t.Errorf("list %v", got)
	}
	if got, _ := list("view=BASIC&name_prefix=run-"); len(got) != 5 {
		t.Errorf("name_prefix: %v", got)
	}
	if got, _ := list("view=BASIC&tag_key=batch&tag_value=1"); fmt.Sprint(got) != "[run-3:QUEUED run-1:QUEUED]" {
		t.Errorf("tag filter: %v", got)
	}
	if got, _ := list("view=BASIC&tag_key=batch"); len(got) != 5 {
		t.Errorf("tag key only: %v", got)
	}
	// paging: two at a time, nothing lost or repeated
	var all []string
	token := ""
	for range 10 {
		got, next := list("view=BASIC&page_size=2&page_token=" + token)
		if len(got) > 2 {
			t.Fatalf("page of %d", len(got))
		}
		all = append(all, got...)
		if token = next; token == "" {
			break
		}
	}
	if len(all) != 6 {
		t.Errorf("paged %v", all)
	}
	// MINIMAL lists ids and states only
	r := h.do("GET", tesBase+"/tasks", tok, nil).want(t, http.StatusOK)
	conform(t, "MINIMAL", "tesListTasksResponse", r)
	h.do("GET", tesBase+"/tasks?state=DONE", tok, nil).want(t, http.StatusBadRequest)
	h.do("GET", tesBase+"/tasks?page_size=0", tok, nil).want(t, http.StatusBadRequest)

	// cancel: 200 {} and CANCELED; again: still 200
	for range 2 {
		r := h.do("POST", tesBase+"/tasks/"+ids[0]+":cancel", tok, nil).want(t, http.StatusOK)
		conform(t, "FULL", "tesCancelTaskResponse", r)
	}
	if j, _ := h.store.GetJob(ctx, ids[0]); j.State != job.Canceled {
		t.Errorf("canceled task is %s", j.State)
	}
	// a failed task: EXECUTOR_ERROR with an exit code, SYSTEM_ERROR without
	code := 3
	h.store.UpdateJob(ctx, ids[1], func(j *job.Job) error { j.ExitCode = &code; return j.SetState(job.Failed, "x", time.Now()) })
	h.store.UpdateJob(ctx, ids[2], func(j *job.Job) error { return j.SetState(job.Failed, "x", time.Now()) })
	if got, _ := list("view=BASIC&state=CANCELED"); fmt.Sprint(got) != "[run-0:CANCELED]" {
		t.Errorf("state=CANCELED: %v", got)
	}
	if got, _ := list("view=BASIC&state=EXECUTOR_ERROR"); fmt.Sprint(got) != "[run-1:EXECUTOR_ERROR]" {
		t.Errorf("state=EXECUTOR_ERROR: %v", got)
	}
	if got, _ := list("view=BASIC&state=SYSTEM_ERROR"); fmt.Sprint(got) != "[run-2:SYSTEM_ERROR]" {
		t.Errorf("state=SYSTEM_ERROR: %v", got)
	}
	// the older paths, and a cancel without its suffix is no route
	r = h.do("GET", "/v1/tasks/"+other+"?view=BASIC", tok, nil).want(t, http.StatusOK)
	conform(t, "BASIC", "tesTask", r)
	if !strings.Contains(string(r.body), `"other"`) {
		t.Errorf("/v1/tasks/{id}: %s", r.body)
	}
	conform(t, "MINIMAL", "tesListTasksResponse", h.do("GET", "/v1/tasks", tok, nil).want(t, http.StatusOK))
	h.do("POST", "/v1/tasks/"+other+":cancel", tok, nil).want(t, http.StatusOK)
	h.do("POST", tesBase+"/tasks/"+ids[3], tok, nil).want(t, http.StatusNotFound)
	h.do("POST", tesBase+"/tasks/"+ids[3]+":pause", tok, nil).want(t, http.StatusNotFound)
}

func TestTESIdempotency(t *testing.T) {
	h := tesHarness(t)
	tok := h.token("alice", time.Time{}, api.ScopeTasks)
	a := h.do("POST", tesBase+"/tasks", tok, simpleTask("a"), "Idempotency-Key", "k1").want(t, http.StatusOK)
	b := h.do("POST", tesBase+"/tasks", tok, simpleTask("a"), "Idempotency-Key", "k1").want(t, http.StatusOK)
	if string(a.body) != string(b.body) {
		t.Errorf("the same key made two tasks: %s, %s", a.body, b.body)
	}
	h.do("POST", tesBase+"/tasks", tok, simpleTask("b"), "Idempotency-Key", "k1").want(t, http.StatusBadRequest)
}

func storeFilter(owner string) store.JobFilter { return store.JobFilter{Owner: owner} }

// backend_parameters.hold creates a task held (PAUSED) until the native
// API releases it; creating a task is audited as a job is.
func TestTESHoldAndAudit(t *testing.T) {
	h := tesHarness(t)
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeJobsWrite)
	task := simpleTask("held")
	task["resources"] = map[string]any{"backend_parameters": map[string]string{"hold": "true"}}
	id := createTask(t, h, tok, task)
	var got tes.Task
	h.do("GET", tesBase+"/tasks/"+id, tok, nil).want(t, http.StatusOK).decode(t, &got)
	if got.State != tes.Paused {
		t.Fatalf("held task is %s", got.State)
	}
	h.do("POST", "/v1/jobs/"+id+"/release", tok, nil).want(t, http.StatusOK)
	h.do("GET", tesBase+"/tasks/"+id, tok, nil).want(t, http.StatusOK).decode(t, &got)
	if got.State != tes.Queued {
		t.Fatalf("released task is %s", got.State)
	}
	task["resources"] = map[string]any{"backend_parameters": map[string]string{"hold": "yes"}}
	h.do("POST", tesBase+"/tasks", tok, task).want(t, http.StatusBadRequest)

	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	var page api.Page[api.AuditEntry]
	h.do("GET", "/v1/audit?user=alice", admin, nil).want(t, http.StatusOK).decode(t, &page)
	found := false
	for _, e := range page.Items {
		found = found || e.Action == "POST "+tesBase+"/tasks" && e.JobID == id && e.Outcome == http.StatusOK
	}
	if !found {
		t.Errorf("no audit entry for the task's creation: %+v", page.Items)
	}
}

// Tasks count against the same quotas as jobs, and name only the
// projects the user may charge.
func TestTESQuotaAndProjects(t *testing.T) {
	h := tesHarness(t)
	h.srv.opts.Quota = func(string) Quota { return Quota{Jobs: 1} }
	h.srv.opts.Projects = map[string][]string{"alice": {"chem01"}}
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead)
	task := simpleTask("p")
	task["resources"] = map[string]any{"backend_parameters": map[string]string{"project": "phys02"}}
	r := h.do("POST", tesBase+"/tasks", tok, task)
	// named where the task names it (it was "project", found by the
	// seventh probe), in TES's 400
	if r.status != http.StatusBadRequest || r.field("resources.backend_parameters.project") == "" {
		t.Fatalf("a project the user may not charge: %d %s", r.status, r.body)
	}
	id := createTask(t, h, tok, simpleTask("one"))
	if j, _ := h.store.GetJob(context.Background(), id); j.Project != "chem01" {
		t.Errorf("project %q, want the user's default", j.Project)
	}
	r = h.do("POST", tesBase+"/tasks", tok, simpleTask("two")).want(t, http.StatusConflict)
	if r.problem.Code != api.CodeQuotaExceeded {
		t.Errorf("over the quota: %s", r.body)
	}
}

// A DIRECTORY input names only what its user may read: another user's
// job outputs are as if none, and their names are not told.
func TestTESDirectoryOfAnotherUsersJob(t *testing.T) {
	h := tesHarness(t)
	ctx := context.Background()
	bobJob, _ := h.jobToken("bob", nil)
	if _, err := h.bucket.Put(ctx, outputsPrefix(bobJob.ID)+"d/secret-name.csv", strings.NewReader("s")); err != nil {
		t.Fatal(err)
	}
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeFilesRead)
	task := simpleTask("x")
	task["inputs"] = []any{map[string]any{"url": "job:" + bobJob.ID + "/outputs/d", "path": "/d", "type": "DIRECTORY"}}
	r := h.do("POST", tesBase+"/tasks", tok, task).want(t, http.StatusBadRequest)
	if strings.Contains(string(r.body), "secret-name") || r.field("inputs[0].url") == "" {
		t.Errorf("another user's job's outputs: %s", r.body)
	}
	// and without files:read nothing is listed at all
	notok := h.token("alice", time.Time{}, api.ScopeTasks)
	h.do("POST", tesBase+"/tasks", notok, task).want(t, http.StatusForbidden)
}

func TestTESLimits(t *testing.T) {
	h := tesHarness(t)
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead)
	many := simpleTask("many")
	var exs []any
	for range tes.MaxExecutors + 1 {
		exs = append(exs, map[string]any{"image": "localhost/a", "command": []string{"true"}})
	}
	many["executors"] = exs
	inputs, outputs := simpleTask("inputs"), simpleTask("outputs")
	var ins, outs []any
	for i := range tes.MaxInputs + 1 {
		ins = append(ins, map[string]any{"content": "x", "path": fmt.Sprintf("/in/%d", i)})
		outs = append(outs, map[string]any{"url": fmt.Sprintf("out/%d", i), "path": fmt.Sprintf("/out/%d", i)})
	}
	inputs["inputs"], outputs["outputs"] = ins, outs
	for name, tc := range map[string]struct {
		task  map[string]any
		field string
	}{
		"executors": {many, "executors"},
		"inputs":    {inputs, "inputs"},
		"outputs":   {outputs, "outputs"},
		"memory":    {map[string]any{"executors": simpleTask("")["executors"], "resources": map[string]any{"ram_gb": 1e19}}, "resources.ram_gb"},
		"walltime":  {map[string]any{"executors": simpleTask("")["executors"], "resources": map[string]any{"backend_parameters": map[string]string{"walltime_s": "99999999999999"}}}, "resources.backend_parameters.walltime_s"},
		"volume":    {map[string]any{"executors": simpleTask("")["executors"], "volumes": []string{"/d/../../tmp/x"}}, "volumes[0]"},
		"image":     {map[string]any{"executors": []any{map[string]any{"image": "localhost/../../home/m/evil.sif", "command": []string{"x"}}}}, "executors[0].image"},
		// found by the seventh probe: these failed only when the task ran
		"image localhost/": {map[string]any{"executors": []any{map[string]any{"image": "localhost/", "command": []string{"x"}}}}, "executors[0].image"},
		"image a//b":       {map[string]any{"executors": []any{map[string]any{"image": "localhost//b", "command": []string{"x"}}}}, "executors[0].image"},
		"env":              {map[string]any{"executors": []any{map[string]any{"image": "localhost/a", "command": []string{"x"}, "env": map[string]string{"A": "1\nB=2"}}}}, "executors[0].env.A"},
	} {
		r := h.do("POST", tesBase+"/tasks", tok, tc.task).want(t, http.StatusBadRequest)
		if r.field(tc.field) == "" {
			t.Errorf("%s: no error for %s: %s", name, tc.field, r.body)
		}
	}
	// an empty tag_value matches any value
	task := simpleTask("tagged")
	task["tags"] = map[string]string{"k": "v"}
	id := createTask(t, h, tok, task)
	var out tes.ListTasksResponse
	h.do("GET", tesBase+"/tasks?tag_key=k&tag_value=", tok, nil).want(t, http.StatusOK).decode(t, &out)
	if len(out.Tasks) != 1 || out.Tasks[0].ID != id {
		t.Errorf("tag_key with an empty tag_value: %+v", out.Tasks)
	}
	h.do("GET", tesBase+"/tasks?page_size=2048", tok, nil).want(t, http.StatusBadRequest)
}

// A FULL page ends once its tasks pass a size, with a token for the rest:
// a page of 2,047 tasks, each showing 1 MiB of input contents, was built
// whole in memory.
func TestTESFullPagesBounded(t *testing.T) {
	h := tesHarness(t)
	defer func(n int) { tesFullPageBytes = n }(tesFullPageBytes)
	tesFullPageBytes = 100 << 10
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeFilesRead, api.ScopeFilesWrite)
	want := map[string]bool{}
	for i := range 5 {
		task := simpleTask(fmt.Sprintf("big%d", i))
		task["inputs"] = []any{map[string]any{"content": strings.Repeat("x", 40<<10), "path": "/data/c.txt"}}
		want[createTask(t, h, tok, task)] = true
	}
	got := map[string]bool{}
	token, pages := "", 0
	for {
		r := h.do("GET", tesBase+"/tasks?view=FULL&page_size=100&page_token="+token, tok, nil).want(t, http.StatusOK)
		conform(t, "FULL", "tesListTasksResponse", r)
		var out tes.ListTasksResponse
		r.decode(t, &out)
		pages++
		if len(out.Tasks) == 0 || len(r.body) > tesFullPageBytes+50<<10 {
			t.Fatalf("page %d: %d tasks in %d bytes", pages, len(out.Tasks), len(r.body))
		}
		for _, tk := range out.Tasks {
			if got[tk.ID] || !want[tk.ID] || len(tk.Inputs) != 1 || len(tk.Inputs[0].Content) != 40<<10 {
				t.Fatalf("page %d: task %s again, unknown, or not FULL", pages, tk.ID)
			}
			got[tk.ID] = true
		}
		if token = out.NextPageToken; token == "" {
			break
		}
	}
	if len(got) != len(want) || pages != 3 {
		t.Fatalf("%d of %d tasks in %d pages, want all in 3 (two of about 80 kB a page)", len(got), len(want), pages)
	}
}

// A list whose filters match little reads at most tesScanJobs jobs, then
// answers with what it found and a token to go on from.
func TestTESListScanBounded(t *testing.T) {
	h := tesHarness(t)
	defer func(n int) { tesScanJobs = n }(tesScanJobs)
	tesScanJobs = 10
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead)
	zz := createTask(t, h, tok, simpleTask("zz"))
	for i := range 15 {
		createTask(t, h, tok, simpleTask(fmt.Sprintf("a%d", i)))
	}
	var out tes.ListTasksResponse
	h.do("GET", tesBase+"/tasks?name_prefix=zz&page_size=5", tok, nil).want(t, http.StatusOK).decode(t, &out)
	if len(out.Tasks) != 0 || out.NextPageToken == "" {
		t.Fatalf("first answer: %d tasks, token %q; want none found in the first 10 jobs, and a token", len(out.Tasks), out.NextPageToken)
	}
	h.do("GET", tesBase+"/tasks?name_prefix=zz&page_size=5&page_token="+out.NextPageToken, tok, nil).want(t, http.StatusOK).decode(t, &out)
	if len(out.Tasks) != 1 || out.Tasks[0].ID != zz {
		t.Fatalf("second answer: %+v", out.Tasks)
	}
}

// countingBucket counts the listings, the objects they passed on, and the
// reads of the bucket under it.
type countingBucket struct {
	blob.Bucket
	lists, listed, gets atomic.Int32
}

func (b *countingBucket) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, blob.Attrs, error) {
	b.gets.Add(1)
	return b.Bucket.Get(ctx, key, off, n)
}

func (b *countingBucket) List(ctx context.Context, prefix, after string, fn func(blob.Attrs) error) error {
	b.lists.Add(1)
	return b.Bucket.List(ctx, prefix, after, func(a blob.Attrs) error {
		b.listed.Add(1)
		return fn(a)
	})
}

// A task's DIRECTORY inputs are listed until they pass maxDirFiles, and
// no further: a folder too large was listed again for every input that
// named it (20,000 inputs of a folder of 10,001 files: 2e8 stats).
func TestTESDirectoryListingsBounded(t *testing.T) {
	defer func(n int) { maxDirFiles = n }(maxDirFiles)
	maxDirFiles = 3
	fb, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cb := &countingBucket{Bucket: fb}
	h := newHarness(t, &harnessOptions{bucket: cb, envs: tesEnvs(), opts: &Options{TES: TESOptions{Environment: "pods"}}})
	for i := range 5 {
		h.put("alice", fmt.Sprintf("big/%d.txt", i), "x")
	}
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeFilesRead)
	task := simpleTask("dirs")
	var ins []any
	for i := range 4 {
		ins = append(ins, map[string]any{"url": "big", "path": fmt.Sprintf("/in/%d", i), "type": "DIRECTORY"})
	}
	task["inputs"] = ins
	before := cb.lists.Load()
	r := h.do("POST", tesBase+"/tasks", tok, task).want(t, http.StatusBadRequest)
	if n := cb.lists.Load() - before; n != 1 {
		t.Errorf("%d listings for four DIRECTORY inputs of a folder over the limit, want 1", n)
	}
	for i := range 4 {
		if r.field(fmt.Sprintf("inputs[%d].url", i)) == "" {
			t.Errorf("no error for inputs[%d].url: %s", i, r.body)
		}
	}
}

// An executor stopped before it could exit showed exit_code 0 (success,
// to a TES client) and no end_time; a template's job shown as a task had
// no executor log at all. The first has -1 and its task's end, the second
// one log: the job's times, exit code and output.
func TestTESExecutorLogsOfStoppedAndTemplateJobs(t *testing.T) {
	envs := append(tesEnvs(), catalog.Environment{Name: "local-podman", Scheduler: "local", ContainerRuntime: "podman", Images: []string{"localhost/"}})
	h := newHarness(t, &harnessOptions{envs: envs, opts: &Options{TES: TESOptions{Environment: "pods"}}})
	ctx := context.Background()
	tok := h.token("alice", time.Time{}, api.ScopeTasks, api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite)
	full := func(id string) tes.TaskLog {
		t.Helper()
		r := h.do("GET", tesBase+"/tasks/"+id+"?view=FULL", tok, nil).want(t, http.StatusOK)
		conform(t, "FULL", "tesTask", r)
		var got tes.Task
		r.decode(t, &got)
		if len(got.Logs) != 1 {
			t.Fatalf("task %s", r.body)
		}
		return got.Logs[0]
	}
	setState := func(id string, st job.State) {
		t.Helper()
		if _, err := h.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(st, "test", time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}

	// a task's executor, canceled while it runs
	id := createTask(t, h, tok, map[string]any{"executors": []any{map[string]any{"image": "localhost/a", "command": []string{"sleep", "60"}}}})
	setState(id, job.Starting)
	jt := h.tokenForJob("alice", id)
	h.do("POST", "/v1/jobs/"+id+"/logs/stdout?offset=0", jt, "started\n").want(t, http.StatusOK)
	h.do("POST", "/v1/jobs/"+id+"/state", jt, api.StateReport{State: "running", Step: &api.Step{Index: 0, StartedAt: time.Now().UTC(), Stdout: [2]int64{0, 0}}}).want(t, http.StatusOK)
	setState(id, job.Canceled)
	l := full(id)
	if len(l.Logs) != 1 || l.Logs[0].ExitCode != -1 || l.Logs[0].EndTime == "" || l.Logs[0].Stdout != "started\n" {
		t.Errorf("a canceled executor's log: %+v; want exit code -1, the task's end, its output", l.Logs)
	}

	// a template's job
	h.put("alice", "data/in.txt", "a b")
	var j api.Job
	h.do("POST", "/v1/jobs", tok, map[string]any{"template": "wordcount-container", "inputs": map[string]string{"text": "data/in.txt"}}).want(t, http.StatusCreated).decode(t, &j)
	setState(j.ID, job.Starting)
	jt = h.tokenForJob("alice", j.ID)
	h.do("POST", "/v1/jobs/"+j.ID+"/logs/stdout?offset=0", jt, "2 words\n").want(t, http.StatusOK)
	zero := 0
	h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, api.StateReport{State: "running"}).want(t, http.StatusOK)
	h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, api.StateReport{State: "succeeded", ExitCode: &zero}).want(t, http.StatusOK)
	l = full(j.ID)
	if len(l.Logs) != 1 || l.Logs[0].ExitCode != 0 || l.Logs[0].Stdout != "2 words\n" || l.Logs[0].StartTime == "" || l.Logs[0].EndTime == "" {
		t.Errorf("a template job's executor log: %+v; want one, with the job's times, exit code and output", l.Logs)
	}
}
