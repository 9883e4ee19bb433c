package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// A control the job's state or engine does not allow answers 409 with a
// message in the user's terms: what the job is, and what would be allowed.
func TestControlRefusalsSayWhy(t *testing.T) {
	h := newHarness(t, &harnessOptions{scheds: map[string]sched.Scheduler{"local": failingSched{}}})
	tok := h.token("alice", time.Time{}, userScopes...)
	running, _ := h.jobToken("alice", nil)
	r := h.do("POST", "/v1/jobs/"+running.ID+"/hold", tok, nil)
	r.want(t, http.StatusConflict)
	if r.problem.Code != api.CodeInvalidState || !strings.Contains(r.problem.Detail, "running") || !strings.Contains(r.problem.Detail, "only pending and queued jobs can be held") {
		t.Errorf("hold of a running job: %s", r.body)
	}
	r = h.do("POST", "/v1/jobs/"+running.ID+"/release", tok, nil)
	if r.status != http.StatusConflict || !strings.Contains(r.problem.Detail, "only held jobs can be released") {
		t.Errorf("release of a running job: %s", r.body)
	}
	h.do("POST", "/v1/jobs/"+running.ID+"/cancel", tok, nil).want(t, http.StatusOK)
	r = h.do("POST", "/v1/jobs/"+running.ID+"/cancel", tok, nil)
	if r.status != http.StatusConflict || !strings.Contains(r.problem.Detail, "ended already") {
		t.Errorf("second cancel: %s", r.body)
	}
}

// Canceling a job cancels its unfinished descendants, a finished child's
// children included, but not a child created detached, nor its children.
func TestCancelCascades(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	alice := h.token("alice", time.Time{}, allScopes...)
	parent, pt := h.jobToken("alice", nil)
	child := func(tok string, detached bool) *api.Job {
		t.Helper()
		var j api.Job
		h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true, "detached": detached}).
			want(t, http.StatusCreated).decode(t, &j)
		if j.Detached != detached {
			t.Fatalf("child %+v", j)
		}
		return &j
	}
	a := child(pt, false)
	a1 := child(h.tokenForJob("alice", a.ID), false)
	b := child(pt, true)
	b1 := child(h.tokenForJob("alice", b.ID), false)
	c := child(pt, false)
	c1 := child(h.tokenForJob("alice", c.ID), false)
	for _, st := range []job.State{job.Pending, job.Running, job.Succeeded} {
		if _, err := h.store.UpdateJob(ctx, c.ID, func(j *job.Job) error { return j.SetState(st, "test", time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	h.do("POST", "/v1/jobs/"+parent.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	for id, want := range map[string]job.State{parent.ID: job.Canceled, a.ID: job.Canceled, a1.ID: job.Canceled, c.ID: job.Succeeded, c1.ID: job.Canceled, b.ID: job.Held, b1.ID: job.Held} {
		j, err := h.store.GetJob(ctx, id)
		if err != nil || j.State != want {
			t.Errorf("job %s: %v, %v; want %s", id, j.State, err, want)
		}
	}
	if j, _ := h.store.GetJob(ctx, a1.ID); !strings.Contains(j.Reason, parent.ID) {
		t.Errorf("a grandchild's reason %q does not name the canceled ancestor", j.Reason)
	}
	// only a child can be detached
	r := h.do("POST", "/v1/jobs", alice, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "detached": true}).want(t, http.StatusUnprocessableEntity)
	if len(r.problem.Errors) != 1 || r.problem.Errors[0].Field != "detached" {
		t.Fatalf("a person's detached job: %+v", r.problem)
	}
}
