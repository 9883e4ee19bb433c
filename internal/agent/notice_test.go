package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/proctree"
)

// Grid Engine's notices reach the agent only: the agent stops every
// process below it on SIGUSR1 (a daemonized one included, as a
// container's are), continues them on SIGCONT, starts a step stopped
// while suspended, and stops its steps on SIGUSR2.
func TestPassesEngineNotices(t *testing.T) {
	a := &agent{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.kill.arm(cancel)
	stop := a.passNotices()
	defer stop()

	tree := exec.Command("sh", "-c", `setsid sh -c 'while :; do sleep 0.05; done' & while :; do sleep 0.05; done`)
	tree.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.fr.start(tree); err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range proctree.Descendants(os.Getpid())[1:] {
			syscall.Kill(p, syscall.SIGKILL)
		}
		tree.Wait()
	}()
	below := func() []int {
		for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
			if ps := proctree.Descendants(os.Getpid())[1:]; len(ps) >= 4 || time.Since(start) > 5*time.Second {
				return ps // sh, its sleep, the daemon and its sleep
			}
		}
	}
	// all: every process below is stopped (or, want false, none is)
	all := func(stopped bool) {
		t.Helper()
		for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
			ps, ok := below(), true
			for _, p := range ps {
				if s := proctree.State(p); s != 0 && s != 'Z' && (s == 'T') != stopped {
					ok = false
				}
			}
			if ok && len(ps) >= 3 {
				return
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("processes below the agent %v: want stopped=%v", ps, stopped)
			}
		}
	}
	all(false)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	all(true)

	// a step that starts while the job is suspended starts stopped
	late := exec.Command("sleep", "30")
	if err := a.fr.start(late); err != nil {
		t.Fatal(err)
	}
	defer func() { late.Process.Kill(); late.Wait() }()
	for start := time.Now(); proctree.State(late.Process.Pid) != 'T'; time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal("a step started while suspended runs")
		}
	}

	syscall.Kill(os.Getpid(), syscall.SIGCONT)
	all(false)
	if ctx.Err() != nil {
		t.Fatal("the job was stopped before the kill's notice")
	}
	syscall.Kill(os.Getpid(), syscall.SIGUSR2)
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGUSR2 did not stop the job's steps")
	}
	if !a.kill.noticed() {
		t.Fatal("the kill's notice is not remembered for the report")
	}
}
