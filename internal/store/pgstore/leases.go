package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/rowstore"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
)

// The replicas that share a PostgreSQL database share their uploads'
// turns and holds through it (unlogged tables: see migration 13).
var _ store.Leases = (*Store)(nil)

// lapsedKept is how long a lapsed lease of a key is left before a release
// of any key deletes it: a lease is taken over once lapsed, so this only
// bounds what a process that died leaves behind.
const lapsedKept = time.Hour

// LeaseKey implements store.Leases.
func (s *Store) LeaseKey(ctx context.Context, key, holder string, ttl time.Duration) (bool, error) {
	var got string
	err := s.d.pool.QueryRow(ctx, `INSERT INTO key_leases AS l (key, holder, expires_at)
		VALUES ($1, $2, clock_timestamp() + $3 * interval '1 microsecond')
		ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE l.holder = excluded.holder OR l.expires_at < clock_timestamp()
		RETURNING holder`, key, holder, ttl.Microseconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", key, err)
	}
	return true, nil
}

// ReleaseKey implements store.Leases.
func (s *Store) ReleaseKey(ctx context.Context, key, holder string) error {
	_, err := s.d.pool.Exec(ctx, `DELETE FROM key_leases WHERE key = $1 AND holder = $2
		OR expires_at < clock_timestamp() - $3 * interval '1 microsecond'`, key, holder, lapsedKept.Microseconds())
	if err != nil {
		return fmt.Errorf("release %s: %w", key, err)
	}
	return nil
}

// Hold implements store.Leases. It locks the user's usage row, as every
// quota check does, so that holds and counts of one user come one after
// the other; its commit is not waited for (a crash loses every hold).
func (s *Store) Hold(ctx context.Context, id, user string, want, limit store.Stored, partial bool, ttl time.Duration) (store.Stored, error) {
	var added store.Stored
	err := pgx.BeginFunc(ctx, s.d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
			return err
		}
		rows, err := (&pgTx{tx: tx}).UsageForUpdate(ctx, user)
		if err != nil {
			return err
		}
		var used store.Stored
		for _, u := range rows {
			if u.Project == "" {
				used = store.Stored{Bytes: u.Bytes, Files: u.Files}
			}
		}
		if _, err := tx.Exec(ctx, "DELETE FROM holds WHERE owner = $1 AND expires_at < clock_timestamp()", user); err != nil {
			return err
		}
		var held store.Stored
		if err := tx.QueryRow(ctx, "SELECT coalesce(sum(bytes), 0), coalesce(sum(files), 0) FROM holds WHERE owner = $1", user).Scan(&held.Bytes, &held.Files); err != nil {
			return err
		}
		if added.Bytes, err = store.Fit("bytes", want.Bytes, used.Bytes+held.Bytes, limit.Bytes, partial); err != nil {
			return err
		}
		if added.Files, err = store.Fit("files", want.Files, used.Files+held.Files, limit.Files, false); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO holds AS h (id, owner, bytes, files, expires_at)
			VALUES ($1, $2, $3, $4, clock_timestamp() + $5 * interval '1 microsecond')
			ON CONFLICT (id) DO UPDATE SET bytes = h.bytes + excluded.bytes, files = h.files + excluded.files,
			expires_at = excluded.expires_at`, id, user, added.Bytes, added.Files, ttl.Microseconds())
		return err
	})
	var qe *store.QuotaError
	if errors.As(err, &qe) {
		return store.Stored{}, err
	}
	if err != nil {
		return store.Stored{}, fmt.Errorf("hold room of %s: %w", user, err)
	}
	return added, nil
}

// Settle implements store.Leases.
func (s *Store) Settle(ctx context.Context, id, user string, delta store.Stored) error {
	return s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
		if delta != (store.Stored{}) {
			if _, err := rowstore.AddStoredIn(ctx, tx, user, delta, store.Stored{}); err != nil {
				return err
			}
		}
		if _, err := tx.(*pgTx).tx.Exec(ctx, "DELETE FROM holds WHERE id = $1", id); err != nil {
			return fmt.Errorf("let go of hold %s: %w", id, err)
		}
		return nil
	})
}
