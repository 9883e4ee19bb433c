package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

func ip(i int) *int { return &i }

// WriteFixture fills s with the fixture's jobs, events, logs and tokens.
// The testdata of sqlitestore (v1.db) and pgstore (v1.sql) were written by
// it with the stores of commit 7f0686e (schema version 1, jobs stored as
// job.Job with Go field names); CheckFixture reads them.
func WriteFixture(ctx context.Context, s store.Store) error {
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	a := &job.Job{
		ID: "fixa", Name: "first", Owner: "alice", Template: "hello", TemplateVersion: 3, Environment: "slurm",
		State: job.Pending, Reason: "created", Parameters: json.RawMessage(`{"zeta":1,"a":[1.50,"x"]}`),
		Inputs: map[string]string{"text": "in/story.txt"}, InputSizes: map[string]int64{"text": 42},
		Resources: job.Resources{Nodes: 2, CoresPerNode: 4, MemoryMB: 2048, WalltimeS: 3600},
		Labels:    map[string]string{"sweep": "a", "team": "x"}, CreatedAt: t0,
		Scheduler: "slurm", IdemKey: "key-a", IdemHash: "9f86d081884c7d65",
		TemplateDoc: json.RawMessage(`{"name":"hello","version":3,"script":"echo {{.name}}"}`),
	}
	if _, err := s.CreateJob(ctx, a, nil); err != nil {
		return err
	}
	b := &job.Job{
		ID: "fixb", Name: "child", Owner: "alice", Template: "wordcount", TemplateVersion: 1, Environment: "local",
		State: job.Held, Reason: "held by user", Parameters: json.RawMessage(`{"n":2}`),
		Labels: map[string]string{"sweep": "b"}, ParentID: "fixa", Depth: 1, CreatedAt: t0.Add(time.Second),
		Scheduler: "local",
	}
	if _, err := s.CreateJob(ctx, b, nil); err != nil {
		return err
	}
	c := &job.Job{ID: "fixc", Name: "bobs", Owner: "bob", Template: "hello", State: job.Pending, Reason: "created", CreatedAt: t0.Add(2 * time.Second)}
	if _, err := s.CreateJob(ctx, c, nil); err != nil {
		return err
	}
	for _, st := range []job.State{job.Queued, job.Running, job.Finishing, job.Succeeded} {
		st := st
		if _, err := s.UpdateJob(ctx, "fixa", func(j *job.Job) error {
			j.State, j.Reason = st, "to "+string(st)
			switch st {
			case job.Queued:
				j.BackendID, j.Submissions, j.ClaimedBy, j.ClaimedUntil = "4711", 1, "replica-1", t0.Add(time.Minute)
			case job.Running:
				j.StartedAt = t0.Add(10 * time.Second)
			case job.Succeeded:
				j.FinishedAt = t0.Add(70 * time.Second)
				j.ExitCode = ip(3)
				j.Usage = &job.Usage{CPUSeconds: 12.5, MaxRSSBytes: 1 << 20, WallSeconds: 60.25}
				j.Error = "exit code 3"
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if _, err := s.AppendLog(ctx, "fixa", "stdout", 0, []byte("hello ")); err != nil {
		return err
	}
	if _, err := s.AppendLog(ctx, "fixa", "stdout", 6, []byte("world\n")); err != nil {
		return err
	}
	if _, err := s.AppendLog(ctx, "fixa", "stderr", 0, []byte("warn\n")); err != nil {
		return err
	}
	if err := s.CreateToken(ctx, store.Token{ID: "tok1", Hash: "hash1", User: "alice", Name: "laptop", Scopes: []string{"jobs:read", "jobs:write"}, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour)}); err != nil {
		return err
	}
	if err := s.CreateToken(ctx, store.Token{ID: "tok2", Hash: "hash2", User: "alice", Name: "job fixa", Scopes: []string{"job"}, JobID: "fixa", CreatedAt: t0}); err != nil {
		return err
	}
	return nil
}

// CheckFixture checks that s, opened on the rows WriteFixture left with the
// release before schema version 2 (testdata of each backend), reads them
// all, lists them by every filter, and changes them.
func CheckFixture(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	t0 := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	a, err := s.GetJob(ctx, "fixa")
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "first" || a.Owner != "alice" || a.Template != "hello" || a.TemplateVersion != 3 || a.Environment != "slurm" ||
		a.State != job.Succeeded || a.Reason != "to succeeded" || string(a.Parameters) != `{"zeta":1,"a":[1.50,"x"]}` ||
		a.Inputs["text"] != "in/story.txt" || a.InputSizes["text"] != 42 ||
		a.Resources != (job.Resources{Nodes: 2, CoresPerNode: 4, MemoryMB: 2048, WalltimeS: 3600}) ||
		a.Labels["sweep"] != "a" || a.Labels["team"] != "x" || !a.CreatedAt.Equal(t0) || !a.StartedAt.Equal(t0.Add(10*time.Second)) ||
		!a.FinishedAt.Equal(t0.Add(70*time.Second)) || a.ExitCode == nil || *a.ExitCode != 3 ||
		a.Usage == nil || *a.Usage != (job.Usage{CPUSeconds: 12.5, MaxRSSBytes: 1 << 20, WallSeconds: 60.25}) ||
		a.Scheduler != "slurm" || a.BackendID != "4711" || a.Error != "exit code 3" || a.IdemKey != "key-a" ||
		a.IdemHash != "9f86d081884c7d65" || a.Submissions != 1 || a.ClaimedBy != "replica-1" || !a.ClaimedUntil.Equal(t0.Add(time.Minute)) {
		t.Errorf("fixa read as %+v", a)
	}
	var td map[string]any
	if err := json.Unmarshal(a.TemplateDoc, &td); err != nil || td["script"] != "echo {{.name}}" || td["version"] != 3.0 {
		t.Errorf("fixa's template document read as %s (%v)", a.TemplateDoc, err)
	}
	b, err := s.GetJob(ctx, "fixb")
	if err != nil {
		t.Fatal(err)
	}
	if b.State != job.Held || b.ParentID != "fixa" || b.Depth != 1 || string(b.Parameters) != `{"n":2}` || b.Usage != nil || b.ExitCode != nil ||
		!b.StartedAt.IsZero() || b.TemplateDoc != nil || b.Labels["sweep"] != "b" {
		t.Errorf("fixb read as %+v", b)
	}
	c, err := s.GetJob(ctx, "fixc")
	if err != nil {
		t.Fatal(err)
	}
	if c.Owner != "bob" || c.Parameters != nil || c.Labels != nil {
		t.Errorf("fixc read as %+v", c)
	}
	ev, err := s.Events(ctx, "fixa")
	if err != nil || len(ev) != 5 || ev[0].State != job.Pending || !ev[0].Time.Equal(t0) || ev[4].State != job.Succeeded || ev[4].Reason != "to succeeded" {
		t.Errorf("events of fixa: %+v, %v", ev, err)
	}
	if out, size, err := s.ReadLog(ctx, "fixa", "stdout", 0, 100); string(out) != "hello world\n" || size != 12 || err != nil {
		t.Errorf("stdout of fixa: %q, %d, %v", out, size, err)
	}
	tok, err := s.TokenByHash(ctx, "hash1")
	if err != nil || tok.ID != "tok1" || tok.Name != "laptop" || fmt.Sprint(tok.Scopes) != "[jobs:read jobs:write]" || !tok.CreatedAt.Equal(t0) || !tok.ExpiresAt.Equal(t0.Add(24*time.Hour)) {
		t.Errorf("tok1: %+v, %v", tok, err)
	}
	ids := func(f store.JobFilter) string {
		t.Helper()
		jobs, _, err := s.ListJobs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return fmt.Sprint(out)
	}
	for f, want := range map[*store.JobFilter]string{
		{Owner: "alice"}: "[fixb fixa]",
		{Owner: "alice", LabelKey: "sweep", LabelValue: "a"}: "[fixa]",
		{Owner: "alice", LabelKey: "team", LabelValue: "x"}:  "[fixa]",
		{Owner: "alice", Template: "wordcount"}:              "[fixb]",
		{Owner: "alice", States: []job.State{job.Held}}:      "[fixb]",
		{ParentID: "fixa"}: "[fixb]",
	} {
		if got := ids(*f); got != want {
			t.Errorf("ListJobs(%+v) = %s, want %s", *f, got, want)
		}
	}
	// A job of the old form changes, and reads back.
	if _, err := s.UpdateJob(ctx, "fixb", func(j *job.Job) error {
		j.Labels["sweep"] = "c"
		return j.SetState(job.Pending, "released", time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	if b, err := s.GetJob(ctx, "fixb"); err != nil || b.State != job.Pending || b.ParentID != "fixa" || string(b.Parameters) != `{"n":2}` {
		t.Errorf("fixb after an update: %+v, %v", b, err)
	}
	if got := ids(store.JobFilter{Owner: "alice", LabelKey: "sweep", LabelValue: "c"}); got != "[fixb]" {
		t.Errorf("label filter after an update of an old job: %s", got)
	}
	// Retention sees the old finished job.
	purged, err := s.PurgeFinished(ctx, time.Now(), 10, store.Keep{})
	if err != nil || fmt.Sprint(purged) != "[fixa]" {
		t.Errorf("PurgeFinished = %v, %v; want [fixa]", purged, err)
	}
	if _, err := s.TokenByHash(ctx, "hash2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("fixa's job token after purge: %v", err)
	}
}
