package localsched

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/schedtest"
)

// As root, a task with an Account runs as it (credentials set by the
// executor), in a directory of its own no other account can read.
func TestRunsAsAccount(t *testing.T) {
	schedtest.RunAccounts(t, newExecutor(t, t.TempDir(), 2), schedtest.AccountOptions{Timeout: 20 * time.Second})
}

// A task of the gateway's own account runs in the sandbox: the executor's
// directory (standing for the data directory) and a token beside it do
// not exist there; its working directory and its token's file do. It has
// no capabilities, not even as root: with them it could unmount the masks
// and open the host's root by file handle.
func TestSandboxHidesDataDir(t *testing.T) {
	sb, err := FindSandbox()
	if err != nil {
		schedtest.Missing(t, "no working bubblewrap here (scripts/test.sh installs it): %v", err)
	}
	data := t.TempDir()
	admin := filepath.Join(data, "admin.token")
	if err := os.WriteFile(admin, []byte("admin secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	execDir := filepath.Join(data, "local")
	e, err := New(execDir, &Options{Slots: 1, Sandbox: sb})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	work := filepath.Join(t.TempDir(), "jobs", "sb1")
	script := `for p in "$DATA" "$ADMIN" "$EXEC"; do if ls "$p" >/dev/null 2>&1 || cat "$p" >/dev/null 2>&1; then echo "READ $p"; else echo "DENIED $p"; fi; done > probes
cat "$HPCGATE_TOKEN_FILE" > token-copy
grep -E '^(Cap(Inh|Prm|Eff|Amb)|NoNewPrivs):' /proc/self/status > caps
if umount /etc/shadow 2>/dev/null || umount /etc/ssh 2>/dev/null; then echo unmounted > umount; fi`
	id, err := e.Submit(ctx, sched.Task{JobID: "sb1", Name: "sandbox", Command: []string{"/bin/sh", "-c", script},
		Env:     map[string]string{"DATA": data, "ADMIN": admin, "EXEC": execDir, "HPCGATE_TOKEN": "job-token"},
		WorkDir: work, Resources: job.Resources{Nodes: 1, CoresPerNode: 1}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var st sched.Status
	for time.Now().Before(deadline) {
		m, _ := e.Poll(ctx, []string{id})
		if st = m[id]; st.State == sched.Done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.State != sched.Done || st.ExitCode == nil || *st.ExitCode != 0 {
		log, _ := os.ReadFile(filepath.Join(execDir, id, "out.log"))
		t.Fatalf("status %+v; output:\n%s", st, log)
	}
	b, err := os.ReadFile(filepath.Join(work, "probes"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasPrefix(l, "DENIED ") {
			t.Errorf("in the sandbox: %s", l)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(work, "token-copy")); string(b) != "job-token" {
		t.Errorf("the token in the sandbox: %q", b)
	}
	caps, err := os.ReadFile(filepath.Join(work, "caps"))
	if err != nil {
		t.Fatal(err)
	}
	// none held, and none to gain by running a program (no_new_privs:
	// root's bounding set stays full, but an exec gains nothing of it)
	want := "CapInh: 0000000000000000 CapPrm: 0000000000000000 CapEff: 0000000000000000 CapAmb: 0000000000000000 NoNewPrivs: 1"
	if got := strings.Join(strings.Fields(string(caps)), " "); got != want {
		t.Errorf("in the sandbox: %s\nwant %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(work, "umount")); err == nil {
		t.Error("the task unmounted a mask over /etc's secrets")
	}
}
