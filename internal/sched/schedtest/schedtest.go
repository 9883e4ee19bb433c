// Package schedtest is the conformance suite every sched.Scheduler passes.
//
// Besides running tasks to their exit codes, it checks the contracts every
// engine shares: a task's secrets reach it only as NAME_FILE (a file only
// its account can read), never in its environment; Cancel of an ended task
// is no error, and after Cancel returns the task is reported Done (and
// canceled) or Gone within Options.CancelWithin; operations a task's state
// does not allow (hold or release of a running task, suspend or resume of a
// held one, suspend of an ended one) fail with sched.ErrUnsupported (or
// ErrNotFound for a task the engine has forgotten).
//
// The tasks it submits are small shell commands (sh -c with fixed text; the
// suite's own, never a user's) run in a working directory under t.TempDir(),
// which the engine's nodes must be able to reach.
package schedtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// Options describe the engine under test.
type Options struct {
	// Cores is how many cores the engine can give at once (its slots).
	Cores int
	// Timeout bounds each wait for a state (default 60s).
	Timeout time.Duration
	// WorkRoot is where tasks' working directories go (default t.TempDir()).
	WorkRoot string
	// CancelWithin bounds how long after Cancel returns a canceled
	// running task may still be reported running (default 30s).
	CancelWithin time.Duration
	// Arrays: the engine submits arrays (sched.ArraySubmitter), and the
	// suite checks them.
	Arrays bool
}

// Run runs the suite against the scheduler newSched returns (once per
// subtest; it must be running, e.g. its Run loop started).
func Run(t *testing.T, newSched func(t *testing.T) sched.Scheduler, opts Options) {
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Cores == 0 {
		opts.Cores = 1
	}
	if opts.CancelWithin == 0 {
		opts.CancelWithin = 30 * time.Second
	}
	tests := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"RunsToExitCode", testRunsToExitCode},
		{"SecretInFileOnly", testSecretInFileOnly},
		{"SubmitIsIdempotent", testIdempotent},
		{"PollUnknown", testPollUnknown},
		{"RefusesImpossible", testRefusesImpossible},
		{"CoreLimit", testCoreLimit},
		{"CancelQueued", testCancelQueued},
		{"CancelRunning", testCancelRunning},
		{"HoldRelease", testHoldRelease},
		{"SuspendResume", testSuspendResume},
	}
	if opts.Arrays {
		tests = append(tests, struct {
			name string
			fn   func(*testing.T, *suite)
		}{"Array", testArray})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := opts.WorkRoot
			if root == "" {
				root = t.TempDir()
			} else {
				root = filepath.Join(root, fmt.Sprintf("%s-%d", tt.name, time.Now().UnixNano()))
			}
			s := &suite{t: t, s: newSched(t), opts: opts, root: root}
			tt.fn(t, s)
		})
	}
}

type suite struct {
	t    *testing.T
	s    sched.Scheduler
	opts Options
	root string
	n    int
	ids  []string
}

// submit queues sh -c script with one core and returns its id and working
// directory. Every task is canceled when the test ends.
func (s *suite) submit(script string, cores int) (string, string) {
	s.t.Helper()
	s.n++
	jobID := fmt.Sprintf("st%d%d", time.Now().UnixNano()%1e9, s.n)
	wd := filepath.Join(s.root, jobID)
	id, err := s.s.Submit(context.Background(), sched.Task{
		JobID:     jobID,
		Name:      "schedtest",
		Command:   []string{"/bin/sh", "-c", script},
		Env:       map[string]string{"SCHEDTEST_VALUE": "from env"},
		WorkDir:   wd,
		Resources: job.Resources{Nodes: 1, CoresPerNode: cores, WalltimeS: 600},
	})
	if err != nil {
		s.t.Fatalf("Submit: %v", err)
	}
	s.t.Cleanup(func() { s.s.Cancel(context.Background(), id) })
	return id, wd
}

func (s *suite) status(id string) sched.Status {
	s.t.Helper()
	st, err := s.s.Poll(context.Background(), []string{id})
	if err != nil {
		s.t.Fatalf("Poll: %v", err)
	}
	got, ok := st[id]
	if !ok {
		s.t.Fatalf("Poll left out %s", id)
	}
	return got
}

// waitFor polls id until its state is one of want.
func (s *suite) waitFor(id string, want ...sched.State) sched.Status {
	s.t.Helper()
	return s.waitWithin(s.opts.Timeout, id, want...)
}

func (s *suite) waitWithin(d time.Duration, id string, want ...sched.State) sched.Status {
	s.t.Helper()
	deadline := time.Now().Add(d)
	var st sched.Status
	for time.Now().Before(deadline) {
		st = s.status(id)
		for _, w := range want {
			if st.State == w {
				return st
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("task %s still %s after %v, want %v", id, st.State, d, want)
	return st
}

func waitFile(t *testing.T, p string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(p); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not appear within %v", p, d)
}

func testRunsToExitCode(t *testing.T, s *suite) {
	id, wd := s.submit(`echo "$SCHEDTEST_VALUE" > out.txt; exit 3`, 1)
	st := s.waitFor(id, sched.Done)
	if st.ExitCode == nil || *st.ExitCode != 3 {
		t.Fatalf("exit code %v, want 3 (status %+v)", st.ExitCode, st)
	}
	if st.Canceled {
		t.Fatal("a task that exited reported canceled")
	}
	b, err := os.ReadFile(filepath.Join(wd, "out.txt"))
	if err != nil || strings.TrimSpace(string(b)) != "from env" {
		t.Fatalf("out.txt in the working directory = %q, %v; want the task's environment value", b, err)
	}
	id2, _ := s.submit(`exit 0`, 1)
	if st := s.waitFor(id2, sched.Done); st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("exit 0 reported %+v", st)
	}
	if err := s.s.Cancel(context.Background(), id2); err != nil {
		t.Fatalf("Cancel of an ended task: %v, want nil", err)
	}
	if st := s.status(id2); st.State != sched.Done && st.State != sched.Gone || st.Canceled {
		t.Fatalf("an ended task after Cancel: %+v, want it as it was", st)
	}
}

// A secret reaches the task as a file only its account can read, named by
// NAME_FILE; NAME is not in its environment.
func testSecretInFileOnly(t *testing.T, s *suite) {
	s.n++
	jobID := fmt.Sprintf("sec%d%d", time.Now().UnixNano()%1e9, s.n)
	wd := filepath.Join(s.root, jobID)
	secret := fmt.Sprintf("s3cret-%d", time.Now().UnixNano())
	id, err := s.s.Submit(context.Background(), sched.Task{
		JobID: jobID, Name: "schedtest", WorkDir: wd,
		Command:   []string{"/bin/sh", "-c", `cat "$HPCGATE_TOKEN_FILE" > token; stat -c %a "$HPCGATE_TOKEN_FILE" > mode; env > env.txt`},
		Env:       map[string]string{sched.TokenEnv: secret, "SCHEDTEST_VALUE": "v"},
		Resources: job.Resources{Nodes: 1, CoresPerNode: 1, WalltimeS: 600},
	})
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	t.Cleanup(func() { s.s.Cancel(context.Background(), id) })
	if st := s.waitFor(id, sched.Done); st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("status %+v", st)
	}
	if b, err := os.ReadFile(filepath.Join(wd, "token")); err != nil || string(b) != secret {
		t.Fatalf("the task read %q from $HPCGATE_TOKEN_FILE (%v), want the secret", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(wd, "mode")); strings.TrimSpace(string(b)) != "600" {
		t.Fatalf("the secret's file has mode %q, want 600", b)
	}
	if b, _ := os.ReadFile(filepath.Join(wd, "env.txt")); strings.Contains(string(b), secret) || !strings.Contains(string(b), "SCHEDTEST_VALUE=v\n") {
		t.Fatalf("the task's environment holds the secret, or lacks its variables:\n%s", b)
	}
}

func testIdempotent(t *testing.T, s *suite) {
	wd := filepath.Join(s.root, "idem")
	task := sched.Task{JobID: fmt.Sprintf("idem%d", time.Now().UnixNano()%1e9), Name: "idem", Command: []string{"/bin/sh", "-c", "sleep 1"}, WorkDir: wd, Resources: job.Resources{Nodes: 1, CoresPerNode: 1, WalltimeS: 60}}
	a, err := s.s.Submit(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.s.Cancel(context.Background(), a) })
	b, err := s.s.Submit(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("the same job submitted twice got ids %s and %s", a, b)
	}
}

func testPollUnknown(t *testing.T, s *suite) {
	st, err := s.s.Poll(context.Background(), []string{"999999998"})
	if err != nil {
		t.Fatal(err)
	}
	if st["999999998"].State != sched.Gone {
		t.Fatalf("unknown id reported %+v, want gone", st["999999998"])
	}
}

func testRefusesImpossible(t *testing.T, s *suite) {
	_, err := s.s.Submit(context.Background(), sched.Task{
		JobID: fmt.Sprintf("big%d", time.Now().UnixNano()%1e9), Name: "big", Command: []string{"/bin/true"},
		WorkDir: filepath.Join(s.root, "big"), Resources: job.Resources{Nodes: 1, CoresPerNode: 10000, WalltimeS: 60},
	})
	if err == nil {
		t.Fatal("a task asking for 10000 cores was accepted: it could never run")
	}
}

// blockers fills every core with a sleeping task and returns their ids.
func (s *suite) blockers() []string {
	var ids []string
	for i := 0; i < s.opts.Cores; i++ {
		id, wd := s.submit(`touch started; sleep 120`, 1)
		waitFile(s.t, filepath.Join(wd, "started"), s.opts.Timeout)
		ids = append(ids, id)
	}
	return ids
}

func testCoreLimit(t *testing.T, s *suite) {
	blockers := s.blockers()
	id, wd := s.submit(`touch started`, 1)
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(wd, "started")); err == nil {
		t.Fatalf("a task started while %d tasks used all %d cores", len(blockers), s.opts.Cores)
	}
	if st := s.status(id); st.State != sched.Queued {
		t.Fatalf("task waiting for cores is %s, want queued", st.State)
	}
	s.s.Cancel(context.Background(), blockers[0])
	s.waitFor(id, sched.Done)
}

func testCancelQueued(t *testing.T, s *suite) {
	s.blockers()
	id, wd := s.submit(`touch started`, 1)
	if err := s.s.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st := s.waitFor(id, sched.Done, sched.Gone)
	if st.State == sched.Done && !st.Canceled {
		t.Fatalf("canceled queued task: %+v, want canceled", st)
	}
	if _, err := os.Stat(filepath.Join(wd, "started")); err == nil {
		t.Fatal("a task canceled while queued ran")
	}
	if err := s.s.Cancel(context.Background(), id); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
}

func testCancelRunning(t *testing.T, s *suite) {
	// && and not ;: an engine that signals every process of the task
	// (Slurm's scancel) may end the sleep a moment before the shell, which
	// would then go on to its next command.
	id, wd := s.submit(`touch started; sleep 300 && touch finished`, 1)
	waitFile(t, filepath.Join(wd, "started"), s.opts.Timeout)
	s.waitFor(id, sched.Running)
	if err := s.s.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	st := s.waitWithin(s.opts.CancelWithin, id, sched.Done, sched.Gone)
	if st.State == sched.Done && !st.Canceled {
		t.Fatalf("canceled running task: %+v, want canceled", st)
	}
	if _, err := os.Stat(filepath.Join(wd, "finished")); err == nil {
		t.Fatal("a canceled task ran to its end")
	}
	if err := s.s.Cancel(context.Background(), id); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
	if sp, ok := s.s.(sched.Suspender); ok {
		err := sp.Suspend(context.Background(), id)
		if !errors.Is(err, sched.ErrUnsupported) && !errors.Is(err, sched.ErrNotFound) {
			t.Fatalf("Suspend of a canceled task: %v, want ErrUnsupported (or ErrNotFound)", err)
		}
	}
}

func testHoldRelease(t *testing.T, s *suite) {
	h, ok := s.s.(sched.Holder)
	if !ok {
		t.Skipf("%s cannot hold jobs", s.s.Name())
	}
	blockers := s.blockers()
	id, wd := s.submit(`touch started`, 1)
	if err := h.Hold(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	s.waitFor(id, sched.Held)
	if sp, ok := s.s.(sched.Suspender); ok {
		if err := sp.Suspend(context.Background(), id); !errors.Is(err, sched.ErrUnsupported) {
			t.Fatalf("Suspend of a held task: %v, want ErrUnsupported", err)
		}
		if err := sp.Resume(context.Background(), id); !errors.Is(err, sched.ErrUnsupported) {
			t.Fatalf("Resume of a held task: %v, want ErrUnsupported", err)
		}
	}
	for _, b := range blockers {
		s.s.Cancel(context.Background(), b)
	}
	time.Sleep(1500 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(wd, "started")); err == nil {
		t.Fatal("a held task started")
	}
	if err := h.Release(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	s.waitFor(id, sched.Done)
	if _, err := os.Stat(filepath.Join(wd, "started")); err != nil {
		t.Fatal("a released task did not run")
	}
	run, _ := s.submit(`touch started; sleep 120`, 1)
	s.waitFor(run, sched.Running)
	if err := h.Hold(context.Background(), run); !errors.Is(err, sched.ErrUnsupported) {
		t.Fatalf("Hold of a running task: %v, want ErrUnsupported", err)
	}
	if err := h.Release(context.Background(), run); !errors.Is(err, sched.ErrUnsupported) {
		t.Fatalf("Release of a running task: %v, want ErrUnsupported", err)
	}
}

func testSuspendResume(t *testing.T, s *suite) {
	sp, ok := s.s.(sched.Suspender)
	if !ok {
		t.Skipf("%s cannot suspend jobs", s.s.Name())
	}
	id, wd := s.submit(`i=0; while true; do i=$((i+1)); echo $i > n.tmp; mv n.tmp n; sleep 0.05; done`, 1)
	counter := filepath.Join(wd, "n")
	waitFile(t, counter, s.opts.Timeout)
	read := func() string { b, _ := os.ReadFile(counter); return strings.TrimSpace(string(b)) }
	if err := sp.Suspend(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	s.waitFor(id, sched.Suspended)
	time.Sleep(300 * time.Millisecond)
	before := read()
	time.Sleep(700 * time.Millisecond)
	if after := read(); after != before {
		t.Fatalf("suspended task kept running: counter %s → %s", before, after)
	}
	if err := sp.Resume(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	s.waitFor(id, sched.Running)
	deadline := time.Now().Add(s.opts.Timeout)
	for read() == before {
		if time.Now().After(deadline) {
			t.Fatal("resumed task does not run")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testArray: an engine that submits arrays runs each task as its own job
// (its own directory, variables, secret and exit code), at most limit at
// once, and a single task can be held, released and canceled.
func testArray(t *testing.T, s *suite) {
	as, ok := s.s.(sched.ArraySubmitter)
	if !ok {
		t.Fatal("the engine is said to submit arrays, but is no sched.ArraySubmitter")
	}
	base := fmt.Sprintf("sa%d", time.Now().UnixNano()%1e9)
	// each task says who it is, waits for its go file, and exits with its index
	script := `echo "$SCHEDTEST_VALUE $SCHEDTEST_INDEX $(cat "$SECRET_FILE")" > out.txt; while [ ! -f ../../go ]; do sleep 0.2; done; exit "$SCHEDTEST_INDEX"`
	var tasks []sched.Task
	for i := 0; i < 4; i++ {
		id := fmt.Sprintf("%s%d", base, i)
		tasks = append(tasks, sched.Task{JobID: id, Name: "schedtest", Command: []string{"/bin/sh", "-c", script},
			Env:       map[string]string{"SCHEDTEST_VALUE": "from env", "SCHEDTEST_INDEX": fmt.Sprint(i)},
			Secret:    map[string]string{"SECRET": "secret " + id},
			WorkDir:   filepath.Join(s.root, id, "work"),
			Resources: job.Resources{Nodes: 1, CoresPerNode: 1, WalltimeS: 600}})
	}
	ids, err := as.SubmitArray(context.Background(), tasks, 2)
	if err != nil {
		t.Fatalf("SubmitArray: %v", err)
	}
	if len(ids) != 4 {
		t.Fatalf("ids %v, want 4", ids)
	}
	for _, id := range ids {
		id := id
		t.Cleanup(func() { s.s.Cancel(context.Background(), id) })
	}
	again, err := as.SubmitArray(context.Background(), tasks, 2)
	if err != nil || fmt.Sprint(again) != fmt.Sprint(ids) {
		t.Fatalf("a retried SubmitArray: %v, %v; want the same ids %v", again, err, ids)
	}
	// two run, two wait for them
	waitFile(t, filepath.Join(tasks[0].WorkDir, "out.txt"), s.opts.Timeout)
	waitFile(t, filepath.Join(tasks[1].WorkDir, "out.txt"), s.opts.Timeout)
	time.Sleep(2 * time.Second)
	for _, i := range []int{2, 3} {
		if st := s.status(ids[i]); st.State != sched.Queued && st.State != sched.Held {
			t.Fatalf("task %d is %s while two others run (limit 2)", i, st.State)
		}
	}
	if h, ok := s.s.(sched.Holder); ok {
		if err := h.Hold(context.Background(), ids[3]); err != nil {
			t.Fatalf("Hold of one task: %v", err)
		}
		if st := s.waitFor(ids[3], sched.Held); st.State != sched.Held {
			t.Fatalf("held task: %+v", st)
		}
	}
	if err := s.s.Cancel(context.Background(), ids[2]); err != nil {
		t.Fatalf("Cancel of one waiting task: %v", err)
	}
	if err := os.WriteFile(filepath.Join(s.root, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 1} {
		st := s.waitFor(ids[i], sched.Done)
		if st.ExitCode == nil || *st.ExitCode != i {
			t.Fatalf("task %d: %+v, want exit code %d", i, st, i)
		}
		b, _ := os.ReadFile(filepath.Join(tasks[i].WorkDir, "out.txt"))
		if want := fmt.Sprintf("from env %d secret %s", i, tasks[i].JobID); strings.TrimSpace(string(b)) != want {
			t.Fatalf("task %d wrote %q, want %q", i, b, want)
		}
	}
	if st := s.waitFor(ids[2], sched.Done, sched.Gone); st.State == sched.Done && !st.Canceled {
		t.Fatalf("the canceled task: %+v", st)
	}
	if h, ok := s.s.(sched.Holder); ok {
		if err := h.Release(context.Background(), ids[3]); err != nil {
			t.Fatalf("Release of one task: %v", err)
		}
		if st := s.waitFor(ids[3], sched.Done); st.ExitCode == nil || *st.ExitCode != 3 {
			t.Fatalf("released task: %+v", st)
		}
	}
}
