package server

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/job"
)

// A job takes another job's output as an input by reference
// (job:ID/outputs/PATH), read where it is: a person names any of their
// jobs' outputs, a job its own and its descendants'; another user's is
// as if it did not exist; no file may be named like a reference; and the
// referenced job cannot be deleted while the other may still fetch it.
func TestOutputReferences(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	alice := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	finished := func(owner, parent string) *job.Job {
		t.Helper()
		j := &job.Job{ID: newJobID(), Owner: owner, Template: "hello", TemplateVersion: 1, Environment: "local", State: job.Pending, ParentID: parent, CreatedAt: time.Now().UTC()}
		if _, err := h.store.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		for _, st := range []job.State{job.Running, job.Succeeded} {
			if _, err := h.store.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(st, "test", time.Now()) }); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.bucket.Put(ctx, outputsPrefix(j.ID)+"out/words.txt", strings.NewReader("alpha beta alpha\n")); err != nil {
			t.Fatal(err)
		}
		return j
	}
	wordcount := func(ref string) map[string]any {
		return map[string]any{"template": "wordcount", "inputs": map[string]string{"text": ref}, "hold": true}
	}
	fieldsOf := func(r *response) string {
		var out []string
		for _, f := range r.problem.Errors {
			out = append(out, f.Field+": "+f.Message)
		}
		return strings.Join(out, "; ")
	}

	a := finished("alice", "")
	ref := "job:" + a.ID + "/outputs/out/words.txt"
	var b api.Job
	h.do("POST", "/v1/jobs", alice, wordcount(ref)).want(t, http.StatusCreated).decode(t, &b)
	if b.Inputs["text"] != ref {
		t.Fatalf("inputs %v", b.Inputs)
	}
	// b's agent reads a's output, as a file of its own
	bt := h.tokenForJob("alice", b.ID)
	if r := h.do("GET", "/v1/jobs/"+b.ID+"/inputs/text", bt, nil).want(t, http.StatusOK); string(r.body) != "alpha beta alpha\n" {
		t.Fatalf("the input read %q", r.body)
	}
	var spec api.Spec
	h.do("GET", "/v1/jobs/"+b.ID+"/spec", bt, nil).want(t, http.StatusOK).decode(t, &spec)
	if len(spec.Inputs) != 1 || spec.Inputs[0].Size != int64(len("alpha beta alpha\n")) {
		t.Fatalf("spec inputs %+v", spec.Inputs)
	}
	// nothing was copied: alice stores no bytes for it
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 0 {
		t.Fatalf("a reference counted as stored bytes: %+v", m.Quotas)
	}

	// a is an input of b, which has not ended: a stays
	h.do("DELETE", "/v1/jobs/"+a.ID, alice, nil).want(t, http.StatusConflict)
	h.do("POST", "/v1/jobs/"+b.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	h.do("DELETE", "/v1/jobs/"+a.ID, alice, nil).want(t, http.StatusNoContent)

	// bob's view: alice's job's output does not exist
	a2 := finished("alice", "")
	r := h.do("POST", "/v1/jobs", bob, wordcount("job:"+a2.ID+"/outputs/out/words.txt")).want(t, http.StatusUnprocessableEntity)
	if got := fieldsOf(r); !strings.Contains(got, "inputs.text") || !strings.Contains(got, "does not exist") {
		t.Fatalf("another user's output: %s", got)
	}
	// a missing output, and a malformed reference
	r = h.do("POST", "/v1/jobs", alice, wordcount("job:"+a2.ID+"/outputs/nothing.txt")).want(t, http.StatusUnprocessableEntity)
	if got := fieldsOf(r); !strings.Contains(got, "does not exist") {
		t.Fatalf("a missing output: %s", got)
	}
	r = h.do("POST", "/v1/jobs", alice, wordcount("job:"+a2.ID+"/logs/stdout")).want(t, http.StatusUnprocessableEntity)
	if got := fieldsOf(r); !strings.Contains(got, "job:ID/outputs/PATH") {
		t.Fatalf("a malformed reference: %s", got)
	}
	// no file path looks like a reference
	h.do("PUT", "/v1/files/job:"+a2.ID+"/outputs/x", alice, "x").want(t, http.StatusBadRequest)

	// from inside a job: its descendants' outputs, not its siblings'
	parent, pt := h.jobToken("alice", nil)
	child := finished("alice", parent.ID)
	grandchild := finished("alice", child.ID)
	for _, id := range []string{child.ID, grandchild.ID} {
		h.do("POST", "/v1/jobs", pt, wordcount("job:"+id+"/outputs/out/words.txt")).want(t, http.StatusCreated)
	}
	r = h.do("POST", "/v1/jobs", pt, wordcount("job:"+a2.ID+"/outputs/out/words.txt")).want(t, http.StatusUnprocessableEntity)
	if got := fieldsOf(r); !strings.Contains(got, "inputs.text") {
		t.Fatalf("a job naming a job not its descendant's output: %s", got)
	}
}

// A job stores files in its own space, never in its owner's files: other
// jobs and its owner name them job:ID/files/PATH; they count against the
// owner's quota and go with the job.
func TestJobFileSpace(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	parent, pt := h.jobToken("alice", nil)
	h.do("PUT", "/v1/files/mesh/part1.txt", pt, "one two three\n").want(t, http.StatusCreated)
	if r := h.do("GET", "/v1/files/mesh/part1.txt", pt, nil).want(t, http.StatusOK); string(r.body) != "one two three\n" {
		t.Fatalf("the job reads back %q", r.body)
	}
	var page api.Page[api.FileInfo]
	h.do("GET", "/v1/files", pt, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 1 || page.Items[0].Path != "mesh/part1.txt" {
		t.Fatalf("the job's files %+v", page.Items)
	}
	// not among alice's own files
	h.do("GET", "/v1/files/mesh/part1.txt", alice, nil).want(t, http.StatusNotFound)
	if m := me(t, h, alice); m.Quotas["bytes"].Used != int64(len("one two three\n")) {
		t.Fatalf("the job's file is not counted to its owner: %+v", m.Quotas)
	}
	// its child takes it as an input, as does alice
	ref := "job:" + parent.ID + "/files/mesh/part1.txt"
	var child api.Job
	h.do("POST", "/v1/jobs", pt, map[string]any{"template": "wordcount", "inputs": map[string]string{"text": ref}, "hold": true}).
		want(t, http.StatusCreated).decode(t, &child)
	if r := h.do("GET", "/v1/jobs/"+child.ID+"/inputs/text", h.tokenForJob("alice", child.ID), nil).want(t, http.StatusOK); string(r.body) != "one two three\n" {
		t.Fatalf("the child reads %q", r.body)
	}
	h.do("POST", "/v1/jobs", alice, map[string]any{"template": "wordcount", "inputs": map[string]string{"text": ref}, "hold": true}).want(t, http.StatusCreated)
	// the job's files go with it, and count no more
	h.do("POST", "/v1/jobs/"+child.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	var jobs api.Page[api.Job]
	h.do("GET", "/v1/jobs?state=held", alice, nil).want(t, http.StatusOK).decode(t, &jobs)
	for _, j := range jobs.Items {
		h.do("POST", "/v1/jobs/"+j.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	}
	h.do("DELETE", "/v1/jobs/"+parent.ID, alice, nil).want(t, http.StatusNoContent)
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 0 {
		t.Fatalf("after the job's deletion: %+v", m.Quotas)
	}
}

// A file stored under a name like a reference before references existed
// reads no other user's data: not as a job's given input passed on to a
// child, nor when a job that holds it fetches its inputs; and it can
// still be deleted, though no new file may take such a name.
func TestLegacyReferenceNamedFile(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	alice := h.token("alice", time.Time{}, allScopes...)
	bobJob := &job.Job{ID: newJobID(), Owner: "bob", Template: "hello", TemplateVersion: 1, Environment: "local", State: job.Pending, CreatedAt: time.Now().UTC()}
	if _, err := h.store.CreateJob(ctx, bobJob, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.bucket.Put(ctx, outputsPrefix(bobJob.ID)+"secret", strings.NewReader("bob's secret")); err != nil {
		t.Fatal(err)
	}
	legacy := "job:" + bobJob.ID + "/outputs/secret"
	h.put("alice", legacy, "alice's own file of that name")
	// alice's job was given it before the upgrade
	p := &job.Job{ID: newJobID(), Owner: "alice", Template: "wordcount", TemplateVersion: 1, Environment: "local", State: job.Pending,
		Inputs: map[string]string{"text": legacy}, CreatedAt: time.Now().UTC()}
	if _, err := h.store.CreateJob(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.UpdateJob(ctx, p.ID, func(j *job.Job) error { return j.SetState(job.Running, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	pt := h.tokenForJob("alice", p.ID)
	r := h.do("POST", "/v1/jobs", pt, map[string]any{"template": "wordcount", "inputs": map[string]string{"text": legacy}, "hold": true}).want(t, http.StatusUnprocessableEntity)
	if !strings.Contains(r.problem.Detail, "does not exist") {
		t.Fatalf("a child given bob's output through a legacy name: %+v", r.problem)
	}
	// the job itself cannot fetch bob's output either: a 409 that fails
	// the job saying so (a 404 would tell its agent the job is gone), and
	// its spec has no URL for it
	if r := h.do("GET", "/v1/jobs/"+p.ID+"/inputs/text", pt, nil); r.status != http.StatusConflict || strings.Contains(string(r.body), "bob's secret") {
		t.Fatalf("the job's input: %d %q", r.status, r.body)
	}
	var spec api.Spec
	h.do("GET", "/v1/jobs/"+p.ID+"/spec", pt, nil).want(t, http.StatusOK).decode(t, &spec)
	for _, in := range spec.Inputs {
		if in.URL != "" {
			t.Fatalf("the spec signs bob's output: %+v", in)
		}
	}
	// alice may still delete her file; she may not make a new one so named
	h.do("DELETE", "/v1/files/"+legacy, alice, nil).want(t, http.StatusNoContent)
	h.do("PUT", "/v1/files/"+legacy, alice, "x").want(t, http.StatusBadRequest)
}
