package proctree

import (
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A shell with a child in a session of its own (as a daemon makes) and a
// grandchild: all three are its descendants, parents first; a stopped
// one is 'T'.
func TestDescendantsAndState(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `setsid sh -c 'sleep 60 & echo $! > `+dir+`/grand; echo $$ > `+dir+`/child; wait' & wait`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Process.Kill(); cmd.Wait() }()
	read := func(name string) int {
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(20 * time.Millisecond) {
			b, _ := os.ReadFile(dir + "/" + name)
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				return n
			}
		}
		t.Fatalf("no %s pid", name)
		return 0
	}
	child, grand := read("child"), read("grand")
	defer syscall.Kill(grand, syscall.SIGKILL)
	defer syscall.Kill(child, syscall.SIGKILL)
	got := Descendants(cmd.Process.Pid)
	if got[0] != cmd.Process.Pid || !slices.Contains(got, child) || !slices.Contains(got, grand) {
		t.Fatalf("descendants of %d: %v, want it, %d and %d", cmd.Process.Pid, got, child, grand)
	}
	if slices.Index(got, child) > slices.Index(got, grand) {
		t.Fatalf("descendants %v: the child after the grandchild", got)
	}
	if self := Descendants(os.Getpid()); !slices.Contains(self, grand) {
		t.Fatalf("the test's own descendants %v miss %d", self, grand)
	}
	syscall.Kill(grand, syscall.SIGSTOP)
	for start := time.Now(); State(grand) != 'T'; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("state of a stopped process: %q", State(grand))
		}
	}
	if s := State(child); s == 'T' || s == 0 {
		t.Fatalf("state of a running process: %q", s)
	}
	syscall.Kill(grand, syscall.SIGCONT)
	if got := State(1 << 30); got != 0 {
		t.Fatalf("state of no process: %q", got)
	}
}
