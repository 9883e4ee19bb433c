package rowstore

import (
	"context"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
)

// AppendAudit implements store.Store.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		return tx.InsertAudit(ctx, e)
	})
}

// ListAudit implements store.Store.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	q := storedriver.AuditQuery{User: f.User, JobID: f.JobID, Action: f.Action, Target: f.Target, Since: f.Since, Until: f.Until, Limit: limit + 1}
	if f.PageToken != "" {
		before, err := store.DecodePageToken(f.PageToken)
		if err != nil {
			return nil, "", err
		}
		q.Before, q.HasBefore = before, true
	}
	out, err := s.d.ListAudit(ctx, q)
	if err != nil {
		return nil, "", fmt.Errorf("list audit: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodePageToken(out[limit-1].Seq)
	}
	return out, next, nil
}

// PurgeAudit implements store.Store.
func (s *Store) PurgeAudit(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, nil
	}
	return s.count(ctx, func(ctx context.Context, tx storedriver.Tx) (int, error) {
		return tx.DeleteAuditBefore(ctx, before, limit)
	})
}
