package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/sqlitestore"
)

// fakeSched is an engine in memory: the test says what state each job is
// in. It can hold, suspend and forget.
type fakeSched struct {
	mu        sync.Mutex
	jobs      map[string]*sched.Status // by backend id
	tasks     map[string]sched.Task    // by backend id
	byJob     map[string]string        // job id → backend id
	submits   int
	canceled  []string
	forgotten []string
	submitErr error
	// block, if set, is waited on inside Submit (after entered is closed).
	entered, block chan struct{}
}

func newFake() *fakeSched {
	return &fakeSched{jobs: map[string]*sched.Status{}, tasks: map[string]sched.Task{}, byJob: map[string]string{}}
}

func (f *fakeSched) Name() string { return "slurm" }

func (f *fakeSched) Submit(ctx context.Context, t sched.Task) (string, error) {
	if f.entered != nil {
		close(f.entered)
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.submitErr != nil {
		return "", f.submitErr
	}
	if id, ok := f.byJob[t.JobID]; ok {
		return id, nil // idempotent by job id, as engines are
	}
	f.submits++
	id := fmt.Sprintf("b%d", f.submits)
	f.jobs[id] = &sched.Status{State: sched.Queued}
	f.tasks[id] = t
	f.byJob[t.JobID] = id
	return id, nil
}

func (f *fakeSched) Poll(ctx context.Context, ids []string) (map[string]sched.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]sched.Status{}
	for _, id := range ids {
		if st, ok := f.jobs[id]; ok {
			out[id] = *st
		} else {
			out[id] = sched.Status{State: sched.Gone}
		}
	}
	return out, nil
}

func (f *fakeSched) Cancel(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.canceled = append(f.canceled, id)
	if st, ok := f.jobs[id]; ok && st.State != sched.Done {
		*st = sched.Status{State: sched.Done, Canceled: true}
	}
	return nil
}

func (f *fakeSched) Ping(ctx context.Context) error { return nil }

func (f *fakeSched) set(id string, st sched.Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[id] = &st
}

func (f *fakeSched) state(id string) sched.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.jobs[id]; ok {
		return st.State
	}
	return sched.Gone
}

func (f *fakeSched) change(id string, from, to sched.State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, ok := f.jobs[id]
	if !ok {
		return fmt.Errorf("fake job %s: %w", id, sched.ErrNotFound)
	}
	if st.State != from {
		return fmt.Errorf("fake job %s is %s: %w", id, st.State, sched.ErrUnsupported)
	}
	st.State = to
	return nil
}

func (f *fakeSched) Hold(ctx context.Context, id string) error {
	return f.change(id, sched.Queued, sched.Held)
}
func (f *fakeSched) Release(ctx context.Context, id string) error {
	return f.change(id, sched.Held, sched.Queued)
}
func (f *fakeSched) Suspend(ctx context.Context, id string) error {
	return f.change(id, sched.Running, sched.Suspended)
}
func (f *fakeSched) Resume(ctx context.Context, id string) error {
	return f.change(id, sched.Suspended, sched.Running)
}

// Forget is sched.Forgetter's: only an ended task is forgotten.
func (f *fakeSched) Forget(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st, ok := f.jobs[id]; ok && st.State == sched.Done {
		delete(f.jobs, id)
		f.forgotten = append(f.forgotten, id)
	}
	return nil
}

func (f *fakeSched) forgottenIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.forgotten...)
}

// plainSched is an engine with none of the optional abilities.
type plainSched struct{ f *fakeSched }

func (p plainSched) Name() string { return p.f.Name() }
func (p plainSched) Submit(ctx context.Context, t sched.Task) (string, error) {
	return p.f.Submit(ctx, t)
}
func (p plainSched) Poll(ctx context.Context, ids []string) (map[string]sched.Status, error) {
	return p.f.Poll(ctx, ids)
}
func (p plainSched) Cancel(ctx context.Context, id string) error { return p.f.Cancel(ctx, id) }
func (p plainSched) Ping(ctx context.Context) error              { return p.f.Ping(ctx) }

// perProcess is an engine private to one gateway replica.
type perProcess struct{ *fakeSched }

func (perProcess) PerProcess() {}

var (
	_ sched.Holder    = (*fakeSched)(nil)
	_ sched.Suspender = (*fakeSched)(nil)
)

// syncBuf is a log destination tests can search.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
	t  testing.TB
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.Log(strings.TrimRight(string(p), "\n"))
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	t     *testing.T
	ctx   context.Context
	st    store.Store
	cat   *catalog.Catalog
	fake  *fakeSched
	logs  *syncBuf
	opts  Options
	seq   int
	engs  map[string]sched.Scheduler
	dbDir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlitestore.Open(ctx, filepath.Join(dir, "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cat, err := catalog.Load([]catalog.Environment{{Name: "hpc", Scheduler: "slurm"}, {Name: "plain", Scheduler: "slurm"}, {Name: "mine", Scheduler: "local"}})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, ctx: ctx, st: st, cat: cat, fake: newFake(), logs: &syncBuf{t: t}, dbDir: dir}
	f.engs = map[string]sched.Scheduler{"hpc": f.fake, "plain": plainSched{newFake()}, "mine": perProcess{newFake()}}
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("the CA certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.opts = Options{
		GatewayURL:   "https://gateway.example:8443",
		CACertFile:   ca,
		AgentCommand: []string{"/usr/bin/hpcgate", "agent"},
		WorkRoot:     filepath.Join(dir, "work"),
		PollInterval: 20 * time.Millisecond,
		LostAfter:    50 * time.Millisecond,
		ReplicaID:    "replica-1",
		ClaimFor:     time.Minute,
		Logger:       slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	return f
}

func (f *fixture) dispatcher() *Dispatcher { return New(f.st, f.cat, f.engs, f.opts) }

// job creates a job in env in the given first state (pending or held).
func (f *fixture) job(env string, state job.State) *job.Job {
	f.t.Helper()
	f.seq++
	j, err := f.st.CreateJob(f.ctx, &job.Job{
		ID: fmt.Sprintf("job%d", f.seq), Name: "a job", Owner: "alice", Template: "hello", TemplateVersion: 1,
		Environment: env, State: state, Reason: "created", Parameters: json.RawMessage(`{}`),
		CreatedAt: time.Now().Add(time.Duration(f.seq) * time.Millisecond), Resources: job.Resources{Nodes: 1, CoresPerNode: 2},
	}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

func (f *fixture) get(id string) *job.Job {
	f.t.Helper()
	j, err := f.st.GetJob(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return j
}

// to moves a job as its agent would.
func (f *fixture) to(id string, s job.State) {
	f.t.Helper()
	if _, err := f.st.UpdateJob(f.ctx, id, func(j *job.Job) error { return j.SetState(s, "the agent says so", time.Now()) }); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) wantState(id string, want job.State) *job.Job {
	f.t.Helper()
	j := f.get(id)
	if j.State != want {
		f.t.Fatalf("job %s is %s (%s), want %s", id, j.State, j.Reason, want)
	}
	return j
}

// eventually retries cond until it holds (for Run's loop).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run runs d until the test ends, and waits for it to return.
func run(t *testing.T, d *Dispatcher) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func TestSubmitHandsJobToEngine(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	j := f.job("hpc", job.Pending)
	d.submitPending(f.ctx)

	got := f.wantState(j.ID, job.Queued)
	if got.BackendID != "b1" || got.Scheduler != "slurm" || got.Submissions != 1 {
		t.Fatalf("backend %s/%s, %d submissions; want slurm/b1, 1", got.Scheduler, got.BackendID, got.Submissions)
	}
	if got.ClaimedBy != "replica-1" || !got.ClaimedUntil.IsZero() {
		t.Fatalf("claim %q until %v; want replica-1 with the claim's time cleared", got.ClaimedBy, got.ClaimedUntil)
	}
	task := f.fake.tasks["b1"]
	if task.JobID != j.ID || task.Name != "a_job" || task.WorkDir != filepath.Join(f.opts.WorkRoot, j.ID) || task.Resources.CoresPerNode != 2 {
		t.Fatalf("task %+v", task)
	}
	if strings.Join(task.Command, " ") != "/usr/bin/hpcgate agent" {
		t.Fatalf("command %q: want the agent", task.Command)
	}
	for k, v := range map[string]string{"HPCGATE_URL": f.opts.GatewayURL, "HPCGATE_JOB_ID": j.ID, "HPCGATE_CACERT": task.SecretPath("HPCGATE_CA")} {
		if task.Env[k] != v {
			t.Errorf("task env %s=%q, want %q", k, task.Env[k], v)
		}
	}
	// A copy of the CA travels with the job (the data directory is not
	// the job's to read).
	if task.Secret["HPCGATE_CA"] != "the CA certificate\n" {
		t.Errorf("the CA's copy for the job: %q", task.Secret["HPCGATE_CA"])
	}
	// The token is the job's own, with the job scope only.
	tok, err := f.st.TokenByHash(f.ctx, auth.Hash(task.Env["HPCGATE_TOKEN"]))
	if err != nil {
		t.Fatalf("the job's token is not in the store: %v", err)
	}
	if tok.JobID != j.ID || tok.User != "alice" || strings.Join(tok.Scopes, ",") != "job" {
		t.Fatalf("token %+v", tok)
	}
	evs, err := f.st.Events(f.ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.State != job.Queued || !strings.Contains(last.Reason, "b1") {
		t.Fatalf("last event %+v", last)
	}

	// Once more changes nothing.
	d.submitPending(f.ctx)
	if f.fake.submits != 1 {
		t.Fatalf("%d submissions, want 1", f.fake.submits)
	}
}

func TestSubmitOldestFirst(t *testing.T) {
	f := newFixture(t)
	a, b, c := f.job("hpc", job.Pending), f.job("hpc", job.Pending), f.job("hpc", job.Pending)
	f.dispatcher().submitPending(f.ctx)
	for i, j := range []*job.Job{a, b, c} {
		if got, want := f.get(j.ID).BackendID, fmt.Sprintf("b%d", i+1); got != want {
			t.Errorf("%s got %s, want %s (oldest first)", j.ID, got, want)
		}
	}
}

func TestClaimOfAnotherReplica(t *testing.T) {
	f := newFixture(t)
	j := f.job("hpc", job.Pending)
	until := time.Now().Add(200 * time.Millisecond)
	if _, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error {
		j.ClaimedBy, j.ClaimedUntil = "replica-2", until
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := f.dispatcher()
	d.submitPending(f.ctx)
	f.wantState(j.ID, job.Pending)
	if f.fake.submits != 0 {
		t.Fatal("submitted a job another replica claims")
	}
	time.Sleep(time.Until(until) + 10*time.Millisecond)
	d.submitPending(f.ctx)
	if got := f.wantState(j.ID, job.Queued); got.ClaimedBy != "replica-1" {
		t.Fatalf("claimed by %q after the other's claim ran out", got.ClaimedBy)
	}
}

// A replica that died between its claim and the engine's answer comes
// back with the same id: it takes its own claim up again, and the engine's
// idempotent Submit keeps the job from running twice.
func TestRestartAfterClaim(t *testing.T) {
	f := newFixture(t)
	j := f.job("hpc", job.Pending)
	// The engine took it, the store never heard.
	if _, err := f.fake.Submit(f.ctx, sched.Task{JobID: j.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error {
		j.ClaimedBy, j.ClaimedUntil = "replica-1", time.Now().Add(time.Hour)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d := f.dispatcher()
	d.submitPending(f.ctx)
	if got := f.wantState(j.ID, job.Queued); got.BackendID != "b1" {
		t.Fatalf("backend id %s", got.BackendID)
	}
	if f.fake.submits != 1 {
		t.Fatalf("the engine has %d jobs, want 1", f.fake.submits)
	}
}

// TestRunRestart runs the dispatcher's loop, stops it, and starts a new
// one on the same store: nothing is submitted twice, and the new one
// reconciles what the old one submitted.
func TestRunRestart(t *testing.T) {
	f := newFixture(t)
	d1 := f.dispatcher()
	stop := run(t, d1)
	a := f.job("hpc", job.Pending)
	d1.Notify()
	eventually(t, "job submitted", func() bool { return f.get(a.ID).State == job.Queued })
	stop()

	b := f.job("hpc", job.Pending) // created while no dispatcher runs
	f.fake.set("b1", sched.Status{State: sched.Running})
	f.to(a.ID, job.Running)
	f.fake.set("b1", sched.Status{State: sched.Suspended})

	run(t, f.dispatcher())
	eventually(t, "the new dispatcher submits the waiting job", func() bool { return f.get(b.ID).State == job.Queued })
	eventually(t, "the new dispatcher reconciles the old one's job", func() bool { return f.get(a.ID).State == job.Suspended })
	if f.fake.submits != 2 {
		t.Fatalf("%d submissions, want 2", f.fake.submits)
	}
}

func TestReconcileTransitions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		store  []job.State // how the agent moved the job after queued
		engine sched.State
		want   job.State
		reason string
	}{
		{"held in the engine", nil, sched.Held, job.Held, "held in the engine"},
		{"queued stays", nil, sched.Queued, job.Queued, ""},
		{"running is the agent's to say", nil, sched.Running, job.Queued, ""},
		{"suspended", []job.State{job.Running}, sched.Suspended, job.Suspended, "suspended in the engine"},
		{"suspended while starting", []job.State{job.Starting}, sched.Suspended, job.Suspended, "suspended in the engine"},
		{"resumed", []job.State{job.Running, job.Suspended}, sched.Running, job.Running, "resumed in the engine"},
		{"running stays", []job.State{job.Running}, sched.Running, job.Running, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := f.dispatcher()
			j := f.job("hpc", job.Pending)
			d.submitPending(f.ctx)
			for _, s := range tc.store {
				f.to(j.ID, s)
			}
			f.fake.set("b1", sched.Status{State: tc.engine})
			d.reconcile(f.ctx)
			got := f.wantState(j.ID, tc.want)
			if tc.reason != "" && got.Reason != tc.reason {
				t.Fatalf("reason %q, want %q", got.Reason, tc.reason)
			}
		})
	}
	t.Run("released in the engine", func(t *testing.T) {
		f := newFixture(t)
		d := f.dispatcher()
		j := f.job("hpc", job.Pending)
		d.submitPending(f.ctx)
		f.fake.set("b1", sched.Status{State: sched.Held})
		d.reconcile(f.ctx)
		f.wantState(j.ID, job.Held)
		f.fake.set("b1", sched.Status{State: sched.Queued})
		d.reconcile(f.ctx)
		f.wantState(j.ID, job.Queued)
	})
}

func TestLostJobs(t *testing.T) {
	code, noCode := 137, -1
	for _, tc := range []struct {
		name   string
		engine sched.Status
		want   job.State
		reason []string
	}{
		{"ended without a report", sched.Status{State: sched.Done, ExitCode: &code, Reason: "OUT_OF_MEMORY"}, job.Failed,
			[]string{"without its agent reporting", "the agent exited with code 137", "OUT_OF_MEMORY"}},
		{"gone", sched.Status{State: sched.Gone}, job.Failed, []string{"no longer knows the job"}},
		// no exit code (-1: the local executor's, its processes killed)
		// is not said as one (found by the eighth probe)
		{"killed", sched.Status{State: sched.Done, ExitCode: &noCode, Reason: "the task's processes were killed"}, job.Failed,
			[]string{"without its agent reporting: the task's processes were killed"}},
		{"canceled in the engine", sched.Status{State: sched.Done, Canceled: true}, job.Canceled, []string{"canceled in the engine"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			d := f.dispatcher()
			j := f.job("hpc", job.Pending)
			d.submitPending(f.ctx)
			f.to(j.ID, job.Running)
			if tc.engine.State == sched.Gone {
				f.fake.mu.Lock()
				delete(f.fake.jobs, "b1")
				f.fake.mu.Unlock()
			} else {
				f.fake.set("b1", tc.engine)
			}
			d.reconcile(f.ctx) // first sighting: the agent may still report
			f.wantState(j.ID, job.Running)
			time.Sleep(f.opts.LostAfter + 10*time.Millisecond)
			d.reconcile(f.ctx)
			got := f.wantState(j.ID, tc.want)
			for _, w := range tc.reason {
				if !strings.Contains(got.Reason, w) {
					t.Errorf("reason %q lacks %q", got.Reason, w)
				}
			}
			if tc.want == job.Failed && got.Error != got.Reason {
				t.Errorf("error %q, want the reason", got.Error)
			}
			// A job that failed without its agent reporting stays in the
			// engine for a post-mortem.
			d.reconcile(f.ctx)
			if ids := f.fake.forgottenIDs(); tc.want == job.Failed && len(ids) != 0 {
				t.Errorf("forgot %v, a job whose agent never reported", ids)
			}
		})
	}
}

// A report of the agent that comes while the engine already says the job
// ended wins over the reconciler.
func TestLateAgentReportWins(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	j := f.job("hpc", job.Pending)
	d.submitPending(f.ctx)
	f.to(j.ID, job.Running)
	f.fake.set("b1", sched.Status{State: sched.Done})
	d.reconcile(f.ctx)
	f.to(j.ID, job.Succeeded)
	time.Sleep(f.opts.LostAfter + 10*time.Millisecond)
	d.reconcile(f.ctx)
	f.wantState(j.ID, job.Succeeded)
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	pending, queued := f.job("hpc", job.Pending), f.job("hpc", job.Pending)
	d.submitPending(f.ctx)
	pending2 := f.job("hpc", job.Pending)

	got, err := d.Cancel(f.ctx, queued.ID, "canceled by alice")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != job.Canceled || got.Reason != "canceled by alice" {
		t.Fatalf("%s (%s)", got.State, got.Reason)
	}
	if b := f.get(queued.ID).BackendID; f.fake.state(b) != sched.Done || len(f.fake.canceled) != 1 || f.fake.canceled[0] != b {
		t.Fatalf("engine state %s, canceled %v", f.fake.state(b), f.fake.canceled)
	}
	// Its token stops working at once: the store says canceled.
	f.wantState(queued.ID, job.Canceled)

	// A job never submitted is canceled in the store only.
	if _, err := d.Cancel(f.ctx, pending2.ID, "no"); err != nil {
		t.Fatal(err)
	}
	if len(f.fake.canceled) != 1 {
		t.Fatalf("engine asked to cancel a job it never had: %v", f.fake.canceled)
	}
	_ = pending
	if _, err := d.Cancel(f.ctx, queued.ID, "again"); !errors.Is(err, job.ErrInvalidTransition) {
		t.Fatalf("cancel of a canceled job: %v, want ErrInvalidTransition", err)
	}
	if _, err := d.Cancel(f.ctx, "nope", "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cancel of no job: %v, want ErrNotFound", err)
	}
}

// A job canceled while its engine is taking it is taken back.
func TestCancelDuringSubmit(t *testing.T) {
	f := newFixture(t)
	f.fake.entered, f.fake.block = make(chan struct{}), make(chan struct{})
	d := f.dispatcher()
	j := f.job("hpc", job.Pending)
	done := make(chan struct{})
	go func() { defer close(done); d.submitPending(f.ctx) }()
	<-f.fake.entered
	if _, err := d.Cancel(f.ctx, j.ID, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	close(f.fake.block)
	<-done
	got := f.wantState(j.ID, job.Canceled)
	if got.BackendID != "" {
		t.Fatalf("backend id %q recorded for a canceled job", got.BackendID)
	}
	if len(f.fake.canceled) != 1 || f.fake.state(f.fake.canceled[0]) != sched.Done {
		t.Fatalf("the engine's job was not taken back: canceled %v", f.fake.canceled)
	}
}

func TestHoldRelease(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()

	// Pending: held in the store only; release makes it pending and submits it.
	p := f.job("hpc", job.Pending)
	if got, err := d.Hold(f.ctx, p.ID, "held by the user"); err != nil || got.State != job.Held {
		t.Fatalf("hold pending: %v %v", got, err)
	}
	d.submitPending(f.ctx)
	if f.fake.submits != 0 {
		t.Fatal("a held job was submitted")
	}
	if got, err := d.Hold(f.ctx, p.ID, "held by the user"); err != nil || got.State != job.Held {
		t.Fatalf("hold of a held job: %v %v", got, err)
	}
	if got, err := d.Release(f.ctx, p.ID, "released by the user"); err != nil || got.State != job.Pending {
		t.Fatalf("release: %v %v", got, err)
	}
	select {
	case <-d.wake:
	default:
		t.Fatal("release did not wake the dispatcher")
	}
	d.submitPending(f.ctx)
	q := f.wantState(p.ID, job.Queued)

	// Queued: held in the engine.
	if got, err := d.Hold(f.ctx, q.ID, "held by the user"); err != nil || got.State != job.Held {
		t.Fatalf("hold queued: %v %v", got, err)
	}
	if f.fake.state(q.BackendID) != sched.Held {
		t.Fatal("not held in the engine")
	}
	d.reconcile(f.ctx) // the engine agrees: nothing changes
	f.wantState(q.ID, job.Held)
	if got, err := d.Release(f.ctx, q.ID, "released by the user"); err != nil || got.State != job.Queued {
		t.Fatalf("release queued: %v %v", got, err)
	}
	if f.fake.state(q.BackendID) != sched.Queued {
		t.Fatal("not released in the engine")
	}
	if _, err := d.Release(f.ctx, q.ID, "released by the user"); !errors.Is(err, job.ErrInvalidTransition) {
		t.Fatalf("release of a queued job: %v", err)
	}

	// Running: too late.
	f.to(q.ID, job.Running)
	if _, err := d.Hold(f.ctx, q.ID, "held by the user"); !errors.Is(err, job.ErrInvalidTransition) {
		t.Fatalf("hold of a running job: %v", err)
	}

	// An engine that cannot hold.
	n := f.job("plain", job.Pending)
	d.submitPending(f.ctx)
	f.wantState(n.ID, job.Queued)
	if _, err := d.Hold(f.ctx, n.ID, "held by the user"); !errors.Is(err, sched.ErrUnsupported) {
		t.Fatalf("hold in an engine that cannot: %v", err)
	}
}

func TestSuspendResume(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	j := f.job("hpc", job.Pending)
	if _, err := d.Suspend(f.ctx, j.ID); !errors.Is(err, job.ErrInvalidTransition) {
		t.Fatalf("suspend of a pending job: %v", err)
	}
	d.submitPending(f.ctx)
	f.to(j.ID, job.Running)
	f.fake.set("b1", sched.Status{State: sched.Running})
	if _, err := d.Resume(f.ctx, j.ID); !errors.Is(err, job.ErrInvalidTransition) {
		t.Fatalf("resume of a running job: %v", err)
	}
	got, err := d.Suspend(f.ctx, j.ID)
	if err != nil || got.State != job.Suspended || got.Reason != "suspended by the user" {
		t.Fatalf("suspend: %+v %v", got, err)
	}
	if f.fake.state("b1") != sched.Suspended {
		t.Fatal("not suspended in the engine")
	}
	got, err = d.Resume(f.ctx, j.ID)
	if err != nil || got.State != job.Running {
		t.Fatalf("resume: %+v %v", got, err)
	}
	if f.fake.state("b1") != sched.Running {
		t.Fatal("not resumed in the engine")
	}
	// The engine refuses: the store does not change.
	f.fake.set("b1", sched.Status{State: sched.Queued})
	if _, err := d.Suspend(f.ctx, j.ID); !errors.Is(err, sched.ErrUnsupported) {
		t.Fatalf("suspend the engine refused: %v", err)
	}
	f.wantState(j.ID, job.Running)
}

// A job in another replica's local executor is out of this one's reach:
// not polled, not held, not suspended.
func TestPerProcessEngineOfAnotherReplica(t *testing.T) {
	f := newFixture(t)
	other := f.opts
	other.ReplicaID = "replica-2"
	d2 := New(f.st, f.cat, f.engs, other)
	j := f.job("mine", job.Pending)
	d2.submitPending(f.ctx)
	got := f.wantState(j.ID, job.Queued)
	if got.ClaimedBy != "replica-2" {
		t.Fatalf("claimed by %q", got.ClaimedBy)
	}
	mine := f.engs["mine"].(perProcess)
	mine.set(got.BackendID, sched.Status{State: sched.Held})

	d1 := f.dispatcher()
	d1.reconcile(f.ctx)
	f.wantState(j.ID, job.Queued) // replica-1 did not look
	var ore *OtherReplicaError
	if _, err := d1.Hold(f.ctx, j.ID, "held by the user"); !errors.Is(err, sched.ErrUnsupported) || !errors.As(err, &ore) || ore.Replica != "replica-2" || strings.Contains(err.Error(), "replica-2") {
		t.Fatalf("hold through another replica: %v (the replica is for the log, not the owner)", err)
	}
	d2.reconcile(f.ctx)
	f.wantState(j.ID, job.Held) // its own replica did
}

// A job canceled through another replica while its task waits in this
// replica's local executor: the task is canceled there, where it was left
// to start later and hold a slot (found by the sixth probe).
func TestQueuedTaskOfAJobCanceledElsewhere(t *testing.T) {
	f := newFixture(t)
	d1 := f.dispatcher()
	j := f.job("mine", job.Pending)
	d1.submitPending(f.ctx)
	got := f.wantState(j.ID, job.Queued)
	other := f.opts
	other.ReplicaID = "replica-2"
	d2 := New(f.st, f.cat, f.engs, other)
	if _, err := d2.Cancel(f.ctx, j.ID, "canceled by the user"); err != nil {
		t.Fatal(err)
	}
	f.wantState(j.ID, job.Canceled)
	mine := f.engs["mine"].(perProcess)
	if st := mine.state(got.BackendID); st != sched.Queued {
		t.Fatalf("the other replica reached this one's engine: %s", st)
	}
	d1.reconcile(f.ctx)
	if st := mine.state(got.BackendID); st != sched.Done {
		t.Fatalf("the task of the canceled job is %s in the engine, want it canceled", st)
	}
	d1.reconcile(f.ctx)
	if ids := mine.forgottenIDs(); len(ids) != 1 || ids[0] != got.BackendID {
		t.Fatalf("forgotten %v", ids)
	}
}

// A job whose environment this replica does not offer is left to the
// others for a while (a replica that lacked one failed the jobs the
// others would have run, found by the sixth probe), then fails.
func TestEnvironmentGone(t *testing.T) {
	f := newFixture(t)
	j := f.job("vanished", job.Pending)
	d := f.dispatcher()
	d.submitPending(f.ctx)
	d.submitPending(f.ctx)
	f.wantState(j.ID, job.Pending)
	d.mu.Lock()
	d.unoffered[j.ID] = time.Now().Add(-unofferedGrace)
	d.mu.Unlock()
	d.submitPending(f.ctx)
	got := f.wantState(j.ID, job.Failed)
	if !strings.Contains(got.Error, "vanished") || !strings.Contains(got.Error, "no replica took the job") {
		t.Fatalf("error %q", got.Error)
	}
}

// The engine's own words (command lines, stderr) go to the log, never to
// the job.
func TestRefusalKeepsEngineWordsInLog(t *testing.T) {
	const marker = "sbatch --secret-flag: MARKER-7f3a"
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"other", errors.New("slurm did not take job: " + marker), "Slurm refused the job: it answered with an error"},
		{"unsupported", fmt.Errorf("%s: %w", marker, sched.ErrUnsupported), "Slurm refused the job: the job asks for resources"},
		{"timeout", fmt.Errorf("%s: %w", marker, context.DeadlineExceeded), "Slurm refused the job: it did not answer in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.fake.submitErr = tc.err
			j := f.job("hpc", job.Pending)
			f.dispatcher().submitPending(f.ctx)
			got := f.wantState(j.ID, job.Failed)
			if !strings.HasPrefix(got.Error, tc.want) || got.Reason != got.Error {
				t.Fatalf("error %q, reason %q; want %q…", got.Error, got.Reason, tc.want)
			}
			evs, err := f.st.Events(f.ctx, j.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range append([]string{got.Error, got.Reason}, fmt.Sprint(evs)) {
				if strings.Contains(s, "MARKER") {
					t.Fatalf("the engine's words reached the job: %q", s)
				}
			}
			logs := f.logs.String()
			if !strings.Contains(logs, "MARKER-7f3a") || !strings.Contains(logs, j.ID) {
				t.Fatalf("the log lacks the engine's words or the job id:\n%s", logs)
			}
		})
	}
}

func TestForgetEndedTasks(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	a, b, c := f.job("hpc", job.Pending), f.job("hpc", job.Pending), f.job("hpc", job.Pending)
	d.submitPending(f.ctx)
	ba, bb, bc := f.get(a.ID).BackendID, f.get(b.ID).BackendID, f.get(c.ID).BackendID

	// a: the agent reported the end, and its process has gone.
	f.to(a.ID, job.Running)
	f.to(a.ID, job.Succeeded)
	f.fake.set(ba, sched.Status{State: sched.Done})
	// b: the agent reported, but the task is still on its way out.
	f.to(b.ID, job.Running)
	f.to(b.ID, job.Failed)
	f.fake.set(bb, sched.Status{State: sched.Running})
	// c: still running.
	f.fake.set(bc, sched.Status{State: sched.Running})
	f.to(c.ID, job.Running)

	d.reconcile(f.ctx)
	if got := f.fake.forgottenIDs(); strings.Join(got, ",") != ba {
		t.Fatalf("forgot %v, want [%s]", got, ba)
	}
	f.fake.set(bb, sched.Status{State: sched.Done})
	d.reconcile(f.ctx)
	if got := f.fake.forgottenIDs(); strings.Join(got, ",") != ba+","+bb {
		t.Fatalf("forgot %v, want [%s %s]", got, ba, bb)
	}

	// A canceled job is forgotten once its engine has stopped it.
	if _, err := d.Cancel(f.ctx, c.ID, "stop"); err != nil {
		t.Fatal(err)
	}
	d.reconcile(f.ctx)
	if got := f.fake.forgottenIDs(); len(got) != 3 || got[2] != bc {
		t.Fatalf("forgot %v, want %s last", got, bc)
	}

	// An engine without Forget is never asked.
	n := f.job("plain", job.Pending)
	d.submitPending(f.ctx)
	f.to(n.ID, job.Running)
	f.to(n.ID, job.Succeeded)
	d.reconcile(f.ctx)
	if len(d.tasks) != 0 {
		t.Fatalf("still tracking %v", d.tasks)
	}
}

// A job that ended before a restart's first poll is forgotten by the new
// dispatcher too, when it saw the job active.
func TestForgetAfterRestart(t *testing.T) {
	f := newFixture(t)
	d1 := f.dispatcher()
	j := f.job("hpc", job.Pending)
	d1.submitPending(f.ctx)
	f.to(j.ID, job.Running)
	b := f.get(j.ID).BackendID
	f.fake.set(b, sched.Status{State: sched.Running})

	d2 := f.dispatcher()
	d2.reconcile(f.ctx) // sees it running
	f.to(j.ID, job.Succeeded)
	f.fake.set(b, sched.Status{State: sched.Done})
	d2.reconcile(f.ctx)
	if got := f.fake.forgottenIDs(); len(got) != 1 || got[0] != b {
		t.Fatalf("forgot %v", got)
	}
}

// A running container job on a queueing engine is canceled in the store
// at once (its agent stops its container in order within its heartbeat)
// and in the engine only after the grace, or when the dispatcher stops; a
// host job, or a container job whose agent has not started, at once.
func TestCancelContainerJobAfterGrace(t *testing.T) {
	f := newFixture(t)
	f.opts.CancelGrace = 300 * time.Millisecond
	d := f.dispatcher()
	mk := func(image string) *job.Job {
		j := f.job("hpc", job.Pending)
		if _, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error {
			j.TemplateDoc = (&catalog.Recipe{Version: catalog.RecipeVersion, Template: "t", TemplateVersion: 1, Image: image, Command: []string{"true"}}).Encode()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return j
	}
	ctr, host, queuedCtr := mk("localhost/solver:1"), mk(""), mk("localhost/solver:1")
	d.submitPending(f.ctx)
	for _, j := range []*job.Job{ctr, host} {
		f.to(j.ID, job.Starting)
		f.to(j.ID, job.Running)
	}
	for _, j := range []*job.Job{ctr, host, queuedCtr} {
		if _, err := d.Cancel(f.ctx, j.ID, "canceled by alice"); err != nil {
			t.Fatal(err)
		}
		f.wantState(j.ID, job.Canceled)
	}
	canceled := func(j *job.Job) bool { return slices.Contains(f.fake.canceled, f.get(j.ID).BackendID) }
	if !canceled(host) || !canceled(queuedCtr) || canceled(ctr) {
		t.Fatalf("engine cancels %v: want the host job's and the queued one's at once, not the running container job's", f.fake.canceled)
	}
	d.cancelDeferred(f.ctx, false)
	if canceled(ctr) {
		t.Fatal("the container job was canceled in its engine before the grace")
	}
	time.Sleep(400 * time.Millisecond)
	d.cancelDeferred(f.ctx, false)
	if !canceled(ctr) {
		t.Fatal("the container job was not canceled in its engine after the grace")
	}
}

// The engine lets a job run a margin past its walltime, which the agent
// enforces itself and then stops in order, within the environment's
// maximum; a job without a walltime asks for none.
func TestEngineWalltimeMargin(t *testing.T) {
	for _, c := range []struct {
		walltime, limit, want int64
	}{
		{0, 0, 0},
		{0, 3600, 0},
		{3, 0, 3 + walltimeMargin},
		{600, 3600, 600 + walltimeMargin},
		{3590, 3600, 3600}, // capped: the engine would refuse more
		{3600, 3600, 3600},
		{7200, 3600, 7200}, // never less than the job's own
	} {
		r := engineResources(job.Resources{Nodes: 1, CoresPerNode: 2, WalltimeS: c.walltime}, c.limit)
		if r.WalltimeS != c.want || r.CoresPerNode != 2 {
			t.Errorf("walltime %d, limit %d: engine gets %+v, want walltime %d", c.walltime, c.limit, r, c.want)
		}
	}
}

// A sweep's max_running caps how many of its jobs engines have at once:
// the others stay pending until one ends; jobs of other sweeps, and
// without a sweep, are not held back.
func TestSweepMaxRunning(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	mk := func(sweep string, max int) *job.Job {
		j := f.job("hpc", job.Pending)
		j, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error {
			j.SweepID, j.SweepMaxRunning = sweep, max
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	capped := []*job.Job{mk("s1", 2), mk("s1", 2), mk("s1", 2), mk("s1", 2)}
	free := mk("s2", 0)
	plain := mk("", 0)
	d.submitPending(f.ctx)
	state := func(j *job.Job) job.State { return f.get(j.ID).State }
	if state(capped[0]) != job.Queued || state(capped[1]) != job.Queued || state(capped[2]) != job.Pending || state(capped[3]) != job.Pending {
		t.Fatalf("capped sweep: %s %s %s %s; want the two oldest queued", state(capped[0]), state(capped[1]), state(capped[2]), state(capped[3]))
	}
	if state(free) != job.Queued || state(plain) != job.Queued {
		t.Fatalf("uncapped: %s, %s", state(free), state(plain))
	}
	// once one ends, the next goes
	f.to(capped[0].ID, job.Running)
	f.to(capped[0].ID, job.Succeeded)
	d.submitPending(f.ctx)
	if state(capped[2]) != job.Queued || state(capped[3]) != job.Pending {
		t.Fatalf("after one ended: %s %s", state(capped[2]), state(capped[3]))
	}
}

// A job with dependencies stays pending until they are met: a job that
// succeeded, a job that ended however, a whole sweep. A dependency that
// can never be met (a failed job it waits to succeed, a gone one) cancels
// it with the reason, and its own dependents after it.
func TestDependencies(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	after := func(deps ...job.Dependency) *job.Job {
		j := f.job("hpc", job.Pending)
		j, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error { j.After = deps; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	inSweep := func(sweep string) *job.Job {
		j := f.job("hpc", job.Held)
		if _, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error { j.SweepID = sweep; return nil }); err != nil {
			t.Fatal(err)
		}
		return j
	}
	end := func(id string, s job.State) { // as if it ran elsewhere
		t.Helper()
		if s == job.Succeeded {
			f.to(id, job.Queued)
		}
		f.to(id, s)
	}
	a := f.job("hpc", job.Held)
	b := f.job("hpc", job.Held)
	s1, s2 := inSweep("sw1"), inSweep("sw1")
	onA := after(job.Dependency{Job: a.ID, When: job.WhenSucceeded})
	onB := after(job.Dependency{Job: b.ID, When: job.WhenFinished})
	onSweep := after(job.Dependency{Sweep: "sw1", When: job.WhenSucceeded})
	onSweepEnd := after(job.Dependency{Sweep: "sw1", When: job.WhenFinished})
	chained := after(job.Dependency{Job: onA.ID, When: job.WhenSucceeded})
	gone := after(job.Dependency{Job: "nosuchjob", When: job.WhenSucceeded})
	goneEnded := after(job.Dependency{Job: "nosuchjob", When: job.WhenFinished})

	d.submitPending(f.ctx)
	for _, j := range []*job.Job{onA, onB, onSweep, onSweepEnd, chained} {
		f.wantState(j.ID, job.Pending)
	}
	f.wantState(goneEnded.ID, job.Queued)
	if g := f.wantState(gone.ID, job.Canceled); !strings.Contains(g.Reason, "nosuchjob is gone") {
		t.Fatalf("a job waiting for a gone one: %q", g.Reason)
	}

	end(b.ID, job.Failed) // finished, if not well
	end(s1.ID, job.Succeeded)
	d.submitPending(f.ctx)
	f.wantState(onB.ID, job.Queued)
	f.wantState(onSweep.ID, job.Pending)
	f.wantState(onSweepEnd.ID, job.Pending) // s2 has not ended

	end(s2.ID, job.Failed)
	end(a.ID, job.Failed)
	d.submitPending(f.ctx)
	f.wantState(onSweepEnd.ID, job.Queued)
	if j := f.wantState(onSweep.ID, job.Canceled); !strings.Contains(j.Reason, "1 of the jobs of sweep sw1 did not succeed") {
		t.Fatalf("reason %q", j.Reason)
	}
	if j := f.wantState(onA.ID, job.Canceled); !strings.Contains(j.Reason, "job "+a.ID+" did not succeed") {
		t.Fatalf("reason %q", j.Reason)
	}
	d.submitPending(f.ctx) // the chain: onA was canceled, so chained can never run
	if j := f.wantState(chained.ID, job.Canceled); !strings.Contains(j.Reason, onA.ID) {
		t.Fatalf("reason %q", j.Reason)
	}
	f.fake.mu.Lock()
	defer f.fake.mu.Unlock()
	if f.fake.submits != 3 {
		t.Fatalf("%d jobs reached the engine, want 3 (goneEnded, onB, onSweepEnd)", f.fake.submits)
	}
}

// A sweep that lost a job to deletion was taken for whole: the jobs left
// succeeded, so a job waiting for the sweep to succeed ran, though a
// variant never did. It is canceled, as a job waiting for a deleted job
// is; one waiting for the sweep to finish runs.
func TestDependencyOnASweepWithADeletedJob(t *testing.T) {
	f := newFixture(t)
	d := f.dispatcher()
	var members []*job.Job
	for i := range 3 {
		j := f.job("hpc", job.Held)
		j, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error { j.SweepID, j.SweepIndex, j.SweepSize = "sw2", i, 3; return nil })
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, j)
	}
	after := func(dep job.Dependency) *job.Job {
		j := f.job("hpc", job.Pending)
		j, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error { j.After = []job.Dependency{dep}; return nil })
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	onSuccess := after(job.Dependency{Sweep: "sw2", When: job.WhenSucceeded})
	onEnd := after(job.Dependency{Sweep: "sw2", When: job.WhenFinished})
	if err := f.st.DeleteJob(f.ctx, members[0].ID); err != nil {
		t.Fatal(err)
	}
	for _, m := range members[1:] {
		f.to(m.ID, job.Queued)
		f.to(m.ID, job.Succeeded)
	}
	d.submitPending(f.ctx)
	if j := f.wantState(onSuccess.ID, job.Canceled); !strings.Contains(j.Reason, "1 of the jobs of sweep sw2 are gone") {
		t.Fatalf("reason %q", j.Reason)
	}
	f.wantState(onEnd.ID, job.Queued)
}

// arraySched is fakeSched that also submits arrays, recording each.
type arraySched struct {
	*fakeSched
	mu          sync.Mutex
	arrays      [][]string // each array's job ids
	limits      []int
	unsupported bool
}

func (a *arraySched) SubmitArray(ctx context.Context, tasks []sched.Task, limit int) ([]string, error) {
	if a.unsupported {
		return nil, fmt.Errorf("no arrays here: %w", sched.ErrUnsupported)
	}
	var jobs, ids []string
	for _, t := range tasks {
		id, err := a.fakeSched.Submit(ctx, t) // one engine job each, as an array's tasks are
		if err != nil {
			return nil, err
		}
		jobs, ids = append(jobs, t.JobID), append(ids, id)
	}
	a.mu.Lock()
	a.arrays, a.limits = append(a.arrays, jobs), append(a.limits, limit)
	a.mu.Unlock()
	return ids, nil
}

// A sweep's pending jobs go to an engine that makes arrays as one array,
// with the sweep's max_running as its limit; jobs of no sweep, and those
// still waiting for a dependency, go their own way; an engine that cannot
// make this array gets the jobs one by one.
func TestSweepAsArray(t *testing.T) {
	f := newFixture(t)
	arr := &arraySched{fakeSched: f.fake}
	f.engs["hpc"] = arr
	d := f.dispatcher()
	mk := func(sweep string, max int, after ...job.Dependency) *job.Job {
		j := f.job("hpc", job.Pending)
		j, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error {
			j.SweepID, j.SweepMaxRunning, j.After = sweep, max, after
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	blocker := f.job("hpc", job.Held)
	s1 := []*job.Job{mk("s1", 2), mk("s1", 2), mk("s1", 2)}
	waiting := mk("s1", 2, job.Dependency{Job: blocker.ID, When: job.WhenFinished})
	plain := mk("", 0)
	d.submitPending(f.ctx)
	if len(arr.arrays) != 1 || fmt.Sprint(arr.arrays[0]) != fmt.Sprint([]string{s1[0].ID, s1[1].ID, s1[2].ID}) || arr.limits[0] != 2 {
		t.Fatalf("arrays %v, limits %v; want s1's three ready jobs in one, limit 2", arr.arrays, arr.limits)
	}
	for _, j := range s1 {
		if g := f.wantState(j.ID, job.Queued); g.BackendID == "" || g.Scheduler != "slurm" {
			t.Fatalf("job of the array: %+v", g)
		}
	}
	f.wantState(plain.ID, job.Queued)
	f.wantState(waiting.ID, job.Pending)

	arr.unsupported = true
	s2 := []*job.Job{mk("s2", 0), mk("s2", 0)}
	d.submitPending(f.ctx)
	for _, j := range s2 {
		f.wantState(j.ID, job.Queued)
	}
	if len(arr.arrays) != 1 {
		t.Fatalf("arrays %v after the engine stopped making them", arr.arrays)
	}
}

// A sweep larger than an array goes as arrays of sched.MaxArray, each on
// its own; with max_running, one array a pass, whose limit holds.
func TestLargeSweepInArrays(t *testing.T) {
	f := newFixture(t)
	arr := &arraySched{fakeSched: f.fake}
	f.engs["hpc"] = arr
	d := f.dispatcher()
	mk := func(sweep string, n, max int) {
		var jobs []*job.Job
		for i := 0; i < n; i++ {
			f.seq++
			jobs = append(jobs, &job.Job{ID: fmt.Sprintf("%s-%d", sweep, i), Owner: "alice", Template: "hello", TemplateVersion: 1,
				Environment: "hpc", State: job.Pending, Reason: "created", Parameters: json.RawMessage(`{}`), SweepID: sweep, SweepIndex: i,
				SweepMaxRunning: max, CreatedAt: time.Now().Add(time.Duration(f.seq) * time.Microsecond), Resources: job.Resources{Nodes: 1, CoresPerNode: 1}})
		}
		if _, err := f.st.CreateJobs(f.ctx, jobs, nil); err != nil {
			t.Fatal(err)
		}
	}
	mk("big", sched.MaxArray+2, 0)
	d.submitPending(f.ctx)
	if len(arr.arrays) != 2 || len(arr.arrays[0]) != sched.MaxArray || len(arr.arrays[1]) != 2 {
		t.Fatalf("arrays of %v jobs, want %d and 2", lens(arr.arrays), sched.MaxArray)
	}
	mk("capped", sched.MaxArray+2, 5)
	d.submitPending(f.ctx)
	if len(arr.arrays) != 3 || len(arr.arrays[2]) != sched.MaxArray || arr.limits[2] != 5 {
		t.Fatalf("capped: arrays of %v jobs, limits %v; want one more of %d, limit 5", lens(arr.arrays), arr.limits, sched.MaxArray)
	}
	d.submitPending(f.ctx) // the rest waits: the first array fills the cap
	if len(arr.arrays) != 3 {
		t.Fatalf("a second array of a capped sweep went while the first fills its cap: %v", lens(arr.arrays))
	}
}

func lens(a [][]string) []int {
	var out []int
	for _, x := range a {
		out = append(out, len(x))
	}
	return out
}

// A job of several nodes ends with its agent's usage (its first node's);
// the engine's accounting, which covers every node, replaces it once the
// engine has it. A job of one node keeps its agent's.
func TestEngineUsageOfMultiNodeJobs(t *testing.T) {
	for _, nodes := range []int{3, 1} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) {
			f := newFixture(t)
			f.fake = f.engs["plain"].(plainSched).f // no Forget: as Slurm and Grid Engine
			d := f.dispatcher()
			j := f.job("plain", job.Pending)
			if _, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error { j.Resources.Nodes = nodes; return nil }); err != nil {
				t.Fatal(err)
			}
			d.submitPending(f.ctx)
			f.fake.set("b1", sched.Status{State: sched.Running})
			d.reconcile(f.ctx) // seen running: awaited, if of several nodes
			agents := &job.Usage{CPUSeconds: 1, MaxRSSBytes: 10 << 20, WallSeconds: 4}
			if _, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error {
				j.Usage = agents
				return j.SetState(job.Succeeded, "the agent reported", time.Now())
			}); err != nil {
				t.Fatal(err)
			}
			f.fake.set("b1", sched.Status{State: sched.Running}) // not accounted yet
			d.reconcile(f.ctx)
			if u := f.get(j.ID).Usage; *u != *agents {
				t.Fatalf("before the engine's accounting: %+v", u)
			}
			f.fake.set("b1", sched.Status{State: sched.Done, Usage: &job.Usage{CPUSeconds: 9, MaxRSSBytes: 5 << 20, WallSeconds: 3}})
			d.reconcile(f.ctx)
			want := *agents
			if nodes > 1 {
				want = job.Usage{CPUSeconds: 9, MaxRSSBytes: 10 << 20, WallSeconds: 4}
			}
			if u := f.get(j.ID).Usage; *u != want {
				t.Fatalf("usage %+v, want %+v", u, want)
			}
			d.mu.Lock()
			left := len(d.usage)
			d.mu.Unlock()
			if left != 0 {
				t.Fatalf("%d jobs still awaited", left)
			}
		})
	}
}

// A job whose account is the gateway's own (a map may name it) goes as in
// mode single, with no account: the local executor then sandboxes it as
// it does every job of the gateway's own account.
func TestGatewaysOwnAccountIsNoAccount(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	d := f.dispatcher()
	j := f.job("hpc", job.Pending)
	if _, err := f.st.UpdateJob(f.ctx, j.ID, func(j *job.Job) error { j.Account = me.Username; return nil }); err != nil {
		t.Fatal(err)
	}
	d.submitPending(f.ctx)
	task, ok := f.fake.tasks["b1"]
	if !ok {
		t.Fatalf("not submitted:\n%s", f.logs)
	}
	if task.Account != nil || task.WorkDir != filepath.Join(f.opts.WorkRoot, j.ID) {
		t.Fatalf("task as %+v in %s, want no account in the work root", task.Account, task.WorkDir)
	}
}

// staleOnce answers the next GetJob of id with the job in state, as a
// read made just before the dispatcher changed it.
type staleOnce struct {
	store.Store
	id    string
	state job.State
}

func (s *staleOnce) GetJob(ctx context.Context, id string) (*job.Job, error) {
	j, err := s.Store.GetJob(ctx, id)
	if err == nil && id == s.id {
		j.State, s.id = s.state, ""
	}
	return j, err
}

// A hold of a job read pending but submitted meanwhile holds it as a
// queued job: it said "the job is queued; it cannot become held: only
// pending and queued jobs can be held" (found by the eighth probe).
func TestHoldOfAJobSubmittedMeanwhile(t *testing.T) {
	f := newFixture(t)
	st := &staleOnce{Store: f.st}
	f.st = st
	d := f.dispatcher()
	j := f.job("hpc", job.Pending)
	d.submitPending(f.ctx)
	f.wantState(j.ID, job.Queued)
	st.id, st.state = j.ID, job.Pending
	if got, err := d.Hold(f.ctx, j.ID, "held by the user"); err != nil || got.State != job.Held {
		t.Fatalf("hold: %v, %v", got, err)
	}
}
