package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hpcgate/hpcgate/internal/store"
)

// PutLeftover implements storedriver.Tx.
func (t *pgTx) PutLeftover(ctx context.Context, p store.PurgedJob, at time.Time) error {
	if _, err := t.tx.Exec(ctx, `INSERT INTO leftovers (job_id, owner, removed) VALUES ($1, $2, $3)
		ON CONFLICT (job_id) DO UPDATE SET removed = excluded.removed`, p.ID, p.Owner, at); err != nil {
		return fmt.Errorf("record removed job %s: %w", p.ID, err)
	}
	return nil
}

// LeftoversForUpdate implements storedriver.Tx: rows another transaction
// holds are skipped, not waited for.
func (t *pgTx) LeftoversForUpdate(ctx context.Context, before time.Time, limit int) ([]store.PurgedJob, error) {
	rows, err := t.tx.Query(ctx, "SELECT job_id, owner FROM leftovers WHERE removed < $1 ORDER BY removed, job_id LIMIT $2 FOR UPDATE SKIP LOCKED", before, limit)
	if err != nil {
		return nil, fmt.Errorf("read removed jobs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.PurgedJob, error) {
		var p store.PurgedJob
		err := r.Scan(&p.ID, &p.Owner)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("read removed jobs: %w", err)
	}
	return out, nil
}

// DeleteLeftover implements storedriver.Tx.
func (t *pgTx) DeleteLeftover(ctx context.Context, id string) error {
	if _, err := t.tx.Exec(ctx, "DELETE FROM leftovers WHERE job_id = $1", id); err != nil {
		return fmt.Errorf("forget removed job %s: %w", id, err)
	}
	return nil
}
