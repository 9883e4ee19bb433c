package sqlitestore

import (
	"context"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
)

// PutLeftover implements storedriver.Tx.
func (t *sqlTx) PutLeftover(ctx context.Context, p store.PurgedJob, at time.Time) error {
	if _, err := t.tx.ExecContext(ctx, `INSERT INTO leftovers (job_id, owner, removed) VALUES (?, ?, ?)
		ON CONFLICT (job_id) DO UPDATE SET removed = excluded.removed`, p.ID, p.Owner, at.UnixNano()); err != nil {
		return fmt.Errorf("record removed job %s: %w", p.ID, err)
	}
	return nil
}

// LeftoversForUpdate implements storedriver.Tx (writes take turns).
func (t *sqlTx) LeftoversForUpdate(ctx context.Context, before time.Time, limit int) ([]store.PurgedJob, error) {
	rows, err := t.tx.QueryContext(ctx, "SELECT job_id, owner FROM leftovers WHERE removed < ? ORDER BY removed, job_id LIMIT ?", before.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("read removed jobs: %w", err)
	}
	defer rows.Close()
	var out []store.PurgedJob
	for rows.Next() {
		var p store.PurgedJob
		if err := rows.Scan(&p.ID, &p.Owner); err != nil {
			return nil, fmt.Errorf("read removed jobs: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteLeftover implements storedriver.Tx.
func (t *sqlTx) DeleteLeftover(ctx context.Context, id string) error {
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM leftovers WHERE job_id = ?", id); err != nil {
		return fmt.Errorf("forget removed job %s: %w", id, err)
	}
	return nil
}
