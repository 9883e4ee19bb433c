package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Every state change, creation included, is in its owner's feed, numbered
// 1, 2, ... with no gap and none twice even under concurrent writers; a
// reader resumes after a number; other owners' changes are not there;
// old changes are purged.
func testFeed(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newJob("feeder")
	a.SweepID = "sw1"
	if _, err := s.CreateJob(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateJob(ctx, newJob("other"), nil); err != nil {
		t.Fatal(err)
	}
	for _, st := range []job.State{job.Queued, job.Running, job.Succeeded} {
		if _, err := s.UpdateJob(ctx, a.ID, func(j *job.Job) error { return j.SetState(st, "to "+string(st), time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	// an update that changes no state is no change
	if _, err := s.UpdateJob(ctx, a.ID, func(j *job.Job) error { j.Error = "x"; return nil }); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Changes(ctx, "feeder", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, fmt.Sprintf("%d %s %s %s", c.Seq, c.JobID, c.SweepID, c.State))
		if c.Owner != "feeder" || c.Time.IsZero() {
			t.Fatalf("change %+v", c)
		}
	}
	want := []string{"1 " + a.ID + " sw1 pending", "2 " + a.ID + " sw1 queued", "3 " + a.ID + " sw1 running", "4 " + a.ID + " sw1 succeeded"}
	if fmt.Sprint(got) != fmt.Sprint(want) || cs[3].Reason != "to succeeded" {
		t.Fatalf("feed %q, want %q", got, want)
	}
	if n, err := s.LastChange(ctx, "feeder"); err != nil || n != 4 {
		t.Fatalf("last change %d, %v", n, err)
	}
	if n, err := s.LastChange(ctx, "nobody"); err != nil || n != 0 {
		t.Fatalf("last change of nobody %d, %v", n, err)
	}
	if cs, _ := s.Changes(ctx, "feeder", 2, 1); len(cs) != 1 || cs[0].Seq != 3 {
		t.Fatalf("after 2, one: %+v", cs)
	}
	if cs, _ := s.Changes(ctx, "other", 0, 100); len(cs) != 1 || cs[0].Seq != 1 {
		t.Fatalf("the other owner's feed: %+v", cs)
	}

	// concurrent writers: every number once
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		j := newJob("busy") // newJob is not for concurrent use
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.CreateJob(ctx, j, nil); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Canceled, "x", time.Now()) }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	cs, _ = s.Changes(ctx, "busy", 0, 100)
	for i, c := range cs {
		if c.Seq != int64(i+1) {
			t.Fatalf("concurrent feed numbers: %d at %d", c.Seq, i)
		}
	}
	if len(cs) != 16 {
		t.Fatalf("%d changes, want 16", len(cs))
	}

	n, err := s.PurgeChanges(ctx, time.Now().Add(time.Hour), 3)
	if err != nil || n != 3 {
		t.Fatalf("purged %d, %v", n, err)
	}
	if cs, _ := s.Changes(ctx, "feeder", 0, 100); len(cs) == 0 || cs[0].Seq == 1 {
		t.Fatalf("the oldest change of all is left: %+v", cs)
	}
}

// A change a job's Notify wants queues a delivery in the same transaction;
// a retried one comes due again later; a done one is gone, with its note
// among the job's events; the user's webhook secret is kept beside the
// rest of the user.
func testDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("hooked")
	j.Notify = &job.Notify{URL: "https://example.org/hook", Events: []string{"running", job.NotifyTerminal}}
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	for _, st := range []job.State{job.Queued, job.Running, job.Failed} {
		if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(st, "to "+string(st), time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	ds, err := s.DueDeliveries(ctx, now, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 || ds[0].Change.State != job.Running || ds[1].Change.State != job.Failed || ds[0].URL != "https://example.org/hook" ||
		ds[0].Change.Seq != 3 || ds[1].Change.Seq != 4 || ds[0].Change.JobID != j.ID || ds[0].Change.Owner != "hooked" || ds[0].Attempts != 0 {
		t.Fatalf("due deliveries %+v", ds)
	}
	if ds[0].Change.EventID() == ds[1].Change.EventID() {
		t.Fatal("two events with one id")
	}
	// one claim wins
	if ok, err := s.ClaimDelivery(ctx, ds[0], now.Add(time.Second)); err != nil || !ok {
		t.Fatalf("claim: %v, %v", ok, err)
	}
	if ok, err := s.ClaimDelivery(ctx, ds[0], now.Add(time.Second)); err != nil || ok {
		t.Fatalf("a second claim of one read: %v, %v", ok, err)
	}
	if err := s.RetryDelivery(ctx, ds[0], now.Add(time.Minute), "webhook: failed once"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeliveryDone(ctx, ds[1], "webhook: delivered"); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.DueDeliveries(ctx, now, 10, 0); len(ds) != 0 {
		t.Fatalf("due now after a retry and a delivery: %+v", ds)
	}
	later, _ := s.DueDeliveries(ctx, now.Add(2*time.Minute), 10, 0)
	if len(later) != 1 || later[0].ID != ds[0].ID || later[0].Attempts != 1 {
		t.Fatalf("due later: %+v", later)
	}
	evs, _ := s.Events(ctx, j.ID)
	last := evs[len(evs)-1]
	if last.Reason != "webhook: delivered" || last.State != job.Failed || evs[len(evs)-2].Reason != "webhook: failed once" {
		t.Fatalf("events %+v", evs)
	}
	// a delivery of a job deleted since is still done, without a note
	if err := s.DeleteJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeliveryDone(ctx, later[0], "webhook: delivered"); err != nil {
		t.Fatal(err)
	}

	if err := s.SetWebhookSecret(ctx, "hooked", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetUserDisabled(ctx, "hooked", true, now); err != nil {
		t.Fatal(err)
	}
	if u, err := s.User(ctx, "hooked"); err != nil || u.WebhookSecret != "s3cret" || !u.Disabled {
		t.Fatalf("user %+v, %v", u, err)
	}
	// a new secret changes nothing else of the user (a disable stays)
	if err := s.SetWebhookSecret(ctx, "hooked", "n3w"); err != nil {
		t.Fatal(err)
	}
	if u, err := s.User(ctx, "hooked"); err != nil || u.WebhookSecret != "n3w" || !u.Disabled || u.DisabledAt.IsZero() {
		t.Fatalf("user after a new secret %+v, %v", u, err)
	}

	// the deliveries to one URL wait together, attempts unchanged; the
	// others' are due as they were
	for _, url := range []string{"https://down.example/h", "https://down.example/h", "https://up.example/h"} {
		j := newJob("hooked")
		j.Notify = &job.Notify{URL: url, Events: []string{"running"}}
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Running, "run", time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	now = time.Now()
	if n, err := s.PostponeDeliveries(ctx, "https://down.example/h", now.Add(time.Hour)); err != nil || n != 2 {
		t.Fatalf("PostponeDeliveries = %d, %v; want 2", n, err)
	}
	if ds, _ := s.DueDeliveries(ctx, now, 10, 0); len(ds) != 1 || ds[0].URL != "https://up.example/h" {
		t.Fatalf("due now: %+v; want only the other URL's", ds)
	}
	if ds, _ := s.DueDeliveries(ctx, now.Add(time.Hour), 10, 0); len(ds) != 3 || ds[0].Attempts != 0 || ds[1].Attempts != 0 {
		t.Fatalf("due in an hour: %+v; want all three, never attempted", ds)
	}

	// at most perOwner of one owner's, the longest due: a flood does not
	// hold another owner's back
	var flood []int64
	for _, owner := range []string{"flood", "flood", "flood", "calm"} {
		j := newJob(owner)
		j.Notify = &job.Notify{URL: "https://" + owner + ".example/h", Events: []string{"running", job.NotifyTerminal}}
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		for _, st := range []job.State{job.Running, job.Succeeded} {
			if _, err := s.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(st, "to "+string(st), time.Now()) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	ds, err = s.DueDeliveries(ctx, time.Now().Add(2*time.Hour), 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	var calm int
	for _, d := range ds {
		switch d.Change.Owner {
		case "flood":
			flood = append(flood, d.Change.Seq)
		case "calm":
			calm++
		}
	}
	if !slices.Equal(flood, []int64{2, 3}) || calm != 2 {
		t.Fatalf("due with at most 2 an owner: flood's changes %v, want [2 3] (its first job's); calm's %d, want 2", flood, calm)
	}
}

// CreateJobs stores a sweep's jobs together, or none of them: over the
// parent's children limit, or over the owner's quota, nothing is left.
func testCreateJobs(t *testing.T, s store.Store) {
	ctx := context.Background()
	parent := newJob("sweeper")
	if _, err := s.CreateJob(ctx, parent, nil); err != nil {
		t.Fatal(err)
	}
	batch := func(n int) []*job.Job {
		var out []*job.Job
		for i := 0; i < n; i++ {
			j := newJob("sweeper")
			j.ParentID, j.SweepID, j.SweepIndex = parent.ID, "swc", i
			out = append(out, j)
		}
		return out
	}
	if _, err := s.CreateJobs(ctx, batch(3), &store.CreateOptions{MaxChildren: 2}); !errors.Is(err, store.ErrLimit) {
		t.Fatalf("3 children over a limit of 2: %v", err)
	}
	var qe *store.QuotaError
	if _, err := s.CreateJobs(ctx, batch(3), &store.CreateOptions{MaxJobs: 3}); !errors.As(err, &qe) || qe.Name != "jobs" {
		t.Fatalf("3 jobs over a quota of 3 with one running: %v", err)
	}
	if n, err := store.CountJobs(ctx, s, store.JobFilter{Owner: "sweeper"}); err != nil || n != 1 {
		t.Fatalf("refused batches left jobs: %d, %v", n, err)
	}
	jobs := batch(3)
	if _, err := s.CreateJobs(ctx, jobs, &store.CreateOptions{MaxChildren: 3, MaxJobs: 4, MaxCores: 100}); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		got, err := s.GetJob(ctx, j.ID)
		if err != nil || got.SweepID != "swc" || got.ParentID != parent.ID {
			t.Fatalf("job %s: %+v, %v", j.ID, got, err)
		}
	}
	if tot, _ := total(t, s, "sweeper"); tot.ActiveJobs != 4 || tot.Jobs != 4 || tot.ActiveCores != 8 {
		t.Fatalf("usage %+v, want 4 jobs of 2 cores each, all active", tot)
	}
	if cs, _ := s.Changes(ctx, "sweeper", 0, 100); len(cs) != 4 {
		t.Fatalf("changes %+v, want the four creations", cs)
	}
	// the first job may carry the sweep's idempotency key: a batch with it
	// again stores nothing, and answers the first job it made
	keyed := func() []*job.Job {
		b := batch(2)
		for _, j := range b {
			j.ParentID, j.SweepID = "", "swk"
		}
		b[0].IdemKey, b[0].IdemHash = "sweep-key", "h1"
		return b
	}
	first := keyed()
	if dup, err := s.CreateJobs(ctx, first, nil); err != nil || dup != nil {
		t.Fatalf("keyed batch: %v, %v", dup, err)
	}
	dup, err := s.CreateJobs(ctx, keyed(), nil)
	if !errors.Is(err, store.ErrDuplicate) || dup == nil || dup.ID != first[0].ID || dup.SweepID != "swk" || dup.IdemHash != "h1" {
		t.Fatalf("the key again: %+v, %v", dup, err)
	}
	if n, _ := store.CountJobs(ctx, s, store.JobFilter{Owner: "sweeper", SweepID: "swk"}); n != 2 {
		t.Fatalf("%d jobs of the keyed sweep, want 2", n)
	}
	second := keyed()
	second[1].IdemKey = "another"
	if _, err := s.CreateJobs(ctx, second, nil); err == nil || errors.Is(err, store.ErrDuplicate) {
		t.Fatalf("a key on a job but the first: %v", err)
	}
}
