package slurmsched

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/schedtest"
)

// These tests run against a real Slurm: scripts/setup-slurm.sh, then
// HPCGATE_TEST_SLURM=1. HPCGATE_TEST_SLURM_PARTITION names the partition
// (default debug); HPCGATE_TEST_SLURM_CORES its cores (default: what sinfo
// says).

func realSlurm(t *testing.T) (*Scheduler, int) {
	t.Helper()
	if os.Getenv("HPCGATE_TEST_SLURM") != "1" {
		t.Skip("HPCGATE_TEST_SLURM not set: run scripts/setup-slurm.sh and set HPCGATE_TEST_SLURM=1")
	}
	part := os.Getenv("HPCGATE_TEST_SLURM_PARTITION")
	if part == "" {
		part = "debug"
	}
	cores, _ := strconv.Atoi(os.Getenv("HPCGATE_TEST_SLURM_CORES"))
	if cores == 0 {
		out, err := exec.Command("sinfo", "-h", "-p", part, "-o", "%C").Output()
		f := strings.Split(strings.TrimSpace(string(out)), "/")
		if err != nil || len(f) != 4 {
			t.Fatalf("sinfo -h -p %s -o %%C: %q, %v", part, out, err)
		}
		if cores, err = strconv.Atoi(f[3]); err != nil || cores < 1 {
			t.Fatalf("partition %s has %q cores", part, f[3])
		}
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return New(&Options{Partition: part, Logger: log}), cores
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestConformance(t *testing.T) {
	_, cores := realSlurm(t)
	schedtest.Run(t, func(t *testing.T) sched.Scheduler {
		s, _ := realSlurm(t)
		return s
	}, schedtest.Options{Cores: cores, Timeout: 60 * time.Second, Arrays: true})
}

// waitDone polls id until it is done.
func waitDone(t *testing.T, s *Scheduler, id string) sched.Status {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st, err := s.Poll(context.Background(), []string{id})
		if err != nil {
			t.Fatal(err)
		}
		if st[id].State == sched.Done {
			return st[id]
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("job %s did not end", id)
	return sched.Status{}
}

// The job's token reaches it in a file only its account can read, and
// appears in none of Slurm's records of the job (scontrol, squeue, sacct,
// the environment sacct may store); usage comes from sacct.
func TestRealEnvironmentAndUsage(t *testing.T) {
	// sbatch exports its environment to the job: the gateway's own
	// secrets must not be in it.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "gateway-secret-e3b0")
	s, _ := realSlurm(t)
	ctx := context.Background()
	token := fmt.Sprintf("tok-%d", time.Now().UnixNano())
	root := t.TempDir()
	jobID := fmt.Sprintf("env%d", time.Now().UnixNano()%1e9)
	// burn about a second of CPU and 64 MiB, long enough for a sample
	id, err := s.Submit(ctx, sched.Task{
		JobID: jobID, Name: "env test", WorkDir: filepath.Join(root, "w"),
		Command: []string{"/bin/sh", "-c", `env > envdump; cat "$HPCGATE_TOKEN_FILE" > token; stat -c %a "$HPCGATE_TOKEN_FILE" > mode; printf %s "$HPCGATE_TOKEN" > envtoken; python3 -c '
import time
x = bytearray(64 << 20)
t = time.time()
while time.time() - t < 6: x[0] ^= 1
' || { end=$(($(date +%s)+6)); while [ $(date +%s) -lt $end ]; do :; done; }`},
		Env:       map[string]string{"HPCGATE_TOKEN": token},
		Resources: job.Resources{Nodes: 1, CoresPerNode: 1, MemoryMB: 256, WalltimeS: 120},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Cancel(ctx, id) })
	tokenNotIn := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if strings.Contains(string(out), token) {
			t.Fatalf("the token is in %s %s:\n%s", name, strings.Join(args, " "), out)
		}
		if err != nil && !strings.Contains(string(out), "unrecognized option") {
			t.Logf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	show := tokenNotIn("scontrol", "show", "job", "-dd", id)
	if !strings.Contains(show, "Comment=hpcgate:"+jobID) || !strings.Contains(show, "JobName=env_test") {
		t.Fatalf("the job lacks its comment or name:\n%s", show)
	}
	tokenNotIn("squeue", "-j", id, "-o", "%all")
	st := waitDone(t, s, id)
	tokenNotIn("sacct", "-j", id, "-P", "-o", "ALL")
	tokenNotIn("sacct", "-j", id, "--env-vars")
	tokenNotIn("scontrol", "show", "job", "-dd", id)
	if b, err := os.ReadFile(filepath.Join(root, "w", "envtoken")); err != nil || len(b) != 0 {
		t.Fatalf("the job's environment had HPCGATE_TOKEN=%q (%v), want it in a file only", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "w", "envdump")); err != nil || strings.Contains(string(b), "gateway-secret-e3b0") || !strings.Contains(string(b), "HPCGATE_TOKEN_FILE=") {
		t.Fatalf("the job's environment (%v) has the gateway's secret or lacks its own variables:\n%s", err, b)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "w", "mode")); strings.TrimSpace(string(b)) != "600" {
		t.Fatalf("the token's file has mode %q, want 600", b)
	}
	if st.ExitCode == nil || *st.ExitCode != 0 || st.Canceled {
		t.Fatalf("status %+v, want exit 0", st)
	}
	if b, err := os.ReadFile(filepath.Join(root, "w", "token")); err != nil || string(b) != token {
		t.Fatalf("the job saw token %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, jobID+".slurm.out")); err != nil {
		t.Fatalf("no batch output beside the working directory: %v", err)
	}
	if out, _ := exec.Command("sacct", "-n", "-j", id).CombinedOutput(); strings.Contains(string(out), "accounting storage is disabled") {
		if st.Usage != nil {
			t.Fatalf("usage %+v without accounting", st.Usage)
		}
		t.Skip("Slurm keeps no accounting (SLURM_DBD=0): no usage to check")
	}
	u := st.Usage
	if u == nil || u.WallSeconds < 5 || u.CPUSeconds < 3 {
		t.Fatalf("usage %+v, want about 6 s of wall and CPU time", u)
	}
	// setup-slurm.sh samples every 2 s (JobAcctGatherFrequency=task=2)
	if _, err := exec.LookPath("python3"); err == nil && u.MaxRSSBytes < 64<<20 {
		t.Fatalf("max RSS %d bytes, want at least the job's 64 MiB", u.MaxRSSBytes)
	}
}

func TestRealFacts(t *testing.T) {
	s, cores := realSlurm(t)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := s.Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d["partition"] != s.opts.Partition || d["state"] != "up" || d["total_cores"] != cores {
		t.Fatalf("Describe = %v, want partition %s up with %d cores", d, s.opts.Partition, cores)
	}
	if _, err := New(&Options{Partition: "no-such-partition"}).Describe(ctx); err == nil {
		t.Fatal("Describe of a partition that does not exist succeeded")
	}
	if err := s.Hold(ctx, "999999997"); !errors.Is(err, sched.ErrNotFound) {
		t.Fatalf("Hold of an unknown job: %v, want ErrNotFound", err)
	}
	if err := s.Cancel(ctx, "999999997"); err != nil {
		t.Fatalf("Cancel of an unknown job: %v", err)
	}
	_, err = s.Submit(ctx, sched.Task{JobID: fmt.Sprintf("mem%d", time.Now().UnixNano()%1e9), Name: "mem",
		Command: []string{"/bin/true"}, WorkDir: filepath.Join(t.TempDir(), "w"),
		Resources: job.Resources{Nodes: 1, CoresPerNode: 1, MemoryMB: 1 << 30}})
	if err == nil {
		t.Fatal("a job asking for a petabyte of memory was accepted")
	}
}

// As root, a task with an Account is submitted as it (runuser -u ACCOUNT
// sbatch): it runs as the account, and sacct names it as the owner.
func TestRealRunsAsAccount(t *testing.T) {
	s, _ := realSlurm(t)
	schedtest.RunAccounts(t, s, schedtest.AccountOptions{Timeout: 60 * time.Second, Owner: func(ctx context.Context, id string) (string, error) {
		out, err := exec.CommandContext(ctx, "sacct", "-n", "-X", "-P", "-o", "user", "-j", id).Output()
		return strings.TrimSpace(string(out)), err
	}})
}
