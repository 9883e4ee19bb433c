package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	job := "reaper-test-" + strconv.Itoa(os.Getpid())
	env := append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "HPCGATE_JOB_ID="+job)
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
	waitKilled(t, strings.TrimSpace(string(b)), "the container's process")

	// After a stop the agent releases the reaper, which removes the
	// containers and kills what is left of the job (found by the job's id
	// in its environment), but not the agent, which has the job's id too
	// and goes on to report how the job ended.
	job1 := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	agent, leftover := job1(), job1()
	r, err = startReaper(rt, []string{"c-released"}, env)
	if err != nil {
		t.Fatal(err)
	}
	r.release(agent.Process.Pid)
	waitKilled(t, strconv.Itoa(leftover.Process.Pid), "a process of the released job")
	// the reaper goes through /proc in its order: the agent is looked at
	// for a while after
	for start := time.Now(); time.Since(start) < 500*time.Millisecond; time.Sleep(50 * time.Millisecond) {
		if st, err := os.ReadFile("/proc/" + strconv.Itoa(agent.Process.Pid) + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
			t.Fatal("the reaper killed the agent that released it")
		}
	}
	if !strings.Contains(read(), "rm --force --ignore --time 0 -- c-released") {
		t.Errorf("calls %q: want the released containers removed", read())
	}
}

// waitKilled waits for process pid to be gone or a zombie (killed, its
// parent not having waited for it yet).
func waitKilled(t *testing.T, pid, what string) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if st, err := os.ReadFile("/proc/" + pid + "/stat"); err != nil || strings.Contains(string(st), ") Z ") {
			return
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s was not killed", what)
		}
	}
}
