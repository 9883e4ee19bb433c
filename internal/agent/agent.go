// Package agent runs inside every job, started by the job script. With its
// job's own token it fetches the spec, downloads the inputs, runs the
// template's adapters and command, streams stdout and stderr to the gateway
// while the command runs, uploads the outputs (also when the command
// failed) and reports the final state with exit code and resource usage.
//
// # Nothing lost
//
// The command's output is written to spool files in the working directory
// first and shipped from there, so a gateway that is away for a while loses
// nothing: every call is retried with back-off (Options.RetryFor), and log
// appends carry their offset, so a retried append is harmless.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// Options configure the agent. Zero fields take the defaults.
type Options struct {
	// WorkDir is the job's working directory (default: the current one).
	WorkDir string
	// FlushInterval is how often logs are shipped (default 100ms).
	FlushInterval time.Duration
	// RetryFor is how long a call is retried while the gateway is away
	// (default 10 minutes); FinishRetryFor, once the command has ended
	// (the outputs, the last log bytes and the end's report: default 6
	// hours, bounded in practice by the engine's limit): a gateway down
	// for maintenance longer than RetryFor lost the results of jobs that
	// had succeeded.
	RetryFor, FinishRetryFor time.Duration
	// KillGrace is the time between SIGTERM and SIGKILL (default 5s).
	KillGrace time.Duration
	// Stderr receives the agent's own messages (default os.Stderr).
	Logger *slog.Logger
	// KeepWorkDir leaves the working directory after the job.
	KeepWorkDir bool
	// EngineNotices: the engine warns the job before it stops or kills
	// it (Grid Engine's qsub -notify: SIGUSR1, SIGUSR2), and the agent
	// passes the warnings on to its steps (see notice.go).
	EngineNotices bool
	// TokenFile, if set, is the file the job's token came in (the
	// engine's HPCGATE_TOKEN_FILE): removed when the agent ends, so that
	// no token stays on disk after its job.
	TokenFile string
	// Remote is the HTTP client for inputs given by URL (default:
	// RemoteClient with the system's roots).
	Remote *http.Client
}

// errJobGone means the gateway no longer accepts the job's token: the job
// was canceled or deleted. The agent stops at once.
var errJobGone = errors.New("the gateway no longer accepts this job (canceled or deleted)")

type agent struct {
	c      *client.Client
	id     string
	opts   Options
	log    *slog.Logger
	dir    string
	spool  string
	ctr    *containerRun // the job's image, or nil: steps run on the host
	remote *http.Client  // fetches inputs given by URL
	fr     freezer       // stops the steps' processes on the engine's notice of a suspend
	kill   killNotice    // stops the steps on its notice of a kill
	// stopped: a step was stopped (cancel, walltime, the job gone); its
	// container is left to the reaper to make sure of (written by runCmd's
	// watcher before runCmd returns).
	stopped bool
	// finishing: the command has ended, and calls are retried for
	// FinishRetryFor.
	finishing atomic.Bool
}

// Run runs job id to its end. It returns an error only when it could not
// report the end to the gateway.
func Run(ctx context.Context, c *client.Client, id string, opts *Options) error {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 100 * time.Millisecond
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 10 * time.Minute
	}
	if o.FinishRetryFor <= 0 {
		o.FinishRetryFor = 6 * time.Hour
	}
	if o.KillGrace <= 0 {
		o.KillGrace = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.WorkDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return err
		}
		o.WorkDir = wd
	}
	if o.Remote == nil {
		hc, err := RemoteClient("", false)
		if err != nil {
			return err
		}
		o.Remote = hc
	}
	a := &agent{c: c, id: id, opts: o, log: o.Logger, dir: o.WorkDir, spool: filepath.Join(o.WorkDir, ".hpcgate"), remote: o.Remote}
	if o.TokenFile != "" {
		defer os.Remove(o.TokenFile)
	}
	if o.EngineNotices {
		defer a.passNotices()()
	}
	return a.run(ctx)
}

// retry calls fn until it succeeds, fails for good (a 4xx answer), or
// RetryFor has passed.
func (a *agent) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	patience := a.opts.RetryFor
	if a.finishing.Load() {
		patience = max(patience, a.opts.FinishRetryFor)
	}
	start := time.Now()
	deadline := start.Add(patience)
	delay := 100 * time.Millisecond
	for try := 1; ; try++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if errors.As(err, new(permanentError)) {
			return fmt.Errorf("%s: %w", what, err)
		}
		st := client.StatusOf(err)
		if st == 401 || st == 404 {
			return fmt.Errorf("%s: %w", what, errJobGone)
		}
		if st >= 400 && st < 500 && st != 408 && st != 429 {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: gave up after %v: %w", what, patience, err)
		}
		if try&(try-1) == 0 { // the 1st, 2nd, 4th, 8th...: an outage of hours is not thousands of lines
			a.log.Warn("gateway call failed; retrying", "call", what, "err", err, "in", delay, "tries", try)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, retryDelayCap(time.Since(start)))
	}
}

// retryDelayCap is the longest wait between tries after waiting for so
// long: 5 s for the first minute, then 30 s.
func retryDelayCap(waited time.Duration) time.Duration {
	if waited < time.Minute {
		return 5 * time.Second
	}
	return 30 * time.Second
}

func (a *agent) report(ctx context.Context, rep api.StateReport) error {
	return a.retry(ctx, "report "+rep.State, func(ctx context.Context) error {
		_, err := a.c.ReportState(ctx, a.id, rep)
		return err
	})
}

// outcome is how the job ended, before it is reported.
type outcome struct {
	exitCode *int
	usage    *api.Usage
	err      string // why it failed; "" for success
	gone     bool   // the gateway no longer accepts the job: stop, report nothing
	timedOut bool   // the step was stopped at its time limit
}

func (a *agent) run(ctx context.Context) error {
	var spec *api.Spec
	if err := a.retry(ctx, "fetch spec", func(ctx context.Context) error {
		var err error
		spec, err = a.c.Spec(ctx, a.id)
		return err
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(a.spool, 0o700); err != nil {
		return a.finish(ctx, outcome{err: "cannot create the working directory: " + err.Error()}, nil)
	}
	if err := a.report(ctx, api.StateReport{State: api.StateStarting, Reason: "the agent started on " + hostname()}); err != nil {
		return err
	}
	logs := newShippers(a, spec.LogOffsets)
	go logs.run(ctx)

	// The steps stop on a cancel (ctx) or on the engine's notice of a
	// kill, after which the agent still reports.
	steps, stop := context.WithCancel(ctx)
	defer stop()
	a.kill.arm(stop)
	start := time.Now()
	out := a.execute(steps, spec, logs)
	if a.kill.noticed() && ctx.Err() == nil && !out.gone {
		out.err = "Grid Engine ended the job: qdel, or one of its limits"
		if w := spec.Resources.WalltimeS; w > 0 && time.Since(start) >= time.Duration(w)*time.Second-5*time.Second {
			out.err = walltimeExceeded(time.Duration(w)*time.Second) + ": Grid Engine ended the job"
		}
		return a.finish(ctx, out, logs, spec)
	}
	if errors.Is(ctx.Err(), context.Canceled) || out.gone {
		logs.close(ctx)
		return errJobGone
	}
	return a.finish(ctx, out, logs, spec)
}

// execute runs the job's steps up to the end of the collect adapter.
func (a *agent) execute(ctx context.Context, spec *api.Spec, logs *shippers) outcome {
	if spec.Task != nil {
		// A task's tree starts anew: an earlier agent's executors (this
		// one restarted) may have left links in it.
		if err := os.RemoveAll(filepath.Join(a.dir, taskRoot)); err != nil {
			return outcome{err: "cannot clear the task's directory: " + err.Error()}
		}
	}
	if err := a.fetchInputs(ctx, spec); err != nil {
		if errors.Is(err, errJobGone) {
			return outcome{gone: true}
		}
		return outcome{err: "cannot fetch inputs: " + err.Error()}
	}
	if spec.Task != nil {
		out := a.executeTask(ctx, spec, logs)
		out.err = a.taskPaths(out.err)
		return out
	}
	if err := os.WriteFile(filepath.Join(a.dir, "params.json"), append(spec.Parameters, '\n'), 0o600); err != nil {
		return outcome{err: "cannot write params.json: " + err.Error()}
	}
	env := a.environ(spec)
	if spec.Image != "" {
		cleanup, out := a.startContainer(ctx, spec, logs)
		if cleanup == nil {
			return out
		}
		defer cleanup()
	}
	for _, ad := range []struct {
		name string
		argv []string
	}{{"verify", spec.Adapters.Verify}, {"prepare", spec.Adapters.Prepare}} {
		if len(ad.argv) == 0 {
			continue
		}
		res := a.runCmd(ctx, ad.name, ad.argv, env, logs, 0, nil)
		if res.gone {
			return res
		}
		if res.err != "" || res.exitCode == nil || *res.exitCode != 0 {
			return outcome{err: fmt.Sprintf("the %s adapter failed%s%s", ad.name, describeExit(res), lastLine(logs.stderr))}
		}
	}
	if err := a.report(ctx, api.StateReport{State: api.StateRunning, Reason: "the command started"}); err != nil {
		return outcome{gone: true}
	}
	res := a.runCmd(ctx, "command", spec.Command, env, logs, time.Duration(spec.Resources.WalltimeS)*time.Second, nil)
	if res.gone {
		return res
	}
	if res.err == "" && (res.exitCode == nil || *res.exitCode != 0) {
		res.err = "the command failed" + describeExit(res)
	}
	if len(spec.Adapters.Collect) > 0 && ctx.Err() == nil {
		c := a.runCmd(ctx, "collect", spec.Adapters.Collect, env, logs, 0, nil)
		if res.err == "" && (c.err != "" || c.exitCode == nil || *c.exitCode != 0) {
			res.err = "the collect adapter failed" + describeExit(c) + lastLine(logs.stderr)
		}
	}
	return res
}

// walltimeExceeded says that a job or a step ran out of its walltime d.
func walltimeExceeded(d time.Duration) string {
	return fmt.Sprintf("the walltime of %v was exceeded", d)
}

func describeExit(o outcome) string {
	switch {
	case o.err != "":
		return ": " + o.err
	case o.exitCode != nil:
		return fmt.Sprintf(" with exit code %d", *o.exitCode)
	}
	return ""
}

func lastLine(s *shipper) string {
	if l := s.lastLine(); l != "" {
		return ": " + l
	}
	return ""
}

// finish uploads the outputs, ships the last log bytes, and reports the
// end. It removes the working directory unless an output did not go.
func (a *agent) finish(ctx context.Context, out outcome, logs *shippers, spec ...*api.Spec) error {
	a.finishing.Store(true)
	keep := a.opts.KeepWorkDir
	if len(spec) > 0 {
		if err := a.report(ctx, api.StateReport{State: api.StateFinishing, Reason: "uploading outputs"}); err != nil {
			logs.halt()
			return err
		}
		upload := func() error { return a.uploadOutputs(ctx, spec[0]) }
		if ts := spec[0].Task; ts != nil {
			upload = func() error { return a.deliverOutputs(ctx, ts, out.err == "") }
		}
		if err := upload(); err != nil {
			if errors.Is(err, errJobGone) {
				logs.halt()
				return err
			}
			keep = true // what did not go is still there, until the work directories' retention
			msg := "cannot upload outputs: " + err.Error() + "; the working directory is kept: " + a.dir
			if spec[0].Task != nil {
				msg = a.taskPaths(msg)
			}
			if out.err == "" {
				out.err = msg
			} else {
				a.log.Error(msg)
			}
		}
	}
	if logs != nil {
		if err := logs.close(ctx); err != nil {
			return err
		}
	}
	rep := api.StateReport{State: api.StateSucceeded, ExitCode: out.exitCode, Usage: out.usage}
	if out.err != "" {
		rep.State, rep.Error, rep.Reason = api.StateFailed, out.err, out.err
	}
	if err := a.report(ctx, rep); err != nil {
		return err
	}
	if !keep {
		os.RemoveAll(a.dir)
	}
	return nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// environ is the command's environment: the agent's own (which carries
// HPCGATE_URL, _TOKEN, _JOB_ID, _CACERT), the parameters as
// HPCGATE_PARAM_*, PATH with this hpcgate first so jobs can call it, and
// the job's nodes (allocation.environ).
func (a *agent) environ(spec *api.Spec) []string {
	env := os.Environ()
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+spec.Env[k])
	}
	env = append(env, "HPCGATE_WORKDIR="+a.dir)
	env = append(env, "PATH="+a.binDir()+string(os.PathListSeparator)+os.Getenv("PATH"))
	// where the job runs, engine-neutral (see allocation.environ)
	alloc, err := allocationOf(os.Getenv, spec.Resources)
	if err != nil {
		a.log.Warn("the engine's allocation is unreadable; the job is told of this host only", "job_id", a.id, "err", err)
		alloc = allocation{[]string{hostname()}, []int{max(1, spec.Resources.CoresPerNode)}}
	}
	vars, err := alloc.environ(filepath.Join(a.spool, "hostfile"), spec.Resources, os.Getenv)
	if err != nil {
		a.log.Warn("no host file for the job", "job_id", a.id, "err", err)
	}
	return append(env, vars...)
}

// binDir is a directory where "hpcgate" runs this hpcgate, for the PATH
// of the job's command: templates call it by that name, whatever this
// file is called (hpcgate-1.4, or a copy the gateway found through a
// link, which os.Executable resolves). Its own directory when it is named
// hpcgate; else a link of that name in the spool.
func (a *agent) binDir() string {
	bin := selfPath()
	if filepath.Base(bin) == "hpcgate" {
		return filepath.Dir(bin)
	}
	dir := filepath.Join(a.spool, "bin")
	link := filepath.Join(dir, "hpcgate")
	if err := os.MkdirAll(dir, 0o700); err == nil {
		os.Remove(link)
		if err = os.Symlink(bin, link); err == nil {
			return dir
		}
	}
	a.log.Warn(`"hpcgate" may not run this hpcgate in the job: no link of that name could be made`, "job_id", a.id, "binary", bin)
	return filepath.Dir(bin)
}

// selfPath is this hpcgate: the path it was started by, when absolute (a
// link named hpcgate stays that name), else the executable's.
func selfPath() string {
	if filepath.IsAbs(os.Args[0]) {
		return os.Args[0]
	}
	bin, _ := os.Executable()
	return bin
}

// safeRel checks a relative path from the spec: the agent does not follow
// the gateway out of its working directory either.
func safeRel(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.Contains(p, "\\") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("unsafe path %q", p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." || seg == "" {
			return fmt.Errorf("unsafe path %q", p)
		}
	}
	return nil
}

func (a *agent) fetchInputs(ctx context.Context, spec *api.Spec) error {
	for _, in := range spec.Inputs {
		if err := safeRel(in.Path); err != nil {
			return err
		}
		dst := filepath.Join(a.dir, in.Path)
		final := dst
		if in.Unpack {
			if st, err := os.Stat(final); err == nil && st.IsDir() {
				continue // unpacked whole by an agent before this one
			}
			dst = filepath.Join(a.spool, "archive-"+in.Name)
		}
		if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
			return err
		}
		var err error
		if in.Remote {
			err = a.retry(ctx, "fetch input "+in.Name, func(ctx context.Context) error { return fetchRemote(ctx, a.remote, in, dst) })
		} else {
			err = a.retry(ctx, "fetch input "+in.Name, func(ctx context.Context) error { return a.fetchStored(ctx, in, dst) })
		}
		if err != nil {
			return err
		}
		if in.Unpack {
			if err := unpack(dst, final, in.MaxUnpacked); err != nil {
				return fmt.Errorf("input %s: cannot unpack it: %w", in.Name, err)
			}
			os.Remove(dst)
		}
	}
	return nil
}

// fetchStored fetches an input from the store into dst, resuming where an
// earlier attempt stopped.
func (a *agent) fetchStored(ctx context.Context, in api.SpecInput, dst string) error {
	var have int64
	if st, err := os.Stat(dst); err == nil {
		have = st.Size()
	}
	if have == in.Size && have > 0 {
		return nil
	}
	if have > in.Size {
		have = 0
	}
	rc, err := a.openInput(ctx, in, have)
	if err != nil {
		return err
	}
	defer rc.Close()
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if have > 0 {
		flags = os.O_WRONLY | os.O_APPEND
	}
	return saveTo(dst, flags, rc)
}

// saveTo copies r into the file dst, opened with flags (mode 0600 if made).
func saveTo(dst string, flags int, r io.Reader) error {
	f, err := os.OpenFile(dst, flags, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// openInput opens an input from offset: straight from the object store
// when the spec has a presigned URL, through the gateway otherwise (or
// when the URL fails, e.g. has expired while the job waited).
func (a *agent) openInput(ctx context.Context, in api.SpecInput, offset int64) (io.ReadCloser, error) {
	if in.URL != "" {
		rc, err := client.GetURL(ctx, in.URL, offset)
		if err == nil {
			return rc, nil
		}
		a.log.Warn("direct input download failed; using the gateway", "input", in.Name, "err", err)
	}
	rc, _, err := a.c.Input(ctx, a.id, in.Name, offset)
	return rc, err
}

// stdio is a step's standard input and where its output goes besides
// the logs (a task's executor's stdin, stdout and stderr files).
type stdio struct {
	in       io.Reader
	out, err io.Writer
}

// runCmd runs step name (an adapter or the command) in the working
// directory, or in the job's container, with output to the log shippers.
// A limit > 0 stops it after that long.
func (a *agent) runCmd(ctx context.Context, name string, argv, env []string, logs *shippers, limit time.Duration, sio *stdio) outcome {
	var stop []string // a container's: how to stop it,
	var remove func() // and remove it if stopped
	if a.ctr != nil {
		var err error
		if argv, env, stop, remove, err = a.ctr.command(a.id, name, argv, a.opts.KillGrace); err != nil {
			return outcome{err: "cannot run the container: " + err.Error()}
		}
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = a.dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logs.stdout, logs.stderr
	if sio != nil {
		cmd.Stdin = sio.in
		if sio.out != nil {
			cmd.Stdout = io.MultiWriter(logs.stdout, sio.out)
		}
		if sio.err != nil {
			cmd.Stderr = io.MultiWriter(logs.stderr, sio.err)
		}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := a.fr.start(cmd); err != nil {
		fmt.Fprintf(logs.stderr, "hpcgate agent: cannot start %s: %v\n", argv[0], err)
		if a.ctr != nil && errors.Is(err, exec.ErrNotFound) {
			return outcome{err: fmt.Sprintf("the container runtime %s is not installed on %s", argv[0], hostname())}
		}
		return outcome{err: fmt.Sprintf("cannot start %s: %v", argv[0], err)}
	}
	// The watcher stops the command when the job is canceled, gone or out
	// of time; it answers on stopped whether the walltime ran out, and the
	// answer is read only after it has ended.
	done := make(chan struct{})
	stopped := make(chan bool, 1)
	go func() {
		var timeout <-chan time.Time
		if limit > 0 {
			t := time.NewTimer(limit)
			defer t.Stop()
			timeout = t.C
		}
		timedOut := false
		select {
		case <-done:
			stopped <- false
			return
		case <-ctx.Done():
		case <-logs.gone:
		case <-timeout:
			timedOut = true
		}
		a.stopped = true
		if stop != nil {
			// the container's processes are not the runtime's children:
			// the runtime stops them (SIGTERM, then SIGKILL after the grace)
			quiet(stop, env)
		} else {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
		kill := time.NewTimer(a.opts.KillGrace)
		defer kill.Stop()
		select {
		case <-done:
		case <-kill.C:
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
		stopped <- timedOut
	}()
	cmd.Wait()
	close(done)
	timedOut := <-stopped
	if ctx.Err() != nil || timedOut {
		if remove != nil {
			remove()
		}
	}
	ps := cmd.ProcessState
	code := ps.ExitCode()
	ws, _ := ps.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		// -1 from Go; 128 + the signal's number, as shells and engines
		// report a command a signal ended
		code = 128 + int(ws.Signal())
	}
	out := outcome{exitCode: &code, usage: &api.Usage{WallSeconds: time.Since(start).Seconds()}}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		out.usage.CPUSeconds = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		out.usage.MaxRSSBytes = ru.Maxrss * 1024
	}
	if ws.Signaled() && !timedOut {
		out.err = "killed by signal " + ws.Signal().String()
	}
	if timedOut {
		out.err, out.timedOut = walltimeExceeded(limit), true
	}
	if a.ctr != nil && out.err == "" {
		if why, failed := a.ctr.rt.RuntimeFailed(code); failed {
			out.err = "the container runtime failed: " + why + lastLine(logs.stderr)
		}
	}
	select {
	case <-logs.gone:
		out.gone = true
	default:
	}
	return out
}

// uploadOutputs sends every file matching the output patterns.
func (a *agent) uploadOutputs(ctx context.Context, spec *api.Spec) error {
	seen := map[string]bool{}
	var files []string
	for _, pat := range spec.Outputs {
		matches, err := globBelow(a.dir, pat)
		if err != nil {
			return fmt.Errorf("output pattern %q: %w", pat, err)
		}
		for _, rel := range matches {
			if safeRel(rel) != nil || seen[rel] {
				continue
			}
			if st, err := os.Lstat(filepath.Join(a.dir, rel)); err != nil || !st.Mode().IsRegular() || noLinkBelow(a.dir, rel) != nil {
				continue // no directories, devices or links, nor files below a link (which could point anywhere)
			}
			seen[rel] = true
			files = append(files, rel)
		}
	}
	sort.Strings(files)
	var refused refusals
	direct := spec.DirectOutputs
	for _, rel := range files {
		// An output's presigned URL is asked once: the gateway counts the
		// output against the quota each time it hands one out, and a
		// retry that asked again counted it again (a 13-byte output
		// became 35 files while the store could not be reached).
		// (asked again only when it is about to expire: the finishing
		// retries outlast its hour)
		var url string
		var expires time.Time
		err := a.retry(ctx, "output "+rel, func(ctx context.Context) error {
			f, st, err := openRegularBelow(a.dir, rel)
			if err != nil {
				return permanentError{err} // changed since it was listed: no retry mends it
			}
			defer f.Close()
			if direct && (url == "" || time.Until(expires) < 5*time.Minute) {
				su, err := a.c.OutputURL(ctx, a.id, filepath.ToSlash(rel), st.Size())
				switch {
				case err == nil:
					url, expires = su.URL, su.ExpiresAt
				case errors.Is(err, client.ErrNoDirect):
					direct = false
				default:
					return err
				}
			}
			if direct {
				err := client.PutURL(ctx, url, f, st.Size())
				var ue *neturl.Error
				if errors.As(err, &ue) && ctx.Err() == nil {
					// The object store cannot be reached from here (a name
					// only the gateway resolves, a proxy): this output and
					// the rest go through the gateway, on the next try.
					// (The gateway counted this one when it handed its URL
					// out, and counts it again: the error leans towards the
					// quota.)
					a.log.Warn("the object store cannot be reached from this node; outputs go through the gateway", "output", rel, "err", err)
					direct = false
				}
				return err
			}
			return putChecked(f, st.Size(), func(r io.Reader, size int64) (*api.FileInfo, error) {
				return a.c.PutOutput(ctx, a.id, filepath.ToSlash(rel), r, size)
			})
		})
		if err := refused.note(err); err != nil {
			return err
		}
	}
	return refused.err()
}

// refusals are the outputs the gateway refused (too large, over the
// quota, a name it will not take) among those tried: one refused output
// used to stop the upload, and the outputs after it were lost with the
// working directory.
type refusals struct {
	tried int
	msgs  []string
}

// note notes how the upload of one output went: err if the gateway
// refused it. It returns err if the uploads must stop: the job is gone,
// or the gateway stayed away past the agent's patience.
func (r *refusals) note(err error) error {
	r.tried++
	if err == nil || errors.Is(err, errJobGone) {
		return err
	}
	if st := client.StatusOf(err); st >= 400 && st < 500 || errors.As(err, new(permanentError)) {
		r.msgs = append(r.msgs, err.Error())
		return nil
	}
	return err
}

func (r refusals) err() error {
	switch up := r.tried - len(r.msgs); {
	case len(r.msgs) == 0:
		return nil
	case up == 0: // it said the others were uploaded when there were none (eighth probe)
		return fmt.Errorf("%s (no output was uploaded)", strings.Join(r.msgs, "; "))
	case up == 1:
		return fmt.Errorf("%s (the other output was uploaded)", strings.Join(r.msgs, "; "))
	default:
		return fmt.Errorf("%s (the %d other outputs were uploaded)", strings.Join(r.msgs, "; "), up)
	}
}

// putChecked sends f's size bytes with put and checks that the gateway
// stored what was sent: the SHA-256 it answers is that of the bytes read.
func putChecked(f io.Reader, size int64, put func(io.Reader, int64) (*api.FileInfo, error)) error {
	h := sha256.New()
	fi, err := put(io.TeeReader(f, h), size)
	if err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); fi.SHA256 != "" && fi.SHA256 != sum {
		return fmt.Errorf("checksum mismatch after upload (%s ≠ %s)", fi.SHA256, sum)
	}
	return nil
}
