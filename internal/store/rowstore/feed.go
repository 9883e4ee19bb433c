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

// recordChange records j's move to its state at t in its owner's feed, and
// queues a webhook delivery when the job's Notify wants it: in the
// transaction of the change itself, so that neither is lost or told of a
// change that did not happen.
func recordChange(ctx context.Context, tx storedriver.Tx, j *job.Job, t time.Time) error {
	c := store.Change{Owner: j.Owner, JobID: j.ID, SweepID: j.SweepID, Time: t, State: j.State, Reason: j.Reason}
	seq, err := tx.AppendChange(ctx, c)
	if err != nil {
		return fmt.Errorf("record change of job %s: %w", j.ID, err)
	}
	if !j.Notify.Wants(j.State) {
		return nil
	}
	c.Seq = seq
	if err := tx.InsertDelivery(ctx, store.Delivery{Change: c, URL: j.Notify.URL, NextAt: t}); err != nil {
		return fmt.Errorf("queue webhook of job %s: %w", j.ID, err)
	}
	return nil
}

// Changes implements store.Store.
func (s *Store) Changes(ctx context.Context, owner string, after int64, limit int) ([]store.Change, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return s.d.Changes(ctx, owner, after, limit)
}

// LastChange implements store.Store.
func (s *Store) LastChange(ctx context.Context, owner string) (int64, error) {
	return s.d.LastChange(ctx, owner)
}

// PurgeChanges implements store.Store.
func (s *Store) PurgeChanges(ctx context.Context, before time.Time, limit int) (int, error) {
	return s.count(ctx, func(ctx context.Context, tx storedriver.Tx) (int, error) {
		return tx.DeleteChangesBefore(ctx, before, limit)
	})
}

// DueDeliveries implements store.Store.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, limit, perOwner int) ([]store.Delivery, error) {
	if perOwner <= 0 {
		perOwner = limit
	}
	return s.d.DueDeliveries(ctx, now, limit, perOwner)
}

// ClaimDelivery implements store.Store.
func (s *Store) ClaimDelivery(ctx context.Context, d store.Delivery, until time.Time) (bool, error) {
	var ok bool
	err := s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		var err error
		ok, err = tx.ClaimDelivery(ctx, d.ID, d.NextAt, until)
		return err
	})
	return ok, err
}

// DeliveryDone implements store.Store.
func (s *Store) DeliveryDone(ctx context.Context, d store.Delivery, note string) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		if err := tx.DeleteDelivery(ctx, d.ID); err != nil {
			return err
		}
		return s.note(ctx, tx, d.Change.JobID, note)
	})
}

// RetryDelivery implements store.Store.
func (s *Store) RetryDelivery(ctx context.Context, d store.Delivery, next time.Time, note string) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		if err := tx.UpdateDelivery(ctx, d.ID, d.Attempts+1, next); err != nil {
			return err
		}
		return s.note(ctx, tx, d.Change.JobID, note)
	})
}

// PostponeDeliveries implements store.Store.
func (s *Store) PostponeDeliveries(ctx context.Context, url string, until time.Time) (int, error) {
	return s.count(ctx, func(ctx context.Context, tx storedriver.Tx) (int, error) {
		return tx.PostponeDeliveries(ctx, url, until)
	})
}

// note appends an event to the job that keeps its state and says what
// happened (a webhook delivered, say); a job gone since needs none.
func (s *Store) note(ctx context.Context, tx storedriver.Tx, id, note string) error {
	if note == "" {
		return nil
	}
	r, err := tx.JobForUpdate(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return tx.AppendEvent(ctx, id, job.Event{Time: s.now(), State: job.State(r.State), Reason: note})
}

// SetWebhookSecret implements store.Store.
func (s *Store) SetWebhookSecret(ctx context.Context, user, secret string) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		return tx.PutWebhookSecret(ctx, user, secret)
	})
}
