package agent

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hpcgate/hpcgate/internal/proctree"
)

// Grid Engine suspends a job (qmod -sj, a suspended queue) by stopping the
// job's process group, and kills it (qdel, h_rt) by killing that group;
// but the agent is alone in its group: every step runs in a group of its
// own, and a container's processes are below the runtime's monitor, in
// sessions of their own. Jobs are therefore submitted with qsub -notify,
// and the agent passes the engine's notices on to everything below it:
//
//   - SIGUSR1 (a stop is coming): it stops every process below it at once,
//     and a step that would start meanwhile starts stopped;
//   - SIGCONT (the job is resumed): it continues them;
//   - SIGUSR2 (a kill is coming): it stops the job's steps as a cancel
//     does, the container's through its runtime, and reports the job
//     failed with the reason, before the engine kills.
//
// The queue's notify time is how long Grid Engine waits between the notice
// and its own signal; the agent does not depend on it.

// forwardWait is how long a launcher is given to pass a SIGTSTP on to
// the job's processes on other nodes before it is stopped itself.
const forwardWait = 300 * time.Millisecond

// freezer stops and continues the processes below the agent.
type freezer struct {
	mu     sync.Mutex
	frozen bool
}

// freeze stops every process below the agent. The tree is read until it
// holds no process not yet stopped (one may fork while it is read).
// Launchers whose processes run on other nodes are first told with
// SIGTSTP: Open MPI's mpirun passes it on to them as SIGSTOP (with
// orte_forward_job_control, which the agent sets for the job: see
// allocation.environ), and it stops any other process as SIGSTOP would.
func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
	if below := proctree.Descendants(os.Getpid())[1:]; len(below) > 0 {
		for _, p := range below {
			syscall.Kill(p, syscall.SIGTSTP)
		}
		time.Sleep(forwardWait)
	}
	seen := map[int]bool{}
	for round := 0; round < 10; round++ {
		fresh := false
		for _, p := range proctree.Descendants(os.Getpid())[1:] {
			if !seen[p] {
				seen[p] = true
				fresh = true
				syscall.Kill(p, syscall.SIGSTOP)
			}
		}
		if !fresh {
			return
		}
	}
}

// thaw continues every process below the agent; it tells whether the
// agent had stopped them.
func (f *freezer) thaw() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	was := f.frozen
	f.frozen = false
	if was {
		for _, p := range proctree.Descendants(os.Getpid())[1:] {
			syscall.Kill(p, syscall.SIGCONT)
		}
	}
	return was
}

// start starts cmd, stopped if the job is suspended (it runs when the
// job is resumed).
func (f *freezer) start(cmd *exec.Cmd) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	if f.frozen {
		syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP)
	}
	return nil
}

// killNotice is the engine's notice of a kill: it stops the steps (the
// function armed), and the agent then reports the job failed, saying so.
type killNotice struct {
	mu   sync.Mutex
	stop context.CancelFunc
	got  bool
}

// arm sets what stops the steps; a notice already received stops them at
// once.
func (k *killNotice) arm(stop context.CancelFunc) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stop = stop
	if k.got {
		stop()
	}
}

func (k *killNotice) notice() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.got = true
	if k.stop != nil {
		k.stop()
	}
}

func (k *killNotice) noticed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.got
}

// passNotices passes Grid Engine's notices on (see above) until the
// function it returns is called.
func (a *agent) passNotices() (stop func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGCONT)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case s := <-ch:
				switch s {
				case syscall.SIGUSR1:
					a.log.Info("the engine suspends the job: stopping its processes")
					a.fr.freeze()
				case syscall.SIGCONT:
					if a.fr.thaw() {
						a.log.Info("the engine resumed the job: its processes continue")
					}
				case syscall.SIGUSR2:
					a.log.Info("the engine is about to kill the job: stopping its steps")
					a.fr.thaw() // a stopped process cannot end
					a.kill.notice()
				}
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
		a.fr.thaw()
	}
}
