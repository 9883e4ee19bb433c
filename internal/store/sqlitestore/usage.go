package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
)

const usageCols = "owner, project, active_jobs, active_cores, jobs, core_seconds, bytes, files"

func scanUsage(rows *sql.Rows) ([]store.Usage, error) {
	defer rows.Close()
	var out []store.Usage
	for rows.Next() {
		var u store.Usage
		if err := rows.Scan(&u.User, &u.Project, &u.ActiveJobs, &u.ActiveCores, &u.Jobs, &u.CoreSeconds, &u.Bytes, &u.Files); err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// Usage implements storedriver.Driver.
func (d *Driver) Usage(ctx context.Context, user string) ([]store.Usage, error) {
	q, args := "SELECT "+usageCols+" FROM user_usage ORDER BY owner, project", []any{}
	if user != "" {
		q, args = "SELECT "+usageCols+" FROM user_usage WHERE owner = ? ORDER BY project", []any{user}
	}
	rows, err := d.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return scanUsage(rows)
}

// User implements storedriver.Driver.
func (d *Driver) User(ctx context.Context, name string) (store.User, error) {
	return scanUser(d.r.QueryRowContext(ctx, selectUser, name), name)
}

// User implements storedriver.Tx: writes are serialised, so reading is
// locking.
func (t *sqlTx) User(ctx context.Context, name string) (store.User, error) {
	return scanUser(t.tx.QueryRowContext(ctx, selectUser, name), name)
}

const selectUser = "SELECT disabled, disabled_at, webhook_secret FROM users WHERE name = ?"

func scanUser(row *sql.Row, name string) (store.User, error) {
	u := store.User{Name: name}
	var at int64
	err := row.Scan(&u.Disabled, &at, &u.WebhookSecret)
	if errors.Is(err, sql.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("read user %s: %w", name, err)
	}
	if at != 0 {
		u.DisabledAt = time.Unix(0, at).UTC()
	}
	return u, nil
}

// UsageForUpdate implements storedriver.Tx: writes are serialised, so
// reading is locking.
func (t *sqlTx) UsageForUpdate(ctx context.Context, user string) ([]store.Usage, error) {
	rows, err := t.stmt(ctx, t.st.usageForUpdate).QueryContext(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return scanUsage(rows)
}

// AddUsage implements storedriver.Tx.
func (t *sqlTx) AddUsage(ctx context.Context, u store.Usage) error {
	_, err := t.stmt(ctx, t.st.addUsage).ExecContext(ctx,
		u.User, u.Project, u.ActiveJobs, u.ActiveCores, u.Jobs, u.CoreSeconds, u.Bytes, u.Files)
	if err != nil {
		return fmt.Errorf("count usage of %s: %w", u.User, err)
	}
	return nil
}

// PutUser implements storedriver.Tx.
func (t *sqlTx) PutUser(ctx context.Context, u store.User) error {
	var at int64
	if !u.DisabledAt.IsZero() {
		at = u.DisabledAt.UnixNano()
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO users (name, disabled, disabled_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled, disabled_at = excluded.disabled_at`, u.Name, u.Disabled, at)
	if err != nil {
		return fmt.Errorf("store user %s: %w", u.Name, err)
	}
	return nil
}

// PutWebhookSecret implements storedriver.Tx.
func (t *sqlTx) PutWebhookSecret(ctx context.Context, user, secret string) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO users (name, webhook_secret) VALUES (?, ?)
		ON CONFLICT (name) DO UPDATE SET webhook_secret = excluded.webhook_secret`, user, secret)
	if err != nil {
		return fmt.Errorf("store the webhook secret of %s: %w", user, err)
	}
	return nil
}
