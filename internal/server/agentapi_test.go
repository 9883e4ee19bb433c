package server

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/hpcgate/hpcgate/internal/testenv"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob/s3blob"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// A step's log range is checked: a negative start was stored, and every
// read of the task (and the owner's whole TES list) answered 500.
func TestAgentStepRangesAreChecked(t *testing.T) {
	h := newHarness(t, nil)
	j, jt := h.jobToken("alice", nil)
	for _, bad := range []map[string]any{
		{"index": 0, "started_at": time.Now(), "stdout": []int64{-100, 10}, "stderr": []int64{0, 0}},
		{"index": 0, "started_at": time.Now(), "stdout": []int64{0, 0}, "stderr": []int64{10, 5}},
	} {
		r := h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, map[string]any{"state": "running", "step": bad}).want(t, http.StatusUnprocessableEntity)
		if r.field("step.stdout") == "" && r.field("step.stderr") == "" {
			t.Errorf("%v: no field error for the range: %s", bad, r.body)
		}
	}
	got, err := h.store.GetJob(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Steps) != 0 {
		t.Fatalf("a refused report stored steps %+v", got.Steps)
	}
	// a step that has begun leaves its ends open, as the agent sends it;
	// an ended one may not
	begun := map[string]any{"index": 0, "started_at": time.Now(), "stdout": []int64{5, 0}, "stderr": []int64{3, 0}}
	h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, map[string]any{"state": "running", "step": begun}).want(t, http.StatusOK)
	begun["ended_at"] = time.Now()
	h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, map[string]any{"state": "running", "step": begun}).want(t, http.StatusUnprocessableEntity)
}

// A job's reported usage is its own word: a job reported 1.7e308 wall
// seconds, its owner's core-seconds became infinite, and /v1/me and
// /v1/usage answered 500 from then on. Figures out of bounds are refused,
// and core-seconds count the gateway's clock.
func TestAgentUsageIsTheJobsWord(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("admin", time.Time{}, api.ScopeAdmin)
	j, jt := h.jobToken("alice", nil)
	h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, map[string]any{"state": "running"}).want(t, http.StatusOK)
	for field, bad := range map[string]map[string]any{
		"usage.wall_seconds":  {"wall_seconds": 1.7e308},
		"usage.cpu_seconds":   {"cpu_seconds": -1},
		"usage.max_rss_bytes": {"max_rss_bytes": -5},
	} {
		r := h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, map[string]any{"state": "succeeded", "exit_code": 0, "usage": bad}).want(t, http.StatusUnprocessableEntity)
		if r.field(field) == "" {
			t.Errorf("%v: no error for %s: %s", bad, field, r.body)
		}
	}
	if got, _ := h.store.GetJob(context.Background(), j.ID); got.State != job.Running || got.Usage != nil {
		t.Fatalf("a refused report changed the job: %s, %+v", got.State, got.Usage)
	}
	// within bounds but more than the job ran: shown as reported, counted
	// as the gateway saw it run (well under a minute here)
	h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, map[string]any{"state": "succeeded", "exit_code": 0,
		"usage": map[string]any{"wall_seconds": 1e12, "cpu_seconds": 1e12}}).want(t, http.StatusOK)
	var rows api.Page[api.ProjectUsage]
	h.do("GET", "/v1/usage?user=alice", admin, nil).want(t, http.StatusOK).decode(t, &rows)
	var cs float64
	for _, u := range rows.Items {
		cs += u.CoreSeconds
	}
	if cs <= 0 || cs > 60 {
		t.Fatalf("core-seconds %g after a job of a few milliseconds reported 1e12 s", cs)
	}
}

// A job's own code holds its token: it uploaded outputs its template does
// not declare, and one named job:x, which no file may be named (found by
// the sixth probe).
func TestOutputsAreTheTemplates(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	j := &job.Job{ID: newJobID(), Owner: "alice", Template: "hello", TemplateVersion: 1, Environment: "local", State: job.Pending,
		Parameters: json.RawMessage(`{"name":"x"}`), CreatedAt: time.Now().UTC()}
	if _, err := h.store.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.store.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Running, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	jt := h.tokenForJob("alice", j.ID)
	for _, p := range []string{"undeclared/evil.txt", "job:x", "greeting.txt.bak"} {
		r := h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/"+p, jt, "x")
		if r.status != http.StatusBadRequest && r.status != http.StatusUnprocessableEntity || r.field("path") == "" {
			t.Errorf("PUT of output %s: %d %s", p, r.status, r.body)
		}
	}
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/greeting.txt", jt, "Hello").want(t, http.StatusCreated)
	var page api.Page[api.FileInfo]
	h.do("GET", "/v1/jobs/"+j.ID+"/outputs", jt, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 1 || page.Items[0].Path != "greeting.txt" {
		t.Fatalf("outputs %+v", page.Items)
	}
}

// endsFirst ends the job (succeeded, exit code 0) just before the next
// update of it runs, as the reconciler can between an agent's token check
// and its report.
type endsFirst struct {
	store.Store
	armed atomic.Bool
}

func (s *endsFirst) UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error) {
	if s.armed.CompareAndSwap(true, false) {
		zero := 0
		if _, err := s.Store.UpdateJob(ctx, id, func(j *job.Job) error {
			j.ExitCode = &zero
			return j.SetState(job.Succeeded, "the engine saw it end", time.Now())
		}); err != nil {
			return nil, err
		}
	}
	return s.Store.UpdateJob(ctx, id, fn)
}

// A report that arrives as its job ends changes nothing: a report of the
// same state rewrote the exit code, usage and error of an ended job.
func TestAgentReportAfterTheEnd(t *testing.T) {
	var es *endsFirst
	h := newHarness(t, &harnessOptions{wrapStore: func(s store.Store) store.Store { es = &endsFirst{Store: s}; return es }})
	j, jt := h.jobToken("alice", nil)
	es.armed.Store(true)
	r := h.do("POST", "/v1/jobs/"+j.ID+"/state", jt, map[string]any{"state": "succeeded", "exit_code": 7, "error": "late"}).want(t, http.StatusConflict)
	if r.problem.Code != api.CodeInvalidState {
		t.Errorf("problem %+v", r.problem)
	}
	got, err := h.store.GetJob(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != job.Succeeded || got.ExitCode == nil || *got.ExitCode != 0 || got.Error != "" {
		t.Fatalf("the ended job was changed: state %s, exit code %v, error %q", got.State, got.ExitCode, got.Error)
	}
}

// s3Harness is a harness whose objects are on the S3 server of
// HPCGATE_TEST_S3 (under a fresh prefix), for what only a store that
// presigns URLs does.
func s3Harness(t *testing.T, opts *Options) *harness {
	t.Helper()
	u, key, secret := testenv.S3(t)
	b, err := s3blob.Open(u.String(), key, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CreateBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return newHarness(t, &harnessOptions{bucket: b, opts: opts})
}

// Asking for an output's URL with a smaller size than the output stored
// credited the difference back, though the URL need never be used and the
// stored output stays: the bytes quota could be emptied again and again.
func TestOutputURLNeverCreditsBack(t *testing.T) {
	h := s3Harness(t, &Options{Quota: func(string) Quota { return Quota{Bytes: 100} }})
	alice := h.token("alice", time.Time{}, allScopes...)
	j, jt := h.jobToken("alice", nil)
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/big", jt, strings.Repeat("x", 80)).want(t, http.StatusCreated)
	h.do("POST", "/v1/jobs/"+j.ID+"/output-urls", jt, map[string]any{"path": "big", "size": 0}).want(t, http.StatusOK)
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 80 {
		t.Fatalf("after a URL for 0 bytes over an output of 80: %+v", m.Quotas["bytes"])
	}
	h.do("PUT", "/v1/files/a", alice, strings.Repeat("x", 30)).want(t, http.StatusConflict)
	// a larger size is counted when the URL is handed out
	h.do("POST", "/v1/jobs/"+j.ID+"/output-urls", jt, map[string]any{"path": "big", "size": 90}).want(t, http.StatusOK)
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 90 {
		t.Fatalf("after a URL for 90 bytes over an output of 80: %+v", m.Quotas["bytes"])
	}
}

// The files quota on the object store's direct paths: an output's URL
// counts a file only for a new output, and a multipart upload of a new
// file is refused at its start, and counted when it completes.
func TestFilesQuotaOnDirectPaths(t *testing.T) {
	h := s3Harness(t, &Options{Quota: func(string) Quota { return Quota{Files: 2} }})
	alice := h.token("alice", time.Time{}, allScopes...)
	j, jt := h.jobToken("alice", nil)
	files := func() int64 { return me(t, h, alice).Quotas["files"].Used }
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/o1", jt, "1").want(t, http.StatusCreated)
	h.do("POST", "/v1/jobs/"+j.ID+"/output-urls", jt, map[string]any{"path": "o1", "size": 2}).want(t, http.StatusOK)
	if n := files(); n != 1 {
		t.Fatalf("a URL over a stored output counted a file: %d", n)
	}
	h.do("POST", "/v1/jobs/"+j.ID+"/output-urls", jt, map[string]any{"path": "o2", "size": 2}).want(t, http.StatusOK)
	if n := files(); n != 2 {
		t.Fatalf("a URL for a new output: %d files, want 2", n)
	}
	r := h.do("POST", "/v1/jobs/"+j.ID+"/output-urls", jt, map[string]any{"path": "o3", "size": 2}).want(t, http.StatusConflict)
	if r.problem.Code != api.CodeQuotaExceeded || !strings.Contains(r.problem.Detail, "quota files") {
		t.Fatalf("a third output's URL: %+v", r.problem)
	}
	h.do("POST", "/v1/uploads", alice, map[string]any{"path": "big", "size": 10}).want(t, http.StatusConflict)
	// room made: the upload starts, and its file counts when it completes
	h.do("POST", "/v1/jobs/"+j.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	h.do("DELETE", "/v1/jobs/"+j.ID, alice, nil).want(t, http.StatusNoContent)
	var up api.Upload
	h.do("POST", "/v1/uploads", alice, map[string]any{"path": "big", "size": 10}).want(t, http.StatusCreated).decode(t, &up)
	etag := putPart(t, up.Parts[0].URL, strings.Repeat("x", 10))
	h.do("POST", "/v1/uploads/"+up.ID+"/complete", alice, map[string]any{"etags": []string{etag}}).want(t, http.StatusCreated)
	if n := files(); n != 2 {
		t.Fatalf("after the job's deletion and a completed upload: %d files, want 2 (o2's URL counted, never used, and big)", n)
	}
}

// A job's stream keeps up to its limit, then a line that says so, then
// nothing: a job that prints without end (or a token that appends 4 MiB
// chunks in a loop) filled the store.
func TestLogsAreBounded(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{MaxLogBytes: 100}})
	alice := h.token("alice", time.Time{}, allScopes...)
	j, jt := h.jobToken("alice", nil)
	appendLog := func(offset int, data string) api.LogAppend {
		t.Helper()
		var a api.LogAppend
		h.do("POST", fmt.Sprintf("/v1/jobs/%s/logs/stdout?offset=%d", j.ID, offset), jt, data, "Content-Type", "application/octet-stream").
			want(t, http.StatusOK).decode(t, &a)
		return a
	}
	if a := appendLog(0, strings.Repeat("a", 60)); a.Size != 60 || a.Full {
		t.Fatalf("within the limit: %+v", a)
	}
	a := appendLog(50, strings.Repeat("a", 10)+strings.Repeat("b", 60)) // overlaps what is stored
	if !a.Full {
		t.Fatalf("past the limit: %+v", a)
	}
	if b := appendLog(200, "Z"); !b.Full || b.Size != a.Size {
		t.Fatalf("after the end: %+v, want the size %d and full", b, a.Size)
	}
	log := string(h.do("GET", "/v1/jobs/"+j.ID+"/logs/stdout", alice, nil).want(t, http.StatusOK).body)
	want := strings.Repeat("a", 60) + strings.Repeat("b", 40) + "\n[hpcgate: stdout reached the limit of 100 bytes"
	if !strings.HasPrefix(log, want) || strings.Contains(log, "Z") || int64(len(log)) != a.Size {
		t.Fatalf("the log: %q", log)
	}
}

// A multipart upload's room is checked when it starts and held when it
// completes: bytes stored meanwhile count, and an upload that no longer
// fits is dropped whole, leaving nothing.
func TestCompletedUploadHoldsItsRoom(t *testing.T) {
	h := s3Harness(t, &Options{Quota: func(string) Quota { return Quota{Bytes: 100} }})
	alice := h.token("alice", time.Time{}, allScopes...)
	var up api.Upload
	h.do("POST", "/v1/uploads", alice, map[string]any{"path": "big", "size": 60}).want(t, http.StatusCreated).decode(t, &up)
	etag := putPart(t, up.Parts[0].URL, strings.Repeat("x", 60))
	h.do("PUT", "/v1/files/other", alice, strings.Repeat("y", 50)).want(t, http.StatusCreated)
	r := h.do("POST", "/v1/uploads/"+up.ID+"/complete", alice, map[string]any{"etags": []string{etag}}).want(t, http.StatusConflict)
	if r.problem.Code != api.CodeQuotaExceeded {
		t.Fatalf("completing past the quota: %+v", r.problem)
	}
	h.do("HEAD", "/v1/files/big", alice, nil).want(t, http.StatusNotFound)
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 50 {
		t.Fatalf("use %+v, want the other file's 50 bytes", m.Quotas["bytes"])
	}
	// the upload was dropped: it cannot be completed later
	h.do("POST", "/v1/uploads/"+up.ID+"/complete", alice, map[string]any{"etags": []string{etag}}).want(t, http.StatusNotFound)
}

// An output whose upload began before its job was canceled and ended
// after is not kept, nor counted: a canceled job uploads nothing after its
// cancel (found by the eighth probe).
func TestOutputLandingAfterCancelRemoved(t *testing.T) {
	h := quotaHarness(t, Quota{Bytes: 1 << 30}) // a quota: the upload holds room, which tells it has begun
	alice := h.token("alice", time.Time{}, allScopes...)
	j, jt := h.jobToken("alice", nil)
	finish, done := h.slowPut(jt, "/v1/jobs/"+j.ID+"/outputs/late.txt", "first half, ", "second half", 23)
	// the upload is under way once it holds its room
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m := h.srv.rooms.(*memRooms)
		m.mu.Lock()
		held := m.held["alice"].Bytes
		m.mu.Unlock()
		if held > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload did not begin")
		}
	}
	h.do("POST", "/v1/jobs/"+j.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	finish()
	if st := <-done; st != http.StatusConflict {
		t.Fatalf("the upload that ended after the cancel: %d, want 409", st)
	}
	h.do("GET", "/v1/jobs/"+j.ID+"/outputs/late.txt", alice, nil).want(t, http.StatusNotFound)
	if st, err := stored(context.Background(), h.store, "alice"); err != nil || st != (store.Stored{}) {
		t.Fatalf("the removed output is still counted: %+v, %v", st, err)
	}
}
