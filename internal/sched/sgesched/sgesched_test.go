package sgesched

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/schedtest"
)

// These tests need a running Grid Engine cell: scripts/setup-sge.sh sets up
// one on this machine (queue all.q, parallel environment smp).

func needSGE(t *testing.T) *Scheduler {
	t.Helper()
	if os.Getenv("HPCGATE_TEST_SGE") != "1" {
		t.Skip("HPCGATE_TEST_SGE not set: run scripts/setup-sge.sh and set HPCGATE_TEST_SGE=1")
	}
	s := New(&Options{Queue: "all.q"})
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("HPCGATE_TEST_SGE=1 but Grid Engine does not answer: %v", err)
	}
	return s
}

// queueSlots is all.q's slots, from Describe.
func queueSlots(t *testing.T, s *Scheduler) int {
	t.Helper()
	facts, err := s.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n, _ := facts["total_cores"].(int)
	if n < 1 || facts["state"] != "up" {
		t.Fatalf("all.q is not usable: %v", facts)
	}
	return n
}

func TestConformance(t *testing.T) {
	s := needSGE(t)
	schedtest.Run(t, func(t *testing.T) sched.Scheduler {
		return New(&Options{Queue: "all.q"})
	}, schedtest.Options{Cores: queueSlots(t, s), Timeout: 60 * time.Second, Arrays: true})
}

// submit queues a task and cancels it when the test ends.
func submit(t *testing.T, s *Scheduler, task sched.Task) string {
	t.Helper()
	if task.JobID == "" {
		task.JobID = fmt.Sprintf("t%d", time.Now().UnixNano())
	}
	if task.Name == "" {
		task.Name = "sgetest"
	}
	if task.WorkDir == "" {
		task.WorkDir = filepath.Join(t.TempDir(), task.JobID)
	}
	if task.Resources.Nodes == 0 {
		task.Resources.Nodes, task.Resources.CoresPerNode = 1, 1
	}
	id, err := s.Submit(context.Background(), task)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	t.Cleanup(func() { s.Cancel(context.Background(), id) })
	return id
}

func waitDone(t *testing.T, s *Scheduler, id string, d time.Duration) sched.Status {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		st, err := s.Poll(context.Background(), []string{id})
		if err != nil {
			t.Fatal(err)
		}
		if st[id].State == sched.Done || st[id].State == sched.Gone {
			return st[id]
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %+v after %v", id, st[id], d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitState(t *testing.T, s *Scheduler, id string, want sched.State) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := s.Poll(context.Background(), []string{id})
		if err != nil {
			t.Fatal(err)
		}
		if st[id].State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %+v, want %s", id, st[id], want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// A gateway that restarts between qsub and recording the id submits again:
// a new Scheduler finds the job by its context variable.
func TestSubmitFindsJobAfterRestart(t *testing.T) {
	s := needSGE(t)
	task := sched.Task{
		JobID: fmt.Sprintf("restart%d", time.Now().UnixNano()), Name: "42restart",
		Command: sh("sleep 60"), WorkDir: filepath.Join(t.TempDir(), "w"),
		Resources: job.Resources{Nodes: 1, CoresPerNode: 1},
	}
	a := submit(t, s, task)
	b, err := New(&Options{Queue: "all.q"}).Submit(context.Background(), task)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("after a restart the same job was submitted again: %s, then %s", a, b)
	}
	other := task
	other.JobID += "x"
	c := submit(t, New(&Options{Queue: "all.q"}), other)
	if c == a {
		t.Fatalf("another job with the same name got the first one's id %s", a)
	}
}

// h_vmem limits every process's address space; the agent is a Go program,
// and Go needs about 1.6 GB of address space to start. With the default
// headroom a Go program starts under a small memory request; with none, it
// does not (which shows that the limit is applied).
func TestMemoryLimitLetsGoStart(t *testing.T) {
	s := needSGE(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	goTask := sched.Task{Command: []string{exe, "-test.run=^$"}, Resources: job.Resources{Nodes: 1, CoresPerNode: 1, MemoryMB: 64, WalltimeS: 120}}
	id := submit(t, s, goTask)
	st := waitDone(t, s, id, 60*time.Second)
	if st.State != sched.Done || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("a Go program under memory_mb=64 (+ headroom): %+v", st)
	}
	if st.Usage == nil || st.Usage.MaxRSSBytes < 1<<20 || st.Usage.CPUSeconds <= 0 {
		t.Errorf("usage %+v: want the RSS and CPU time of a Go program", st.Usage)
	}

	tight := New(&Options{Queue: "all.q", VmemHeadroomMB: -1})
	id = submit(t, tight, goTask)
	st = waitDone(t, tight, id, 60*time.Second)
	if st.State != sched.Done || st.ExitCode == nil || *st.ExitCode == 0 {
		t.Fatalf("a Go program under h_vmem=64M ran: %+v; is h_vmem applied?", st)
	}
}

func TestWalltimeLimit(t *testing.T) {
	s := needSGE(t)
	id := submit(t, s, sched.Task{Command: sh("sleep 60"), Resources: job.Resources{Nodes: 1, CoresPerNode: 1, WalltimeS: 2}})
	st := waitDone(t, s, id, 60*time.Second)
	if st.State != sched.Done || st.Canceled || !strings.Contains(st.Reason, "walltime") {
		t.Fatalf("a job past its walltime: %+v, want done, not canceled, reason naming the walltime", st)
	}
	if st.Usage == nil || st.Usage.WallSeconds < 2 || st.Usage.WallSeconds > 30 {
		t.Errorf("usage %+v, want about 2-5 s of wall time", st.Usage)
	}
}

func TestParallelJobGetsItsCores(t *testing.T) {
	s := needSGE(t)
	if queueSlots(t, s) < 2 {
		t.Skip("all.q has one slot")
	}
	dir := t.TempDir()
	jobID := fmt.Sprintf("pe%d", time.Now().UnixNano())
	wd := filepath.Join(dir, jobID)
	id := submit(t, s, sched.Task{JobID: jobID, Command: sh(`echo "$NSLOTS $PE" > slots; echo to-output`), WorkDir: wd, Resources: job.Resources{Nodes: 1, CoresPerNode: 2}})
	if st := waitDone(t, s, id, 60*time.Second); st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("status %+v", st)
	}
	b, _ := os.ReadFile(filepath.Join(wd, "slots"))
	if strings.TrimSpace(string(b)) != "2 smp" {
		t.Fatalf("the job saw NSLOTS PE = %q, want 2 smp", b)
	}
	if b, err := os.ReadFile(filepath.Join(dir, jobID+".sge.out")); err != nil || !strings.Contains(string(b), "to-output") {
		t.Errorf("output file beside the working directory: %q, %v", b, err)
	}
}

func TestUnknownJobs(t *testing.T) {
	s := needSGE(t)
	ctx := context.Background()
	for _, id := range []string{"999999997", "x*"} {
		if err := s.Cancel(ctx, id); err != nil {
			t.Errorf("Cancel(%q): %v", id, err)
		}
		if err := s.Hold(ctx, id); !errors.Is(err, sched.ErrNotFound) {
			t.Errorf("Hold(%q): %v, want ErrNotFound", id, err)
		}
		if err := s.Release(ctx, id); !errors.Is(err, sched.ErrNotFound) {
			t.Errorf("Release(%q): %v, want ErrNotFound", id, err)
		}
		if err := s.Suspend(ctx, id); !errors.Is(err, sched.ErrNotFound) {
			t.Errorf("Suspend(%q): %v, want ErrNotFound", id, err)
		}
		if err := s.Resume(ctx, id); !errors.Is(err, sched.ErrNotFound) {
			t.Errorf("Resume(%q): %v, want ErrNotFound", id, err)
		}
	}
	st, err := s.Poll(ctx, []string{"x*", "999999997", "999999997"})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st["x*"].State != sched.Gone || st["999999997"].State != sched.Gone {
		t.Fatalf("Poll of unknown ids: %+v", st)
	}
}

func TestSuspendQueuedIsUnsupported(t *testing.T) {
	s := needSGE(t)
	ctx := context.Background()
	// fill every slot, so that the job stays queued
	for range queueSlots(t, s) {
		b := submit(t, s, sched.Task{Command: sh("sleep 120")})
		waitState(t, s, b, sched.Running)
	}
	id := submit(t, s, sched.Task{Command: sh("true")})
	if err := s.Suspend(ctx, id); !errors.Is(err, sched.ErrUnsupported) {
		t.Errorf("Suspend of a queued job: %v, want ErrUnsupported", err)
	}
	if err := s.Release(ctx, id); err != nil {
		t.Errorf("Release of a queued job: %v", err)
	}
	if err := s.Hold(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitState(t, s, id, sched.Held)
	if err := s.Suspend(ctx, id); !errors.Is(err, sched.ErrUnsupported) {
		t.Errorf("Suspend of a held job: %v, want ErrUnsupported", err)
	}
	if err := s.Resume(ctx, id); !errors.Is(err, sched.ErrUnsupported) {
		t.Errorf("Resume of a held job: %v, want ErrUnsupported", err)
	}
	if err := s.Hold(ctx, id); err != nil {
		t.Errorf("second Hold: %v", err)
	}
	if err := s.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, s, id, 30*time.Second); st.State != sched.Gone && !st.Canceled {
		t.Errorf("canceled held job: %+v", st)
	}
}

// A job Grid Engine cannot start (here: its output file cannot be opened)
// goes into error state (Eqw): Poll reports it done, with Grid Engine's
// reason.
func TestErrorState(t *testing.T) {
	s := needSGE(t)
	var blockers []string
	for range queueSlots(t, s) {
		b := submit(t, s, sched.Task{Command: sh("sleep 120")})
		waitState(t, s, b, sched.Running)
		blockers = append(blockers, b)
	}
	dir := filepath.Join(t.TempDir(), "parent")
	id := submit(t, s, sched.Task{Command: sh("true"), WorkDir: filepath.Join(dir, "w")})
	// while it waits, its output directory becomes a file
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s.Cancel(context.Background(), blockers[0])
	st := waitDone(t, s, id, 60*time.Second)
	if st.State != sched.Done || st.ExitCode != nil || !strings.Contains(st.Reason, "error state: ") || !strings.Contains(st.Reason, "stdout") {
		t.Fatalf("job that cannot open its output: %+v, want done in error state with the reason", st)
	}
	if err := s.Cancel(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	// it leaves qstat; qacct has the failed start ("failed 26: opening
	// input/output file")
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := s.jobs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, listed := l.jobs[id]; !listed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s in error state still listed after Cancel", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := waitDone(t, s, id, 30*time.Second); st.State == sched.Done && !strings.Contains(st.Reason, "failed") {
		t.Errorf("after qdel of a job in error state: %+v", st)
	}
}

func TestImpossibleIsUnsupported(t *testing.T) {
	s := needSGE(t)
	_, err := s.Submit(context.Background(), sched.Task{JobID: fmt.Sprintf("big%d", time.Now().UnixNano()), Name: "big",
		Command: sh("true"), WorkDir: filepath.Join(t.TempDir(), "big"), Resources: job.Resources{Nodes: 1, CoresPerNode: 100000}})
	if !errors.Is(err, sched.ErrUnsupported) || !strings.Contains(err.Error(), "no suitable queues") {
		t.Fatalf("Submit of 100000 cores: %v, want ErrUnsupported with Grid Engine's words", err)
	}
}

func TestPingWithoutQmaster(t *testing.T) {
	s := New(&Options{Cell: "no-such-cell", CommandTimeout: 20 * time.Second})
	if _, err := os.Stat(s.opts.Bin); err != nil {
		t.Skipf("no Grid Engine clients: %v", err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping of a cell that does not exist succeeded")
	}
	if _, err := s.Poll(context.Background(), []string{"1"}); err == nil {
		t.Fatal("Poll without a qmaster succeeded")
	}
}

// The job token reaches the job in a file only its account can read; it is
// neither in qstat -j (which shows a job's environment to every user) nor
// in the job script Grid Engine spools world-readable.
func TestRealTokenIsPrivate(t *testing.T) {
	s := needSGE(t)
	token := fmt.Sprintf("tok-%d", time.Now().UnixNano())
	dir := t.TempDir()
	jobID := fmt.Sprintf("tok%d", time.Now().UnixNano())
	wd := filepath.Join(dir, jobID)
	id := submit(t, s, sched.Task{JobID: jobID, WorkDir: wd, Env: map[string]string{"HPCGATE_TOKEN": token, "OTHER": "x"},
		Command: sh(`cat "$HPCGATE_TOKEN_FILE" > token; stat -c %a "$HPCGATE_TOKEN_FILE" > mode; printf %s "$HPCGATE_TOKEN" > envtoken; sleep 3`)})
	waitState(t, s, id, sched.Running)
	env := append(os.Environ(), "SGE_ROOT="+s.opts.Root, "SGE_CELL="+s.opts.Cell)
	for _, args := range [][]string{{"-j", id}, {"-j", id, "-xml"}, {"-u", "*", "-r", "-xml"}} {
		cmd := exec.Command(filepath.Join(s.opts.Bin, "qstat"), args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("qstat %v: %v\n%s", args, err, out)
		}
		if strings.Contains(string(out), token) {
			t.Fatalf("the token is in qstat %v:\n%s", args, out)
		}
		if args[0] == "-j" && len(args) == 2 && !strings.Contains(string(out), "HPCGATE_TOKEN_FILE=") {
			t.Fatalf("qstat -j shows no HPCGATE_TOKEN_FILE: is this the job?\n%s", out)
		}
	}
	// every spooled copy of the script
	filepath.WalkDir("/var/spool/gridengine", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(p, "job_scripts") {
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), token) {
				t.Errorf("the token is in the spooled script %s", p)
			}
		}
		return nil
	})
	if st := waitDone(t, s, id, 60*time.Second); st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("status %+v", st)
	}
	if b, err := os.ReadFile(filepath.Join(wd, "token")); err != nil || string(b) != token {
		t.Fatalf("the job read %q from HPCGATE_TOKEN_FILE (%v), want the token", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(wd, "mode")); strings.TrimSpace(string(b)) != "600" {
		t.Fatalf("the token's file has mode %q, want 600", b)
	}
	if b, _ := os.ReadFile(filepath.Join(wd, "envtoken")); len(b) != 0 {
		t.Fatalf("the job's environment had HPCGATE_TOKEN=%q", b)
	}
}

// As root, a task with an Account is submitted as it (runuser -u ACCOUNT
// qsub): it runs as the account, and qacct names it as the owner.
func TestRunsAsAccount(t *testing.T) {
	needSGE(t)
	s := New(&Options{Queue: "all.q"})
	schedtest.RunAccounts(t, s, schedtest.AccountOptions{Timeout: 60 * time.Second, Owner: func(ctx context.Context, id string) (string, error) {
		cmd := exec.CommandContext(ctx, "/usr/lib/gridengine/qacct", "-j", id)
		cmd.Env = append(os.Environ(), "SGE_ROOT="+s.opts.Root, "SGE_CELL="+s.opts.Cell)
		out, err := cmd.Output()
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "owner" {
				return f[1], nil
			}
		}
		return "", err
	}})
}
