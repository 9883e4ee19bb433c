package sched

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
)

func TestSafeName(t *testing.T) {
	for in, want := range map[string]string{
		"hello":        "hello",
		"a b;rm -rf /": "a_b_rm_-rf_",
		"$(reboot)":    "j_reboot_",
		"":             "j",
		"-x":           "j-x",
		"42":           "j42",
		"ünïcode":      "j_n_code",
		"0123456789012345678901234567890123456789xyz": "j012345678901234567890123456789012345678",
	} {
		if got := SafeName(in); got != want {
			t.Errorf("SafeName(%q) = %q, want %q", in, got, want)
		}
		if got := SafeName(SafeName(in)); got != SafeName(in) {
			t.Errorf("SafeName is not idempotent on %q: %q", in, got)
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() Task {
		return Task{JobID: "abc123", Name: "my job\n", Command: []string{"/agent"}, WorkDir: "/w/abc123",
			Env: map[string]string{"HPCGATE_URL": "u", TokenEnv: "tok"}, Resources: job.Resources{Nodes: 1, CoresPerNode: 2}}
	}
	tk := good()
	if err := tk.Validate(); err != nil {
		t.Fatal(err)
	}
	if tk.Name != "my_job_" {
		t.Errorf("Name = %q, want it made safe", tk.Name)
	}
	if _, ok := tk.Env[TokenEnv]; ok || tk.Secret[TokenEnv] != "tok" {
		t.Errorf("the token was not moved to Secret: env %v secret %v", tk.Env, tk.Secret)
	}
	if orig := good(); orig.Env[TokenEnv] != "tok" {
		t.Error("Validate changed the caller's map")
	}
	env := strings.Join(tk.JobEnv(), "\n")
	if strings.Contains(env, "=tok") || env != "HPCGATE_TOKEN_FILE=/w/abc123.secret.HPCGATE_TOKEN\nHPCGATE_URL=u" {
		t.Errorf("JobEnv = %q", env)
	}
	for name, mod := range map[string]func(*Task){
		"id with space":  func(t *Task) { t.JobID = "a b" },
		"id with dot":    func(t *Task) { t.JobID = ".." },
		"id with slash":  func(t *Task) { t.JobID = "a/b" },
		"empty id":       func(t *Task) { t.JobID = "" },
		"no command":     func(t *Task) { t.Command = nil },
		"relative dir":   func(t *Task) { t.WorkDir = "w" },
		"unclean dir":    func(t *Task) { t.WorkDir = "/w/../x" },
		"root dir":       func(t *Task) { t.WorkDir = "/" },
		"negative cores": func(t *Task) { t.Resources.CoresPerNode = -1 },
		"huge nodes":     func(t *Task) { t.Resources.Nodes = 1 << 30 },
		"negative mem":   func(t *Task) { t.Resources.MemoryMB = -1 },
		"env name":       func(t *Task) { t.Env = map[string]string{"A=B": "x"} },
		"secret name":    func(t *Task) { t.Secret = map[string]string{"1X": "x"} },
		"NUL in env":     func(t *Task) { t.Env = map[string]string{"A": "x\x00"} },
		"NUL in argv":    func(t *Task) { t.Command = []string{"a\x00"} },
		"_FILE clash":    func(t *Task) { t.Env["HPCGATE_TOKEN_FILE"] = "/x" },
	} {
		tk := good()
		mod(&tk)
		if err := tk.Validate(); err == nil {
			t.Errorf("%s: Validate took %+v", name, tk)
		}
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	tk := Task{JobID: "j1", Command: []string{"x"}, WorkDir: filepath.Join(dir, "sub", "j1"), Env: map[string]string{TokenEnv: "s3cret"}}
	if err := tk.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := tk.WriteSecrets(); err != nil {
		t.Fatal(err)
	}
	p := tk.SecretPath(TokenEnv)
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file %s: %v, %v; want mode 0600", p, fi, err)
	}
	t.Setenv(TokenEnv+"_FILE", p)
	if v, ok, err := LookupSecret(TokenEnv); v != "s3cret" || !ok || err != nil {
		t.Fatalf("LookupSecret = %q, %v, %v", v, ok, err)
	}
	tk.RemoveSecrets()
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("secret file still there: %v", err)
	}
	if _, _, err := LookupSecret(TokenEnv); err == nil {
		t.Fatal("LookupSecret of a missing file succeeded")
	}
	t.Setenv(TokenEnv+"_FILE", "")
	t.Setenv(TokenEnv, "plain")
	if v, ok, err := LookupSecret(TokenEnv); v != "plain" || !ok || err != nil {
		t.Fatalf("LookupSecret without a file = %q, %v, %v", v, ok, err)
	}
}

func TestCommander(t *testing.T) {
	ctx := context.Background()
	c := &Commander{Env: []string{"PATH=/usr/bin:/bin"}}
	out, err := c.Run(ctx, []byte("in"), []string{"X=1"}, "sh", "-c", `cat; echo " $X"`)
	if err != nil || string(out) != "in 1\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = c.Run(ctx, nil, nil, "sh", "-c", `echo 'Invalid job id' >&2; echo more >&2; exit 3`)
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Cmd != "sh" || ce.Stderr != "Invalid job id; more" {
		t.Fatalf("error %#v, want a CommandError with exit code 3 and the message", err)
	}
	if !CommandSaid(err, "nope", "Invalid job") || CommandSaid(err, "nope") || CommandSaid(errors.New("Invalid job"), "Invalid") {
		t.Fatal("CommandSaid")
	}
	if !strings.Contains(err.Error(), "Invalid job id") {
		t.Fatalf("Error() = %q, want the command's words (for logs)", err)
	}
	// the message is bounded; stdout stands in for an empty stderr
	_, err = c.Run(ctx, nil, nil, "sh", "-c", `head -c 100000 /dev/zero | tr '\0' x >&2; exit 1`)
	if errors.As(err, &ce); len(ce.Stderr) > maxStderr {
		t.Fatalf("kept %d bytes of stderr", len(ce.Stderr))
	}
	_, err = c.Run(ctx, nil, nil, "sh", "-c", `echo not found; exit 1`)
	if !CommandSaid(err, "not found") {
		t.Fatalf("stdout did not stand in for stderr: %v", err)
	}
	// a timeout kills the whole process group, even a child holding the pipes
	start := time.Now()
	short := &Commander{Timeout: 300 * time.Millisecond}
	_, err = short.Run(ctx, nil, nil, "sh", "-c", `sleep 30 & sleep 30; wait`)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ce) || ce.ExitCode != -1 {
		t.Fatalf("timed-out command: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Fatalf("the timeout took %v: the process group was not killed", d)
	}
}

// A retried array submission is known by its jobs, all of them: the same
// jobs give the same key, another set (one left out) another key.
func TestArrayKey(t *testing.T) {
	tasks := []Task{{JobID: "a"}, {JobID: "b"}, {JobID: "c"}}
	k := ArrayKey(tasks)
	if k != ArrayKey([]Task{{JobID: "a"}, {JobID: "b"}, {JobID: "c"}}) || !strings.HasPrefix(k, "array-a-") {
		t.Fatalf("key %q is not the same for the same jobs", k)
	}
	for _, other := range [][]Task{{{JobID: "a"}, {JobID: "c"}}, {{JobID: "a"}, {JobID: "bc"}}, {{JobID: "a"}, {JobID: "c"}, {JobID: "b"}}} {
		if ArrayKey(other) == k {
			t.Errorf("jobs %v have the key of a, b, c", other)
		}
	}
}

// A failed command with thousands of arguments (a poll of a large sweep)
// is one readable line: its arguments are cut, and it says how long they
// were.
func TestCommandErrorCutsLongArguments(t *testing.T) {
	var ids []string
	for i := 0; i < 4000; i++ {
		ids = append(ids, fmt.Sprintf("7346_%d", i))
	}
	e := &CommandError{Cmd: "squeue", Args: []string{"-j", strings.Join(ids, ",")}, Err: errors.New("exit status 1"), Stderr: "slurm_load_jobs error"}
	msg := e.Error()
	if len(msg) > 700 || !strings.HasPrefix(msg, "squeue -j 7346_0,7346_1,") || !strings.Contains(msg, "bytes of arguments)") || !strings.HasSuffix(msg, ": exit status 1: slurm_load_jobs error") {
		t.Fatalf("message of %d bytes: %.300s", len(msg), msg)
	}
}

// ArrayEnv: what all tasks share goes with the array, the rest with each
// task; tasks that differ in more than that make no array.
func TestArrayEnv(t *testing.T) {
	mk := func(id string) Task {
		return Task{JobID: id, Command: []string{"agent"}, WorkDir: "/w/" + id,
			Env: map[string]string{"SHARED": "x", "HPCGATE_JOB_ID": id, TokenEnv: "tok-" + id}}
	}
	tasks := []Task{mk("a"), mk("b")}
	common, own, err := ArrayEnv(tasks)
	if err != nil {
		t.Fatal(err)
	}
	if len(common) != 1 || common["SHARED"] != "x" {
		t.Fatalf("common %v", common)
	}
	if own[1]["HPCGATE_JOB_ID"] != "b" || own[1][TokenEnv+"_FILE"] != tasks[1].SecretPath(TokenEnv) || own[0]["SHARED"] != "" {
		t.Fatalf("task b's own %v", own[1])
	}
	if tasks[0].Secret[TokenEnv] != "tok-a" {
		t.Fatal("the tasks were not validated: the token is not among their secrets")
	}
	other := mk("c")
	other.Resources.CoresPerNode = 4
	if _, _, err := ArrayEnv([]Task{mk("a"), other}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("tasks of other resources: %v", err)
	}
}
