package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// AppendChange implements storedriver.Tx: writes are serialised, so the
// numbers follow the commits.
func (t *sqlTx) AppendChange(ctx context.Context, c store.Change) (int64, error) {
	var seq int64
	if err := t.stmt(ctx, t.st.changeHead).QueryRowContext(ctx, c.Owner).Scan(&seq); err != nil {
		return 0, fmt.Errorf("number a change: %w", err)
	}
	_, err := t.stmt(ctx, t.st.insertChange).ExecContext(ctx, c.Owner, seq, c.JobID, c.SweepID, c.Time.UnixNano(), string(c.State), c.Reason)
	if err != nil {
		return 0, fmt.Errorf("insert change: %w", err)
	}
	return seq, nil
}

// DeleteChangesBefore implements storedriver.Tx.
func (t *sqlTx) DeleteChangesBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := t.tx.ExecContext(ctx, `DELETE FROM changes WHERE (owner, seq) IN
		(SELECT owner, seq FROM changes WHERE time < ? ORDER BY time LIMIT ?)`, before.UnixNano(), limit)
	if err != nil {
		return 0, fmt.Errorf("purge changes: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// InsertDelivery implements storedriver.Tx.
func (t *sqlTx) InsertDelivery(ctx context.Context, d store.Delivery) error {
	c := d.Change
	_, err := t.tx.ExecContext(ctx, `INSERT INTO deliveries (owner, seq, job_id, sweep_id, time, state, reason, url, attempts, next_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Owner, c.Seq, c.JobID, c.SweepID, c.Time.UnixNano(), string(c.State), c.Reason, d.URL, d.Attempts, d.NextAt.UnixNano())
	if err != nil {
		return fmt.Errorf("queue delivery: %w", err)
	}
	return nil
}

// DeleteDelivery implements storedriver.Tx.
func (t *sqlTx) DeleteDelivery(ctx context.Context, id int64) error {
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM deliveries WHERE id = ?", id); err != nil {
		return fmt.Errorf("remove delivery: %w", err)
	}
	return nil
}

// ClaimDelivery implements storedriver.Tx.
func (t *sqlTx) ClaimDelivery(ctx context.Context, id int64, was, until time.Time) (bool, error) {
	res, err := t.tx.ExecContext(ctx, "UPDATE deliveries SET next_at = ? WHERE id = ? AND next_at = ?", until.UnixNano(), id, was.UnixNano())
	if err != nil {
		return false, fmt.Errorf("claim delivery: %w", err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// UpdateDelivery implements storedriver.Tx.
func (t *sqlTx) UpdateDelivery(ctx context.Context, id int64, attempts int, next time.Time) error {
	if _, err := t.tx.ExecContext(ctx, "UPDATE deliveries SET attempts = ?, next_at = ? WHERE id = ?", attempts, next.UnixNano(), id); err != nil {
		return fmt.Errorf("update delivery: %w", err)
	}
	return nil
}

// PostponeDeliveries implements storedriver.Tx.
func (t *sqlTx) PostponeDeliveries(ctx context.Context, url string, until time.Time) (int, error) {
	res, err := t.tx.ExecContext(ctx, "UPDATE deliveries SET next_at = ?1 WHERE url = ?2 AND next_at < ?1", until.UnixNano(), url)
	if err != nil {
		return 0, fmt.Errorf("postpone deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Changes implements storedriver.Driver.
func (d *Driver) Changes(ctx context.Context, owner string, after int64, limit int) ([]store.Change, error) {
	rows, err := d.r.QueryContext(ctx, `SELECT seq, job_id, sweep_id, time, state, reason FROM changes
		WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?`, owner, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	var out []store.Change
	for rows.Next() {
		c := store.Change{Owner: owner}
		var t int64
		var st string
		if err := rows.Scan(&c.Seq, &c.JobID, &c.SweepID, &t, &st, &c.Reason); err != nil {
			return nil, fmt.Errorf("read changes: %w", err)
		}
		c.Time, c.State = time.Unix(0, t).UTC(), job.State(st)
		out = append(out, c)
	}
	return out, rows.Err()
}

// LastChange implements storedriver.Driver.
func (d *Driver) LastChange(ctx context.Context, owner string) (int64, error) {
	var seq int64
	err := d.r.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM change_heads WHERE owner = ?", owner).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("read last change: %w", err)
	}
	return seq, nil
}

// dueDeliveriesQuery reads up to ?3 due deliveries (next_at <= ?1), at
// most ?2 of each owner's: the owners with deliveries found one after the
// other on the index (owner, next_at, id), and each one's longest due read
// by a range of it, so that a read costs the owners and what it returns,
// not every due row.
const dueDeliveriesQuery = `WITH RECURSIVE owners(owner) AS (
		SELECT (SELECT owner FROM deliveries ORDER BY owner LIMIT 1)
		UNION ALL
		SELECT (SELECT d.owner FROM deliveries d WHERE d.owner > owners.owner ORDER BY d.owner LIMIT 1) FROM owners WHERE owners.owner IS NOT NULL)
	SELECT x.id, x.owner, x.seq, x.job_id, x.sweep_id, x.time, x.state, x.reason, x.url, x.attempts, x.next_at
	FROM owners o JOIN deliveries x ON x.id IN (
		SELECT y.id FROM deliveries y WHERE y.owner = o.owner AND y.next_at <= ?1 ORDER BY y.next_at, y.id LIMIT ?2)
	WHERE o.owner IS NOT NULL ORDER BY x.next_at, x.id LIMIT ?3`

// DueDeliveries implements storedriver.Driver.
func (d *Driver) DueDeliveries(ctx context.Context, now time.Time, limit, perOwner int) ([]store.Delivery, error) {
	rows, err := d.r.QueryContext(ctx, dueDeliveriesQuery, now.UnixNano(), perOwner, limit)
	if err != nil {
		return nil, fmt.Errorf("read deliveries: %w", err)
	}
	return scanDeliveries(rows)
}

func scanDeliveries(rows *sql.Rows) ([]store.Delivery, error) {
	defer rows.Close()
	var out []store.Delivery
	for rows.Next() {
		var d store.Delivery
		var t, next int64
		var st string
		c := &d.Change
		if err := rows.Scan(&d.ID, &c.Owner, &c.Seq, &c.JobID, &c.SweepID, &t, &st, &c.Reason, &d.URL, &d.Attempts, &next); err != nil {
			return nil, fmt.Errorf("read deliveries: %w", err)
		}
		c.Time, c.State, d.NextAt = time.Unix(0, t).UTC(), job.State(st), time.Unix(0, next).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}
