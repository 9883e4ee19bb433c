package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
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
