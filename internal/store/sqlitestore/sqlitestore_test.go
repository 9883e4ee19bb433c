package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/storedriver"
	"github.com/hpcgate/hpcgate/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hpcgate.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hpcgate.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.d.w.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: %v, want a clear refusal", err)
	}
}

// copyFixture copies testdata/name to a new file and returns its path.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hpcgate.db")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Rows the release before schema version 2 wrote read after the migration.
func TestReadsVersion1(t *testing.T) {
	s, err := Open(context.Background(), copyFixture(t, "v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.CheckFixture(t, s)
}

// A write a client is told succeeded is on disk: the writer syncs every
// commit.
func TestSynchronousFull(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hpcgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var sync int
	if err := s.d.w.QueryRow("PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if sync != 2 {
		t.Fatalf("PRAGMA synchronous = %d, want 2 (FULL)", sync)
	}
	// the statement journals of the group commit's savepoints stay in
	// memory: a file cost a write(2) per page (docs/benchmarks.md)
	var temp int
	if err := s.d.w.QueryRow("PRAGMA temp_store").Scan(&temp); err != nil {
		t.Fatal(err)
	}
	if temp != 2 {
		t.Fatalf("PRAGMA temp_store = %d, want 2 (MEMORY)", temp)
	}
}

// With readers whose transactions overlap without a pause, SQLite's own
// checkpoints never restart the WAL; the writer's keep it near the limit.
func TestWALBounded(t *testing.T) {
	grow := func(limit int64) int64 {
		path := filepath.Join(t.TempDir(), "hpcgate.db")
		s, err := OpenWith(context.Background(), path, &Options{WALLimit: limit})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ctx := context.Background()
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- overlapReads(ctx, s.d.r, stop) }()
		for i := 0; i < 1500; i++ {
			j := &job.Job{ID: fmt.Sprintf("j%05d", i), Owner: "alice", Template: "hello", State: job.Held,
				Labels: map[string]string{"k": "v"}, Parameters: []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)}
			if _, err := s.CreateJob(ctx, j, nil); err != nil {
				t.Fatal(err)
			}
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	if size := grow(-1); size < 16<<20 {
		t.Logf("without the writer's checkpoints the WAL reached only %d bytes: the readers did not starve SQLite's", size)
	} else {
		t.Logf("without the writer's checkpoints: WAL of %d bytes", size)
	}
	if size := grow(1 << 20); size > 4<<20 {
		t.Fatalf("WAL of %d bytes with a limit of 1 MiB", size)
	}
}

// overlapReads keeps a read transaction open at every moment, two
// connections taking turns, until stop is closed.
func overlapReads(ctx context.Context, db *sql.DB, stop chan struct{}) error {
	var conns [2]*sql.Conn
	for i := range conns {
		c, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c
	}
	begin := func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, "BEGIN"); err != nil {
			return err
		}
		var n int
		return c.QueryRowContext(ctx, "SELECT count(*) FROM jobs").Scan(&n)
	}
	if err := begin(conns[0]); err != nil {
		return err
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			_, err := conns[i%2].ExecContext(ctx, "COMMIT")
			return err
		default:
		}
		if err := begin(conns[(i+1)%2]); err != nil {
			return err
		}
		if _, err := conns[i%2].ExecContext(ctx, "COMMIT"); err != nil {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

// Every filtered page the API offers is an index range scan: no full scan
// of jobs, no sort of all matches.
func TestListPlans(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hpcgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, q := range map[string]storedriver.ListQuery{
		"owner":          {Owner: "a"},
		"owner+state":    {Owner: "a", States: []job.State{job.Held}},
		"owner+template": {Owner: "a", Template: "t"},
		"owner+label":    {Owner: "a", LabelKey: "k", LabelValue: "v"},
		"parent":         {ParentID: "p"},
		"owner+parent":   {Owner: "a", ParentID: "p"},
		"sweep":          {SweepID: "s"},
		"state":          {States: []job.State{job.Pending}, Oldest: true},
		"label":          {LabelKey: "k", LabelValue: "v"},
	} {
		for _, after := range []bool{false, true} {
			q.Limit, q.After, q.HasAfter = 51, 1000, after
			stmt, args := listSQL(q)
			p := queryPlan(t, s.d.r, stmt, args...)
			if strings.Contains(p, "TEMP B-TREE") || strings.Contains(p, "SCAN j") || strings.Contains(p, "SCAN l") || !strings.Contains(p, "INDEX") {
				t.Errorf("%s: plan %q, want an index range scan in order", name, p)
			}
		}
	}
}

// Reading a stream from an offset starts at the chunk that holds it: the
// query bounded the chunks only above (off < to), and its lower bound
// (off + length(data) > from) could not use the key, so reading the tail
// of a log of ten million chunks visited all of them.
func TestLogChunksPlan(t *testing.T) {
	d := openDriver(t)
	p := queryPlan(t, d.r, logChunksQuery, "j", "stdout", 1000, 2000)
	if !strings.Contains(p, "off>? AND off<?") || strings.Contains(p, "SCAN") {
		t.Errorf("plan %q: want a search of the key bounded at both ends", p)
	}
}

// Due deliveries are read per owner on the index (owner, next_at, id):
// a window over every due row sorted a flood whole at each read.
func TestDueDeliveriesPlan(t *testing.T) {
	d := openDriver(t)
	p := queryPlan(t, d.r, dueDeliveriesQuery, time.Now().UnixNano(), 64, 256)
	for _, step := range strings.Split(p, "; ") {
		// the first owner is the first entry of the index (a scan with
		// LIMIT 1); nothing else scans
		if strings.HasPrefix(step, "SCAN") && step != "SCAN deliveries USING COVERING INDEX deliveries_owner_due" &&
			step != "SCAN CONSTANT ROW" && step != "SCAN owners" && step != "SCAN o" {
			t.Errorf("plan %q: step %q scans", p, step)
		}
	}
	if !strings.Contains(p, "SEARCH y USING COVERING INDEX deliveries_owner_due (owner=? AND next_at") {
		t.Errorf("plan %q: want each owner's due deliveries read on the index (owner, next_at, id)", p)
	}
}

// Writes queued while a group runs are committed together as the next
// group, in one transaction; each caller gets its own write's result, and
// a write that fails (or whose context ended before its turn) leaves
// nothing while the others of its group are kept.
func TestGroupCommit(t *testing.T) {
	t.Run("with failures", func(t *testing.T) { testGroupCommit(t, true) })
	t.Run("without", func(t *testing.T) { testGroupCommit(t, false) })
}

func testGroupCommit(t *testing.T, failures bool) {
	d := openDriver(t)
	ctx := context.Background()
	const n = 40
	entry := func(i int) store.AuditEntry {
		return store.AuditEntry{Time: time.Now(), User: fmt.Sprintf("u%d", i), Action: "test", Outcome: 200}
	}
	release := holdGroup(t, d, func(ctx context.Context, tx storedriver.Tx) error { return tx.InsertAudit(ctx, entry(0)) })
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	errs := make([]error, n)
	txs := make([]storedriver.Tx, n)
	calls := make([]int, n)
	fails := func(i int) bool { return failures && i%3 == 0 }
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ctx
			if i == n-1 {
				c = canceled
			}
			errs[i] = d.Write(c, func(ctx context.Context, tx storedriver.Tx) error {
				txs[i] = tx
				calls[i]++
				if err := tx.InsertAudit(ctx, entry(i)); err != nil {
					return err
				}
				if fails(i) {
					return fmt.Errorf("write %d fails", i)
				}
				return nil
			})
		}()
	}
	waitFor(t, d, func() bool { return len(d.queue) == n-1 })
	if err := release(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got, err := d.ListAudit(ctx, storedriver.AuditQuery{Limit: 2 * n})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for _, e := range got {
		stored[e.User] = true
	}
	for i := 1; i < n; i++ {
		user := fmt.Sprintf("u%d", i)
		switch {
		case i == n-1:
			if !errors.Is(errs[i], context.Canceled) || stored[user] || txs[i] != nil {
				t.Errorf("write with a canceled context: err %v, stored %v, ran %v", errs[i], stored[user], txs[i] != nil)
			}
			continue
		case fails(i):
			if errs[i] == nil || errs[i].Error() != fmt.Sprintf("write %d fails", i) || stored[user] {
				t.Errorf("failing write %d: err %v, stored %v", i, errs[i], stored[user])
			}
		default:
			if errs[i] != nil || !stored[user] {
				t.Errorf("write %d: err %v, stored %v", i, errs[i], stored[user])
			}
		}
		if txs[i] != txs[1] {
			t.Errorf("write %d last ran in another transaction than write 1: the queued writes were not one group", i)
		}
		if want := map[bool]int{false: 1, true: 2}[failures]; calls[i] > want {
			t.Errorf("write %d ran %d times, want at most %d", i, calls[i], want)
		}
	}
	want := n - 1 // all but the canceled one
	if failures {
		want -= (n - 2) / 3
	}
	if !stored["u0"] || len(got) != want {
		t.Errorf("%d entries stored, want %d", len(got), want)
	}
	d.qmu.Lock()
	defer d.qmu.Unlock()
	if d.leading || len(d.queue) != 0 {
		t.Errorf("after the last group: leading %v, %d queued", d.leading, len(d.queue))
	}
}

// When a write fails and its group runs again, every answer is the second
// run's, the one committed: a write whose context ends during the first
// run runs again all the same, and a write whose failure came from it is
// answered as the committed state says.
func TestGroupRunsAgainWhole(t *testing.T) {
	d := openDriver(t)
	ctx := context.Background()
	tok := store.Token{ID: "tok_a", Hash: "h", User: "u", Scopes: []string{"jobs:read"}, CreatedAt: time.Now()}
	release := holdGroup(t, d, func(context.Context, storedriver.Tx) error { return nil })
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	a, f := make(chan error, 1), make(chan error, 1)
	go func() {
		a <- d.Write(actx, func(ctx context.Context, tx storedriver.Tx) error {
			defer cancel() // its caller gives up while its group runs
			return tx.InsertToken(ctx, tok)
		})
	}()
	waitFor(t, d, func() bool { return len(d.queue) == 1 })
	go func() {
		f <- d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error { return tx.InsertToken(ctx, tok) })
	}()
	waitFor(t, d, func() bool { return len(d.queue) == 2 })
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-a; err != nil {
		t.Errorf("the first write of the token: %v, want it stored", err)
	}
	if err := <-f; !errors.Is(err, store.ErrConflict) {
		t.Errorf("the second write of the token: %v, want a conflict", err)
	}
	if _, err := d.TokenByHash(ctx, "h"); err != nil {
		t.Errorf("the token: %v, want it stored (the first write was answered so)", err)
	}
}

// A leader waits for its group to fill to half the last group's size,
// and starts it as soon as it has: the writes that came meanwhile run in
// the leader's transaction. If they do not come, it starts after half the
// time the last group took. A lone writer never waits, nor does the first
// write after the writer idled longer than the last group took.
func TestGroupFill(t *testing.T) {
	d := openDriver(t)
	ctx := context.Background()
	write := func(i int, tx *storedriver.Tx) func() error {
		return func() error {
			return d.Write(ctx, func(ctx context.Context, t storedriver.Tx) error {
				*tx = t
				return t.InsertAudit(ctx, store.AuditEntry{Time: time.Now(), User: fmt.Sprintf("u%d", i), Action: "test", Outcome: 200})
			})
		}
	}
	// inTime runs fn and fails t unless it returns within limit.
	inTime := func(t *testing.T, what string, limit time.Duration, fn func() error) time.Duration {
		t.Helper()
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(limit):
			t.Fatalf("%s: not done after %v", what, limit)
		}
		return time.Since(start)
	}

	// last sets what the last group was, as the leader does.
	last := func(size int, run, maxFill time.Duration) {
		d.qmu.Lock()
		d.last, d.lastRun, d.lastEnd, d.maxFill = size, run, time.Now(), maxFill
		d.qmu.Unlock()
	}
	if !t.Run("filled", func(t *testing.T) {
		last(6, time.Hour, time.Hour) // 3 writes, or half an hour
		var txs [3]storedriver.Tx
		errs := make(chan error, 3)
		go func() { errs <- write(0, &txs[0])() }()
		waitFor(t, d, func() bool { return d.want == 3 })
		for i := 1; i < 3; i++ {
			go func() { errs <- write(i, &txs[i])() }()
		}
		inTime(t, "a group of 3 once filled", 10*time.Second, func() error {
			return errors.Join(<-errs, <-errs, <-errs)
		})
		if txs[1] != txs[0] || txs[2] != txs[0] {
			t.Fatal("the writes that filled the group ran in transactions of their own")
		}
	}) {
		return // a leader may still wait
	}

	if !t.Run("not filled", func(t *testing.T) {
		last(4, 2*time.Second, time.Hour)
		var tx storedriver.Tx
		if took := inTime(t, "a write alone", 10*time.Second, write(3, &tx)); took < time.Second {
			t.Fatalf("a write alone after a group of 4 started after %v, want a wait of 1s (half the last group's time)", took)
		}
		last(4, time.Hour, 50*time.Millisecond)
		if took := inTime(t, "a write alone", 10*time.Second, write(4, &tx)); took < 50*time.Millisecond {
			t.Fatalf("a write alone after a group of 4 started after %v, want a wait of maxFill (50ms)", took)
		}
	}) {
		return
	}

	if !t.Run("alone", func(t *testing.T) {
		last(1, time.Hour, time.Hour)
		for i := 5; i < 9; i++ {
			var tx storedriver.Tx
			inTime(t, "a lone writer's write", 10*time.Second, write(i, &tx))
		}
	}) {
		return
	}
	t.Run("after idling", func(t *testing.T) {
		last(4, time.Hour, time.Hour) // else a wait of half an hour
		d.qmu.Lock()
		d.lastEnd = time.Now().Add(-2 * time.Hour) // idle for longer than the last group took
		d.qmu.Unlock()
		var tx storedriver.Tx
		inTime(t, "the first write after idling", 10*time.Second, write(9, &tx))
	})

	got, err := d.ListAudit(ctx, storedriver.AuditQuery{Limit: 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 {
		t.Fatalf("%d audit entries stored, want 10", len(got))
	}
}

// A write sees the writes before it in its group: SetUserDisabled, run in
// the group after SetWebhookSecret, answers with the new secret (it read
// the user outside the transaction, and answered with none).
func TestGroupReadsItsOwnWrites(t *testing.T) {
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hpcgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	release := holdGroup(t, s.d, func(context.Context, storedriver.Tx) error { return nil })
	secret := make(chan error, 1)
	go func() { secret <- s.SetWebhookSecret(ctx, "ann", "s3cret") }()
	waitFor(t, s.d, func() bool { return len(s.d.queue) == 1 })
	type result struct {
		u   store.User
		err error
	}
	disabled := make(chan result, 1)
	go func() {
		u, err := s.SetUserDisabled(ctx, "ann", true, time.Now())
		disabled <- result{u, err}
	}()
	waitFor(t, s.d, func() bool { return len(s.d.queue) == 2 })
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-secret; err != nil {
		t.Fatal(err)
	}
	r := <-disabled
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.u.Disabled || r.u.WebhookSecret != "s3cret" {
		t.Fatalf("SetUserDisabled answered %+v, want disabled with the secret set before it in its group", r.u)
	}
	if u, err := s.User(ctx, "ann"); err != nil || !u.Disabled || u.WebhookSecret != "s3cret" {
		t.Fatalf("stored %+v, %v", u, err)
	}
}

// A write that panics panics in its own caller's goroutine, whichever
// goroutine led its group; the others of the group are committed, and so
// are later writes.
func TestGroupPanic(t *testing.T) {
	for _, first := range []bool{true, false} {
		name := map[bool]string{true: "the panicking write leads", false: "another write leads"}[first]
		t.Run(name, func(t *testing.T) { testGroupPanic(t, first) })
	}
}

func testGroupPanic(t *testing.T, panicsFirst bool) {
	d := openDriver(t)
	ctx := context.Background()
	insert := func(user string) func(context.Context, storedriver.Tx) error {
		return func(ctx context.Context, tx storedriver.Tx) error {
			return tx.InsertAudit(ctx, store.AuditEntry{Time: time.Now(), User: user, Action: "test"})
		}
	}
	release := holdGroup(t, d, insert("first"))
	panicked := make(chan any, 1)
	startPanicking := func() {
		go func() {
			defer func() { panicked <- recover() }()
			d.Write(ctx, func(ctx context.Context, tx storedriver.Tx) error {
				if err := insert("panics")(ctx, tx); err != nil {
					return err
				}
				panic("a bug")
			})
		}()
	}
	other := make(chan error, 1)
	startOther := func() { go func() { other <- d.Write(ctx, insert("same group")) }() }
	if panicsFirst {
		startPanicking()
		waitFor(t, d, func() bool { return len(d.queue) == 1 })
		startOther()
	} else {
		startOther()
		waitFor(t, d, func() bool { return len(d.queue) == 1 })
		startPanicking()
	}
	waitFor(t, d, func() bool { return len(d.queue) == 2 })
	if err := release(); err != nil {
		t.Fatal(err)
	}
	p, ok := (<-panicked).(*panicError)
	if !ok || p.value != "a bug" {
		t.Errorf("the panicking write's caller recovered %v, want its panic", p)
	}
	if err := <-other; err != nil {
		t.Errorf("the other write of the group: %v", err)
	}
	if err := d.Write(ctx, insert("after")); err != nil {
		t.Fatalf("a write after the panic: %v", err)
	}
	got, err := d.ListAudit(ctx, storedriver.AuditQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, e := range got {
		users = append(users, e.User)
	}
	if strings.Join(users, ",") != "after,same group,first" {
		t.Fatalf("stored %v, want after, same group and first alone", users)
	}
}

// holdGroup starts a write of fn that holds its group open, with nothing
// else queued, until release is called; release returns its result.
func holdGroup(t *testing.T, d *Driver, fn func(context.Context, storedriver.Tx) error) (release func() error) {
	t.Helper()
	hold := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- d.Write(context.Background(), func(ctx context.Context, tx storedriver.Tx) error {
			<-hold
			return fn(ctx, tx)
		})
	}()
	// leading, with its own write taken off the queue
	waitFor(t, d, func() bool { return d.leading && len(d.queue) == 0 })
	return func() error {
		close(hold)
		return <-done
	}
}

// waitFor waits until cond, read holding the queue's lock, holds, and
// fails the test after 10 s.
func waitFor(t *testing.T, d *Driver, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		d.qmu.Lock()
		ok := cond()
		d.qmu.Unlock()
		if ok {
			return
		}
	}
	t.Fatal("timed out waiting for the queue")
}

// openDriver opens a driver on a new file, closed when the test ends.
// queryPlan is SQLite's plan for stmt, its steps joined by "; ".
func queryPlan(t *testing.T, db *sql.DB, stmt string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+stmt, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

func openDriver(t *testing.T) *Driver {
	t.Helper()
	d, err := OpenDriver(context.Background(), filepath.Join(t.TempDir(), "hpcgate.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
