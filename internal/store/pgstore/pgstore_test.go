package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
	"github.com/hpcgate/hpcgate/internal/store/storetest"
	"github.com/hpcgate/hpcgate/internal/testenv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// testURL returns the URL of the test database, or skips the test.
func testURL(t testing.TB) string { return testenv.Postgres(t) }

// emptySchema returns the URL of the test database with a new, empty schema
// as its search_path; the schema is dropped when the test ends.
func emptySchema(t testing.TB) string { return testenv.PostgresSchema(t) }

func openEmpty(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), emptySchema(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
}

func TestLeases(t *testing.T) {
	testURL(t)
	s := openEmpty(t)
	t.Cleanup(func() { s.Close() })
	storetest.RunLeases(t, s)
}

func TestNewerSchemaRefused(t *testing.T) {
	ctx := context.Background()
	u := emptySchema(t)
	s, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.d.pool.Exec(ctx, "INSERT INTO schema_version (version) VALUES (999)"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, u)
	if err == nil {
		s.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
	if !strings.Contains(err.Error(), "database schema version 999 is newer than this hpcgate knows") {
		t.Fatalf("Open of a newer schema: %v, want a clear refusal", err)
	}
}

// Gateways that start at once on an empty database both migrate it, once.
func TestConcurrentOpen(t *testing.T) {
	ctx := context.Background()
	u := emptySchema(t)
	const n = 4
	stores := make([]*Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = Open(ctx, u)
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Open %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	rows, err := stores[0].d.pool.Query(ctx, "SELECT version FROM schema_version ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	want := make([]int, len(names))
	for i := range want {
		want[i] = i + 1
	}
	if fmt.Sprint(versions) != fmt.Sprint(want) {
		t.Fatalf("schema_version holds %v, want %v", versions, want)
	}
	if err := stores[1].Ping(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, "postgres://postgres@127.0.0.1:1/hpcgate?sslmode=disable&connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1/hpcgate") {
		t.Fatalf("Open of a closed port: %v, want an error naming it", err)
	}
}

func newJob(id string) *job.Job {
	return &job.Job{ID: id, Owner: "alice", Template: "hello", State: job.Pending, Reason: "created", CreatedAt: time.Now().UTC()}
}

// Children created at once never exceed the limit: the parent's row lock
// serializes the counting.
func TestChildLimitConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openEmpty(t)
	defer s.Close()
	if _, err := s.CreateJob(ctx, newJob("parent"), nil); err != nil {
		t.Fatal(err)
	}
	const n, limit = 12, 3
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newJob(fmt.Sprintf("child%d", i))
			c.ParentID = "parent"
			_, errs[i] = s.CreateJob(ctx, c, &store.CreateOptions{MaxChildren: limit})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrLimit):
			t.Fatal(err)
		}
	}
	kids, _, err := s.ListJobs(ctx, store.JobFilter{ParentID: "parent"})
	if ok != limit || err != nil || len(kids) != limit {
		t.Fatalf("%d children created at once with limit %d: %d succeeded, %d stored (%v)", n, limit, ok, len(kids), err)
	}
}

// Writers that append the same log at once (a retried upload, say) leave it
// whole.
func TestAppendLogConcurrent(t *testing.T) {
	ctx := context.Background()
	s := openEmpty(t)
	defer s.Close()
	if _, err := s.CreateJob(ctx, newJob("j"), nil); err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	for i := range 40 {
		fmt.Fprintf(&want, "line %d\n", i)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := want.Bytes()
			for off := 0; off < len(b); off += 7 {
				end := min(off+13, len(b)) // overlapping chunks
				if _, err := s.AppendLog(ctx, "j", "stdout", int64(off), b[off:end]); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, size, err := s.ReadLog(ctx, "j", "stdout", 0, 1<<20)
	if err != nil || !bytes.Equal(got, want.Bytes()) || size != int64(want.Len()) {
		t.Fatalf("log after concurrent appends: %q, %d, %v\nwant %q", got, size, err, want.Bytes())
	}
	for off := int64(0); off < size; off += 5 {
		got, _, _ := s.ReadLog(ctx, "j", "stdout", off, 9)
		if w := want.Bytes()[off:min(off+9, size)]; !bytes.Equal(got, w) {
			t.Fatalf("ReadLog(%d, 9) = %q, want %q", off, got, w)
		}
	}
}

// What jsonb would change reads back as written: the parameters' key order,
// and text with NULs or invalid UTF-8.
func TestJobRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openEmpty(t)
	defer s.Close()
	j := newJob("j")
	j.Parameters = []byte(`{"zeta": 1, "a": [1.50, "x"], "mid": {"b": true, "a": null}}`)
	j.Error = "bad\x00byte"
	if _, err := s.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(ctx, "j")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"zeta":1,"a":[1.50,"x"],"mid":{"b":true,"a":null}}`; string(got.Parameters) != want {
		t.Fatalf("parameters = %s, want %s", got.Parameters, want)
	}
	if got.Error != "bad\uFFFDbyte" {
		t.Fatalf("error = %q", got.Error)
	}
	if _, err := s.UpdateJob(ctx, "j", func(j *job.Job) error {
		j.Parameters = nil
		return j.SetState(job.Failed, "engine said \x00\xff", time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetJob(ctx, "j")
	ev, _ := s.Events(ctx, "j")
	if got.Parameters != nil || got.State != job.Failed || len(ev) != 2 || ev[1].Reason != "engine said \uFFFD\uFFFD" {
		t.Fatalf("after update: %+v, events %+v", got, ev)
	}
}

// A creation whose look-up of the idempotency key misses a job that another
// creation has inserted but not yet committed waits for that one, and
// returns its job if it commits.
func TestIdempotencyRace(t *testing.T) {
	ctx := context.Background()
	s := openEmpty(t)
	defer s.Close()
	winner := newJob("winner")
	winner.IdemKey = "k"
	doc, params, _, err := encodeRow(storedriver.FromJob(winner))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := s.d.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO jobs (id, owner, state, template, idem_key, doc, params) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		winner.ID, winner.Owner, string(winner.State), winner.Template, winner.IdemKey, doc, params); err != nil {
		t.Fatal(err)
	}
	type result struct {
		j   *job.Job
		err error
	}
	done := make(chan result, 1)
	go func() {
		loser := newJob("loser")
		loser.IdemKey = "k"
		j, err := s.CreateJob(ctx, loser, nil)
		done <- result{j, err}
	}()
	// Commit once the other creation waits for this transaction's row.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		err := s.d.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO jobs%'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the second creation never waited for the first")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !errors.Is(r.err, store.ErrDuplicate) || r.j == nil || r.j.ID != "winner" {
		t.Fatalf("CreateJob that lost the race = %+v, %v; want job winner and ErrDuplicate", r.j, r.err)
	}
	if _, err := s.GetJob(ctx, "loser"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the loser was stored: %v", err)
	}
}

// Rows the release before schema version 2 wrote (testdata/v1.sql, a dump
// of its schema and rows) read after the migration.
func TestReadsVersion1(t *testing.T) {
	ctx := context.Background()
	u := emptySchema(t)
	dump, err := os.ReadFile("testdata/v1.sql")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pool.Exec(ctx, string(dump), pgx.QueryExecModeSimpleProtocol)
	pool.Close()
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckFixture(t, s)
}

// Every filtered page the API offers is an index scan in list order: no
// sort of all matches, with sequential scans priced out.
func TestListPlans(t *testing.T) {
	ctx := context.Background()
	s := openEmpty(t)
	defer s.Close()
	conn, err := s.d.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET enable_seqscan = off"); err != nil {
		t.Fatal(err)
	}
	for name, q := range map[string]storedriver.ListQuery{
		"owner":          {Owner: "a"},
		"owner+state":    {Owner: "a", States: []job.State{job.Held}},
		"owner+template": {Owner: "a", Template: "t"},
		"owner+label":    {Owner: "a", LabelKey: "k", LabelValue: "v"},
		"parent":         {ParentID: "p"},
		"sweep":          {SweepID: "s"},
		"state":          {States: []job.State{job.Pending}, Oldest: true},
	} {
		q.Limit, q.After, q.HasAfter = 51, 1000, true
		stmt, args := listSQL(q)
		rows, err := conn.Query(ctx, "EXPLAIN "+stmt, args...)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		p := strings.Join(lines, "\n")
		if strings.Contains(p, "Sort") || strings.Contains(p, "Seq Scan") || strings.Contains(p, "Bitmap") {
			t.Errorf("%s: plan\n%s\nwant an index scan in list order", name, p)
		}
	}
}

// Writes are acknowledged only once committed to disk, even on a server
// whose default is synchronous_commit=off.
func TestSynchronousCommit(t *testing.T) {
	s := openEmpty(t)
	defer s.Close()
	var v string
	if err := s.d.pool.QueryRow(context.Background(), "SHOW synchronous_commit").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != "on" {
		t.Fatalf("synchronous_commit = %s, want on", v)
	}
}

// A transaction that read a user holds it, even one that had no row:
// SetUserDisabled of the same user waits for it to end and then reads what
// it wrote. (FOR UPDATE alone locks no row that does not exist: both found
// none, and the last to commit wrote over the other, losing the time the
// user was disabled.)
func TestUserReadLocks(t *testing.T) {
	s := openEmpty(t)
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	read := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) }
	defer let() // on failure too: the held transaction keeps a connection Close waits for
	first := make(chan error, 1)
	go func() {
		first <- s.d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
			if _, err := tx.User(ctx, "zoe"); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			select {
			case read <- struct{}{}:
			default: // a second run
			}
			<-release
			return tx.PutUser(ctx, store.User{Name: "zoe", Disabled: true, DisabledAt: at})
		})
	}()
	<-read
	second := make(chan error, 1)
	go func() {
		_, err := s.SetUserDisabled(ctx, "zoe", false, time.Now())
		second <- err
	}()
	select {
	case err := <-second:
		t.Fatalf("SetUserDisabled ended (%v) while another transaction held the user", err)
	case <-time.After(300 * time.Millisecond):
	}
	let()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	u, err := s.User(ctx, "zoe")
	if err != nil {
		t.Fatal(err)
	}
	if u.Disabled || !u.DisabledAt.Equal(at) {
		t.Fatalf("user %+v: want enabled again, keeping the time it was disabled (%v)", u, at)
	}
}
