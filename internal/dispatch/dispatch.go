// Package dispatch moves jobs through their life on the engines: it hands
// pending jobs to their environment's scheduler, acts on cancel, hold and
// release, and reconciles what the engines say with what the store holds,
// so that a job whose agent went silent still ends with a reason.
package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/internal/account"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Options configure a Dispatcher.
type Options struct {
	// GatewayURL is the URL jobs reach the gateway at (HPCGATE_URL).
	GatewayURL string
	// GatewayURLs are, by environment, the URLs its jobs reach the gateway
	// at where that is not GatewayURL (nodes on another network).
	GatewayURLs map[string]string
	// CACertFile is the CA certificate jobs trust (HPCGATE_CACERT); "" for
	// a certificate the system trusts.
	CACertFile string
	// AgentCommand is the argv that starts the agent in a job
	// (default: this executable with "agent").
	AgentCommand []string
	// WorkRoot is where jobs' working directories go when their
	// environment names none.
	WorkRoot string
	// PollInterval is how often engines are polled (default 2s).
	PollInterval time.Duration
	// LostAfter is how long a job may stay unfinished in the store after
	// its engine says it ended before it is failed (default 5s).
	LostAfter time.Duration
	// ReplicaID names this gateway among replicas sharing a database; it
	// must stay the same across restarts of one replica (default: the
	// host name).
	ReplicaID string
	// ClaimFor is how long a replica may take to hand a claimed job to
	// its engine before another replica may (default 30s).
	ClaimFor time.Duration
	// CancelGrace is how long the agent of a canceled container job on a
	// queueing engine has to stop its container in order before the
	// engine's own cancel (default 15s): an engine's kill (Grid Engine's
	// qdel) can take the agent's helpers along and leave the container.
	CancelGrace time.Duration
	Logger      *slog.Logger
	// Metrics counts submissions and engine errors (nil: nothing).
	Metrics Metrics
}

// Metrics receives the dispatcher's counts. Its methods must not block.
type Metrics interface {
	// Submitted counts a job an engine accepted.
	Submitted(environment string)
	// EngineError counts a failed engine call (op: submit, poll, cancel).
	EngineError(environment, op string)
}

// Dispatcher is the job mover. Create with New, then Run.
type Dispatcher struct {
	store  store.Store
	cat    *catalog.Catalog
	scheds map[string]sched.Scheduler
	opts   Options
	log    *slog.Logger
	wake   chan struct{}

	mu        sync.Mutex
	endedSeen map[string]time.Time // job id → when its engine first said it ended
	// tasks are the jobs handed to (or found in) an engine that keeps
	// something per task until told to forget it, by job id.
	tasks map[string]task
	// deferred are engines' cancels of canceled container jobs, made
	// after the agent's grace (Options.CancelGrace), by job id.
	deferred map[string]deferredCancel
	// usage are multi-node jobs whose engine's accounting is awaited
	// (usage.go), by job id.
	usage map[string]acctWait
	// unoffered are pending jobs whose environment this replica does not
	// offer, and since when it has seen them (unofferedGrace).
	unoffered map[string]time.Time
}

// task is a job in an engine that can forget it.
type task struct {
	env, backendID string
	keep           bool // the agent never reported: keep the engine's files for a post-mortem
}

// walltimeMargin is how much longer than a job's walltime its engine lets
// it run. The walltime is the command's: the agent stops the command then
// itself (and its container, in order), uploads the outputs and reports,
// and it fetched the inputs before; the engine's limit is the backstop,
// which kills everything at once (Grid Engine's h_rt kills the agent,
// and for a job run as its account the reaper too, while podman is
// still stopping the container).
const walltimeMargin = 60

// engineResources is what the engine is asked for a job's resources r:
// the walltime plus walltimeMargin, but no more than the environment's
// maximum limit (0: none; the engine's own limit would refuse more), and
// never less than the job's own.
func engineResources(r job.Resources, limit int64) job.Resources {
	if r.WalltimeS > 0 {
		w := r.WalltimeS + walltimeMargin
		if limit > 0 {
			w = max(min(w, limit), r.WalltimeS)
		}
		r.WalltimeS = w
	}
	return r
}

// forgetFunc returns s's Forget, if it is a sched.Forgetter.
func forgetFunc(s sched.Scheduler) func(ctx context.Context, id string) error {
	if f, ok := s.(sched.Forgetter); ok {
		return func(_ context.Context, id string) error { return f.Forget(id) }
	}
	return nil
}

// New returns a dispatcher. scheds maps each environment's name to its
// scheduler (several environments may share one). It starts nothing.
func New(st store.Store, cat *catalog.Catalog, scheds map[string]sched.Scheduler, opts Options) *Dispatcher {
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	if opts.LostAfter <= 0 {
		opts.LostAfter = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReplicaID == "" {
		opts.ReplicaID, _ = os.Hostname()
	}
	if opts.ClaimFor <= 0 {
		opts.ClaimFor = 30 * time.Second
	}
	if opts.CancelGrace <= 0 {
		opts.CancelGrace = 15 * time.Second
	}
	return &Dispatcher{store: st, cat: cat, scheds: scheds, opts: opts, log: opts.Logger, wake: make(chan struct{}, 1), endedSeen: map[string]time.Time{}, tasks: map[string]task{},
		deferred: map[string]deferredCancel{}, usage: map[string]acctWait{}, unoffered: map[string]time.Time{}}
}

// Notify tells the dispatcher that a job is waiting to be submitted.
func (d *Dispatcher) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run submits and reconciles until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	poll := time.NewTicker(d.opts.PollInterval)
	defer poll.Stop()
	d.submitPending(ctx)
	d.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			// no cancel is left undone by a gateway that stops
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			d.cancelDeferred(cctx, true)
			cancel()
			return nil
		case <-d.wake:
			d.submitPending(ctx)
		case <-poll.C:
			// reconcile first: a job waiting for one that just ended
			// goes to its engine in the same pass
			d.reconcile(ctx)
			d.submitPending(ctx)
			d.cancelDeferred(ctx, false)
		}
	}
}

func (d *Dispatcher) schedFor(j *job.Job) (sched.Scheduler, *catalog.Environment, error) {
	env, err := d.cat.Environment(j.Environment)
	if err != nil {
		return nil, nil, err
	}
	s, ok := d.scheds[env.Name]
	if !ok {
		return nil, nil, fmt.Errorf("environment %s has no scheduler", env.Name)
	}
	return s, env, nil
}

// engine returns the scheduler of a job's environment.
func (d *Dispatcher) engine(j *job.Job) (sched.Scheduler, bool) {
	s, ok := d.scheds[j.Environment]
	return s, ok
}

// OtherReplicaError says that a job runs in another gateway replica's
// local executor, which only that replica can reach. It is
// sched.ErrUnsupported (errors.Is); its message is for the job's owner,
// who need not know replicas' names (Replica is for the log).
type OtherReplicaError struct{ Replica string }

func (e *OtherReplicaError) Error() string {
	return "the job runs in the local executor of another replica of this gateway, which alone can do this; try again through that replica (a cancel works through any)"
}

// Is makes an OtherReplicaError match sched.ErrUnsupported.
func (e *OtherReplicaError) Is(target error) bool { return target == sched.ErrUnsupported }

// reachable returns the engine of a job that this replica can act on: a
// job in another replica's local executor is out of its reach.
func (d *Dispatcher) reachable(j *job.Job) (sched.Scheduler, error) {
	s, ok := d.engine(j)
	if !ok {
		return nil, fmt.Errorf("%w: environment %s has no engine here", sched.ErrUnsupported, j.Environment)
	}
	if isPerProcess(s) && j.BackendID != "" && j.ClaimedBy != d.opts.ReplicaID {
		return nil, &OtherReplicaError{Replica: j.ClaimedBy}
	}
	return s, nil
}

// submitPending hands every pending job to its engine, oldest first.
func (d *Dispatcher) submitPending(ctx context.Context) {
	d.mu.Lock()
	for id, since := range d.unoffered {
		if time.Since(since) > 2*unofferedGrace { // failed, or taken by another replica
			delete(d.unoffered, id)
		}
	}
	d.mu.Unlock()
	tok := ""
	active := map[string]int{} // a capped sweep's jobs in engines, counted once a pass
	deps := depsCache{}
	// a sweep's jobs bound for an engine that makes arrays, by sweep and
	// environment, in the order met
	batches := map[string][]*job.Job{}
	var order []string
	defer func() {
		for _, key := range order {
			jobs := batches[key]
			eng, _ := d.engine(jobs[0])
			limit := jobs[0].SweepMaxRunning
			if limit > 0 {
				// the array's own limit keeps the cap in the engine
				n, err := d.sweepActive(ctx, jobs[0].SweepID)
				if err != nil {
					d.log.Error("count a sweep's jobs", "sweep", jobs[0].SweepID, "err", err)
					continue
				}
				if limit = limit - n; limit <= 0 {
					continue // it waits for one of its sweep's to end
				}
			}
			var err error
			if len(jobs) == 1 {
				err = d.submit(ctx, jobs[0])
			} else {
				err = d.submitArrays(ctx, eng.(sched.ArraySubmitter), jobs, limit)
			}
			if err != nil && ctx.Err() == nil {
				d.log.Error("submit a sweep's jobs", "sweep", jobs[0].SweepID, "err", err)
			}
		}
	}()
	for {
		jobs, next, err := d.store.ListJobs(ctx, store.JobFilter{States: []job.State{job.Pending}, Oldest: true, Limit: 200, PageToken: tok})
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("list pending jobs", "err", err)
			}
			return
		}
		for _, j := range jobs {
			if len(j.After) > 0 {
				met, why, err := d.waitFor(ctx, j, deps)
				if err != nil {
					d.log.Error("look up a job's dependencies", "job_id", j.ID, "err", err)
					continue
				}
				if why != "" {
					d.cancelUnmet(ctx, j, why)
					continue
				}
				if !met {
					continue // it waits for its dependencies
				}
			}
			if j.SweepID != "" {
				if eng, ok := d.engine(j); ok {
					if _, ok := eng.(sched.ArraySubmitter); ok {
						key := j.SweepID + "\x00" + j.Environment
						if _, ok := batches[key]; !ok {
							order = append(order, key)
						}
						batches[key] = append(batches[key], j)
						continue // handed on as one array below
					}
				}
			}
			if j.SweepMaxRunning > 0 {
				n, ok := active[j.SweepID]
				if !ok {
					if n, err = d.sweepActive(ctx, j.SweepID); err != nil {
						d.log.Error("count a sweep's jobs", "sweep", j.SweepID, "err", err)
						continue
					}
				}
				if n >= j.SweepMaxRunning {
					active[j.SweepID] = n
					continue // it waits for one of its sweep's to end
				}
				active[j.SweepID] = n + 1
			}
			if err := d.submit(ctx, j); err != nil && ctx.Err() == nil {
				d.log.Error("submit job", "job_id", j.ID, "err", err)
			}
		}
		if next == "" {
			return
		}
		tok = next
	}
}

// sweepActive counts the jobs of a sweep that an engine has: queued,
// starting, running, suspended or finishing.
func (d *Dispatcher) sweepActive(ctx context.Context, sweep string) (int, error) {
	return store.CountJobs(ctx, d.store, store.JobFilter{SweepID: sweep, States: []job.State{job.Queued, job.Starting, job.Running, job.Suspended, job.Finishing}})
}

var errClaimed = errors.New("claimed by another replica")

// unofferedGrace is how long a pending job whose environment this
// replica does not offer is left to the others: replicas' configurations
// differ during a rolling change, and one that lacked an environment
// failed the jobs another would have run.
var unofferedGrace = 5 * time.Minute

func (d *Dispatcher) submit(ctx context.Context, j *job.Job) error {
	s, env, err := d.schedFor(j)
	if err != nil {
		d.mu.Lock()
		since, seen := d.unoffered[j.ID]
		if !seen {
			since = time.Now()
			d.unoffered[j.ID] = since
		}
		d.mu.Unlock()
		if time.Since(since) < unofferedGrace {
			if !seen {
				d.log.Info("a pending job's environment is not offered here: left to other replicas", "job_id", j.ID, "environment", j.Environment)
			}
			return nil
		}
		d.log.Error("job cannot be submitted", "job_id", j.ID, "environment", j.Environment, "err", err)
		return d.fail(ctx, j.ID, fmt.Sprintf("cannot be submitted: the environment %s is not offered by this gateway any more (no replica took the job in %v)", j.Environment, unofferedGrace))
	}
	task, err := d.prepare(ctx, j, env)
	if err != nil || task == nil {
		return err
	}
	backendID, err := s.Submit(ctx, *task)
	if err != nil {
		return d.refused(ctx, s, j, err)
	}
	return d.submitted(ctx, s, j, backendID)
}

// submitArrays hands jobs of one sweep and environment to an engine that
// submits arrays, as arrays of at most sched.MaxArray, each on its own:
// one that fails leaves the others as they are. With a limit (at most
// that many of the sweep's jobs running), only the first array goes in a
// pass, whose limit then holds; the rest wait for the next passes, as
// single jobs over the cap do.
func (d *Dispatcher) submitArrays(ctx context.Context, s sched.ArraySubmitter, jobs []*job.Job, limit int) error {
	for start := 0; start < len(jobs); start += sched.MaxArray {
		if err := d.submitArray(ctx, s, jobs[start:min(start+sched.MaxArray, len(jobs))], limit); err != nil {
			return err
		}
		if limit > 0 {
			break
		}
	}
	return nil
}

// submitArray hands up to sched.MaxArray jobs of one sweep and
// environment to an engine that submits arrays as one array job (at most
// limit running at once), or one by one where it cannot.
func (d *Dispatcher) submitArray(ctx context.Context, s sched.ArraySubmitter, jobs []*job.Job, limit int) error {
	eng := s.(sched.Scheduler)
	_, env, err := d.schedFor(jobs[0])
	if err != nil {
		for _, j := range jobs {
			if err := d.submit(ctx, j); err != nil {
				return err
			}
		}
		return nil
	}
	var tasks []sched.Task
	var taken []*job.Job
	for _, j := range jobs {
		task, err := d.prepare(ctx, j, env)
		if err != nil {
			return err
		}
		if task != nil {
			tasks, taken = append(tasks, *task), append(taken, j)
		}
	}
	if len(tasks) == 0 {
		return nil
	}
	ids, err := s.SubmitArray(ctx, tasks, limit)
	if errors.Is(err, sched.ErrUnsupported) {
		for i, j := range taken {
			id, err := eng.Submit(ctx, tasks[i])
			if err != nil {
				if err := d.refused(ctx, eng, j, err); err != nil {
					return err
				}
				continue
			}
			if err := d.submitted(ctx, eng, j, id); err != nil {
				return err
			}
		}
		return nil
	}
	if err != nil {
		for _, j := range taken {
			if err := d.refused(ctx, eng, j, err); err != nil {
				return err
			}
		}
		return nil
	}
	for i, j := range taken {
		if err := d.submitted(ctx, eng, j, ids[i]); err != nil {
			return err
		}
	}
	return nil
}

// prepare claims a pending job for this replica, makes its token and
// returns the task its engine runs; nil (and no error) when the job has
// moved on or another replica has it.
func (d *Dispatcher) prepare(ctx context.Context, j *job.Job, env *catalog.Environment) (*sched.Task, error) {
	// Claim the job, so that of several replicas one hands it to the
	// engine. A claim that runs out (its replica died) may be taken over;
	// engines' Submit is idempotent by job id, so a job submitted just
	// before the crash is not submitted twice.
	now := time.Now()
	_, err := d.store.UpdateJob(ctx, j.ID, func(j *job.Job) error {
		if j.State != job.Pending {
			return errStateMoved
		}
		if j.ClaimedBy != "" && j.ClaimedBy != d.opts.ReplicaID && now.Before(j.ClaimedUntil) {
			return errClaimed
		}
		j.ClaimedBy, j.ClaimedUntil = d.opts.ReplicaID, now.Add(d.opts.ClaimFor)
		return nil
	})
	if errors.Is(err, errStateMoved) || errors.Is(err, errClaimed) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	secret, hash := auth.NewSecret()
	if err := d.store.CreateToken(ctx, store.Token{ID: auth.NewID(), Hash: hash, User: j.Owner, Name: "job " + j.ID, Scopes: []string{"job"}, JobID: j.ID, CreatedAt: time.Now().UTC()}); err != nil {
		return nil, err
	}
	root := env.WorkdirRoot
	if root == "" {
		root = d.opts.WorkRoot
	}
	env2 := map[string]string{}
	for k, v := range env.Env {
		if v != "" { // ${NAME} of a variable the gateway does not have
			env2[k] = v
		}
	}
	env2["HPCGATE_URL"], env2["HPCGATE_TOKEN"], env2["HPCGATE_JOB_ID"] = cmp.Or(d.opts.GatewayURLs[env.Name], d.opts.GatewayURL), secret, j.ID
	if len(env.Launcher) > 0 {
		env2["HPCGATE_LAUNCH"] = strings.Join(env.Launcher, " ")
	}
	task := &sched.Task{
		JobID:     j.ID,
		Name:      sched.SafeName(j.Name),
		Command:   d.opts.AgentCommand,
		Env:       env2,
		WorkDir:   filepath.Join(root, j.ID),
		Resources: engineResources(j.Resources, env.Max.WalltimeS),
		Project:   j.Project,
	}
	task.Contained = inContainer(j) && env.ContainerRuntime != ""
	if j.Account != "" {
		// The job runs as its owner's account, in a directory of its own
		// that holds everything of the job (sched.Task.Account).
		a, err := account.Lookup(j.Account)
		if err != nil {
			d.log.Error("the job's account is gone", "job_id", j.ID, "account", j.Account, "err", err)
			return nil, d.fail(ctx, j.ID, "The job's account "+j.Account+" does not exist on the machine any more; ask the operator")
		}
		// An account that is the gateway's own (a map naming it) is no
		// other account: its jobs run as in mode single, which the local
		// executor sandboxes.
		if a.UID != os.Geteuid() {
			task.Account = a
			task.WorkDir = filepath.Join(root, j.ID, "work")
		}
	}
	if d.opts.CACertFile != "" {
		// A copy travels with the job, readable by its account only: the
		// job cannot read the gateway's data directory.
		pem, err := os.ReadFile(d.opts.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("the CA certificate for jobs: %w", err)
		}
		task.Secret = map[string]string{caSecret: string(pem)}
		env2["HPCGATE_CACERT"] = task.SecretPath(caSecret)
	}
	return task, nil
}

// refused fails a job its engine would not take.
func (d *Dispatcher) refused(ctx context.Context, s sched.Scheduler, j *job.Job, err error) error {
	if ctx.Err() != nil {
		return err
	}
	// The engine's own words (command lines, stderr, paths) are for
	// the operator; the job says what happened in the user's terms.
	d.log.Error("the engine refused a job", "job_id", j.ID, "environment", j.Environment, "scheduler", s.Name(), "err", err)
	if d.opts.Metrics != nil {
		d.opts.Metrics.EngineError(j.Environment, "submit")
	}
	return d.fail(ctx, j.ID, refusal(s.Name(), err))
}

// submitted records that j's engine has it as backendID.
func (d *Dispatcher) submitted(ctx context.Context, s sched.Scheduler, j *job.Job, backendID string) error {
	d.track(s, j.ID, j.Environment, backendID)
	if d.opts.Metrics != nil {
		d.opts.Metrics.Submitted(j.Environment)
	}
	updated, err := d.store.UpdateJob(ctx, j.ID, func(j *job.Job) error {
		if j.State != job.Pending {
			return errStateMoved
		}
		j.ClaimedUntil = time.Time{} // the claim has done its work; ClaimedBy stays: whose engine runs it
		j.Scheduler, j.BackendID = s.Name(), backendID
		j.Submissions++
		return j.SetState(job.Queued, "submitted to "+s.Name()+" as "+backendID, time.Now())
	})
	if errors.Is(err, errStateMoved) {
		// Canceled (or held) while being submitted: take it back.
		if cur, err := d.store.GetJob(ctx, j.ID); err == nil && cur.State.Terminal() {
			s.Cancel(ctx, backendID)
		}
		return nil
	}
	if err != nil {
		return err
	}
	d.log.Info("job submitted", "job_id", updated.ID, "scheduler", s.Name(), "backend_id", backendID)
	return nil
}

var errStateMoved = errors.New("the job's state moved on")

// caSecret is the name of the CA certificate's file among a task's
// secrets: jobs get HPCGATE_CACERT pointing at it.
const caSecret = "HPCGATE_CA"

// engineNames are the engines' names as users know them.
var engineNames = map[string]string{"slurm": "Slurm", "sge": "Grid Engine", "local": "The local executor"}

// refusal is a job's error when its engine would not take it: what
// happened, in the user's terms. The engine's own message goes to the log.
func refusal(engine string, err error) string {
	who, ok := engineNames[engine]
	if !ok {
		who = "The engine (" + engine + ")"
	}
	var why string
	switch {
	case errors.Is(err, sched.ErrUnsupported):
		why = "the job asks for resources or features this environment does not offer"
	case errors.Is(err, context.DeadlineExceeded):
		why = "it did not answer in time; try again later"
	case errors.Is(err, exec.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		why = "its commands are not installed where the gateway runs; ask the operator"
	case errors.Is(err, fs.ErrPermission):
		why = "the gateway is not allowed to submit to it; ask the operator"
	default:
		why = "it answered with an error; the operator finds its message in the gateway's log under this job's id"
	}
	return who + " refused the job: " + why
}

// track remembers a job in an engine that keeps files per task.
func (d *Dispatcher) track(s sched.Scheduler, id, env, backendID string) {
	if forgetFunc(s) == nil || backendID == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, known := d.tasks[id]; !known {
		d.tasks[id] = task{env: env, backendID: backendID}
	}
}

// forgetEnded tells engines to drop the tasks of jobs that have left the
// active states (active holds the ids still active), once the engine says
// the task has ended: by then the agent has reported and the outputs are
// safe in the store. A job that ended without its agent reporting is kept
// in the engine, for a post-mortem.
func (d *Dispatcher) forgetEnded(ctx context.Context, active map[string]bool) {
	byEnv := map[string]map[string]string{} // env → backend id → job id
	d.mu.Lock()
	for id, t := range d.tasks {
		if active[id] {
			continue
		}
		if t.keep {
			delete(d.tasks, id)
			continue
		}
		if byEnv[t.env] == nil {
			byEnv[t.env] = map[string]string{}
		}
		byEnv[t.env][t.backendID] = id
	}
	d.mu.Unlock()
	d.pollEnded(ctx, byEnv, func(s sched.Scheduler) bool { return forgetFunc(s) != nil },
		func(s sched.Scheduler, b, id string, st sched.Status) {
			switch st.State {
			case sched.Done:
				if err := forgetFunc(s)(ctx, b); err != nil {
					d.log.Warn("engine could not forget an ended task", "job_id", id, "backend_id", b, "err", err)
					return
				}
				d.log.Debug("engine forgot the ended task", "job_id", id, "backend_id", b)
			case sched.Gone:
			case sched.Queued:
				// The job ended while its task waits in the engine:
				// canceled through another replica, which cannot reach this
				// one's local executor. Left there, it would start later
				// and hold a slot.
				if err := s.Cancel(ctx, b); err != nil {
					d.log.Warn("cancel the queued task of an ended job", "job_id", id, "backend_id", b, "err", err)
				}
				return // forgotten once it has ended
			default:
				return // still on its way out: ask again next time
			}
			d.mu.Lock()
			delete(d.tasks, id)
			d.mu.Unlock()
		})
}

// pollEnded polls, once an environment, the engines whose jobs byEnv
// names (environment → backend id → job id) and that want says to ask,
// and calls each with every job's status.
func (d *Dispatcher) pollEnded(ctx context.Context, byEnv map[string]map[string]string, want func(sched.Scheduler) bool, each func(s sched.Scheduler, backendID, jobID string, st sched.Status)) {
	for env, m := range byEnv {
		s, ok := d.scheds[env]
		if !ok || !want(s) {
			continue
		}
		ids := make([]string, 0, len(m))
		for b := range m {
			ids = append(ids, b)
		}
		st, err := s.Poll(ctx, ids)
		if err != nil {
			d.log.Warn("poll engine", "environment", env, "err", err)
			if d.opts.Metrics != nil {
				d.opts.Metrics.EngineError(env, "poll")
			}
			continue
		}
		for b, id := range m {
			each(s, b, id, st[b])
		}
	}
}

func (d *Dispatcher) fail(ctx context.Context, id, reason string) error {
	_, err := d.store.UpdateJob(ctx, id, func(j *job.Job) error {
		if j.State.Terminal() {
			return nil
		}
		j.Error = reason
		return j.SetState(job.Failed, reason, time.Now())
	})
	return err
}

// reconcile asks each engine about the jobs it holds and corrects the store.
func (d *Dispatcher) reconcile(ctx context.Context) {
	active := []job.State{job.Queued, job.Held, job.Starting, job.Running, job.Suspended, job.Finishing}
	bySched := map[string][]*job.Job{}
	activeIDs := map[string]bool{}
	tok := ""
	for {
		jobs, next, err := d.store.ListJobs(ctx, store.JobFilter{States: active, InEngine: true, Oldest: true, Limit: 500, PageToken: tok})
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error("list active jobs", "err", err)
			}
			return
		}
		for _, j := range jobs {
			if j.BackendID == "" {
				continue
			}
			// An engine inside one replica is polled by that replica only.
			s, ok := d.engine(j)
			if ok && isPerProcess(s) && j.ClaimedBy != d.opts.ReplicaID {
				continue
			}
			activeIDs[j.ID] = true
			if ok {
				d.track(s, j.ID, j.Environment, j.BackendID)
			}
			d.awaitUsage(j)
			bySched[j.Environment] = append(bySched[j.Environment], j)
		}
		if next == "" {
			break
		}
		tok = next
	}
	for name, jobs := range bySched {
		s, ok := d.scheds[name]
		if !ok {
			continue
		}
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.BackendID
		}
		st, err := s.Poll(ctx, ids)
		if err != nil {
			d.log.Warn("poll engine", "environment", name, "err", err)
			if d.opts.Metrics != nil {
				d.opts.Metrics.EngineError(name, "poll")
			}
			continue
		}
		for _, j := range jobs {
			d.reconcileOne(ctx, j, st[j.BackendID])
		}
	}
	d.settleUsage(ctx, activeIDs) // before an engine forgets the jobs
	d.forgetEnded(ctx, activeIDs)
	d.mu.Lock()
	for id, t := range d.endedSeen {
		if time.Since(t) > time.Hour {
			delete(d.endedSeen, id)
		}
	}
	d.mu.Unlock()
}

func isPerProcess(s sched.Scheduler) bool {
	_, ok := s.(sched.PerProcess)
	return ok
}

func (d *Dispatcher) reconcileOne(ctx context.Context, j *job.Job, st sched.Status) {
	now := time.Now()
	switch st.State {
	case sched.Done, sched.Gone:
		// The agent reports the end itself before it exits; give a late
		// report a moment before deciding the agent is lost.
		d.mu.Lock()
		first, seen := d.endedSeen[j.ID]
		if !seen {
			d.endedSeen[j.ID] = now
		}
		d.mu.Unlock()
		if !seen || now.Sub(first) < d.opts.LostAfter {
			return
		}
		lost := false
		_, err := d.store.UpdateJob(ctx, j.ID, func(j *job.Job) error {
			lost = false
			if j.State.Terminal() {
				return nil
			}
			if j.Usage == nil && st.Usage != nil {
				j.Usage = st.Usage
			}
			if st.Canceled {
				return j.SetState(job.Canceled, "canceled in the engine", now)
			}
			reason := "the job ended in the engine without its agent reporting"
			if st.State == sched.Gone {
				reason = "the engine no longer knows the job, and its agent never reported an end"
			}
			if st.ExitCode != nil && *st.ExitCode >= 0 {
				// the agent's, not the command's: the agent ran, and
				// exited without a word to the gateway (it could not
				// reach it, or could not start); -1 is no exit code (its
				// processes were killed: the reason says so)
				reason += fmt.Sprintf(" (the agent exited with code %d; its own log is in the engine's output of the job)", *st.ExitCode)
			}
			if st.Reason != "" {
				reason += ": " + st.Reason
			}
			j.Error = reason
			lost = true
			return j.SetState(job.Failed, reason, now)
		})
		if err != nil {
			d.log.Error("reconcile ended job", "job_id", j.ID, "err", err)
		}
		d.mu.Lock()
		delete(d.endedSeen, j.ID)
		if t, ok := d.tasks[j.ID]; ok && lost {
			t.keep = true
			d.tasks[j.ID] = t
		}
		d.mu.Unlock()
	case sched.Suspended:
		if j.State == job.Running || j.State == job.Starting {
			d.setState(ctx, j.ID, job.Suspended, "suspended in the engine")
		}
	case sched.Running:
		if j.State == job.Suspended {
			d.setState(ctx, j.ID, job.Running, "resumed in the engine")
		}
	case sched.Held:
		if j.State == job.Queued {
			d.setState(ctx, j.ID, job.Held, "held in the engine")
		}
	case sched.Queued:
		if j.State == job.Held {
			d.setState(ctx, j.ID, job.Queued, "released in the engine")
		}
	}
}

func (d *Dispatcher) setState(ctx context.Context, id string, s job.State, reason string) {
	_, err := d.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(s, reason, time.Now()) })
	if err != nil && !errors.Is(err, job.ErrInvalidTransition) {
		d.log.Error("set job state", "job_id", id, "state", s, "err", err)
	}
}

// Cancel ends a job: it is canceled in the store first (so its token stops
// working), then in its engine. A job that has ended already answers an
// error wrapping job.ErrInvalidTransition.
func (d *Dispatcher) Cancel(ctx context.Context, id, reason string) (*job.Job, error) {
	agentActive := false
	j, err := d.store.UpdateJob(ctx, id, func(j *job.Job) error {
		if j.State.Terminal() {
			return &job.TransitionError{From: j.State, To: job.Canceled, Why: "it has ended already"}
		}
		agentActive = j.State == job.Starting || j.State == job.Running || j.State == job.Finishing
		return j.SetState(job.Canceled, reason, time.Now())
	})
	if err != nil {
		return nil, err
	}
	if j.BackendID != "" {
		// Another replica's local executor is out of reach; the job's
		// agent notices the cancel itself within seconds (its token stops
		// working) and stops the command.
		if s, ok := d.engine(j); ok && (!isPerProcess(s) || j.ClaimedBy == d.opts.ReplicaID) {
			if agentActive && !isPerProcess(s) && inContainer(j) {
				// The agent notices within its heartbeat and stops its
				// container in order; the engine's cancel follows.
				d.mu.Lock()
				d.deferred[j.ID] = deferredCancel{env: j.Environment, backendID: j.BackendID, at: time.Now().Add(d.opts.CancelGrace)}
				d.mu.Unlock()
			} else if err := s.Cancel(ctx, j.BackendID); err != nil && !errors.Is(err, sched.ErrNotFound) {
				d.log.Error("cancel in engine", "job_id", id, "err", err)
			}
		}
	}
	return j, nil
}

// deferredCancel is an engine's cancel due at a time (see Cancel).
type deferredCancel struct {
	env, backendID string
	at             time.Time
}

// inContainer tells whether j's steps run in a container.
func inContainer(j *job.Job) bool {
	r, err := catalog.DecodeRecipe(j.TemplateDoc)
	return err == nil && r.InContainer()
}

// cancelDeferred makes the engines' cancels that are due (all, with all).
// A job that ended meanwhile is no longer in its engine: nothing to do.
func (d *Dispatcher) cancelDeferred(ctx context.Context, all bool) {
	d.mu.Lock()
	var due map[string]deferredCancel
	for id, c := range d.deferred {
		if all || time.Now().After(c.at) {
			if due == nil {
				due = map[string]deferredCancel{}
			}
			due[id] = c
			delete(d.deferred, id)
		}
	}
	d.mu.Unlock()
	for id, c := range due {
		s, ok := d.scheds[c.env]
		if !ok {
			continue
		}
		if err := s.Cancel(ctx, c.backendID); err != nil && !errors.Is(err, sched.ErrNotFound) {
			d.log.Error("cancel in engine", "job_id", id, "err", err)
		}
	}
}

// Hold keeps a job that has not started from starting; reason is why, in
// the owner's words ("held by the user", or the admin's disabling).
func (d *Dispatcher) Hold(ctx context.Context, id, reason string) (*job.Job, error) {
	j, err := d.store.GetJob(ctx, id)
	if err != nil {
		return nil, err
	}
	switch j.State {
	case job.Held:
		return j, nil
	case job.Pending:
		out, err := d.store.UpdateJob(ctx, id, func(j *job.Job) error {
			if j.State != job.Pending {
				return &job.TransitionError{From: j.State, To: job.Held, Why: "only pending and queued jobs can be held"}
			}
			return j.SetState(job.Held, reason, time.Now())
		})
		// submitted meanwhile: held as a queued job (it said "the job is
		// queued; it cannot become held", found by the eighth probe)
		if te := (*job.TransitionError)(nil); !errors.As(err, &te) || te.From != job.Queued {
			return out, err
		}
		if j, err = d.store.GetJob(ctx, id); err != nil {
			return nil, err
		}
		if j.State != job.Queued {
			break
		}
		fallthrough
	case job.Queued:
		return d.holdQueued(ctx, j, reason)
	}
	return nil, &job.TransitionError{From: j.State, To: job.Held, Why: "only pending and queued jobs can be held"}
}

// holdQueued holds the queued job j in its engine, then in the store.
func (d *Dispatcher) holdQueued(ctx context.Context, j *job.Job, reason string) (*job.Job, error) {
	h, err := d.holder(j, "hold a queued job")
	if err != nil {
		return nil, err
	}
	if err := h.Hold(ctx, j.BackendID); err != nil {
		return nil, err
	}
	return d.store.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(job.Held, reason, time.Now()) })
}

// holder is j's engine, which must hold and release jobs to do what.
func (d *Dispatcher) holder(j *job.Job, what string) (sched.Holder, error) {
	s, err := d.reachable(j)
	if err != nil {
		return nil, err
	}
	h, canHold := s.(sched.Holder)
	if !canHold {
		return nil, fmt.Errorf("%w: %s cannot %s", sched.ErrUnsupported, j.Scheduler, what)
	}
	return h, nil
}

// Release lets a held job go on; reason says who released it.
func (d *Dispatcher) Release(ctx context.Context, id, reason string) (*job.Job, error) {
	j, err := d.store.GetJob(ctx, id)
	if err != nil {
		return nil, err
	}
	if j.State != job.Held {
		return nil, &job.TransitionError{From: j.State, To: job.Pending, Why: "only held jobs can be released"}
	}
	if j.BackendID == "" {
		j, err = d.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(job.Pending, reason, time.Now()) })
		if err == nil {
			d.Notify()
		}
		return j, err
	}
	h, err := d.holder(j, "release a job")
	if err != nil {
		return nil, err
	}
	if err := h.Release(ctx, j.BackendID); err != nil {
		return nil, err
	}
	return d.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(job.Queued, reason, time.Now()) })
}

// Suspend stops a running job in its engine.
func (d *Dispatcher) Suspend(ctx context.Context, id string) (*job.Job, error) {
	return d.setSuspended(ctx, id, true)
}

// Resume continues a suspended job.
func (d *Dispatcher) Resume(ctx context.Context, id string) (*job.Job, error) {
	return d.setSuspended(ctx, id, false)
}

func (d *Dispatcher) setSuspended(ctx context.Context, id string, on bool) (*job.Job, error) {
	j, err := d.store.GetJob(ctx, id)
	if err != nil {
		return nil, err
	}
	from, to, verb := []job.State{job.Starting, job.Running}, job.Suspended, "suspended"
	if !on {
		from, to, verb = []job.State{job.Suspended}, job.Running, "resumed"
	}
	if !slices.Contains(from, j.State) {
		return nil, &job.TransitionError{From: j.State, To: to, Why: fmt.Sprintf("only a %s job can be %s", from[len(from)-1], verb)}
	}
	s, err := d.reachable(j)
	if err != nil {
		return nil, err
	}
	sp, can := s.(sched.Suspender)
	if !can || j.BackendID == "" {
		return nil, fmt.Errorf("%w: the %s engine cannot suspend jobs", sched.ErrUnsupported, j.Scheduler)
	}
	if on {
		err = sp.Suspend(ctx, j.BackendID)
	} else {
		err = sp.Resume(ctx, j.BackendID)
	}
	if err != nil {
		return nil, err
	}
	return d.store.UpdateJob(ctx, id, func(j *job.Job) error { return j.SetState(to, verb+" by the user", time.Now()) })
}
