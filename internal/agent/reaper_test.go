package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/container"
)

// The test binary doubles as the reaper that startReaper starts (as
// "hpcgate agent --reap-fork RUNTIME -- ...").
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "agent" && IsReaper(os.Args[2:]) {
		if err := Reap(os.Args[2:]); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The reaper removes the job's containers only when the agent did not say
// it ended in order (its pipe closed without "done", as when the agent is
// killed): it kills each container's first process, then has the runtime
// remove them. A stand-in podman (first in the reaper's PATH) records the
// calls and names a process of its own, a sleep, as the container's.
func TestReaper(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o700)
	calls := filepath.Join(dir, "calls")
	fake := `#!/bin/sh
echo "$*" >> "` + calls + `"
case "$1" in inspect) sleep 60 >/dev/null 2>&1 & echo $! > "` + filepath.Join(dir, "pid") + `"; echo $! ;; esac
`
	if err := os.WriteFile(filepath.Join(bin, "podman"), []byte(fake), 0o700); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	read := func() string {
		b, _ := os.ReadFile(calls)
		return string(b)
	}
	rt := container.Runtime{Kind: container.Podman}
	r, err := startReaper(rt, []string{"c-in-order"}, env)
	if err != nil {
		t.Fatal(err)
	}
	r.done()
	time.Sleep(500 * time.Millisecond)
	if got := read(); got != "" {
		t.Errorf("the reaper called the runtime after the agent ended in order: %q", got)
	}
	r, err = startReaper(rt, []string{"c-killed"}, env)
	if err != nil {
		t.Fatal(err)
	}
	r.w.Close() // the agent dies: its end of the pipe closes without "done"
	for start := time.Now(); !strings.Contains(read(), "rm --force --ignore --time 0 -- c-killed"); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the reaper did not remove the container when the agent went without a word: %q", read())
		}
	}
	if !strings.HasPrefix(read(), "inspect --format {{.State.Pid}} -- c-killed\n") {
		t.Errorf("calls %q: want the container's process found first", read())
	}
	b, _ := os.ReadFile(filepath.Join(dir, "pid"))
	pid := strings.TrimSpace(string(b))
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if st, err := os.ReadFile("/proc/" + pid + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
			break // killed (a zombie until its parent, the stand-in, is gone)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the container's process was not killed")
		}
	}
}
