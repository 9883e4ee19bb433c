package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// Inputs given by https:// URL: checked at submission (each fault named
// at its field), needing no right to read files, handed to the agent
// with their digest and limits, and never served by the gateway.
func TestURLInputs(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	h.put("alice", "text.txt", "words words\n")
	sum := strings.Repeat("0a", 32)
	job := func(inputs map[string]string) map[string]any {
		return map[string]any{"template": "wordcount", "inputs": inputs, "hold": true}
	}

	r := h.do("POST", "/v1/jobs", alice, job(map[string]string{
		"text":   "http://data.example.org/a.txt",
		"corpus": "https://u:p@data.example.org/c.tar.gz",
	})).want(t, http.StatusUnprocessableEntity)
	if !strings.Contains(r.field("inputs.text"), "only https://") || !strings.Contains(r.field("inputs.corpus"), "user name or password") {
		t.Fatalf("field errors %+v", r.problem.Errors)
	}
	h.do("POST", "/v1/jobs", alice, job(map[string]string{"text": "https://data.example.org/a.txt#sha256=12"})).
		want(t, http.StatusUnprocessableEntity)
	var page api.Page[api.Job]
	if h.do("GET", "/v1/jobs", alice, nil).want(t, http.StatusOK).decode(t, &page); len(page.Items) != 0 {
		t.Fatalf("refused requests left jobs: %+v", page.Items)
	}

	// a token that may not read files may still name a URL
	jobsOnly := h.token("alice", time.Time{}, api.ScopeJobsRead, api.ScopeJobsWrite)
	h.do("POST", "/v1/jobs", jobsOnly, job(map[string]string{"text": "text.txt"})).want(t, http.StatusForbidden)
	var j api.Job
	h.do("POST", "/v1/jobs", jobsOnly, job(map[string]string{
		"text":   "https://data.example.org/a.txt#sha256=" + sum,
		"corpus": "https://data.example.org/c.tar.gz",
	})).want(t, http.StatusCreated).decode(t, &j)

	jt := h.tokenForJob("alice", j.ID)
	var spec api.Spec
	h.do("GET", "/v1/jobs/"+j.ID+"/spec", jt, nil).want(t, http.StatusOK).decode(t, &spec)
	got := map[string]api.SpecInput{}
	for _, in := range spec.Inputs {
		got[in.Name] = in
	}
	text, corpus := got["text"], got["corpus"]
	if !text.Remote || text.URL != "https://data.example.org/a.txt" || text.SHA256 != sum || text.MaxSize != 100<<20 || text.Unpack {
		t.Fatalf("text in the spec: %+v", text)
	}
	if !corpus.Remote || corpus.SHA256 != "" || !corpus.Unpack || corpus.Path != "corpus" || corpus.MaxSize != 1<<30 || corpus.MaxUnpacked != 4<<30 {
		t.Fatalf("corpus in the spec: %+v", corpus)
	}
	h.do("GET", "/v1/jobs/"+j.ID+"/inputs/text", jt, nil).want(t, http.StatusNotFound)
}
