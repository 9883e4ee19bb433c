package agent

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// A container outlives its runtime's process: the runtime's monitor
// (podman's conmon) leaves the job's process tree, so when an engine kills
// every process of a canceled job (Slurm's KillWait, Grid Engine's qdel)
// the agent may die before it has stopped the container, and the
// container would run on. The reaper is the agent's insurance: a process
// in a session of its own, reparented to init (the engines' kill does not
// reach it), that holds the read end of a pipe whose write end only the
// agent has. When the agent ends in order it writes "done" and the reaper
// leaves; when the pipe closes without it (the agent was killed), the
// reaper removes the job's containers.

// reaperFlag starts "hpcgate agent" as a reaper; reaperForkFlag as the
// short-lived process that starts it and exits, so that it is reparented.
const (
	reaperFlag     = "--reap"
	reaperForkFlag = "--reap-fork"
)

// reaper is the agent's end of a reaper's pipe.
type reaper struct{ w *os.File }

// done tells the reaper that the agent ended in order.
func (r *reaper) done() {
	r.w.WriteString("done\n")
	r.w.Close()
}

// startReaper starts a reaper that runs remove unless the agent calls
// done first.
// env is the runtime's environment (rootless podman finds its state by
// it).
func startReaper(remove, env []string) (*reaper, error) {
	self := selfPath()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(self, append([]string{"agent", reaperForkFlag, "--"}, remove...)...)
	cmd.Stdin = r
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil { // returns once the reaper has started
		w.Close()
		return nil, fmt.Errorf("start the container reaper: %w", err)
	}
	return &reaper{w: w}, nil
}

// IsReaper tells whether args (those of "hpcgate agent") start a reaper.
func IsReaper(args []string) bool {
	return len(args) > 1 && (args[0] == reaperFlag || args[0] == reaperForkFlag) && args[1] == "--"
}

// Reap is the reaper (see startReaper): args are IsReaper's.
func Reap(args []string) error {
	remove := args[2:]
	if args[0] == reaperForkFlag {
		cmd := exec.Command(selfPath(), append([]string{"agent", reaperFlag, "--"}, remove...)...)
		cmd.Stdin = os.Stdin
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		return cmd.Start() // and exit: the reaper's parent becomes init
	}
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if line == "done\n" || len(remove) == 0 {
		return nil
	}
	return exec.Command(remove[0], remove[1:]...).Run()
}
