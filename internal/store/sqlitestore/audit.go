package sqlitestore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
)

// InsertAudit implements storedriver.Tx.
func (t *sqlTx) InsertAudit(ctx context.Context, e store.AuditEntry) error {
	_, err := t.stmt(ctx, t.st.insertAudit).ExecContext(ctx,
		e.Time.UnixNano(), e.User, e.TokenID, e.JobID, e.Action, e.Outcome, e.Client, e.RequestID, e.Target)
	if err != nil {
		return fmt.Errorf("insert audit entry: %w", err)
	}
	return nil
}

// DeleteAuditBefore implements storedriver.Tx.
func (t *sqlTx) DeleteAuditBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := t.tx.ExecContext(ctx, "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE time < ? ORDER BY time LIMIT ?)",
		before.UnixNano(), limit)
	if err != nil {
		return 0, fmt.Errorf("purge audit: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// ListAudit implements storedriver.Driver.
func (d *Driver) ListAudit(ctx context.Context, q storedriver.AuditQuery) ([]store.AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		where = append(where, cond)
		args = append(args, arg)
	}
	if q.User != "" {
		add("user = ?", q.User)
	}
	if q.JobID != "" {
		add("job_id = ?", q.JobID)
		where = append(where, "job_id <> ''") // names the partial index audit_job
	}
	if q.Action != "" {
		add("action = ?", q.Action)
	}
	if q.Target != "" {
		add("instr(target, ?) > 0", q.Target)
	}
	if !q.Since.IsZero() {
		add("time >= ?", q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		add("time < ?", q.Until.UnixNano())
	}
	if q.HasBefore {
		add("seq < ?", q.Before)
	}
	s := "SELECT seq, time, user, token_id, job_id, action, outcome, client, request_id, target FROM audit"
	if len(where) > 0 {
		s += " WHERE " + strings.Join(where, " AND ")
	}
	s += " ORDER BY seq DESC LIMIT ?"
	rows, err := d.r.QueryContext(ctx, s, append(args, q.Limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var ns int64
		if err := rows.Scan(&e.Seq, &ns, &e.User, &e.TokenID, &e.JobID, &e.Action, &e.Outcome, &e.Client, &e.RequestID, &e.Target); err != nil {
			return nil, err
		}
		e.Time = time.Unix(0, ns).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}
