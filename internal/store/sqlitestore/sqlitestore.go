// Package sqlitestore is a store.Store in one SQLite file (pure Go driver,
// WAL mode): the embedded default, with no set-up. It is a
// storedriver.Driver under rowstore, which holds the rules.
//
// Writes go through one connection, so they are serialised in the process
// and never meet SQLITE_BUSY from each other; reads use a pool. Concurrent
// writes are committed together (group commit), and a commit returns once
// it is on disk (synchronous=FULL): one fsync per group, not per write.
// The writer checkpoints the WAL when it grows past Options.WALLimit, so
// that readers that never pause cannot make it grow without end.
package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/rowstore"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store backed by SQLite.
type Store struct {
	*rowstore.Store
	d *Driver
}

// Options are optional settings of OpenWith.
type Options struct {
	// WALLimit is the size of the write-ahead log past which the writer
	// checkpoints it and truncates it, waiting for readers of older
	// snapshots to finish (default 64 MiB; negative: never, which leaves
	// it to SQLite's automatic checkpoints alone).
	WALLimit int64

	// Synchronous is SQLite's synchronous setting: "FULL" (the default: a
	// commit returns once the WAL is synced) or, for benchmarks only,
	// "NORMAL" or "OFF", which acknowledge commits that a power loss can
	// take back. When empty, the environment variable
	// HPCGATE_BENCH_SQLITE_SYNCHRONOUS may name one (set only by
	// hpcgate-bench for the servers it starts, to show what durability
	// costs); otherwise FULL.
	Synchronous string
}

// benchSyncEnv is read when Options.Synchronous is empty: see there.
const benchSyncEnv = "HPCGATE_BENCH_SQLITE_SYNCHRONOUS"

// Open opens (creating if needed) the database file at path and brings its
// schema up to date. A schema newer than this binary knows is refused.
func Open(ctx context.Context, path string) (*Store, error) {
	return OpenWith(ctx, path, nil)
}

// OpenWith is Open with options (nil: defaults).
func OpenWith(ctx context.Context, path string, opts *Options) (*Store, error) {
	d, err := OpenDriver(ctx, path, opts)
	if err != nil {
		return nil, err
	}
	return &Store{Store: rowstore.New(d), d: d}, nil
}

// Driver is the storedriver.Driver of an SQLite file.
type Driver struct {
	path string
	w    *sql.DB // one connection: all writes
	r    *sql.DB // readers

	// Group commit: writers queue their work; one of them at a time (the
	// leader) runs every queued piece of work in one transaction and
	// commits once (runBatch).
	qmu     sync.Mutex
	queue   []*writeReq // guarded by qmu
	leading bool        // a leader is at work (guarded by qmu)

	// A leader may wait for its group to fill (fill): until the queue is
	// want long, when the write that makes it so sends on filled, or
	// until the timer fires.
	want    int           // guarded by qmu; 0: no leader waits
	filled  chan struct{} // capacity 1
	timer   *time.Timer   // the leader's
	last    int           // the last group's size (the leader's)
	lastRun time.Duration // how long it took to run and commit (the leader's)
	lastEnd time.Time     // when it was committed (the leader's)
	maxFill time.Duration // the longest wait

	walLimit int64
	walNext  int64 // checkpoint when the WAL is larger (the leader's)

	// st are the writer's statements, prepared once: parsing them anew for
	// every write was a tenth of the server's CPU in the acceptance
	// benchmark (docs/benchmarks.md).
	st stmts
}

// stmts are the statements of the hot write paths, prepared on the writer.
type stmts struct {
	savepoint, release       *sql.Stmt
	insertJob, insertLabel   *sql.Stmt
	appendEvent              *sql.Stmt
	jobByID, jobByIdemKey    *sql.Stmt
	updateJob, countChildren *sql.Stmt
	usageForUpdate, addUsage *sql.Stmt
	insertAudit              *sql.Stmt
	changeHead, insertChange *sql.Stmt
}

func (d *Driver) prepare(ctx context.Context) error {
	for _, p := range []struct {
		st **sql.Stmt
		q  string
	}{
		{&d.st.savepoint, "SAVEPOINT w"},
		{&d.st.release, "RELEASE w"},
		{&d.st.insertJob, `INSERT INTO jobs (id, owner, state, template, parent_id, idem_key, sweep_id, finished_at, in_engine, doc)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`},
		{&d.st.insertLabel, "INSERT INTO job_labels (seq, owner, key, value) VALUES (?, ?, ?, ?)"},
		{&d.st.appendEvent, `INSERT INTO events (job_id, seq, time, state, reason)
			SELECT ?1, coalesce(max(seq), 0) + 1, ?2, ?3, ?4 FROM events WHERE job_id = ?1`},
		{&d.st.changeHead, `INSERT INTO change_heads (owner, seq) VALUES (?, 1)
			ON CONFLICT (owner) DO UPDATE SET seq = seq + 1 RETURNING seq`},
		{&d.st.insertChange, "INSERT INTO changes (owner, seq, job_id, sweep_id, time, state, reason) VALUES (?, ?, ?, ?, ?, ?, ?)"},
		{&d.st.jobByID, "SELECT seq, doc FROM jobs WHERE id = ?"},
		{&d.st.jobByIdemKey, "SELECT seq, doc FROM jobs WHERE owner = ? AND idem_key = ?"},
		{&d.st.updateJob, "UPDATE jobs SET state = ?, template = ?, parent_id = ?, sweep_id = ?, finished_at = ?, in_engine = ?, doc = ? WHERE seq = ?"},
		{&d.st.countChildren, "SELECT count(*) FROM jobs WHERE parent_id = ? AND parent_id <> ''"},
		{&d.st.usageForUpdate, "SELECT " + usageCols + " FROM user_usage WHERE owner = ? ORDER BY project"},
		{&d.st.addUsage, `INSERT INTO user_usage (` + usageCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (owner, project) DO UPDATE SET active_jobs = active_jobs + excluded.active_jobs,
			active_cores = active_cores + excluded.active_cores, jobs = jobs + excluded.jobs,
			core_seconds = core_seconds + excluded.core_seconds, bytes = bytes + excluded.bytes,
			files = files + excluded.files`},
		{&d.st.insertAudit, `INSERT INTO audit (time, user, token_id, job_id, action, outcome, client, request_id, target)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`},
	} {
		st, err := d.w.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", p.q, err)
		}
		*p.st = st
	}
	return nil
}

type writeReq struct {
	ctx  context.Context
	fn   func(context.Context, storedriver.Tx) error
	done chan error // buffered: the leader never blocks
}

var _ storedriver.Driver = (*Driver)(nil)

// OpenDriver opens the driver alone; OpenWith puts rowstore above it.
func OpenDriver(ctx context.Context, path string, opts *Options) (*Driver, error) {
	if opts == nil {
		opts = &Options{}
	}
	walLimit := opts.WALLimit
	if walLimit == 0 {
		walLimit = 64 << 20
	}
	sync := opts.Synchronous
	if sync == "" {
		sync = os.Getenv(benchSyncEnv)
	}
	switch sync = strings.ToUpper(sync); sync {
	case "":
		sync = "FULL"
	case "FULL", "NORMAL", "OFF":
	default:
		return nil, fmt.Errorf("open %s: synchronous %q: want FULL, NORMAL or OFF", path, sync)
	}
	// synchronous=FULL: a commit returns when the WAL is synced, so what a
	// client is told is stored survives a power loss.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(" + sync + ")&_pragma=foreign_keys(1)&_txlock=immediate"
	// The writer's page cache: 64 MiB instead of SQLite's 2 MiB, which
	// held too few of the index pages that every insert touches once the
	// store grew (acceptance fell by a fifth over a million jobs). Its
	// temporary files in memory: each write of a group commit runs in a
	// savepoint, whose statement journal (the pages as they were, to roll
	// one write back) otherwise went to a file, a write(2) per page
	// touched: 32 % more jobs accepted durably without (docs/benchmarks.md).
	w, err := sql.Open("sqlite", dsn+"&_pragma=cache_size(-65536)&_pragma=temp_store(2)")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	d := &Driver{path: path, w: w, walLimit: walLimit, walNext: walLimit, filled: make(chan struct{}, 1), maxFill: time.Millisecond}
	if err := d.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	if err := d.prepare(ctx); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	d.r = r
	return d, nil
}

func (d *Driver) migrate(ctx context.Context) error {
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	var version int
	if err := d.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
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
		tx, err := d.w.BeginTx(ctx, nil)
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
func (d *Driver) Close() error {
	for _, st := range []*sql.Stmt{d.st.savepoint, d.st.release, d.st.insertJob, d.st.insertLabel, d.st.appendEvent,
		d.st.jobByID, d.st.jobByIdemKey, d.st.updateJob, d.st.countChildren, d.st.usageForUpdate, d.st.addUsage, d.st.insertAudit,
		d.st.changeHead, d.st.insertChange} {
		st.Close()
	}
	return errors.Join(d.r.Close(), d.w.Close())
}

// Ping checks the database answers.
func (d *Driver) Ping(ctx context.Context) error {
	var one int
	return d.r.QueryRowContext(ctx, "SELECT 1").Scan(&one)
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

// Write implements storedriver.Driver. Concurrent writes are committed
// together, which keeps SQLite's one writer from paying a commit (and its
// fsync) for each. If fn fails, what it did is rolled back and its error
// returned; the others' work is not affected.
func (d *Driver) Write(ctx context.Context, fn func(context.Context, storedriver.Tx) error) error {
	r := &writeReq{ctx: ctx, fn: fn, done: make(chan error, 1)}
	d.qmu.Lock()
	d.queue = append(d.queue, r)
	lead := !d.leading
	d.leading = true
	if d.want > 0 && len(d.queue) >= d.want {
		d.want = 0
		d.filled <- struct{}{}
	}
	d.qmu.Unlock()
	if !lead {
		if err := <-r.done; err != errLead {
			return repanic(err)
		}
	}
	d.lead()
	return repanic(<-r.done)
}

// panicError is the answer to a write whose function panicked, run by
// whichever goroutine led its group; Write panics with it in the caller's.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string {
	return fmt.Sprintf("write panicked: %v\n\n%s", p.value, p.stack)
}

// repanic panics with err if it is a panicError, else returns it.
func repanic(err error) error {
	if p, ok := err.(*panicError); ok {
		panic(p)
	}
	return err
}

// errLead, sent on a queued write's done, makes its caller the leader.
var errLead = errors.New("lead the next group")

// lead runs the queued writes, the leader's own among them, as one group,
// answers them, and then hands the lead to the first write queued
// meanwhile (or leaves it to the next write to come). Writers wait on
// their own channels, each woken by the group that did its work: while
// they waited on one mutex instead, each one woken in turn took the mutex
// only to find its work done, and the next group started only after all
// of them. Answering before handing on gets the answers out first, so
// that clients send their next requests in time for the next group.
func (d *Driver) lead() {
	d.qmu.Lock()
	d.fill()
	batch := d.queue
	d.queue = nil
	d.qmu.Unlock()
	answered := false
	defer func() {
		if !answered { // the group commit itself panicked (a write's panic is its answer)
			for _, r := range batch {
				r.done <- errPanic
			}
			d.passLead()
		}
	}()
	start := time.Now()
	results := d.runBatch(batch)
	d.lastEnd = time.Now()
	d.last, d.lastRun = len(batch), d.lastEnd.Sub(start)
	d.checkpoint()
	for i, r := range batch {
		r.done <- results[i]
	}
	answered = true
	d.passLead()
}

// fill, called by the leader holding qmu, waits before a group starts
// until at least half as many writes as the last group had are queued,
// or for half the time the last group took (at most maxFill). Under load
// the writes of a group come back about together: without the wait, a
// leader handed the lead while a big group was answered started at once
// with the one or two writes queued meanwhile, and groups alternated
// between nearly all the clients and one or two, a commit (a sync and a
// copy of every page touched) for a single write. Waiting for half the
// last group made a fifth fewer commits, and 4 to 7 % more jobs accepted
// durably from 16 HTTP/2 clients (docs/benchmarks.md). When groups are
// even already (writers that come back at once, as in the store's own
// benchmark) it does not wait. Nor does a lone writer (half of one is
// one), or the first write after the writer was idle for longer than the
// last group took: that burst is over.
func (d *Driver) fill() {
	n := len(d.queue)
	want := (d.last + 1) / 2
	if n >= want || d.lastRun <= 0 || time.Since(d.lastEnd) > d.lastRun {
		return
	}
	wait := min(d.lastRun/2, d.maxFill)
	d.want = want
	d.qmu.Unlock()
	if d.timer == nil {
		d.timer = time.NewTimer(wait)
	} else {
		d.timer.Reset(wait)
	}
	select {
	case <-d.filled:
	case <-d.timer.C:
	}
	d.timer.Stop()
	d.qmu.Lock()
	d.want = 0
	select { // filled by a write after the timer fired
	case <-d.filled:
	default:
	}
}

// errPanic answers the writes of a group whose commit panicked outside
// the writes' own functions; the panic goes on in the leader's goroutine.
var errPanic = errors.New("write: the group commit failed; nothing of the group was kept")

// passLead hands the lead to the first write queued, or leaves it to the
// next write to come.
func (d *Driver) passLead() {
	d.qmu.Lock()
	if len(d.queue) == 0 {
		d.leading = false
	} else {
		d.queue[0].done <- errLead
	}
	d.qmu.Unlock()
}

// runBatch runs a group's writes in one transaction and returns each
// one's result. It runs them first without savepoints, which cost each
// write two statements more and a copy of every page it touches; if they
// all succeed, that is the commit. If one fails, nothing is kept and the
// whole group runs again, each write in a savepoint of its own, so that a
// failure is rolled back alone; each result is then the second run's,
// which is what was committed. So a write's fn may run twice, as
// storedriver.Driver allows. Whether a write's context ended is decided
// once, before the first run: a write that ran once runs again.
func (d *Driver) runBatch(batch []*writeReq) []error {
	results := make([]error, len(batch))
	skip := make([]bool, len(batch))
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			results[i], skip[i] = err, true
		}
	}
	failed, err := d.runGroup(batch, skip, results, false)
	if err == nil && failed {
		_, err = d.runGroup(batch, skip, results, true)
	}
	if err != nil {
		for i := range batch {
			if !skip[i] {
				results[i] = fmt.Errorf("write: %w", err)
			}
		}
	}
	return results
}

// runGroup runs the writes of batch not skipped in one transaction and
// commits it, leaving each one's result in results. Without savepoints,
// the first write that fails ends it, nothing kept, and it reports the
// failure; with them, a failed write is rolled back alone. err is the
// transaction's own failure.
func (d *Driver) runGroup(batch []*writeReq, skip []bool, results []error, savepoints bool) (failed bool, err error) {
	if !slices.Contains(skip, false) {
		return false, nil
	}
	ctx := context.Background() // the group is everyone's: no one caller may cancel it
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	t := &sqlTx{tx: tx, st: &d.st, stmts: map[*sql.Stmt]*sql.Stmt{}}
	for i, r := range batch {
		if skip[i] {
			continue
		}
		if !savepoints {
			if results[i] = r.call(ctx, t); results[i] != nil {
				return true, nil
			}
			continue
		}
		if _, err := t.stmt(ctx, d.st.savepoint).ExecContext(ctx); err != nil {
			return false, err
		}
		results[i] = r.call(ctx, t)
		if results[i] != nil {
			_, err = tx.ExecContext(ctx, "ROLLBACK TO w; RELEASE w")
		} else {
			_, err = t.stmt(ctx, d.st.release).ExecContext(ctx)
		}
		if err != nil {
			return false, err
		}
	}
	return false, tx.Commit()
}

// call runs r's function; a panic in it is its failure, answered to its
// own caller (Write panics with it there), not the leader's.
func (r *writeReq) call(ctx context.Context, t *sqlTx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return r.fn(ctx, t)
}

// checkpoint copies the WAL into the database and truncates it once it is
// larger than the limit. SQLite's automatic checkpoints (PASSIVE) never
// restart the WAL while some reader uses it, so with readers that overlap
// it would grow for ever; TRUNCATE waits (busy_timeout) for the readers of
// old snapshots instead. If they do not finish, the next try waits until
// the WAL has grown by the limit again. Called by the leader.
func (d *Driver) checkpoint() {
	if d.walLimit < 0 {
		return
	}
	fi, err := os.Stat(d.path + "-wal")
	if err != nil || fi.Size() <= d.walNext {
		return
	}
	var busy, logPages, done int
	err = d.w.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done)
	if err != nil || busy != 0 {
		d.walNext = fi.Size() + d.walLimit
		return
	}
	d.walNext = d.walLimit
}

// sqlTx is the transaction of a group commit. Writes are serialised, so
// reading a row is locking it.
type sqlTx struct {
	tx    *sql.Tx
	st    *stmts
	stmts map[*sql.Stmt]*sql.Stmt // st's statements bound to tx, made once a group
}

// stmt is the prepared statement st in this transaction.
func (t *sqlTx) stmt(ctx context.Context, st *sql.Stmt) *sql.Stmt {
	s := t.stmts[st]
	if s == nil {
		s = t.tx.StmtContext(ctx, st)
		t.stmts[st] = s
	}
	return s
}

func decodeRow(seq int64, doc string) (*storedriver.JobRow, error) {
	r, err := storedriver.DecodeJobRow([]byte(doc))
	if err != nil {
		return nil, err
	}
	r.Seq = seq
	return r, nil
}

type queryRower interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

func jobBy(ctx context.Context, q queryRower, what, where string, args ...any) (*storedriver.JobRow, error) {
	return scanJob(q.QueryRowContext(ctx, "SELECT seq, doc FROM jobs WHERE "+where, args...), what)
}

func scanJob(row *sql.Row, what string) (*storedriver.JobRow, error) {
	var seq int64
	var doc string
	err := row.Scan(&seq, &doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read job %s: %w", what, err)
	}
	return decodeRow(seq, doc)
}

func (t *sqlTx) JobForUpdate(ctx context.Context, id string) (*storedriver.JobRow, error) {
	return scanJob(t.stmt(ctx, t.st.jobByID).QueryRowContext(ctx, id), id)
}

func (t *sqlTx) JobByIdemKey(ctx context.Context, owner, key string) (*storedriver.JobRow, error) {
	return scanJob(t.stmt(ctx, t.st.jobByIdemKey).QueryRowContext(ctx, owner, key), "with key "+key)
}

func (t *sqlTx) CountChildren(ctx context.Context, id string) (int, error) {
	var n int
	err := t.stmt(ctx, t.st.countChildren).QueryRowContext(ctx, id).Scan(&n)
	return n, err
}

func finishedCol(r *storedriver.JobRow) any {
	if t, ok := r.Finished(); ok {
		return t.UnixNano()
	}
	return nil
}

// inEngineCol is the in_engine column: 1, or NULL (not in the index
// jobs_in_engine) for the many jobs held at creation or ended.
func inEngineCol(r *storedriver.JobRow) any {
	if r.InEngine() {
		return 1
	}
	return nil
}

func (t *sqlTx) InsertJob(ctx context.Context, r *storedriver.JobRow) error {
	doc, err := r.Encode()
	if err != nil {
		return err
	}
	res, err := t.stmt(ctx, t.st.insertJob).ExecContext(ctx,
		r.ID, r.Owner, r.State, r.Template, r.ParentID, nullable(r.IdemKey), nullable(r.SweepID), finishedCol(r), inEngineCol(r), string(doc))
	if isUnique(err) {
		if r.IdemKey != "" {
			if _, err := t.JobByIdemKey(ctx, r.Owner, r.IdemKey); err == nil {
				return fmt.Errorf("job %s: %w", r.ID, store.ErrDuplicate)
			}
		}
		return fmt.Errorf("job %s: %w", r.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("insert job %s: %w", r.ID, err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return err
	}
	return t.insertLabels(ctx, seq, r.Owner, r.Labels)
}

func (t *sqlTx) insertLabels(ctx context.Context, seq int64, owner string, labels map[string]string) error {
	if len(labels) == 0 {
		return nil
	}
	st := t.stmt(ctx, t.st.insertLabel)
	for k, v := range labels {
		if _, err := st.ExecContext(ctx, seq, owner, k, v); err != nil {
			return fmt.Errorf("insert label: %w", err)
		}
	}
	return nil
}

func (t *sqlTx) UpdateJob(ctx context.Context, old, r *storedriver.JobRow) error {
	doc, err := r.Encode()
	if err != nil {
		return err
	}
	if _, err := t.stmt(ctx, t.st.updateJob).ExecContext(ctx,
		r.State, r.Template, r.ParentID, nullable(r.SweepID), finishedCol(r), inEngineCol(r), string(doc), old.Seq); err != nil {
		return fmt.Errorf("update job %s: %w", r.ID, err)
	}
	if !maps.Equal(old.Labels, r.Labels) {
		if _, err := t.tx.ExecContext(ctx, "DELETE FROM job_labels WHERE seq = ?", old.Seq); err != nil {
			return fmt.Errorf("update labels of %s: %w", r.ID, err)
		}
		return t.insertLabels(ctx, old.Seq, old.Owner, r.Labels)
	}
	return nil
}

func (t *sqlTx) AppendEvent(ctx context.Context, id string, e job.Event) error {
	_, err := t.stmt(ctx, t.st.appendEvent).ExecContext(ctx,
		id, e.Time.UnixNano(), string(e.State), e.Reason)
	if err != nil {
		return fmt.Errorf("insert event: %w", err)
	}
	return nil
}

func (t *sqlTx) DeleteJob(ctx context.Context, id string) error {
	var seq int64
	err := t.tx.QueryRowContext(ctx, "DELETE FROM jobs WHERE id = ? RETURNING seq", id).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("job %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	if _, err := t.tx.ExecContext(ctx, "DELETE FROM job_labels WHERE seq = ?", seq); err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	for _, q := range []string{
		"DELETE FROM events WHERE job_id = ?",
		"DELETE FROM logs WHERE job_id = ?",
		"DELETE FROM delivered WHERE job_id = ?",
		"DELETE FROM tokens WHERE job_id = ?",
	} {
		if _, err := t.tx.ExecContext(ctx, q, id); err != nil {
			return fmt.Errorf("delete job %s: %w", id, err)
		}
	}
	return nil
}

func (t *sqlTx) FinishedBefore(ctx context.Context, before time.Time, limit int, keep store.Keep) ([]string, error) {
	// the lists as one JSON array each: a parameter per id would pass
	// SQLite's limit of 32,766 with many jobs waiting (found by review)
	jobs, _ := json.Marshal(nonNil(keep.Jobs))
	sweeps, _ := json.Marshal(nonNil(keep.Sweeps))
	rows, err := t.tx.QueryContext(ctx, `SELECT id FROM jobs j WHERE finished_at < ?
		AND (j.sweep_id IS NULL OR j.sweep_id = '' OR NOT EXISTS (SELECT 1 FROM jobs o WHERE o.sweep_id = j.sweep_id AND o.finished_at IS NULL))
		AND j.id NOT IN (SELECT value FROM json_each(?)) AND coalesce(j.sweep_id, '') NOT IN (SELECT value FROM json_each(?))
		ORDER BY finished_at LIMIT ?`, before.UnixNano(), string(jobs), string(sweeps), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func logSize(ctx context.Context, q queryRower, id, stream string) (int64, error) {
	var size int64
	err := q.QueryRowContext(ctx, "SELECT coalesce((SELECT off + length(data) FROM logs WHERE job_id = ? AND stream = ? ORDER BY off DESC LIMIT 1), 0)", id, stream).Scan(&size)
	return size, err
}

// LastDelivered implements storedriver.Tx.
func (t *sqlTx) LastDelivered(ctx context.Context, id string) (int, error) {
	var n int
	err := t.tx.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM delivered WHERE job_id = ?", id).Scan(&n)
	return n, err
}

// UpdateDelivered implements storedriver.Tx.
func (t *sqlTx) UpdateDelivered(ctx context.Context, id string, d job.Delivered) (bool, error) {
	res, err := t.tx.ExecContext(ctx, "UPDATE delivered SET path = ?, size = ? WHERE job_id = ? AND file = ?", d.Path, d.Size, id, d.File)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// InsertDelivered implements storedriver.Tx.
func (t *sqlTx) InsertDelivered(ctx context.Context, id string, seq int, d job.Delivered) (bool, error) {
	res, err := t.tx.ExecContext(ctx, "INSERT INTO delivered (job_id, file, seq, path, size) VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, file) DO NOTHING",
		id, d.File, seq, d.Path, d.Size)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t *sqlTx) LogSize(ctx context.Context, id, stream string) (int64, error) {
	return logSize(ctx, t.tx, id, stream)
}

func (t *sqlTx) InsertLogChunk(ctx context.Context, id, stream string, off int64, data []byte) error {
	if _, err := t.tx.ExecContext(ctx, "INSERT INTO logs (job_id, stream, off, data) VALUES (?, ?, ?, ?)", id, stream, off, data); err != nil {
		return fmt.Errorf("append log %s/%s: %w", id, stream, err)
	}
	return nil
}

func (t *sqlTx) InsertToken(ctx context.Context, tok store.Token) error {
	var exp int64
	if !tok.ExpiresAt.IsZero() {
		exp = tok.ExpiresAt.UnixNano()
	}
	_, err := t.tx.ExecContext(ctx, "INSERT INTO tokens (id, hash, user, name, scopes, job_id, session_key, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		tok.ID, tok.Hash, tok.User, tok.Name, strings.Join(tok.Scopes, " "), tok.JobID, tok.SessionKey, tok.CreatedAt.UnixNano(), exp)
	if isUnique(err) {
		return fmt.Errorf("token %s: %w", tok.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", tok.ID, err)
	}
	return nil
}

func (t *sqlTx) DeleteToken(ctx context.Context, id string) error {
	res, err := t.tx.ExecContext(ctx, "DELETE FROM tokens WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("token %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// DeleteTokensExpired implements storedriver.Tx.
func (t *sqlTx) DeleteTokensExpired(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := t.tx.ExecContext(ctx, `DELETE FROM tokens WHERE id IN
		(SELECT id FROM tokens WHERE expires_at != 0 AND expires_at < ? ORDER BY expires_at LIMIT ?)`, before.UnixNano(), limit)
	if err != nil {
		return 0, fmt.Errorf("purge tokens: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// Job implements storedriver.Driver.
func (d *Driver) Job(ctx context.Context, id string) (*storedriver.JobRow, error) {
	return jobBy(ctx, d.r, id, "id = ?", id)
}

// listSQL is the query of q: an index range scan for each filter of
// store.JobFilter's documentation.
func listSQL(q storedriver.ListQuery) (string, []any) {
	var where []string
	var args []any
	from, seq := "jobs j", "j.seq"
	if q.LabelKey != "" {
		from, seq = "job_labels l JOIN jobs j ON j.seq = l.seq", "l.seq"
		where = append(where, "l.key = ?", "l.value = ?")
		args = append(args, q.LabelKey, q.LabelValue)
		if q.Owner != "" {
			where = append(where, "l.owner = ?")
			args = append(args, q.Owner)
		}
	} else if q.Owner != "" {
		where = append(where, "j.owner = ?")
		args = append(args, q.Owner)
	}
	if len(q.States) > 0 {
		ph := strings.Repeat("?,", len(q.States))
		where = append(where, "j.state IN ("+ph[:len(ph)-1]+")")
		for _, st := range q.States {
			args = append(args, string(st))
		}
	}
	if q.Template != "" {
		where = append(where, "j.template = ?")
		args = append(args, q.Template)
	}
	if q.ParentID != "" {
		// The literal term lets SQLite use the partial index jobs_parent.
		where = append(where, "j.parent_id = ?", "j.parent_id <> ''")
		args = append(args, q.ParentID)
	}
	if q.SweepID != "" {
		where = append(where, "j.sweep_id = ?")
		args = append(args, q.SweepID)
	}
	if q.InEngine {
		// The literal term names the partial index jobs_in_engine.
		where = append(where, "j.in_engine IS NOT NULL")
	}
	order, cmp := "DESC", "<"
	if q.Oldest {
		order, cmp = "ASC", ">"
	}
	if q.HasAfter {
		where = append(where, seq+" "+cmp+" ?")
		args = append(args, q.After)
	}
	s := "SELECT j.seq, j.doc FROM " + from
	if len(where) > 0 {
		s += " WHERE " + strings.Join(where, " AND ")
	}
	s += " ORDER BY " + seq + " " + order + " LIMIT ?"
	return s, append(args, q.Limit)
}

// ListJobs implements storedriver.Driver.
func (d *Driver) ListJobs(ctx context.Context, q storedriver.ListQuery) ([]*storedriver.JobRow, error) {
	s, args := listSQL(q)
	rows, err := d.r.QueryContext(ctx, s, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*storedriver.JobRow
	for rows.Next() {
		var seq int64
		var doc string
		if err := rows.Scan(&seq, &doc); err != nil {
			return nil, err
		}
		r, err := decodeRow(seq, doc)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Events implements storedriver.Driver.
func (d *Driver) Events(ctx context.Context, id string) ([]job.Event, error) {
	rows, err := d.r.QueryContext(ctx, "SELECT time, state, reason FROM events WHERE job_id = ? ORDER BY seq", id)
	if err != nil {
		return nil, fmt.Errorf("events of %s: %w", id, err)
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

// Delivered implements storedriver.Driver.
func (d *Driver) Delivered(ctx context.Context, id string) ([]job.Delivered, error) {
	rows, err := d.r.QueryContext(ctx, "SELECT path, file, size FROM delivered WHERE job_id = ? ORDER BY seq", id)
	if err != nil {
		return nil, fmt.Errorf("delivered files of %s: %w", id, err)
	}
	defer rows.Close()
	var out []job.Delivered
	for rows.Next() {
		var d job.Delivered
		if err := rows.Scan(&d.Path, &d.File, &d.Size); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// logChunksQuery reads the chunks that hold bytes [from, to) of a stream:
// from the one that holds from (the last that starts at or before it;
// chunks never overlap) up to to, both ends on the primary key, so that
// reading a long log's tail does not visit every chunk before it.
const logChunksQuery = `SELECT off, data FROM logs WHERE job_id = ?1 AND stream = ?2 AND off < ?4
	AND off >= coalesce((SELECT max(off) FROM logs WHERE job_id = ?1 AND stream = ?2 AND off <= ?3), 0)
	ORDER BY off`

// LogChunks implements storedriver.Driver, in one read transaction.
func (d *Driver) LogChunks(ctx context.Context, id, stream string, from, to int64) (int64, []storedriver.LogChunk, error) {
	tx, err := d.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback()
	size, err := logSize(ctx, tx, id, stream)
	if err != nil || from >= size || to <= from {
		return size, nil, err
	}
	rows, err := tx.QueryContext(ctx, logChunksQuery, id, stream, from, to)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	var out []storedriver.LogChunk
	for rows.Next() {
		var c storedriver.LogChunk
		if err := rows.Scan(&c.Offset, &c.Data); err != nil {
			return 0, nil, err
		}
		out = append(out, c)
	}
	return size, out, rows.Err()
}

const tokenCols = "id, hash, user, name, scopes, job_id, session_key, created_at, expires_at"

func scanToken(row interface{ Scan(...any) error }) (store.Token, error) {
	var t store.Token
	var scopes string
	var created, exp int64
	if err := row.Scan(&t.ID, &t.Hash, &t.User, &t.Name, &scopes, &t.JobID, &t.SessionKey, &created, &exp); err != nil {
		return t, err
	}
	t.Scopes = strings.Fields(scopes)
	t.CreatedAt = time.Unix(0, created).UTC()
	if exp != 0 {
		t.ExpiresAt = time.Unix(0, exp).UTC()
	}
	return t, nil
}

// TokenByHash implements storedriver.Driver.
func (d *Driver) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	t, err := scanToken(d.r.QueryRowContext(ctx, "SELECT "+tokenCols+" FROM tokens WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("token: %w", store.ErrNotFound)
	}
	return t, err
}

// ListTokens implements storedriver.Driver.
func (d *Driver) ListTokens(ctx context.Context, user string) ([]store.Token, error) {
	q := "SELECT " + tokenCols + " FROM tokens WHERE job_id = ''"
	var args []any
	if user != "" {
		q += " AND user = ?"
		args = append(args, user)
	}
	rows, err := d.r.QueryContext(ctx, q+" ORDER BY created_at, id", args...)
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

// nonNil is vs, or an empty list for nil (JSON [] rather than null).
func nonNil(vs []string) []string {
	if vs == nil {
		return []string{}
	}
	return vs
}
