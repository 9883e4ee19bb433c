package sched

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// CommandError is an engine command that failed. Stderr is what the command
// said (its standard error, or its standard output when that was empty,
// bounded): it is for logs, never a message for a client. Err is the cause
// (an *exec.ExitError, a start failure, or the context's error when the
// command was stopped).
type CommandError struct {
	Cmd      string   // the command's name, as "qsub"
	Args     []string // its arguments (never a secret: see Commander)
	ExitCode int      // -1 when it did not exit by itself
	Stderr   string   // what it said, lines joined with "; "
	Err      error
}

// Error includes the command, its arguments and what it said: for logs.
func (e *CommandError) Error() string {
	msg := e.Stderr
	if msg == "" {
		msg = "no message"
	}
	args := strings.Join(e.Args, " ")
	if len(args) > maxArgsShown {
		// a poll of thousands of jobs names them all: the log keeps the start
		args = fmt.Sprintf("%s... (%d bytes of arguments)", args[:maxArgsShown], len(args))
	}
	return fmt.Sprintf("%s %s: %v: %s", e.Cmd, args, e.Err, msg)
}

// maxArgsShown bounds the arguments a CommandError shows.
const maxArgsShown = 512

// Unwrap returns the cause, so that errors.Is(err, context.DeadlineExceeded)
// holds for a command that timed out.
func (e *CommandError) Unwrap() error { return e.Err }

// Said reports whether the command's message contains one of the phrases.
func (e *CommandError) Said(phrases ...string) bool {
	for _, p := range phrases {
		if strings.Contains(e.Stderr, p) {
			return true
		}
	}
	return false
}

// CommandSaid reports whether err is (or wraps) a *CommandError whose
// message contains one of the phrases. It is how an engine tells the
// failures it branches on (no such job, refused) from the others.
func CommandSaid(err error, phrases ...string) bool {
	var ce *CommandError
	return errors.As(err, &ce) && ce.Said(phrases...)
}

// maxStderr bounds what a CommandError keeps of a command's message.
const maxStderr = 8 << 10

// Commander runs an engine's command-line clients. The zero value runs
// them from PATH with this process's environment, a two-minute timeout and
// no log.
//
// Each command runs in a process group of its own, killed as a whole when
// ctx ends or the timeout passes; its pipes are closed WaitDelay later at
// the latest. Its arguments are logged (at debug level) and kept in errors:
// they must never carry a secret.
type Commander struct {
	// Bin is the directory of the commands ("": found on PATH).
	Bin string
	// Env is the commands' environment (nil: os.Environ()).
	Env []string
	// Timeout bounds each command (default 2m).
	Timeout time.Duration
	// Logger receives a debug line a command (nil: none).
	Logger *slog.Logger
}

// Runuser is the command that runs another as an account (util-linux).
const Runuser = "/usr/sbin/runuser"

// RunAs is Run as the account acct (nil: as this process): the command
// runs through runuser -u ACCOUNT, with the same environment. Only root may
// run commands as another account.
func (c *Commander) RunAs(ctx context.Context, acct *Account, stdin []byte, extraEnv []string, name string, args ...string) ([]byte, error) {
	if acct == nil {
		return c.Run(ctx, stdin, extraEnv, name, args...)
	}
	path := name
	if c.Bin != "" {
		path = filepath.Join(c.Bin, name)
	}
	as := Commander{Env: c.Env, Timeout: c.Timeout, Logger: c.Logger}
	out, err := as.Run(ctx, stdin, extraEnv, Runuser, append([]string{"-u", acct.Name, "--", path}, args...)...)
	var ce *CommandError
	if errors.As(err, &ce) {
		ce.Cmd, ce.Args = name+" (as "+acct.Name+")", args
	}
	return out, err
}

// Run runs name with args, stdin (nil: none) and extraEnv after the
// Commander's environment, and returns its standard output. The error of a
// command that fails is a *CommandError.
func (c *Commander) Run(ctx context.Context, stdin []byte, extraEnv []string, name string, args ...string) ([]byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := name
	if c.Bin != "" {
		path = filepath.Join(c.Bin, name)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(env[:len(env):len(env)], extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout bytes.Buffer
	stderr := &boundedBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	start := time.Now()
	err := cmd.Run()
	if c.Logger != nil {
		c.Logger.Debug("engine command", "cmd", name, "args", args, "took", time.Since(start), "err", err)
	}
	if err == nil {
		return stdout.Bytes(), nil
	}
	msg := stderr.b.Bytes()
	if len(bytes.TrimSpace(msg)) == 0 {
		msg = stdout.Bytes()[:min(stdout.Len(), maxStderr)]
	}
	ce := &CommandError{Cmd: name, Args: args, ExitCode: -1, Stderr: joinLines(string(msg)), Err: err}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		ce.ExitCode = ee.ExitCode()
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		ce.ExitCode = -1
		ce.Err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return stdout.Bytes(), ce
}

// joinLines joins a message's non-blank lines with "; ".
func joinLines(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// boundedBuffer keeps the first max bytes written to it and drops the rest.
type boundedBuffer struct {
	b   bytes.Buffer
	max int
}

func (w *boundedBuffer) Write(p []byte) (int, error) {
	if room := w.max - w.b.Len(); room > 0 {
		w.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
