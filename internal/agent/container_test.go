package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
