package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The test binary doubles as the reaper that startReaper starts (as
// "hpcgate agent --reap-fork -- ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "agent" && IsReaper(os.Args[2:]) {
		if err := Reap(os.Args[2:]); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The reaper runs its command only when the agent did not say it ended in
// order (its pipe closed without "done", as when the agent is killed),
// in a session of its own.
func TestReaper(t *testing.T) {
	dir := t.TempDir()
	reaped := func(name string) bool {
		p := filepath.Join(dir, name)
		for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(p); err == nil {
				return true
			}
		}
		return false
	}
	r, err := startReaper([]string{"/bin/sh", "-c", "touch \"$0\"", filepath.Join(dir, "in-order")}, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	r.done()
	if reaped("in-order") {
		t.Error("the reaper ran its command after the agent ended in order")
	}
	r, err = startReaper([]string{"/bin/sh", "-c", "touch \"$0\"", filepath.Join(dir, "killed")}, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	r.w.Close() // the agent dies: its end of the pipe closes without "done"
	if !reaped("killed") {
		t.Fatal("the reaper did not run its command when the agent went without a word")
	}
}
