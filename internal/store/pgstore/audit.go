package pgstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
)

// InsertAudit implements storedriver.Tx.
func (t *pgTx) InsertAudit(ctx context.Context, e store.AuditEntry) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO audit (time, username, token_id, job_id, action, outcome, client, request_id, target)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		e.Time, cleanText(e.User), cleanText(e.TokenID), cleanText(e.JobID), cleanText(e.Action), e.Outcome, cleanText(e.Client), cleanText(e.RequestID), cleanText(e.Target))
	if err != nil {
		return fmt.Errorf("insert audit entry: %w", err)
	}
	return nil
}

// DeleteAuditBefore implements storedriver.Tx.
func (t *pgTx) DeleteAuditBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := t.tx.Exec(ctx, "DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE time < $1 ORDER BY time LIMIT $2)", before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge audit: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// ListAudit implements storedriver.Driver.
func (d *Driver) ListAudit(ctx context.Context, q storedriver.AuditQuery) ([]store.AuditEntry, error) {
	var where []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.User != "" {
		add("username = $%d", q.User)
	}
	if q.JobID != "" {
		add("job_id = $%d", q.JobID)
		where = append(where, "job_id <> ''") // names the partial index audit_job
	}
	if q.Action != "" {
		add("action = $%d", q.Action)
	}
	if q.Target != "" {
		add("strpos(target, $%d) > 0", q.Target)
	}
	if !q.Since.IsZero() {
		add("time >= $%d", q.Since)
	}
	if !q.Until.IsZero() {
		add("time < $%d", q.Until)
	}
	if q.HasBefore {
		add("seq < $%d", q.Before)
	}
	s := "SELECT seq, time, username, token_id, job_id, action, outcome, client, request_id, target FROM audit"
	if len(where) > 0 {
		s += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, q.Limit)
	s += fmt.Sprintf(" ORDER BY seq DESC LIMIT $%d", len(args))
	rows, err := d.pool.Query(ctx, s, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		if err := rows.Scan(&e.Seq, &e.Time, &e.User, &e.TokenID, &e.JobID, &e.Action, &e.Outcome, &e.Client, &e.RequestID, &e.Target); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		e.Time = e.Time.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
