package gateway

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
)

// The directories Slurm and Grid Engine jobs leave go once their job has
// been finished for the retention, or is gone from the store; a running
// job's, a recent one's, a local job's and what is not a job's stay.
func TestSweepWorkdirs(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "")
	root := t.TempDir()
	cfg.Environments = append(cfg.Environments, catalog.Environment{Name: "cluster", Scheduler: "sge", WorkdirRoot: root})
	g, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	long := time.Now().Add(-2 * time.Hour)
	mk := func(id, env string, end job.State, at time.Time) string {
		j := &job.Job{ID: id, Owner: "alice", Template: "hello", TemplateVersion: 1, Environment: env, State: job.Pending, CreatedAt: at}
		if _, err := g.store.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
		for _, st := range []job.State{job.Running, end} {
			if st == job.Pending {
				continue
			}
			if _, err := g.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(st, "test", at) }); err != nil {
				t.Fatal(err)
			}
		}
		return dir(t, root, id)
	}
	old := mk("oldoldoldoldoldo", "cluster", job.Succeeded, long)
	failed := mk("failedfailedfail", "cluster", job.Failed, long)
	recent := mk("recentrecentrece", "cluster", job.Succeeded, time.Now())
	running := mk("runningrunningru", "cluster", job.Pending, long)
	local := mk("locallocallocall", "local", job.Succeeded, long)
	gone := dir(t, root, "gonegonegonegone")
	goneRecent := dir(t, root, "gonerecentgonere") // (another gateway's, running?)
	os.Chtimes(goneRecent, long, long)
	notJob := dir(t, root, "not-a-job")
	os.Chtimes(notJob, long, long)
	link := filepath.Join(root, "linklinklinklink")
	if err := os.Symlink(old, link); err != nil {
		t.Fatal(err)
	}

	// an orphan's age is counted from its last change
	os.Chtimes(gone, long.Add(-time.Hour), long.Add(-time.Hour))
	n, err := g.sweepWorkdirsOnce(ctx, time.Now().Add(-time.Hour), long)
	if err != nil || n != 3 {
		t.Fatalf("sweepWorkdirsOnce = %d, %v; want 3", n, err)
	}
	for _, d := range []string{old, failed, gone} {
		if _, err := os.Lstat(d); !os.IsNotExist(err) {
			t.Errorf("%s: %v, want it removed", d, err)
		}
	}
	for _, d := range []string{recent, running, local, goneRecent, notJob, link} {
		if _, err := os.Lstat(d); err != nil {
			t.Errorf("%s: %v, want it kept", d, err)
		}
	}
}

// dir makes root/name with a file in it.
func dir(t *testing.T, root, name string) string {
	t.Helper()
	d := filepath.Join(root, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, name+".sge.out"), []byte("agent log\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return d
}
