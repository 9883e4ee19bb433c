package server

import (
	"cmp"
	"context"
	"fmt"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// maxAfter bounds a job's dependencies; a whole sweep counts as one.
const maxAfter = 100

// dependencies checks a job request's after list for a job of owner's
// (made by a person, or by the job self): each entry names one job or one
// sweep the caller may see (a person: any of the owner's; a job: itself,
// its descendants and the sweeps it made), and waits for it to succeed
// (the default) or to finish. Every fault is reported, at its index.
func (s *Server) dependencies(ctx context.Context, owner string, self *job.Job, after []api.Dependency) ([]job.Dependency, error) {
	if len(after) > maxAfter {
		return nil, fieldError("after", "at most %d entries; wait for a whole sweep with {\"sweep\": ID}", maxAfter)
	}
	var verr catalog.ValidationError
	bad := func(field, format string, args ...any) {
		verr.Fields = append(verr.Fields, catalog.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var out []job.Dependency
	for i, d := range after {
		field := fmt.Sprintf("after[%d]", i)
		dep := job.Dependency{Job: d.Job, Sweep: d.Sweep, When: cmp.Or(d.When, job.WhenSucceeded)}
		if dep.When != job.WhenSucceeded && dep.When != job.WhenFinished {
			bad(field+".when", "is %q or %q, not %q", job.WhenSucceeded, job.WhenFinished, d.When)
		}
		switch {
		case (d.Job == "") == (d.Sweep == ""):
			bad(field, `names one job or one sweep: {"job": ID} or {"sweep": ID}`)
			continue
		case d.Job != "":
			ok, err := s.mayReadJobData(ctx, owner, self, d.Job)
			if err != nil {
				return nil, err
			}
			if !ok {
				bad(field+".job", "no job %q that this token may wait for", d.Job)
			}
		default:
			f := store.JobFilter{Owner: owner, SweepID: d.Sweep, Limit: 1}
			if self != nil {
				f.ParentID = self.ID // a job waits for the sweeps it made
			}
			jobs, _, err := s.store.ListJobs(ctx, f)
			if err != nil {
				return nil, err
			}
			if len(jobs) == 0 {
				bad(field+".sweep", "no sweep %q that this token may wait for", d.Sweep)
			}
		}
		out = append(out, dep)
	}
	if len(verr.Fields) > 0 {
		return nil, &verr
	}
	return out, nil
}

// waitingReason is a pending job's reason while it waits for after.
func waitingReason(after []job.Dependency) string {
	d := after[0]
	what := "job " + d.Job
	if d.Sweep != "" {
		what = "every job of sweep " + d.Sweep
	}
	verb := "to succeed"
	if d.When == job.WhenFinished {
		verb = "to finish"
	}
	r := "waiting for " + what + " " + verb
	if len(after) > 1 {
		r += fmt.Sprintf(" (and %d more)", len(after)-1)
	}
	return r
}
