package storetest

import (
	"context"
	"fmt"
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
	ds, err := s.DueDeliveries(ctx, now, 10)
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
	if ds, _ := s.DueDeliveries(ctx, now, 10); len(ds) != 0 {
		t.Fatalf("due now after a retry and a delivery: %+v", ds)
	}
	later, _ := s.DueDeliveries(ctx, now.Add(2*time.Minute), 10)
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
}
