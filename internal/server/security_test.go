package server

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/config"
)

var userScopes = []string{api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite}

// A path segment over 255 bytes used to reach the file system and answer
// 500 ("file name too long"); it is a 4xx naming the field everywhere.
func TestLongPathSegmentsAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	long := "inputs/" + strings.Repeat("n", 256)
	for _, method := range []string{"PUT", "GET", "HEAD", "DELETE"} {
		r := h.do(method, "/v1/files/"+long, tok, "x")
		if r.status != http.StatusBadRequest {
			t.Errorf("%s /v1/files/<256-byte name>: %d, want 400: %s", method, r.status, r.body)
		}
		if method != "HEAD" && r.field("path") == "" {
			t.Errorf("%s: no error names the field path: %s", method, r.body)
		}
	}
	r := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "wordcount", "inputs": map[string]string{"text": long}, "parameters": map[string]any{"min_length": 0}})
	r.want(t, http.StatusUnprocessableEntity)
	if r.field("inputs.text") == "" || r.field("parameters.min_length") == "" {
		t.Errorf("want field errors for inputs.text beside parameters.min_length: %s", r.body)
	}
	j, jt := h.jobToken("alice", nil)
	r = h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/"+long, jt, "x")
	if r.status != http.StatusBadRequest || r.field("path") == "" {
		t.Errorf("agent output with a 256-byte name: %d %s", r.status, r.body)
	}
	if strings.Contains(h.logs.String(), "too long") {
		t.Errorf("the file system saw the name: %s", h.logs)
	}
}

// A minted token never outlives its maker and never has more scopes.
func TestMintedTokensNeverOutliveTheirMaker(t *testing.T) {
	h := newHarness(t, nil)
	short := h.token("alice", time.Now().Add(60*time.Second), userScopes...)
	for _, expires := range []int64{0, 10 * 365 * 24 * 3600, 3600} {
		r := h.do("POST", "/v1/tokens", short, map[string]any{"scopes": []string{api.ScopeJobsRead}, "expires_in_s": expires})
		if expires == 0 {
			// No lifetime asked for: the maker's.
			r.want(t, http.StatusCreated)
			var tok api.Token
			r.decode(t, &tok)
			if tok.ExpiresAt == nil || tok.ExpiresAt.After(time.Now().Add(61*time.Second)) {
				t.Errorf("a token minted without expires_in_s by a 60 s token expires at %v", tok.ExpiresAt)
			}
			continue
		}
		r.want(t, http.StatusUnprocessableEntity)
		if r.field("expires_in_s") == "" {
			t.Errorf("expires_in_s=%d: no field error: %s", expires, r.body)
		}
	}
	r := h.do("POST", "/v1/tokens", short, map[string]any{"scopes": []string{api.ScopeJobsRead}, "expires_in_s": 30})
	r.want(t, http.StatusCreated)

	narrow := h.token("alice", time.Time{}, api.ScopeFilesRead)
	h.do("POST", "/v1/tokens", narrow, map[string]any{"scopes": []string{api.ScopeJobsWrite}}).want(t, http.StatusForbidden)
	h.do("POST", "/v1/tokens", narrow, map[string]any{"scopes": []string{api.ScopeFilesRead}}).want(t, http.StatusCreated)
}

// Naming a file as an input needs the right to read it.
func TestInputsNeedTheRightToReadThem(t *testing.T) {
	h := newHarness(t, nil)
	h.put("alice", "secret.txt", "the owner's file")
	h.put("alice", "given.txt", "the job's input")
	req := func(path string) map[string]any {
		return map[string]any{"template": "wordcount", "inputs": map[string]string{"text": path}}
	}
	// A user token without files:read.
	noRead := h.token("alice", time.Time{}, api.ScopeJobsWrite, api.ScopeJobsRead)
	r := h.do("POST", "/v1/jobs", noRead, req("secret.txt"))
	r.want(t, http.StatusForbidden)
	if !strings.Contains(r.problem.Detail, api.ScopeFilesRead) {
		t.Errorf("the refusal does not name the scope: %s", r.body)
	}
	withRead := h.token("alice", time.Time{}, api.ScopeJobsWrite, api.ScopeFilesRead)
	h.do("POST", "/v1/jobs", withRead, req("secret.txt")).want(t, http.StatusCreated)

	// A job token: only the files its job was given.
	_, jt := h.jobToken("alice", map[string]string{"text": "given.txt"})
	r = h.do("POST", "/v1/jobs", jt, req("secret.txt"))
	r.want(t, http.StatusUnprocessableEntity)
	if r.field("inputs.text") == "" {
		t.Errorf("no field error for inputs.text: %s", r.body)
	}
	h.do("POST", "/v1/jobs", jt, req("given.txt")).want(t, http.StatusCreated)
}

// A token revokes only tokens no broader and no longer-lived than itself.
func TestRevokeOnlyNarrowerTokens(t *testing.T) {
	h := newHarness(t, nil)
	broad := h.token("alice", time.Time{}, userScopes...)
	narrow := h.token("alice", time.Time{}, api.ScopeFilesRead)
	short := h.token("alice", time.Now().Add(time.Hour), userScopes...)
	var page api.Page[api.Token]
	h.do("GET", "/v1/tokens", broad, nil).want(t, 200).decode(t, &page)
	var broadID, narrowID, shortID string
	for _, tk := range page.Items {
		switch {
		case len(tk.Scopes) == 1:
			narrowID = tk.ID
		case tk.ExpiresAt != nil:
			shortID = tk.ID
		default:
			broadID = tk.ID
		}
	}
	r := h.do("DELETE", "/v1/tokens/"+broadID, narrow, nil)
	r.want(t, http.StatusForbidden)
	h.do("DELETE", "/v1/tokens/"+broadID, short, nil).want(t, http.StatusForbidden) // lives longer than short
	h.do("GET", "/v1/me", broad, nil).want(t, 200)
	h.do("DELETE", "/v1/tokens/"+shortID, broad, nil).want(t, http.StatusNoContent)
	h.do("DELETE", "/v1/tokens/"+narrowID, narrow, nil).want(t, http.StatusNoContent) // itself
	h.do("GET", "/v1/me", narrow, nil).want(t, http.StatusUnauthorized)
	admin := h.token("root", time.Now().Add(time.Minute), api.ScopeAdmin)
	h.do("DELETE", "/v1/tokens/"+broadID, admin, nil).want(t, http.StatusNoContent)
}

// The same Idempotency-Key with another body is refused; with the same
// body it keeps answering the first job.
func TestIdempotencyKeyWithAnotherBody(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	first := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "hold": true}, "Idempotency-Key", "k1")
	first.want(t, http.StatusCreated)
	var j1, j2 api.Job
	first.decode(t, &j1)
	again := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "hold": true}, "Idempotency-Key", "k1")
	again.want(t, http.StatusOK).decode(t, &j2)
	if j1.ID != j2.ID {
		t.Fatalf("same key, same body: job %s, then %s", j1.ID, j2.ID)
	}
	other := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "b"}, "hold": true}, "Idempotency-Key", "k1")
	other.want(t, http.StatusUnprocessableEntity)
	if other.problem.Code != api.CodeIdempotencyMismatch || !strings.Contains(other.problem.Detail, "Idempotency-Key") {
		t.Errorf("unclear refusal: %s", other.body)
	}
}

// A job token's Idempotency-Keys are its job's own: one its owner used
// answered the owner's job in full (a job token cannot read it), or named
// it in a 422; and a job took keys its owner would use later (found by the
// seventh probe). A key sent twice is refused, not the first one used.
func TestIdempotencyKeysOfAJobAreItsOwn(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, userScopes...)
	body := map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "hold": true}
	var owners, childs, again api.Job
	h.do("POST", "/v1/jobs", alice, body, "Idempotency-Key", "k1").want(t, http.StatusCreated).decode(t, &owners)
	_, jobTok := h.jobToken("alice", nil)
	h.do("POST", "/v1/jobs", jobTok, body, "Idempotency-Key", "k1").want(t, http.StatusCreated).decode(t, &childs)
	if childs.ID == owners.ID || childs.ParentID == "" {
		t.Fatalf("the job's request made %+v", childs)
	}
	other := map[string]any{"template": "hello", "parameters": map[string]any{"name": "b"}, "hold": true}
	r := h.do("POST", "/v1/jobs", jobTok, other, "Idempotency-Key", "k1").want(t, http.StatusUnprocessableEntity)
	if strings.Contains(string(r.body), owners.ID) || !strings.Contains(r.problem.Detail, `"k1"`) || !strings.Contains(r.problem.Detail, childs.ID) {
		t.Errorf("refusal %s: want the job's own child named, and its key as sent", r.body)
	}
	h.do("POST", "/v1/jobs", jobTok, body, "Idempotency-Key", "k1").want(t, http.StatusOK).decode(t, &again)
	if again.ID != childs.ID {
		t.Errorf("the job's retry answered %s, want its own %s", again.ID, childs.ID)
	}
	// a key the job used first is still the owner's to use
	var later api.Job
	h.do("POST", "/v1/jobs", jobTok, body, "Idempotency-Key", "k2").want(t, http.StatusCreated)
	h.do("POST", "/v1/jobs", alice, body, "Idempotency-Key", "k2").want(t, http.StatusCreated).decode(t, &later)
	if later.ParentID != "" {
		t.Errorf("the owner's request answered the job's child %+v", later)
	}
	tasks := h.token("alice", time.Time{}, append(userScopes, api.ScopeTasks)...)
	for _, route := range []string{"/v1/jobs", "/v1/sweeps", "/ga4gh/tes/v1/tasks"} {
		r := h.do("POST", route, tasks, body, "Idempotency-Key", "k3", "Idempotency-Key", "k4")
		if r.status/100 != 4 || len(r.problem.Errors) == 0 || r.problem.Errors[0].Field != "Idempotency-Key" {
			t.Errorf("%s with two keys: %d %s", route, r.status, r.body)
		}
	}
}

// Parsing is strict where it must be and lenient where the standard says.
func TestStrictAndLenientParsing(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	body := `{"template":"hello","parameters":{"name":"a"},"hold":true}`
	r := h.do("POST", "/v1/jobs", tok, body, "Content-Type", "text/plain")
	r.want(t, http.StatusUnsupportedMediaType)
	// an encoded body, or JSON in another charset: the gateway stored a
	// gzip body's bytes as the file's (found by the seventh probe)
	h.do("PUT", "/v1/files/g.txt", tok, "\x1f\x8b...", "Content-Encoding", "gzip").want(t, http.StatusUnsupportedMediaType)
	h.do("HEAD", "/v1/files/g.txt", tok, nil).want(t, http.StatusNotFound)
	h.do("POST", "/v1/jobs", tok, body, "Content-Type", "application/json; charset=latin1").want(t, http.StatusUnsupportedMediaType)
	h.do("PUT", "/v1/files/i.txt", tok, "plain", "Content-Encoding", "identity").want(t, http.StatusCreated)
	h.do("POST", "/v1/jobs", tok, body, "Content-Type", "application/json; charset=utf-8").want(t, http.StatusCreated)

	bad := []byte(`{"template":"hello","parameters":{"name":"a` + "\xff\xfe" + `"},"hold":true}`)
	r = h.do("POST", "/v1/jobs", tok, bad, "Content-Type", "application/json")
	r.want(t, http.StatusUnprocessableEntity)
	if r.field("parameters.name") == "" {
		t.Errorf("invalid UTF-8: no field error for parameters.name: %s", r.body)
	}
	var n int
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs", tok, nil).want(t, 200).decode(t, &page)
	n = len(page.Items)
	if n != 1 {
		t.Errorf("%d jobs stored, want 1: a refused request changed something", n)
	}

	for _, scheme := range []string{"bearer", "BEARER", "Bearer"} {
		req, _ := http.NewRequest("GET", h.http.URL+"/v1/me", nil)
		req.Header.Set("Authorization", scheme+" "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("scheme %q: %d, want 200", scheme, resp.StatusCode)
		}
	}
}

// A request can hold a fault every few bytes: an answer listed each
// twice (in errors and in detail), 18 MB for a body of 1 MiB. It lists
// the first 100 and says how many there are; detail names the first ten.
func TestManyFaultsAnswerSmall(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	params := map[string]any{"name": "a"}
	for i := range 1000 {
		params[fmt.Sprintf("x%d", i)] = 1
	}
	r := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": params}).want(t, http.StatusUnprocessableEntity)
	if len(r.problem.Errors) != maxFieldErrors || r.problem.Errors[0].Field != "parameters.x0" {
		t.Errorf("%d field errors listed, want the first %d", len(r.problem.Errors), maxFieldErrors)
	}
	if !strings.Contains(r.problem.Detail, "the first 100 of 1000") || !strings.Contains(r.problem.Detail, "and 990 more") || len(r.body) > 16<<10 {
		t.Errorf("detail %q (answer of %d bytes): want the count, ten faults named, and a small answer", r.problem.Detail, len(r.body))
	}
}

// A job's parameters were bounded only by the body: a number of 1 MB of
// digits fits a template's "type: number" and was stored as written, and
// a page of 1,000 such jobs was a gigabyte to read and send.
func TestParametersAreBounded(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	long := "1." + strings.Repeat("0", catalog.MaxParameterBytes)
	r := h.do("POST", "/v1/jobs", tok, fmt.Sprintf(`{"template":"evaluate","parameters":{"x":%s},"hold":true}`, long), "Content-Type", "application/json").want(t, http.StatusUnprocessableEntity)
	if !strings.Contains(r.field("parameters"), "input file") {
		t.Fatalf("no error for parameters that names the limit: %s", r.body)
	}
	fits := "1." + strings.Repeat("0", catalog.MaxParameterBytes-16)
	h.do("POST", "/v1/jobs", tok, fmt.Sprintf(`{"template":"evaluate","parameters":{"x":%s},"hold":true}`, fits), "Content-Type", "application/json").want(t, http.StatusCreated)
}

// A refusal quoted what was refused whole: a notify URL of 1 MiB came
// back in the answer twice (six times as long where JSON escapes it).
// Messages and details are clipped.
func TestRefusalsDoNotEchoWholeValues(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	long := "https://example.org/" + strings.Repeat("a", 200<<10)
	r := h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "notify": map[string]any{"url": long}}).
		want(t, http.StatusUnprocessableEntity)
	if r.field("notify.url") == "" || len(r.body) > 16<<10 {
		t.Fatalf("an answer of %d bytes, notify.url %.100q", len(r.body), r.field("notify.url"))
	}
}

// A job keeps the template it was accepted with: a reload that changes
// the template (or a replica without it) changes nothing for it.
func TestAcceptedJobKeepsItsTemplate(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	var j api.Job
	h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}}).want(t, http.StatusCreated).decode(t, &j)
	var before api.Spec
	jt := h.tokenForJob("alice", j.ID)
	h.do("GET", "/v1/jobs/"+j.ID+"/spec", jt, nil).want(t, 200).decode(t, &before)

	other := fstest.MapFS{"hello.yaml": {Data: []byte("name: hello\nversion: 1\ndescription: changed\ncommand: [\"sh\", \"-c\", \"echo other code\"]\nenvironments: [local]\n")}}
	cat, err := catalog.Load(config.Default().Environments, other)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.SetCatalog(cat)
	var after api.Spec
	h.do("GET", "/v1/jobs/"+j.ID+"/spec", jt, nil).want(t, 200).decode(t, &after)
	if !slices.Equal(after.Command, before.Command) || slices.Contains(after.Command, "echo other code") {
		t.Fatalf("the job's command changed with the catalogue: %q, then %q", before.Command, after.Command)
	}
	// Without the template at all, too.
	empty, err := catalog.Load(config.Default().Environments)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.SetCatalog(empty)
	h.do("GET", "/v1/jobs/"+j.ID+"/spec", jt, nil).want(t, 200)
}

// A page of files starts where the last one ended: each page used to list
// every file from the first on, so reading N files in pages cost N²/limit.
func TestFilePagesStartWhereTheLastEnded(t *testing.T) {
	fb, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cb := &countingBucket{Bucket: fb}
	h := newHarness(t, &harnessOptions{bucket: cb})
	tok := h.token("alice", time.Time{}, userScopes...)
	var want []string
	for i := range 40 {
		p := fmt.Sprintf("d%d/f%02d", i%4, i)
		want = append(want, p)
		if _, err := fb.Put(context.Background(), userFilesKey("alice", p), strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(want)
	var got []string
	pages := 0
	for q := "limit=7"; ; pages++ {
		var page api.Page[api.FileInfo]
		h.do("GET", "/v1/files?"+q, tok, nil).want(t, http.StatusOK).decode(t, &page)
		for _, f := range page.Items {
			got = append(got, f.Path)
		}
		if page.NextPageToken == "" {
			break
		}
		q = "limit=7&page_token=" + page.NextPageToken
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pages listed %q, want %q", got, want)
	}
	// each page reads its own files and the first of the next
	if n := int(cb.listed.Load()); n > len(want)+pages+1 {
		t.Errorf("%d pages passed over %d files to list %d", pages+1, n, len(want))
	}
}

// Three answers the running server's third probe found: a malformed page
// token of a job's children, and a file path through another file, were
// 500s; a body of the wrong JSON type named the server's Go types.
func TestThirdProbeAnswers(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	var j api.Job
	h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "hold": true}).want(t, http.StatusCreated).decode(t, &j)
	for _, bad := range []string{"zzz", "cw", "%00"} {
		r := h.do("GET", "/v1/jobs/"+j.ID+"/children?page_token="+bad, tok, nil).want(t, http.StatusUnprocessableEntity)
		if len(r.problem.Errors) != 1 || r.problem.Errors[0].Field != "page_token" {
			t.Errorf("page token %q: %+v", bad, r.problem)
		}
	}
	h.do("PUT", "/v1/files/cf/a", tok, "x").want(t, http.StatusCreated)
	h.do("PUT", "/v1/files/cf/x/y", tok, "x").want(t, http.StatusCreated)
	for _, p := range []string{"cf/a/b", "cf/x"} {
		r := h.do("PUT", "/v1/files/"+p, tok, "y").want(t, http.StatusConflict)
		if !strings.Contains(r.problem.Detail, "part of this path") {
			t.Errorf("PUT %s: %+v", p, r.problem)
		}
	}
	if m := me(t, h, tok); m.Quotas["files"].Used != 2 || m.Quotas["bytes"].Used != 2 {
		t.Errorf("refused writes were counted: %+v", m.Quotas)
	}
	for _, c := range []struct {
		body any
		want string
	}{
		{map[string]any{"template": "hello", "after": map[string]any{}}, "after: must be an array, not object"},
		{map[string]any{"template": "hello", "labels": []string{"x"}}, "labels: must be an object, not array"},
		{map[string]any{"template": "hello", "hold": "yes"}, "hold: must be true or false, not string"},
		{map[string]any{"template": "hello", "after": []any{map[string]any{"job": "a"}, map[string]any{"job": 5}}}, "after[1].job: must be a string, not number"},
		{map[string]any{"template": "hello", "inputs": map[string]any{"text": []string{"a"}}}, "inputs.text: must be a string, not array"},
		{map[string]any{"template": "hello", "resources": map[string]any{"nodes": 1, "bogus": 2}}, "resources.bogus: unknown field; the fields here: nodes, cores_per_node, memory_mb, walltime_s"},
		{map[string]any{"template": "hello", "after": []any{map[string]any{"job": "a"}, map[string]any{"jbo": "b"}}}, "after[1].jbo: unknown field; the fields here: job, sweep, when"},
		// a key in two places is named alone, with no members said (the
		// top level's were, found by review)
		{map[string]any{"template": "hello", "labels": map[string]any{"bogus": "x"}, "resources": map[string]any{"bogus": 2}}, "bogus: unknown field"},
		{map[string]any{"template": "hello", "bogus": 1}, "bogus: unknown field; the fields here: template, version, name, parameters, inputs, environment, resources, labels, hold, project, detached, after, notify"},
	} {
		r := h.do("POST", "/v1/jobs", tok, c.body).want(t, http.StatusUnprocessableEntity)
		if r.problem.Detail != c.want {
			t.Errorf("detail %q, want %q", r.problem.Detail, c.want)
		}
	}
}

// A path with . or .. segments was redirected (307) to its clean form by
// Go's router, which is another route: the CLI's "rm ../jobs/ID"
// followed it and deleted the job, "rm ../tokens/ID" revoked a token.
// Such a path is refused, and nothing changes; escaped dots reach the
// files' own check, which names the field.
func TestDotSegmentsAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	var j api.Job
	h.do("POST", "/v1/jobs", tok, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "hold": true}).want(t, http.StatusCreated).decode(t, &j)
	h.do("PUT", "/v1/files/keep.txt", tok, "x").want(t, http.StatusCreated)
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/v1/files/../jobs/" + j.ID},
		{"GET", "/v1/files/../me"},
		{"DELETE", "/v1/files/./keep.txt"},
		{"PUT", "/v1/files/a//b"},
		{"PUT", "/v1/files/a/./b"},
		{"GET", "/v1/jobs/" + j.ID + "/outputs/../../../files/keep.txt"},
	} {
		r := h.do(c.method, c.path, tok, nil).want(t, http.StatusBadRequest)
		// with a request id, as every answer (it had none: found by the
		// seventh probe)
		if !strings.Contains(r.problem.Detail, "segments") || r.problem.RequestID == "" || r.header.Get("X-Request-Id") != r.problem.RequestID {
			t.Errorf("%s %s: %s", c.method, c.path, r.body)
		}
	}
	// escaped: what a normalising proxy would pass on as another route,
	// and what the router's trailing-slash redirect decoded
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/v1/files/%2E%2E/jobs/" + j.ID},
		{"DELETE", "/v1/files/%2e%2e%2Fjobs%2F" + j.ID},
		{"PUT", "/v1/jobs/a%2F..%2F..%2Fx/outputs"},
		{"GET", "/v1/files/a%2F%2Fb"},
	} {
		r := h.do(c.method, c.path, tok, nil).want(t, http.StatusBadRequest)
		if !strings.Contains(r.problem.Detail, "segments") {
			t.Errorf("%s %s: %s", c.method, c.path, r.body)
		}
	}
	h.do("GET", "/v1/jobs/"+j.ID, tok, nil).want(t, http.StatusOK)
	h.do("GET", "/v1/files/keep.txt", tok, nil).want(t, http.StatusOK)
	// a file name with an escaped character that is no separator is fine
	h.do("PUT", "/v1/files/a%20b%3Fc.txt", tok, "x").want(t, http.StatusCreated)
	h.do("GET", "/v1/files/a%20b%3Fc.txt", tok, nil).want(t, http.StatusOK)
}

// Names and labels are shown on other people's terminals (an admin lists
// every user's tokens and jobs): a control character in one could retitle,
// clear or script the terminal. Each is refused by field, and nothing is
// made (found by the sixth probe).
func TestControlCharactersRefused(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, append(allScopes, api.ScopeTasks)...)
	evil := "x\x1b]0;pwned\x07\x1b[2J"
	for _, c := range []struct {
		path  string
		body  map[string]any
		field string
	}{
		{"/v1/jobs", hello(map[string]any{"name": evil}), "name"},
		{"/v1/jobs", hello(map[string]any{"labels": map[string]string{"k": evil}}), "labels.k"},
		{"/v1/jobs", hello(map[string]any{"name": "a\u009b2J"}), "name"},
		// format characters (found by the seventh probe)
		{"/v1/jobs", hello(map[string]any{"name": "safe\u202efdp.exe"}), "name"},
		{"/v1/jobs", hello(map[string]any{"labels": map[string]string{"k": "zero\u200bwidth"}}), "labels.k"},
		{"/v1/sweeps", map[string]any{"template": "hello", "hold": true, "labels": map[string]string{"k": "v\n"}, "variants": []map[string]any{{"name": "p"}}}, "labels.k"},
		{"/v1/tokens", map[string]any{"scopes": []string{api.ScopeJobsRead}, "name": evil}, "name"},
		{tesBase + "/tasks", map[string]any{"name": evil, "executors": []map[string]any{{"image": "alpine", "command": []string{"true"}}}}, "name"},
		{tesBase + "/tasks", map[string]any{"tags": map[string]string{"k": evil}, "executors": []map[string]any{{"image": "alpine", "command": []string{"true"}}}}, "tags.k"},
	} {
		want := http.StatusUnprocessableEntity
		if strings.HasPrefix(c.path, tesBase) {
			want = http.StatusBadRequest // TES's answer to an invalid task
		}
		r := h.do("POST", c.path, alice, c.body).want(t, want)
		if r.field(c.field) == "" {
			t.Errorf("%s %v: no error for %s: %s", c.path, c.body, c.field, r.body)
		}
	}
	if r := h.do("PUT", "/v1/files/safe\u202efdp.exe", alice, "x").want(t, http.StatusBadRequest); r.field("path") == "" {
		t.Errorf("a file path with a format character: %s", r.body)
	}
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs", alice, nil).want(t, http.StatusOK).decode(t, &page)
	var toks api.Page[api.Token]
	h.do("GET", "/v1/tokens", alice, nil).want(t, http.StatusOK).decode(t, &toks)
	if len(page.Items) != 0 || len(toks.Items) != 1 {
		t.Fatalf("refused requests made %d jobs and %d tokens", len(page.Items), len(toks.Items)-1)
	}
	// text that is no control character is a name like any other
	h.do("POST", "/v1/jobs", alice, hello(map[string]any{"name": "Ölbild 日本 – v2", "labels": map[string]string{"k": "é ü"}})).want(t, http.StatusCreated)
}

// A new token's secret, a user's files and every other answer of the API
// are one user's: no browser or proxy may keep them (found by the sixth
// probe: POST /v1/tokens answered with no Cache-Control).
func TestAnswersAreNotStored(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	h.do("PUT", "/v1/files/f", alice, "data").want(t, http.StatusCreated)
	for _, r := range []*response{
		h.do("POST", "/v1/tokens", alice, map[string]any{"scopes": []string{api.ScopeJobsRead}}).want(t, http.StatusCreated),
		h.do("GET", "/v1/me", alice, nil).want(t, http.StatusOK),
		h.do("GET", "/v1/files/f", alice, nil).want(t, http.StatusOK),
		h.do("GET", "/v1/jobs/nosuchjob", alice, nil).want(t, http.StatusNotFound),
	} {
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q on %s", cc, r.body)
		}
	}
}

// The last admin token cannot be revoked: no one could have administered
// the gateway again, and its admin.token said nothing (found by the sixth
// probe). Once there is another, it can.
func TestLastAdminTokenStays(t *testing.T) {
	h := newHarness(t, nil)
	var first api.Token
	boot := h.token("admin", time.Time{}, api.ScopeAdmin)
	h.do("POST", "/v1/tokens", boot, map[string]any{"scopes": []string{api.ScopeAdmin}}).want(t, http.StatusCreated).decode(t, &first)
	var toks api.Page[api.Token]
	h.do("GET", "/v1/tokens", boot, nil).want(t, http.StatusOK).decode(t, &toks)
	bootID := ""
	for _, tk := range toks.Items {
		if tk.ID != first.ID {
			bootID = tk.ID
		}
	}
	h.do("DELETE", "/v1/tokens/"+bootID, first.Token, nil).want(t, http.StatusNoContent)
	r := h.do("DELETE", "/v1/tokens/"+first.ID, first.Token, nil).want(t, http.StatusConflict)
	if !strings.Contains(r.problem.Detail, "last admin token") {
		t.Fatalf("problem %+v", r.problem)
	}
	h.do("GET", "/v1/me", first.Token, nil).want(t, http.StatusOK)

	// a disabled user's admin tokens do not count (found by review): once
	// ops has disabled admin, ops's is the last one
	var ops api.Token
	h.do("POST", "/v1/tokens", first.Token, map[string]any{"user": "ops", "scopes": []string{api.ScopeAdmin}}).want(t, http.StatusCreated).decode(t, &ops)
	h.do("POST", "/v1/users/admin/disable", ops.Token, map[string]any{}).want(t, http.StatusOK)
	if r := h.do("DELETE", "/v1/tokens/"+ops.ID, ops.Token, nil).want(t, http.StatusConflict); !strings.Contains(r.problem.Detail, "last admin token") {
		t.Fatalf("problem %+v", r.problem)
	}
	h.do("POST", "/v1/users/admin/enable", ops.Token, nil).want(t, http.StatusOK)
	h.do("DELETE", "/v1/tokens/"+ops.ID, ops.Token, nil).want(t, http.StatusNoContent)

	// nor can the last admin's user be disabled, and two admins who
	// disable each other at once, or revoke their own tokens at once, do
	// not both succeed (found by the eighth probe: no admin was left)
	h.do("POST", "/v1/tokens", first.Token, map[string]any{"user": "ops", "scopes": []string{api.ScopeAdmin}}).want(t, http.StatusCreated).decode(t, &ops)
	h.do("POST", "/v1/users/ops/disable", ops.Token, map[string]any{}).want(t, http.StatusUnprocessableEntity) // not oneself
	h.do("POST", "/v1/users/admin/disable", ops.Token, map[string]any{}).want(t, http.StatusOK)
	if r := h.do("POST", "/v1/users/ops/disable", first.Token, map[string]any{}); r.status != http.StatusUnauthorized {
		t.Fatalf("a disabled admin disabled the last one: %d %s", r.status, r.body)
	}
	h.do("POST", "/v1/users/admin/enable", ops.Token, nil).want(t, http.StatusOK)
	for round := 0; round < 5; round++ {
		codes := make(chan int, 2)
		for _, pair := range [][2]string{{first.Token, "ops"}, {ops.Token, "admin"}} {
			go func() { codes <- h.do("POST", "/v1/users/"+pair[1]+"/disable", pair[0], map[string]any{}).status }()
		}
		a, b := <-codes, <-codes
		if a == http.StatusOK && b == http.StatusOK {
			t.Fatalf("round %d: two admins disabled each other", round)
		}
		for _, u := range []string{"ops", "admin"} {
			h.do("POST", "/v1/users/"+u+"/enable", first.Token, nil)
			h.do("POST", "/v1/users/"+u+"/enable", ops.Token, nil)
		}
	}
	var second api.Token
	h.do("POST", "/v1/tokens", first.Token, map[string]any{"scopes": []string{api.ScopeAdmin}}).want(t, http.StatusCreated).decode(t, &second)
	h.do("DELETE", "/v1/tokens/"+ops.ID, first.Token, nil).want(t, http.StatusNoContent)
	codes := make(chan int, 2)
	for _, tk := range []api.Token{first, second} {
		go func() { codes <- h.do("DELETE", "/v1/tokens/"+tk.ID, tk.Token, nil).status }()
	}
	if a, b := <-codes, <-codes; a == http.StatusNoContent && b == http.StatusNoContent {
		t.Fatal("the last two admin tokens revoked themselves at once")
	}
}

// A user's token limit holds under parallel requests: each checked the
// count, then all made one (found by the eighth probe: 1,020 of 1,000).
func TestTokenLimitUnderRace(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	for i := 0; i < maxTokens-5; i++ {
		h.token("carol", time.Time{}, api.ScopeJobsRead)
	}
	codes := make(chan int, 20)
	for i := 0; i < 20; i++ {
		go func() {
			codes <- h.do("POST", "/v1/tokens", admin, map[string]any{"user": "carol", "scopes": []string{api.ScopeJobsRead}}).status
		}()
	}
	made := 0
	for i := 0; i < 20; i++ {
		if <-codes == http.StatusCreated {
			made++
		}
	}
	var toks api.Page[api.Token]
	h.do("GET", "/v1/tokens?user=carol", admin, nil).want(t, http.StatusOK).decode(t, &toks)
	if made != 5 || len(toks.Items) != maxTokens {
		t.Fatalf("%d made, carol holds %d tokens; want 5 and %d", made, len(toks.Items), maxTokens)
	}
}

// A query parameter a route does not take is refused, naming it and those
// the route takes (openapi.json says which): an admin's ?user=alice on
// GET /v1/jobs, which takes owner=, listed the admin's own jobs without a
// word (found by the sixth probe).
func TestUnknownQueryParameterRefused(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	r := h.do("GET", "/v1/jobs?user=alice", admin, nil).want(t, http.StatusBadRequest)
	if r.field("user") == "" || !strings.Contains(r.problem.Detail, "owner") {
		t.Fatalf("problem %+v", r.problem)
	}
	if r := h.do("GET", "/v1/me?x=1", admin, nil).want(t, http.StatusBadRequest); !strings.Contains(r.problem.Detail, "takes none") {
		t.Fatalf("problem %+v", r.problem)
	}
	h.do("GET", "/v1/jobs?owner=alice&limit=5", admin, nil).want(t, http.StatusOK)
	h.do("GET", "/v1/tokens?user=alice", admin, nil).want(t, http.StatusOK)
	// one given twice, and a boolean that is neither, are refused too:
	// the first was used, and follow=yes was false (found by the seventh
	// probe); a list may be given many times
	for _, q := range []string{"/v1/jobs?limit=1&limit=2", "/v1/files?prefix=a&prefix=b", "/v1/files/x?redirect=yes"} {
		if r := h.do("GET", q, admin, nil); r.status != http.StatusBadRequest || len(r.problem.Errors) != 1 {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
	var j api.Job
	h.do("POST", "/v1/jobs", admin, hello(nil)).want(t, http.StatusCreated).decode(t, &j)
	h.do("GET", "/v1/jobs/"+j.ID+"/logs/stdout?follow=garbage", admin, nil).want(t, http.StatusBadRequest)
	h.do("GET", "/v1/jobs/"+j.ID+"/logs/stdout?follow=false", admin, nil).want(t, http.StatusOK)
	tasks := h.token("tess", time.Time{}, api.ScopeTasks, api.ScopeJobsRead)
	h.do("GET", "/ga4gh/tes/v1/tasks?tag_key=a&tag_key=b&tag_value=1&tag_value=2", tasks, nil).want(t, http.StatusOK)
}

// A body that reads two ways is refused: a member given twice (the last
// won: a held job ran, a token got the second list of scopes), or twice
// but for case, or a field named other than exactly (encoding/json took
// "HOLD" for "hold"). So are two Authorization headers (the first was
// used), and an API token in the session's cookie, where it was a
// session that could make tokens (found by the seventh probe). A 401 says
// how to authenticate (WWW-Authenticate).
func TestRequestsThatReadTwoWays(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, append(userScopes, api.ScopeTasks)...)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	for _, tc := range []struct{ route, body, field string }{
		{"/v1/jobs", `{"template":"hello","parameters":{"name":"X"},"hold":true,"hold":false}`, "hold"},
		{"/v1/jobs", `{"template":"hello","parameters":{"name":"X"},"hold":true,"HOLD":false}`, "HOLD"},
		{"/v1/jobs", `{"template":"hello","parameters":{"name":"X"},"Hold":true}`, "Hold"},
		{"/v1/jobs", `{"template":"hello","parameters":{"name":"X","name":"Y"},"hold":true}`, "parameters.name"},
		{"/v1/jobs", `{"template":"hello","parameters":{"name":"X"},"hold":true,"labels":{"a":"1","a":"2"}}`, "labels.a"},
		{"/v1/sweeps", `{"template":"hello","hold":true,"variants":[{"name":"a"},{"name":"b","name":"c"}]}`, "variants[1].name"},
		{"/v1/tokens", `{"user":"alice","scopes":["jobs:read"],"scopes":["jobs:read","jobs:write"]}`, "scopes"},
		{"/ga4gh/tes/v1/tasks", `{"executors":[{"image":"localhost/a","command":["true"],"command":["false"]}]}`, "executors[0].command"},
	} {
		tok := alice
		if tc.route == "/v1/tokens" {
			tok = admin
		}
		r := h.do("POST", tc.route, tok, tc.body, "Content-Type", "application/json")
		if r.status/100 != 4 || len(r.problem.Errors) == 0 || r.problem.Errors[0].Field != tc.field {
			t.Errorf("%s %s: %d %s; want a 4xx naming %s", tc.route, tc.body, r.status, r.body, tc.field)
		}
	}
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs", alice, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 0 {
		t.Errorf("refused bodies made jobs: %+v", page.Items)
	}
	// twins inside values a template's schema reads are refused too; one
	// name once, whatever its case, is a parameter as any other
	h.do("POST", "/v1/jobs", alice, `{"template":"hello","parameters":{"name":"X"},"hold":true}`, "Content-Type", "application/json").want(t, http.StatusCreated)
	// a map's keys differ by case as they please (encoding/json keeps
	// them apart): labels App and app, a TES executor's http_proxy and
	// HTTP_PROXY (found by review)
	h.do("POST", "/v1/jobs", alice, `{"template":"hello","parameters":{"name":"X"},"hold":true,"labels":{"App":"1","app":"2"}}`, "Content-Type", "application/json").want(t, http.StatusCreated)
	// a long s (ſ) folds to s, as encoding/json folds it: "labelſ" was
	// read as "labels"
	if r := h.do("POST", "/v1/jobs", alice, `{"template":"hello","parameters":{"name":"X"},"hold":true,"label\u017f":{"a":"1"}}`, "Content-Type", "application/json"); r.status/100 != 4 || !strings.Contains(r.problem.Detail, `"labels"`) {
		t.Errorf("labels spelt with a long s: %d %s", r.status, r.body)
	}

	r := h.do("GET", "/v1/me", "", nil, "Authorization", "Bearer "+alice, "Authorization", "Bearer "+admin)
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("two Authorization headers: %d %s (WWW-Authenticate %q)", r.status, r.body, r.header.Get("WWW-Authenticate"))
	}
	r = h.do("GET", "/v1/me", "no-such-token", nil)
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("an unknown token: %d, WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	c := &http.Cookie{Name: sessionCookie, Value: alice}
	if r := h.withCookie(c, "GET", "/v1/me", nil); r.status != http.StatusUnauthorized {
		t.Errorf("an API token in the session's cookie: %d %s", r.status, r.body)
	}
	c, _ = h.signIn(alice)
	h.withCookie(c, "GET", "/v1/me", nil).want(t, http.StatusOK)
}

// Half a UTF-16 surrogate pair, escaped, is refused as invalid UTF-8 is:
// encoding/json read "\ud800" as U+FFFD without a word (found by the
// seventh probe). A whole pair is a character as any other.
func TestLoneSurrogateRefused(t *testing.T) {
	for body, want := range map[string]int{
		`{"a":"\ud800"}`:             6,
		`{"a":"x\udc00y"}`:           7,
		`{"a":"\ud800\u0041"}`:       6,
		`{"a":"\ud83d\ude00"}`:       -1, // 😀
		`{"a":"\\ud800"}`:            -1, // a backslash, then text
		`{"a":"\"\ud800"}`:           8,
		`{"\ud800":1}`:               2,
		`{"a":"\u00e9 \u0041"}`:      -1,
		`{"a":"\ud83d\ude00\udc00"}`: 18,
	} {
		if got := loneSurrogate([]byte(body)); got != want {
			t.Errorf("loneSurrogate(%s) = %d, want %d", body, got, want)
		}
	}
	h := newHarness(t, nil)
	tok := h.token("alice", time.Time{}, userScopes...)
	r := h.do("POST", "/v1/jobs", tok, `{"template":"hello","parameters":{"name":"a\ud800"},"hold":true}`, "Content-Type", "application/json")
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.problem.Detail, "surrogate") {
		t.Errorf("a lone surrogate: %d %s", r.status, r.body)
	}
	h.do("POST", "/v1/jobs", tok, `{"template":"hello","parameters":{"name":"a\ud83d\ude00"},"hold":true}`, "Content-Type", "application/json").want(t, http.StatusCreated)
}
