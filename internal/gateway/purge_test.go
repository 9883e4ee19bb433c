package gateway

import (
	"context"
	"errors"
	"github.com/hpcgate/hpcgate/internal/testenv"
	"io"
	"net/http"
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

	// A finished job a held one takes an output of, and one another waits
	// for, stay with their outputs while they are needed (found by the
	// eighth probe: the held job's input was purged)
	mk("input", job.Succeeded)
	mk("awaited", job.Succeeded)
	held := &job.Job{ID: "held", Owner: "alice", Template: "hello", TemplateVersion: 1, Environment: "local", State: job.Held, CreatedAt: time.Now(),
		Inputs: map[string]string{"text": "job:input/outputs/out.txt"}, After: []job.Dependency{{Job: "awaited", When: "finished"}}}
	if _, err := g.store.CreateJob(ctx, held, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := g.purgeOnce(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("purgeOnce with needed jobs = %d, %v; want 1 (recent)", n, err)
	}
	for _, id := range []string{"input", "awaited"} {
		if _, err := g.bucket.Stat(ctx, "jobs/"+id+"/outputs/out.txt"); err != nil {
			t.Errorf("%s, which the held job needs: %v", id, err)
		}
	}
}

// A running gateway deletes tokens long expired (retention.tokens): every
// web sign-in left a token for good.
func TestRunPurgesExpiredTokens(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "")
	month := 30 * 24 * time.Hour
	cfg.Retention.Tokens = &month
	g, err := Open(ctx, cfg, testLogger(t), io.Discard)
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

// An output can land after its job was deleted or purged: the agent's
// presigned URL works for an hour whatever happens to the job, and it
// was counted against the owner when handed out. A sweep, once every
// such URL has expired, deletes what removed jobs left and counts it
// off. Here on S3, with a real presigned PUT.
func TestSweepDeletesWhatRemovedJobsLeft(t *testing.T) {
	u, key, secret := testenv.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", key)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
	ctx := context.Background()
	cfg := testConfig(t, "")
	cfg.Objects = u.String()
	g, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	sg := g.bucket.(blob.Signer)
	var urls []string
	for _, id := range []string{"deleted", "purged", "kept"} {
		j := &job.Job{ID: id, Owner: "alice", Template: "hello", TemplateVersion: 1, Environment: "local", State: job.Pending, CreatedAt: time.Now()}
		if _, err := g.store.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		// the agent is handed a URL, and it is counted (as output-urls does)
		u, err := sg.SignPut(ctx, "jobs/"+id+"/outputs/late.txt", 4, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, u)
		if _, err := g.store.AddStored(ctx, "alice", store.Stored{Bytes: 4, Files: 1}, store.Stored{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.store.DeleteJob(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.store.UpdateJob(ctx, "purged", func(j *job.Job) error { return j.SetState(job.Canceled, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if n, err := g.purgeOnce(ctx, time.Now().Add(time.Second)); err != nil || n != 1 {
		t.Fatalf("purgeOnce = %d, %v; want 1", n, err)
	}
	// ... and the outputs land after their jobs went
	for _, u := range urls {
		req, _ := http.NewRequest("PUT", u, strings.NewReader("late"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("PUT to the presigned URL: %s", resp.Status)
		}
	}
	// Within the grace nothing is swept: a URL may still be in use.
	if n, err := g.sweepOnce(ctx, time.Now().Add(-leftoverGrace)); err != nil || n != 0 {
		t.Fatalf("sweepOnce within the grace = %d, %v; want 0", n, err)
	}
	if n, err := g.sweepOnce(ctx, time.Now().Add(time.Second)); err != nil || n != 2 {
		t.Fatalf("sweepOnce = %d, %v; want the 2 removed jobs", n, err)
	}
	for id, want := range map[string]error{"deleted": blob.ErrNotFound, "purged": blob.ErrNotFound, "kept": nil} {
		if _, err := g.bucket.Stat(ctx, "jobs/"+id+"/outputs/late.txt"); !errors.Is(err, want) {
			t.Errorf("the output of %s: %v, want %v", id, err, want)
		}
	}
	if got, err := g.store.AddStored(ctx, "alice", store.Stored{}, store.Stored{}); err != nil || got != (store.Stored{Bytes: 4, Files: 1}) {
		t.Errorf("alice stores %+v, %v; want the kept job's output alone", got, err)
	}
	if n, err := g.sweepOnce(ctx, time.Now().Add(leftoverGrace+time.Minute)); err != nil || n != 0 {
		t.Errorf("a second sweep = %d, %v; want nothing left to sweep", n, err)
	}
}

// A bucket that fails to delete leaves the removed job to a later sweep,
// which deletes and counts what the first could not.
func TestSweepTriesAgainAfterAFailure(t *testing.T) {
	ctx := context.Background()
	g, err := Open(ctx, testConfig(t, ""), testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	j := &job.Job{ID: "gone", Owner: "alice", Template: "hello", TemplateVersion: 1, Environment: "local", State: job.Pending, CreatedAt: time.Now()}
	if _, err := g.store.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := g.bucket.Put(ctx, "jobs/gone/outputs/a", strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := g.store.AddStored(ctx, "alice", store.Stored{Bytes: 3, Files: 1}, store.Stored{}); err != nil {
		t.Fatal(err)
	}
	if err := g.store.DeleteJob(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	fb := &failingDeletes{Bucket: g.bucket}
	g.bucket = fb
	if n, err := g.sweepOnce(ctx, time.Now().Add(time.Second)); err == nil || n != 0 {
		t.Fatalf("sweepOnce with deletes failing = %d, %v; want an error", n, err)
	}
	fb.ok = true
	// The failed sweep took the job: a sweep for what was removed before
	// it no longer finds it; it is due again a grace after it was taken.
	if n, err := g.sweepOnce(ctx, removed); err != nil || n != 0 {
		t.Fatalf("sweepOnce right after = %d, %v; want 0 (the job is taken)", n, err)
	}
	if n, err := g.sweepOnce(ctx, time.Now().Add(leftoverGrace+time.Minute)); err != nil || n != 1 {
		t.Fatalf("sweepOnce a grace later = %d, %v; want 1", n, err)
	}
	if _, err := g.bucket.Stat(ctx, "jobs/gone/outputs/a"); !errors.Is(err, blob.ErrNotFound) {
		t.Errorf("the output: %v, want it deleted", err)
	}
	if got, err := g.store.AddStored(ctx, "alice", store.Stored{}, store.Stored{}); err != nil || got != (store.Stored{}) {
		t.Errorf("alice stores %+v, %v; want nothing", got, err)
	}
}

type failingDeletes struct {
	blob.Bucket
	ok bool
}

func (b *failingDeletes) Delete(ctx context.Context, key string) error {
	if !b.ok {
		return errors.New("bucket away")
	}
	return b.Bucket.Delete(ctx, key)
}
