package localsched

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
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

func waitState(t *testing.T, e *Executor, id string, want sched.State) sched.Status {
	t.Helper()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		st, _ := e.Poll(context.Background(), []string{id})
		if st[id].State == want {
			return st[id]
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("task %s is %+v, want %s", id, st[id], want)
		}
	}
}

// grepTree fails the test if any file below dir holds s.
func grepTree(t *testing.T, dir, s string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), s) {
				t.Errorf("%s still holds the token", p)
			}
		}
		return nil
	})
}

// Once a task has ended its token is gone from the disk: task.json and
// the secret's file are removed; what stays is its output and exit.
func TestEndedTaskLeavesNoToken(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	e := newExecutor(t, dir, 1)
	ctx := context.Background()
	task := sched.Task{JobID: "tok1", Command: []string{"/bin/sh", "-c", `grep -q the-token "$HPCGATE_TOKEN_FILE" && sleep 0.3`},
		Env: map[string]string{sched.TokenEnv: "the-token"}, WorkDir: filepath.Join(work, "tok1")}
	if _, err := e.Submit(ctx, task); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, "tok1", sched.Running)
	if !exists(filepath.Join(dir, "tok1", "task.json")) || !exists(filepath.Join(work, "tok1.secret.HPCGATE_TOKEN")) {
		t.Fatal("a running task lacks its task file or its token's file")
	}
	waitState(t, e, "tok1", sched.Done)
	grepTree(t, dir, "the-token")
	grepTree(t, work, "the-token")
	if exists(filepath.Join(dir, "tok1", "task.json")) {
		t.Fatal("task.json of an ended task is still there")
	}
	// a new executor on the directory still reports it, without task.json
	e2 := newExecutor(t, dir, 1)
	if st, _ := e2.Poll(ctx, []string{"tok1"}); st["tok1"].State != sched.Done || st["tok1"].ExitCode == nil || *st["tok1"].ExitCode != 0 {
		t.Fatalf("after a restart: %+v", st["tok1"])
	}
}

// Ended tasks' directories and working directories are deleted by Run's
// loop after the retention; Forget makes a task Gone at once, also for an
// executor started later, and leaves a running task alone.
func TestRetentionAndForget(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	ctx := context.Background()
	e, err := New(dir, &Options{Slots: 2, Retention: 1500 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.Run(rctx); close(done) }()
	defer func() { stop(); <-done }()
	submit := func(id, script string) {
		t.Helper()
		if _, err := e.Submit(ctx, sched.Task{JobID: id, Command: []string{"/bin/sh", "-c", script}, WorkDir: filepath.Join(work, id)}); err != nil {
			t.Fatal(err)
		}
	}
	submit("kept", "echo hi > f")
	submit("forgot", "echo hi > f")
	submit("long", "sleep 30")
	waitState(t, e, "kept", sched.Done)
	waitState(t, e, "forgot", sched.Done)
	waitState(t, e, "long", sched.Running)
	if err := e.Forget("long"); err != nil {
		t.Fatal(err)
	}
	if err := e.Forget("forgot"); err != nil {
		t.Fatal(err)
	}
	if err := e.Forget("nosuch"); err != nil {
		t.Fatal(err)
	}
	st, _ := e.Poll(ctx, []string{"kept", "forgot", "long"})
	if st["kept"].State != sched.Done || st["forgot"].State != sched.Gone || st["long"].State != sched.Running {
		t.Fatalf("after Forget: %+v", st)
	}
	if !exists(filepath.Join(work, "forgot", "f")) || !exists(filepath.Join(dir, "forgot")) {
		t.Fatal("Forget deleted the files at once; they are kept for the retention")
	}
	// an executor started now does not bring the forgotten task back
	e2, err := New(dir, &Options{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := e2.Poll(ctx, []string{"forgot", "kept"}); st["forgot"].State != sched.Gone || st["kept"].State != sched.Done {
		t.Fatalf("a new executor sees %+v", st)
	}
	for start := time.Now(); exists(filepath.Join(dir, "kept")) || exists(filepath.Join(dir, "forgot")); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("ended tasks' directories outlived the retention")
		}
	}
	for _, p := range []string{filepath.Join(work, "kept"), filepath.Join(work, "forgot")} {
		if exists(p) {
			t.Errorf("working directory %s outlived the retention", p)
		}
	}
	if st, _ := e.Poll(ctx, []string{"kept", "long"}); st["kept"].State != sched.Gone || st["long"].State != sched.Running {
		t.Fatalf("after the retention: %+v", st)
	}
	e.Cancel(ctx, "long")
}

// Run owns everything the executor does: when it returns, no goroutine of
// the executor is left, even with a canceled task in its kill grace; a
// later Run sends the SIGKILL.
func TestRunLeavesNoGoroutine(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	ctx := context.Background()
	e, err := New(dir, &Options{Slots: 1, KillGrace: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.Run(rctx); close(done) }()
	// ignores SIGTERM: only the SIGKILL ends it
	if _, err := e.Submit(ctx, sched.Task{JobID: "stubborn", Command: []string{"/bin/sh", "-c", `trap '' TERM; echo $$ > pid; touch started; while :; do sleep 0.1; done`}, WorkDir: filepath.Join(work, "s")}); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !exists(filepath.Join(work, "s", "started")); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the task did not start")
		}
	}
	if err := e.Cancel(ctx, "stubborn"); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	// (a goroutine that has called wg.Done may still be on its way out:
	// a moment is allowed)
	buf := make([]byte, 1<<20)
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		n := runtime.Stack(buf, true)
		if !strings.Contains(string(buf[:n]), "localsched.(*") {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("a goroutine of the executor outlived Run:\n%s", buf[:n])
		}
	}
	// the next Run kills it once its grace has passed
	rctx, stop = context.WithCancel(ctx)
	done = make(chan struct{})
	go func() { e.Run(rctx); close(done) }()
	defer func() { stop(); <-done }()
	st := waitState(t, e, "stubborn", sched.Done)
	if !st.Canceled {
		t.Fatalf("status %+v, want canceled", st)
	}
	// and the command itself is gone, though SIGTERM ended its
	// supervisor first and left it an orphan
	b, _ := os.ReadFile(filepath.Join(work, "s", "pid"))
	pid := strings.TrimSpace(string(b))
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil || strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("the canceled task's command (pid %s) still runs", pid)
		}
	}
}

// The end of a task wakes Run's loop: the next task starts without
// waiting for the tick (an hour here), for tasks this executor started and
// for those adopted from an earlier one.
func TestEndWakesTheLoop(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	ctx := context.Background()
	run := func(e *Executor) (stop func()) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { e.Run(rctx); close(done) }()
		return func() { cancel(); <-done }
	}
	e, err := New(dir, &Options{Slots: 1, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(e)
	for i, script := range []string{"true", "true", "touch go; while [ ! -e stop ]; do sleep 0.05; done"} {
		id := fmt.Sprintf("t%d", i)
		if _, err := e.Submit(ctx, sched.Task{JobID: id, Command: []string{"/bin/sh", "-c", script}, WorkDir: filepath.Join(work, "w")}); err != nil {
			t.Fatal(err)
		}
	}
	// one slot: t1 and t2 start only when the task before them has ended
	waitState(t, e, "t2", sched.Running)
	stop()
	// a new executor adopts the running t2 and sees its end at once
	e2, err := New(dir, &Options{Slots: 1, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer run(e2)()
	for start := time.Now(); !exists(filepath.Join(work, "w", "go")); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("t2 did not start")
		}
	}
	os.WriteFile(filepath.Join(work, "w", "stop"), nil, 0o600)
	waitState(t, e2, "t2", sched.Done)
}

// A task inherits only what sched.BaseEnv lets through: the gateway's
// credentials (here a stand-in for the object store's) never reach it.
func TestTaskEnvironmentIsClean(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "gateway-secret")
	t.Setenv("HPCGATE_TOKEN", "admin-token")
	e := newExecutor(t, t.TempDir(), 1)
	work := filepath.Join(t.TempDir(), "w")
	ctx := context.Background()
	if _, err := e.Submit(ctx, sched.Task{JobID: "envjob", Command: []string{"/bin/sh", "-c", "env > env.txt"}, WorkDir: work,
		Env: map[string]string{"HPCGATE_JOB_ID": "envjob"}}); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, "envjob", sched.Done)
	b, err := os.ReadFile(filepath.Join(work, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	env := string(b)
	if strings.Contains(env, "gateway-secret") || strings.Contains(env, "admin-token") {
		t.Errorf("the task saw the gateway's secrets:\n%s", env)
	}
	if !strings.Contains(env, "HPCGATE_JOB_ID=envjob") || !strings.Contains(env, "PATH=") {
		t.Errorf("the task lacks its own variables or PATH:\n%s", env)
	}
}

// A gateway that stopped between marking a task launched and writing its
// pid: the next executor finds the task by the pid its supervisor wrote
// (spid) and reports its real end, not "killed"; a task marked launched
// whose supervisor never ran is queued and run again.
func TestAdoptsTaskWithoutPidFile(t *testing.T) {
	dir, work := t.TempDir(), t.TempDir()
	ctx := context.Background()
	e, err := New(dir, &Options{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRun := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { e.Run(rctx); close(ran) }()
	if _, err := e.Submit(ctx, sched.Task{JobID: "half", Command: []string{"/bin/sh", "-c", "while [ ! -e go ]; do sleep 0.05; done; exit 7"}, WorkDir: filepath.Join(work, "half")}); err != nil {
		t.Fatal(err)
	}
	waitState(t, e, "half", sched.Running)
	for start := time.Now(); !exists(filepath.Join(dir, "half", "spid")); time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the supervisor wrote no spid")
		}
	}
	os.Remove(filepath.Join(dir, "half", "pid"))
	// the gateway stops ("half" runs on)
	stopRun()
	<-ran
	// a task marked launched that never started: submitted to an
	// executor whose loop never runs
	idle, err := New(dir, &Options{Slots: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Submit(ctx, sched.Task{JobID: "never", Command: []string{"/bin/sh", "-c", "exit 5"}, WorkDir: filepath.Join(work, "never")}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "never", "launched"), nil, 0o600)

	e2 := newExecutor(t, dir, 3)
	if st, _ := e2.Poll(ctx, []string{"half"}); st["half"].State != sched.Running {
		t.Fatalf("adopted task: %+v, want running", st["half"])
	}
	os.WriteFile(filepath.Join(work, "half", "go"), nil, 0o600)
	if st := waitState(t, e2, "half", sched.Done); st.ExitCode == nil || *st.ExitCode != 7 {
		t.Fatalf("adopted task ended %+v, want exit code 7", st)
	}
	if st := waitState(t, e2, "never", sched.Done); st.ExitCode == nil || *st.ExitCode != 5 {
		t.Fatalf("the task that never started ended %+v, want it run (exit code 5)", st)
	}
}

// A canceled task's process in a session of its own that ignores SIGTERM
// (as the sandbox's are: bwrap --new-session) is killed after the grace,
// also when the supervisor is gone by then: it left neither the tree nor
// the group to be found, and ran on (found by the sixth probe).
func TestCancelKillsProcessesInSessionsOfTheirOwn(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid(1) here")
	}
	e := newExecutor(t, t.TempDir(), 1)
	ctx := context.Background()
	work := filepath.Join(t.TempDir(), "w")
	script := `setsid sh -c 'trap "" TERM; exec sleep 1000' & echo $! > inner; wait`
	id, err := e.Submit(ctx, sched.Task{JobID: "sess1", Name: "sess", Command: []string{"/bin/sh", "-c", script},
		WorkDir: work, Resources: job.Resources{Nodes: 1, CoresPerNode: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var inner int
	for deadline := time.Now().Add(10 * time.Second); inner == 0 || procStart(inner) == ""; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the task's inner process did not start")
		}
		b, _ := os.ReadFile(filepath.Join(work, "inner"))
		inner, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	t.Cleanup(func() { syscall.Kill(inner, syscall.SIGKILL) })
	if err := e.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); procStart(inner) != ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a canceled task's process in a session of its own runs on past the kill grace")
		}
	}
}

// The local executor stops a task past its time limit, as an engine does:
// a job's agent that could not reach its gateway ran on past its walltime
// (found by the sixth probe).
func TestTimeLimit(t *testing.T) {
	e := newExecutor(t, t.TempDir(), 1)
	ctx := context.Background()
	id, err := e.Submit(ctx, sched.Task{JobID: "slow1", Name: "slow", Command: []string{"/bin/sh", "-c", "trap '' TERM; sleep 1000"},
		WorkDir: filepath.Join(t.TempDir(), "w"), Resources: job.Resources{Nodes: 1, CoresPerNode: 1, WalltimeS: 1}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var st sched.Status
	for deadline := time.Now().Add(20 * time.Second); st.State != sched.Done; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a task with a time limit of 1 s runs after 20 s: %+v", st)
		}
		m, err := e.Poll(ctx, []string{id})
		if err != nil {
			t.Fatal(err)
		}
		st = m[id]
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("stopped after %v, before its limit", took)
	}
	if !strings.Contains(st.Reason, "time limit") || st.Canceled {
		t.Fatalf("status %+v", st)
	}
}
