package schedtest

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// The throwaway accounts scripts/test.sh makes.
const (
	AliceAccount = "hpcg-alice"
	BobAccount   = "hpcg-bob"
)

// Missing skips t for a component the test needs and does not have, or
// fails it where the test command set the components up
// (HPCGATE_TEST_ACCOUNTS=1): there, a missing one is a broken set-up, not
// a reason to pass.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("HPCGATE_TEST_ACCOUNTS") == "1" {
		t.Fatalf(format+" (HPCGATE_TEST_ACCOUNTS=1: scripts/test.sh should have set it up)", args...)
	}
	t.Skipf(format, args...)
}

// Accounts returns the test accounts hpcg-alice and hpcg-bob, or skips t
// (see Missing) when this process is not root or they are missing.
func Accounts(t *testing.T) (alice, bob *sched.Account) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "running tasks as other accounts needs root (scripts/test.sh runs as root)")
	}
	var out [2]*sched.Account
	for i, name := range []string{AliceAccount, BobAccount} {
		u, err := user.Lookup(name)
		if err != nil {
			Missing(t, "the account %s is missing (scripts/test.sh makes it): %v", name, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		out[i] = &sched.Account{Name: name, UID: uid, GID: gid, Home: u.HomeDir}
	}
	return out[0], out[1]
}

// AccountOptions describe the engine under RunAccounts.
type AccountOptions struct {
	// Timeout bounds each wait (default 60s).
	Timeout time.Duration
	// Owner, when set, returns the account the engine's accounting shows
	// as the owner of the ended task id.
	Owner func(ctx context.Context, id string) (string, error)
}

// RunAccounts checks that s runs a task with an Account as that account:
// id -un in the task is the account, the files it writes are the
// account's, its secret's file is the account's alone (0600), and from
// alice's task neither bob's task's directory nor a directory only root
// may read (standing for the gateway's data: its admin token and
// database) can be read. The work root is made under /var/tmp, where the
// accounts can reach it. It skips unless root and the accounts exist.
func RunAccounts(t *testing.T, s sched.Scheduler, opts AccountOptions) {
	alice, bob := Accounts(t)
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	root, err := os.MkdirTemp("/var/tmp", "hpcgate-schedtest-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	data := filepath.Join(t.TempDir(), "data") // the gateway's, root's alone
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	adminToken, db := filepath.Join(data, "admin.token"), filepath.Join(data, "hpcgate.db")
	for _, p := range []string{adminToken, db} {
		if err := os.WriteFile(p, []byte("secret of the gateway\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	n := 0
	submit := func(a *sched.Account, script string, env map[string]string) (string, sched.Task) {
		t.Helper()
		n++
		jobID := fmt.Sprintf("acct%d%d", time.Now().UnixNano()%1e9, n)
		env["HPCGATE_TOKEN"] = "token-of-" + a.Name
		task := sched.Task{
			JobID:     jobID,
			Name:      "schedtest-" + a.Name,
			Command:   []string{"/bin/sh", "-c", script},
			Env:       env,
			WorkDir:   filepath.Join(root, jobID, "work"),
			Resources: job.Resources{Nodes: 1, CoresPerNode: 1, WalltimeS: 600},
			Account:   a,
		}
		id, err := s.Submit(ctx, task)
		if err != nil {
			t.Fatalf("Submit as %s: %v", a.Name, err)
		}
		t.Cleanup(func() { s.Cancel(context.Background(), id) })
		return id, task
	}
	wait := func(id string) sched.Status {
		t.Helper()
		deadline := time.Now().Add(opts.Timeout)
		for time.Now().Before(deadline) {
			st, err := s.Poll(ctx, []string{id})
			if err != nil {
				t.Fatalf("Poll: %v", err)
			}
			if st[id].State == sched.Done {
				return st[id]
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("task %s did not end within %s", id, opts.Timeout)
		return sched.Status{}
	}

	bobID, bobTask := submit(bob, `echo bob-private > secret.txt`, map[string]string{})
	if st := wait(bobID); st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("bob's task: %+v", st)
	}
	probes := []string{bobTask.JobDir(), bobTask.WorkDir, filepath.Join(bobTask.WorkDir, "secret.txt"), bobTask.SecretPath(sched.TokenEnv), data, adminToken, db}
	script := `id -un > whoami
echo mine > mine.txt
stat -c '%U %a' "$HPCGATE_TOKEN_FILE" > token-stat
cat "$HPCGATE_TOKEN_FILE" > token-copy
for p in $PROBES; do
	if ls "$p" >/dev/null 2>&1 || cat "$p" >/dev/null 2>&1; then echo "READ $p"; else echo "DENIED $p"; fi
done > probes
`
	aliceID, aliceTask := submit(alice, script, map[string]string{"PROBES": strings.Join(probes, " ")})
	st := wait(aliceID)
	if st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("alice's task: %+v", st)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(aliceTask.WorkDir, name))
		if err != nil {
			t.Fatalf("alice's task wrote no %s: %v", name, err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := read("whoami"); got != alice.Name {
		t.Errorf("id -un in alice's task: %q, want %q", got, alice.Name)
	}
	if got := read("token-stat"); got != alice.Name+" 600" {
		t.Errorf("the token's file: %q, want %q", got, alice.Name+" 600")
	}
	if got := read("token-copy"); got != "token-of-"+alice.Name {
		t.Errorf("the token's file holds %q", got)
	}
	for _, p := range []string{filepath.Join(aliceTask.WorkDir, "mine.txt"), aliceTask.WorkDir, aliceTask.JobDir()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != alice.UID {
			t.Errorf("%s is owned by uid %d, want %s's %d", p, uid, alice.Name, alice.UID)
		}
	}
	if fi, err := os.Stat(aliceTask.JobDir()); err == nil && fi.Mode().Perm() != 0o700 {
		t.Errorf("alice's job directory has mode %o, want 700", fi.Mode().Perm())
	}
	lines := strings.Split(read("probes"), "\n")
	if len(lines) != len(probes) {
		t.Fatalf("probes: %q", lines)
	}
	for i, l := range lines {
		if l != "DENIED "+probes[i] {
			t.Errorf("from alice's task: %s", l)
		}
	}
	if opts.Owner != nil {
		deadline := time.Now().Add(opts.Timeout)
		for {
			owner, err := opts.Owner(ctx, aliceID)
			if err == nil && owner == alice.Name {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the engine's accounting shows %q (%v) as the owner of alice's task, want %s", owner, err, alice.Name)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
}
