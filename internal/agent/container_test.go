package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A runtime directory the agent made on disk is emptied once after a
// reboot, so that podman does not trust its records of containers whose
// processes the reboot ended; within a boot it is left as it is.
func TestRuntimeDirFreshSinceBoot(t *testing.T) {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skip("no boot id on this system:", err)
	}
	run := t.TempDir()
	// podman's mark that the machine has not rebooted since
	stale := filepath.Join(run, "libpod", "tmp", "alive")
	makeStale := func() {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(stale), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stale, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	makeStale()
	resets := 0
	reset := func() { resets++ }
	// made before this boot (and before the agent marked its directories)
	if err := freshSinceBoot(run, reset); err != nil {
		t.Fatal(err)
	}
	if resets != 1 {
		t.Errorf("podman reset %d times for a directory no boot marked, want once", resets)
	}
	if _, err := os.Stat(filepath.Join(run, "libpod")); !os.IsNotExist(err) {
		t.Fatalf("podman's records of an earlier boot are still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(run, bootIDFile)); err != nil || string(b) != string(boot) {
		t.Fatalf("boot mark %q, %v; want %q", b, err, boot)
	}
	// within this boot: kept
	makeStale()
	if err := freshSinceBoot(run, reset); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err != nil {
		t.Fatalf("emptied within the same boot: %v", err)
	}
	// marked by another boot
	if err := os.WriteFile(filepath.Join(run, bootIDFile), []byte("another boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := freshSinceBoot(run, reset); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("kept after a reboot: %v", err)
	}
	// podman's records elsewhere (its database may name another
	// temporary directory) are reset once a boot: not within one
	if resets != 2 {
		t.Errorf("podman reset %d times, want twice: in each boot", resets)
	}
}

// Every job of an account given the same image store shares one storage
// configuration; none is left behind a job.
func TestRootlessStorageConfShared(t *testing.T) {
	run := t.TempDir()
	os.Chmod(run, 0o700)
	t.Setenv("XDG_RUNTIME_DIR", run)
	var confs []string
	for _, id := range []string{"job1", "job2"} {
		env, err := (&agent{id: id}).rootless("/srv/images")
		if err != nil {
			t.Fatal(err)
		}
		if len(env) != 1 {
			t.Fatalf("env %q, want only CONTAINERS_STORAGE_CONF", env)
		}
		confs = append(confs, env[0])
	}
	if confs[0] != confs[1] {
		t.Fatalf("two jobs, two storage files: %q", confs)
	}
	ents, _ := os.ReadDir(run)
	if len(ents) != 1 {
		t.Fatalf("runtime directory holds %d entries, want the one storage file", len(ents))
	}
	b, err := os.ReadFile(filepath.Join(run, ents[0].Name()))
	if err != nil || !strings.Contains(string(b), `additionalimagestores = ["/srv/images"]`) {
		t.Fatalf("storage file %q, %v", b, err)
	}
}

// Podman is reset only while none of the account's podman processes is
// live: a live monitor counts, a zombie (the kill of the account's
// processes leaves them until they are reaped) does not.
func TestPodmanRunningSkipsZombies(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep(1):", err)
	}
	conmon := filepath.Join(t.TempDir(), "conmon")
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conmon, b, 0o755); err != nil {
		t.Fatal(err)
	}
	live := exec.Command(conmon, "60")
	if err := live.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { live.Process.Kill(); live.Wait() }()
	if podmanRunning(os.Getuid()) == 0 {
		t.Fatal("a live conmon of the account's was not seen")
	}
	dead := exec.Command(conmon, "0")
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	defer dead.Wait()
	live.Process.Kill()
	live.Wait()
	// dead exits and stays a zombie until its Wait
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", dead.Process.Pid))
		if strings.Contains(string(st), ") Z ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no zombie: %s", st)
		}
	}
	if pid := podmanRunning(os.Getuid()); pid == dead.Process.Pid || pid == live.Process.Pid {
		t.Fatalf("podmanRunning = %d: a zombie or a reaped process counted", pid)
	}
}
