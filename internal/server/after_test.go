package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/job"
)

// A job's after list: every fault named at its index, nothing created;
// only jobs and sweeps the caller may see; a job waits pending, saying for
// what. A job's token may wait for its descendants and its own sweeps.
func TestAfterIsChecked(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	hello := func(after any) map[string]any {
		return map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "after": after}
	}
	var a, bobs api.Job
	h.do("POST", "/v1/jobs", alice, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true}).want(t, http.StatusCreated).decode(t, &a)
	h.do("POST", "/v1/jobs", bob, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true}).want(t, http.StatusCreated).decode(t, &bobs)
	var sw api.Sweep
	h.do("POST", "/v1/sweeps", alice, map[string]any{"template": "hello", "hold": true, "variants": []map[string]any{{"name": "p"}, {"name": "q"}}}).
		want(t, http.StatusCreated).decode(t, &sw)

	r := h.do("POST", "/v1/jobs", alice, hello([]map[string]any{
		{"job": a.ID, "sweep": sw.ID},
		{},
		{"job": a.ID, "when": "someday"},
		{"job": bobs.ID},
		{"sweep": "nosuchsweep"},
	})).want(t, http.StatusUnprocessableEntity)
	for field, want := range map[string]string{
		"after[0]": "one job or one sweep", "after[1]": "one job or one sweep", "after[2].when": `not "someday"`,
		"after[3].job": "no job", "after[4].sweep": "no sweep",
	} {
		if got := r.field(field); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q (all: %+v)", field, got, want, r.problem.Errors)
		}
	}
	many := make([]map[string]any, maxAfter+1)
	for i := range many {
		many[i] = map[string]any{"job": a.ID}
	}
	h.do("POST", "/v1/jobs", alice, hello(many)).want(t, http.StatusUnprocessableEntity)
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs", alice, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 3 {
		t.Fatalf("refused requests created jobs: %d", len(page.Items))
	}

	var w api.Job
	h.do("POST", "/v1/jobs", alice, hello([]map[string]any{{"job": a.ID}, {"sweep": sw.ID, "when": "finished"}})).
		want(t, http.StatusCreated).decode(t, &w)
	if w.State != api.StatePending || w.Reason != "waiting for job "+a.ID+" to succeed (and 1 more)" ||
		len(w.After) != 2 || w.After[0] != (api.Dependency{Job: a.ID, When: "succeeded"}) || w.After[1] != (api.Dependency{Sweep: sw.ID, When: "finished"}) {
		t.Fatalf("job %+v", w)
	}

	// a job's token: its descendants and its own sweeps, not its owner's others
	driver, dt := h.jobToken("alice", nil)
	var kid api.Job
	h.do("POST", "/v1/jobs", dt, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true}).want(t, http.StatusCreated).decode(t, &kid)
	var kidSweep api.Sweep
	h.do("POST", "/v1/sweeps", dt, map[string]any{"template": "hello", "hold": true, "variants": []map[string]any{{"name": "k"}}}).
		want(t, http.StatusCreated).decode(t, &kidSweep)
	h.do("POST", "/v1/jobs", dt, hello([]map[string]any{{"job": kid.ID}, {"sweep": kidSweep.ID}, {"job": driver.ID, "when": "finished"}})).
		want(t, http.StatusCreated)
	r = h.do("POST", "/v1/jobs", dt, hello([]map[string]any{{"job": a.ID}, {"sweep": sw.ID}})).want(t, http.StatusUnprocessableEntity)
	if r.field("after[0].job") == "" || r.field("after[1].sweep") == "" {
		t.Fatalf("a job waited for its owner's other work: %+v", r.problem.Errors)
	}

	// a job reads what it waits for (a reduce job, its sweep's results),
	// and controls none of it
	wt := h.tokenForJob("alice", w.ID)
	h.do("GET", "/v1/jobs/"+a.ID, wt, nil).want(t, http.StatusOK)
	h.do("GET", "/v1/sweeps/"+sw.ID+"/results", wt, nil).want(t, http.StatusOK)
	h.do("GET", "/v1/jobs/"+sw.Jobs[0], wt, nil).want(t, http.StatusOK)
	h.do("POST", "/v1/jobs/"+a.ID+"/cancel", wt, nil).want(t, http.StatusNotFound)
	h.do("POST", "/v1/sweeps/"+sw.ID+"/cancel", wt, nil).want(t, http.StatusNotFound)
	h.do("GET", "/v1/jobs/"+bobs.ID, wt, nil).want(t, http.StatusNotFound)
	h.do("GET", "/v1/jobs/"+driver.ID, wt, nil).want(t, http.StatusNotFound)
	// ... nor list the children of a job it waits for
	h.do("GET", "/v1/jobs/"+a.ID+"/children", wt, nil).want(t, http.StatusNotFound)
}

// A job may take as an input an output of a job it waits for, which is
// not there yet: "B on A's output, after A" is one submission, not a wait
// for A first. The output is checked when B starts: its agent gets it, or
// a 409 that says it is not there (never a 404, which tells an agent its
// job is gone). Without the wait, or once A has ended without it, the
// input is refused at once, as before.
func TestInputFromAJobItWaitsFor(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	alice := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	var a api.Job
	h.do("POST", "/v1/jobs", alice, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true}).want(t, http.StatusCreated).decode(t, &a)
	ref := "job:" + a.ID + "/outputs/greeting.txt"
	wc := func(after any) map[string]any {
		return map[string]any{"template": "wordcount", "inputs": map[string]string{"text": ref}, "after": after}
	}
	if r := h.do("POST", "/v1/jobs", alice, wc(nil)).want(t, http.StatusUnprocessableEntity); !strings.Contains(r.field("inputs.text"), "does not exist") {
		t.Fatalf("without waiting: %s", r.body)
	}
	// another user's job: its output is refused as any, before any wait
	if r := h.do("POST", "/v1/jobs", bob, wc([]map[string]any{{"job": a.ID}})).want(t, http.StatusUnprocessableEntity); !strings.Contains(r.field("inputs.text"), "does not exist") {
		t.Fatalf("bob named alice's output: %s", r.body)
	}
	var b api.Job
	h.do("POST", "/v1/jobs", alice, wc([]map[string]any{{"job": a.ID}})).want(t, http.StatusCreated).decode(t, &b)
	if b.State != api.StatePending || b.Inputs["text"] != ref {
		t.Fatalf("job %+v", b)
	}

	// B starts (as if A had ended well): its input is checked now
	if _, err := h.store.UpdateJob(ctx, b.ID, func(j *job.Job) error { return j.SetState(job.Starting, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	bt := h.tokenForJob("alice", b.ID)
	var spec api.Spec
	h.do("GET", "/v1/jobs/"+b.ID+"/spec", bt, nil).want(t, http.StatusOK).decode(t, &spec)
	if len(spec.Inputs) != 1 || spec.Inputs[0].Size != 0 {
		t.Fatalf("spec inputs %+v", spec.Inputs)
	}
	if r := h.do("GET", "/v1/jobs/"+b.ID+"/inputs/text", bt, nil).want(t, http.StatusConflict); !strings.Contains(r.problem.Detail, "does not exist") {
		t.Fatalf("a missing input: %s", r.body)
	}
	if _, err := h.bucket.Put(ctx, outputsPrefix(a.ID)+"greeting.txt", strings.NewReader("Hello, x")); err != nil {
		t.Fatal(err)
	}
	h.do("GET", "/v1/jobs/"+b.ID+"/spec", bt, nil).want(t, http.StatusOK).decode(t, &spec)
	if len(spec.Inputs) != 1 || spec.Inputs[0].Size != 8 {
		t.Fatalf("spec inputs %+v; want the size it has now", spec.Inputs)
	}
	if r := h.do("GET", "/v1/jobs/"+b.ID+"/inputs/text", bt, nil).want(t, http.StatusOK); string(r.body) != "Hello, x" {
		t.Fatalf("input %q", r.body)
	}
	// larger than the template allows: said, as the job starts
	bj, err := h.store.GetJob(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.storedInput(ctx, bj, "text", ref, 4); !strings.Contains(fmt.Sprint(err), "more than the template's limit of 4") {
		t.Fatalf("an input over its limit: %v", err)
	}

	// A ended without an output: nothing to wait for any more
	if _, err := h.store.UpdateJob(ctx, a.ID, func(j *job.Job) error { return j.SetState(job.Canceled, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	ref = "job:" + a.ID + "/outputs/other.txt"
	h.do("POST", "/v1/jobs", alice, wc([]map[string]any{{"job": a.ID, "when": "finished"}})).want(t, http.StatusUnprocessableEntity)
}
