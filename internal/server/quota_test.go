package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
	"github.com/hpcgate/hpcgate/internal/job"
)

var allScopes = []string{api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite}

func quotaHarness(t *testing.T, q Quota) *harness {
	return newHarness(t, &harnessOptions{opts: &Options{
		Quota:    func(string) Quota { return q },
		Projects: map[string][]string{"alice": {"chem01", "phys02"}, "*": {"open"}},
	}})
}

func hello(extra map[string]any) map[string]any {
	m := map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "hold": true}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func me(t *testing.T, h *harness, tok string) api.Me {
	var m api.Me
	h.do("GET", "/v1/me", tok, nil).want(t, http.StatusOK).decode(t, &m)
	return m
}

func TestQuotaJobs(t *testing.T) {
	h := quotaHarness(t, Quota{Jobs: 2})
	alice := h.token("alice", time.Time{}, allScopes...)
	for i := 0; i < 2; i++ {
		h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated)
	}
	r := h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusConflict)
	if r.problem.Code != api.CodeQuotaExceeded || !strings.Contains(r.problem.Detail, "quota jobs") || !strings.Contains(r.problem.Detail, "you have 2 unfinished jobs, the limit is 2") {
		t.Fatalf("problem: %+v", r.problem)
	}
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs", alice, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 2 {
		t.Fatalf("a refused job was stored: %d jobs", len(page.Items))
	}
	if m := me(t, h, alice); m.Quotas["jobs"] != (api.Quota{Limit: 2, Used: 2}) {
		t.Fatalf("me: %+v", m.Quotas)
	}
	// A job that ends frees its place.
	h.do("POST", "/v1/jobs/"+page.Items[0].ID+"/cancel", alice, nil).want(t, http.StatusOK)
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated)
}

func TestQuotaCores(t *testing.T) {
	h := quotaHarness(t, Quota{Cores: 2})
	alice := h.token("alice", time.Time{}, allScopes...)
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated)
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated)
	r := h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusConflict)
	if r.problem.Code != api.CodeQuotaExceeded || !strings.Contains(r.problem.Detail, "quota cores") || !strings.Contains(r.problem.Detail, "hold 2 cores and this would add 1, the limit is 2") {
		t.Fatalf("problem: %+v", r.problem)
	}
	if m := me(t, h, alice); m.Quotas["cores"] != (api.Quota{Limit: 2, Used: 2}) || m.Quotas["jobs"].Used != 2 {
		t.Fatalf("me: %+v", m.Quotas)
	}
}

func TestQuotaBytes(t *testing.T) {
	h := quotaHarness(t, Quota{Bytes: 10})
	alice := h.token("alice", time.Time{}, allScopes...)
	h.do("PUT", "/v1/files/a.txt", alice, "123456").want(t, http.StatusCreated)
	r := h.do("PUT", "/v1/files/b.txt", alice, "123456").want(t, http.StatusConflict)
	if r.problem.Code != api.CodeQuotaExceeded || !strings.Contains(r.problem.Detail, "quota bytes") || !strings.Contains(r.problem.Detail, "take 6 bytes of a limit of 10") {
		t.Fatalf("problem: %+v", r.problem)
	}
	h.do("GET", "/v1/files/b.txt", alice, nil).want(t, http.StatusNotFound)
	// Replacing a file counts the difference only.
	h.do("PUT", "/v1/files/a.txt", alice, "1234567890").want(t, http.StatusCreated)
	if m := me(t, h, alice); m.Quotas["bytes"] != (api.Quota{Limit: 10, Used: 10}) {
		t.Fatalf("me: %+v", m.Quotas)
	}
	// A refused replacement leaves the file as it was.
	h.do("PUT", "/v1/files/a.txt", alice, "12345678901").want(t, http.StatusConflict)
	if r := h.do("GET", "/v1/files/a.txt", alice, nil).want(t, http.StatusOK); string(r.body) != "1234567890" {
		t.Fatalf("file now %q", r.body)
	}
	h.do("DELETE", "/v1/files/a.txt", alice, nil).want(t, http.StatusNoContent)
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 0 {
		t.Fatalf("after delete: %+v", m.Quotas)
	}
	// Job outputs count to the job's owner.
	j, jt := h.jobToken("alice", nil)
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/out.txt", jt, "12345678").want(t, http.StatusCreated)
	if r := h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/more.txt", jt, "12345").want(t, http.StatusConflict); r.problem.Code != api.CodeQuotaExceeded {
		t.Fatalf("output over quota: %+v", r.problem)
	}
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 8 {
		t.Fatalf("with outputs: %+v", m.Quotas)
	}
}

func TestRateLimit(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{RateLimit: RateLimit{PerSecond: 1, Burst: 3}}})
	alice := h.token("alice", time.Time{}, allScopes...)
	alice2 := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	for i := 0; i < 3; i++ {
		h.do("GET", "/v1/me", alice, nil).want(t, http.StatusOK)
	}
	r := h.do("GET", "/v1/me", alice, nil).want(t, http.StatusTooManyRequests)
	if r.problem.Code != api.CodeRateLimited || r.header.Get("Retry-After") != "1" {
		t.Fatalf("429: %+v, Retry-After %q", r.problem, r.header.Get("Retry-After"))
	}
	// a user's tokens share the limit: minting more tokens bought more
	// requests, one bucket each
	h.do("GET", "/v1/me", alice2, nil).want(t, http.StatusTooManyRequests)
	// Another user is not starved; job tokens have their own limit (none here).
	h.do("GET", "/v1/me", bob, nil).want(t, http.StatusOK)
	_, jt := h.jobToken("alice", nil)
	for i := 0; i < 10; i++ {
		h.do("GET", "/v1/me", jt, nil).want(t, http.StatusOK)
	}
}

// A user holds at most maxTokens tokens that have not expired: minting
// was free and unbounded, each token a row and a cache entry.
func TestTokensPerUserBounded(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	for range 5 {
		h.token("alice", time.Now().Add(-time.Hour), allScopes...) // expired: not counted
	}
	for range maxTokens - 2 {
		h.token("alice", time.Time{}, api.ScopeJobsRead)
	}
	h.do("POST", "/v1/tokens", alice, map[string]any{"scopes": []string{api.ScopeJobsRead}}).want(t, http.StatusCreated)
	r := h.do("POST", "/v1/tokens", alice, map[string]any{"scopes": []string{api.ScopeJobsRead}}).want(t, http.StatusConflict)
	if !strings.Contains(r.problem.Detail, "revoke") {
		t.Errorf("detail %q: want what to do", r.problem.Detail)
	}
	h.do("POST", "/v1/sessions", alice, nil).want(t, http.StatusConflict)
	bob := h.token("bob", time.Time{}, allScopes...)
	h.do("POST", "/v1/tokens", bob, map[string]any{"scopes": []string{api.ScopeJobsRead}}).want(t, http.StatusCreated)
}

func TestProjects(t *testing.T) {
	h := quotaHarness(t, Quota{})
	alice := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	var j api.Job
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated).decode(t, &j)
	if j.Project != "chem01" {
		t.Fatalf("default project %q", j.Project)
	}
	h.do("POST", "/v1/jobs", alice, hello(map[string]any{"project": "open"})).want(t, http.StatusCreated).decode(t, &j)
	if j.Project != "open" {
		t.Fatalf("project %q", j.Project)
	}
	r := h.do("POST", "/v1/jobs", bob, hello(map[string]any{"project": "chem01"})).want(t, http.StatusUnprocessableEntity)
	if r.field("project") == "" || !strings.Contains(r.problem.Detail, "your projects: open") {
		t.Fatalf("problem: %+v", r.problem)
	}
	h.do("POST", "/v1/jobs", bob, hello(nil)).want(t, http.StatusCreated).decode(t, &j)
	if j.Project != "open" {
		t.Fatalf("bob's default %q", j.Project)
	}
	// Usage per project: in GET /v1/me, and for admins in GET /v1/usage.
	h.do("POST", "/v1/jobs/"+j.ID+"/cancel", bob, nil).want(t, http.StatusOK)
	m := me(t, h, alice)
	if len(m.Projects) != 2 || m.Projects[0].Project != "chem01" || m.Projects[0].Jobs != 1 || m.Projects[1].Project != "open" {
		t.Fatalf("me projects: %+v", m.Projects)
	}
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	var page api.Page[api.ProjectUsage]
	h.do("GET", "/v1/usage?by=project", admin, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 2 || page.Items[1].Project != "open" || page.Items[1].Jobs != 2 || page.Items[1].ActiveJobs != 1 {
		t.Fatalf("usage by project: %+v", page.Items)
	}
	h.do("GET", "/v1/usage", alice, nil).want(t, http.StatusForbidden)
	h.do("GET", "/v1/usage?by=color", admin, nil).want(t, http.StatusUnprocessableEntity)
}

func TestDisableUser(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	alice := h.token("alice", time.Time{}, allScopes...)
	var held, pending api.Job
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated).decode(t, &held)
	h.do("POST", "/v1/jobs", alice, hello(map[string]any{"hold": false})).want(t, http.StatusCreated).decode(t, &pending)
	running, jt := h.jobToken("alice", nil)

	h.do("POST", "/v1/users/alice/disable", alice, map[string]any{}).want(t, http.StatusForbidden)
	h.do("POST", "/v1/users/alice/disable", admin, map[string]any{"jobs": "later"}).want(t, http.StatusUnprocessableEntity)
	h.do("GET", "/v1/me", alice, nil).want(t, http.StatusOK) // a refused disable changed nothing

	var st api.UserState
	h.do("POST", "/v1/users/alice/disable", admin, map[string]any{"jobs": "hold"}).want(t, http.StatusOK).decode(t, &st)
	if !st.Disabled || st.Held != 2 || st.Canceled != 1 {
		t.Fatalf("disable: %+v", st)
	}
	for _, tok := range []string{alice, jt} {
		r := h.do("GET", "/v1/me", tok, nil).want(t, http.StatusUnauthorized)
		if r.problem.Detail != "this token's user is disabled" {
			t.Fatalf("detail %q", r.problem.Detail)
		}
	}
	ctx := context.Background()
	for id, want := range map[string]job.State{held.ID: job.Held, pending.ID: job.Held, running.ID: job.Canceled} {
		if j, _ := h.store.GetJob(ctx, id); j.State != want {
			t.Errorf("job %s is %s, want %s", id, j.State, want)
		}
	}
	// the held job says why: it was not held by its user (found by the
	// sixth probe)
	if j, _ := h.store.GetJob(ctx, pending.ID); j.Reason != "held: the user alice was disabled by root" {
		t.Errorf("reason %q", j.Reason)
	}
	h.do("GET", "/v1/users/alice", admin, nil).want(t, http.StatusOK).decode(t, &st)
	if !st.Disabled || st.DisabledAt == nil {
		t.Fatalf("get: %+v", st)
	}
	// an admin does not release a disabled user's job: it would run with
	// a token that does not work (found by the eighth probe)
	if r := h.do("POST", "/v1/jobs/"+pending.ID+"/release", admin, nil).want(t, http.StatusConflict); !strings.Contains(r.problem.Detail, "the user alice is disabled") {
		t.Fatalf("release of a disabled user's job: %+v", r.problem)
	}
	h.do("POST", "/v1/users/alice/enable", admin, nil).want(t, http.StatusOK)
	h.do("GET", "/v1/me", alice, nil).want(t, http.StatusOK)
	h.do("POST", "/v1/jobs/"+pending.ID+"/release", alice, nil).want(t, http.StatusOK)
	if j, _ := h.store.GetJob(ctx, pending.ID); j.Reason != "released by alice" {
		t.Errorf("reason %q", j.Reason)
	}

	// cancel: every unfinished job ends.
	var st2 api.UserState
	h.do("POST", "/v1/users/alice/disable", admin, map[string]any{"jobs": "cancel"}).want(t, http.StatusOK).decode(t, &st2)
	if st2.Canceled != 2 || st2.Held != 0 {
		t.Fatalf("disable with cancel: %+v", st)
	}
}

// gatedBucket holds every Put until n have begun or a second has passed,
// so that uploads overlap as they would under load.
type gatedBucket struct {
	blob.Bucket
	mu      sync.Mutex
	arrived int
	n       int
	all     chan struct{}
}

func (b *gatedBucket) Put(ctx context.Context, key string, r io.Reader) (blob.Attrs, error) {
	b.mu.Lock()
	if b.arrived++; b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-time.After(time.Second):
	}
	return b.Bucket.Put(ctx, key, r)
}

// Empty files cost no bytes, so without a count of files a user could
// store them without end (an inode or an object each).
func TestQuotaFiles(t *testing.T) {
	h := quotaHarness(t, Quota{Files: 3})
	alice := h.token("alice", time.Time{}, allScopes...)
	for _, f := range []string{"a", "b"} {
		h.do("PUT", "/v1/files/"+f, alice, "").want(t, http.StatusCreated)
	}
	j, jt := h.jobToken("alice", nil)
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/out.txt", jt, "").want(t, http.StatusCreated)
	for _, c := range []struct{ path, tok string }{{"/v1/files/c", alice}, {"/v1/jobs/" + j.ID + "/outputs/more.txt", jt}} {
		r := h.do("PUT", c.path, c.tok, "").want(t, http.StatusConflict)
		if r.problem.Code != api.CodeQuotaExceeded || !strings.Contains(r.problem.Detail, "you store 3 files and outputs of a limit of 3") {
			t.Fatalf("%s: problem %+v", c.path, r.problem)
		}
	}
	h.do("GET", "/v1/files/c", alice, nil).want(t, http.StatusNotFound)
	// replacing a file is no new file
	h.do("PUT", "/v1/files/a", alice, "x").want(t, http.StatusCreated)
	if m := me(t, h, alice); m.Quotas["files"] != (api.Quota{Limit: 3, Used: 3}) || m.Quotas["bytes"].Used != 1 {
		t.Fatalf("me: %+v", m.Quotas)
	}
	// a deleted file, or a deleted job's outputs, make room
	h.do("DELETE", "/v1/files/b", alice, nil).want(t, http.StatusNoContent)
	h.do("PUT", "/v1/files/c", alice, "").want(t, http.StatusCreated)
	h.do("POST", "/v1/jobs/"+j.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	h.do("DELETE", "/v1/jobs/"+j.ID, alice, nil).want(t, http.StatusNoContent)
	if m := me(t, h, alice); m.Quotas["files"].Used != 2 {
		t.Fatalf("after deletes: %+v", m.Quotas)
	}
}

// Writes of one path take turns: each counts against what it saw first,
// so a PUT racing a DELETE of its path left its bytes and its file
// uncounted (the third probe stored 30 MiB with a use of 0), and two PUTs
// of one new path counted it twice.
func TestWritesOfOnePathTakeTurns(t *testing.T) {
	h := quotaHarness(t, Quota{Bytes: 1000, Files: 10})
	alice := h.token("alice", time.Time{}, allScopes...)
	pathTakesTurns(t, h, h, alice)

	// a job deleted while its output is written again: the deletion
	// takes the output's turn, and counts what it removes
	j, jt := h.jobToken("alice", nil)
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/o", jt, "0123456789").want(t, http.StatusCreated)
	finish, put := h.slowPut(jt, "/v1/jobs/"+j.ID+"/outputs/o", "ab", "cdef", 6)
	atTurn(t, h, outputsPrefix(j.ID)+"o", 1)
	h.do("POST", "/v1/jobs/"+j.ID+"/cancel", alice, nil).want(t, http.StatusOK)
	deleted := make(chan int, 1)
	go func() { deleted <- h.do("DELETE", "/v1/jobs/"+j.ID, alice, nil).status }()
	atTurn(t, h, outputsPrefix(j.ID)+"o", 2)
	finish()
	<-put
	if st := <-deleted; st != http.StatusNoContent {
		t.Fatalf("DELETE of the job: %d", st)
	}
	if m := me(t, h, alice); m.Quotas["bytes"].Used != 0 || m.Quotas["files"].Used != 0 {
		t.Fatalf("the job and its output deleted, and use %+v", m.Quotas)
	}
}

// pathTakesTurns checks that writes of one path through a and b (one
// server, or two replicas) take turns: a DELETE waits for the PUT before
// it and counts what it removes, and two PUTs of one new path count one
// file.
func pathTakesTurns(t *testing.T, a, b *harness, tok string) {
	t.Helper()
	second := 1 // writes at b's turn once a's PUT holds it
	if a == b {
		second = 2
	}
	key := userFilesKey("alice", "f")
	a.do("PUT", "/v1/files/f", tok, "0123456789").want(t, http.StatusCreated)
	finish, put := a.slowPut(tok, "/v1/files/f", "abc", "defghij", 10)
	atTurn(t, a, key, 1)
	deleted := make(chan int, 1)
	go func() { deleted <- b.do("DELETE", "/v1/files/f", tok, nil).status }()
	atTurn(t, b, key, second)
	select {
	case st := <-deleted:
		t.Fatalf("the DELETE answered %d while a PUT of the path ran", st)
	case <-time.After(200 * time.Millisecond):
	}
	finish()
	if st := <-put; st != http.StatusCreated {
		t.Fatalf("PUT: %d", st)
	}
	if st := <-deleted; st != http.StatusNoContent {
		t.Fatalf("DELETE: %d", st)
	}
	if m := me(t, b, tok); m.Quotas["bytes"].Used != 0 || m.Quotas["files"].Used != 0 {
		t.Fatalf("nothing stored, and use %+v", m.Quotas)
	}
	key = userFilesKey("alice", "g")
	finish1, put1 := a.slowPut(tok, "/v1/files/g", "ab", "c", 3)
	atTurn(t, a, key, 1)
	finish2, put2 := b.slowPut(tok, "/v1/files/g", "xy", "zw", 4)
	atTurn(t, b, key, second)
	finish1()
	finish2()
	if s1, s2 := <-put1, <-put2; s1 != http.StatusCreated || s2 != http.StatusCreated {
		t.Fatalf("PUTs: %d, %d", s1, s2)
	}
	got := string(a.do("GET", "/v1/files/g", tok, nil).want(t, http.StatusOK).body)
	if m := me(t, a, tok); m.Quotas["files"].Used != 1 || m.Quotas["bytes"].Used != int64(len(got)) {
		t.Fatalf("one file of %d bytes stored, and use %+v", len(got), m.Quotas)
	}
	a.do("DELETE", "/v1/files/g", tok, nil).want(t, http.StatusNoContent)
}

// atTurn waits up to 10 s until n writes of key are at h's turn for it,
// taking it or waiting for it.
func atTurn(t *testing.T, h *harness, key string, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		got := waitersOf(h.srv, key)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes of %s at their turn, want %d", got, key, n)
		}
	}
}

// waitersOf is how many writes of key are at srv's turn for it in its
// process, taking it or waiting for it.
func waitersOf(srv *Server, key string) int {
	var l *keyLocks
	switch r := srv.rooms.(type) {
	case *memRooms:
		l = &r.keys
	case *sharedRooms:
		l = &r.keys
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if kl := l.m[key]; kl != nil {
		return kl.waiters
	}
	return 0
}

// New files at once each hold their place in the files quota, as bytes
// do in the bytes quota: none may pass it together.
func TestConcurrentNewFilesKeepTheQuota(t *testing.T) {
	fb, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	gb := &gatedBucket{Bucket: fb, n: n, all: make(chan struct{})}
	h := newHarness(t, &harnessOptions{bucket: gb, opts: &Options{Quota: func(string) Quota { return Quota{Files: 3} }}})
	alice := h.token("alice", time.Time{}, allScopes...)
	var wg sync.WaitGroup
	var created atomic.Int32
	for i := range n {
		wg.Go(func() {
			r := h.do("PUT", fmt.Sprintf("/v1/files/f%d", i), alice, "")
			switch r.status {
			case http.StatusCreated:
				created.Add(1)
			case http.StatusConflict:
			default:
				t.Errorf("status %d", r.status)
			}
		})
	}
	wg.Wait()
	if m := me(t, h, alice); created.Load() != 3 || m.Quotas["files"].Used != 3 {
		t.Fatalf("%d of %d new files stored at once under a quota of 3; use %+v", created.Load(), n, m.Quotas["files"])
	}
}

// Uploads at once each checked the same room and together passed the
// bytes quota; each now holds its room before it is read.
func TestConcurrentUploadsKeepTheQuota(t *testing.T) {
	fb, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	gb := &gatedBucket{Bucket: fb, n: n, all: make(chan struct{})}
	var limit atomic.Int64
	limit.Store(100)
	h := newHarness(t, &harnessOptions{bucket: gb, opts: &Options{Quota: func(string) Quota { return Quota{Bytes: limit.Load()} }}})
	alice := h.token("alice", time.Time{}, allScopes...)
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/v1/files/f%d", h.http.URL, i), strings.NewReader(strings.Repeat("x", 30)))
			req.Header.Set("Authorization", "Bearer "+alice)
			resp, err := h.http.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	stored := 0
	for _, c := range codes {
		if c == http.StatusCreated {
			stored++
		} else if c != http.StatusConflict {
			t.Errorf("status %d", c)
		}
	}
	m := me(t, h, alice)
	if stored != 3 || m.Quotas["bytes"].Used != 90 {
		t.Fatalf("%d of %d uploads of 30 bytes stored under a quota of 100 (%v); use %+v", stored, n, codes, m.Quotas["bytes"])
	}
	// an upload of no known size holds its room as it reads, up to 64 MiB
	// at a time: here the 10 bytes left
	gb.mu.Lock()
	gb.arrived, gb.n, gb.all = 0, 2, make(chan struct{})
	gb.mu.Unlock()
	finish, done := h.slowPut(alice, "/v1/files/stream", "12345", "", -1)
	held := func() int64 {
		m := h.srv.rooms.(*memRooms)
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.held["alice"].Bytes
	}
	for deadline := time.Now().Add(10 * time.Second); held() != 10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the upload of no known size holds %d bytes, want the 10 left", held())
		}
	}
	h.do("PUT", "/v1/files/small", alice, "1").want(t, http.StatusConflict)
	finish()
	if st := <-done; st != http.StatusCreated {
		t.Fatalf("the upload of no known size: %d", st)
	}
	if used := me(t, h, alice).Quotas["bytes"].Used; used != 95 || held() != 0 {
		t.Fatalf("after it: %d bytes used, %d held; want 95 and none", used, held())
	}
	// over the quota (it was lowered, say), a file may still shrink
	limit.Store(50)
	h.do("PUT", "/v1/files/stream", alice, "1").want(t, http.StatusCreated)
	h.do("PUT", "/v1/files/stream", alice, "12").want(t, http.StatusConflict)
}

// An admin lists another user's jobs (owner=NAME, or * for everyone's);
// anyone else naming another user is refused, where the parameter was
// ignored without a word (found by the sixth probe).
func TestAdminListsAUsersJobs(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	alice := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated)
	h.do("POST", "/v1/jobs", bob, hello(nil)).want(t, http.StatusCreated)
	count := func(tok, query string) int {
		t.Helper()
		var page api.Page[api.Job]
		h.do("GET", "/v1/jobs"+query, tok, nil).want(t, http.StatusOK).decode(t, &page)
		return len(page.Items)
	}
	if n := count(admin, "?owner=alice"); n != 1 {
		t.Errorf("admin, owner=alice: %d jobs", n)
	}
	if n := count(admin, "?owner=*"); n != 2 {
		t.Errorf("admin, owner=*: %d jobs", n)
	}
	if n := count(alice, "?owner=alice"); n != 1 {
		t.Errorf("alice, owner=alice: %d jobs", n)
	}
	for _, q := range []string{"?owner=bob", "?owner=*"} {
		if r := h.do("GET", "/v1/jobs"+q, alice, nil).want(t, http.StatusForbidden); !strings.Contains(r.problem.Detail, "only admins") {
			t.Errorf("alice, %s: %+v", q, r.problem)
		}
	}
}

// A name no one has (a typo) is no user: disabling it answered that it
// was disabled, and showing it that it was enabled (found by the sixth
// probe).
func TestUnknownUserIsNotFound(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	h.token("alice", time.Time{}, allScopes...)
	h.do("POST", "/v1/users/alcie/disable", admin, map[string]any{}).want(t, http.StatusNotFound)
	h.do("GET", "/v1/users/alcie", admin, nil).want(t, http.StatusNotFound)
	h.do("GET", "/v1/users/alice", admin, nil).want(t, http.StatusOK)
	h.do("POST", "/v1/users/alice/disable", admin, map[string]any{}).want(t, http.StatusOK)
	// disabled, a user is known even once their tokens are gone
	h.do("GET", "/v1/users/alice", admin, nil).want(t, http.StatusOK)
}

// Uploads of no known size hold their user's room as they read, a little
// at first: each held 64 MiB at once, and five uploads of 1 MiB under a
// quota of 50 MiB got one 201 and four 409s saying the user stored 50
// MiB, who stored nothing (found by the eighth probe).
func TestUploadsOfNoKnownSizeHoldLittleAtFirst(t *testing.T) {
	h := quotaHarness(t, Quota{Bytes: 5 << 20})
	alice := h.token("alice", time.Time{}, allScopes...)
	var dones []<-chan int
	for i := range 3 {
		finish, done := h.slowPut(alice, fmt.Sprintf("/v1/files/stream%d", i), "x", "", -1)
		defer finish()
		dones = append(dones, done)
	}
	held := func() int64 {
		m := h.srv.rooms.(*memRooms)
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.held["alice"].Bytes
	}
	for deadline := time.Now().Add(10 * time.Second); held() != 3*holdFirst; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("three uploads of no known size hold %d bytes, want %d", held(), 3*holdFirst)
		}
	}
	// room is left for a file of 2 MiB while they go on
	h.do("PUT", "/v1/files/known", alice, strings.Repeat("k", 2<<20)).want(t, http.StatusCreated)
	r := h.do("PUT", "/v1/files/more", alice, strings.Repeat("k", 1<<20)).want(t, http.StatusConflict)
	if !strings.Contains(r.problem.Detail, "uploads in progress") {
		t.Errorf("the refusal does not say that uploads hold room: %s", r.problem.Detail)
	}
}
