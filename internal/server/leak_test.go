package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/store"
)

// marker is the text of every injected failure; no answer may contain it.
const marker = "INTERNAL-CAUSE-7f3a"

var errInjected = errors.New(marker + ": disk I/O error at /var/lib/secret")

// failingStore fails every call but token look-ups (so that requests are
// authenticated) once fail is set.
type failingStore struct {
	store.Store
	fail bool
}

func (f *failingStore) err() error {
	if f.fail {
		return errInjected
	}
	return nil
}

func (f *failingStore) CreateJob(ctx context.Context, j *job.Job, o *store.CreateOptions) (*job.Job, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Store.CreateJob(ctx, j, o)
}

func (f *failingStore) GetJob(ctx context.Context, id string) (*job.Job, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Store.GetJob(ctx, id)
}

func (f *failingStore) ListJobs(ctx context.Context, fl store.JobFilter) ([]*job.Job, string, error) {
	if err := f.err(); err != nil {
		return nil, "", err
	}
	return f.Store.ListJobs(ctx, fl)
}

func (f *failingStore) UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Store.UpdateJob(ctx, id, fn)
}

func (f *failingStore) DeleteJob(ctx context.Context, id string) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.DeleteJob(ctx, id)
}

func (f *failingStore) Events(ctx context.Context, id string) ([]job.Event, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Store.Events(ctx, id)
}

func (f *failingStore) ReadLog(ctx context.Context, id, stream string, off int64, max int) ([]byte, int64, error) {
	if err := f.err(); err != nil {
		return nil, 0, err
	}
	return f.Store.ReadLog(ctx, id, stream, off, max)
}

func (f *failingStore) AppendLog(ctx context.Context, id, stream string, off int64, data []byte) (int64, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.Store.AppendLog(ctx, id, stream, off, data)
}

func (f *failingStore) CreateToken(ctx context.Context, t store.Token) error {
	if err := f.err(); err != nil {
		return err
	}
	return f.Store.CreateToken(ctx, t)
}

func (f *failingStore) ListTokens(ctx context.Context, user string) ([]store.Token, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Store.ListTokens(ctx, user)
}

func (f *failingStore) Ping(ctx context.Context) error { return f.err() }

// failingBucket fails every call.
type failingBucket struct{}

func (failingBucket) Put(context.Context, string, io.Reader) (blob.Attrs, error) {
	return blob.Attrs{}, errInjected
}
func (failingBucket) Get(context.Context, string, int64, int64) (io.ReadCloser, blob.Attrs, error) {
	return nil, blob.Attrs{}, errInjected
}
func (failingBucket) Stat(context.Context, string) (blob.Attrs, error) {
	return blob.Attrs{}, errInjected
}
func (failingBucket) Delete(context.Context, string) error { return errInjected }
func (failingBucket) List(context.Context, string, string, func(blob.Attrs) error) error {
	return errInjected
}

// failingSched fails every call, some with a sentinel wrapped round the
// engine's words.
type failingSched struct{}

func (failingSched) Name() string { return "failing" }
func (failingSched) Submit(context.Context, sched.Task) (string, error) {
	return "", errInjected
}
func (failingSched) Poll(context.Context, []string) (map[string]sched.Status, error) {
	return nil, errInjected
}
func (failingSched) Cancel(context.Context, string) error { return errInjected }
func (failingSched) Ping(context.Context) error           { return errInjected }
func (failingSched) Hold(context.Context, string) error {
	return errors.Join(sched.ErrUnsupported, errInjected)
}
func (failingSched) Release(context.Context, string) error { return errInjected }
func (failingSched) Describe(context.Context) (map[string]any, error) {
	return nil, errInjected
}

// No answer carries the text of a failing store, bucket or engine: clients
// get a message written for them; the cause goes to the log.
func TestInternalErrorsNeverReachClients(t *testing.T) {
	st := &failingStore{}
	wrap := func(s store.Store) store.Store { st.Store = s; return st }
	h := newHarness(t, &harnessOptions{wrapStore: wrap, bucket: failingBucket{}, scheds: map[string]sched.Scheduler{"local": failingSched{}}})

	user := h.token("alice", time.Time{}, userScopes...)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	var j api.Job
	h.do("POST", "/v1/jobs", user, map[string]any{"template": "hello", "parameters": map[string]any{"name": "a"}, "hold": true}).want(t, http.StatusCreated).decode(t, &j)
	_, jt := h.jobToken("alice", nil)
	if _, err := h.store.UpdateJob(context.Background(), j.ID, func(j *job.Job) error { return j.SetState(job.Pending, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}

	requests := []struct{ method, path string }{
		{"GET", "/v1/status"},
		{"GET", "/v1/environments/local"},
		{"GET", "/v1/files"},
		{"PUT", "/v1/files/a.txt"},
		{"GET", "/v1/files/a.txt"},
		{"HEAD", "/v1/files/a.txt"},
		{"DELETE", "/v1/files/a.txt"},
		{"GET", "/v1/jobs/" + j.ID + "/outputs"},
		{"GET", "/v1/jobs/" + j.ID + "/outputs/x.txt"},
		{"GET", "/v1/jobs/" + j.ID + "/outputs.tar.gz"},
		{"GET", "/v1/jobs/" + j.ID + "/results"},
		{"POST", "/v1/jobs/" + j.ID + "/hold"},
		{"POST", "/v1/jobs/" + j.ID + "/cancel"},
		{"POST", "/v1/jobs"},
	}
	check := func(who, tok string, failing bool) {
		t.Helper()
		for _, rq := range requests {
			var body any
			switch {
			case rq.path == "/v1/jobs":
				body = map[string]any{"template": "wordcount", "inputs": map[string]string{"text": "a.txt"}}
			case rq.method == "PUT":
				body = "data"
			}
			r := h.do(rq.method, rq.path, tok, body)
			if strings.Contains(string(r.body), marker) {
				t.Errorf("%s %s %s (store failing: %v): the answer has the internal text: %s", who, rq.method, rq.path, failing, r.body)
			}
		}
	}
	check("user", user, false)
	check("job", jt, false)
	st.fail = true
	check("user", user, true)
	check("admin", admin, true)
	if !strings.Contains(h.logs.String(), marker) {
		t.Errorf("the causes are not in the server log")
	}
}
