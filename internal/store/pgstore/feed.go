package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/jackc/pgx/v5"
)

// AppendChange implements storedriver.Tx: the owner's head row stays
// locked until the transaction ends, so the numbers follow the commits.
func (t *pgTx) AppendChange(ctx context.Context, c store.Change) (int64, error) {
	var seq int64
	err := t.tx.QueryRow(ctx, `WITH h AS (INSERT INTO change_heads AS h (owner, seq) VALUES ($1, 1)
			ON CONFLICT (owner) DO UPDATE SET seq = h.seq + 1 RETURNING seq)
		INSERT INTO changes (owner, seq, job_id, sweep_id, time, state, reason)
		SELECT $1, seq, $2, $3, $4, $5, $6 FROM h RETURNING seq`,
		c.Owner, c.JobID, c.SweepID, c.Time, string(c.State), cleanText(c.Reason)).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("record change: %w", err)
	}
	return seq, nil
}

// DeleteChangesBefore implements storedriver.Tx.
func (t *pgTx) DeleteChangesBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := t.tx.Exec(ctx, `DELETE FROM changes WHERE (owner, seq) IN
		(SELECT owner, seq FROM changes WHERE time < $1 ORDER BY time LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge changes: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// InsertDelivery implements storedriver.Tx.
func (t *pgTx) InsertDelivery(ctx context.Context, d store.Delivery) error {
	c := d.Change
	_, err := t.tx.Exec(ctx, `INSERT INTO deliveries (owner, seq, job_id, sweep_id, time, state, reason, url, attempts, next_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		c.Owner, c.Seq, c.JobID, c.SweepID, c.Time, string(c.State), cleanText(c.Reason), d.URL, d.Attempts, d.NextAt)
	if err != nil {
		return fmt.Errorf("queue delivery: %w", err)
	}
	return nil
}

// DeleteDelivery implements storedriver.Tx.
func (t *pgTx) DeleteDelivery(ctx context.Context, id int64) error {
	if _, err := t.tx.Exec(ctx, "DELETE FROM deliveries WHERE id = $1", id); err != nil {
		return fmt.Errorf("remove delivery: %w", err)
	}
	return nil
}

// ClaimDelivery implements storedriver.Tx.
func (t *pgTx) ClaimDelivery(ctx context.Context, id int64, was, until time.Time) (bool, error) {
	tag, err := t.tx.Exec(ctx, "UPDATE deliveries SET next_at = $1 WHERE id = $2 AND next_at = $3", until, id, was)
	if err != nil {
		return false, fmt.Errorf("claim delivery: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// UpdateDelivery implements storedriver.Tx.
func (t *pgTx) UpdateDelivery(ctx context.Context, id int64, attempts int, next time.Time) error {
	if _, err := t.tx.Exec(ctx, "UPDATE deliveries SET attempts = $1, next_at = $2 WHERE id = $3", attempts, next, id); err != nil {
		return fmt.Errorf("update delivery: %w", err)
	}
	return nil
}

// PostponeDeliveries implements storedriver.Tx.
func (t *pgTx) PostponeDeliveries(ctx context.Context, url string, until time.Time) (int, error) {
	tag, err := t.tx.Exec(ctx, "UPDATE deliveries SET next_at = $1 WHERE url = $2 AND next_at < $1", until, url)
	if err != nil {
		return 0, fmt.Errorf("postpone deliveries: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Changes implements storedriver.Driver.
func (d *Driver) Changes(ctx context.Context, owner string, after int64, limit int) ([]store.Change, error) {
	rows, err := d.pool.Query(ctx, `SELECT seq, job_id, sweep_id, time, state, reason FROM changes
		WHERE owner = $1 AND seq > $2 ORDER BY seq LIMIT $3`, owner, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		c := store.Change{Owner: owner}
		var st string
		if err := rows.Scan(&c.Seq, &c.JobID, &c.SweepID, &c.Time, &st, &c.Reason); err != nil {
			return nil, fmt.Errorf("read changes: %w", err)
		}
		c.Time, c.State = c.Time.UTC(), job.State(st)
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastChange implements storedriver.Driver.
func (d *Driver) LastChange(ctx context.Context, owner string) (int64, error) {
	var seq int64
	err := d.pool.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM change_heads WHERE owner = $1", owner).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("read last change: %w", err)
	}
	return seq, nil
}

// DueDeliveries implements storedriver.Driver: the owners with
// deliveries found one after the other on the index (owner, next_at, id),
// and each one's longest due read by a range of it, so that a read costs
// the owners and what it returns, not every due row.
func (d *Driver) DueDeliveries(ctx context.Context, now time.Time, limit, perOwner int) ([]store.Delivery, error) {
	rows, err := d.pool.Query(ctx, `WITH RECURSIVE owners(owner) AS (
			(SELECT owner FROM deliveries ORDER BY owner LIMIT 1)
			UNION ALL
			SELECT (SELECT d.owner FROM deliveries d WHERE d.owner > o.owner ORDER BY d.owner LIMIT 1) FROM owners o WHERE o.owner IS NOT NULL)
		SELECT x.id, x.owner, x.seq, x.job_id, x.sweep_id, x.time, x.state, x.reason, x.url, x.attempts, x.next_at
		FROM owners o CROSS JOIN LATERAL (
			SELECT * FROM deliveries y WHERE y.owner = o.owner AND y.next_at <= $1 ORDER BY y.next_at, y.id LIMIT $2) x
		ORDER BY x.next_at, x.id LIMIT $3`, now, perOwner, limit)
	if err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	return scanDeliveries(rows)
}

func scanDeliveries(rows pgx.Rows) ([]store.Delivery, error) {
	defer rows.Close()
	var out []store.Delivery
	for rows.Next() {
		var d store.Delivery
		var st string
		c := &d.Change
		if err := rows.Scan(&d.ID, &c.Owner, &c.Seq, &c.JobID, &c.SweepID, &c.Time, &st, &c.Reason, &d.URL, &d.Attempts, &d.NextAt); err != nil {
			return nil, fmt.Errorf("read deliveries: %w", err)
		}
		c.Time, c.State, d.NextAt = c.Time.UTC(), job.State(st), d.NextAt.UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}
