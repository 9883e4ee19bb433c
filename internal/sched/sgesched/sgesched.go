// Package sgesched runs hpcgate's tasks on (Son of) Grid Engine through its
// command-line clients: qsub, qstat, qacct, qdel, qhold, qrls and qmod.
//
// A task's job script is rendered from a jobscript.Template and given to
// qsub on standard input; it only starts the task's command in its working
// directory. The task's environment reaches the job through qsub's own
// environment: qsub is told the variables' names (-v NAME,...), never their
// values, so no value appears on a command line. Grid Engine keeps them in
// the job, and qstat -j shows them to every user: so the task's secrets
// (the job token) are not among them. Nor are they in the script, which
// sge_execd spools world-readable (execd's job_scripts/ID, mode 0755):
// Submit writes each secret itself to a file only this account can read
// (sched.Task.WriteSecrets, beside the working directory, which the
// gateway must reach anyway for the job's output), and the job gets
// NAME_FILE=PATH.
//
// The job's output goes to JOBID.sge.out beside its working directory. Each
// job carries the context variable hpcgate_job=JOBID: a Submit repeated
// after a restart finds the job by it as long as qstat lists the job (and
// a Scheduler remembers what it submitted for a day, ended jobs included).
//
// Resources: more than one core is -pe PE CORES; the walltime is h_rt; the
// memory (for the whole job) is h_vmem, which Grid Engine takes per slot
// and enforces as every process's address-space limit, so it is
// (MemoryMB + VmemHeadroomMB) / cores, rounded up. qsub -w e refuses a job
// no queue could ever run.
//
// Poll asks qstat once for every job, then qacct for each job that qstat no
// longer lists. qacct reads the whole accounting file, so it is slow on a
// cell with a large one; it is only asked about jobs that have just ended.
//
// A client command that fails is a *sched.CommandError (Grid Engine's
// words, for logs).
//
// scripts/setup-sge.sh sets up a single-node cell for development and tests.
package sgesched

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/jobscript"
)

// Options configure a Scheduler. Zero fields take their defaults.
type Options struct {
	// Queue is the cluster queue jobs go to (qsub -q) and that Describe
	// reports on (default: none; Grid Engine chooses, and Describe reports
	// on every queue).
	Queue string
	// ParallelEnv is the parallel environment of jobs with more than one
	// core, requested as -pe NAME CORES (default "smp", with allocation
	// rule $pe_slots: all cores on one host). A name with %d is one
	// parallel environment per number of slots on each host (mpi-%d), whose
	// allocation rule is that number: every job is then submitted with
	// -pe mpi-C N*C for N nodes of C cores, which is exactly N hosts.
	ParallelEnv string
	// Script renders the job script (default jobscript.Default()).
	Script *jobscript.Template
	// Root and Cell are SGE_ROOT and SGE_CELL for the clients (defaults
	// /var/lib/gridengine and default).
	Root, Cell string
	// Bin is the directory of qsub, qstat, ... (default /usr/lib/gridengine,
	// Debian's real binaries; the wrappers in /usr/bin cost ~0.5 s a call).
	Bin string
	// VmemHeadroomMB is added to a job's memory before it becomes h_vmem,
	// Grid Engine's limit on each process's address space (default 2048;
	// negative: none). The job's agent is a Go program: it reserves about
	// 1.6 GB of address space at start, and under a smaller limit it may
	// fail to start at all.
	VmemHeadroomMB int64
	// Notices: the tasks' command passes Grid Engine's warnings on (the
	// gateway's agent does: sched.NoticesVar), so jobs are submitted with
	// -notify. Grid Engine signals only a job's process group; a command
	// that leaves it (the agent's steps, a container) is suspended only
	// by the command's own care. A command that does not handle SIGUSR1
	// and SIGUSR2 must not be submitted with it: they would end it.
	Notices bool
	// CommandTimeout bounds each client command (default 2m).
	CommandTimeout time.Duration
	// Logger receives debug logs of the commands run (default: discarded).
	Logger *slog.Logger
}

// Scheduler hands tasks to Grid Engine. It implements sched.Scheduler,
// sched.Holder, sched.Suspender and sched.Describer, and is safe for
// concurrent use.
type Scheduler struct {
	opts Options
	log  *slog.Logger
	cmd  sched.Commander

	locks sched.KeyLocks

	// ownScript: the operator gave the job script (Options.Script), which
	// makes no arrays
	ownScript bool

	mu        sync.Mutex
	submitted map[string]submission // by hpcgate job id
	canceled  map[string]time.Time  // Grid Engine ids this scheduler qdel'ed
}

type submission struct {
	id string
	at time.Time
}

// How long Submit remembers a job id it submitted (a repeated Submit within
// this time returns the same id even after the job has ended).
const rememberSubmits = 24 * time.Hour

// New returns a Scheduler; it starts nothing. opts may be nil.
func New(opts *Options) *Scheduler {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.ParallelEnv == "" {
		o.ParallelEnv = "smp"
	}
	ownScript := o.Script != nil
	if o.Script == nil {
		o.Script = jobscript.Default()
	}
	if o.Root == "" {
		o.Root = "/var/lib/gridengine"
	}
	if o.Cell == "" {
		o.Cell = "default"
	}
	if o.Bin == "" {
		o.Bin = "/usr/lib/gridengine"
	}
	if o.VmemHeadroomMB == 0 {
		o.VmemHeadroomMB = 2048
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 2 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	env := append(os.Environ(), "SGE_ROOT="+o.Root, "SGE_CELL="+o.Cell)
	cmd := sched.Commander{Bin: o.Bin, Env: env, Timeout: o.CommandTimeout, Logger: log}
	return &Scheduler{opts: o, log: log, cmd: cmd, submitted: map[string]submission{}, ownScript: ownScript}
}

// placeable refuses a task of several nodes where no parallel environment
// gives each host a fixed number of slots: $pe_slots would put it on one
// host, $round_robin anywhere.
func (s *Scheduler) placeable(t sched.Task) error {
	if _, ok := s.hostPE(1); !ok && t.Resources.Nodes > 1 {
		return fmt.Errorf("sge: job %s: %d nodes need a parallel environment per slots per host (Options.ParallelEnv with %%d): %w", t.JobID, t.Resources.Nodes, sched.ErrUnsupported)
	}
	return nil
}

// hostPE is the parallel environment for jobs with cores slots on each
// host, when ParallelEnv names one per number of slots (mpi-%d).
func (s *Scheduler) hostPE(cores int) (string, bool) {
	if !strings.Contains(s.opts.ParallelEnv, "%d") {
		return "", false
	}
	return strings.Replace(s.opts.ParallelEnv, "%d", strconv.Itoa(cores), 1), true
}

// Name implements sched.Scheduler.
func (s *Scheduler) Name() string { return "sge" }

// run runs one client command and returns its standard output; see
// sched.Commander.
func (s *Scheduler) run(ctx context.Context, stdin []byte, extraEnv []string, name string, args ...string) ([]byte, error) {
	return s.cmd.Run(ctx, stdin, extraEnv, name, args...)
}

// said reports whether err is a failed command whose message contains one
// of the phrases.
func said(err error, phrases ...string) bool { return sched.CommandSaid(err, phrases...) }

var (
	idRe     = regexp.MustCompile(`^[1-9][0-9]*$`)
	taskIDRe = regexp.MustCompile(`^[1-9][0-9]*(\.[1-9][0-9]*)?$`)
)

// checkID refuses anything but a job number, or an array task's
// JOB.TASK: the clients take job names and patterns too (qdel 'x*').
func checkID(id string) error {
	if !taskIDRe.MatchString(id) {
		return fmt.Errorf("grid engine job %q: %w", id, sched.ErrNotFound)
	}
	return nil
}

// contextVar is the job context variable that names hpcgate's job.
const contextVar = "hpcgate_job"

// qsubArgs returns the arguments of qsub for a validated t and the
// environment entries that go with them (the job's variables, secrets'
// files included: qsub -v names them, qsub takes their values from its
// environment).
func (s *Scheduler) qsubArgs(t sched.Task) (args, env []string) {
	parent := filepath.Dir(t.WorkDir)
	args = []string{
		"-terse",
		"-w", "e", // refuse what can never run instead of queueing it forever
		"-N", t.Name,
		"-S", "/bin/sh",
		"-wd", parent,
		"-o", filepath.Join(parent, t.JobID+".sge.out"),
		"-j", "y",
		"-ac", contextVar + "=" + t.JobID,
	}
	env = t.JobEnv()
	if s.opts.Notices {
		args = append(args, "-notify")
		env = append(env, sched.NoticesVar+"=sge")
	}
	if s.opts.Queue != "" {
		args = append(args, "-q", s.opts.Queue)
	}
	if t.Project != "" {
		args = append(args, "-P", t.Project)
	}
	r := t.Resources
	perHost := max(1, r.CoresPerNode)
	if pe, ok := s.hostPE(perHost); ok {
		// exactly r.Nodes hosts with perHost slots each
		args = append(args, "-pe", pe, strconv.Itoa(r.Cores()))
	} else if r.Cores() > 1 {
		args = append(args, "-pe", s.opts.ParallelEnv, strconv.Itoa(r.Cores()))
	}
	var limits []string
	if r.WalltimeS > 0 {
		limits = append(limits, "h_rt="+strconv.FormatInt(r.WalltimeS, 10))
	}
	if r.MemoryMB > 0 {
		// the memory is per node; h_vmem is per slot, and Grid Engine
		// multiplies it by the slots a host has
		mb := r.MemoryMB + max(s.opts.VmemHeadroomMB, 0)
		perSlot := (mb + int64(perHost) - 1) / int64(perHost)
		limits = append(limits, "h_vmem="+strconv.FormatInt(perSlot, 10)+"M")
	}
	if len(limits) > 0 {
		args = append(args, "-l", strings.Join(limits, ","))
	}
	if len(env) > 0 {
		names := make([]string, len(env))
		for i, kv := range env {
			names[i], _, _ = strings.Cut(kv, "=")
		}
		args = append(args, "-v", strings.Join(names, ","))
	}
	return args, env
}

// Submit implements sched.Scheduler. A task asking for what no queue can
// give is refused (qsub -w e) with an error wrapping sched.ErrUnsupported.
func (s *Scheduler) Submit(ctx context.Context, t sched.Task) (string, error) {
	if err := t.Validate(); err != nil {
		return "", fmt.Errorf("sge: %w", err)
	}
	if err := s.placeable(t); err != nil {
		return "", err
	}
	args, env := s.qsubArgs(t)
	script, err := s.opts.Script.Render(jobscript.Data{JobID: t.JobID, Name: t.Name, WorkDir: t.WorkDir, Command: t.Command})
	if err != nil {
		return "", fmt.Errorf("sge: job %s: %w", t.JobID, err)
	}
	defer s.locks.Lock(t.JobID)()
	if id, ok := s.remembered(t.JobID); ok {
		return id, nil
	}
	id, err := s.find(ctx, t)
	if err != nil {
		return "", err
	}
	if id == "" {
		// the job's output file and secrets go beside its working directory
		if err := t.MakeJobDir(); err != nil {
			return "", fmt.Errorf("sge: %w", err)
		}
		if err := t.WriteSecrets(); err != nil {
			return "", fmt.Errorf("sge: %w", err)
		}
		// A task with an Account is submitted by the account itself
		// (runuser), which Grid Engine then runs and accounts it as.
		out, err := s.cmd.RunAs(ctx, t.Account, script, env, "qsub", args...)
		if err != nil {
			t.RemoveSecrets()
			if said(err, "no suitable queues") { // -w e: it could never run
				return "", fmt.Errorf("%w: grid engine refused the job: %w", sched.ErrUnsupported, err)
			}
			return "", fmt.Errorf("sge: %w", err)
		}
		// -terse prints "ID" (or "ID.TASKS" for an array)
		id, _, _ = strings.Cut(strings.TrimSpace(string(out)), ".")
		if !idRe.MatchString(id) {
			return "", fmt.Errorf("sge: qsub printed %q, not a job id", out)
		}
		s.log.Info("sge job submitted", "job", t.JobID, "sge_id", id)
	}
	s.remember(t.JobID, id)
	return id, nil
}

func (s *Scheduler) remembered(jobID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub, ok := s.submitted[jobID]
	if ok && time.Since(sub.at) < rememberSubmits {
		return sub.id, true
	}
	return "", false
}

func (s *Scheduler) remember(jobID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(s.submitted)%1024 == 1023 {
		for k, v := range s.submitted {
			if now.Sub(v.at) >= rememberSubmits {
				delete(s.submitted, k)
			}
		}
	}
	s.submitted[jobID] = submission{id: id, at: now}
}

// find returns the id of the job Grid Engine still lists for t's JobID, or
// "". It looks at the jobs with t's name (qstat -j NAME) for the context
// variable.
func (s *Scheduler) find(ctx context.Context, t sched.Task) (string, error) {
	out, err := s.run(ctx, nil, nil, "qstat", "-j", t.Name, "-xml")
	if err != nil {
		return "", err
	}
	jobs, err := parseDetailed(out)
	if err != nil {
		return "", err
	}
	for _, j := range jobs {
		if v, ok := j.context(contextVar); ok && v == t.JobID && idRe.MatchString(j.Number) {
			return j.Number, nil
		}
	}
	return "", nil
}

// jobs lists every job qstat knows (pending, running, suspended, held, in
// error), of every user.
func (s *Scheduler) jobs(ctx context.Context) (*qstatList, error) {
	out, err := s.run(ctx, nil, nil, "qstat", "-u", "*", "-g", "d", "-xml") // -g d: an array's tasks one by one
	if err != nil {
		return nil, err
	}
	return parseQstat(out)
}

// How long Poll waits before asking qacct again about a job that is in
// neither qstat nor qacct (it reaches qacct a moment after it leaves qstat).
const qacctRetry = 150 * time.Millisecond

// Poll implements sched.Scheduler: one qstat for all ids, then qacct for
// each id qstat does not list.
func (s *Scheduler) Poll(ctx context.Context, ids []string) (map[string]sched.Status, error) {
	res := make(map[string]sched.Status, len(ids))
	if len(ids) == 0 {
		return res, nil
	}
	l, err := s.jobs(ctx)
	if err != nil {
		return nil, err
	}
	var ended []string
	for _, id := range ids {
		if _, done := res[id]; done {
			continue
		}
		if checkID(id) != nil {
			res[id] = sched.Status{State: sched.Gone}
			continue
		}
		j, ok := l.jobs[id]
		if !ok {
			res[id] = sched.Status{} // filled in below
			ended = append(ended, id)
			continue
		}
		st := statusOf(j.State)
		if st.State == sched.Done {
			if msg := s.errorReason(ctx, id); msg != "" {
				st.Reason += ": " + msg
			}
		}
		res[id] = st
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		firstEr error
		sem     = make(chan struct{}, 4)
	)
	for _, id := range ended {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := s.accounted(ctx, id)
			if st.State == sched.Done && s.canceledHere(id) {
				st.Canceled = true
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstEr == nil {
				firstEr = err
			}
			res[id] = st
		}()
	}
	wg.Wait()
	if firstEr != nil {
		return nil, firstEr
	}
	return res, nil
}

// errorReason is what Grid Engine says about a job in error state.
func (s *Scheduler) errorReason(ctx context.Context, id string) string {
	job, _, _ := strings.Cut(id, ".")
	out, err := s.run(ctx, nil, nil, "qstat", "-j", job, "-xml")
	if err != nil {
		return ""
	}
	jobs, err := parseDetailed(out)
	if err != nil || len(jobs) == 0 {
		return ""
	}
	return strings.Join(jobs[0].Messages, "; ")
}

// accounted asks qacct about an ended job: Done with what it knows, or
// Gone when it does not know the job (a job deleted before it ran never
// reaches the accounting).
func (s *Scheduler) accounted(ctx context.Context, id string) (sched.Status, error) {
	args := []string{"-j", id}
	if job, task, ok := strings.Cut(id, "."); ok {
		args = []string{"-j", job, "-t", task}
	}
	for try := 0; ; try++ {
		out, err := s.run(ctx, nil, nil, "qacct", args...)
		if err == nil {
			if recs := parseQacct(out); len(recs) > 0 {
				return doneStatus(recs[len(recs)-1]), nil
			}
		} else if !said(err, "not found", "No jobs running since startup") {
			return sched.Status{}, err
		}
		if try == 1 {
			return sched.Status{State: sched.Gone}, nil
		}
		select {
		case <-time.After(qacctRetry):
		case <-ctx.Done():
			return sched.Status{}, ctx.Err()
		}
	}
}

// state is a job's qstat state code, or ErrNotFound.
func (s *Scheduler) state(ctx context.Context, id string) (string, error) {
	if err := checkID(id); err != nil {
		return "", err
	}
	l, err := s.jobs(ctx)
	if err != nil {
		return "", err
	}
	j, ok := l.jobs[id]
	if !ok {
		return "", fmt.Errorf("grid engine job %s: %w", id, sched.ErrNotFound)
	}
	return j.State, nil
}

// Cancel implements sched.Scheduler (qdel). A job that has ended, or that
// Grid Engine does not know, is no error (and is not reported canceled).
func (s *Scheduler) Cancel(ctx context.Context, id string) error {
	if checkID(id) != nil {
		return nil
	}
	// The accounting shows a qdel as any SIGKILL; remember our own.
	s.mu.Lock()
	if s.canceled == nil {
		s.canceled = map[string]time.Time{}
	}
	for k, t := range s.canceled {
		if time.Since(t) > rememberSubmits {
			delete(s.canceled, k)
		}
	}
	_, before := s.canceled[id]
	if !before {
		s.canceled[id] = time.Now()
	}
	s.mu.Unlock()
	_, err := s.run(ctx, nil, nil, "qdel", id)
	if said(err, "does not exist") {
		if !before { // it had ended: this did not cancel it
			s.mu.Lock()
			delete(s.canceled, id)
			s.mu.Unlock()
		}
		return nil
	}
	if err != nil && !said(err, "already in deletion") {
		return fmt.Errorf("sge: %w", err)
	}
	return nil
}

func (s *Scheduler) canceledHere(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.canceled[id]
	return ok
}

// Ping implements sched.Scheduler: qstat must get an answer from qmaster.
func (s *Scheduler) Ping(ctx context.Context) error {
	_, err := s.run(ctx, nil, nil, "qstat", "-g", "c")
	return err
}

// Hold implements sched.Holder (qhold). Grid Engine would put a hold on a
// running job too, to no effect: only a queued job is held, others get
// ErrUnsupported.
func (s *Scheduler) Hold(ctx context.Context, id string) error {
	code, err := s.state(ctx, id)
	if err != nil {
		return err
	}
	st := statusOf(code)
	switch st.State {
	case sched.Held:
		return nil
	case sched.Queued:
	default:
		return fmt.Errorf("%w: grid engine job %s is %s (%s); only a queued job can be held", sched.ErrUnsupported, id, st.State, code)
	}
	if _, err := s.run(ctx, nil, nil, "qhold", id); err != nil {
		return s.notFound(err, id)
	}
	// it may have started in the meantime: then take the hold back
	if code, err := s.state(ctx, id); err == nil {
		if st := statusOf(code); st.State != sched.Held {
			s.run(ctx, nil, nil, "qrls", id)
			return fmt.Errorf("%w: grid engine job %s started (%s); only a queued job can be held", sched.ErrUnsupported, id, code)
		}
	}
	return nil
}

// Release implements sched.Holder (qrls).
func (s *Scheduler) Release(ctx context.Context, id string) error {
	code, err := s.state(ctx, id)
	if err != nil {
		return err
	}
	if !strings.Contains(code, "h") {
		if st := statusOf(code); st.State != sched.Queued {
			return fmt.Errorf("%w: grid engine job %s is %s (%s); only a held job can be released", sched.ErrUnsupported, id, st.State, code)
		}
		return nil
	}
	if _, err := s.run(ctx, nil, nil, "qrls", id); err != nil {
		return s.notFound(err, id)
	}
	return nil
}

// Suspend implements sched.Suspender (qmod -sj): the job's processes are
// stopped. Only a running job can be suspended.
func (s *Scheduler) Suspend(ctx context.Context, id string) error {
	code, err := s.state(ctx, id)
	if err != nil {
		return err
	}
	switch statusOf(code).State {
	case sched.Suspended:
		return nil
	case sched.Running:
	default:
		return fmt.Errorf("%w: grid engine job %s is %s (%s); only a running job can be suspended", sched.ErrUnsupported, id, statusOf(code).State, code)
	}
	if _, err := s.run(ctx, nil, nil, "qmod", "-sj", id); err != nil {
		return s.notFound(err, id)
	}
	return nil
}

// Resume implements sched.Suspender (qmod -usj). A job suspended by its
// queue (S) or a load threshold (T) stays so: ErrUnsupported.
func (s *Scheduler) Resume(ctx context.Context, id string) error {
	code, err := s.state(ctx, id)
	if err != nil {
		return err
	}
	switch st := statusOf(code); {
	case st.State == sched.Running:
		return nil
	case st.State != sched.Suspended:
		return fmt.Errorf("%w: grid engine job %s is %s (%s); only a suspended job can be resumed", sched.ErrUnsupported, id, st.State, code)
	case !strings.Contains(code, "s"):
		return fmt.Errorf("%w: grid engine job %s is suspended by its queue (%s), not by itself", sched.ErrUnsupported, id, code)
	}
	if _, err := s.run(ctx, nil, nil, "qmod", "-usj", id); err != nil {
		return s.notFound(err, id)
	}
	return nil
}

// notFound turns a client's "no such job" into ErrNotFound.
func (s *Scheduler) notFound(err error, id string) error {
	if said(err, "does not exist", "invalid queue or job") {
		return fmt.Errorf("grid engine job %s: %w (%w)", id, sched.ErrNotFound, err)
	}
	return err
}

// Queue-instance state letters that keep a queue from starting jobs:
// u(nknown), a(larm), A(larm), C/D (calendar), s/S (suspended),
// d(isabled), E(rror), c (configuration ambiguous), o (orphaned).
const unusable = "uaACDsSdEco"

// Describe implements sched.Describer: the queue's state, its cores (slots)
// in all, in use and free, and the jobs running in it and pending in the
// cell, from one qstat -f.
func (s *Scheduler) Describe(ctx context.Context) (map[string]any, error) {
	args := []string{"-f", "-u", "*", "-xml"}
	if s.opts.Queue != "" {
		args = append(args, "-q", s.opts.Queue)
	}
	out, err := s.run(ctx, nil, nil, "qstat", args...)
	if err != nil {
		return nil, err
	}
	l, err := parseQstat(out)
	if err != nil {
		return nil, err
	}
	return describe(s.opts.Queue, l), nil
}

func describe(queue string, l *qstatList) map[string]any {
	total, used, free, up := 0, 0, 0, 0
	hosts := map[string]int{} // free slots by host
	var down []string
	for _, q := range l.instances {
		total += q.Total
		used += q.Used + q.Resv
		_, host, _ := strings.Cut(q.Name, "@")
		if host != "" {
			hosts[host] += 0
		}
		if strings.ContainsAny(q.State, unusable) {
			down = append(down, q.Name+" ("+q.State+")")
			continue
		}
		up++
		free += max(0, q.Total-q.Used-q.Resv)
		if host != "" {
			hosts[host] += max(0, q.Total-q.Used-q.Resv)
		}
	}
	running, pending, held := 0, 0, 0
	for _, id := range l.order {
		switch statusOf(l.jobs[id].State).State {
		case sched.Running, sched.Suspended:
			running++
		case sched.Queued:
			pending++
		case sched.Held:
			held++
		}
	}
	state := "up"
	switch {
	case len(l.instances) == 0:
		state = "no queue instances"
	case up == 0:
		state = "down"
	case len(down) > 0:
		state = "degraded"
	}
	if queue == "" {
		queue = "*"
	}
	m := map[string]any{
		"queue":               queue,
		"state":               state,
		"hosts":               len(hosts),
		"free_cores_per_node": hosts,
		"total_cores":         total,
		"used_cores":          used,
		"free_cores":          free,
		"running_jobs":        running,
		"queued_jobs":         pending,
		"held_jobs":           held,
	}
	if len(down) > 0 {
		m["unavailable"] = down
	}
	return m
}
