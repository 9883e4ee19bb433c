// Package storetest is the conformance suite every store.Store passes.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Run runs the suite. newStore returns an empty store for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(*testing.T, store.Store)
	}{
		{"CreateGet", testCreateGet},
		{"Idempotency", testIdempotency},
		{"ConcurrentCreates", testConcurrentCreates},
		{"ChildLimit", testChildLimit},
		{"List", testList},
		{"ListPages", testListPages},
		{"UpdateRecordsEvents", testUpdateRecordsEvents},
		{"UpdateRejectsBadTransition", testUpdateRejects},
		{"UpdateConcurrent", testUpdateConcurrent},
		{"Delete", testDelete},
		{"Logs", testLogs},
		{"Delivered", testDelivered},
		{"Tokens", testTokens},
		{"EveryFieldStored", testEveryFieldStored},
		{"FilterPages", testFilterPages},
		{"InEngine", testInEngine},
		{"LabelsFollowUpdates", testLabelsFollowUpdates},
		{"PurgeFinished", testPurgeFinished},
		{"Leftovers", testLeftovers},
		{"PurgeKeepsUnfinishedSweeps", testPurgeKeepsUnfinishedSweeps},
		{"UsageCounts", testUsageCounts},
		{"Quotas", testQuotas},
		{"Stored", testStored},
		{"Users", testUsers},
		{"Audit", testAudit},
		{"AuditWithCreate", testAuditWithCreate},
		{"Feed", testFeed},
		{"Deliveries", testDeliveries},
		{"CreateJobs", testCreateJobs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() { s.Close() })
			tt.fn(t, s)
		})
	}
}

var seq int

func newJob(owner string) *job.Job {
	seq++
	return &job.Job{
		ID:          fmt.Sprintf("job%06d", seq),
		Name:        "test",
		Owner:       owner,
		Template:    "hello",
		Environment: "local",
		State:       job.Pending,
		Reason:      "created",
		Parameters:  []byte(`{"name":"World"}`),
		Inputs:      map[string]string{"text": "in/story.txt"},
		InputSizes:  map[string]int64{"text": 42},
		Resources:   job.Resources{Nodes: 1, CoresPerNode: 2, WalltimeS: 60},
		Labels:      map[string]string{"sweep": "a"},
		CreatedAt:   time.Now().UTC().Truncate(time.Microsecond),
	}
}

func testCreateGet(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("alice")
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != "alice" || got.State != job.Pending || string(got.Parameters) != `{"name":"World"}` ||
		got.Inputs["text"] != "in/story.txt" || got.InputSizes["text"] != 42 || got.Labels["sweep"] != "a" ||
		got.Resources.CoresPerNode != 2 || !got.CreatedAt.Equal(j.CreatedAt) {
		t.Fatalf("GetJob = %+v, want %+v", got, j)
	}
	if _, err := s.CreateJob(ctx, j, nil); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second CreateJob with the same id: %v, want ErrConflict", err)
	}
	if _, err := s.GetJob(ctx, "nosuchjob"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetJob(nosuchjob) = %v, want ErrNotFound", err)
	}
	ev, err := s.Events(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].State != job.Pending || ev[0].Reason != "created" {
		t.Fatalf("events after create = %+v, want one pending event", ev)
	}
}

func testIdempotency(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newJob("alice")
	a.IdemKey = "k1"
	if _, err := s.CreateJob(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	b := newJob("alice")
	b.IdemKey = "k1"
	got, err := s.CreateJob(ctx, b, nil)
	if !errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("same key again: err %v, want ErrDuplicate", err)
	}
	if got == nil || got.ID != a.ID {
		t.Fatalf("same key again returned %+v, want job %s", got, a.ID)
	}
	c := newJob("bob") // another user's key space
	c.IdemKey = "k1"
	if _, err := s.CreateJob(ctx, c, nil); err != nil {
		t.Fatalf("same key, other user: %v", err)
	}
}

func testChildLimit(t *testing.T, s store.Store) {
	ctx := context.Background()
	p := newJob("alice")
	if _, err := s.CreateJob(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		c := newJob("alice")
		c.ParentID = p.ID
		_, err := s.CreateJob(ctx, c, &store.CreateOptions{MaxChildren: 2})
		if i < 2 && err != nil {
			t.Fatalf("child %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, store.ErrLimit) {
			t.Fatalf("third child with limit 2: %v, want ErrLimit", err)
		}
	}
	kids, _, err := s.ListJobs(ctx, store.JobFilter{ParentID: p.ID})
	if err != nil || len(kids) != 2 {
		t.Fatalf("children = %d, %v; want 2", len(kids), err)
	}
}

func testList(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ids []string
	for i := 0; i < 5; i++ {
		j := newJob("alice")
		if i%2 == 1 {
			j.Template = "wordcount"
			j.Labels = map[string]string{"sweep": "b"}
		}
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	other := newJob("bob")
	if _, err := s.CreateJob(ctx, other, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateJob(ctx, ids[0], func(j *job.Job) error { return j.SetState(job.Queued, "", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	check := func(f store.JobFilter, want ...string) {
		t.Helper()
		got, _, err := s.ListJobs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var gotIDs []string
		for _, j := range got {
			gotIDs = append(gotIDs, j.ID)
		}
		if fmt.Sprint(gotIDs) != fmt.Sprint(want) {
			t.Errorf("ListJobs(%+v) = %v, want %v", f, gotIDs, want)
		}
	}
	check(store.JobFilter{Owner: "alice"}, ids[4], ids[3], ids[2], ids[1], ids[0])
	check(store.JobFilter{Owner: "alice", Oldest: true}, ids[0], ids[1], ids[2], ids[3], ids[4])
	check(store.JobFilter{Owner: "alice", Template: "wordcount"}, ids[3], ids[1])
	check(store.JobFilter{Owner: "alice", LabelKey: "sweep", LabelValue: "a"}, ids[4], ids[2], ids[0])
	check(store.JobFilter{Owner: "alice", States: []job.State{job.Queued}}, ids[0])
	check(store.JobFilter{States: []job.State{job.Pending, job.Queued}, Oldest: true}, ids[0], ids[1], ids[2], ids[3], ids[4], other.ID)
	check(store.JobFilter{Owner: "carol"})
}

func testListPages(t *testing.T, s store.Store) {
	ctx := context.Background()
	want := map[string]bool{}
	for i := 0; i < 7; i++ {
		j := newJob("alice")
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		want[j.ID] = true
	}
	seen := map[string]bool{}
	tok := ""
	pages := 0
	for {
		page, next, err := s.ListJobs(ctx, store.JobFilter{Owner: "alice", Limit: 3, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page) > 3 {
			t.Fatalf("page of %d, limit 3", len(page))
		}
		for _, j := range page {
			if seen[j.ID] {
				t.Fatalf("job %s on two pages", j.ID)
			}
			seen[j.ID] = true
		}
		if next == "" {
			break
		}
		tok = next
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if len(seen) != len(want) || pages != 3 {
		t.Fatalf("saw %d jobs on %d pages, want 7 on 3", len(seen), pages)
	}
	if _, _, err := s.ListJobs(ctx, store.JobFilter{PageToken: "!!garbage"}); !errors.Is(err, store.ErrBadPageToken) {
		t.Fatalf("a malformed page token: %v, want ErrBadPageToken", err)
	}
}

func testUpdateRecordsEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("alice")
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	steps := []job.State{job.Queued, job.Starting, job.Running, job.Running, job.Finishing, job.Succeeded}
	for _, st := range steps {
		st := st
		got, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error {
			return j.SetState(st, "to "+string(st), time.Now())
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.State != st {
			t.Fatalf("UpdateJob returned state %s, want %s", got.State, st)
		}
	}
	code := 0
	if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.ExitCode = &code; return nil }); err != nil {
		t.Fatal(err)
	}
	ev, err := s.Events(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var states []job.State
	for _, e := range ev {
		states = append(states, e.State)
	}
	want := []job.State{job.Pending, job.Queued, job.Starting, job.Running, job.Finishing, job.Succeeded}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v (no event for a non-change)", states, want)
	}
	if ev[2].Reason != "to starting" {
		t.Fatalf("event reason %q", ev[2].Reason)
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].Time.Before(ev[i-1].Time) {
			t.Fatalf("events out of order: %+v", ev)
		}
	}
	got, _ := s.GetJob(ctx, j.ID)
	if got.ExitCode == nil || *got.ExitCode != 0 || got.StartedAt.IsZero() || got.FinishedAt.IsZero() {
		t.Fatalf("stored job lost fields: %+v", got)
	}
	sentinel := errors.New("abort")
	if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.Name = "changed"; return sentinel }); !errors.Is(err, sentinel) {
		t.Fatalf("UpdateJob with failing fn: %v", err)
	}
	if got, _ := s.GetJob(ctx, j.ID); got.Name != "test" {
		t.Fatalf("a failed update was stored: name %q", got.Name)
	}
	if _, err := s.UpdateJob(ctx, "nosuchjob", func(*job.Job) error { return nil }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateJob(nosuchjob) = %v", err)
	}
}

func testUpdateRejects(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("alice")
	j.State = job.Held
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	_, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.State = job.Running; return nil })
	if !errors.Is(err, job.ErrInvalidTransition) {
		t.Fatalf("held → running stored: %v", err)
	}
	if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Canceled, "", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	_, err = s.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.State = job.Pending; return nil })
	if !errors.Is(err, job.ErrInvalidTransition) {
		t.Fatalf("a terminal job changed state: %v", err)
	}
}

func testUpdateConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("alice")
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.Submissions++; return nil })
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, _ := s.GetJob(ctx, j.ID)
	if got.Submissions != n {
		t.Fatalf("%d concurrent increments left %d: updates are not atomic", n, got.Submissions)
	}
}

func testDelete(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("alice")
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendLog(ctx, j.ID, "stdout", 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddDelivered(ctx, j.ID, job.Delivered{Path: "/out/a", File: "a", Size: 1}, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, store.Token{ID: "tokj", Hash: "hj", User: "alice", Scopes: []string{"job"}, JobID: j.ID, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetJob(ctx, j.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted job still there: %v", err)
	}
	if _, err := s.TokenByHash(ctx, "hj"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted job's token still there: %v", err)
	}
	if b, _, _ := s.ReadLog(ctx, j.ID, "stdout", 0, 10); len(b) != 0 {
		t.Fatalf("deleted job's log still there: %q", b)
	}
	if ds, err := s.Delivered(ctx, j.ID); err != nil || len(ds) != 0 {
		t.Fatalf("deleted job's delivered files still there: %v %v", ds, err)
	}
	if err := s.DeleteJob(ctx, j.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

func testDelivered(t *testing.T, s store.Store) {
	ctx := context.Background()
	j, other := newJob("alice"), newJob("alice")
	for _, x := range []*job.Job{j, other} {
		if _, err := s.CreateJob(ctx, x, nil); err != nil {
			t.Fatal(err)
		}
	}
	rec := func(file string, size int64) job.Delivered {
		return job.Delivered{Path: "/out/" + file, File: "res/" + file, Size: size}
	}
	for _, f := range []string{"b", "a", "c"} {
		if err := s.AddDelivered(ctx, j.ID, rec(f, 1), 3); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddDelivered(ctx, j.ID, rec("d", 1), 3); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("a record past the limit: %v, want ErrLimit", err)
	}
	// at the limit, a file delivered again replaces its record in place
	if err := s.AddDelivered(ctx, j.ID, rec("a", 7), 3); err != nil {
		t.Fatalf("a record replaced at the limit: %v", err)
	}
	// a pending record leaves a file's record as it is; for a new file at
	// the limit it is refused like any
	if err := s.AddDelivered(ctx, j.ID, rec("a", -1), 3); err != nil {
		t.Fatalf("a pending record of a recorded file: %v", err)
	}
	if err := s.AddDelivered(ctx, j.ID, rec("e", -1), 3); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("a pending record past the limit: %v, want ErrLimit", err)
	}
	got, err := s.Delivered(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []job.Delivered{rec("b", 1), rec("a", 7), rec("c", 1)}; !slices.Equal(got, want) {
		t.Fatalf("Delivered = %v, want %v", got, want)
	}
	// under the limit, a pending record holds the file's place until the
	// upload's record takes it
	for _, d := range []job.Delivered{rec("z", 1), rec("p", -1), rec("y", 2)} {
		if err := s.AddDelivered(ctx, other.ID, d, 3); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.Delivered(ctx, other.ID); err != nil || !slices.Equal(got, []job.Delivered{rec("z", 1), rec("p", -1), rec("y", 2)}) {
		t.Fatalf("with a pending record: %v, %v", got, err)
	}
	if err := s.AddDelivered(ctx, other.ID, rec("p", 4), 3); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Delivered(ctx, other.ID); err != nil || !slices.Equal(got, []job.Delivered{rec("z", 1), rec("p", 4), rec("y", 2)}) {
		t.Fatalf("after the upload: %v, %v", got, err)
	}
	if err := s.AddDelivered(ctx, "nosuchjob", rec("a", 1), 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a record of no job: %v, want ErrNotFound", err)
	}
	if got, err := s.Delivered(ctx, "nosuchjob"); err != nil || len(got) != 0 {
		t.Fatalf("records of no job: %v %v", got, err)
	}

	// records added at once keep the limit and distinct numbers
	many := newJob("alice")
	if _, err := s.CreateJob(ctx, many, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var limited atomic.Int32
	for i := range 12 {
		wg.Go(func() {
			err := s.AddDelivered(ctx, many.ID, rec(fmt.Sprint(i), int64(i)), 5)
			if errors.Is(err, store.ErrLimit) {
				limited.Add(1)
			} else if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err = s.Delivered(ctx, many.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || limited.Load() != 7 {
		t.Fatalf("12 records at once, limit 5: %d kept (%v), %d refused", len(got), got, limited.Load())
	}
}

func testLogs(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("alice")
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	app := func(off int64, data string) (int64, error) {
		return s.AppendLog(ctx, j.ID, "stdout", off, []byte(data))
	}
	if n, err := app(0, "hello "); err != nil || n != 6 {
		t.Fatalf("append = %d, %v", n, err)
	}
	if n, err := app(0, "hello "); err != nil || n != 6 {
		t.Fatalf("retried append = %d, %v; want 6, nil", n, err)
	}
	if n, err := app(3, "lo world"); err != nil || n != 11 {
		t.Fatalf("overlapping append = %d, %v; want 11", n, err)
	}
	if _, err := app(20, "gap"); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("append with a gap: %v, want ErrConflict", err)
	}
	if _, err := s.AppendLog(ctx, j.ID, "stderr", 0, []byte("err")); err != nil {
		t.Fatal(err)
	}
	b, size, err := s.ReadLog(ctx, j.ID, "stdout", 0, 1<<20)
	if err != nil || string(b) != "hello world" || size != 11 {
		t.Fatalf("ReadLog = %q, %d, %v", b, size, err)
	}
	b, _, _ = s.ReadLog(ctx, j.ID, "stdout", 4, 3)
	if string(b) != "o w" {
		t.Fatalf("ReadLog(4, 3) = %q, want %q", b, "o w")
	}
	b, size, _ = s.ReadLog(ctx, j.ID, "stdout", 11, 10)
	if len(b) != 0 || size != 11 {
		t.Fatalf("ReadLog at end = %q, %d", b, size)
	}
	// the size alone: nothing read (a log's tail is asked for by its size)
	for _, off := range []int64{0, 5, math.MaxInt64} {
		if b, size, err := s.ReadLog(ctx, j.ID, "stdout", off, 0); len(b) != 0 || size != 11 || err != nil {
			t.Fatalf("ReadLog(%d, 0) = %q, %d, %v; want only the size", off, b, size, err)
		}
	}
	// Many small chunks read back whole.
	var want bytes.Buffer
	want.WriteString("hello world")
	off := int64(11)
	for i := 0; i < 50; i++ {
		chunk := fmt.Sprintf("line %d\n", i)
		want.WriteString(chunk)
		n, err := app(off, chunk)
		if err != nil {
			t.Fatal(err)
		}
		off = n
	}
	b, size, _ = s.ReadLog(ctx, j.ID, "stdout", 0, 1<<20)
	if !bytes.Equal(b, want.Bytes()) || size != int64(want.Len()) {
		t.Fatalf("log after 50 appends differs:\n%q\nwant\n%q", b, want.Bytes())
	}
	b, _, _ = s.ReadLog(ctx, j.ID, "stderr", 0, 100)
	if string(b) != "err" {
		t.Fatalf("stderr = %q", b)
	}
}

func testTokens(t *testing.T, s store.Store) {
	ctx := context.Background()
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	a := store.Token{ID: "t1", Hash: "h1", User: "alice", Name: "laptop", Scopes: []string{"jobs:read", "files:read"}, CreatedAt: time.Now().UTC(), ExpiresAt: exp}
	if err := s.CreateToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, store.Token{ID: "t2", Hash: "h2", User: "bob", Scopes: []string{"admin"}, CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, store.Token{ID: "t3", Hash: "h3", User: "alice", Scopes: []string{"job"}, JobID: "somejob", CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateToken(ctx, store.Token{ID: "t4", Hash: "h1", User: "carol"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate hash: %v, want ErrConflict", err)
	}
	got, err := s.TokenByHash(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "t1" || got.User != "alice" || got.Name != "laptop" || fmt.Sprint(got.Scopes) != "[jobs:read files:read]" || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("TokenByHash = %+v", got)
	}
	if jt, _ := s.TokenByHash(ctx, "h3"); jt.JobID != "somejob" {
		t.Fatalf("job token lost its job: %+v", jt)
	}
	if err := s.CreateToken(ctx, store.Token{ID: "t5", Hash: "h5", User: "dave", Name: "web session", SessionKey: "k5", CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.TokenByHash(ctx, "h5"); st.SessionKey != "k5" {
		t.Fatalf("a web session lost its key: %+v", st)
	}
	list, err := s.ListTokens(ctx, "alice")
	if err != nil || len(list) != 1 || list[0].ID != "t1" {
		t.Fatalf("ListTokens(alice) = %+v, %v; want t1 only (no job tokens)", list, err)
	}
	all, _ := s.ListTokens(ctx, "")
	if len(all) != 3 {
		t.Fatalf("ListTokens(all) = %d tokens, want 3", len(all))
	}
	if err := s.DeleteToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TokenByHash(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted token found: %v", err)
	}
	if err := s.DeleteToken(ctx, "t1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	// tokens long expired are purged; those that never expire stay
	now := time.Now().UTC()
	for i, exp := range []time.Time{now.Add(-48 * time.Hour), now.Add(-47 * time.Hour), now.Add(-time.Hour), now.Add(time.Hour)} {
		if err := s.CreateToken(ctx, store.Token{ID: fmt.Sprintf("x%d", i), Hash: fmt.Sprintf("hx%d", i), User: "dora", CreatedAt: now, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PurgeTokens(ctx, now.Add(-24*time.Hour), 1); err != nil || n != 1 {
		t.Fatalf("PurgeTokens (limit 1) = %d, %v", n, err)
	}
	if n, err := s.PurgeTokens(ctx, now.Add(-24*time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("PurgeTokens = %d, %v; want the other token expired two days ago", n, err)
	}
	left, _ := s.ListTokens(ctx, "dora")
	if len(left) != 2 || left[0].ID != "x2" || left[1].ID != "x3" {
		t.Fatalf("left %+v", left)
	}
	if _, err := s.TokenByHash(ctx, "h2"); err != nil {
		t.Fatalf("a token that never expires was purged: %v", err)
	}
}

// testConcurrentCreates checks that jobs created at once are each stored
// once, with duplicates of one idempotency key resolved to one job.
func testConcurrentCreates(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 50
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		j := newJob("alice")
		if i%10 == 0 {
			j.IdemKey = "same"
		}
		wg.Add(1)
		go func(i int, j *job.Job) {
			defer wg.Done()
			got, err := s.CreateJob(ctx, j, nil)
			if got != nil {
				ids[i] = got.ID
			}
			errs[i] = err
		}(i, j)
	}
	wg.Wait()
	dups, idemID := 0, ""
	for i := 0; i < n; i++ {
		switch {
		case errors.Is(errs[i], store.ErrDuplicate):
			dups++
		case errs[i] != nil:
			t.Fatalf("create %d: %v", i, errs[i])
		}
		if i%10 == 0 {
			if idemID == "" {
				idemID = ids[i]
			} else if ids[i] != idemID {
				t.Fatalf("one idempotency key gave jobs %s and %s", idemID, ids[i])
			}
		}
	}
	if dups != 4 {
		t.Fatalf("%d duplicates reported, want 4", dups)
	}
	all, _, err := s.ListJobs(ctx, store.JobFilter{Owner: "alice", Limit: 1000})
	if err != nil || len(all) != n-4 {
		t.Fatalf("stored %d jobs, %v; want %d", len(all), err, n-4)
	}
}
