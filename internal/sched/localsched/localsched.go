// Package localsched is the local executor: the embedded queueing engine.
// It runs each task as a process on this machine, first come first served,
// with a limit on the cores in use (default: the machine's CPU count).
//
// # Surviving restarts
//
// Each task has a directory DIR/ID holding task.json (mode 0600: it carries
// the task's secrets, the job token), workdir (the task's working
// directory), and, once started, pid and finally exit.json. A task is
// started through a supervisor, a fixed /bin/sh script in a session of its
// own that runs the command (given as positional arguments, never pasted
// into the script), waits for it and writes exit.json. So a running task
// outlives the gateway, and an executor started on the same DIR finds every
// task again: queued ones are queued again, running ones are watched, ended
// ones reported.
//
// # Secrets
//
// A task's secrets reach it as files only this account can read
// (sched.Task.WriteSecrets), and the task gets NAME_FILE=PATH.
//
// # Ends
//
// Once a task has ended, its secrets' files and task.json are removed: the
// token is gone from the disk. Its directory (out.log, exit.json) and its
// working directory stay for Options.Retention after its end; then Run's
// loop deletes them, and the task is Gone. Forget (sched.Forgetter) drops an
// ended task at once (its files still go after the retention); an executor
// started later reads nothing of a forgotten task but the time of its end.
//
// # Goroutines
//
// The executor starts none: Run's loop reaps the tasks it started, kills a
// canceled task that outlives Options.KillGrace, starts queued tasks and
// deletes expired ones. Tasks run on after Run returns.
package localsched

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/proctree"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// Options configure an Executor. The zero value gives the defaults.
type Options struct {
	// Slots is how many cores tasks may use at once (default: runtime.NumCPU()).
	Slots int
	// PollInterval is how often tasks adopted from an earlier run are
	// checked (default 250ms).
	PollInterval time.Duration
	// KillGrace is how long a canceled task has between SIGTERM and
	// SIGKILL (default 10s). Run's loop sends the SIGKILL.
	KillGrace time.Duration
	// Retention is how long an ended task's files and working directory
	// are kept before Run's loop deletes them (default 24h).
	Retention time.Duration
	// Logger receives the executor's log (default: discarded).
	Logger *slog.Logger
	// Sandbox, when set, runs every task without an Account in a
	// bubblewrap sandbox (default: none).
	Sandbox *Sandbox
}

// Executor is the local executor. It implements sched.Scheduler, Holder,
// Suspender, Describer and Forgetter.
type Executor struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry
	expired map[string]time.Time // forgotten tasks' ends, by id: deleted after Retention
	seq     int64
	used    int
	wake    chan struct{}
}

type entry struct {
	id       string
	seq      int64
	cores    int
	state    sched.State
	pid      int
	start    string // the process's start time, to tell it from a reused pid
	exit     *exitInfo
	canceled bool
	started  time.Time // when this executor launched it
	cmd      *exec.Cmd // the supervisor, when this executor started it: reaped by Run
	killAt   time.Time // canceled: SIGKILL then if it still runs
	// doomed are the task's processes when it was canceled (pid → start
	// time): SIGKILL goes to them at killAt too, also once the
	// supervisor is gone. A process in a session of its own (the sandbox,
	// bwrap --new-session) left neither the tree nor the group to be
	// found then, and ran on after a cancel.
	doomed map[int]string
	ended  time.Time // Done: when (its files go Retention later)
	// limit is the task's time limit from its start (0: none); overtime,
	// that it ran past it and was stopped.
	limit    time.Duration
	overtime bool
}

// exitInfo is exit.json, written by the supervisor (or by Cancel for a task
// that never started).
type exitInfo struct {
	ExitCode    int     `json:"exit_code"`
	Signal      string  `json:"signal,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	MaxRSSBytes int64   `json:"max_rss_bytes"`
	WallSeconds float64 `json:"wall_seconds"`
	Canceled    bool    `json:"canceled,omitempty"`
	Reason      string  `json:"reason,omitempty"`
}

type taskFile struct {
	Seq  int64      `json:"seq"`
	Task sched.Task `json:"task"`
}

var (
	_ sched.Scheduler  = (*Executor)(nil)
	_ sched.Holder     = (*Executor)(nil)
	_ sched.Suspender  = (*Executor)(nil)
	_ sched.Describer  = (*Executor)(nil)
	_ sched.PerProcess = (*Executor)(nil)
	_ sched.Forgetter  = (*Executor)(nil)
)

// New returns an executor keeping its state in dir. It starts nothing:
// call Run.
func New(dir string, opts *Options) (*Executor, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Slots <= 0 {
		o.Slots = runtime.NumCPU()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.KillGrace <= 0 {
		o.KillGrace = 10 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e := &Executor{dir: dir, opts: o, log: o.Logger, entries: map[string]*entry{}, expired: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	if err := e.load(); err != nil {
		return nil, err
	}
	return e, nil
}

// PerProcess implements sched.PerProcess: the executor's tasks belong to
// the gateway process (and data directory) that started them.
func (e *Executor) PerProcess() {}

// Name implements sched.Scheduler.
func (e *Executor) Name() string { return "local" }

// Ping implements sched.Scheduler.
func (e *Executor) Ping(ctx context.Context) error {
	_, err := os.Stat(e.dir)
	return err
}

func (e *Executor) taskDir(id string) string { return filepath.Join(e.dir, id) }

// load finds the tasks of an earlier run. Of a forgotten task it reads
// only the time of its end; of an ended one, only exit.json.
func (e *Executor) load() error {
	des, err := os.ReadDir(e.dir)
	if err != nil {
		return err
	}
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		id := de.Name()
		d := e.taskDir(id)
		if fi, err := os.Stat(filepath.Join(d, "forgotten")); err == nil {
			e.expired[id] = fi.ModTime()
			continue
		}
		var ex exitInfo
		if fi, err := os.Stat(filepath.Join(d, "exit.json")); err == nil && readJSON(filepath.Join(d, "exit.json"), &ex) == nil {
			en := &entry{id: id, state: sched.Done, exit: &ex, ended: fi.ModTime(), canceled: exists(filepath.Join(d, "canceled"))}
			e.entries[id] = en
			if exists(filepath.Join(d, "task.json")) {
				e.retire(en) // ended while no executor watched it
				en.ended = fi.ModTime()
			}
			continue
		}
		var tf taskFile
		if err := readJSON(filepath.Join(d, "task.json"), &tf); err != nil {
			continue // half-written by a crash in Submit: never acknowledged
		}
		en := &entry{id: id, seq: tf.Seq, cores: tf.Task.Resources.Cores(), state: sched.Queued, limit: timeLimit(tf.Task)}
		e.seq = max(e.seq, tf.Seq)
		if exists(filepath.Join(d, "canceled")) {
			en.canceled = true
		}
		switch {
		case exists(filepath.Join(d, "launched")):
			en.state = sched.Running
			if fi, err := os.Stat(filepath.Join(d, "launched")); err == nil {
				en.started = fi.ModTime() // its time limit runs from there
			}
			en.pid, en.start = readPid(filepath.Join(d, "pid"))
			if en.pid == 0 {
				// The gateway stopped between writing "launched" and
				// "pid": the supervisor wrote its own pid first thing
				// ("spid"); without it, it never ran, and the task is
				// queued again.
				b, err := e.readStatus(id, "spid")
				pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
				if err != nil || pid <= 0 {
					os.Remove(filepath.Join(d, "launched"))
					en.state = sched.Queued
					break
				}
				en.pid, en.start = pid, procStart(pid)
				if en.start == "" || !e.isSupervisor(id, pid) {
					// gone before this load (or, in a directory an
					// account can write, not its supervisor at all):
					// checkRunning finishes it, and no signal goes to it
					en.start = "ended"
				}
			}
			if exists(filepath.Join(d, "suspended")) {
				en.state = sched.Suspended
			}
			e.used += en.cores
		case exists(filepath.Join(d, "held")):
			en.state = sched.Held
		}
		e.entries[id] = en
	}
	return nil
}

// Run schedules tasks until ctx ends, and returns when its loop and the
// watchers it started have. Running tasks go on after it ends.
func (e *Executor) Run(ctx context.Context) error {
	t := time.NewTicker(e.opts.PollInterval)
	defer t.Stop()
	w, err := newWatcher(e.poke)
	if err != nil {
		return err
	}
	defer w.close()
	watched := map[*entry]bool{}
	for {
		e.mu.Lock()
		e.checkRunning()
		e.stopOvertime()
		e.killOverdue()
		e.schedule()
		e.sweep()
		// Every running task, started here or adopted, wakes the loop
		// when it ends, so that its cores go to the next one at once;
		// the tick is only the fallback.
		for en := range watched {
			if en.state != sched.Running && en.state != sched.Suspended {
				delete(watched, en)
			}
		}
		for _, en := range e.entries {
			if (en.state == sched.Running || en.state == sched.Suspended) && !watched[en] {
				watched[en] = true
				w.watch(en.pid, en.start)
			}
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
		case <-t.C:
		}
	}
}

func (e *Executor) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// schedule starts queued tasks in order while they fit. The oldest queued
// task that does not fit blocks the ones behind it (first come first served).
func (e *Executor) schedule() {
	var queued []*entry
	for _, en := range e.entries {
		if en.state == sched.Queued {
			queued = append(queued, en)
		}
	}
	sort.Slice(queued, func(i, j int) bool { return queued[i].seq < queued[j].seq })
	for _, en := range queued {
		if e.used+en.cores > e.opts.Slots {
			return
		}
		if err := e.launch(en); err != nil {
			e.log.Error("local executor: start failed", "id", en.id, "err", err)
			e.end(en, &exitInfo{ExitCode: -1, Reason: "could not start: " + err.Error()})
		}
	}
}

// supervisor writes its own pid to $0/spid (for a gateway that stopped
// before it wrote "pid"), runs "$@" (the task's command) and records its
// exit code in $0/exit.json. It is constant text: the command arrives as arguments. It
// uses shell builtins only (no rename): exit.json is read only once the
// supervisor has gone, and a half-written one does not parse, which counts
// as still running.
const supervisor = `printf '%d\n' "$$" > "$0/spid"; "$@"; printf '{"exit_code":%d}\n' "$?" > "$0/exit.json"`

func (e *Executor) launch(en *entry) error {
	d := e.taskDir(en.id)
	var tf taskFile
	if err := readJSON(filepath.Join(d, "task.json"), &tf); err != nil {
		return err
	}
	t := tf.Task
	statusDir := d // where the supervisor writes exit.json
	if t.Account != nil {
		if err := makeAccountDirs(t); err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		statusDir = t.JobDir()
		if err := os.WriteFile(filepath.Join(d, "status"), []byte(statusDir), 0o600); err != nil {
			return err
		}
	} else if err := os.MkdirAll(t.WorkDir, 0o700); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	if err := t.WriteSecrets(); err != nil {
		return err
	}
	argv := t.Command
	if t.Account == nil && e.opts.Sandbox != nil && !t.Contained {
		argv = e.opts.Sandbox.argv(t)
	}
	out, err := os.OpenFile(filepath.Join(d, "out.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	if err := os.WriteFile(filepath.Join(d, "launched"), nil, 0o600); err != nil {
		return err
	}
	cmd := exec.Command("/bin/sh", append([]string{"-c", supervisor, statusDir}, argv...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = t.WorkDir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(sched.BaseEnv(os.Environ()), t.JobEnv()...)
	if a := t.Account; a != nil {
		// The supervisor and the task run as the account: the kernel's
		// credentials, set here, not a command in the task.
		groups := make([]uint32, len(a.Groups))
		for i, g := range a.Groups {
			groups[i] = uint32(g)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(a.UID), Gid: uint32(a.GID), Groups: groups}
		cmd.Env = append(cmd.Env, "USER="+a.Name, "LOGNAME="+a.Name, "HOME="+accountHome(a, t))
	}
	if err := cmd.Start(); err != nil {
		os.Remove(filepath.Join(d, "launched"))
		return err
	}
	en.cmd = cmd
	en.pid = cmd.Process.Pid
	en.start = procStart(en.pid)
	if en.start == "" {
		// It has ended already (a zombie has no start time here): with
		// start "" it would pass checkRunning's test for ever.
		en.start = "ended"
	}
	en.started = time.Now()
	os.WriteFile(filepath.Join(d, "pid"), []byte(fmt.Sprintf("%d %s\n", en.pid, en.start)), 0o600)
	en.state = sched.Running
	e.used += en.cores
	e.log.Debug("local executor: started", "id", en.id, "pid", en.pid)
	return nil
}

// timeLimit is t's time limit from its start: its walltime (0: none).
func timeLimit(t sched.Task) time.Duration {
	return time.Duration(t.Resources.WalltimeS) * time.Second
}

// finish records that en's supervisor has ended.
func (e *Executor) finish(en *entry) {
	if en.state == sched.Done {
		return
	}
	var ex exitInfo
	if err := e.readExit(en.id, &ex); err != nil {
		ex = exitInfo{ExitCode: -1, Reason: "the task's processes were killed"}
		if en.overtime {
			ex.Reason = fmt.Sprintf("the task ran past its time limit of %v and was stopped", en.limit)
		}
		writeJSON(filepath.Join(e.taskDir(en.id), "exit.json"), &ex)
	}
	if !en.started.IsZero() && ex.WallSeconds == 0 {
		ex.WallSeconds = time.Since(en.started).Seconds()
	}
	if en.cmd != nil {
		en.cmd.Wait() // reap it: it has exited (a zombie)
		en.cmd = nil
	}
	e.used -= en.cores
	e.end(en, &ex)
}

// end marks en done with ex, writing exit.json if it is not there yet,
// and retires it.
func (e *Executor) end(en *entry, ex *exitInfo) {
	p := filepath.Join(e.taskDir(en.id), "exit.json")
	if !exists(p) {
		writeJSON(p, ex)
	}
	en.exit = ex
	en.state = sched.Done
	e.retire(en) // a canceled task's killAt stays: its group may outlive it
}

// retire removes what an ended task no longer needs and must not keep: its
// secrets' files and task.json (which holds them). It keeps the working
// directory's path for sweep.
func (e *Executor) retire(en *entry) {
	en.ended = time.Now()
	d := e.taskDir(en.id)
	var tf taskFile
	if err := readJSON(filepath.Join(d, "task.json"), &tf); err == nil {
		tf.Task.RemoveSecrets()
	}
	if err := os.Remove(filepath.Join(d, "task.json")); err != nil && !os.IsNotExist(err) {
		e.log.Error("local executor: cannot remove an ended task's file", "id", en.id, "err", err)
	}
}

// checkRunning notices the end of running tasks, this executor's (which
// it reaps) and an earlier run's.
func (e *Executor) checkRunning() {
	for _, en := range e.entries {
		if en.state != sched.Running && en.state != sched.Suspended {
			continue
		}
		if en.pid != 0 && procStart(en.pid) == en.start {
			continue // still running (a zombie counts as ended)
		}
		e.finish(en)
	}
}

// killOverdue sends SIGKILL to canceled tasks past their KillGrace.
func (e *Executor) killOverdue() {
	now := time.Now()
	for _, en := range e.entries {
		if en.killAt.IsZero() || now.Before(en.killAt) {
			continue
		}
		en.killAt = time.Time{}
		if (en.state == sched.Running || en.state == sched.Suspended) && procStart(en.pid) == en.start {
			signalTree(en.pid, syscall.SIGKILL)
		}
		// The supervisor may be gone (SIGTERM ended it) while a command
		// that ignores SIGTERM runs on, orphaned: it is still in the
		// supervisor's process group (the kernel does not reuse a pid
		// that names a live group).
		if en.pid > 0 {
			syscall.Kill(-en.pid, syscall.SIGKILL)
		}
		for p, start := range en.doomed {
			if procStart(p) != start {
				continue // gone, or a pid reused since
			}
			// what it started since the cancel goes too
			for _, q := range proctree.Descendants(p) {
				syscall.Kill(q, syscall.SIGKILL)
			}
			syscall.Kill(p, syscall.SIGKILL)
		}
		en.doomed = nil
	}
}

// sweep deletes the files and working directories of tasks that ended
// more than Retention ago; they are Gone from then on.
func (e *Executor) sweep() {
	cutoff := time.Now().Add(-e.opts.Retention)
	for id, en := range e.entries {
		if en.state == sched.Done && en.ended.Before(cutoff) {
			delete(e.entries, id)
			e.delete(id)
		}
	}
	for id, ended := range e.expired {
		if ended.Before(cutoff) {
			delete(e.expired, id)
			e.delete(id)
		}
	}
}

// delete removes a task's working directory and directory.
func (e *Executor) delete(id string) {
	d := e.taskDir(id)
	if b, err := os.ReadFile(filepath.Join(d, "workdir")); err == nil && filepath.IsAbs(string(b)) && filepath.Clean(string(b)) != "/" {
		if err := os.RemoveAll(string(b)); err != nil {
			e.log.Error("local executor: cannot delete a working directory", "id", id, "dir", string(b), "err", err)
		}
	}
	if err := os.RemoveAll(d); err != nil {
		e.log.Error("local executor: cannot delete a task's directory", "id", id, "err", err)
	}
}

// Submit implements sched.Scheduler.
func (e *Executor) Submit(ctx context.Context, t sched.Task) (string, error) {
	if err := t.Validate(); err != nil {
		return "", fmt.Errorf("local executor: %w", err)
	}
	if c := t.Resources.Cores(); c > e.opts.Slots {
		return "", fmt.Errorf("%w: the job needs %d cores, the local executor has %d", sched.ErrUnsupported, c, e.opts.Slots)
	}
	if t.Resources.Nodes > 1 {
		return "", fmt.Errorf("%w: the local executor has one node, the job asks for %d", sched.ErrUnsupported, t.Resources.Nodes)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id := t.JobID
	if _, ok := e.entries[id]; ok {
		return id, nil
	}
	if _, ok := e.expired[id]; ok {
		return "", fmt.Errorf("local executor: job %s was forgotten: %w", id, sched.ErrUnsupported)
	}
	d := e.taskDir(id)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	dir := t.WorkDir // what goes after the retention
	if t.Account != nil {
		dir = t.JobDir()
	}
	if err := os.WriteFile(filepath.Join(d, "workdir"), []byte(dir), 0o600); err != nil {
		return "", err
	}
	e.seq++
	if err := writeJSON(filepath.Join(d, "task.json"), taskFile{Seq: e.seq, Task: t}); err != nil {
		return "", err
	}
	e.entries[id] = &entry{id: id, seq: e.seq, cores: t.Resources.Cores(), state: sched.Queued, limit: timeLimit(t)}
	e.poke()
	return id, nil
}

// Poll implements sched.Scheduler.
func (e *Executor) Poll(ctx context.Context, ids []string) (map[string]sched.Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]sched.Status, len(ids))
	for _, id := range ids {
		en, ok := e.entries[id]
		if !ok {
			out[id] = sched.Status{State: sched.Gone}
			continue
		}
		st := sched.Status{State: en.state}
		if en.exit != nil {
			code := en.exit.ExitCode
			st.ExitCode = &code
			st.Canceled = en.canceled || en.exit.Canceled
			st.Reason = en.exit.Reason
			if en.exit.Signal != "" && st.Reason == "" {
				st.Reason = "killed by signal " + en.exit.Signal
			}
			if en.exit.WallSeconds > 0 {
				st.Usage = &job.Usage{CPUSeconds: en.exit.CPUSeconds, MaxRSSBytes: en.exit.MaxRSSBytes, WallSeconds: en.exit.WallSeconds}
			}
		}
		out[id] = st
	}
	return out, nil
}

func (e *Executor) get(id string) (*entry, error) {
	en, ok := e.entries[id]
	if !ok {
		return nil, fmt.Errorf("%s: %w", id, sched.ErrNotFound)
	}
	return en, nil
}

// Cancel implements sched.Scheduler.
func (e *Executor) Cancel(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, err := e.get(id)
	if err != nil {
		return err
	}
	d := e.taskDir(id)
	switch en.state {
	case sched.Done:
		return nil
	case sched.Queued, sched.Held:
		en.canceled = true
		e.end(en, &exitInfo{ExitCode: -1, Canceled: true, Reason: "canceled before it started"})
		return nil
	}
	en.canceled = true
	os.WriteFile(filepath.Join(d, "canceled"), nil, 0o600)
	e.terminate(en)
	e.poke()
	return nil
}

// terminate asks a running task to end (SIGTERM to its processes), and
// has Run's loop kill what is left of them after KillGrace.
func (e *Executor) terminate(en *entry) {
	if en.doomed == nil && en.pid > 0 {
		en.doomed = map[int]string{}
		for _, p := range proctree.Descendants(en.pid) {
			if st := procStart(p); st != "" {
				en.doomed[p] = st
			}
		}
	}
	signalTree(en.pid, syscall.SIGCONT) // a suspended task must run to die
	signalTree(en.pid, syscall.SIGTERM)
	if en.killAt.IsZero() {
		en.killAt = time.Now().Add(e.opts.KillGrace) // Run's loop kills it then
	}
}

// stopOvertime ends the running tasks past their time limit (the task's
// walltime: the dispatcher gives the agent's own limit a margin over the
// job's), as an engine's limit does. A job's agent stops its command at
// the job's walltime; this is the backstop when the agent cannot (a
// gateway it cannot reach kept one retrying past its walltime).
func (e *Executor) stopOvertime() {
	for _, en := range e.entries {
		if en.state != sched.Running || en.limit <= 0 || en.started.IsZero() || en.overtime || en.canceled {
			continue
		}
		if time.Since(en.started) > en.limit {
			en.overtime = true
			e.log.Info("local executor: a task ran past its time limit", "id", en.id, "limit", en.limit)
			e.terminate(en)
		}
	}
}

// Hold implements sched.Holder.
func (e *Executor) Hold(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, err := e.get(id)
	if err != nil {
		return err
	}
	switch en.state {
	case sched.Held:
		return nil
	case sched.Queued:
		en.state = sched.Held
		return os.WriteFile(filepath.Join(e.taskDir(id), "held"), nil, 0o600)
	}
	return fmt.Errorf("%w: the job is %s, only a queued job can be held", sched.ErrUnsupported, en.state)
}

// Release implements sched.Holder.
func (e *Executor) Release(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, err := e.get(id)
	if err != nil {
		return err
	}
	switch en.state {
	case sched.Queued:
		return nil
	case sched.Held:
		en.state = sched.Queued
		os.Remove(filepath.Join(e.taskDir(id), "held"))
		e.poke()
		return nil
	}
	return fmt.Errorf("%w: the job is %s, only a held job can be released", sched.ErrUnsupported, en.state)
}

// Suspend implements sched.Suspender: every process of the task is stopped.
func (e *Executor) Suspend(ctx context.Context, id string) error {
	return e.setSuspended(id, true)
}

// Resume implements sched.Suspender.
func (e *Executor) Resume(ctx context.Context, id string) error {
	return e.setSuspended(id, false)
}

func (e *Executor) setSuspended(id string, on bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, err := e.get(id)
	if err != nil {
		return err
	}
	marker := filepath.Join(e.taskDir(id), "suspended")
	switch {
	case on && en.state == sched.Running:
		signalTree(en.pid, syscall.SIGSTOP)
		en.state = sched.Suspended
		return os.WriteFile(marker, nil, 0o600)
	case !on && en.state == sched.Suspended:
		signalTree(en.pid, syscall.SIGCONT)
		en.state = sched.Running
		if fi, err := os.Stat(marker); err == nil && !en.started.IsZero() {
			// time suspended does not count toward the time limit, as an
			// engine's does not (the marker's time is the suspension's)
			en.started = en.started.Add(time.Since(fi.ModTime()))
		}
		return os.Remove(marker)
	case on && en.state == sched.Suspended, !on && en.state == sched.Running:
		return nil
	}
	return fmt.Errorf("%w: the job is %s", sched.ErrUnsupported, en.state)
}

// Describe implements sched.Describer.
func (e *Executor) Describe(ctx context.Context) (map[string]any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	queued, running := 0, 0
	for _, en := range e.entries {
		switch en.state {
		case sched.Queued:
			queued++
		case sched.Running, sched.Suspended:
			running++
		}
	}
	return map[string]any{
		"total_cores":  e.opts.Slots,
		"free_cores":   e.opts.Slots - e.used,
		"queued_jobs":  queued,
		"running_jobs": running,
		"state":        "up",
	}, nil
}

// Forget implements sched.Forgetter: an ended task is Gone from now on;
// its files (its secrets are gone already) and working directory are
// deleted Retention after its end. A task that has not ended, or that the
// executor does not know, is left alone.
func (e *Executor) Forget(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.entries[id]
	if !ok || en.state != sched.Done {
		return nil
	}
	marker := filepath.Join(e.taskDir(id), "forgotten")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		return fmt.Errorf("local executor: forget %s: %w", id, err)
	}
	os.Chtimes(marker, en.ended, en.ended) // load takes the end from it
	delete(e.entries, id)
	e.expired[id] = en.ended
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readJSON(p string, v any) error {
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// writeJSON writes v to p atomically.
func writeJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func readPid(p string) (int, string) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, ""
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, ""
	}
	pid, _ := strconv.Atoi(f[0])
	return pid, f[1]
}

// procStart returns the start time of pid from /proc, or "" if it is gone
// (or a zombie).
func procStart(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}

// signalTree sends sig to pid and all its descendants.
func signalTree(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	for _, p := range proctree.Descendants(pid) {
		syscall.Kill(p, sig)
	}
	// and its process group (the supervisor leads one): what left the
	// tree (a daemon, an orphan) but not the group gets it too
	syscall.Kill(-pid, sig)
}

// readExit reads task id's exit.json: the executor's own in the task's
// directory, or else the one the supervisor of a task run as an account
// wrote in the job's directory (which that account owns: read without
// following a link, bounded, and copied to the task's directory).
func (e *Executor) readExit(id string, ex *exitInfo) error {
	d := e.taskDir(id)
	err := readJSON(filepath.Join(d, "exit.json"), ex)
	if err == nil || !os.IsNotExist(err) {
		return err
	}
	b, err := e.readStatus(id, "exit.json")
	if err != nil {
		return err
	}
	var got exitInfo
	if err := json.Unmarshal(b, &got); err != nil {
		return err
	}
	*ex = exitInfo{ExitCode: got.ExitCode} // the task may say its exit code, nothing else
	return writeJSON(filepath.Join(d, "exit.json"), ex)
}

// isSupervisor tells whether pid runs the supervisor of task id: its
// command line is the shell, the supervisor and its status directory.
func (e *Executor) isSupervisor(id string, pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 3 && args[1] == "-c" && args[2] == supervisor && args[3] == e.statusDir(id)
}

// statusDir is where task id's supervisor writes: the task's directory or,
// for a task run as an account, the job's directory named by its "status"
// file.
func (e *Executor) statusDir(id string) string {
	dir := e.taskDir(id)
	if status, err := os.ReadFile(filepath.Join(dir, "status")); err == nil && filepath.IsAbs(string(status)) {
		return string(status)
	}
	return dir
}

// readStatus reads a small file the supervisor wrote in its status
// directory: the task's directory or, for a task run as an account, the
// job's directory (see the "status" file), where the account could have
// put a link or a fifo: neither is followed or waited on.
func (e *Executor) readStatus(id, name string) ([]byte, error) {
	f, err := os.OpenFile(filepath.Join(e.statusDir(id), name), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s of %s: not a regular file", name, id)
	}
	return io.ReadAll(io.LimitReader(f, 4096))
}

// makeAccountDirs makes t's job directory and working directory, owned by
// its account, mode 0700.
func makeAccountDirs(t sched.Task) error {
	if err := t.MakeJobDir(); err != nil {
		return err
	}
	if err := os.Mkdir(t.WorkDir, 0o700); err != nil && !os.IsExist(err) {
		return err
	}
	fi, err := os.Lstat(t.WorkDir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", t.WorkDir)
	}
	if os.Geteuid() == 0 {
		return os.Lchown(t.WorkDir, t.Account.UID, t.Account.GID)
	}
	return nil
}

// accountHome is HOME for a task run as a: its home when it has one that
// exists, else the task's working directory.
func accountHome(a *sched.Account, t sched.Task) string {
	if a.Home != "" {
		if fi, err := os.Stat(a.Home); err == nil && fi.IsDir() {
			return a.Home
		}
	}
	return t.WorkDir
}
