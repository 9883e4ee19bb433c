// Package sched defines Scheduler, the seam between hpcgate and a queueing
// engine, and what it reports about the jobs it runs.
//
// Implementations: localsched (the embedded local executor), slurmsched
// and sgesched. Every implementation passes the conformance suite in
// schedtest. Optional abilities (Holder, Suspender, Describer, Forgetter)
// are separate interfaces found by type assertion.
//
// # Tasks
//
// Every engine's Submit begins with Task.Validate: one check of the job id,
// name, working directory, resources and environment for all engines.
//
// # Secrets
//
// A task's Secret values (the job token: Validate moves HPCGATE_TOKEN
// there from Env) never travel in an engine's environment or on a command
// line, where other accounts could read them (qstat -j shows a Grid Engine
// job's environment to every user; Slurm may store it in its accounting).
// Each engine delivers secret NAME as a file only the job's account can
// read, at Task.SecretPath(NAME), and gives the job NAME_FILE=PATH instead
// of NAME (HPCGATE_TOKEN_FILE for the token). LookupSecret reads it.
//
// # Engine commands
//
// Engines that drive command-line clients run them with a Commander; a
// failed command is a *CommandError, which keeps the engine's own words
// for the log: they are never a message for a client.
package sched

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"syscall"

	"github.com/hpcgate/hpcgate/internal/job"
)

// ErrNotFound is returned (wrapped) for a backend id the engine does not know.
var ErrNotFound = errors.New("no such job in the engine")

// ErrUnsupported is returned (wrapped) when the engine or the job's state
// does not allow an operation.
var ErrUnsupported = errors.New("not supported by the engine")

// Task is what the engine runs: one command, in a working directory, with
// an environment. For hpcgate the command always starts the agent; no user
// value is ever part of Command.
type Task struct {
	JobID     string // letters, digits, '_' and '-'; see Validate
	Name      string // a sanitised, human-readable name (see SafeName)
	Command   []string
	Env       map[string]string
	Secret    map[string]string `json:",omitempty"` // delivered as files: see the package comment
	WorkDir   string            // absolute; the engine creates it
	Resources job.Resources
	// Account is the OS account the task runs as; nil: the gateway's own.
	// With an account, the directory above WorkDir is the job's own
	// (JobDir): the engine makes it, owned by the account, mode 0700, and
	// everything of the job (its secrets' files, the engine's output)
	// goes there.
	Account *Account `json:",omitempty"`
	// Project is the allocation account the job is charged to ("": the
	// environment's or the user's default): Slurm's --account, Grid
	// Engine's -P.
	Project string `json:",omitempty"`
	// Contained says the job's steps run in a container, so the local
	// executor does not also sandbox the agent (the sandbox would hide
	// the container runtime's storage from it).
	Contained bool `json:",omitempty"`
}

// Account is an OS account a task runs as.
type Account struct {
	Name   string `json:"name"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Groups []int  `json:"groups,omitempty"` // supplementary groups
	Home   string `json:"home,omitempty"`
}

// JobDir is the directory above t's working directory, where its secrets'
// files and the engine's output go.
func (t *Task) JobDir() string { return filepath.Dir(t.WorkDir) }

// MakeJobDir creates JobDir. For a task with an Account it is the job's
// own directory: made 0700 and, when this process is root, owned by the
// account; the directories above it are made 0711 (and an existing one of
// this process's gets the search bits), so that the account can reach it
// without listing other jobs. Without an Account it is made 0700.
func (t *Task) MakeJobDir() error {
	dir := t.JobDir()
	if t.Account == nil {
		return os.MkdirAll(dir, 0o700)
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o711); err != nil {
		return err
	}
	if fi, err := os.Stat(parent); err == nil && fi.Mode().Perm()&0o011 != 0o011 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Geteuid() {
			if err := os.Chmod(parent, fi.Mode().Perm()|0o011); err != nil {
				return err
			}
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if os.Geteuid() == 0 {
		return os.Lchown(dir, t.Account.UID, t.Account.GID)
	}
	return nil
}

// TokenEnv is the job token's variable. Validate moves it from Env to
// Secret, so the job gets TokenEnv+"_FILE" (HPCGATE_TOKEN_FILE).
const TokenEnv = "HPCGATE_TOKEN"

var (
	taskID  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// maxCores bounds a task's nodes and cores per node (no engine has more).
const maxCores = 1 << 20

// Validate checks t and makes it ready for an engine. It refuses a job id
// other than 1 to 128 letters, digits, '_' and '-' (not first), an empty
// command, a working directory that is not absolute and clean (or is "/"),
// negative or absurd resources, environment names that are not shell names,
// and a NUL byte anywhere. It sets Name to SafeName(Name) and moves
// Env[TokenEnv] to Secret. Every engine's Submit calls it first.
func (t *Task) Validate() error {
	if !taskID.MatchString(t.JobID) {
		return fmt.Errorf("job id %q: want 1 to 128 letters, digits, '_' and '-'", t.JobID)
	}
	t.Name = SafeName(t.Name)
	if len(t.Command) == 0 {
		return fmt.Errorf("job %s: empty command", t.JobID)
	}
	for _, a := range t.Command {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("job %s: a NUL byte in the command", t.JobID)
		}
	}
	if !filepath.IsAbs(t.WorkDir) || filepath.Clean(t.WorkDir) != t.WorkDir || t.WorkDir == "/" || strings.ContainsRune(t.WorkDir, 0) {
		return fmt.Errorf("job %s: working directory %q: want a clean absolute path below /", t.JobID, t.WorkDir)
	}
	r := t.Resources
	if r.Nodes < 0 || r.CoresPerNode < 0 || r.MemoryMB < 0 || r.WalltimeS < 0 ||
		r.Nodes > maxCores || r.CoresPerNode > maxCores {
		return fmt.Errorf("job %s: resources %+v out of range", t.JobID, r)
	}
	if v, ok := t.Env[TokenEnv]; ok {
		env := make(map[string]string, len(t.Env))
		for k, v := range t.Env {
			env[k] = v
		}
		delete(env, TokenEnv)
		t.Env = env
		secret := map[string]string{TokenEnv: v}
		for k, v := range t.Secret {
			secret[k] = v
		}
		t.Secret = secret
	}
	for _, m := range []map[string]string{t.Env, t.Secret} {
		for k, v := range m {
			if !envName.MatchString(k) {
				return fmt.Errorf("job %s: environment variable name %q", t.JobID, k)
			}
			if strings.ContainsRune(v, 0) {
				return fmt.Errorf("job %s: a NUL byte in %s", t.JobID, k)
			}
		}
	}
	for k := range t.Secret {
		if _, ok := t.Env[k+"_FILE"]; ok {
			return fmt.Errorf("job %s: %s_FILE is both in the environment and a secret's file", t.JobID, k)
		}
	}
	return nil
}

// SecretPath is where the file of t's secret name goes: beside its working
// directory, as JOBID.secret.NAME.
func (t *Task) SecretPath(name string) string {
	return filepath.Join(filepath.Dir(t.WorkDir), t.JobID+".secret."+name)
}

// NoticesVar names the variable an engine's adapter gives a task when
// the engine warns the job before it stops or kills it; its value names
// how: "sge" is Grid Engine's qsub -notify (SIGUSR1 before a suspend's
// SIGSTOP, SIGUSR2 before a SIGKILL), which the agent passes on to the
// processes below it.
const NoticesVar = "HPCGATE_ENGINE_NOTICES"

// BaseEnv returns the part of the gateway's environment environ that a
// job may inherit: the variables that locate programs and set the locale
// and time zone. Everything else (credentials for the object store, the
// database URL, an admin's HPCGATE_TOKEN) stays with the gateway; a job
// gets its own variables from JobEnv.
func BaseEnv(environ []string) []string {
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH", k == "LANG", k == "TZ", k == "HOME", k == "USER", k == "LOGNAME", k == "SHELL", k == "TMPDIR",
			strings.HasPrefix(k, "LC_"):
			out = append(out, kv)
		}
	}
	return out
}

// JobEnv is the environment the job gets: Env, and NAME_FILE=SecretPath(NAME)
// for each secret, as sorted NAME=VALUE entries.
func (t *Task) JobEnv() []string {
	env := make([]string, 0, len(t.Env)+len(t.Secret))
	for k, v := range t.Env {
		env = append(env, k+"="+v)
	}
	for k := range t.Secret {
		env = append(env, k+"_FILE="+t.SecretPath(k))
	}
	sort.Strings(env)
	return env
}

// WriteSecrets writes each of t's secrets to its SecretPath, readable by
// this account only (by t's Account, which owns them, when this process is
// root), creating the directory (0700) if need be. An engine
// whose job script other accounts may read (Grid Engine spools it world
// readable) delivers secrets this way.
func (t *Task) WriteSecrets() error {
	for k, v := range t.Secret {
		p := t.SecretPath(k)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		f, err := os.CreateTemp(filepath.Dir(p), ".secret-*")
		if err != nil {
			return err
		}
		_, err = f.WriteString(v)
		if err == nil && t.Account != nil && os.Geteuid() == 0 {
			err = f.Chown(t.Account.UID, t.Account.GID)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), p) // CreateTemp made it 0600
		}
		if err != nil {
			os.Remove(f.Name())
			return fmt.Errorf("job %s: writing secret %s: %w", t.JobID, k, err)
		}
	}
	return nil
}

// RemoveSecrets removes the files WriteSecrets wrote (those that exist).
func (t *Task) RemoveSecrets() {
	for k := range t.Secret {
		os.Remove(t.SecretPath(k))
	}
}

// LookupSecret returns secret name as an engine delivered it to the job:
// the content of the file named by $NAME_FILE, or else $NAME. ok is false
// when neither is set. The agent reads the job token with
// LookupSecret(TokenEnv).
func LookupSecret(name string) (value string, ok bool, err error) {
	if p := os.Getenv(name + "_FILE"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", false, fmt.Errorf("reading %s_FILE: %w", name, err)
		}
		return strings.TrimSuffix(string(b), "\n"), true, nil
	}
	v, ok := os.LookupEnv(name)
	return v, ok, nil
}

// State is an engine's view of a job.
type State string

// Engine states.
const (
	Queued    State = "queued"
	Held      State = "held"
	Running   State = "running"
	Suspended State = "suspended"
	Done      State = "done" // ended: see Status.ExitCode and Canceled
	Gone      State = "gone" // the engine no longer knows the job
)

// Status is what the engine says about one job.
type Status struct {
	State    State
	ExitCode *int   // with Done, when known
	Canceled bool   // with Done: ended by a cancel
	Reason   string // why, in the engine's words (walltime, node failure, ...)
	Usage    *job.Usage
}

// Scheduler hands tasks to a queueing engine. Methods are safe for
// concurrent use.
type Scheduler interface {
	// Name is the engine's kind, as in a job's backend ("local", "slurm").
	Name() string
	// Submit queues t and returns the engine's id for it. Submitting the
	// same JobID again while the engine knows it returns the same id.
	Submit(ctx context.Context, t Task) (string, error)
	// Poll returns the status of each id. An id the engine does not know
	// any more is reported Gone, not omitted.
	Poll(ctx context.Context, ids []string) (map[string]Status, error)
	// Cancel stops the job whether queued or running. Canceling a job
	// that has ended is not an error.
	Cancel(ctx context.Context, id string) error
	// Ping checks that the engine answers.
	Ping(ctx context.Context) error
}

// ArraySubmitter can submit many tasks as one array job of the engine
// (a sweep's variants): one submission, one queue entry to schedule.
type ArraySubmitter interface {
	// SubmitArray submits tasks that differ only in their job ids,
	// names, working directories, secrets and variables (one environment,
	// command, resources, project and account), at most MaxArray of them,
	// as one array of which at most limit run at once (0: no limit).
	// It returns each task's id, in order: the ids Poll, Cancel, Hold and
	// the rest take for single tasks. ErrUnsupported (wrapped): this
	// engine, as configured, cannot (a custom job script); submit the
	// tasks one by one.
	SubmitArray(ctx context.Context, tasks []Task, limit int) ([]string, error)
}

// ArrayKey names an array of tasks for the engine's record of it, so that
// a retried SubmitArray finds the array it made: the first job's id and a
// digest of them all, so that another set of jobs (one canceled in the
// meantime) is never taken for it, whose tasks would then stand for other
// jobs.
func ArrayKey(tasks []Task) string {
	h := fnv.New32a()
	for _, t := range tasks {
		h.Write([]byte(t.JobID))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("array-%s-%08x", tasks[0].JobID, h.Sum32())
}

// ArrayEnv readies tasks for one array job: it validates each, checks
// that they differ only in their job ids, names, directories, secrets and
// variables (else an error wrapping ErrUnsupported), and splits their
// environments (JobEnv): what every task has alike, which goes with the
// array, and each task's own rest, which its script sets.
func ArrayEnv(tasks []Task) (common map[string]string, own []map[string]string, err error) {
	for i := range tasks {
		if err := tasks[i].Validate(); err != nil {
			return nil, nil, err
		}
	}
	first := tasks[0]
	own = make([]map[string]string, len(tasks))
	for i, t := range tasks {
		if t.Resources != first.Resources || t.Project != first.Project || !reflect.DeepEqual(t.Account, first.Account) ||
			!reflect.DeepEqual(t.Command, first.Command) {
			return nil, nil, fmt.Errorf("job %s differs from job %s in more than its id, name, directory and variables: %w", t.JobID, first.JobID, ErrUnsupported)
		}
		own[i] = map[string]string{}
		for _, kv := range t.JobEnv() {
			k, v, _ := strings.Cut(kv, "=")
			own[i][k] = v
		}
	}
	common = map[string]string{}
	for k, v := range own[0] {
		alike := true
		for _, e := range own[1:] {
			if w, ok := e[k]; !ok || w != v {
				alike = false
				break
			}
		}
		if alike {
			common[k] = v
		}
	}
	for _, e := range own {
		for k := range common {
			delete(e, k)
		}
	}
	return common, own, nil
}

// MaxArray is the most tasks of one array job (Slurm's default
// MaxArraySize is 1001: indexes 0 to 1000).
const MaxArray = 1000

// Holder can keep a queued job from starting.
type Holder interface {
	// Hold keeps a queued job from starting; ErrUnsupported once it runs.
	Hold(ctx context.Context, id string) error
	// Release lets a held job start.
	Release(ctx context.Context, id string) error
}

// Suspender can pause and continue a running job.
type Suspender interface {
	Suspend(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
}

// PerProcess marks an engine that lives inside one gateway process (the
// local executor): only that gateway replica can poll or signal its jobs.
type PerProcess interface {
	PerProcess()
}

// Forgetter is an engine that keeps state about each task (the local
// executor) and can drop it once the caller no longer needs it.
type Forgetter interface {
	// Forget drops an ended task: the engine reports it Gone from then on,
	// and deletes its files (its working directory among them) after its
	// retention. A task that has not ended, or that the engine does not
	// know, is left alone: nil.
	Forget(id string) error
}

// Describer reports live facts about the engine (free cores, queue state).
type Describer interface {
	Describe(ctx context.Context) (map[string]any, error)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// SafeName turns a user's job name into one safe for any engine and shell:
// letters, digits, '_', '.', '-', starting with a letter (Grid Engine
// refuses a leading digit), at most 40 characters. SafeName(SafeName(s))
// is SafeName(s).
func SafeName(name string) string {
	s := unsafeName.ReplaceAllString(name, "_")
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		s = "j" + s
	}
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
