// Package job is the domain model of a job: its fields, its states and the
// state machine that says which transitions are allowed.
package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// State is where a job is in its life.
type State string

// The states. Terminal states never change.
const (
	Pending   State = "pending"   // accepted, not yet handed to an engine
	Held      State = "held"      // kept back until released
	Queued    State = "queued"    // handed to an engine, waiting for resources
	Starting  State = "starting"  // the agent runs: inputs, adapters
	Running   State = "running"   // the command runs
	Suspended State = "suspended" // stopped by the engine, may resume
	Finishing State = "finishing" // the agent uploads outputs
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Canceled  State = "canceled"
)

// States lists every state, in life order.
var States = []State{Pending, Held, Queued, Starting, Running, Suspended, Finishing, Succeeded, Failed, Canceled}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// Terminal reports whether s is final.
func (s State) Terminal() bool { return s == Succeeded || s == Failed || s == Canceled }

// Started reports whether the job's agent has begun (or the job is over).
func (s State) Started() bool {
	switch s {
	case Pending, Held, Queued:
		return false
	}
	return true
}

// ErrInvalidTransition is returned for a transition the state machine forbids.
var ErrInvalidTransition = errors.New("invalid state transition")

// next lists the states each state may move to. Every non-terminal state may
// also end failed or canceled.
var next = map[State][]State{
	Pending:   {Held, Queued, Starting, Running},
	Held:      {Pending, Queued},
	Queued:    {Held, Starting, Running, Suspended, Finishing, Succeeded, Pending},
	Starting:  {Running, Suspended, Finishing, Succeeded},
	Running:   {Suspended, Finishing, Succeeded},
	Suspended: {Running, Starting, Finishing},
	Finishing: {Succeeded},
}

// CanTransition reports whether a job may move from one state to another.
// Staying in the same non-terminal state is allowed (a no-op).
func CanTransition(from, to State) bool {
	if from.Terminal() {
		return false
	}
	if from == to {
		return true
	}
	if to == Failed || to == Canceled {
		return true
	}
	for _, s := range next[from] {
		if s == to {
			return true
		}
	}
	return false
}

// TransitionError is a transition the state machine forbids. It is
// ErrInvalidTransition (errors.Is), and says which.
// Its message is written for the job's owner.
type TransitionError struct {
	From, To State
	Why      string // optional: the rule, in the user's terms ("only queued jobs can be held")
}

func (e *TransitionError) Error() string {
	msg := fmt.Sprintf("the job is %s; it cannot become %s", e.From, e.To)
	if !e.To.Valid() {
		msg = fmt.Sprintf("unknown state %q", e.To)
	}
	if e.Why != "" {
		msg += ": " + e.Why
	}
	return msg
}

// Is makes a TransitionError match ErrInvalidTransition.
func (e *TransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// Transition checks a transition and returns a *TransitionError when it is
// not allowed.
func Transition(from, to State) error {
	if !to.Valid() || !CanTransition(from, to) {
		return &TransitionError{From: from, To: to}
	}
	return nil
}

// Resources is what a job asks of its environment.
type Resources struct {
	Nodes        int
	CoresPerNode int
	MemoryMB     int64
	WalltimeS    int64
}

// Cores is the number of cores the job occupies in all.
func (r Resources) Cores() int { return max(1, r.Nodes) * max(1, r.CoresPerNode) }

// Usage is what a job consumed.
type Usage struct {
	CPUSeconds  float64
	MaxRSSBytes int64
	WallSeconds float64
}

// Job is one job. The store keeps it; only UpdateJob changes it.
type Job struct {
	ID    string
	Name  string
	Owner string
	// Account is the OS account the job runs as ("" for the gateway's
	// own), resolved from the owner when the job was accepted.
	Account         string
	Template        string
	TemplateVersion int
	Environment     string
	State           State
	// Reason says why the job entered its current state; it becomes the
	// reason of the event the store records for the transition.
	Reason     string
	Parameters json.RawMessage
	Inputs     map[string]string // input name → path in the owner's files
	InputSizes map[string]int64  // input name → size when the job was created
	Resources  Resources
	Labels     map[string]string
	ParentID   string
	// SweepID is the sweep the job belongs to ("" for none); lists filter
	// on it. SweepIndex is its variant's place in the sweep, from 0.
	SweepID    string
	SweepIndex int
	// SweepSize is how many variants its sweep was made with (0 in jobs
	// stored before it was kept): a sweep whose jobs number fewer has
	// lost some to deletion.
	SweepSize int
	// SweepMaxRunning caps how many of its sweep's jobs are handed to
	// engines at once (0: no cap).
	SweepMaxRunning int
	// Detached: a child that goes on when its parent is canceled.
	Detached bool
	// After are the jobs and sweeps that must end first: the job stays
	// pending until they have, and is canceled if they cannot as asked.
	After []Dependency
	// Notify, when set, is where the gateway posts the job's state
	// changes (a webhook), and which.
	Notify *Notify
	// Project is the allocation account the job is charged to ("" for
	// none); the engine gets it (sbatch --account, qsub -P).
	Project    string
	Depth      int // 0 for a job made by a person, parent's depth + 1 for a child
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   *int
	Usage      *Usage
	Scheduler  string // the engine's name ("local", "slurm", ...)
	BackendID  string // the job's id in that engine; empty until submitted
	Error      string
	IdemKey    string // Idempotency-Key the job was created with
	// IdemHash is the SHA-256 (hex) of the request the job was created
	// from, so that a repeated Idempotency-Key with another body is refused.
	IdemHash string
	// TemplateDoc is the resolved template the job was accepted with, in
	// its stored JSON form: a template reload or a replica with other
	// template directories cannot change what an accepted job runs.
	TemplateDoc json.RawMessage
	Submissions int // how often the job was handed to an engine
	// ClaimedBy is the gateway replica handing the job to its engine, or
	// (for an engine private to one replica, like the local executor) the
	// replica whose engine runs it. ClaimedUntil ends a submission claim,
	// so that another replica takes over from one that died mid-way.
	ClaimedBy    string
	ClaimedUntil time.Time
	// Steps are the executors of a GA4GH TES task as they ran, by index;
	// Delivered the files its outputs delivered to the owner's files.
	Steps     []Step
	Delivered []Delivered
}

// Step is one executor of a task as it ran: when, how it ended, and the
// bytes [from, to) of the job's stdout and stderr that it wrote.
type Step struct {
	Index          int
	StartedAt      time.Time
	EndedAt        time.Time // zero while it runs
	ExitCode       *int
	Stdout, Stderr [2]int64
}

// Delivered is an output file a task delivered: where it was in the
// container, the owner's file it became, and its size.
type Delivered struct {
	Path, File string
	Size       int64
}

// SetStep records step s, in place of an earlier record of its executor.
func (j *Job) SetStep(s Step) {
	for i := range j.Steps {
		if j.Steps[i].Index == s.Index {
			j.Steps[i] = s
			return
		}
	}
	j.Steps = append(j.Steps, s)
	slices.SortFunc(j.Steps, func(a, b Step) int { return a.Index - b.Index })
}

// Dependency is a job (Job) or a whole sweep (Sweep) that must have
// ended (When is WhenFinished) or succeeded (WhenSucceeded) before a job
// is handed to its engine.
type Dependency struct {
	Job, Sweep string
	When       string
}

// Notify is a job's webhook: the URL the gateway posts to, and the state
// changes it posts: state names, or NotifyTerminal for every end.
type Notify struct {
	URL    string
	Events []string
}

// NotifyTerminal in Notify.Events stands for succeeded, failed and
// canceled.
const NotifyTerminal = "terminal"

// Wants tells whether n asks for the change to state s.
func (n *Notify) Wants(s State) bool {
	if n == nil {
		return false
	}
	for _, e := range n.Events {
		if e == string(s) || (e == NotifyTerminal && s.Terminal()) {
			return true
		}
	}
	return false
}

// What a Dependency waits for.
const (
	WhenSucceeded = "succeeded"
	WhenFinished  = "finished"
)

// Event is one recorded transition.
type Event struct {
	Time   time.Time
	State  State
	Reason string
}

// Clone returns a deep copy of j, so that a caller may change it freely.
func (j *Job) Clone() *Job {
	c := *j
	c.Parameters = append(json.RawMessage(nil), j.Parameters...)
	c.TemplateDoc = append(json.RawMessage(nil), j.TemplateDoc...)
	c.Inputs = cloneMap(j.Inputs)
	c.InputSizes = cloneMap(j.InputSizes)
	c.After = slices.Clone(j.After)
	if j.Notify != nil {
		c.Notify = &Notify{URL: j.Notify.URL, Events: slices.Clone(j.Notify.Events)}
	}
	c.Labels = cloneMap(j.Labels)
	if j.ExitCode != nil {
		e := *j.ExitCode
		c.ExitCode = &e
	}
	if j.Usage != nil {
		u := *j.Usage
		c.Usage = &u
	}
	c.Steps = slices.Clone(j.Steps)
	for i, st := range c.Steps {
		if st.ExitCode != nil {
			e := *st.ExitCode
			c.Steps[i].ExitCode = &e
		}
	}
	c.Delivered = slices.Clone(j.Delivered)
	return &c
}

func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// SetState moves the job to s with a reason, stamping start and finish
// times. It returns an error wrapping ErrInvalidTransition if not allowed.
func (j *Job) SetState(s State, reason string, now time.Time) error {
	if s == j.State {
		return nil
	}
	if err := Transition(j.State, s); err != nil {
		return err
	}
	j.State = s
	j.Reason = reason
	if (s == Starting || s == Running) && j.StartedAt.IsZero() {
		j.StartedAt = now
	}
	if s.Terminal() {
		j.FinishedAt = now
	}
	return nil
}
