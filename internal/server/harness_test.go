package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/examples/templates"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/config"
	"github.com/hpcgate/hpcgate/internal/dispatch"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/sqlitestore"
)

// harness is a real server in the test process: SQLite, a file bucket,
// the built-in templates and a dispatcher that is never run (jobs stay
// where the test puts them).
type harness struct {
	t      *testing.T
	srv    *Server
	http   *httptest.Server
	store  store.Store
	bucket blob.Bucket
	logs   *bytes.Buffer // the server's log
}

type harnessOptions struct {
	store     store.Store                   // in place of a new SQLite store
	wrapStore func(store.Store) store.Store // wraps the SQLite store
	bucket    blob.Bucket
	scheds    map[string]sched.Scheduler
	opts      *Options // the server's (nil: defaults)
	// envs replace the default environments (the local executor's).
	envs []catalog.Environment
}

func newHarness(t *testing.T, ho *harnessOptions) *harness {
	t.Helper()
	if ho == nil {
		ho = &harnessOptions{}
	}
	ctx := context.Background()
	dir := t.TempDir()
	h := &harness{t: t, bucket: ho.bucket, logs: &bytes.Buffer{}}
	h.store = ho.store
	if h.store == nil {
		st, err := sqlitestore.Open(ctx, dir+"/db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		h.store = st
		if ho.wrapStore != nil {
			h.store = ho.wrapStore(st)
		}
	}
	if h.bucket == nil {
		b, err := fileblob.Open(dir + "/objects")
		if err != nil {
			t.Fatal(err)
		}
		h.bucket = b
	}
	envs := config.Default().Environments
	if ho.envs != nil {
		envs = ho.envs
	}
	cat, err := catalog.Load(envs, templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: h.logs}, nil))
	a := auth.NewAuthenticator(h.store, 0)
	d := dispatch.New(h.store, cat, ho.scheds, dispatch.Options{Logger: log})
	h.srv = New(h.store, h.bucket, cat, a, d, ho.scheds, NewHub(), log, ho.opts)
	h.http = httptest.NewServer(h.srv)
	t.Cleanup(h.http.Close)
	return h
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// token stores a token for user with scopes (and expiry, if not zero) and
// returns its secret.
func (h *harness) token(user string, expires time.Time, scopes ...string) string {
	h.t.Helper()
	secret, hash := auth.NewSecret()
	tok := store.Token{ID: auth.NewID(), Hash: hash, User: user, Scopes: scopes, CreatedAt: time.Now().UTC(), ExpiresAt: expires}
	if err := h.store.CreateToken(context.Background(), tok); err != nil {
		h.t.Fatal(err)
	}
	return secret
}

// jobToken makes a running job of user's (with inputs, if any) and returns
// the job and its token's secret.
func (h *harness) jobToken(user string, inputs map[string]string) (*job.Job, string) {
	h.t.Helper()
	ctx := context.Background()
	// a hello job that may upload any output (hello's own is greeting.txt)
	t, err := h.srv.catalog.Load().Template("hello", 1)
	if err != nil {
		h.t.Fatal(err)
	}
	r := t.Recipe(nil)
	r.Outputs = []string{"*", "*/*", "*/*/*"}
	j := &job.Job{ID: newJobID(), Owner: user, Template: "hello", TemplateVersion: 1, TemplateDoc: r.Encode(), Environment: "local", State: job.Pending,
		Parameters: json.RawMessage(`{"name":"x"}`), Inputs: inputs, CreatedAt: time.Now().UTC()}
	if _, err := h.store.CreateJob(ctx, j, nil); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.store.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Running, "test", time.Now()) }); err != nil {
		h.t.Fatal(err)
	}
	return j, h.tokenForJob(user, j.ID)
}

// tokenForJob stores a job token for the job id and returns its secret.
func (h *harness) tokenForJob(user, id string) string {
	h.t.Helper()
	secret, hash := auth.NewSecret()
	tok := store.Token{ID: auth.NewID(), Hash: hash, User: user, Scopes: []string{api.ScopeJob}, JobID: id, CreatedAt: time.Now().UTC()}
	if err := h.store.CreateToken(context.Background(), tok); err != nil {
		h.t.Fatal(err)
	}
	return secret
}

// put stores a file of user's directly in the bucket.
func (h *harness) put(user, path, content string) {
	h.t.Helper()
	if _, err := h.bucket.Put(context.Background(), userFilesKey(user, path), strings.NewReader(content)); err != nil {
		h.t.Fatal(err)
	}
}

type response struct {
	status  int
	header  http.Header
	body    []byte
	problem api.Problem
}

// do sends a request with token (none if empty); body may be a string,
// []byte or a value to encode as JSON.
func (h *harness) do(method, path, token string, body any, headers ...string) *response {
	h.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		ctype = "application/octet-stream"
	case []byte:
		rd = bytes.NewReader(b)
		ctype = "application/octet-stream"
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
		ctype = "application/json"
	}
	req, err := http.NewRequest(method, h.http.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	given := map[string]bool{}
	for i := 0; i+1 < len(headers); i += 2 {
		if given[headers[i]] { // a header given twice is sent twice
			req.Header.Add(headers[i], headers[i+1])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
		given[headers[i]] = true
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := &response{status: resp.StatusCode, header: resp.Header}
	out.body, _ = io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		json.Unmarshal(out.body, &out.problem)
	}
	return out
}

// want fails the test unless the response has the status.
func (r *response) want(t *testing.T, status int) *response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

// field returns the message of the problem's error for field, or "".
func (r *response) field(name string) string {
	for _, f := range r.problem.Errors {
		if f.Field == name {
			return f.Message
		}
	}
	return ""
}

func (r *response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// slowPut starts a PUT of urlPath with tok whose body is first, then,
// when the returned function is called, rest; size is its length (-1:
// not said). The answer's status arrives on the channel (0: no answer).
// Should the test fail first, the body ends at its cleanup, so that the
// server does not wait for it.
func (h *harness) slowPut(tok, urlPath, first, rest string, size int64) (finish func(), status <-chan int) {
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("PUT", h.http.URL+urlPath, pr)
		req.ContentLength = size
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := h.http.Client().Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	pw.Write([]byte(first))
	finish = sync.OnceFunc(func() { pw.Write([]byte(rest)); pw.Close() })
	h.t.Cleanup(finish)
	return finish, done
}

// putPart sends a part of a multipart upload to its presigned URL and
// returns the part's ETag.
func putPart(t *testing.T, url, body string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT of the part: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT of the part: %s", resp.Status)
	}
	return resp.Header.Get("ETag")
}
