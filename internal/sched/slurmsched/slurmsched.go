// Package slurmsched is hpcgate's Slurm backend: a sched.Scheduler that
// drives Slurm through its command-line tools (sbatch, squeue, sacct,
// scancel, scontrol, sinfo), always asking for machine-readable output.
//
// # Submission
//
// The job script is rendered with a jobscript.Template and given to
// `sbatch --parsable` on its standard input; no script file is written. The
// task's environment reaches the job through sbatch's own environment and
// --export=ALL, never through a command line: sbatch's arguments (visible
// to anyone with ps) hold only the job's name, paths, resources and the
// comment "hpcgate:JOBID". The task's secrets (the job token) are not in
// that environment (Slurm stores it with AccountingStoreFlags=job_env, and
// sacct --env-vars shows it): the script writes them to files only the
// job's account can read (see sched.Task.SecretPath), and the job gets
// NAME_FILE. Slurm keeps the script readable by the job's owner and its
// administrators only (StateSaveLocation and the slurmd spool are 0700;
// scontrol show batch_script and sacct --batch-script are for the owner
// and operators). That comment is how a
// second Submit of the same JobID finds the first job while squeue still
// knows it (for MinJobAge after it ends). Slurm refuses at submission what
// the partition can never give (more cores, nodes or memory than a node
// has; with EnforcePartLimits=ALL, as scripts/setup-slurm.sh configures, a
// walltime over the partition's limit), and Submit returns its error.
// Jobs are submitted with --no-requeue: hpcgate follows one run of a job,
// and a job hit by a node failure ends as such instead of starting again.
//
// The batch output (stdout and stderr of the script itself, not of the
// job's command, which the agent captures) goes to JOBID.slurm.out beside
// the working directory. The working directory's parent is created before
// submission when the gateway can reach it (one file system, as on a
// single-node cluster or a shared one).
//
// # Status
//
// Poll asks squeue once for all ids. Ids that squeue reports ended or no
// longer knows are looked up with one sacct call (CPU time, max RSS,
// elapsed time). While squeue still knows an ended job, its state and exit
// code are squeue's, which come from slurmctld itself: sacct's record can
// lag behind it, and for a job that ends within a moment of starting
// slurmdbd may briefly hold a final state with exit code 0:0. A job that
// squeue says ended but sacct does not have yet is still reported running
// for a few seconds, so that its usage is not lost; after that, or when
// accounting is off, it is reported done without usage. Jobs squeue no
// longer knows take everything from sacct.
//
// # Control
//
// Cancel (scancel) returns once Slurm says the job's processes are gone, or
// after 15 s. Slurm's refusals of a control because of the job's state (or
// of suspend for want of operator rights) are ErrUnsupported.
//
// # Errors
//
// A Slurm command that fails is a *sched.CommandError (Slurm's words, for
// logs) wrapped with what was being done. Hold and Release (scontrol hold/release) act on pending jobs
// only, Suspend and Resume (scontrol suspend/resume, for Slurm operators)
// on running and suspended ones; otherwise they return ErrUnsupported.
package slurmsched

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/jobscript"
)

var (
	_ sched.Scheduler = (*Scheduler)(nil)
	_ sched.Holder    = (*Scheduler)(nil)
	_ sched.Suspender = (*Scheduler)(nil)
	_ sched.Describer = (*Scheduler)(nil)
)

// Options configure a Scheduler. Zero fields take the defaults given.
type Options struct {
	// Partition jobs are submitted to (--partition) and Describe reports
	// on ("": the cluster's default partition).
	Partition string
	// Account jobs are charged to (--account; "": the user's default).
	Account string
	// QOS jobs run with (--qos; "": the association's default).
	QOS string
	// Conf is the cluster's slurm.conf, given to every command and job as
	// SLURM_CONF ("": this process's SLURM_CONF, or Slurm's default).
	Conf string
	// Script renders the batch script (nil: jobscript.Default()).
	Script *jobscript.Template
	// Bin is the directory holding sbatch, squeue, sacct, scancel,
	// scontrol and sinfo ("": found on PATH).
	Bin string
	// Logger receives the scheduler's log (nil: discarded).
	Logger *slog.Logger
}

// Scheduler submits hpcgate's tasks to Slurm. It implements
// sched.Scheduler, Holder, Suspender and Describer, and is safe for
// concurrent use.
type Scheduler struct {
	opts   Options
	script *jobscript.Template
	log    *slog.Logger
	cmd    sched.Commander

	locks sched.KeyLocks // per JobID, so that a Submit is not raced by its twin
}

const (
	// commandTimeout bounds each Slurm command (they retry on their own
	// for about MessageTimeout when slurmctld is slow).
	commandTimeout = 2 * time.Minute
	// acctGrace is how long a job that squeue says ended is reported
	// running while sacct has no final record of it yet.
	acctGrace = 10 * time.Second
	// cancelWait bounds how long Cancel waits for a job's processes to end
	// (Slurm kills them KillWait after SIGTERM).
	cancelWait = 15 * time.Second
	// commentPrefix marks hpcgate's jobs: --comment=hpcgate:JOBID.
	commentPrefix = "hpcgate:"
)

var slurmID = regexp.MustCompile(`^[0-9]+(_[0-9]+)?$`)

// New returns a Scheduler. It starts nothing and checks nothing: Ping
// tells whether Slurm answers.
func New(opts *Options) *Scheduler {
	s := &Scheduler{}
	if opts != nil {
		s.opts = *opts
	}
	s.script = s.opts.Script
	if s.script == nil {
		s.script = jobscript.Default()
	}
	s.log = s.opts.Logger
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// dates as 2006-01-02T15:04:05 whatever the user's settings
	// sbatch exports its whole environment to the job (--export=ALL), so
	// it gets only what a job may see (sched.BaseEnv), Slurm's own
	// settings (SLURM_CONF) and, per job, the task's variables.
	env := sched.BaseEnv(os.Environ())
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "SLURM_CONF=") && s.opts.Conf == "" {
			env = append(env, kv)
		}
	}
	if s.opts.Conf != "" {
		env = append(env, "SLURM_CONF="+s.opts.Conf)
	}
	env = append(env, "SLURM_TIME_FORMAT=standard")
	s.cmd = sched.Commander{Bin: s.opts.Bin, Env: env, Timeout: commandTimeout, Logger: s.log}
	return s
}

// Name is "slurm".
func (s *Scheduler) Name() string { return "slurm" }

// ---------------------------------------------------------------- commands

// run runs a Slurm command; see sched.Commander. No secret is ever in a
// command line.
func (s *Scheduler) run(ctx context.Context, stdin []byte, extraEnv []string, name string, args ...string) (string, error) {
	out, err := s.cmd.Run(ctx, stdin, extraEnv, name, args...)
	return string(out), err
}

// invalidJob tells whether a Slurm command failed for not knowing a job.
func invalidJob(err error) bool {
	return sched.CommandSaid(err, "Invalid job id")
}

// refusedNow are Slurm's words for a control the job's state (or the
// user's rights) does not allow.
var refusedNow = []string{
	"Access/permission denied",
	"Job is no longer pending execution",
	"Job is pending execution",
	"Job/step already completing or completed",
	"already completing or completed",
	"Job can not be altered now",
	"Requested operation is presently disabled",
	"Job is not suspended",
	"Job is suspended",
	"Job not running",
}

// ---------------------------------------------------------------- submit

// Submit renders t's script and pipes it to sbatch; see the package
// comment. Submitting the same JobID again while squeue knows the job
// returns its id.
func (s *Scheduler) Submit(ctx context.Context, t sched.Task) (string, error) {
	if err := t.Validate(); err != nil {
		return "", fmt.Errorf("slurm: %w", err)
	}
	name := t.Name
	d := jobscript.Data{JobID: t.JobID, Name: name, WorkDir: t.WorkDir, Command: t.Command}
	for k, v := range t.Secret {
		d.Secrets = append(d.Secrets, jobscript.Secret{Path: t.SecretPath(k), Value: v})
	}
	sort.Slice(d.Secrets, func(i, j int) bool { return d.Secrets[i].Path < d.Secrets[j].Path })
	script, err := s.script.Render(d)
	if err != nil {
		return "", fmt.Errorf("slurm: job %s: %w", t.JobID, err)
	}
	env, err := taskEnv(t.JobEnv())
	if err != nil {
		return "", fmt.Errorf("slurm: job %s: %w", t.JobID, err)
	}

	defer s.locks.Lock(t.JobID)()
	if id, err := s.find(ctx, name, t.JobID); err != nil {
		return "", err
	} else if id != "" {
		s.log.Info("job already in Slurm", "job", t.JobID, "slurm_id", id)
		return id, nil
	}
	dir := t.JobDir()
	if err := t.MakeJobDir(); err != nil {
		// the compute nodes may see file systems the gateway does not
		s.log.Warn("cannot create the job's directory here; the nodes must have it", "job", t.JobID, "dir", dir, "err", err)
	}
	// A task with an Account is submitted by the account itself (runuser):
	// Slurm checks the account's own rights, and runs and accounts the job
	// as it.
	b, err := s.cmd.RunAs(ctx, t.Account, script, env, "sbatch", s.submitArgs(t, name, dir)...)
	out := string(b)
	if err != nil {
		return "", fmt.Errorf("slurm did not take job %s: %w", t.JobID, err)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(out), ";") // "ID" or "ID;cluster"
	if !slurmID.MatchString(id) {
		return "", fmt.Errorf("slurm: job %s: sbatch printed %q, not a job id", t.JobID, out)
	}
	s.log.Info("submitted to Slurm", "job", t.JobID, "slurm_id", id)
	return id, nil
}

// submitArgs are sbatch's arguments for t: no secrets, no user values but
// the sanitised name.
func (s *Scheduler) submitArgs(t sched.Task, name, dir string) []string {
	r := t.Resources
	out := filepath.Join(dir, t.JobID+".slurm.out")
	args := []string{
		"--parsable",
		"--export=ALL",
		"--no-requeue",
		"--job-name=" + name,
		"--comment=" + commentPrefix + t.JobID,
		"--chdir=" + dir,
		"--output=" + out,
		"--error=" + out,
		// one task per core, so that srun starts one process per core
		// of every node; --mem is per node
		"--nodes=" + strconv.Itoa(max(1, r.Nodes)),
		"--ntasks-per-node=" + strconv.Itoa(max(1, r.CoresPerNode)),
		"--cpus-per-task=1",
	}
	if r.MemoryMB > 0 {
		args = append(args, "--mem="+strconv.FormatInt(r.MemoryMB, 10))
	}
	if r.WalltimeS > 0 {
		args = append(args, "--time="+strconv.FormatInt((r.WalltimeS+59)/60, 10))
	}
	if s.opts.Partition != "" {
		args = append(args, "--partition="+s.opts.Partition)
	}
	if t.Project != "" {
		args = append(args, "--account="+t.Project)
	} else if s.opts.Account != "" {
		args = append(args, "--account="+s.opts.Account)
	}
	if s.opts.QOS != "" {
		args = append(args, "--qos="+s.opts.QOS)
	}
	return args
}

// taskEnv is what sbatch gets after this process's environment: the
// job's (sched.Task.JobEnv, validated). Names that would steer sbatch
// itself (SBATCH_*, SLURM_*) are refused.
func taskEnv(env []string) ([]string, error) {
	for _, kv := range env {
		if strings.HasPrefix(kv, "SBATCH_") || strings.HasPrefix(kv, "SLURM_") {
			k, _, _ := strings.Cut(kv, "=")
			return nil, fmt.Errorf("environment variable %s would steer sbatch, not reach the job", k)
		}
	}
	return env, nil // after os.Environ(): the last of a name wins
}

// find returns the Slurm id of this user's job named name with hpcgate's
// comment for jobID, or "" when squeue knows none.
func (s *Scheduler) find(ctx context.Context, name, jobID string) (string, error) {
	// %F: an array's job id, a plain job's own
	out, err := s.run(ctx, nil, nil, "squeue", "-h", "--me", "-t", "all", "-n", name, "-o", "%F|%k")
	if err != nil {
		return "", fmt.Errorf("slurm: looking for job %s: %w", jobID, err)
	}
	var found []int
	for _, line := range strings.Split(out, "\n") {
		id, comment, ok := strings.Cut(strings.TrimSpace(line), "|")
		if !ok || comment != commentPrefix+jobID {
			continue
		}
		if n, err := strconv.Atoi(id); err == nil {
			found = append(found, n)
		}
	}
	if len(found) == 0 {
		return "", nil
	}
	sort.Ints(found)
	return strconv.Itoa(found[len(found)-1]), nil // the latest, should there be more
}

// ---------------------------------------------------------------- poll

// Poll reports each id's status; see the package comment.
func (s *Scheduler) Poll(ctx context.Context, ids []string) (map[string]sched.Status, error) {
	res := make(map[string]sched.Status, len(ids))
	var valid []string
	for _, id := range ids {
		if _, dup := res[id]; dup {
			continue
		}
		res[id] = sched.Status{State: sched.Gone, Reason: "unknown to Slurm"}
		if slurmID.MatchString(id) {
			valid = append(valid, id)
		}
	}
	if len(valid) == 0 {
		return res, nil
	}
	queue, err := s.queue(ctx, valid)
	if err != nil {
		return nil, err
	}
	var ask []string // ended or unknown to squeue
	for _, id := range valid {
		if r, ok := queue[id]; ok && !finished(r.State) {
			res[id] = liveStatus(r.State, r.Reason)
		} else {
			ask = append(ask, id)
		}
	}
	if len(ask) == 0 {
		return res, nil
	}
	acct, accounting, err := s.acct(ctx, ask)
	if err != nil {
		return nil, err
	}
	for _, id := range ask {
		a, inAcct := acct[id]
		final := inAcct && finished(a.State)
		r, inQueue := queue[id]
		switch {
		case inQueue && final:
			st := endStatus(r.State, r.Exit, r.TimeLimit)
			u := a.Usage
			st.Usage = &u
			res[id] = st
		case inQueue && accounting && recent(r.End):
			res[id] = sched.Status{State: sched.Running, Reason: "ended; waiting for Slurm's accounting record"}
		case inQueue:
			res[id] = endStatus(r.State, r.Exit, r.TimeLimit)
		case final:
			st := endStatus(a.State, a.ExitCode, a.TimeLimit)
			u := a.Usage
			st.Usage = &u
			res[id] = st
		default:
			// gone from squeue and not ended in sacct: the controller lost it
		}
	}
	return res, nil
}

func recent(end string) bool {
	t, ok := ended(end)
	return ok && time.Since(t) < acctGrace
}

// queue asks squeue once about ids (all states). Ids it does not know are
// left out (it fails outright when asked for one unknown id alone).
func (s *Scheduler) queue(ctx context.Context, ids []string) (map[string]queueRow, error) {
	out, err := s.run(ctx, nil, nil, "squeue", "-h", "-r", "-t", "all", "-j", strings.Join(ids, ","), "-O", queueFormat)
	if err != nil {
		if invalidJob(err) {
			return map[string]queueRow{}, nil
		}
		return nil, fmt.Errorf("slurm: %w", err)
	}
	rows, err := parseQueue(out)
	if err != nil {
		return nil, fmt.Errorf("slurm: %w", err)
	}
	return rows, nil
}

// acct asks sacct once about ids, steps included. accounting is false when
// Slurm keeps no accounting (sacct then says so and lists nothing).
func (s *Scheduler) acct(ctx context.Context, ids []string) (recs map[string]*acctRecord, accounting bool, err error) {
	out, err := s.run(ctx, nil, nil, "sacct", "-P", "-n", "-j", strings.Join(ids, ","), "-o", acctFormat)
	if strings.Contains(out, "accounting storage is disabled") || sched.CommandSaid(err, "accounting storage is disabled") {
		return map[string]*acctRecord{}, false, nil
	}
	if err != nil {
		return nil, true, fmt.Errorf("slurm: %w", err)
	}
	recs, err = parseAcct(out)
	if err != nil {
		return nil, true, fmt.Errorf("slurm: %w", err)
	}
	return recs, true, nil
}

// lookup returns squeue's line for one id; ErrNotFound when squeue does
// not know it.
func (s *Scheduler) lookup(ctx context.Context, id string) (queueRow, error) {
	if !slurmID.MatchString(id) {
		return queueRow{}, fmt.Errorf("slurm job %q: %w", id, sched.ErrNotFound)
	}
	rows, err := s.queue(ctx, []string{id})
	if err != nil {
		return queueRow{}, err
	}
	r, ok := rows[id]
	if !ok {
		return queueRow{}, fmt.Errorf("slurm job %s: %w", id, sched.ErrNotFound)
	}
	return r, nil
}

// ---------------------------------------------------------------- control

// Cancel runs scancel, then waits (up to cancelWait) until Slurm says the
// job's processes are gone, so that its files no longer change once
// Cancel returns. A job that has ended, or that Slurm no longer knows, is
// not an error.
func (s *Scheduler) Cancel(ctx context.Context, id string) error {
	if !slurmID.MatchString(id) {
		return fmt.Errorf("slurm job %q: %w", id, sched.ErrNotFound)
	}
	_, err := s.run(ctx, nil, nil, "scancel", id)
	if err != nil && !invalidJob(err) && !sched.CommandSaid(err, "already completing or completed") {
		return fmt.Errorf("slurm: %w", err)
	}
	deadline := time.Now().Add(cancelWait)
	for {
		rows, err := s.queue(ctx, []string{id})
		if err != nil {
			s.log.Warn("canceled in Slurm; cannot tell whether it ended", "slurm_id", id, "err", err)
			return nil
		}
		r, ok := rows[id]
		if !ok || finished(r.State) {
			s.log.Info("canceled in Slurm", "slurm_id", id)
			return nil
		}
		if time.Now().After(deadline) {
			s.log.Warn("canceled in Slurm, still ending", "slurm_id", id, "state", r.State, "waited", cancelWait)
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // the signal is sent; Slurm finishes the job
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// control runs scontrol VERB id. Slurm lets only operators suspend and
// resume, and refuses a control the job's state no longer allows (it may
// have moved on since it was looked up): such refusals are ErrUnsupported.
func (s *Scheduler) control(ctx context.Context, verb, id string) error {
	_, err := s.run(ctx, nil, nil, "scontrol", verb, id)
	switch {
	case err == nil:
		return nil
	case invalidJob(err):
		return fmt.Errorf("slurm job %s: %w (%w)", id, sched.ErrNotFound, err)
	case sched.CommandSaid(err, refusedNow...):
		return fmt.Errorf("slurm: %s of job %s: %w (%w)", verb, id, sched.ErrUnsupported, err)
	}
	return fmt.Errorf("slurm: %w", err)
}

func unsupported(id, what string, r queueRow) error {
	return fmt.Errorf("slurm job %s is %s: %s: %w", id, strings.ToLower(r.State), what, sched.ErrUnsupported)
}

// Hold keeps a pending job from starting (scontrol hold). A job that runs
// is refused with ErrUnsupported: Slurm would accept the hold and do
// nothing. Holding a held job does nothing.
func (s *Scheduler) Hold(ctx context.Context, id string) error {
	r, err := s.lookup(ctx, id)
	if err != nil {
		return err
	}
	if finished(r.State) {
		return unsupported(id, "only a pending job can be held", r)
	}
	switch liveStatus(r.State, r.Reason).State {
	case sched.Held:
		return nil
	case sched.Queued:
	default:
		return unsupported(id, "only a pending job can be held (Slurm ignores holds of running jobs)", r)
	}
	if err := s.control(ctx, "hold", id); err != nil {
		return err
	}
	// It may have started in between, which the hold did not stop: undo
	// the hold's priority 0 and say so.
	if r, err := s.lookup(ctx, id); err == nil && baseState(r.State) != "PENDING" {
		if err := s.control(ctx, "release", id); err != nil {
			s.log.Warn("could not undo a hold of a job that had started", "slurm_id", id, "err", err)
		}
		return unsupported(id, "it started before it could be held", r)
	}
	s.log.Info("held in Slurm", "slurm_id", id)
	return nil
}

// Release lets a held job start (scontrol release). Releasing a job that
// is queued and not held does nothing.
func (s *Scheduler) Release(ctx context.Context, id string) error {
	r, err := s.lookup(ctx, id)
	if err != nil {
		return err
	}
	if finished(r.State) {
		return unsupported(id, "only a held job can be released", r)
	}
	switch liveStatus(r.State, r.Reason).State {
	case sched.Queued:
		return nil
	case sched.Held:
	default:
		return unsupported(id, "only a held job can be released", r)
	}
	if err := s.control(ctx, "release", id); err != nil {
		return err
	}
	s.log.Info("released in Slurm", "slurm_id", id)
	return nil
}

// Suspend stops a running job's processes (scontrol suspend; SIGSTOP).
// Suspending a suspended job does nothing.
func (s *Scheduler) Suspend(ctx context.Context, id string) error {
	r, err := s.lookup(ctx, id)
	if err != nil {
		return err
	}
	switch baseState(r.State) {
	case "SUSPENDED":
		return nil
	case "RUNNING":
	default:
		return unsupported(id, "only a running job can be suspended", r)
	}
	if err := s.control(ctx, "suspend", id); err != nil {
		return err
	}
	s.log.Info("suspended in Slurm", "slurm_id", id)
	return nil
}

// Resume continues a suspended job (scontrol resume). Resuming a running
// job does nothing.
func (s *Scheduler) Resume(ctx context.Context, id string) error {
	r, err := s.lookup(ctx, id)
	if err != nil {
		return err
	}
	switch baseState(r.State) {
	case "RUNNING":
		return nil
	case "SUSPENDED":
	default:
		return unsupported(id, "only a suspended job can be resumed", r)
	}
	if err := s.control(ctx, "resume", id); err != nil {
		return err
	}
	s.log.Info("resumed in Slurm", "slurm_id", id)
	return nil
}

// ---------------------------------------------------------------- facts

// Ping runs scontrol ping: an error unless a controller is UP.
func (s *Scheduler) Ping(ctx context.Context) error {
	out, err := s.run(ctx, nil, nil, "scontrol", "ping")
	if strings.Contains(out, " is UP") {
		return nil
	}
	if err == nil {
		err = fmt.Errorf("no controller is up: %s", strings.TrimSpace(out))
	}
	return fmt.Errorf("slurm: %w", err)
}

// Describe reports the partition's live facts: its state, its cores
// (total, allocated, free, other: down or drained), its nodes by state,
// and its jobs by state (all users').
func (s *Scheduler) Describe(ctx context.Context) (map[string]any, error) {
	out, err := s.run(ctx, nil, nil, "sinfo", "-h", "-o", "%P|%a|%C|%D|%T")
	if err != nil {
		return nil, fmt.Errorf("slurm: %w", err)
	}
	p, err := parsePartition(out, s.opts.Partition)
	if err != nil {
		return nil, fmt.Errorf("slurm: %w", err)
	}
	out, err = s.run(ctx, nil, nil, "squeue", "-h", "-p", p.name, "-o", "%T|%r")
	if err != nil {
		return nil, fmt.Errorf("slurm: %w", err)
	}
	jobs := map[sched.State]int{}
	for _, line := range strings.Split(out, "\n") {
		if state, reason, ok := strings.Cut(strings.TrimSpace(line), "|"); ok && !finished(state) {
			jobs[liveStatus(state, reason).State]++
		}
	}
	out, err = s.run(ctx, nil, nil, "sinfo", "-h", "-N", "-p", p.name, "-o", "%N|%C")
	if err != nil {
		return nil, fmt.Errorf("slurm: %w", err)
	}
	perNode, err := parseNodeCores(out)
	if err != nil {
		return nil, fmt.Errorf("slurm: %w", err)
	}
	return map[string]any{
		"free_cores_per_node": perNode,
		"partition":           p.name,
		"state":               p.state,
		"total_cores":         p.total,
		"allocated_cores":     p.allocated,
		"free_cores":          p.idle,
		"other_cores":         p.other,
		"nodes":               p.nodes,
		"node_states":         p.nodeStates,
		"running_jobs":        jobs[sched.Running],
		"suspended_jobs":      jobs[sched.Suspended],
		"queued_jobs":         jobs[sched.Queued],
		"held_jobs":           jobs[sched.Held],
	}, nil
}

// parseNodeCores reads sinfo -h -N -o '%N|%C': each node's idle cores.
func parseNodeCores(out string) (map[string]int, error) {
	m := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		node, cores, ok := strings.Cut(line, "|")
		f := strings.Split(cores, "/") // allocated/idle/other/total
		if !ok || node == "" || len(f) != 4 {
			return nil, fmt.Errorf("sinfo: unexpected line %q", line)
		}
		idle, err := strconv.Atoi(f[1])
		if err != nil {
			return nil, fmt.Errorf("sinfo: unexpected line %q", line)
		}
		m[node] = idle // a node in two partitions is listed twice, alike
	}
	return m, nil
}

// partitionFacts sum sinfo's lines (one per node state) for a partition.
type partitionFacts struct {
	name, state                   string
	allocated, idle, other, total int
	nodes                         int
	nodeStates                    map[string]int
}

// parsePartition reads sinfo -h -o '%P|%a|%C|%D|%T' for partition name
// ("": the default one, marked '*').
func parsePartition(out, name string) (*partitionFacts, error) {
	var p *partitionFacts
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 5 {
			return nil, fmt.Errorf("sinfo: unexpected line %q", line)
		}
		part, isDefault := strings.CutSuffix(f[0], "*")
		if part != name && !(name == "" && isDefault) {
			continue
		}
		cores := strings.Split(f[2], "/")
		if len(cores) != 4 {
			return nil, fmt.Errorf("sinfo: cores %q, want A/I/O/T", f[2])
		}
		var c [4]int
		for i, v := range cores {
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("sinfo: cores %q, want A/I/O/T", f[2])
			}
			c[i] = n
		}
		nodes, err := strconv.Atoi(f[3])
		if err != nil {
			return nil, fmt.Errorf("sinfo: nodes %q", f[3])
		}
		if p == nil {
			p = &partitionFacts{name: part, state: f[1], nodeStates: map[string]int{}}
		}
		p.allocated += c[0]
		p.idle += c[1]
		p.other += c[2]
		p.total += c[3]
		p.nodes += nodes
		p.nodeStates[f[4]] += nodes
	}
	if p == nil {
		if name == "" {
			return nil, errors.New("sinfo: no default partition")
		}
		return nil, fmt.Errorf("sinfo: no partition %q", name)
	}
	return p, nil
}
