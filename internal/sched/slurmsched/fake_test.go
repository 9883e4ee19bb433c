package slurmsched

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/jobscript"
)

// fakeSlurm is a directory of stand-ins for Slurm's commands. Each one
// appends its arguments to NAME.args, writes its environment to NAME.env
// (and sbatch its stdin to sbatch.stdin), prints NAME.out.N on its Nth
// call, or else NAME.out, prints NAME.err on stderr and exits with NAME.rc.
type fakeSlurm struct {
	t   *testing.T
	dir string
}

const fakeCommand = `#!/bin/sh
d=$(dirname "$0"); n=$(basename "$0")
c=$(( $(cat "$d/$n.count" 2>/dev/null || echo 0) + 1 )); echo $c > "$d/$n.count"
printf '%s\n' "$*" >> "$d/$n.args"
env > "$d/$n.env"
if [ "$n" = sbatch ]; then cat > "$d/$n.stdin"; fi
o="$d/$n.out"; if [ -f "$o.$c" ]; then o="$o.$c"; fi
if [ -f "$o" ]; then cat "$o"; fi
if [ -f "$d/$n.err" ]; then cat "$d/$n.err" >&2; fi
exit $(cat "$d/$n.rc" 2>/dev/null || echo 0)
`

func newFake(t *testing.T) *fakeSlurm {
	t.Helper()
	f := &fakeSlurm{t: t, dir: t.TempDir()}
	for _, n := range []string{"sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo"} {
		if err := os.WriteFile(filepath.Join(f.dir, n), []byte(fakeCommand), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fakeSlurm) set(name, content string) {
	f.t.Helper()
	if err := os.WriteFile(filepath.Join(f.dir, name), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSlurm) get(name string) string {
	b, _ := os.ReadFile(filepath.Join(f.dir, name))
	return string(b)
}

// calls returns the argument lines of each call of a command.
func (f *fakeSlurm) calls(name string) []string {
	s := strings.TrimSuffix(f.get(name+".args"), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func (f *fakeSlurm) sched() *Scheduler { return New(&Options{Bin: f.dir, Partition: "debug"}) }

func TestFakeSubmitPipesScriptAndHidesEnv(t *testing.T) {
	f := newFake(t)
	f.set("sbatch.out", "42\n")
	work := filepath.Join(t.TempDir(), "jobs", "J1", "work")
	task := sched.Task{JobID: "J1", Name: "my job", Command: []string{"/opt/agent", "run"},
		Env:     map[string]string{"HPCGATE_TOKEN": "s3cret-token", "HPCGATE_URL": "https://gw"},
		WorkDir: work, Resources: job.Resources{Nodes: 1, CoresPerNode: 2, WalltimeS: 600}}
	id, err := f.sched().Submit(context.Background(), task)
	if err != nil || id != "42" {
		t.Fatalf("Submit = %q, %v; want 42", id, err)
	}
	secretPath := filepath.Join(filepath.Dir(work), "J1.secret.HPCGATE_TOKEN")
	want, _ := jobscript.Default().Render(jobscript.Data{JobID: "J1", Name: "my_job", WorkDir: work, Command: task.Command,
		Secrets: []jobscript.Secret{{Path: secretPath, Value: "s3cret-token"}}})
	if got := f.get("sbatch.stdin"); got != string(want) {
		t.Fatalf("sbatch read\n%s\nwant the rendered script\n%s", got, want)
	}
	env := f.get("sbatch.env")
	if !strings.Contains(env, "HPCGATE_TOKEN_FILE="+secretPath+"\n") || !strings.Contains(env, "HPCGATE_URL=https://gw\n") {
		t.Fatalf("the task's environment did not reach sbatch:\n%s", env)
	}
	if strings.Contains(env, "s3cret") {
		t.Fatalf("the token is in sbatch's environment (Slurm may store it):\n%s", env)
	}
	if !strings.Contains(env, "PATH="+os.Getenv("PATH")+"\n") {
		t.Fatal("sbatch did not get this process's environment")
	}
	for _, n := range []string{"sbatch", "squeue"} {
		if args := f.get(n + ".args"); strings.Contains(args, "s3cret") {
			t.Fatalf("the token is on %s's command line: %s", n, args)
		}
	}
	sb := f.calls("sbatch")
	if len(sb) != 1 || !strings.Contains(sb[0], "--comment=hpcgate:J1") || !strings.Contains(sb[0], "--job-name=my_job") ||
		!strings.Contains(sb[0], "--export=ALL") || !strings.Contains(sb[0], "--time=10") || !strings.Contains(sb[0], "--partition=debug") {
		t.Fatalf("sbatch calls %q", sb)
	}
	if sq := f.calls("squeue"); len(sq) != 1 || !strings.Contains(sq[0], "--me") || !strings.Contains(sq[0], "-n my_job") {
		t.Fatalf("the lookup before submitting: %q", sq)
	}
	if fi, err := os.Stat(filepath.Dir(work)); err != nil || !fi.IsDir() {
		t.Fatalf("the working directory's parent was not created: %v", err)
	}
}

func TestFakeSubmitFindsTheFirstJob(t *testing.T) {
	f := newFake(t)
	f.set("squeue.out", "40|hpcgate:J10\n41|(null)\n43|hpcgate:J1\n")
	task := sched.Task{JobID: "J1", Name: "n", Command: []string{"x"}, WorkDir: filepath.Join(t.TempDir(), "w")}
	id, err := f.sched().Submit(context.Background(), task)
	if err != nil || id != "43" {
		t.Fatalf("Submit = %q, %v; want the existing job 43", id, err)
	}
	if sb := f.calls("sbatch"); len(sb) != 0 {
		t.Fatalf("sbatch ran for a job Slurm already had: %q", sb)
	}
}

func TestFakeSubmitRefused(t *testing.T) {
	f := newFake(t)
	f.set("sbatch.err", "sbatch: error: Batch job submission failed: Requested node configuration is not available\n")
	f.set("sbatch.rc", "1")
	task := sched.Task{JobID: "J1", Name: "n", Command: []string{"x"}, WorkDir: filepath.Join(t.TempDir(), "w")}
	_, err := f.sched().Submit(context.Background(), task)
	var ce *sched.CommandError
	if !errors.As(err, &ce) || ce.Cmd != "sbatch" || ce.ExitCode != 1 || !strings.Contains(ce.Stderr, "Requested node configuration is not available") {
		t.Fatalf("Submit = %v, want sbatch's refusal as a *sched.CommandError", err)
	}
	for _, bad := range []sched.Task{
		{JobID: "J 1", Command: []string{"x"}, WorkDir: "/w"},
		{JobID: "J1", Command: []string{"x"}, WorkDir: "relative"},
		{JobID: "J1", Command: nil, WorkDir: "/w"},
		{JobID: "J1", Command: []string{"x"}, WorkDir: "/w", Env: map[string]string{"SBATCH_PARTITION": "other"}},
		{JobID: "J1", Command: []string{"x"}, WorkDir: "/w", Env: map[string]string{"A=B": "x"}},
		{JobID: "J1", Command: []string{"x"}, WorkDir: "/w", Resources: job.Resources{CoresPerNode: -2}},
	} {
		if _, err := f.sched().Submit(context.Background(), bad); err == nil {
			t.Errorf("Submit(%+v) was taken", bad)
		}
	}
	if n := len(f.calls("sbatch")); n != 1 {
		t.Fatalf("sbatch ran %d times, want once (bad tasks stop before it)", n)
	}
}

func TestFakePoll(t *testing.T) {
	f := newFake(t)
	old := time.Now().Add(-time.Hour).Format("2006-01-02T15:04:05")
	f.set("squeue.out", "1|N/A|1|RUNNING|None|"+old+"|10:00|0\n2|N/A|2|PENDING|JobHeldUser|Unknown|10:00|0\n3|N/A|3|COMPLETED|None|"+old+"|10:00|0\n")
	f.set("sacct.out", "3|COMPLETED|0:0|5|00:04.500||00:10:00\n3.batch|COMPLETED|0:0|5|00:04.500|2048K|\n"+
		"4|FAILED|3:0|2|00:01.000||00:10:00\n5|RUNNING|0:0|2|00:00:00||00:10:00\n")
	got, err := f.sched().Poll(context.Background(), []string{"1", "2", "3", "4", "5", "6", "x;rm", "1"})
	if err != nil {
		t.Fatal(err)
	}
	check := func(id string, state sched.State, exit *int) sched.Status {
		t.Helper()
		st, ok := got[id]
		if !ok || st.State != state || (exit == nil) != (st.ExitCode == nil) || (exit != nil && *exit != *st.ExitCode) {
			t.Fatalf("%s: %+v (present %v), want %s exit %v", id, st, ok, state, deref(exit))
		}
		return st
	}
	check("1", sched.Running, nil)
	check("2", sched.Held, nil)
	if st := check("3", sched.Done, ptr(0)); st.Usage == nil || st.Usage.MaxRSSBytes != 2<<20 || st.Usage.CPUSeconds != 4.5 || st.Usage.WallSeconds != 5 {
		t.Fatalf("usage of 3: %+v", st.Usage)
	}
	check("4", sched.Done, ptr(3))
	check("5", sched.Gone, nil) // sacct thinks it runs, the controller does not know it
	check("6", sched.Gone, nil)
	check("x;rm", sched.Gone, nil)
	if sq := f.calls("squeue"); len(sq) != 1 || !strings.Contains(sq[0], "-j 1,2,3,4,5,6 ") {
		t.Fatalf("squeue calls %q, want one for every valid id", sq)
	}
	if sa := f.calls("sacct"); len(sa) != 1 || !strings.Contains(sa[0], "-j 3,4,5,6 ") {
		t.Fatalf("sacct calls %q, want one for the ended and unknown ids", sa)
	}
	if sc := f.calls("scontrol"); len(sc) != 0 {
		t.Fatalf("scontrol ran: %q", sc)
	}
}

func TestFakePollOneUnknownID(t *testing.T) {
	f := newFake(t)
	f.set("squeue.err", "slurm_load_jobs error: Invalid job id specified\n")
	f.set("squeue.rc", "1")
	got, err := f.sched().Poll(context.Background(), []string{"99"})
	if err != nil || got["99"].State != sched.Gone {
		t.Fatalf("Poll = %+v, %v; want gone", got, err)
	}
}

func TestFakePollControllerDown(t *testing.T) {
	f := newFake(t)
	f.set("squeue.err", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n")
	f.set("squeue.rc", "1")
	_, err := f.sched().Poll(context.Background(), []string{"99"})
	var ce *sched.CommandError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "Unable to contact slurm controller") {
		t.Fatalf("Poll with the controller down = %v, want its error (not gone)", err)
	}
}

func TestFakePollWaitsForAccounting(t *testing.T) {
	f := newFake(t)
	now := time.Now().Format("2006-01-02T15:04:05")
	old := time.Now().Add(-time.Minute).Format("2006-01-02T15:04:05")
	f.set("squeue.out", "7|N/A|7|FAILED|NonZeroExitCode|"+now+"|1:00|768\n8|N/A|8|TIMEOUT|TimeLimit|"+old+"|1:00|15\n")
	f.set("sacct.out", "7|RUNNING|0:0|2|00:00:00||00:01:00\n")
	got, err := f.sched().Poll(context.Background(), []string{"7", "8"})
	if err != nil {
		t.Fatal(err)
	}
	if got["7"].State != sched.Running {
		t.Fatalf("a job ended a moment ago without its accounting record: %+v, want still running", got["7"])
	}
	if st := got["8"]; st.State != sched.Done || st.ExitCode == nil || *st.ExitCode != 143 || !strings.Contains(st.Reason, "walltime") || st.Usage != nil {
		t.Fatalf("a job long ended without an accounting record: %+v, want done as squeue has it", st)
	}
}

// A job that ends within a moment of starting can reach slurmdbd as one
// start record written after its end: sacct then briefly shows its final
// state with exit code 0:0. The exit code is squeue's while squeue has it
// (seen in the full suite: a job that exited 3 reported 0).
func TestFakePollTakesExitCodeFromController(t *testing.T) {
	f := newFake(t)
	now := time.Now().Format("2006-01-02T15:04:05")
	f.set("squeue.out", "7|N/A|7|FAILED|NonZeroExitCode|"+now+"|1:00|768\n8|N/A|8|CANCELLED|None|"+now+"|1:00|15\n")
	f.set("sacct.out", "7|FAILED|0:0|0|00:00:00||00:01:00\n8|CANCELLED by 0|0:0|4|00:00.100||00:01:00\n8.batch|CANCELLED|0:15|4|00:00.100|1024K|\n")
	got, err := f.sched().Poll(context.Background(), []string{"7", "8"})
	if err != nil {
		t.Fatal(err)
	}
	if st := got["7"]; st.State != sched.Done || st.ExitCode == nil || *st.ExitCode != 3 || st.Usage == nil {
		t.Fatalf("exit 3 with a lagging accounting record: %+v, want done exit 3 with usage", st)
	}
	if st := got["8"]; st.State != sched.Done || !st.Canceled || st.ExitCode != nil || st.Usage == nil || st.Usage.MaxRSSBytes != 1<<20 {
		t.Fatalf("canceled while running: %+v, want canceled without an exit code, with usage", st)
	}
	if sc := f.calls("scontrol"); len(sc) != 0 {
		t.Fatalf("scontrol ran: %q", sc)
	}
}

func TestFakePollWithoutAccounting(t *testing.T) {
	f := newFake(t)
	now := time.Now().Format("2006-01-02T15:04:05")
	f.set("squeue.out", "7|N/A|7|FAILED|NonZeroExitCode|"+now+"|1:00|1024\n")
	f.set("sacct.out", "Slurm accounting storage is disabled\n")
	got, err := f.sched().Poll(context.Background(), []string{"7", "8"})
	if err != nil {
		t.Fatal(err)
	}
	if st := got["7"]; st.State != sched.Done || st.ExitCode == nil || *st.ExitCode != 4 {
		t.Fatalf("without accounting: %+v, want done exit 4 at once", st)
	}
	if got["8"].State != sched.Gone {
		t.Fatalf("unknown without accounting: %+v", got["8"])
	}
}

func TestFakeControl(t *testing.T) {
	ctx := context.Background()
	f := newFake(t)
	f.set("squeue.out", "5|N/A|5|RUNNING|None|Unknown|10:00|0\n")
	s := f.sched()
	if err := s.Hold(ctx, "5"); !errors.Is(err, sched.ErrUnsupported) {
		t.Fatalf("Hold of a running job: %v, want ErrUnsupported", err)
	}
	if err := s.Release(ctx, "5"); !errors.Is(err, sched.ErrUnsupported) {
		t.Fatalf("Release of a running job: %v, want ErrUnsupported", err)
	}
	if err := s.Resume(ctx, "5"); err != nil {
		t.Fatalf("Resume of a running job: %v, want nothing to do", err)
	}
	if sc := f.calls("scontrol"); len(sc) != 0 {
		t.Fatalf("scontrol ran: %q", sc)
	}
	if err := s.Suspend(ctx, "5"); err != nil {
		t.Fatal(err)
	}
	if sc := f.calls("scontrol"); len(sc) != 1 || sc[0] != "suspend 5" {
		t.Fatalf("scontrol calls %q", sc)
	}

	// Slurm refuses because the job moved on: ErrUnsupported, with its words
	f.set("scontrol.err", "Job is pending execution\n")
	f.set("scontrol.rc", "1")
	if err := s.Suspend(ctx, "5"); !errors.Is(err, sched.ErrUnsupported) || !sched.CommandSaid(err, "pending execution") {
		t.Fatalf("Suspend refused by Slurm: %v, want ErrUnsupported wrapping the CommandError", err)
	}

	// a hold that came too late: the job started in between
	f = newFake(t)
	f.set("squeue.out.1", "6|N/A|6|PENDING|Priority|Unknown|10:00|0\n")
	f.set("squeue.out", "6|N/A|6|RUNNING|JobHeldAdmin|Unknown|10:00|0\n")
	if err := f.sched().Hold(ctx, "6"); !errors.Is(err, sched.ErrUnsupported) {
		t.Fatalf("Hold of a job that started meanwhile: %v, want ErrUnsupported", err)
	}
	if sc := f.calls("scontrol"); len(sc) != 2 || sc[0] != "hold 6" || sc[1] != "release 6" {
		t.Fatalf("scontrol calls %q, want the hold undone", sc)
	}

	f = newFake(t)
	f.set("squeue.err", "slurm_load_jobs error: Invalid job id specified\n")
	f.set("squeue.rc", "1")
	s = f.sched()
	for name, fn := range map[string]func(context.Context, string) error{"Hold": s.Hold, "Release": s.Release, "Suspend": s.Suspend, "Resume": s.Resume} {
		if err := fn(ctx, "77"); !errors.Is(err, sched.ErrNotFound) {
			t.Errorf("%s of an unknown job: %v, want ErrNotFound", name, err)
		}
	}
	if err := s.Cancel(ctx, "77"); err != nil {
		t.Fatalf("Cancel of an unknown job: %v", err)
	}

	// Cancel returns once the job's processes are gone
	f = newFake(t)
	f.set("squeue.out.1", "8|N/A|8|RUNNING|None|Unknown|10:00|0\n")
	f.set("squeue.out.2", "8|N/A|8|COMPLETING|None|Unknown|10:00|0\n")
	f.set("squeue.out", "8|N/A|8|CANCELLED|None|Unknown|10:00|0\n")
	if err := f.sched().Cancel(ctx, "8"); err != nil {
		t.Fatal(err)
	}
	if sc, sq := f.calls("scancel"), f.calls("squeue"); len(sc) != 1 || sc[0] != "8" || len(sq) != 3 {
		t.Fatalf("Cancel ran scancel %q and squeue %d times; want once, and squeue until the job ended", sc, len(sq))
	}
	f.set("scancel.err", "scancel: error: Unable to contact slurm controller (connect failure)\n")
	f.set("scancel.rc", "1")
	if err := f.sched().Cancel(ctx, "8"); err == nil || !strings.Contains(err.Error(), "Unable to contact") {
		t.Fatalf("Cancel with the controller down: %v", err)
	}

	f = newFake(t)
	f.set("scontrol.out", "Slurmctld(primary) at vm is DOWN\n")
	f.set("scontrol.rc", "1")
	if err := f.sched().Ping(ctx); err == nil {
		t.Fatal("Ping with the controller down succeeded")
	}
	f.set("scontrol.out", "Slurmctld(primary) at vm is UP\n")
	f.set("scontrol.rc", "0")
	if err := f.sched().Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestFakeDescribe(t *testing.T) {
	f := newFake(t)
	f.set("sinfo.out", "debug*|up|1/1/0/2|1|mixed\nother|up|0/8/0/8|2|idle\n")
	f.set("squeue.out", "RUNNING|None\nPENDING|Resources\nPENDING|JobHeldUser\nPENDING|Priority\nSUSPENDED|None\n")
	got, err := New(&Options{Bin: f.dir}).Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"partition": "debug", "state": "up", "total_cores": 2, "free_cores": 1, "allocated_cores": 1,
		"running_jobs": 1, "queued_jobs": 2, "held_jobs": 1, "suspended_jobs": 1, "nodes": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if sq := f.calls("squeue"); len(sq) != 1 || !strings.Contains(sq[0], "-p debug") {
		t.Fatalf("squeue calls %q", sq)
	}
}
