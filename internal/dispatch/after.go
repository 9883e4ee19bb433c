package dispatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// depState is what a pass of submitPending knows of one dependency: a
// job's state, or a sweep's counts.
type depState struct {
	gone                   bool
	total, succeeded, open int
	deleted                int // a sweep's jobs deleted since it was made
}

// depsCache holds the dependencies looked up in one pass, by "job:ID" or
// "sweep:ID": many jobs waiting for the same sweep cost one look.
type depsCache map[string]depState

// waitFor tells whether j's dependencies are met; when one can never be
// (it ended otherwise than asked, or is gone), why says so.
func (d *Dispatcher) waitFor(ctx context.Context, j *job.Job, cache depsCache) (met bool, why string, err error) {
	met = true
	for _, dep := range j.After {
		st, err := d.depState(ctx, j.Owner, dep, cache)
		if err != nil {
			return false, "", err
		}
		what := "job " + dep.Job
		if dep.Sweep != "" {
			what = "sweep " + dep.Sweep
		}
		switch {
		case st.gone:
			if dep.When == job.WhenSucceeded {
				return false, what + " is gone, so it cannot be known to have succeeded", nil
			}
		case dep.When == job.WhenSucceeded && st.deleted > 0:
			return false, fmt.Sprintf("%d of the jobs of %s are gone, so they cannot be known to have succeeded", st.deleted, what), nil
		case dep.When == job.WhenSucceeded && st.total-st.succeeded-st.open > 0:
			if dep.Sweep != "" {
				return false, fmt.Sprintf("%d of the jobs of %s did not succeed, and this job was to run after all of them succeeded", st.total-st.succeeded-st.open, what), nil
			}
			return false, what + " did not succeed, and this job was to run after it succeeded", nil
		case dep.When == job.WhenSucceeded && st.succeeded < st.total, dep.When == job.WhenFinished && st.open > 0:
			met = false
		}
	}
	return met, "", nil
}

func (d *Dispatcher) depState(ctx context.Context, owner string, dep job.Dependency, cache depsCache) (depState, error) {
	key := "job:" + dep.Job
	if dep.Sweep != "" {
		key = "sweep:" + dep.Sweep
	}
	if st, ok := cache[key]; ok {
		return st, nil
	}
	var st depState
	if dep.Job != "" {
		o, err := d.store.GetJob(ctx, dep.Job)
		switch {
		case errors.Is(err, store.ErrNotFound) || (err == nil && o.Owner != owner):
			st.gone = true
		case err != nil:
			return st, err
		default:
			st.total = 1
			if o.State == job.Succeeded {
				st.succeeded = 1
			} else if !o.State.Terminal() {
				st.open = 1
			}
		}
	} else {
		var err error
		st.deleted, err = store.EachSweepJob(ctx, d.store, owner, dep.Sweep, func(o *job.Job) error {
			st.total++
			if o.State == job.Succeeded {
				st.succeeded++
			} else if !o.State.Terminal() {
				st.open++
			}
			return nil
		})
		if err != nil {
			return st, err
		}
		st.gone = st.total == 0
	}
	cache[key] = st
	return st, nil
}

// cancelUnmet ends a job whose dependency can never be met, with why.
func (d *Dispatcher) cancelUnmet(ctx context.Context, j *job.Job, why string) {
	if _, err := d.Cancel(ctx, j.ID, "canceled: "+why); err != nil && !errors.Is(err, job.ErrInvalidTransition) {
		d.log.Error("cancel a job whose dependency cannot be met", "job_id", j.ID, "err", err)
	}
}
