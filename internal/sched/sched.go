// Package sched defines Scheduler, the seam between hpcgate and a queueing
// engine, and what it reports about the jobs it runs.
//
// Implementations: localsched (the embedded local executor). Every
// implementation passes the conformance suite in schedtest. Optional
// abilities (Holder, Suspender, Describer) are separate interfaces found by
// type assertion.
package sched

import (
	"context"
	"errors"
	"regexp"

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
	JobID     string
	Name      string // a sanitised, human-readable name (see SafeName)
	Command   []string
	Env       map[string]string
	WorkDir   string // absolute; the engine creates it
	Resources job.Resources
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

// Describer reports live facts about the engine (free cores, queue state).
type Describer interface {
	Describe(ctx context.Context) (map[string]any, error)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// SafeName turns a user's job name into one safe for any engine and shell:
// letters, digits, '_', '.', '-', at most 40 characters, never empty.
func SafeName(name string) string {
	s := unsafeName.ReplaceAllString(name, "_")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" || s[0] == '-' || s[0] == '.' {
		s = "j" + s
	}
	return s
}
