package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/hpcgate/hpcgate/internal/container"
)

// A container outlives its runtime's process: the runtime's monitor
// (podman's conmon) leaves the job's process tree, so when an engine kills
// every process of a canceled job (Slurm's KillWait, Grid Engine's qdel
// and h_rt) the agent may die before it has stopped the container, and the
// container would run on. The reaper is the agent's insurance: a process
// in a session of its own, reparented to init (the engines' kill does not
// reach it), that holds the read end of a pipe whose write end only the
// agent has. When the agent ends in order it writes "done" and the reaper
// leaves; when the pipe closes without it (the agent was killed), the
// reaper removes the job's containers (removeContainers).

// reaperFlag starts "hpcgate agent" as a reaper; reaperForkFlag as the
// short-lived process that starts it and exits, so that it is reparented.
// Their arguments: FLAG RUNTIME -- CONTAINER...
const (
	reaperFlag     = "--reap"
	reaperForkFlag = "--reap-fork"
)

// reaper is the agent's end of a reaper's pipe.
type reaper struct{ w *os.File }

// done tells the reaper that the agent ended in order and its containers
// are gone; release lets it remove them (after a cancel or a walltime,
// when the runtime's own stop may not have finished them) and kill what
// is left of the job but the process agent, which goes on to upload
// outputs and report how the job ended.
func (r *reaper) done() {
	r.w.WriteString("done\n")
	r.w.Close()
}

func (r *reaper) release(agent int) {
	fmt.Fprintf(r.w, "release %d\n", agent)
	r.w.Close()
}

// startReaper starts a reaper that removes the named containers of rt
// unless the agent calls done first. env is the runtime's environment
// (rootless podman finds its state by it).
func startReaper(rt container.Runtime, names, env []string) (*reaper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(selfPath(), append([]string{"agent", reaperForkFlag, string(rt.Kind), "--"}, names...)...)
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
	return len(args) > 2 && (args[0] == reaperFlag || args[0] == reaperForkFlag) && args[2] == "--"
}

// Reap is the reaper (see startReaper): args are IsReaper's.
func Reap(args []string) error {
	if args[0] == reaperForkFlag {
		cmd := exec.Command(selfPath(), append([]string{"agent", reaperFlag}, args[1:]...)...)
		cmd.Stdin = os.Stdin
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		return cmd.Start() // and exit: the reaper's parent becomes init
	}
	kind, err := container.ParseKind(args[1])
	if err != nil {
		return err
	}
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if line == "done\n" {
		return nil
	}
	// Without a word the agent was killed; "release PID" spares it (the
	// agent has the job's id in its environment too).
	spare := -1
	if pid, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "release "); ok {
		spare, _ = strconv.Atoi(pid)
	}
	err = removeContainers(container.Runtime{Kind: kind}, args[3:], os.Environ())
	// What the runtime no longer knows of (a rootless container whose
	// monitor the engine killed with the job) is found by the job's id in
	// its environment, which every step's process has.
	if id := os.Getenv("HPCGATE_JOB_ID"); id != "" {
		killJobProcesses(id, spare)
	}
	return err
}

// killJobProcesses sends SIGKILL to every process this one may see whose
// environment says HPCGATE_JOB_ID=id, but itself and spare.
func killJobProcesses(id string, spare int) {
	want := []byte("HPCGATE_JOB_ID=" + id)
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() || pid == spare {
			continue
		}
		env, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				syscall.Kill(pid, syscall.SIGKILL)
				break
			}
		}
	}
}

// removeContainers ends the named containers' processes and removes the
// containers, whatever state their runtime thinks they are in: it kills
// each container's first process (which ends its pid namespace) before
// asking the runtime to remove it.
func removeContainers(rt container.Runtime, names, env []string) error {
	var errs []error
	for _, name := range names {
		argv := rt.PidCommand(name)
		if argv == nil {
			continue
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			continue // no such container
		}
		if pid, err := strconv.Atoi(string(bytes.TrimSpace(out))); err == nil && pid > 1 {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill container %s: %w", name, err))
			}
		}
	}
	if argv := rt.RemoveCommand(names...); argv != nil {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		errs = append(errs, cmd.Run())
	}
	return errors.Join(errs...)
}
