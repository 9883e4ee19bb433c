package pgstore

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Advisory lock keys. The one-key (bigint) and two-key (int, int) spaces do
// not overlap.
const (
	// migrationLock serializes migrations: pg_advisory_xact_lock(bigint).
	migrationLock int64 = 0x68706367617465 // "hpcgate"
	// logLockClass is the first key of a log stream's lock, the second
	// being a hash of the stream: pg_advisory_xact_lock(int, int).
	logLockClass int32 = 0x68706c67 // "hplg"
)

// uniqueViolation is the SQLSTATE of a unique constraint violation.
const uniqueViolation = "23505"

// Store is a store.Store backed by PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at url (postgres://user@host:port/db?...)
// and brings its schema up to date. A schema newer than this binary knows is
// refused.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s := &Store{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres at %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// migrate applies the migrations the database lacks, each in a transaction
// of its own.
func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for {
		done, err := s.migrateOne(ctx, names)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the first of names that the database lacks, holding
// the migration lock, and reports done if it lacks none.
func (s *Store) migrateOne(ctx context.Context, names []string) (done bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return fmt.Errorf("lock for migrations: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE TABLE schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"); err != nil {
				return fmt.Errorf("create schema_version: %w", err)
			}
		}
		var version int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(names) {
			return fmt.Errorf("database schema version %d is newer than this hpcgate knows (%d): use a newer hpcgate", version, len(names))
		}
		if version == len(names) {
			done = true
			return nil
		}
		body, err := migrations.ReadFile(names[version])
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, string(body)); err != nil {
			return fmt.Errorf("migration %s: %w", names[version], err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES ($1)", version+1); err != nil {
			return fmt.Errorf("migration %s: %w", names[version], err)
		}
		return nil
	})
	return done, err
}

// Close closes the connections.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.pool.Ping(ctx)
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == uniqueViolation
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// encodeJob returns j's document for the doc column, without its
// parameters, and its parameters (compacted, as encoding/json would) for the
// params column, nil if it has none.
func encodeJob(j *job.Job) (doc, params []byte, err error) {
	if len(j.Parameters) > 0 {
		if params, err = json.Marshal(j.Parameters); err != nil {
			return nil, nil, fmt.Errorf("job %s: parameters: %w", j.ID, err)
		}
	}
	c := *j
	c.Parameters = nil
	if doc, err = json.Marshal(&c); err != nil {
		return nil, nil, fmt.Errorf("job %s: %w", j.ID, err)
	}
	return jsonbSafe(doc), params, nil
}

// jsonbSafe replaces the escaped NULs (\u0000) in doc, JSON as encoding/json
// writes it, with U+FFFD: jsonb refuses them.
func jsonbSafe(doc []byte) []byte {
	if !bytes.Contains(doc, []byte(`\u0000`)) {
		return doc
	}
	out := make([]byte, 0, len(doc))
	for i := 0; i < len(doc); i++ {
		if doc[i] != '\\' || i+1 == len(doc) {
			out = append(out, doc[i])
			continue
		}
		// An escape: \x, or \uXXXX.
		if doc[i+1] == 'u' && i+6 <= len(doc) && string(doc[i+2:i+6]) == "0000" {
			out = append(out, `\ufffd`...)
			i += 5
			continue
		}
		out = append(out, doc[i], doc[i+1])
		i++
	}
	return out
}

// cleanText makes s storable in a text column: valid UTF-8 without NULs.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func decodeJob(doc, params []byte) (*job.Job, error) {
	var j job.Job
	if err := json.Unmarshal(doc, &j); err != nil {
		return nil, fmt.Errorf("decode job: %w", err)
	}
	j.Parameters = params
	return &j, nil
}

// querier is what a pool and a transaction share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func jobBy(ctx context.Context, q querier, where string, args ...any) (*job.Job, error) {
	var doc, params []byte
	if err := q.QueryRow(ctx, "SELECT doc, params FROM jobs WHERE "+where, args...).Scan(&doc, &params); err != nil {
		return nil, err
	}
	return decodeJob(doc, params)
}

// CreateJob implements store.Store.
func (s *Store) CreateJob(ctx context.Context, j *job.Job, opts *store.CreateOptions) (*job.Job, error) {
	doc, params, err := encodeJob(j)
	if err != nil {
		return nil, err
	}
	var dup *job.Job // the job with j's idempotency key
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if j.IdemKey != "" {
			old, err := jobBy(ctx, tx, "owner = $1 AND idem_key = $2", j.Owner, j.IdemKey)
			if err == nil {
				dup = old
				return fmt.Errorf("job %s: %w", old.ID, store.ErrDuplicate)
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
		}
		if j.ParentID != "" && opts != nil && opts.MaxChildren > 0 {
			// The parent's row lock makes creations of its children count
			// one after the other.
			if _, err := tx.Exec(ctx, "SELECT FROM jobs WHERE id = $1 FOR UPDATE", j.ParentID); err != nil {
				return fmt.Errorf("lock parent: %w", err)
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM jobs WHERE parent_id = $1", j.ParentID).Scan(&n); err != nil {
				return fmt.Errorf("count children: %w", err)
			}
			if n >= opts.MaxChildren {
				return fmt.Errorf("job %s has %d children already: %w", j.ParentID, n, store.ErrLimit)
			}
		}
		// A creation with the same idempotency key that committed since the
		// look-up above wins: its row makes this insert do nothing.
		tag, err := tx.Exec(ctx, `INSERT INTO jobs (id, owner, state, template, parent_id, idem_key, doc, params)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (owner, idem_key) WHERE idem_key IS NOT NULL DO NOTHING`,
			j.ID, j.Owner, string(j.State), j.Template, j.ParentID, nullable(j.IdemKey), doc, params)
		if isUnique(err) {
			return fmt.Errorf("job %s: %w", j.ID, store.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert job: %w", err)
		}
		if tag.RowsAffected() == 0 {
			old, err := jobBy(ctx, tx, "owner = $1 AND idem_key = $2", j.Owner, j.IdemKey)
			if err != nil {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
			dup = old
			return fmt.Errorf("job %s: %w", old.ID, store.ErrDuplicate)
		}
		return insertEvent(ctx, tx, j.ID, j.CreatedAt, j.State, j.Reason)
	})
	if err != nil {
		return dup, err
	}
	return j.Clone(), nil
}

// insertEvent records the job's next event.
func insertEvent(ctx context.Context, tx pgx.Tx, id string, t time.Time, st job.State, reason string) error {
	_, err := tx.Exec(ctx, `INSERT INTO events (job_id, seq, time, state, reason)
		SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4 FROM events WHERE job_id = $1`,
		id, t, string(st), cleanText(reason))
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

// GetJob implements store.Store.
func (s *Store) GetJob(ctx context.Context, id string) (*job.Job, error) {
	j, err := jobBy(ctx, s.pool, "id = $1", id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return j, nil
}

// ListJobs implements store.Store.
func (s *Store) ListJobs(ctx context.Context, f store.JobFilter) ([]*job.Job, string, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Owner != "" {
		where = append(where, "owner = "+arg(f.Owner))
	}
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		where = append(where, "state = ANY("+arg(states)+")")
	}
	if f.Template != "" {
		where = append(where, "template = "+arg(f.Template))
	}
	if f.ParentID != "" {
		where = append(where, "parent_id = "+arg(f.ParentID))
	}
	if f.LabelKey != "" {
		where = append(where, "doc->'Labels'->>"+arg(f.LabelKey)+"::text = "+arg(f.LabelValue))
	}
	order, cmp := "DESC", "<"
	if f.Oldest {
		order, cmp = "ASC", ">"
	}
	if f.PageToken != "" {
		after, err := store.DecodePageToken(f.PageToken)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "seq "+cmp+" "+arg(after))
	}
	q := "SELECT seq, doc, params FROM jobs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq " + order + " LIMIT " + arg(limit+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []*job.Job
	var seqs []int64
	for rows.Next() {
		var seq int64
		var doc, params []byte
		if err := rows.Scan(&seq, &doc, &params); err != nil {
			return nil, "", fmt.Errorf("list jobs: %w", err)
		}
		j, err := decodeJob(doc, params)
		if err != nil {
			return nil, "", err
		}
		out = append(out, j)
		seqs = append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list jobs: %w", err)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = store.EncodePageToken(seqs[limit-1])
	}
	return out, next, nil
}

// UpdateJob implements store.Store. The job's row stays locked from the
// read to the commit, so updates of one job serialize.
func (s *Store) UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error) {
	var out *job.Job
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		old, err := jobBy(ctx, tx, "id = $1 FOR UPDATE", id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("read job %s: %w", id, err)
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
		doc, params, err := encodeJob(j)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE jobs SET state = $2, doc = $3, params = $4 WHERE id = $1", id, string(j.State), doc, params); err != nil {
			return fmt.Errorf("update job %s: %w", id, err)
		}
		if j.State != old.State {
			if err := insertEvent(ctx, tx, id, time.Now(), j.State, j.Reason); err != nil {
				return err
			}
		}
		out = j
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteJob implements store.Store.
func (s *Store) DeleteJob(ctx context.Context, id string) error {
	// One statement: the job goes with its events, logs and tokens, or
	// nothing goes.
	var n int
	err := s.pool.QueryRow(ctx, `WITH j AS (DELETE FROM jobs WHERE id = $1 RETURNING id),
		e AS (DELETE FROM events WHERE job_id IN (SELECT id FROM j)),
		l AS (DELETE FROM logs WHERE job_id IN (SELECT id FROM j)),
		t AS (DELETE FROM tokens WHERE job_id IN (SELECT id FROM j))
		SELECT count(*) FROM j`, id).Scan(&n)
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// Events implements store.Store.
func (s *Store) Events(ctx context.Context, id string) ([]job.Event, error) {
	rows, err := s.pool.Query(ctx, "SELECT time, state, reason FROM events WHERE job_id = $1 ORDER BY seq", id)
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", id, err)
	}
	defer rows.Close()
	var out []job.Event
	for rows.Next() {
		var e job.Event
		var st string
		if err := rows.Scan(&e.Time, &st, &e.Reason); err != nil {
			return nil, fmt.Errorf("events of %s: %w", id, err)
		}
		e.Time = e.Time.UTC()
		e.State = job.State(st)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("events of %s: %w", id, err)
	}
	return out, nil
}

// logSizeQuery is the size of the stream $1/$2: where its last chunk ends.
const logSizeQuery = `coalesce((SELECT off + length(data) FROM logs
	WHERE job_id = $1 AND stream = $2 ORDER BY off DESC LIMIT 1), 0)`

// AppendLog implements store.Store. Appends to one stream serialize on an
// advisory lock of the stream.
func (s *Store) AppendLog(ctx context.Context, id, stream string, offset int64, data []byte) (int64, error) {
	if offset < 0 {
		return 0, fmt.Errorf("log %s/%s: negative offset %d", id, stream, offset)
	}
	var size int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2::text || '/' || $3::text))", logLockClass, id, stream); err != nil {
			return fmt.Errorf("lock log %s/%s: %w", id, stream, err)
		}
		if err := tx.QueryRow(ctx, "SELECT "+logSizeQuery, id, stream).Scan(&size); err != nil {
			return fmt.Errorf("log %s/%s: %w", id, stream, err)
		}
		if offset > size {
			return fmt.Errorf("log %s/%s: append at %d leaves a gap after %d: %w", id, stream, offset, size, store.ErrConflict)
		}
		end := offset + int64(len(data))
		if end <= size {
			return nil
		}
		if _, err := tx.Exec(ctx, "INSERT INTO logs (job_id, stream, off, data) VALUES ($1, $2, $3, $4)", id, stream, size, data[size-offset:]); err != nil {
			return fmt.Errorf("append log %s/%s: %w", id, stream, err)
		}
		size = end
		return nil
	})
	if err != nil {
		return 0, err
	}
	return size, nil
}

// ReadLog implements store.Store.
func (s *Store) ReadLog(ctx context.Context, id, stream string, offset int64, max int) ([]byte, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("log %s/%s: negative offset %d", id, stream, offset)
	}
	if max <= 0 {
		var size int64
		if err := s.pool.QueryRow(ctx, "SELECT "+logSizeQuery, id, stream).Scan(&size); err != nil {
			return nil, 0, fmt.Errorf("log %s/%s: %w", id, stream, err)
		}
		return nil, size, nil
	}
	// One statement, so that the size and the chunks agree. The chunks are
	// the one holding offset and those after it that start before
	// offset+max.
	rows, err := s.pool.Query(ctx, `SELECT sz.size, c.off, c.data
		FROM (SELECT `+logSizeQuery+` AS size) sz
		LEFT JOIN LATERAL (
			SELECT off, data FROM logs
			WHERE job_id = $1 AND stream = $2 AND off < $3::bigint + $4::bigint
			AND off >= coalesce((SELECT max(off) FROM logs WHERE job_id = $1 AND stream = $2 AND off <= $3::bigint), 0)
		) c ON true
		ORDER BY c.off`, id, stream, offset, int64(max))
	if err != nil {
		return nil, 0, fmt.Errorf("read log %s/%s: %w", id, stream, err)
	}
	defer rows.Close()
	var out []byte
	var size int64
	for rows.Next() {
		var off *int64
		var data []byte
		if err := rows.Scan(&size, &off, &data); err != nil {
			return nil, 0, fmt.Errorf("read log %s/%s: %w", id, stream, err)
		}
		if off == nil || *off+int64(len(data)) <= offset {
			continue
		}
		if *off < offset {
			data = data[offset-*off:]
		}
		if room := max - len(out); len(data) > room {
			data = data[:room]
		}
		out = append(out, data...)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read log %s/%s: %w", id, stream, err)
	}
	return out, size, nil
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	scopes := t.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	var exp *time.Time
	if !t.ExpiresAt.IsZero() {
		exp = &t.ExpiresAt
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO tokens (id, hash, username, name, scopes, job_id, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		t.ID, t.Hash, t.User, t.Name, scopes, t.JobID, t.CreatedAt, exp)
	if isUnique(err) {
		return fmt.Errorf("token %s: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

const tokenCols = "id, hash, username, name, scopes, job_id, created_at, expires_at"

func scanToken(row pgx.Row) (store.Token, error) {
	var t store.Token
	var exp *time.Time
	if err := row.Scan(&t.ID, &t.Hash, &t.User, &t.Name, &t.Scopes, &t.JobID, &t.CreatedAt, &exp); err != nil {
		return store.Token{}, err
	}
	if len(t.Scopes) == 0 {
		t.Scopes = nil
	}
	t.CreatedAt = t.CreatedAt.UTC()
	if exp != nil {
		t.ExpiresAt = exp.UTC()
	}
	return t, nil
}

// TokenByHash implements store.Store.
func (s *Store) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, "SELECT "+tokenCols+" FROM tokens WHERE hash = $1", hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("token: %w", store.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("token: %w", err)
	}
	return t, nil
}

// ListTokens implements store.Store.
func (s *Store) ListTokens(ctx context.Context, user string) ([]store.Token, error) {
	q := "SELECT " + tokenCols + " FROM tokens WHERE job_id = ''"
	var args []any
	if user != "" {
		q += " AND username = $1"
		args = append(args, user)
	}
	rows, err := s.pool.Query(ctx, q+" ORDER BY created_at, id", args...)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []store.Token
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// DeleteToken implements store.Store.
func (s *Store) DeleteToken(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, "DELETE FROM tokens WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
	}
	return nil
}
