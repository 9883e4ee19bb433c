package localsched

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/sched"
)

// Sandbox runs a task that runs as the gateway's own account in a
// bubblewrap (bwrap) sandbox in which the gateway's data directory does
// not exist: only the task's working directory (read-write), its secrets'
// files, the agent binary and the system's read-only directories are
// there, with /tmp private. The network is shared, so the job reaches the
// gateway.
type Sandbox struct {
	// Bwrap is the path of bwrap.
	Bwrap string
}

// bwrapBase are bwrap's options for every task: its own PID, IPC and
// session, ended with the executor's supervisor, and no capabilities.
// As root bwrap keeps them all unless told: a job then unmounted the
// masks over /etc's secrets (CAP_SYS_ADMIN) and opened the host's root
// by file handle (CAP_DAC_READ_SEARCH), reaching the data directory.
var bwrapBase = []string{"--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--cap-drop", "ALL"}

// FindSandbox finds bwrap and checks that it works here (as root it needs
// nothing; otherwise unprivileged user namespaces). It runs one short
// process.
func FindSandbox() (*Sandbox, error) {
	p, err := exec.LookPath("bwrap")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	args := append(append([]string{}, bwrapBase...), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--", "/bin/true")
	if out, err := exec.CommandContext(ctx, p, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bwrap does not work here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return &Sandbox{Bwrap: p}, nil
}

// etcSecrets are files and directories of /etc a job has no business
// reading; they are hidden in the sandbox.
var etcSecrets = []string{
	"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
	"/etc/sudoers.d", "/etc/ssh", "/etc/munge", "/etc/ssl/private", "/etc/hpcgate",
}

// argv returns the command line that runs t's command in the sandbox.
func (s *Sandbox) argv(t sched.Task) []string {
	a := append([]string{s.Bwrap}, bwrapBase...)
	for _, d := range []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"} {
		fi, err := os.Lstat(d)
		switch {
		case err != nil:
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(d); err == nil {
				a = append(a, "--symlink", target, d)
			}
		case fi.IsDir():
			a = append(a, "--ro-bind", d, d)
		}
	}
	for _, p := range etcSecrets {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
		case fi.IsDir():
			a = append(a, "--tmpfs", p)
		default:
			a = append(a, "--ro-bind", "/dev/null", p)
		}
	}
	a = append(a, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp", "--tmpfs", "/run")
	a = append(a, "--bind", t.WorkDir, t.WorkDir)
	var secrets []string
	for k := range t.Secret {
		secrets = append(secrets, t.SecretPath(k))
	}
	sort.Strings(secrets)
	for _, p := range secrets {
		a = append(a, "--ro-bind", p, p)
	}
	if exe := t.Command[0]; filepath.IsAbs(exe) {
		a = append(a, "--ro-bind-try", exe, exe)
	}
	a = append(a, "--setenv", "HOME", t.WorkDir, "--chdir", t.WorkDir, "--")
	return append(a, t.Command...)
}
