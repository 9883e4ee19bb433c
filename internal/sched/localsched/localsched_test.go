package localsched

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/schedtest"
)

func newExecutor(t *testing.T, dir string, slots int) *Executor {
	t.Helper()
	e, err := New(dir, &Options{Slots: slots, KillGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

func TestConformance(t *testing.T) {
	schedtest.Run(t, func(t *testing.T) sched.Scheduler {
		return newExecutor(t, t.TempDir(), 2)
	}, schedtest.Options{Cores: 2, Timeout: 20 * time.Second})
}

// A task keeps running when the executor goes away, and a new executor on
// the same directory sees it end; a queued task is started by the new one.
func TestSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	work := t.TempDir()
	ctx := context.Background()
	first, err := New(dir, &Options{Slots: 1})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	go first.Run(rctx)
	submit := func(e *Executor, id, script string) {
		t.Helper()
		if _, err := e.Submit(ctx, sched.Task{JobID: id, Command: []string{"/bin/sh", "-c", script}, WorkDir: filepath.Join(work, id)}); err != nil {
			t.Fatal(err)
		}
	}
	submit(first, "running", `touch started; sleep 1; exit 7`)
	submit(first, "queued", `exit 0`)
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(work, "running", "started")); err == nil {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("first task did not start")
		}
	}
	stop() // the gateway goes away; its executor with it

	second := newExecutor(t, dir, 1)
	st, _ := second.Poll(ctx, []string{"running", "queued"})
	if st["running"].State != sched.Running || st["queued"].State != sched.Queued {
		t.Fatalf("after restart: %+v, want running and queued", st)
	}
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		st, _ = second.Poll(ctx, []string{"running", "queued"})
		if st["running"].State == sched.Done && st["queued"].State == sched.Done {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("tasks did not end after restart: %+v", st)
		}
	}
	if c := st["running"].ExitCode; c == nil || *c != 7 {
		t.Fatalf("adopted task exit code %v, want 7", c)
	}
	if c := st["queued"].ExitCode; c == nil || *c != 0 {
		t.Fatalf("requeued task exit code %v, want 0", c)
	}
}
