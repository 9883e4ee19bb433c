// Package rowstore is store.Store's rules, written once above any
// storedriver.Driver: idempotency and children limits of CreateJob, the
// state machine and events of UpdateJob, log offsets, paging, retention.
// A backend only reads and writes rows; it is rowstore.New(driver).
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

// Store is a store.Store over a driver.
type Store struct {
	d storedriver.Driver
	// now is the clock of events; tests may replace it.
	now func() time.Time
}

var _ store.Store = (*Store)(nil)

// New returns the store of d. Closing it closes d.
func New(d storedriver.Driver) *Store {
	return &Store{d: d, now: time.Now}
}

// Driver returns the store's driver.
func (s *Store) Driver() storedriver.Driver { return s.d }

// CreateJob implements store.Store.
func (s *Store) CreateJob(ctx context.Context, j *job.Job, opts *store.CreateOptions) (*job.Job, error) {
	r := storedriver.FromJob(j)
	var dup *job.Job
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		dup = nil
		duplicate := func() error {
			old, err := tx.JobByIdemKey(ctx, j.Owner, j.IdemKey)
			if err != nil {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
			dup = old.Job()
			return fmt.Errorf("job %s: %w", old.ID, store.ErrDuplicate)
		}
		if j.IdemKey != "" {
			_, err := tx.JobByIdemKey(ctx, j.Owner, j.IdemKey)
			if err == nil {
				return duplicate()
			}
			if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
		}
		if j.ParentID != "" && opts != nil && opts.MaxChildren > 0 {
			n, err := tx.CountChildren(ctx, j.ParentID)
			if err != nil {
				return fmt.Errorf("count children of %s: %w", j.ParentID, err)
			}
			if n >= opts.MaxChildren {
				return fmt.Errorf("job %s has %d children already: %w", j.ParentID, n, store.ErrLimit)
			}
		}
		if err := countNew(ctx, tx, j, opts); err != nil {
			return err
		}
		if err := tx.InsertJob(ctx, r); err != nil {
			if errors.Is(err, store.ErrDuplicate) && j.IdemKey != "" {
				// A creation with the same key committed since the look-up.
				return duplicate()
			}
			return err
		}
		if err := tx.AppendEvent(ctx, j.ID, job.Event{Time: j.CreatedAt, State: j.State, Reason: j.Reason}); err != nil {
			return err
		}
		if err := recordChange(ctx, tx, j, j.CreatedAt); err != nil {
			return err
		}
		if opts != nil && opts.Audit != nil {
			e := *opts.Audit
			e.JobID = j.ID
			if e.Time.IsZero() {
				e.Time = s.now()
			}
			return tx.InsertAudit(ctx, e)
		}
		return nil
	})
	if err != nil {
		return dup, err
	}
	return j.Clone(), nil
}

// CreateJobs implements store.Store.
func (s *Store) CreateJobs(ctx context.Context, jobs []*job.Job, opts *store.CreateOptions) (*job.Job, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	owner, parent, key := jobs[0].Owner, jobs[0].ParentID, jobs[0].IdemKey
	for i, j := range jobs {
		if j.Owner != owner || j.ParentID != parent || i > 0 && j.IdemKey != "" {
			return nil, fmt.Errorf("create jobs: one owner and parent, an idempotency key on the first only (job %s)", j.ID)
		}
	}
	if opts == nil {
		opts = &store.CreateOptions{}
	}
	var dup *job.Job
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		dup = nil
		duplicate := func() error {
			old, err := tx.JobByIdemKey(ctx, owner, key)
			if err != nil {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
			dup = old.Job()
			return fmt.Errorf("job %s: %w", old.ID, store.ErrDuplicate)
		}
		if key != "" {
			if _, err := tx.JobByIdemKey(ctx, owner, key); err == nil {
				return duplicate()
			} else if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
		}
		if parent != "" && opts.MaxChildren > 0 {
			n, err := tx.CountChildren(ctx, parent)
			if err != nil {
				return fmt.Errorf("count children of %s: %w", parent, err)
			}
			if n+len(jobs) > opts.MaxChildren {
				return fmt.Errorf("job %s has %d children already: %w", parent, n, store.ErrLimit)
			}
		}
		if err := countNewJobs(ctx, tx, jobs, opts); err != nil {
			return err
		}
		for i, j := range jobs {
			if err := tx.InsertJob(ctx, storedriver.FromJob(j)); err != nil {
				if i == 0 && key != "" && errors.Is(err, store.ErrDuplicate) {
					return duplicate() // a creation with the same key committed since the look-up
				}
				return err
			}
			if err := tx.AppendEvent(ctx, j.ID, job.Event{Time: j.CreatedAt, State: j.State, Reason: j.Reason}); err != nil {
				return err
			}
			if err := recordChange(ctx, tx, j, j.CreatedAt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return dup, err
	}
	return nil, nil
}

// GetJob implements store.Store.
func (s *Store) GetJob(ctx context.Context, id string) (*job.Job, error) {
	r, err := s.d.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	return r.Job(), nil
}

// DefaultLimit is the page size of a JobFilter without Limit.
const DefaultLimit = 100

// ListJobs implements store.Store.
func (s *Store) ListJobs(ctx context.Context, f store.JobFilter) ([]*job.Job, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	q := storedriver.ListQuery{
		Owner: f.Owner, States: f.States, Template: f.Template, LabelKey: f.LabelKey, LabelValue: f.LabelValue,
		ParentID: f.ParentID, SweepID: f.SweepID, InEngine: f.InEngine, Oldest: f.Oldest, Limit: limit + 1,
	}
	if f.PageToken != "" {
		after, err := store.DecodePageToken(f.PageToken)
		if err != nil {
			return nil, "", err
		}
		q.After, q.HasAfter = after, true
	}
	rows, err := s.d.ListJobs(ctx, q)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = store.EncodePageToken(rows[limit-1].Seq)
	}
	out := make([]*job.Job, len(rows))
	for i, r := range rows {
		out[i] = r.Job()
	}
	return out, next, nil
}

// UpdateJob implements store.Store.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error) {
	var out *job.Job
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		oldRow, err := tx.JobForUpdate(ctx, id)
		if err != nil {
			return err
		}
		old := oldRow.Job()
		j := old.Clone()
		if err := fn(j); err != nil {
			return err
		}
		j.ID, j.Owner = old.ID, old.Owner
		if j.State != old.State {
			if err := job.Transition(old.State, j.State); err != nil {
				return fmt.Errorf("job %s: %w", id, err)
			}
		}
		if err := tx.UpdateJob(ctx, oldRow, storedriver.FromJob(j)); err != nil {
			return err
		}
		if j.State == old.State {
			out = j
			return nil
		}
		now := s.now()
		if err := tx.AppendEvent(ctx, id, job.Event{Time: now, State: j.State, Reason: j.Reason}); err != nil {
			return err
		}
		if j.State.Terminal() && !old.State.Terminal() {
			if err := countEnd(ctx, tx, j, true); err != nil {
				return err
			}
		}
		// last, as in CreateJob: the owner's usage row is locked before
		// the head of its feed, in every transaction
		if err := recordChange(ctx, tx, j, now); err != nil {
			return err
		}
		out = j
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteJob implements store.Store.
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		r, err := tx.JobForUpdate(ctx, id)
		if err != nil {
			return err
		}
		if err := tx.DeleteJob(ctx, id); err != nil {
			return err
		}
		if err := tx.PutLeftover(ctx, store.PurgedJob{ID: id, Owner: r.Owner}, s.now()); err != nil {
			return err
		}
		if j := r.Job(); !j.State.Terminal() {
			return countEnd(ctx, tx, j, false)
		}
		return nil
	})
}

// PurgeFinished implements store.Store.
func (s *Store) PurgeFinished(ctx context.Context, before time.Time, limit int, keep store.Keep) ([]store.PurgedJob, error) {
	if limit <= 0 {
		return nil, nil
	}
	var purged []store.PurgedJob
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		purged = purged[:0] // a retried transaction starts again
		ids, err := tx.FinishedBefore(ctx, before, limit, keep)
		if err != nil {
			return fmt.Errorf("find finished jobs: %w", err)
		}
		for _, id := range ids {
			r, err := tx.JobForUpdate(ctx, id)
			if err != nil {
				return err
			}
			p := store.PurgedJob{ID: id, Owner: r.Owner}
			if err := tx.DeleteJob(ctx, id); err != nil {
				return err
			}
			if err := tx.PutLeftover(ctx, p, s.now()); err != nil {
				return err
			}
			purged = append(purged, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return purged, nil
}

// TakeLeftovers implements store.Store: the jobs taken get the time of
// now, so that they are due again a sweep's grace later.
func (s *Store) TakeLeftovers(ctx context.Context, before time.Time, limit int) ([]store.PurgedJob, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []store.PurgedJob
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		var err error
		if out, err = tx.LeftoversForUpdate(ctx, before, limit); err != nil {
			return err
		}
		now := s.now()
		for _, p := range out {
			if err := tx.PutLeftover(ctx, p, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DropLeftover implements store.Store.
func (s *Store) DropLeftover(ctx context.Context, id string) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		return tx.DeleteLeftover(ctx, id)
	})
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, id string) ([]job.Event, error) {
	return s.d.Events(ctx, id)
}

// AddDelivered implements store.Store. It reads the job's row for update
// first: the job must be there, and other records of the same job wait,
// so that the numbers and the limit hold. (Records a job's row still
// holds, written before they had a table, do not count.)
func (s *Store) AddDelivered(ctx context.Context, id string, d job.Delivered, max int) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		if _, err := tx.JobForUpdate(ctx, id); err != nil {
			return err
		}
		if d.Size >= 0 {
			if ok, err := tx.UpdateDelivered(ctx, id, d); err != nil || ok {
				return err
			}
		}
		n, err := tx.LastDelivered(ctx, id)
		if err != nil {
			return err
		}
		if added, err := tx.InsertDelivered(ctx, id, n+1, d); err != nil || !added {
			return err // a pending record of a file recorded already: as it was
		}
		if n >= max { // rolls the record back
			return fmt.Errorf("job %s: %d files delivered: %w", id, n, store.ErrLimit)
		}
		return nil
	})
}

// Delivered implements store.Store.
func (s *Store) Delivered(ctx context.Context, id string) ([]job.Delivered, error) {
	return s.d.Delivered(ctx, id)
}

// AppendLog implements store.Store.
func (s *Store) AppendLog(ctx context.Context, id, stream string, offset int64, data []byte) (int64, error) {
	if offset < 0 {
		return 0, fmt.Errorf("log %s/%s: negative offset %d", id, stream, offset)
	}
	var size int64
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		var err error
		if size, err = tx.LogSize(ctx, id, stream); err != nil {
			return fmt.Errorf("log %s/%s: %w", id, stream, err)
		}
		if offset > size {
			return fmt.Errorf("log %s/%s: append at %d leaves a gap after %d: %w", id, stream, offset, size, store.ErrConflict)
		}
		end := offset + int64(len(data))
		if end <= size {
			return nil // held already
		}
		if err := tx.InsertLogChunk(ctx, id, stream, size, data[size-offset:]); err != nil {
			return err
		}
		size = end
		return nil
	})
	if err != nil {
		return 0, err
	}
	return size, nil
}

// ReadLog implements store.Store.
func (s *Store) ReadLog(ctx context.Context, id, stream string, offset int64, maxRead int) ([]byte, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("log %s/%s: negative offset %d", id, stream, offset)
	}
	to := offset + int64(max(maxRead, 0))
	size, chunks, err := s.d.LogChunks(ctx, id, stream, offset, to)
	if err != nil {
		return nil, 0, fmt.Errorf("read log %s/%s: %w", id, stream, err)
	}
	if offset >= size || maxRead <= 0 {
		return nil, size, nil
	}
	var out []byte
	for _, c := range chunks {
		data := c.Data
		if c.Offset+int64(len(data)) <= offset || c.Offset >= to {
			continue
		}
		if c.Offset < offset {
			data = data[offset-c.Offset:]
		}
		if room := maxRead - len(out); len(data) > room {
			data = data[:room]
		}
		out = append(out, data...)
	}
	return out, size, nil
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		return tx.InsertToken(ctx, t)
	})
}

// TokenByHash implements store.Store.
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	return s.d.TokenByHash(ctx, hash)
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, user string) ([]store.Token, error) {
	return s.d.ListTokens(ctx, user)
}

// DeleteToken implements store.Store.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		return tx.DeleteToken(ctx, id)
	})
}

// count runs fn, a write that says how many rows it touched, in a
// transaction of its own, and returns that number.
func (s *Store) count(ctx context.Context, fn func(context.Context, storedriver.Tx) (int, error)) (int, error) {
	var n int
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		var err error
		n, err = fn(ctx, tx)
		return err
	})
	return n, err
}

// PurgeTokens implements store.Store.
func (s *Store) PurgeTokens(ctx context.Context, before time.Time, limit int) (int, error) {
	return s.count(ctx, func(ctx context.Context, tx storedriver.Tx) (int, error) {
		return tx.DeleteTokensExpired(ctx, before, limit)
	})
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error { return s.d.Ping(ctx) }

// Close implements store.Store.
func (s *Store) Close() error { return s.d.Close() }
