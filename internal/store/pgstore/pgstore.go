package pgstore

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/rowstore"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
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
	*rowstore.Store
	d *Driver
}

// Driver is the storedriver.Driver of a PostgreSQL database.
type Driver struct {
	pool *pgxpool.Pool
}

var _ storedriver.Driver = (*Driver)(nil)

// Open connects to the database at url (postgres://user@host:port/db?...)
// and brings its schema up to date. A schema newer than this binary knows is
// refused.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	// A write is acknowledged once its commit is flushed to disk, whatever
	// the server's default, unless the URL asks otherwise.
	if _, ok := cfg.ConnConfig.RuntimeParams["synchronous_commit"]; !ok {
		cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	d := &Driver{pool: pool}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres at %s:%d/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database, err)
	}
	if err := d.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{Store: rowstore.New(d), d: d}, nil
}

// migrate applies the migrations the database lacks, each in a transaction
// of its own.
func (d *Driver) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for {
		done, err := d.migrateOne(ctx, names)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the first of names that the database lacks, holding
// the migration lock, and reports done if it lacks none.
func (d *Driver) migrateOne(ctx context.Context, names []string) (done bool, err error) {
	err = pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
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
func (d *Driver) Close() error {
	d.pool.Close()
	return nil
}

// Ping checks the database answers.
func (d *Driver) Ping(ctx context.Context) error {
	return d.pool.Ping(ctx)
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

// encodeRow returns r's document for the doc column, without its
// parameters and template document, and those (compacted, as
// encoding/json would) for the params and template_doc columns (json, not
// jsonb, so that they read back as written), nil if unset.
func encodeRow(r *storedriver.JobRow) (doc, params, tdoc []byte, err error) {
	raw := func(m json.RawMessage) ([]byte, error) {
		if len(m) == 0 {
			return nil, nil
		}
		return json.Marshal(m)
	}
	if params, err = raw(r.Parameters); err != nil {
		return nil, nil, nil, fmt.Errorf("job %s: parameters: %w", r.ID, err)
	}
	if tdoc, err = raw(r.TemplateDoc); err != nil {
		return nil, nil, nil, fmt.Errorf("job %s: template document: %w", r.ID, err)
	}
	c := *r
	c.Parameters, c.TemplateDoc = nil, nil
	if doc, err = c.Encode(); err != nil {
		return nil, nil, nil, err
	}
	return jsonbSafe(doc), params, tdoc, nil
}

func decodeRow(seq int64, doc, params, tdoc []byte) (*storedriver.JobRow, error) {
	r, err := storedriver.DecodeJobRow(doc)
	if err != nil {
		return nil, err
	}
	r.Seq = seq
	r.Parameters = params
	if tdoc != nil { // version 1 kept it in doc
		r.TemplateDoc = tdoc
	}
	return r, nil
}

// querier is what a pool and a transaction share.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const jobCols = "seq, doc, params, template_doc"

func jobBy(ctx context.Context, q querier, what, where string, args ...any) (*storedriver.JobRow, error) {
	var seq int64
	var doc, params, tdoc []byte
	err := q.QueryRow(ctx, "SELECT "+jobCols+" FROM jobs WHERE "+where, args...).Scan(&seq, &doc, &params, &tdoc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("job %s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", what, err)
	}
	return decodeRow(seq, doc, params, tdoc)
}

// Write implements storedriver.Driver: one transaction. PostgreSQL's
// synchronous_commit (on by default) makes a commit return once it is
// flushed to its WAL on disk.
func (d *Driver) Write(ctx context.Context, fn func(context.Context, storedriver.Tx) error) error {
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		return fn(ctx, &pgTx{tx: tx})
	})
}

type pgTx struct {
	tx pgx.Tx
}

// JobForUpdate locks the job's row until the transaction ends.
func (t *pgTx) JobForUpdate(ctx context.Context, id string) (*storedriver.JobRow, error) {
	return jobBy(ctx, t.tx, id, "id = $1 FOR UPDATE", id)
}

func (t *pgTx) JobByIdemKey(ctx context.Context, owner, key string) (*storedriver.JobRow, error) {
	return jobBy(ctx, t.tx, "with key "+key, "owner = $1 AND idem_key = $2", owner, key)
}

// CountChildren locks the parent's row: creations of its children count
// one after the other.
func (t *pgTx) CountChildren(ctx context.Context, id string) (int, error) {
	if _, err := t.tx.Exec(ctx, "SELECT FROM jobs WHERE id = $1 FOR UPDATE", id); err != nil {
		return 0, fmt.Errorf("lock parent: %w", err)
	}
	var n int
	err := t.tx.QueryRow(ctx, "SELECT count(*) FROM jobs WHERE parent_id = $1 AND parent_id <> ''", id).Scan(&n)
	return n, err
}

func finishedCol(r *storedriver.JobRow) *time.Time {
	if t, ok := r.Finished(); ok {
		return &t
	}
	return nil
}

// inEngineCol is the in_engine column: true, or NULL (not in the index
// jobs_in_engine) for the many jobs held at creation or ended.
func inEngineCol(r *storedriver.JobRow) *bool {
	if r.InEngine() {
		t := true
		return &t
	}
	return nil
}

// InsertJob implements storedriver.Tx. A creation with the same
// idempotency key that committed since the caller looked it up makes the
// insert do nothing: ErrDuplicate.
func (t *pgTx) InsertJob(ctx context.Context, r *storedriver.JobRow) error {
	doc, params, tdoc, err := encodeRow(r)
	if err != nil {
		return err
	}
	var seq int64
	err = t.tx.QueryRow(ctx, `INSERT INTO jobs (id, owner, state, template, parent_id, idem_key, sweep_id, finished_at, in_engine, doc, params, template_doc)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		ON CONFLICT (owner, idem_key) WHERE idem_key IS NOT NULL DO NOTHING RETURNING seq`,
		r.ID, r.Owner, r.State, r.Template, r.ParentID, nullable(r.IdemKey), nullable(r.SweepID), finishedCol(r), inEngineCol(r), doc, params, tdoc).Scan(&seq)
	if isUnique(err) {
		return fmt.Errorf("job %s: %w", r.ID, store.ErrConflict)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("job %s: %w", r.ID, store.ErrDuplicate)
	}
	if err != nil {
		return fmt.Errorf("insert job %s: %w", r.ID, err)
	}
	return insertLabels(ctx, t.tx, seq, r.Owner, r.Labels)
}

func insertLabels(ctx context.Context, tx pgx.Tx, seq int64, owner string, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	keys := make([]string, 0, len(labels))
	values := make([]string, 0, len(labels))
	for k, v := range labels {
		keys = append(keys, cleanText(k))
		values = append(values, cleanText(v))
	}
	if _, err := tx.Exec(ctx, "INSERT INTO job_labels (seq, owner, key, value) SELECT $1, $2, k, v FROM unnest($3::text[], $4::text[]) AS u(k, v)",
		seq, owner, keys, values); err != nil {
		return fmt.Errorf("insert labels: %w", err)
	}
	return nil
}

func (t *pgTx) UpdateJob(ctx context.Context, old, r *storedriver.JobRow) error {
	doc, params, tdoc, err := encodeRow(r)
	if err != nil {
		return err
	}
	if _, err := t.tx.Exec(ctx, `UPDATE jobs SET state = $2, template = $3, parent_id = $4, sweep_id = $5, finished_at = $6,
		in_engine = $7, doc = $8, params = $9, template_doc = $10 WHERE seq = $1`,
		old.Seq, r.State, r.Template, r.ParentID, nullable(r.SweepID), finishedCol(r), inEngineCol(r), doc, params, tdoc); err != nil {
		return fmt.Errorf("update job %s: %w", r.ID, err)
	}
	if !maps.Equal(old.Labels, r.Labels) {
		if _, err := t.tx.Exec(ctx, "DELETE FROM job_labels WHERE seq = $1", old.Seq); err != nil {
			return fmt.Errorf("update labels of %s: %w", r.ID, err)
		}
		return insertLabels(ctx, t.tx, old.Seq, old.Owner, r.Labels)
	}
	return nil
}

func (t *pgTx) AppendEvent(ctx context.Context, id string, e job.Event) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO events (job_id, seq, time, state, reason)
		SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4 FROM events WHERE job_id = $1`,
		id, e.Time, string(e.State), cleanText(e.Reason))
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

// DeleteJob implements storedriver.Tx in one statement.
func (t *pgTx) DeleteJob(ctx context.Context, id string) error {
	var n int
	err := t.tx.QueryRow(ctx, `WITH j AS (DELETE FROM jobs WHERE id = $1 RETURNING id, seq),
		b AS (DELETE FROM job_labels WHERE seq IN (SELECT seq FROM j)),
		e AS (DELETE FROM events WHERE job_id IN (SELECT id FROM j)),
		l AS (DELETE FROM logs WHERE job_id IN (SELECT id FROM j)),
		d AS (DELETE FROM delivered WHERE job_id IN (SELECT id FROM j)),
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

func (t *pgTx) FinishedBefore(ctx context.Context, before time.Time, limit int, keep store.Keep) ([]string, error) {
	rows, err := t.tx.Query(ctx, `SELECT id FROM jobs j WHERE finished_at < $1
		AND (j.sweep_id IS NULL OR j.sweep_id = '' OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.sweep_id = j.sweep_id AND o.finished_at IS NULL))
		AND j.id <> ALL($3) AND coalesce(j.sweep_id, '') <> ALL($4)
		ORDER BY finished_at LIMIT $2`, before, limit, nonNilStrings(keep.Jobs), nonNilStrings(keep.Sweeps))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// logSizeQuery is the size of the stream $1/$2: where its last chunk ends.
const logSizeQuery = `coalesce((SELECT off + length(data) FROM logs
	WHERE job_id = $1 AND stream = $2 ORDER BY off DESC LIMIT 1), 0)`

// LastDelivered implements storedriver.Tx (the caller holds the job's
// row, so records of one job are numbered one at a time).
func (t *pgTx) LastDelivered(ctx context.Context, id string) (int, error) {
	var n int
	err := t.tx.QueryRow(ctx, "SELECT coalesce(max(seq), 0) FROM delivered WHERE job_id = $1", id).Scan(&n)
	return n, err
}

// UpdateDelivered implements storedriver.Tx.
func (t *pgTx) UpdateDelivered(ctx context.Context, id string, d job.Delivered) (bool, error) {
	tag, err := t.tx.Exec(ctx, "UPDATE delivered SET path = $1, size = $2 WHERE job_id = $3 AND file = $4", d.Path, d.Size, id, d.File)
	return tag.RowsAffected() > 0, err
}

// InsertDelivered implements storedriver.Tx.
func (t *pgTx) InsertDelivered(ctx context.Context, id string, seq int, d job.Delivered) (bool, error) {
	tag, err := t.tx.Exec(ctx, "INSERT INTO delivered (job_id, file, seq, path, size) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, file) DO NOTHING",
		id, d.File, seq, d.Path, d.Size)
	return tag.RowsAffected() > 0, err
}

// LogSize takes an advisory lock of the stream: appends to one stream
// serialize.
func (t *pgTx) LogSize(ctx context.Context, id, stream string) (int64, error) {
	if _, err := t.tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, hashtext($2::text || '/' || $3::text))", logLockClass, id, stream); err != nil {
		return 0, fmt.Errorf("lock log %s/%s: %w", id, stream, err)
	}
	var size int64
	err := t.tx.QueryRow(ctx, "SELECT "+logSizeQuery, id, stream).Scan(&size)
	return size, err
}

func (t *pgTx) InsertLogChunk(ctx context.Context, id, stream string, off int64, data []byte) error {
	if _, err := t.tx.Exec(ctx, "INSERT INTO logs (job_id, stream, off, data) VALUES ($1, $2, $3, $4)", id, stream, off, data); err != nil {
		return fmt.Errorf("append log %s/%s: %w", id, stream, err)
	}
	return nil
}

func (t *pgTx) InsertToken(ctx context.Context, tok store.Token) error {
	scopes := tok.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	var exp *time.Time
	if !tok.ExpiresAt.IsZero() {
		exp = &tok.ExpiresAt
	}
	_, err := t.tx.Exec(ctx, `INSERT INTO tokens (id, hash, username, name, scopes, job_id, session_key, created_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		tok.ID, tok.Hash, tok.User, tok.Name, scopes, tok.JobID, tok.SessionKey, tok.CreatedAt, exp)
	if isUnique(err) {
		return fmt.Errorf("token %s: %w", tok.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", tok.ID, err)
	}
	return nil
}

func (t *pgTx) DeleteToken(ctx context.Context, id string) error {
	tag, err := t.tx.Exec(ctx, "DELETE FROM tokens WHERE id = $1", id)
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// DeleteTokensExpired implements storedriver.Tx.
func (t *pgTx) DeleteTokensExpired(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := t.tx.Exec(ctx, `DELETE FROM tokens WHERE id IN
		(SELECT id FROM tokens WHERE expires_at < $1 ORDER BY expires_at LIMIT $2)`, before, limit)
	if err != nil {
		return 0, fmt.Errorf("purge tokens: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Job implements storedriver.Driver.
func (d *Driver) Job(ctx context.Context, id string) (*storedriver.JobRow, error) {
	return jobBy(ctx, d.pool, id, "id = $1", id)
}

// listSQL is the query of q: an index range scan for each filter of
// store.JobFilter's documentation.
func listSQL(q storedriver.ListQuery) (string, []any) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	from, seq := "jobs j", "j.seq"
	if q.LabelKey != "" {
		from, seq = "job_labels l JOIN jobs j ON j.seq = l.seq", "l.seq"
		where = append(where, "l.key = "+arg(cleanText(q.LabelKey)), "l.value = "+arg(cleanText(q.LabelValue)))
		if q.Owner != "" {
			where = append(where, "l.owner = "+arg(q.Owner))
		}
	} else if q.Owner != "" {
		where = append(where, "j.owner = "+arg(q.Owner))
	}
	switch len(q.States) {
	case 0:
	case 1:
		where = append(where, "j.state = "+arg(string(q.States[0])))
	default:
		states := make([]string, len(q.States))
		for i, st := range q.States {
			states[i] = string(st)
		}
		where = append(where, "j.state = ANY("+arg(states)+")")
	}
	if q.Template != "" {
		where = append(where, "j.template = "+arg(q.Template))
	}
	if q.ParentID != "" {
		// The literal term lets the planner use the partial index jobs_parent.
		where = append(where, "j.parent_id = "+arg(q.ParentID), "j.parent_id <> ''")
	}
	if q.SweepID != "" {
		where = append(where, "j.sweep_id = "+arg(q.SweepID))
	}
	if q.InEngine {
		// The literal term names the partial index jobs_in_engine.
		where = append(where, "j.in_engine")
	}
	order, cmp := "DESC", "<"
	if q.Oldest {
		order, cmp = "ASC", ">"
	}
	if q.HasAfter {
		where = append(where, seq+" "+cmp+" "+arg(q.After))
	}
	s := "SELECT j.seq, j.doc, j.params, j.template_doc FROM " + from
	if len(where) > 0 {
		s += " WHERE " + strings.Join(where, " AND ")
	}
	s += " ORDER BY " + seq + " " + order + " LIMIT " + arg(q.Limit)
	return s, args
}

// ListJobs implements storedriver.Driver.
func (d *Driver) ListJobs(ctx context.Context, q storedriver.ListQuery) ([]*storedriver.JobRow, error) {
	s, args := listSQL(q)
	rows, err := d.pool.Query(ctx, s, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*storedriver.JobRow
	for rows.Next() {
		var seq int64
		var doc, params, tdoc []byte
		if err := rows.Scan(&seq, &doc, &params, &tdoc); err != nil {
			return nil, err
		}
		r, err := decodeRow(seq, doc, params, tdoc)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Delivered implements storedriver.Driver.
func (d *Driver) Delivered(ctx context.Context, id string) ([]job.Delivered, error) {
	rows, err := d.pool.Query(ctx, "SELECT path, file, size FROM delivered WHERE job_id = $1 ORDER BY seq", id)
	if err != nil {
		return nil, fmt.Errorf("delivered files of %s: %w", id, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job.Delivered, error) {
		var d job.Delivered
		err := r.Scan(&d.Path, &d.File, &d.Size)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("delivered files of %s: %w", id, err)
	}
	return out, nil
}

// Events implements storedriver.Driver.
func (d *Driver) Events(ctx context.Context, id string) ([]job.Event, error) {
	rows, err := d.pool.Query(ctx, "SELECT time, state, reason FROM events WHERE job_id = $1 ORDER BY seq", id)
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

// LogChunks implements storedriver.Driver in one statement, so that the
// size and the chunks agree: the chunk holding from and those after it
// that start before to.
func (d *Driver) LogChunks(ctx context.Context, id, stream string, from, to int64) (int64, []storedriver.LogChunk, error) {
	if to <= from {
		// the size alone (a log's tail is asked for by its size)
		var size int64
		err := d.pool.QueryRow(ctx, `SELECT `+logSizeQuery, id, stream).Scan(&size)
		return size, nil, err
	}
	rows, err := d.pool.Query(ctx, `SELECT sz.size, c.off, c.data
		FROM (SELECT `+logSizeQuery+` AS size) sz
		LEFT JOIN LATERAL (
			SELECT off, data FROM logs
			WHERE job_id = $1 AND stream = $2 AND off < $4::bigint
			AND off >= coalesce((SELECT max(off) FROM logs WHERE job_id = $1 AND stream = $2 AND off <= $3::bigint), 0)
		) c ON true
		ORDER BY c.off`, id, stream, from, to)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	var out []storedriver.LogChunk
	var size int64
	for rows.Next() {
		var off *int64
		var data []byte
		if err := rows.Scan(&size, &off, &data); err != nil {
			return 0, nil, err
		}
		if off != nil {
			out = append(out, storedriver.LogChunk{Offset: *off, Data: data})
		}
	}
	return size, out, rows.Err()
}

const tokenCols = "id, hash, username, name, scopes, job_id, session_key, created_at, expires_at"

func scanToken(row pgx.Row) (store.Token, error) {
	var t store.Token
	var exp *time.Time
	if err := row.Scan(&t.ID, &t.Hash, &t.User, &t.Name, &t.Scopes, &t.JobID, &t.SessionKey, &t.CreatedAt, &exp); err != nil {
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

// TokenByHash implements storedriver.Driver.
func (d *Driver) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(d.pool.QueryRow(ctx, "SELECT "+tokenCols+" FROM tokens WHERE hash = $1", hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("token: %w", store.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("token: %w", err)
	}
	return t, nil
}

// ListTokens implements storedriver.Driver.
func (d *Driver) ListTokens(ctx context.Context, user string) ([]store.Token, error) {
	q := "SELECT " + tokenCols + " FROM tokens WHERE job_id = ''"
	var args []any
	if user != "" {
		q += " AND username = $1"
		args = append(args, user)
	}
	rows, err := d.pool.Query(ctx, q+" ORDER BY created_at, id", args...)
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

// nonNilStrings is vs, or an empty list for nil: pgx sends nil as NULL,
// and "x <> ALL(NULL)" is never true.
func nonNilStrings(vs []string) []string {
	if vs == nil {
		return []string{}
	}
	return vs
}
