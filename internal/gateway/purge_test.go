package gateway

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Finished jobs past the retention go with their outputs; others stay.
func TestPurgeRemovesOldFinishedJobs(t *testing.T) {
	ctx := context.Background()
	g, err := Open(ctx, testConfig(t, ""), testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	mk := func(id string, end job.State) {
		j := &job.Job{ID: id, Owner: "alice", Template: "hello", TemplateVersion: 1, Environment: "local", State: job.Pending, CreatedAt: time.Now()}
		if _, err := g.store.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		if end != job.Pending {
			for _, st := range []job.State{job.Running, end} {
				if _, err := g.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(st, "test", time.Now()) }); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := g.bucket.Put(ctx, "jobs/"+id+"/outputs/out.txt", strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
	}
	mk("oldjob", job.Succeeded)
	mk("oldfail", job.Failed)
	mk("running", job.Pending)
	// the three outputs of a byte each count against alice's quota
	if _, err := g.store.AddStored(ctx, "alice", store.Stored{Bytes: 3, Files: 3}, store.Stored{}); err != nil {
		t.Fatal(err)
	}
	// Everything finished before now+1s counts as old here; the pending
	// job is never purged.
	n, err := g.purgeOnce(ctx, time.Now().Add(time.Second))
	if err != nil || n != 2 {
		t.Fatalf("purgeOnce = %d, %v; want 2", n, err)
	}
	if total, err := g.store.AddStored(ctx, "alice", store.Stored{}, store.Stored{}); err != nil || total != (store.Stored{Bytes: 1, Files: 1}) {
		t.Fatalf("alice's stored bytes and files after the purge: %+v, %v; want 1 and 1 (the unfinished job's output)", total, err)
	}
	for _, id := range []string{"oldjob", "oldfail"} {
		if _, err := g.store.GetJob(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("job %s: %v, want it purged", id, err)
		}
		if _, err := g.bucket.Stat(ctx, "jobs/"+id+"/outputs/out.txt"); !errors.Is(err, blob.ErrNotFound) {
			t.Errorf("output of %s: %v, want it deleted", id, err)
		}
	}
	if _, err := g.store.GetJob(ctx, "running"); err != nil {
		t.Errorf("the unfinished job went too: %v", err)
	}
	if _, err := g.bucket.Stat(ctx, "jobs/running/outputs/out.txt"); err != nil {
		t.Errorf("the unfinished job's output went too: %v", err)
	}
	// Nothing finished before an hour ago: nothing to do.
	mk("recent", job.Succeeded)
	if n, err := g.purgeOnce(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("purgeOnce(an hour ago) = %d, %v; want 0", n, err)
	}
}

// A running gateway deletes tokens long expired (retention.tokens): every
// web sign-in left a token for good.
func TestRunPurgesExpiredTokens(t *testing.T) {
	ctx := context.Background()
	g, err := Open(ctx, testConfig(t, "retention: {tokens: 720h}\n"), testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	now := time.Now().UTC()
	for id, exp := range map[string]time.Time{"old": now.Add(-40 * 24 * time.Hour), "recent": now.Add(-24 * time.Hour), "never": {}} {
		if err := g.store.CreateToken(ctx, store.Token{ID: id, Hash: "h" + id, User: "alice", CreatedAt: now, ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	cancel, done := runInBackground(ctx, g)
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := g.store.TokenByHash(ctx, "hold"); errors.Is(err, store.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a token expired 40 days ago is still there")
		}
	}
	for _, h := range []string{"hrecent", "hnever"} {
		if _, err := g.store.TokenByHash(ctx, h); err != nil {
			t.Errorf("token %s: %v", h, err)
		}
	}
}
