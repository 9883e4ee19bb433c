package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/container"
)

// containerRun is how a job's steps run in its image.
type containerRun struct {
	rt     container.Runtime
	base   container.Step // every step's, but its name and argv
	dir    string         // the job's directory on the node
	inputs []string       // the inputs' paths below dir, mounted one by one
	vals   []string       // the values of base.Env, NAME=VALUE
	env    []string       // the runtime's own additions (rootless podman)
}

// startContainer readies the job's container for its steps: the runtime's
// command lines, the image (loaded from its archive if the node lacks it),
// the gateway's socket if the template needs it, and the reaper. It
// returns what to do when the steps are over, or nil and how the job
// ends.
func (a *agent) startContainer(ctx context.Context, spec *api.Spec, logs *shippers) (cleanup func(), _ outcome) {
	c, err := a.container(spec)
	if err != nil {
		return nil, outcome{err: err.Error()}
	}
	a.ctr = c
	if spec.Container.Archive != "" {
		if err := a.ensureImage(ctx, c, spec.Container.Archive, logs); err != nil {
			if errors.Is(err, errJobGone) {
				return nil, outcome{gone: true}
			}
			return nil, outcome{err: err.Error()}
		}
	}
	var undo []func()
	cleanup = func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if spec.Container.Gateway {
		stop, err := a.gatewayForContainer(c, spec.Container.Workdir)
		if err != nil {
			return nil, outcome{err: err.Error()}
		}
		undo = append(undo, stop)
	}
	var names []string
	for _, step := range []string{"verify", "prepare", "command", "collect"} {
		names = append(names, c.name(a.id, step))
	}
	stop, out := a.guardContainers(c, names)
	if stop == nil {
		cleanup()
		return nil, out
	}
	undo = append(undo, stop)
	return cleanup, outcome{}
}

// guardContainers readies the containers names of c: a reaper that makes
// sure of them when the agent is stopped, and the agent as the
// subreaper of their processes. It returns what to do when the steps are
// over, or nil and how the job ends.
func (a *agent) guardContainers(c *containerRun, names []string) (func(), outcome) {
	done := func() {}
	if c.rt.RemoveCommand(names...) != nil {
		r, err := startReaper(c.rt, names, c.runtimeEnv())
		if err != nil {
			return nil, outcome{err: err.Error()}
		}
		// After a stop (cancel, walltime) the reaper makes sure of the
		// containers even though the agent ends in order.
		done = func() {
			if a.stopped {
				r.release(os.Getpid())
			} else {
				r.done()
			}
		}
	}
	// After the reaper has started (it must not be re-parented to the
	// agent): the runtime's monitor (podman's conmon) leaves its parent to
	// run on its own; as a subreaper the agent becomes its parent instead,
	// so the container's processes stay in the job's process tree, where
	// an engine's suspend (SIGSTOP to the tree) and kill reach them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		a.log.Warn("cannot become a subreaper: suspending this job will not pause its container", "err", err)
	}
	return done, outcome{}
}

// container prepares the job's container: the job's directory at the
// template's workdir, each input read-only at its own path below it, the
// parameters and the job's id and workdir as its environment, the job's
// cores and memory as its limits.
func (a *agent) container(spec *api.Spec) (*containerRun, error) {
	if spec.Container == nil {
		return nil, fmt.Errorf("the template runs in image %s, but its environment has no container runtime", spec.Image)
	}
	kind, err := container.ParseKind(spec.Container.Runtime)
	if err != nil || kind == container.Host {
		return nil, fmt.Errorf("the template runs in image %s, but its environment has no container runtime", spec.Image)
	}
	wd := spec.Container.Workdir
	dir, err := filepath.Abs(a.dir)
	if err != nil {
		return nil, err
	}
	c := &containerRun{rt: container.Runtime{Kind: kind, Flags: spec.Container.Flags}, dir: dir}
	c.base = container.Step{
		Image:   spec.Image,
		WorkDir: wd,
		Mounts:  []container.Mount{{Source: dir, Target: wd}},
		Network: spec.Container.Network,
		Cores:   spec.Resources.CoresPerNode, MemoryMB: spec.Resources.MemoryMB,
		// Rootless podman maps the container's root to the job's account,
		// so what a step writes in its mounts is the account's. Not
		// keep-id: with the image in a store made by root, podman cannot
		// open the image's /etc/passwd to add the account to it.
	}
	rootless := kind == container.Podman && os.Geteuid() != 0
	for _, in := range spec.Inputs {
		if safeRel(in.Path) != nil {
			continue // fetchInputs refused it already
		}
		c.base.Mounts = append(c.base.Mounts, container.Mount{Source: filepath.Join(dir, in.Path), Target: path.Join(wd, in.Path), ReadOnly: true})
		c.inputs = append(c.inputs, in.Path)
	}
	env := map[string]string{"HPCGATE_JOB_ID": a.id, "HPCGATE_WORKDIR": wd}
	for k, v := range spec.Env {
		env[k] = v
	}
	for k := range env {
		c.base.Env = append(c.base.Env, k)
	}
	sort.Strings(c.base.Env)
	for _, k := range c.base.Env {
		c.vals = append(c.vals, k+"="+env[k])
	}
	if rootless {
		if c.env, err = a.rootless(spec.Container.ImageStore); err != nil {
			return nil, fmt.Errorf("cannot prepare rootless podman: %w", err)
		}
	}
	return c, nil
}

// rootless prepares what podman needs when the agent runs as a user's
// account: a runtime directory (podman under an engine classically fails
// on a /run/user/UID that only a login session makes) and, given the
// environment's shared image store, a storage configuration that adds it
// (kept in the runtime directory, out of every container's reach),
// so that the account uses the images without pulling or loading them.
// It returns the variables to give podman.
func (a *agent) rootless(store string) ([]string, error) {
	uid := os.Geteuid()
	var env []string
	// storage is the storage configuration of store in run, written
	// whole if it is not there as it should be
	storage := func(run string) (string, error) {
		// In the runtime directory, which no container sees: in the
		// job's directory a step could rewrite it for the next step's
		// podman (a mount_program runs on the node). One file a store,
		// shared by the account's jobs, written whole.
		text := "[storage]\ndriver = \"overlay\"\n[storage.options]\nadditionalimagestores = [\"" + store + "\"]\n"
		sum := sha256.Sum256([]byte(text))
		conf := filepath.Join(run, "hpcgate-storage-"+hex.EncodeToString(sum[:8])+".conf")
		if b, err := os.ReadFile(conf); err != nil || string(b) != text {
			if err := writeFileAtomic(conf, []byte(text)); err != nil {
				return "", err
			}
		}
		return conf, nil
	}
	run := os.Getenv("XDG_RUNTIME_DIR")
	if !ownDir(run, uid) {
		run = filepath.Join("/run/user", strconv.Itoa(uid))
		if !ownDir(run, uid) {
			// /tmp itself: not $TMPDIR, which an engine may make per job
			// (Grid Engine does, and removes it when the job ends: a
			// reaper's podman would lose its records there)
			run = filepath.Join("/tmp", "hpcgate-run-"+strconv.Itoa(uid))
			if err := os.Mkdir(run, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, err
			}
			if !ownDir(run, uid) {
				return nil, fmt.Errorf("the runtime directory %s is not this account's own (mode 0700)", run)
			}
			// podman is reset as the job's podman will run: with the
			// runtime directory and the storage configuration
			reset := func() {
				resetEnv := []string{"XDG_RUNTIME_DIR=" + run}
				if store != "" {
					conf, err := storage(run)
					if err != nil {
						a.log.Warn("cannot reset rootless podman after a reboot", "err", err)
						return
					}
					resetEnv = append(resetEnv, "CONTAINERS_STORAGE_CONF="+conf)
				}
				a.resetPodman(resetEnv)
			}
			if err := freshSinceBoot(run, reset); err != nil {
				return nil, err
			}
		}
		env = append(env, "XDG_RUNTIME_DIR="+run)
	}
	if store != "" {
		conf, err := storage(run)
		if err != nil {
			return nil, err
		}
		env = append(env, "CONTAINERS_STORAGE_CONF="+conf)
	}
	return env, nil
}

// resetPodman runs "podman system migrate" with the environment env (the
// runtime directory run, the storage configuration) when run is new in
// this boot: podman's database may name a temporary
// directory other than run (one of a podman run without the agent's
// XDG_RUNTIME_DIR), whose records emptying run does not reach, and
// migrate stops what those records say runs and the pause process. It
// stops what does run too, so it runs only while no podman process of
// the account's is on this node (its monitor, pause process or podman
// itself: another job's, or the user's own under a login session). A
// failure is logged: the job's own podman then says what is wrong.
func (a *agent) resetPodman(env []string) {
	if pid := podmanRunning(os.Getuid()); pid > 0 {
		a.log.Info("rootless podman not reset: the account runs podman here", "pid", pid)
		return
	}
	argv := container.Runtime{Kind: container.Podman}.ResetCommand()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		a.log.Warn("cannot reset rootless podman after a reboot", "err", err, "output", string(bytes.TrimSpace(out)))
	}
}

// podmanRunning returns the pid of a live process of uid's that is
// podman, its container monitor (conmon) or its pause process
// (catatonit), but this one; 0 if there is none. A zombie is not live:
// the processes a reboot (or a kill of all of the account's) ended may
// wait a while to be reaped.
func podmanRunning(uid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || int(st.Uid) != uid {
			continue
		}
		// /proc/PID/stat: "PID (COMM) STATE ...", COMM may hold ")"
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open || end+2 >= len(stat) || stat[end+2] == 'Z' || stat[end+2] == 'X' {
			continue
		}
		switch string(stat[open+1 : end]) {
		case "podman", "conmon", "catatonit", "rootlessport":
			return pid
		}
	}
	return 0
}

// bootIDFile names the boot a runtime directory of ours was made in.
const bootIDFile = "hpcgate-boot-id"

// freshSinceBoot empties run, a runtime directory the agent made under
// the temporary directory, if it was made before the machine last booted.
// A real runtime directory lives in memory and is gone after a reboot;
// one on disk keeps podman's records of containers that ran (its "alive"
// file tells podman the machine has not rebooted since), and rootless
// podman then fails for good, trying to join the user namespace of
// containers whose processes are gone ("invalid internal status"). reset
// runs too, under the same lock, before run is marked for this boot.
func freshSinceBoot(run string, reset func()) error {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return nil // not Linux's procfs: nothing to compare
	}
	mark := filepath.Join(run, bootIDFile)
	if b, err := os.ReadFile(mark); err == nil && string(b) == string(boot) {
		return nil
	}
	lock, err := os.OpenFile(filepath.Join(run, "hpcgate.lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	b, err := os.ReadFile(mark)
	if err == nil && string(b) == string(boot) {
		return nil // another job of the account's has just emptied it
	}
	ents, err := os.ReadDir(run)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.Name() != "hpcgate.lock" {
			// best effort: what a container's user made may not be ours
			// to remove, and podman's state is in what is
			os.RemoveAll(filepath.Join(run, e.Name()))
		}
	}
	if reset != nil {
		reset()
	}
	return writeFileAtomic(mark, boot)
}

// writeFileAtomic writes name (mode 0600) through a temporary file, so
// that a reader sees the old or the new content, never part of it.
func writeFileAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}

// ownDir tells whether dir is a directory of uid's, mode 0700.
func ownDir(dir string, uid int) bool {
	if dir == "" {
		return false
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == uid
}

// command returns how to run step name with argv in the container: the
// runtime's argv and environment, and the commands that stop and remove
// the container (nil where signals do).
func (c *containerRun) command(jobID, name string, argv []string, grace time.Duration) (cmd, env, stop []string, remove func(), err error) {
	// An earlier step may have put a link where an input was (or above
	// it): the runtime would follow it and mount what it names.
	for _, in := range c.inputs {
		if err := noLinkBelow(c.dir, in); err != nil {
			return nil, nil, nil, nil, fmt.Errorf("input %s: %w", in, err)
		}
	}
	s := c.base
	s.Name = c.name(jobID, name)
	s.Argv = argv
	cmd, procEnv, err := c.rt.Command(s, c.vals)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	env = append(c.runtimeEnv(), procEnv...)
	return cmd, env, c.rt.StopCommand(s.Name, grace), func() { removeContainers(c.rt, []string{s.Name}, env) }, nil
}

// runtimeEnv is the runtime's environment: the agent's own (PATH, HOME,
// XDG_RUNTIME_DIR, CONTAINERS_CONF) and what rootless podman needs; a
// step gets only what its Env names.
func (c *containerRun) runtimeEnv() []string {
	return append(os.Environ(), c.env...)
}

// add gives every step the variable name=value.
func (c *containerRun) add(name, value string) {
	c.base.Env = append(c.base.Env, name)
	c.vals = append(c.vals, name+"="+value)
}

// mountOf mounts the file at p read-only at target.
func mountOf(p, target string) container.Mount {
	return container.Mount{Source: p, Target: target, ReadOnly: true}
}

// name is the container of step name of job jobID.
func (c *containerRun) name(jobID, step string) string { return "hpcgate-" + jobID + "-" + step }

// quiet runs argv (if any) with env and ignores how it went: stopping or
// removing a container that is already gone is no error.
func quiet(argv, env []string) {
	if len(argv) == 0 {
		return
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Run()
}
