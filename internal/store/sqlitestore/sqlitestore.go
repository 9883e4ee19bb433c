// Package sqlitestore is a store.Store in one SQLite file (pure Go driver,
// WAL mode): the embedded default, with no set-up.
//
// Writes go through one connection, so they are serialised in the process
// and never meet SQLITE_BUSY from each other; reads use a pool.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store backed by SQLite.
type Store struct {
	w *sql.DB // one connection: all writes
	r *sql.DB // readers

	// Group commit: writers queue their work; one of them at a time (the
	// leader, holding batchMu) runs every queued piece of work in one
	// transaction, each in a savepoint of its own, and commits once.
	qmu     sync.Mutex
	queue   []*writeReq
	batchMu sync.Mutex
}

type writeReq struct {
	ctx  context.Context
	fn   func(context.Context, *sql.Tx) error
	done chan error // buffered: the leader never blocks
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database file at path and brings its
// schema up to date. A schema newer than this binary knows is refused.
func Open(ctx context.Context, path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	s := &Store{w: w}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	s.r = r
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var version int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(names) {
		return fmt.Errorf("database schema version %d is newer than this hpcgate knows (%d): use a newer hpcgate", version, len(names))
	}
	for i := version; i < len(names); i++ {
		body, err := migrations.ReadFile(names[i])
		if err != nil {
			return err
		}
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, string(body)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %s: %w", names[i], err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", names[i], err)
		}
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	return s.r.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}

func isUnique(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// write runs fn in a transaction. Concurrent writes are committed together,
// which keeps SQLite's one writer from paying a commit for each. If fn
// fails, what it did is rolled back and its error returned; the others'
// work is not affected.
func (s *Store) write(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	s.qmu.Lock()
	s.queue = append(s.queue, r)
	s.qmu.Unlock()

	s.batchMu.Lock()
	select {
	case err := <-r.done: // an earlier leader did it
		s.batchMu.Unlock()
		return err
	default:
	}
	s.qmu.Lock()
	batch := s.queue
	s.queue = nil
	s.qmu.Unlock()
	s.runBatch(batch)
	s.batchMu.Unlock()
	return <-r.done
}

func (s *Store) runBatch(batch []*writeReq) {
	results := make([]error, len(batch))
	ctx := context.Background() // the batch is everyone's: no one caller may cancel it
	err := func() error {
		tx, err := s.w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for i, r := range batch {
			if err := r.ctx.Err(); err != nil {
				results[i] = err
				continue
			}
			if _, err := tx.ExecContext(ctx, "SAVEPOINT w"); err != nil {
				return err
			}
			results[i] = r.fn(ctx, tx)
			release := "RELEASE w"
			if results[i] != nil {
				release = "ROLLBACK TO w; RELEASE w"
			}
			if _, err := tx.ExecContext(ctx, release); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	for i, r := range batch {
		if err != nil {
			results[i] = fmt.Errorf("write: %w", err)
		}
		r.done <- results[i]
	}
}

// CreateJob implements store.Store.
func (s *Store) CreateJob(ctx context.Context, j *job.Job, opts *store.CreateOptions) (*job.Job, error) {
	var out *job.Job
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		out, err = createOne(ctx, tx, j, opts)
		return err
	})
	return out, err
}

func createOne(ctx context.Context, tx *sql.Tx, j *job.Job, opts *store.CreateOptions) (*job.Job, error) {
	doc, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	if j.IdemKey != "" {
		var existing string
		err := tx.QueryRowContext(ctx, "SELECT doc FROM jobs WHERE owner = ? AND idem_key = ?", j.Owner, j.IdemKey).Scan(&existing)
		if err == nil {
			old, err := decodeJob(existing)
			if err != nil {
				return nil, err
			}
			return old, fmt.Errorf("job %s: %w", old.ID, store.ErrDuplicate)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	if j.ParentID != "" && opts != nil && opts.MaxChildren > 0 {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM jobs WHERE parent_id = ?", j.ParentID).Scan(&n); err != nil {
			return nil, err
		}
		if n >= opts.MaxChildren {
			return nil, fmt.Errorf("job %s has %d children already: %w", j.ParentID, n, store.ErrLimit)
		}
	}
	_, err = tx.ExecContext(ctx, "INSERT INTO jobs (id, owner, state, template, parent_id, idem_key, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
		j.ID, j.Owner, string(j.State), j.Template, j.ParentID, nullable(j.IdemKey), string(doc))
	if isUnique(err) {
		return nil, fmt.Errorf("job %s: %w", j.ID, store.ErrConflict)
	}
	if err != nil {
		return nil, fmt.Errorf("insert job: %w", err)
	}
	if err := insertEvent(ctx, tx, j.ID, 1, j.CreatedAt, j.State, j.Reason); err != nil {
		return nil, err
	}
	return j.Clone(), nil
}

func insertEvent(ctx context.Context, tx *sql.Tx, id string, seq int, t time.Time, st job.State, reason string) error {
	if seq == 0 {
		if err := tx.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) + 1 FROM events WHERE job_id = ?", id).Scan(&seq); err != nil {
			return err
		}
	}
	_, err := tx.ExecContext(ctx, "INSERT INTO events (job_id, seq, time, state, reason) VALUES (?, ?, ?, ?, ?)",
		id, seq, t.UnixNano(), string(st), reason)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

func decodeJob(doc string) (*job.Job, error) {
	var j job.Job
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		return nil, fmt.Errorf("decode job: %w", err)
	}
	return &j, nil
}

// GetJob implements store.Store.
func (s *Store) GetJob(ctx context.Context, id string) (*job.Job, error) {
	var doc string
	err := s.r.QueryRowContext(ctx, "SELECT doc FROM jobs WHERE id = ?", id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return decodeJob(doc)
}

// ListJobs implements store.Store.
func (s *Store) ListJobs(ctx context.Context, f store.JobFilter) ([]*job.Job, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var where []string
	var args []any
	if f.Owner != "" {
		where = append(where, "owner = ?")
		args = append(args, f.Owner)
	}
	if len(f.States) > 0 {
		ph := strings.Repeat("?,", len(f.States))
		where = append(where, "state IN ("+ph[:len(ph)-1]+")")
		for _, st := range f.States {
			args = append(args, string(st))
		}
	}
	if f.Template != "" {
		where = append(where, "template = ?")
		args = append(args, f.Template)
	}
	if f.ParentID != "" {
		where = append(where, "parent_id = ?")
		args = append(args, f.ParentID)
	}
	if f.LabelKey != "" {
		where = append(where, "json_extract(doc, '$.Labels.' || json_quote(?)) = ?")
		args = append(args, f.LabelKey, f.LabelValue)
	}
	order := "DESC"
	cmp := "<"
	if f.Oldest {
		order, cmp = "ASC", ">"
	}
	if f.PageToken != "" {
		after, err := store.DecodePageToken(f.PageToken)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "seq "+cmp+" ?")
		args = append(args, after)
	}
	q := "SELECT seq, doc FROM jobs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq " + order + " LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []*job.Job
	var seqs []int64
	for rows.Next() {
		var seq int64
		var doc string
		if err := rows.Scan(&seq, &doc); err != nil {
			return nil, "", err
		}
		j, err := decodeJob(doc)
		if err != nil {
			return nil, "", err
		}
		out = append(out, j)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodePageToken(seqs[limit-1])
	}
	return out, next, nil
}

// UpdateJob implements store.Store.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error) {
	var out *job.Job
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var doc string
		err := tx.QueryRowContext(ctx, "SELECT doc FROM jobs WHERE id = ?", id).Scan(&doc)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		old, err := decodeJob(doc)
		if err != nil {
			return err
		}
		j := old.Clone()
		if err := fn(j); err != nil {
			return err
		}
		j.ID, j.Owner = old.ID, old.Owner
		if j.State != old.State {
			if err := job.Transition(old.State, j.State); err != nil {
				return fmt.Errorf("job %s: %w", id, err)
			}
		}
		newDoc, err := json.Marshal(j)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE jobs SET state = ?, doc = ? WHERE id = ?", string(j.State), string(newDoc), id); err != nil {
			return fmt.Errorf("update job: %w", err)
		}
		if j.State != old.State {
			if err := insertEvent(ctx, tx, id, 0, time.Now(), j.State, j.Reason); err != nil {
				return err
			}
		}
		out = j
		return nil
	})
	return out, err
}

// DeleteJob implements store.Store.
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM jobs WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
		}
		for _, q := range []string{
			"DELETE FROM events WHERE job_id = ?",
			"DELETE FROM logs WHERE job_id = ?",
			"DELETE FROM tokens WHERE job_id = ?",
		} {
			if _, err := tx.ExecContext(ctx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, id string) ([]job.Event, error) {
	rows, err := s.r.QueryContext(ctx, "SELECT time, state, reason FROM events WHERE job_id = ? ORDER BY seq", id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []job.Event
	for rows.Next() {
		var ns int64
		var e job.Event
		if err := rows.Scan(&ns, &e.State, &e.Reason); err != nil {
			return nil, err
		}
		e.Time = time.Unix(0, ns).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

func logSize(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id, stream string) (int64, error) {
	var size int64
	err := q.QueryRowContext(ctx, "SELECT coalesce(max(off + length(data)), 0) FROM logs WHERE job_id = ? AND stream = ?", id, stream).Scan(&size)
	return size, err
}

// AppendLog implements store.Store.
func (s *Store) AppendLog(ctx context.Context, id, stream string, offset int64, data []byte) (int64, error) {
	var size int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if size, err = logSize(ctx, tx, id, stream); err != nil {
			return err
		}
		if offset > size {
			return fmt.Errorf("log %s/%s: append at %d leaves a gap after %d: %w", id, stream, offset, size, store.ErrConflict)
		}
		end := offset + int64(len(data))
		if end <= size {
			return nil
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO logs (job_id, stream, off, data) VALUES (?, ?, ?, ?)", id, stream, size, data[size-offset:]); err != nil {
			return fmt.Errorf("append log: %w", err)
		}
		size = end
		return nil
	})
	return size, err
}

// ReadLog implements store.Store.
func (s *Store) ReadLog(ctx context.Context, id, stream string, offset int64, max int) ([]byte, int64, error) {
	size, err := logSize(ctx, s.r, id, stream)
	if err != nil {
		return nil, 0, err
	}
	if offset >= size || max <= 0 {
		return nil, size, nil
	}
	rows, err := s.r.QueryContext(ctx, "SELECT off, data FROM logs WHERE job_id = ? AND stream = ? AND off + length(data) > ? AND off < ? ORDER BY off",
		id, stream, offset, offset+int64(max))
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	var out []byte
	for rows.Next() {
		var off int64
		var data []byte
		if err := rows.Scan(&off, &data); err != nil {
			return nil, 0, err
		}
		if off < offset {
			data = data[offset-off:]
		}
		if room := max - len(out); len(data) > room {
			data = data[:room]
		}
		out = append(out, data...)
	}
	return out, size, rows.Err()
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	var exp int64
	if !t.ExpiresAt.IsZero() {
		exp = t.ExpiresAt.UnixNano()
	}
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO tokens (id, hash, user, name, scopes, job_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
			t.ID, t.Hash, t.User, t.Name, strings.Join(t.Scopes, " "), t.JobID, t.CreatedAt.UnixNano(), exp)
		if isUnique(err) {
			return fmt.Errorf("token %s: %w", t.ID, store.ErrConflict)
		}
		return err
	})
}

const tokenCols = "id, hash, user, name, scopes, job_id, created_at, expires_at"

func scanToken(row interface{ Scan(...any) error }) (store.Token, error) {
	var t store.Token
	var scopes string
	var created, exp int64
	if err := row.Scan(&t.ID, &t.Hash, &t.User, &t.Name, &scopes, &t.JobID, &created, &exp); err != nil {
		return t, err
	}
	t.Scopes = strings.Fields(scopes)
	t.CreatedAt = time.Unix(0, created).UTC()
	if exp != 0 {
		t.ExpiresAt = time.Unix(0, exp).UTC()
	}
	return t, nil
}

// TokenByHash implements store.Store.
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, "SELECT "+tokenCols+" FROM tokens WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("token: %w", store.ErrNotFound)
	}
	return t, err
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, user string) ([]store.Token, error) {
	q := "SELECT " + tokenCols + " FROM tokens WHERE job_id = ''"
	var args []any
	if user != "" {
		q += " AND user = ?"
		args = append(args, user)
	}
	rows, err := s.r.QueryContext(ctx, q+" ORDER BY created_at, id", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteToken implements store.Store.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	return s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM tokens WHERE id = ?", id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
		}
		return nil
	})
}
