// Package container builds the command lines that run a job's steps (its
// adapters and its command) in the template's image, through the container
// runtime of the job's environment: podman, apptainer or docker, or the
// host itself when the template has no image.
//
// It only builds argv lists: the agent runs them. No value is ever pasted
// into a shell script, and no environment value appears on a runtime's
// command line (where ps would show it to every user of the node): the
// runtime is given the names, and takes the values from its own
// environment.
package container

import (
	"debug/elf"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind is a container runtime.
type Kind string

// The runtimes. Host runs the command on the node itself (no image).
const (
	Host      Kind = "host"
	Podman    Kind = "podman"
	Apptainer Kind = "apptainer"
	Docker    Kind = "docker"
)

// Kinds lists every runtime, for messages.
var Kinds = []Kind{Host, Podman, Apptainer, Docker}

// ParseKind reads a runtime's name; "" is Host.
func ParseKind(s string) (Kind, error) {
	if s == "" {
		return Host, nil
	}
	for _, k := range Kinds {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("container runtime %q: want one of host, podman, apptainer, docker", s)
}

// Runtime is a runtime as an environment configures it.
type Runtime struct {
	Kind Kind
	// Binary is the runtime's program (default: its name, looked up in
	// PATH when the step runs).
	Binary string
	// Flags are an operator's extra options, placed after hpcgate's own and
	// before the image (e.g. --runtime runc, --security-opt ...).
	Flags []string
}

// Mount makes Source on the node visible at Target in the container.
type Mount struct {
	Source, Target string
	ReadOnly       bool
}

// Step is one process run in a container: an adapter or the command.
type Step struct {
	// Name names the container (podman, docker): unique per step, so that
	// it can be stopped by name; the container is removed when it ends.
	Name    string
	Image   string
	Argv    []string
	WorkDir string // the step's working directory, in the container ("": the image's)
	Mounts  []Mount
	// Env names the variables the step gets; their values come from the
	// runtime's own environment (see Command).
	Env []string
	// Network: the step may use the node's network; without it, it has
	// none at all (apptainer: see Limits).
	Network bool
	// Cores and MemoryMB limit the container (0: no limit).
	Cores    int
	MemoryMB int64
	// Stdin: the step reads its standard input (podman and docker pass
	// it only when asked).
	Stdin bool
	// EnvFile (podman, docker) is a file of NAME=VALUE lines the step gets
	// besides Env: for variables whose names a user chose, which must not
	// reach the runtime's own environment (LD_PRELOAD, CONTAINERS_CONF).
	EnvFile string
}

// Check reports what makes s unusable: an empty image or command, a
// relative or unclean path, or a name a runtime would refuse.
func (s *Step) Check() error {
	if s.Image == "" || strings.HasPrefix(s.Image, "-") {
		return fmt.Errorf("image %q: not an image name", s.Image)
	}
	if len(s.Argv) == 0 {
		return fmt.Errorf("empty command")
	}
	if s.EnvFile != "" && !absClean(s.EnvFile) {
		return fmt.Errorf("environment file %q: want an absolute, clean path", s.EnvFile)
	}
	if s.WorkDir != "" && !absClean(s.WorkDir) {
		return fmt.Errorf("working directory %q: want an absolute, clean path", s.WorkDir)
	}
	for _, m := range s.Mounts {
		if !absClean(m.Source) || !absClean(m.Target) || strings.ContainsAny(m.Source+m.Target, ":,") {
			return fmt.Errorf("mount %s on %s: want absolute, clean paths without ':' or ','", m.Source, m.Target)
		}
	}
	for _, e := range s.Env {
		// a name only: podman takes NAME* as a pattern of the node's variables
		if !envNameRE.MatchString(e) {
			return fmt.Errorf("environment name %q", e)
		}
	}
	for _, r := range s.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("container name %q", s.Name)
		}
	}
	return nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func absClean(p string) bool {
	return strings.HasPrefix(p, "/") && path.Clean(p) == p && !strings.ContainsRune(p, 0)
}

func (r Runtime) binary() string {
	if r.Binary != "" {
		return r.Binary
	}
	return string(r.Kind)
}

// Command returns the argv that runs s and what to add to the runtime's
// environment: env holds the values of s.Env as NAME=VALUE. For Host, it is
// s.Argv itself (its directory and environment are the caller's to set).
func (r Runtime) Command(s Step, env []string) (argv, procEnv []string, err error) {
	if r.Kind == Host || r.Kind == "" {
		if len(s.Argv) == 0 {
			return nil, nil, fmt.Errorf("empty command")
		}
		return s.Argv, env, nil
	}
	if err := s.Check(); err != nil {
		return nil, nil, err
	}
	switch r.Kind {
	case Podman, Docker:
		argv = []string{r.binary(), "run", "--rm", "--name", s.Name}
		if r.Kind == Podman {
			// a container of the same name left by an earlier agent of
			// this job (killed with its node) goes
			argv = append(argv, "--replace")
		}
		if s.WorkDir != "" {
			argv = append(argv, "--workdir", s.WorkDir)
		}
		if s.Stdin {
			argv = append(argv, "--interactive")
		}
		if s.Network {
			argv = append(argv, "--network", "host")
		} else {
			argv = append(argv, "--network", "none")
		}
		// nothing in the container gains privileges (setuid binaries,
		// file capabilities): with a rootful runtime its root is the node's
		argv = append(argv, "--security-opt", "no-new-privileges")
		if s.Cores > 0 {
			argv = append(argv, "--cpus", strconv.Itoa(s.Cores))
		}
		if s.MemoryMB > 0 {
			argv = append(argv, "--memory", strconv.FormatInt(s.MemoryMB, 10)+"m")
		}
		for _, m := range s.Mounts {
			// podman: no setuid binary or device node planted in a
			// mount works in the container (docker's -v has no such options)
			opts := []string{}
			if m.ReadOnly {
				opts = append(opts, "ro")
			}
			if r.Kind == Podman {
				opts = append(opts, "nosuid", "nodev")
			}
			v := m.Source + ":" + m.Target
			if len(opts) > 0 {
				v += ":" + strings.Join(opts, ",")
			}
			argv = append(argv, "--volume", v)
		}
		for _, e := range s.Env {
			argv = append(argv, "--env", e) // the value comes from the runtime's environment
		}
		if s.EnvFile != "" {
			argv = append(argv, "--env-file", s.EnvFile)
		}
		argv = append(argv, r.Flags...)
		argv = append(argv, "--", s.Image)
		argv = append(argv, s.Argv...)
		return argv, env, nil
	case Apptainer:
		if s.EnvFile != "" {
			return nil, nil, fmt.Errorf("apptainer takes a step's variables as APPTAINERENV_NAME, not from a file")
		}
		// --containall: no home, /tmp or environment of the node's;
		// --no-mount home,cwd: nothing but the mounts given. Values reach
		// the container as APPTAINERENV_NAME, which --cleanenv keeps.
		argv = []string{r.binary(), "exec", "--containall", "--cleanenv", "--no-mount", "home,cwd"}
		if s.WorkDir != "" {
			argv = append(argv, "--pwd", s.WorkDir)
		}
		if !s.Network {
			argv = append(argv, "--net", "--network", "none")
		}
		if s.Cores > 0 {
			argv = append(argv, "--cpus", strconv.Itoa(s.Cores))
		}
		if s.MemoryMB > 0 {
			argv = append(argv, "--memory", strconv.FormatInt(s.MemoryMB, 10)+"M")
		}
		for _, m := range s.Mounts {
			v := m.Source + ":" + m.Target
			if m.ReadOnly {
				v += ":ro"
			}
			argv = append(argv, "--bind", v)
		}
		argv = append(argv, r.Flags...)
		argv = append(argv, s.Image)
		argv = append(argv, s.Argv...)
		for _, kv := range env {
			procEnv = append(procEnv, "APPTAINERENV_"+kv)
		}
		return argv, procEnv, nil
	}
	return nil, nil, fmt.Errorf("container runtime %q: want one of host, podman, apptainer, docker", r.Kind)
}

// StopCommand returns the command that stops the container of a running
// step, giving it grace before it is killed, or nil where signals to the
// runtime's process reach the step (apptainer, host).
func (r Runtime) StopCommand(name string, grace time.Duration) []string {
	switch r.Kind {
	case Podman, Docker:
		return []string{r.binary(), "stop", "--time", strconv.Itoa(int(grace.Round(time.Second) / time.Second)), "--", name}
	}
	return nil
}

// PidCommand returns the command that prints the node's pid of a
// container's first process, or nil. Killing that process ends every
// process of the container (its pid namespace): the way to stop a
// container whose runtime lost track of it (a "podman stop" killed half
// way leaves it "stopping", and then neither "podman kill" nor "podman rm
// --force" stops its processes; podman 4.3).
func (r Runtime) PidCommand(name string) []string {
	switch r.Kind {
	case Podman, Docker:
		return []string{r.binary(), "inspect", "--format", "{{.State.Pid}}", "--", name}
	}
	return nil
}

// ResetCommand returns the command that makes rootless podman forget what
// its records say runs (containers and its pause process) when a reboot
// ended it, or nil where there is no such state.
func (r Runtime) ResetCommand() []string {
	if r.Kind == Podman {
		return []string{r.binary(), "system", "migrate"}
	}
	return nil
}

// RemoveCommand returns the command that removes the named containers of
// steps if they are still there, or nil.
func (r Runtime) RemoveCommand(names ...string) []string {
	switch r.Kind {
	case Podman:
		return append([]string{r.binary(), "rm", "--force", "--ignore", "--time", "0", "--"}, names...)
	case Docker:
		return append([]string{r.binary(), "rm", "--force", "--"}, names...)
	}
	return nil
}

// ExistsCommand returns the command that succeeds when the runtime has
// image, or nil where images are files (apptainer) or there are none.
func (r Runtime) ExistsCommand(image string) []string {
	switch r.Kind {
	case Podman:
		return []string{r.binary(), "image", "exists", "--", image}
	case Docker:
		return []string{r.binary(), "image", "inspect", "--format", "{{.Id}}", "--", image}
	}
	return nil
}

// LoadCommand returns the command that loads an image archive (OCI or
// Docker archive) into the runtime, or nil where images are files.
func (r Runtime) LoadCommand(file string) []string {
	switch r.Kind {
	case Podman, Docker:
		return []string{r.binary(), "load", "--input", file}
	}
	return nil
}

// RuntimeFailed tells whether exit code code of a step's runtime means
// the runtime itself failed (image missing, permission denied, no such
// program in the image) rather than the step's command, and says what in
// the user's terms.
func (r Runtime) RuntimeFailed(code int) (string, bool) {
	switch r.Kind {
	case Podman, Docker:
		switch code {
		case 125:
			return string(r.Kind) + " could not start the container", true
		case 126:
			return "the command in the image cannot be run", true
		case 127:
			return "the command is not in the image", true
		}
	case Apptainer:
		if code == 255 {
			return "apptainer could not start the container", true
		}
	}
	return "", false
}

// Limits lists what r cannot enforce on its own (for the docs and for
// the agent's log), given whether it runs rootless.
func (r Runtime) Limits(rootless bool) []string {
	switch r.Kind {
	case Host:
		return []string{"no image: the command runs on the node (in the local executor's sandbox where configured)"}
	case Podman:
		if rootless {
			return []string{"memory and CPU limits and pausing need cgroup v2 with delegation: on cgroup v1 nodes a rootless container has none (the agent still enforces walltime and cancel)"}
		}
	case Apptainer:
		return []string{"no network (--net --network none) needs root or a configured fakeroot", "--cpus and --memory need cgroups v2 (apptainer 3.10+)", "suspend by signals only"}
	}
	return nil
}

// StaticBinary tells whether the ELF file at p needs no dynamic loader,
// so that it runs in any image (the hpcgate client the agent mounts).
func StaticBinary(p string) bool {
	f, err := elf.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
