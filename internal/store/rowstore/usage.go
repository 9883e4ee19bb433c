package rowstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
)

// countNew counts a new job in its owner's usage, refusing it when it
// would pass opts' quotas.
func countNew(ctx context.Context, tx storedriver.Tx, j *job.Job, opts *store.CreateOptions) error {
	cores := int64(j.Resources.Cores())
	if opts != nil && (opts.MaxJobs > 0 || opts.MaxCores > 0) {
		rows, err := tx.UsageForUpdate(ctx, j.Owner)
		if err != nil {
			return fmt.Errorf("read usage of %s: %w", j.Owner, err)
		}
		var t store.Usage
		for _, u := range rows {
			t.ActiveJobs += u.ActiveJobs
			t.ActiveCores += u.ActiveCores
		}
		if opts.MaxJobs > 0 && t.ActiveJobs+1 > opts.MaxJobs {
			return &store.QuotaError{Name: "jobs", Limit: opts.MaxJobs, Used: t.ActiveJobs, Want: 1}
		}
		if opts.MaxCores > 0 && t.ActiveCores+cores > opts.MaxCores {
			return &store.QuotaError{Name: "cores", Limit: opts.MaxCores, Used: t.ActiveCores, Want: cores}
		}
	}
	if j.State.Terminal() {
		return tx.AddUsage(ctx, store.Usage{User: j.Owner, Project: j.Project, Jobs: 1})
	}
	return tx.AddUsage(ctx, store.Usage{User: j.Owner, Project: j.Project, ActiveJobs: 1, ActiveCores: cores, Jobs: 1})
}

// countNewJobs counts new jobs of one owner in the owner's usage, one
// addition per project, refusing them all when together they would pass
// opts' quotas.
func countNewJobs(ctx context.Context, tx storedriver.Tx, jobs []*job.Job, opts *store.CreateOptions) error {
	owner := jobs[0].Owner
	add := map[string]*store.Usage{}
	var active, cores int64
	for _, j := range jobs {
		u := add[j.Project]
		if u == nil {
			u = &store.Usage{User: owner, Project: j.Project}
			add[j.Project] = u
		}
		u.Jobs++
		if !j.State.Terminal() {
			c := int64(j.Resources.Cores())
			u.ActiveJobs++
			u.ActiveCores += c
			active++
			cores += c
		}
	}
	if opts.MaxJobs > 0 || opts.MaxCores > 0 {
		rows, err := tx.UsageForUpdate(ctx, owner)
		if err != nil {
			return fmt.Errorf("read usage of %s: %w", owner, err)
		}
		var t store.Usage
		for _, u := range rows {
			t.ActiveJobs += u.ActiveJobs
			t.ActiveCores += u.ActiveCores
		}
		if opts.MaxJobs > 0 && t.ActiveJobs+active > opts.MaxJobs {
			return &store.QuotaError{Name: "jobs", Limit: opts.MaxJobs, Used: t.ActiveJobs, Want: active}
		}
		if opts.MaxCores > 0 && t.ActiveCores+cores > opts.MaxCores {
			return &store.QuotaError{Name: "cores", Limit: opts.MaxCores, Used: t.ActiveCores, Want: cores}
		}
	}
	for _, u := range add {
		if err := tx.AddUsage(ctx, *u); err != nil {
			return err
		}
	}
	return nil
}

// countEnd takes a job that ends (or is deleted unfinished) out of its
// owner's active usage, adding the core-seconds it used if it ended.
func countEnd(ctx context.Context, tx storedriver.Tx, j *job.Job, ended bool) error {
	cores := j.Resources.Cores()
	u := store.Usage{User: j.Owner, Project: j.Project, ActiveJobs: -1, ActiveCores: -int64(cores)}
	if ended {
		u.CoreSeconds = float64(cores) * wallSeconds(j)
	}
	return tx.AddUsage(ctx, u)
}

// wallSeconds is how long the job ran, on the gateway's clock: from its
// start to its end. The usage's wall seconds are the job's own word (its
// agent reports them from inside the job: a job once reported 1e308 and
// made its owner's core-seconds infinite), so they count only when the
// gateway saw no start, and never for longer than the job existed.
func wallSeconds(j *job.Job) float64 {
	if !j.StartedAt.IsZero() && !j.FinishedAt.Before(j.StartedAt) {
		return j.FinishedAt.Sub(j.StartedAt).Seconds()
	}
	if j.Usage == nil || !(j.Usage.WallSeconds > 0) || j.FinishedAt.Before(j.CreatedAt) {
		return 0
	}
	return min(j.Usage.WallSeconds, j.FinishedAt.Sub(j.CreatedAt).Seconds())
}

// Usage implements store.Store.
func (s *Store) Usage(ctx context.Context, user string) ([]store.Usage, error) {
	return s.d.Usage(ctx, user)
}

// AddStored implements store.Store.
func (s *Store) AddStored(ctx context.Context, user string, delta, limit store.Stored) (store.Stored, error) {
	var total store.Stored
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		var err error
		total, err = AddStoredIn(ctx, tx, user, delta, limit)
		return err
	})
	if err != nil {
		return store.Stored{}, err
	}
	return total, nil
}

// AddStoredIn is AddStored within tx, for a driver's own transactions
// that count stored bytes and files beside other writes.
func AddStoredIn(ctx context.Context, tx storedriver.Tx, user string, delta, limit store.Stored) (store.Stored, error) {
	rows, err := tx.UsageForUpdate(ctx, user)
	if err != nil {
		return store.Stored{}, fmt.Errorf("read usage of %s: %w", user, err)
	}
	var cur store.Stored
	for _, u := range rows {
		if u.Project == "" {
			cur = store.Stored{Bytes: u.Bytes, Files: u.Files}
		}
	}
	for _, c := range []struct {
		name              string
		cur, delta, limit int64
	}{{"bytes", cur.Bytes, delta.Bytes, limit.Bytes}, {"files", cur.Files, delta.Files, limit.Files}} {
		if _, err := store.Fit(c.name, c.delta, c.cur, c.limit, false); err != nil {
			return store.Stored{}, err
		}
	}
	add := store.Stored{Bytes: max(delta.Bytes, -cur.Bytes), Files: max(delta.Files, -cur.Files)} // never below zero
	if err := tx.AddUsage(ctx, store.Usage{User: user, Bytes: add.Bytes, Files: add.Files}); err != nil {
		return store.Stored{}, err
	}
	return store.Stored{Bytes: cur.Bytes + add.Bytes, Files: cur.Files + add.Files}, nil
}

// User implements store.Store.
func (s *Store) User(ctx context.Context, name string) (store.User, error) {
	u, err := s.d.User(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{Name: name}, nil
	}
	return u, err
}

// SetUserDisabled implements store.Store.
func (s *Store) SetUserDisabled(ctx context.Context, name string, disabled bool, at time.Time) (store.User, error) {
	u := store.User{Name: name, Disabled: disabled}
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		old, err := tx.User(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		u.DisabledAt, u.WebhookSecret = old.DisabledAt, old.WebhookSecret // PutUser leaves the secret as it is
		if disabled {
			u.DisabledAt = at.UTC()
		}
		return tx.PutUser(ctx, u)
	})
	return u, err
}
