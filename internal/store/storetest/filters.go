package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// testEveryFieldStored: a job with every field set reads back equal.
func testEveryFieldStored(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	code := 7
	j := &job.Job{
		ID: "every", Name: "n", Owner: "alice", Template: "hello", TemplateVersion: 4, Environment: "slurm",
		State: job.Pending, Reason: "created", Parameters: json.RawMessage(`{"zeta":1,"a":[1.50,"x"]}`),
		Inputs: map[string]string{"in": "p"}, InputSizes: map[string]int64{"in": 5},
		Resources: job.Resources{Nodes: 2, CoresPerNode: 3, MemoryMB: 4, WalltimeS: 5},
		Labels:    map[string]string{"k": "v"}, ParentID: "p", SweepID: "sw", SweepIndex: 3, SweepSize: 5, SweepMaxRunning: 2, Project: "chem01", Depth: 1,
		CreatedAt: t0, StartedAt: t0.Add(time.Second), FinishedAt: t0.Add(2 * time.Second), ExitCode: &code,
		Usage: &job.Usage{CPUSeconds: 1.5, MaxRSSBytes: 6, WallSeconds: 2.5}, Scheduler: "slurm", BackendID: "42",
		Error: "e", IdemKey: "ik", IdemHash: "ih", TemplateDoc: json.RawMessage(`{"z":1,"a":{"y":2,"b":3}}`),
		Submissions: 2, ClaimedBy: "r1", ClaimedUntil: t0.Add(time.Minute),
		Steps: []job.Step{{Index: 0, StartedAt: t0, EndedAt: t0.Add(time.Second), ExitCode: &code, Stdout: [2]int64{0, 5}, Stderr: [2]int64{1, 2}},
			{Index: 1, StartedAt: t0.Add(time.Second), Stdout: [2]int64{5, 5}}},
		Delivered: []job.Delivered{{Path: "/data/out.txt", File: "results/out.txt", Size: 12}},
	}
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, j) {
		t.Fatalf("GetJob\n got %+v\nwant %+v", got, j)
	}
	got, err = s.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.Submissions++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetJob(ctx, j.ID)
	j.Submissions++
	if !reflect.DeepEqual(got, j) {
		t.Fatalf("GetJob after update\n got %+v\nwant %+v", got, j)
	}
}

// filterJobs makes jobs of two owners that differ in state, template,
// labels, parent and sweep, and returns alice's ids, oldest first.
func filterJobs(t *testing.T, s store.Store) []string {
	ctx := context.Background()
	parent := newJob("alice")
	parent.ID = "fparent"
	if _, err := s.CreateJob(ctx, parent, nil); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 12; i++ {
		for _, owner := range []string{"alice", "bob"} {
			j := newJob(owner)
			j.ID = fmt.Sprintf("f%s%02d", owner, i)
			j.State = job.Held
			if i%3 == 0 {
				j.State = job.Pending
			}
			j.Template = fmt.Sprintf("t%d", i%2)
			j.Labels = map[string]string{"color": []string{"red", "blue", "green"}[i%3], "i": fmt.Sprint(i)}
			if i%4 == 0 {
				j.ParentID = parent.ID
			}
			if i >= 6 {
				j.SweepID = "sweep-" + owner
			}
			if _, err := s.CreateJob(ctx, j, nil); err != nil {
				t.Fatal(err)
			}
			if owner == "alice" {
				ids = append(ids, j.ID)
			}
		}
	}
	return ids
}

// pages lists every page of f with limit 2 and returns the ids.
func pages(t *testing.T, s store.Store, f store.JobFilter) []string {
	t.Helper()
	f.Limit = 2
	var ids []string
	for n := 0; ; n++ {
		page, next, err := s.ListJobs(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("ListJobs(%+v): page of %d, limit 2", f, len(page))
		}
		for _, j := range page {
			ids = append(ids, j.ID)
		}
		if next == "" {
			return ids
		}
		if n > 30 {
			t.Fatalf("ListJobs(%+v): pagination does not end", f)
		}
		f.PageToken = next
	}
}

func testFilterPages(t *testing.T, s store.Store) {
	ids := filterJobs(t, s)
	pick := func(keep func(i int) bool) []string {
		var out []string
		for i := len(ids) - 1; i >= 0; i-- {
			if keep(i) {
				out = append(out, ids[i])
			}
		}
		return out
	}
	reverse := func(a []string) []string {
		b := make([]string, len(a))
		for i := range a {
			b[len(a)-1-i] = a[i]
		}
		return b
	}
	tests := []struct {
		name string
		f    store.JobFilter
		want []string // newest first
	}{
		{"owner", store.JobFilter{Owner: "alice"}, append(pick(func(int) bool { return true }), "fparent")},
		{"owner+state", store.JobFilter{Owner: "alice", States: []job.State{job.Held}}, pick(func(i int) bool { return i%3 != 0 })},
		{"owner+states", store.JobFilter{Owner: "alice", States: []job.State{job.Held, job.Pending}}, append(pick(func(int) bool { return true }), "fparent")},
		{"owner+template", store.JobFilter{Owner: "alice", Template: "t1"}, pick(func(i int) bool { return i%2 == 1 })},
		{"owner+label", store.JobFilter{Owner: "alice", LabelKey: "color", LabelValue: "blue"}, pick(func(i int) bool { return i%3 == 1 })},
		{"owner+label+state", store.JobFilter{Owner: "alice", LabelKey: "color", LabelValue: "red", States: []job.State{job.Pending}}, pick(func(i int) bool { return i%3 == 0 })},
		{"owner+template+state", store.JobFilter{Owner: "alice", Template: "t0", States: []job.State{job.Held}}, pick(func(i int) bool { return i%2 == 0 && i%3 != 0 })},
		{"parent", store.JobFilter{ParentID: "fparent"}, []string{"fbob08", "falice08", "fbob04", "falice04", "fbob00", "falice00"}},
		{"owner+parent", store.JobFilter{Owner: "alice", ParentID: "fparent"}, pick(func(i int) bool { return i%4 == 0 })},
		{"sweep", store.JobFilter{SweepID: "sweep-alice"}, pick(func(i int) bool { return i >= 6 })},
		{"owner+sweep", store.JobFilter{Owner: "bob", SweepID: "sweep-alice"}, nil},
		{"label, any owner", store.JobFilter{LabelKey: "i", LabelValue: "3"}, []string{"fbob03", "falice03"}},
		{"state, any owner", store.JobFilter{States: []job.State{job.Pending}}, []string{"fbob09", "falice09", "fbob06", "falice06", "fbob03", "falice03", "fbob00", "falice00", "fparent"}},
	}
	for _, tt := range tests {
		if got := pages(t, s, tt.f); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: pages of ListJobs(%+v) = %v, want %v", tt.name, tt.f, got, tt.want)
		}
		tt.f.Oldest = true
		if got := pages(t, s, tt.f); fmt.Sprint(got) != fmt.Sprint(reverse(tt.want)) {
			t.Errorf("%s, oldest first: pages of ListJobs(%+v) = %v, want %v", tt.name, tt.f, got, reverse(tt.want))
		}
	}
}

// testInEngine: InEngine lists the jobs with a backend id that have not
// ended, and follows their updates.
func testInEngine(t *testing.T, s store.Store) {
	ctx := context.Background()
	var ids []string
	for i, st := range []job.State{job.Held, job.Held, job.Queued, job.Running, job.Pending, job.Succeeded, job.Failed} {
		j := newJob("alice")
		j.State = st
		if i != 0 && i != 4 {
			j.Scheduler, j.BackendID = "local", fmt.Sprint("b", i)
		}
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	list := func() string {
		t.Helper()
		var got []string
		for _, f := range []store.JobFilter{{InEngine: true, Oldest: true}, {InEngine: true, Oldest: true, States: []job.State{job.Held, job.Queued, job.Running}}} {
			for _, id := range pages(t, s, f) {
				got = append(got, id)
			}
		}
		return fmt.Sprint(got)
	}
	want := func(i ...int) string {
		var w []string
		for range 2 {
			for _, k := range i {
				w = append(w, ids[k])
			}
		}
		return fmt.Sprint(w)
	}
	// Held with a backend id (held in the engine), queued, running.
	if got := list(); got != want(1, 2, 3) {
		t.Fatalf("InEngine: %v, want %v", got, want(1, 2, 3))
	}
	if _, err := s.UpdateJob(ctx, ids[3], func(j *job.Job) error { return j.SetState(job.Succeeded, "done", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateJob(ctx, ids[0], func(j *job.Job) error { j.Scheduler, j.BackendID = "local", "b0"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := list(); got != want(0, 1, 2) {
		t.Fatalf("InEngine after updates: %v, want %v", got, want(0, 1, 2))
	}
}

// testLabelsFollowUpdates: a label changed by UpdateJob is what label
// filters see.
func testLabelsFollowUpdates(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("alice")
	j.Labels = map[string]string{"stage": "one", "keep": "x"}
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.Labels["stage"] = "two"; return nil }); err != nil {
		t.Fatal(err)
	}
	count := func(k, v string) int {
		got, _, err := s.ListJobs(ctx, store.JobFilter{Owner: "alice", LabelKey: k, LabelValue: v})
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if count("stage", "one") != 0 || count("stage", "two") != 1 || count("keep", "x") != 1 {
		t.Fatalf("after a label change: stage=one %d, stage=two %d, keep=x %d; want 0, 1, 1", count("stage", "one"), count("stage", "two"), count("keep", "x"))
	}
	if err := s.DeleteJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if count("keep", "x") != 0 {
		t.Fatal("a deleted job is still listed by label")
	}
}

func testPurgeFinished(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	var ended []string
	for i := 0; i < 5; i++ {
		j := newJob("alice")
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if i == 4 {
			continue // still pending
		}
		if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error {
			return j.SetState([]job.State{job.Failed, job.Canceled, job.Failed, job.Canceled}[i], "done", base.Add(time.Duration(i)*time.Minute))
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendLog(ctx, j.ID, "stdout", 0, []byte("out")); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateToken(ctx, store.Token{ID: "tp" + j.ID, Hash: "hp" + j.ID, User: "alice", Scopes: []string{"job"}, JobID: j.ID, CreatedAt: base}); err != nil {
			t.Fatal(err)
		}
		ended = append(ended, j.ID)
	}
	// Finished at base, base+1m, base+2m, base+3m; before base+150s: 3.
	got, err := s.PurgeFinished(ctx, base.Add(150*time.Second), 2, store.Keep{})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(ended[:2]) {
		t.Fatalf("PurgeFinished(limit 2) = %v, want %v (oldest first)", got, ended[:2])
	}
	if got[0].Owner != "alice" || got[1].Owner != "alice" {
		t.Fatalf("PurgeFinished: owners %+v, want alice's (the caller counts their bytes off)", got)
	}
	got, err = s.PurgeFinished(ctx, base.Add(150*time.Second), 10, store.Keep{})
	if err != nil || fmt.Sprint(got) != fmt.Sprint(ended[2:3]) {
		t.Fatalf("PurgeFinished again = %v, %v; want %v", got, err, ended[2:3])
	}
	for _, id := range ended[:3] {
		if _, err := s.GetJob(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("purged job %s: %v", id, err)
		}
		if ev, _ := s.Events(ctx, id); len(ev) != 0 {
			t.Fatalf("purged job %s kept events %v", id, ev)
		}
		if b, _, _ := s.ReadLog(ctx, id, "stdout", 0, 10); len(b) != 0 {
			t.Fatalf("purged job %s kept its log", id)
		}
		if _, err := s.TokenByHash(ctx, "hp"+id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("purged job %s kept its token: %v", id, err)
		}
	}
	left, _, err := s.ListJobs(ctx, store.JobFilter{Owner: "alice"})
	if err != nil || len(left) != 2 {
		t.Fatalf("left %d jobs, %v; want the one finished later and the pending one", len(left), err)
	}
	if got, err := s.PurgeFinished(ctx, time.Now(), 10, store.Keep{}); err != nil || fmt.Sprint(got) != fmt.Sprint(ended[3:]) {
		t.Fatalf("PurgeFinished(now) = %v, %v; want %v (never the pending job)", got, err, ended[3:])
	}
}

// Jobs that DeleteJob and PurgeFinished remove are recorded, with their
// owners, until DropLeftover, so that what a removed job left in the
// bucket is swept later. A job taken is not taken again until its claim
// runs out; jobs that are there are never taken.
func testLeftovers(t *testing.T, s store.Store) {
	ctx := context.Background()
	start := time.Now()
	mk := func(owner string, ended time.Time) string {
		j := newJob(owner)
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if !ended.IsZero() {
			if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Canceled, "done", ended) }); err != nil {
				t.Fatal(err)
			}
		}
		return j.ID
	}
	deleted, purged, kept := mk("alice", time.Time{}), mk("bob", start.Add(-time.Hour)), mk("alice", start)
	take := func(before time.Time, limit int, want ...store.PurgedJob) {
		t.Helper()
		if got, err := s.TakeLeftovers(ctx, before, limit); err != nil || !slices.Equal(got, want) {
			t.Fatalf("TakeLeftovers(%v, %d) = %+v, %v; want %+v", before.Sub(start), limit, got, err, want)
		}
	}
	take(time.Now().Add(time.Hour), 10) // none removed yet
	if err := s.DeleteJob(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // removed in this order
	if p, err := s.PurgeFinished(ctx, start.Add(-time.Minute), 10, store.Keep{}); err != nil || len(p) != 1 || p[0].ID != purged {
		t.Fatalf("PurgeFinished = %v, %v; want %s", p, err, purged)
	}
	removed := time.Now()
	if _, err := s.GetJob(ctx, kept); err != nil {
		t.Fatalf("the job kept: %v", err)
	}
	d, p := store.PurgedJob{ID: deleted, Owner: "alice"}, store.PurgedJob{ID: purged, Owner: "bob"}
	take(start.Add(-time.Second), 10) // removed after that
	take(removed, 1, d)               // the oldest first
	take(removed, 10, p)              // d is taken
	take(removed, 10)                 // both are
	time.Sleep(2 * time.Millisecond)
	take(time.Now(), 10, d, p) // their claims ran out, the oldest first
	if err := s.DropLeftover(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	if err := s.DropLeftover(ctx, deleted); err != nil {
		t.Fatalf("dropping again: %v", err)
	}
	take(time.Now().Add(time.Second), 10, p)

	// sweeps at once (replicas) never take the same job
	want := map[string]int{purged: 1}
	for i := 0; i < 6; i++ {
		id := mk("carol", time.Time{})
		if err := s.DeleteJob(ctx, id); err != nil {
			t.Fatal(err)
		}
		want[id] = 1
	}
	time.Sleep(2 * time.Millisecond)
	before := time.Now() // after the removals, before the takes
	got := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ps, err := s.TakeLeftovers(ctx, before, 1)
				if err != nil || len(ps) == 0 {
					if err != nil {
						t.Error(err)
					}
					return
				}
				mu.Lock()
				got[ps[0].ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !maps.Equal(got, want) {
		t.Fatalf("sweeps at once took %v; want each of %v once", got, want)
	}
}

// A sweep's finished jobs stay while any of its jobs has not finished: a
// job waiting for the sweep counts its jobs against the sweep's size, and
// a purged one would count as deleted.
func testPurgeKeepsUnfinishedSweeps(t *testing.T, s store.Store) {
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	mk := func(sweep string, ended bool) string {
		j := newJob("alice")
		j.SweepID = sweep
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if ended {
			if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Canceled, "done", old) }); err != nil {
				t.Fatal(err)
			}
		}
		return j.ID
	}
	early, late := mk("open", true), mk("open", false)
	alone := mk("", true)
	whole := mk("done", true)
	got, err := s.PurgeFinished(ctx, time.Now(), 10, store.Keep{})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(got))
	for i, p := range got {
		ids[i] = p.ID
	}
	slices.Sort(ids)
	want := []string{alone, whole}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("PurgeFinished took %v; want %v (not %s, whose sweep has %s unfinished)", ids, want, early, late)
	}
	if _, err := s.UpdateJob(ctx, late, func(j *job.Job) error { return j.SetState(job.Canceled, "done", old) }); err != nil {
		t.Fatal(err)
	}
	// what jobs not finished need stays: a job by its id, a sweep's jobs
	// by the sweep's (found by the eighth probe)
	needed, kept := mk("", true), mk("needed", true)
	mk("needed", true)
	free := mk("", true)
	many := []string{needed}
	for i := range 40000 { // past SQLite's 32,766 variables (found by review)
		many = append(many, fmt.Sprint("waited-for-", i))
	}
	got, err = s.PurgeFinished(ctx, time.Now(), 10, store.Keep{Jobs: many, Sweeps: []string{"needed", "x"}})
	ids = ids[:0]
	for _, p := range got {
		ids = append(ids, p.ID)
	}
	slices.Sort(ids)
	want = []string{early, late, free}
	slices.Sort(want)
	if err != nil || !slices.Equal(ids, want) {
		t.Fatalf("PurgeFinished with a keep = %v, %v; want %v (not %s, nor the sweep of %s)", ids, err, want, needed, kept)
	}
	if got, err := s.PurgeFinished(ctx, time.Now(), 10, store.Keep{}); err != nil || len(got) != 3 {
		t.Fatalf("PurgeFinished once nothing needs them = %v, %v; want 3 jobs", got, err)
	}
}
