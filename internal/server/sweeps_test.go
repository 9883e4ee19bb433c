package server

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
	"github.com/hpcgate/hpcgate/internal/job"
)

// Value lists combine in the product's order (the last name fastest) or
// pairwise (zip); a field error names the value's place in its list, and
// in a list of objects the variant's.
func TestExpandVariants(t *testing.T) {
	vs, err := expandVariants(json.RawMessage(`{"parameters": {"b": ["x", "y", "z"], "a": [1, 2]}}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range vs {
		got = append(got, string(v.params["a"])+string(v.params["b"]))
	}
	if want := []string{`1"x"`, `1"y"`, `1"z"`, `2"x"`, `2"y"`, `2"z"`}; !slices.Equal(got, want) {
		t.Fatalf("product %v, want %v", got, want)
	}
	if f := vs[4].field("parameters.b"); f != "variants.parameters.b[1]" {
		t.Errorf("field of b in variant 4: %q", f)
	}
	if f := vs[4].field("parameters.a.sub"); f != "variants.parameters.a[1].sub" {
		t.Errorf("field below a in variant 4: %q", f)
	}
	if f := vs[4].field("inputs.text"); f != "inputs.text" {
		t.Errorf("a shared field: %q", f)
	}

	vs, err = expandVariants(json.RawMessage(`{"mode": "zip", "parameters": {"a": [1, 2], "b": ["x", "y"]}}`), nil)
	if err != nil || len(vs) != 2 || string(vs[1].params["a"]) != "2" || string(vs[1].params["b"]) != `"y"` {
		t.Fatalf("zip: %d variants, %v", len(vs), err)
	}

	vs, err = expandVariants(json.RawMessage(`[{"name": "a"}, {"name": "b", "n": 2}]`), nil)
	if err != nil || len(vs) != 2 {
		t.Fatalf("list: %v, %v", vs, err)
	}
	if f := vs[1].field("parameters.n"); f != "variants[1].n" {
		t.Errorf("field of a list's variant: %q", f)
	}
	if f := vs[0].field("parameters.mesh"); f != "parameters.mesh" {
		t.Errorf("a fixed parameter's field: %q", f)
	}

	for _, bad := range []struct{ body, field string }{
		{``, "variants"},
		{`[]`, "variants"},
		{`"x"`, "variants"},
		{`{"mode": "zip", "parameters": {"a": [1, 2], "b": ["x"]}}`, "variants.parameters.b"},
		{`{"mode": "cartesian", "parameters": {"a": [1]}}`, "variants.mode"},
		{`{"parameters": {"a": []}}`, "variants.parameters.a"},
		{`{"parameters": {}}`, "variants.parameters"},
		{`{"parameters": {"a": [1]}, "extra": 1}`, "variants"},
		{`[{"a": 1}, 3]`, "variants[1]"},
		{`[{"a": 1}, null]`, "variants[1]"}, // its fault was named parameters.a (found by the seventh probe)
		{`{"parameters": {"a": [1], "b": 2}}`, "variants.parameters.b"},
		{`{"mode": 1, "parameters": {"a": [1]}}`, "variants.mode"},
		{fmt.Sprintf(`{"parameters": {"a": [%s], "b": [%s]}}`, nums(101), nums(100)), "variants"},
	} {
		_, err := expandVariants(json.RawMessage(bad.body), nil)
		he, ok := err.(*httpError)
		if !ok || len(he.fields) != 1 || he.fields[0].Field != bad.field {
			t.Errorf("variants %.60s: %v, want a field error of %s", bad.body, err, bad.field)
		}
	}
}

func nums(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprint(i)
	}
	return strings.Join(s, ",")
}

// A sweep is one job per variant, released together, listed by sweep,
// summed up per state, canceled as a whole, and read back as one row per
// variant in JSON or CSV; another user's sweep is not found.
func TestSweep(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	var sw api.Sweep
	h.do("POST", "/v1/sweeps", alice, map[string]any{
		"template": "hello",
		"variants": map[string]any{"parameters": map[string]any{"name": []string{"ada", "bob", "cy"}}},
	}).want(t, http.StatusCreated).decode(t, &sw)
	if sw.Total != 3 || len(sw.Jobs) != 3 || sw.Counts["pending"] != 3 || sw.Template != "hello" {
		t.Fatalf("sweep %+v", sw)
	}
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs?sweep="+sw.ID, alice, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 3 {
		t.Fatalf("GET /v1/jobs?sweep: %d jobs", len(page.Items))
	}
	for _, j := range page.Items {
		i := slices.Index(sw.Jobs, j.ID)
		if j.SweepID != sw.ID || j.SweepIndex == nil || *j.SweepIndex != i || j.State != "pending" ||
			!strings.Contains(string(j.Parameters), []string{"ada", "bob", "cy"}[i]) || j.Name != fmt.Sprintf("hello-%d", i) {
			t.Errorf("job %d: %+v", i, j)
		}
	}

	// the first ends with results, the second fails without
	ctx := context.Background()
	end := func(id string, st job.State, code int) {
		for _, s := range []job.State{job.Running, st} {
			if _, err := h.store.UpdateJob(ctx, id, func(j *job.Job) error {
				j.ExitCode = &code
				return j.SetState(s, "test", time.Now())
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := h.bucket.Put(ctx, outputsPrefix(sw.Jobs[0])+"results.json", strings.NewReader(`{"energy": -1.5, "label": "a,b", "grid": [1, 2]}`)); err != nil {
		t.Fatal(err)
	}
	end(sw.Jobs[0], job.Succeeded, 0)
	end(sw.Jobs[1], job.Failed, 3)

	order := sw.Jobs
	h.do("POST", "/v1/sweeps/"+sw.ID+"/cancel", alice, nil).want(t, http.StatusOK).decode(t, &sw)
	if !slices.Equal(sw.Jobs, order) {
		t.Fatalf("jobs %v after cancel, want them in the variants' order %v", sw.Jobs, order)
	}
	if sw.Counts["succeeded"] != 1 || sw.Counts["failed"] != 1 || sw.Counts["canceled"] != 1 || sw.Total != 3 {
		t.Fatalf("after cancel: %+v", sw)
	}

	var rows []api.SweepResult
	h.do("GET", "/v1/sweeps/"+sw.ID+"/results", alice, nil).want(t, http.StatusOK).decode(t, &rows)
	if len(rows) != 3 || rows[0].Index != 0 || rows[0].State != "succeeded" || !strings.Contains(string(rows[0].Results), "-1.5") ||
		rows[1].ExitCode == nil || *rows[1].ExitCode != 3 || rows[1].Results != nil || rows[2].State != "canceled" {
		t.Fatalf("results %+v", rows)
	}
	r := h.do("GET", "/v1/sweeps/"+sw.ID+"/results", alice, nil, "Accept", "text/csv").want(t, http.StatusOK)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
	recs, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"index", "job", "state", "exit_code", "name", "result.energy", "result.grid", "result.label"},
		{"0", sw.Jobs[0], "succeeded", "0", "ada", "-1.5", "[1, 2]", "a,b"},
		{"1", sw.Jobs[1], "failed", "3", "bob", "", "", ""},
		{"2", sw.Jobs[2], "canceled", "", "cy", "", "", ""},
	}
	if fmt.Sprint(recs) != fmt.Sprint(want) {
		t.Fatalf("CSV\n%q\nwant\n%q", recs, want)
	}

	// a job deleted is said, not forgotten
	h.do("DELETE", "/v1/jobs/"+sw.Jobs[2], alice, nil).want(t, http.StatusNoContent)
	h.do("GET", "/v1/sweeps/"+sw.ID, alice, nil).want(t, http.StatusOK).decode(t, &sw)
	if sw.Total != 2 || sw.Deleted != 1 {
		t.Fatalf("after a deletion: %+v; want 2 and 1 deleted", sw)
	}

	bob := h.token("bob", time.Time{}, allScopes...)
	for _, p := range []string{"GET /v1/sweeps/" + sw.ID, "POST /v1/sweeps/" + sw.ID + "/cancel", "GET /v1/sweeps/" + sw.ID + "/results", "GET /v1/sweeps/nosuchsweep"} {
		method, path, _ := strings.Cut(p, " ")
		h.do(method, path, bob, nil).want(t, http.StatusNotFound)
	}
}

// Every variant is checked before anything is created, and every error is
// reported once, named by its variant; a sweep over the jobs quota is
// refused whole; shared inputs are checked once.
func TestSweepRefusedWhole(t *testing.T) {
	h := quotaHarness(t, Quota{Jobs: 2})
	alice := h.token("alice", time.Time{}, allScopes...)
	none := func() {
		t.Helper()
		var page api.Page[api.Job]
		h.do("GET", "/v1/jobs", alice, nil).want(t, http.StatusOK).decode(t, &page)
		if len(page.Items) != 0 {
			t.Fatalf("a refused sweep left %d jobs", len(page.Items))
		}
	}
	fields := func(r *response) []string {
		var out []string
		for _, f := range r.problem.Errors {
			out = append(out, f.Field)
		}
		return out
	}
	r := h.do("POST", "/v1/sweeps", alice, map[string]any{"template": "hello", "variants": []any{
		map[string]any{"name": "ok"}, map[string]any{"name": ""}, map[string]any{"name": 5}, map[string]any{"nmae": "x"},
	}}).want(t, http.StatusUnprocessableEntity)
	// variant 3 lacks the name the others set: its error is its own
	if got := fields(r); !slices.Contains(got, "variants[1].name") || !slices.Contains(got, "variants[2].name") || !slices.Contains(got, "variants[3].nmae") ||
		!slices.Contains(got, "variants[3].name") || slices.Contains(got, "parameters.name") {
		t.Fatalf("list errors %q", got)
	}
	none()
	// a bad shared value is the shared parameters' fault, named once
	r = h.do("POST", "/v1/sweeps", alice, map[string]any{"template": "hello", "parameters": map[string]any{"name": ""}, "variants": []any{
		map[string]any{"name": "a"}, map[string]any{}, map[string]any{},
	}}).want(t, http.StatusUnprocessableEntity)
	if got := fields(r); !slices.Equal(got, []string{"parameters.name"}) {
		t.Fatalf("a shared value's errors %q", got)
	}
	none()
	r = h.do("POST", "/v1/sweeps", alice, map[string]any{"template": "hello", "variants": map[string]any{"parameters": map[string]any{"name": []string{"a", "", "b", ""}}}}).
		want(t, http.StatusUnprocessableEntity)
	if got := fields(r); len(got) != 2 || got[0] != "variants.parameters.name[1]" || got[1] != "variants.parameters.name[3]" {
		t.Fatalf("value-list errors %q", got)
	}
	none()
	// a missing shared input is one error, not one per variant
	r = h.do("POST", "/v1/sweeps", alice, map[string]any{"template": "wordcount", "inputs": map[string]string{"text": "none.txt"},
		"variants": map[string]any{"parameters": map[string]any{"min_length": []int{1, 2, 3}}}}).want(t, http.StatusUnprocessableEntity)
	if got := fields(r); len(got) != 1 || got[0] != "inputs.text" {
		t.Fatalf("shared input errors %q", got)
	}
	// three jobs over a quota of two: refused whole
	r = h.do("POST", "/v1/sweeps", alice, map[string]any{"template": "hello", "variants": map[string]any{"parameters": map[string]any{"name": []string{"a", "b", "c"}}}}).
		want(t, http.StatusConflict)
	if r.problem.Code != api.CodeQuotaExceeded {
		t.Fatalf("over the quota: %+v", r.problem)
	}
	none()
}

// A sweep's jobs each carry the shared parameters: 2,400 variants of a
// 30 kB value once became 72 MB of jobs from a body of 30 kB (and 10,000
// of a 1 MB one would have held 10 GB in memory). What the jobs carry
// together is limited, and checked before any variant is.
func TestSweepSizeLimited(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	seq := func(from, to int) []int {
		var out []int
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
		return out
	}
	sweep := func(lo string) *response {
		return h.do("POST", "/v1/sweeps", alice, map[string]any{
			"template":   "optimize",
			"hold":       true,
			"parameters": map[string]any{"lo": json.Number(lo)},
			"variants":   map[string]any{"parameters": map[string]any{"points": seq(3, 50), "max_rounds": seq(1, 50)}},
		})
	}
	r := sweep("1."+strings.Repeat("0", 30000)).want(t, http.StatusUnprocessableEntity)
	if msg := r.field("variants"); !strings.Contains(msg, "2400 jobs") || !strings.Contains(msg, "MiB") {
		t.Fatalf("no error for variants that names the jobs and the limit: %s", r.body)
	}
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs?limit=1", alice, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 0 {
		t.Fatal("a refused sweep left jobs")
	}
	var sw api.Sweep
	sweep("1.0").want(t, http.StatusCreated).decode(t, &sw)
	if sw.Total != 2400 {
		t.Fatalf("the same sweep with a short value: %d jobs", sw.Total)
	}
}

// From inside a job, a sweep's jobs are the job's children, within its
// limit of children; the job sees its own sweeps only.
func TestSweepFromAJob(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{MaxChildren: 3}})
	parent, pt := h.jobToken("alice", nil)
	var sw api.Sweep
	h.do("POST", "/v1/sweeps", pt, map[string]any{"template": "hello", "variants": map[string]any{"parameters": map[string]any{"name": []string{"a", "b"}}}}).
		want(t, http.StatusCreated).decode(t, &sw)
	for _, id := range sw.Jobs {
		j, err := h.store.GetJob(context.Background(), id)
		if err != nil || j.ParentID != parent.ID || j.Owner != "alice" || j.Depth != 1 {
			t.Fatalf("a driver's sweep job: %+v, %v", j, err)
		}
	}
	h.do("GET", "/v1/sweeps/"+sw.ID, pt, nil).want(t, http.StatusOK)
	// two more would make four children: refused whole
	r := h.do("POST", "/v1/sweeps", pt, map[string]any{"template": "hello", "variants": map[string]any{"parameters": map[string]any{"name": []string{"c", "d"}}}}).
		want(t, http.StatusConflict)
	if !strings.Contains(r.problem.Detail, "children") {
		t.Fatalf("over the children limit: %+v", r.problem)
	}
	if n, err := h.srv.countChildren(context.Background(), "alice", parent.ID); err != nil || n != 2 {
		t.Fatalf("children after a refused sweep: %d, %v", n, err)
	}
	// another job of alice's does not see it; alice does
	_, other := h.jobToken("alice", nil)
	h.do("GET", "/v1/sweeps/"+sw.ID, other, nil).want(t, http.StatusNotFound)
	h.do("POST", "/v1/sweeps/"+sw.ID+"/cancel", other, nil).want(t, http.StatusNotFound)
	h.do("GET", "/v1/sweeps/"+sw.ID, h.token("alice", time.Time{}, allScopes...), nil).want(t, http.StatusOK)
}

// The results budget of one answer counts every results.json read, valid
// or not: invalid ones of 64 KiB were read for free, 640 MB for a sweep
// of 10,000 jobs at every request.
func TestSweepResultsBudgetCountsWhatIsRead(t *testing.T) {
	defer func(n int) { maxSweepResultBytes = n }(maxSweepResultBytes)
	maxSweepResultBytes = 100 << 10
	fb, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cb := &countingBucket{Bucket: fb}
	h := newHarness(t, &harnessOptions{bucket: cb})
	alice := h.token("alice", time.Time{}, allScopes...)
	var sw api.Sweep
	h.do("POST", "/v1/sweeps", alice, map[string]any{
		"template": "hello", "hold": true,
		"variants": map[string]any{"parameters": map[string]any{"name": []string{"a", "b", "c", "d", "e"}}},
	}).want(t, http.StatusCreated).decode(t, &sw)
	ctx := context.Background()
	for _, id := range sw.Jobs {
		if _, err := h.bucket.Put(ctx, outputsPrefix(id)+"results.json", strings.NewReader("not JSON "+strings.Repeat("x", 60<<10))); err != nil {
			t.Fatal(err)
		}
		for _, st := range []job.State{job.Pending, job.Running, job.Succeeded} {
			if _, err := h.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(st, "test", time.Now()) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	before := cb.gets.Load()
	h.do("GET", "/v1/sweeps/"+sw.ID+"/results", alice, nil).want(t, http.StatusOK)
	if n := cb.gets.Load() - before; n != 2 {
		t.Fatalf("%d results read of 60 kB each for a budget of 100 KiB, want 2", n)
	}
}

// A sweep sent again with its Idempotency-Key is the sweep it made: each
// used to make a new one (found by the sixth probe). Another body with the
// key, or a job's key, is refused; two at once make one sweep.
func TestSweepIdempotencyKey(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	body := map[string]any{"template": "hello", "hold": true, "variants": []map[string]any{{"name": "p"}, {"name": "q"}}}
	var first, again api.Sweep
	h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "k1").want(t, http.StatusCreated).decode(t, &first)
	r := h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "k1").want(t, http.StatusOK)
	r.decode(t, &again)
	if again.ID != first.ID || again.Total != 2 || r.header.Get("Location") != "/v1/sweeps/"+first.ID {
		t.Fatalf("again: %+v (location %q), want sweep %s", again, r.header.Get("Location"), first.ID)
	}
	other := map[string]any{"template": "hello", "hold": true, "variants": []map[string]any{{"name": "x"}}}
	if r := h.do("POST", "/v1/sweeps", alice, other, "Idempotency-Key", "k1").want(t, http.StatusUnprocessableEntity); r.problem.Code != api.CodeIdempotencyMismatch || !strings.Contains(r.problem.Detail, first.ID) {
		t.Fatalf("another body: %+v", r.problem)
	}
	h.do("POST", "/v1/jobs", alice, hello(nil), "Idempotency-Key", "jobkey").want(t, http.StatusCreated)
	if r := h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "jobkey").want(t, http.StatusUnprocessableEntity); r.problem.Code != api.CodeIdempotencyMismatch {
		t.Fatalf("a job's key: %+v", r.problem)
	}
	var wg sync.WaitGroup
	ids := make([]string, 4)
	for i := range ids {
		wg.Go(func() {
			var sw api.Sweep
			r := h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "k2")
			if r.status != http.StatusCreated && r.status != http.StatusOK {
				t.Errorf("at once: %d %s", r.status, r.body)
				return
			}
			r.decode(t, &sw)
			ids[i] = sw.ID
		})
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatalf("four at once with one key made sweeps %v", ids)
		}
	}
	var page api.Page[api.Job]
	h.do("GET", "/v1/jobs?limit=100", alice, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 5 { // two sweeps of two, and the job
		t.Fatalf("%d jobs", len(page.Items))
	}
	// The key stays the sweep's when the job that carries it is deleted:
	// a retry then made a second sweep (found by the seventh probe).
	h.do("DELETE", "/v1/jobs/"+first.Jobs[0], alice, nil).want(t, http.StatusNoContent)
	h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "k1").want(t, http.StatusOK).decode(t, &again)
	if again.ID != first.ID || again.Total != 1 {
		t.Fatalf("after its first job was deleted: %+v, want sweep %s of one job", again, first.ID)
	}
	if r := h.do("POST", "/v1/sweeps", alice, other, "Idempotency-Key", "k1").want(t, http.StatusUnprocessableEntity); !strings.Contains(r.problem.Detail, first.ID) {
		t.Fatalf("another body, after its first job was deleted: %+v", r.problem)
	}
	h.do("GET", "/v1/jobs?limit=100", alice, nil).want(t, http.StatusOK).decode(t, &page)
	if len(page.Items) != 4 {
		t.Fatalf("%d jobs, want 4", len(page.Items))
	}
}

// A sweep retried with its key is its sweep even when the sweep took most
// of the jobs quota: its own jobs counted against the retry, which was
// refused over the quota (found by review).
func TestSweepRetryWithinTheQuota(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{Quota: func(string) Quota { return Quota{Jobs: 3} }}})
	alice := h.token("alice", time.Time{}, allScopes...)
	body := map[string]any{"template": "hello", "hold": true, "variants": []map[string]any{{"name": "p"}, {"name": "q"}}}
	var first, again api.Sweep
	h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "k").want(t, http.StatusCreated).decode(t, &first)
	h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "k").want(t, http.StatusOK).decode(t, &again)
	if again.ID != first.ID {
		t.Fatalf("the retry made sweep %s, not %s", again.ID, first.ID)
	}
	// a new sweep over the quota is still refused, naming it
	if r := h.do("POST", "/v1/sweeps", alice, body, "Idempotency-Key", "k2").want(t, http.StatusConflict); r.problem.Code != api.CodeQuotaExceeded {
		t.Fatalf("over the quota: %+v", r.problem)
	}
}

// A sweep over the jobs quota says how many it would add: "you have 0
// unfinished jobs, the limit is 50" did not (found by the seventh probe).
func TestSweepOverTheQuotaSaysItsSize(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{Quota: func(string) Quota { return Quota{Jobs: 2} }}})
	alice := h.token("alice", time.Time{}, allScopes...)
	body := map[string]any{"template": "hello", "hold": true, "variants": []map[string]any{{"name": "p"}, {"name": "q"}, {"name": "r"}}}
	for _, key := range []string{"", "k"} { // checked before the store, and by it
		var headers []string
		if key != "" {
			headers = []string{"Idempotency-Key", key}
		}
		r := h.do("POST", "/v1/sweeps", alice, body, headers...).want(t, http.StatusConflict)
		if !strings.Contains(r.problem.Detail, "you have 0 unfinished jobs and this would add 3, the limit is 2") {
			t.Errorf("key %q: %s", key, r.problem.Detail)
		}
	}
}
