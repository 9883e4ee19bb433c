package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hpcgate/hpcgate/internal/store"
)

const usageCols = "owner, project, active_jobs, active_cores, jobs, core_seconds, bytes, files"

func scanUsage(rows pgx.Rows) ([]store.Usage, error) {
	defer rows.Close()
	var out []store.Usage
	for rows.Next() {
		var u store.Usage
		if err := rows.Scan(&u.User, &u.Project, &u.ActiveJobs, &u.ActiveCores, &u.Jobs, &u.CoreSeconds, &u.Bytes, &u.Files); err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return out, nil
}

// Usage implements storedriver.Driver.
func (d *Driver) Usage(ctx context.Context, user string) ([]store.Usage, error) {
	q, args := "SELECT "+usageCols+" FROM user_usage ORDER BY owner, project", []any{}
	if user != "" {
		q, args = "SELECT "+usageCols+" FROM user_usage WHERE owner = $1 ORDER BY project", []any{user}
	}
	rows, err := d.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return scanUsage(rows)
}

// User implements storedriver.Driver.
func (d *Driver) User(ctx context.Context, name string) (store.User, error) {
	return scanUser(d.pool.QueryRow(ctx, selectUser, name), name)
}

// User implements storedriver.Tx. The row stays locked until the
// transaction ends: it is made (as a user with nothing set) if there is
// none, since FOR UPDATE locks no row that does not exist, and two
// transactions that both found none would each write theirs over the
// other's.
func (t *pgTx) User(ctx context.Context, name string) (store.User, error) {
	if _, err := t.tx.Exec(ctx, "INSERT INTO users (name) VALUES ($1) ON CONFLICT DO NOTHING", name); err != nil {
		return store.User{Name: name}, fmt.Errorf("lock user %s: %w", name, err)
	}
	return scanUser(t.tx.QueryRow(ctx, selectUser+" FOR UPDATE", name), name)
}

const selectUser = "SELECT disabled, disabled_at, webhook_secret FROM users WHERE name = $1"

func scanUser(row pgx.Row, name string) (store.User, error) {
	u := store.User{Name: name}
	var at *time.Time
	err := row.Scan(&u.Disabled, &at, &u.WebhookSecret)
	if errors.Is(err, pgx.ErrNoRows) {
		return u, fmt.Errorf("user %s: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return u, fmt.Errorf("read user %s: %w", name, err)
	}
	if at != nil {
		u.DisabledAt = at.UTC()
	}
	return u, nil
}

// UsageForUpdate implements storedriver.Tx. The user's row of project ”
// always exists once this runs, and is locked until the transaction ends:
// every quota check of the user takes that lock first.
func (t *pgTx) UsageForUpdate(ctx context.Context, user string) ([]store.Usage, error) {
	if _, err := t.tx.Exec(ctx, "INSERT INTO user_usage (owner, project) VALUES ($1, '') ON CONFLICT DO NOTHING", user); err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	if _, err := t.tx.Exec(ctx, "SELECT FROM user_usage WHERE owner = $1 AND project = '' FOR UPDATE", user); err != nil {
		return nil, fmt.Errorf("lock usage: %w", err)
	}
	rows, err := t.tx.Query(ctx, "SELECT "+usageCols+" FROM user_usage WHERE owner = $1 ORDER BY project", user)
	if err != nil {
		return nil, fmt.Errorf("read usage: %w", err)
	}
	return scanUsage(rows)
}

// AddUsage implements storedriver.Tx.
func (t *pgTx) AddUsage(ctx context.Context, u store.Usage) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO user_usage AS u (`+usageCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (owner, project) DO UPDATE SET active_jobs = u.active_jobs + excluded.active_jobs,
		active_cores = u.active_cores + excluded.active_cores, jobs = u.jobs + excluded.jobs,
		core_seconds = u.core_seconds + excluded.core_seconds, bytes = u.bytes + excluded.bytes,
		files = u.files + excluded.files`,
		u.User, u.Project, u.ActiveJobs, u.ActiveCores, u.Jobs, u.CoreSeconds, u.Bytes, u.Files)
	if err != nil {
		return fmt.Errorf("count usage of %s: %w", u.User, err)
	}
	return nil
}

// PutUser implements storedriver.Tx.
func (t *pgTx) PutUser(ctx context.Context, u store.User) error {
	var at *time.Time
	if !u.DisabledAt.IsZero() {
		at = &u.DisabledAt
	}
	_, err := t.tx.Exec(ctx, `INSERT INTO users (name, disabled, disabled_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET disabled = excluded.disabled, disabled_at = excluded.disabled_at`, u.Name, u.Disabled, at)
	if err != nil {
		return fmt.Errorf("store user %s: %w", u.Name, err)
	}
	return nil
}

// PutWebhookSecret implements storedriver.Tx.
func (t *pgTx) PutWebhookSecret(ctx context.Context, user, secret string) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO users (name, webhook_secret) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET webhook_secret = excluded.webhook_secret`, user, secret)
	if err != nil {
		return fmt.Errorf("store the webhook secret of %s: %w", user, err)
	}
	return nil
}
