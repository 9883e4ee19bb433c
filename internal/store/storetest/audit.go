package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
)

// testAudit: entries come back newest first with every field, filters and
// pages select them, and a purge removes only old ones, oldest first.
func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Microsecond).Add(-time.Hour)
	for i := 0; i < 7; i++ {
		e := store.AuditEntry{
			Time: base.Add(time.Duration(i) * time.Minute), User: []string{"alice", "bob"}[i%2], TokenID: fmt.Sprintf("tok%d", i),
			Action: "POST /v1/jobs", Outcome: 201, Client: "192.0.2.1:1234", RequestID: fmt.Sprintf("r%d", i),
		}
		if i >= 4 {
			e.Action, e.JobID, e.Outcome = "POST /v1/jobs/{id}/cancel", "job1", 409
			e.Target = "/v1/jobs/job1/cancel"
		}
		if i == 1 {
			e.Action, e.Target = "POST /v1/users/{name}/disable", "/v1/users/alice/disable"
		}
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(f store.AuditFilter) []string {
		t.Helper()
		var out []string
		for {
			page, next, err := s.ListAudit(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				out = append(out, e.RequestID)
			}
			if next == "" {
				return out
			}
			f.PageToken = next
		}
	}
	all, _, err := s.ListAudit(ctx, store.AuditFilter{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := store.AuditEntry{Time: base.Add(6 * time.Minute), User: "alice", TokenID: "tok6", JobID: "job1",
		Action: "POST /v1/jobs/{id}/cancel", Target: "/v1/jobs/job1/cancel", Outcome: 409, Client: "192.0.2.1:1234", RequestID: "r6"}
	got := all[0]
	if got.Seq == 0 {
		t.Errorf("no Seq: %+v", got)
	}
	got.Seq = 0
	if !got.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", got.Time, want.Time)
	}
	got.Time = want.Time
	if got != want {
		t.Errorf("newest entry %+v, want %+v", got, want)
	}
	for _, tt := range []struct {
		f    store.AuditFilter
		want string
	}{
		{store.AuditFilter{Limit: 2}, "[r6 r5 r4 r3 r2 r1 r0]"},
		{store.AuditFilter{User: "bob", Limit: 1}, "[r5 r3 r1]"},
		{store.AuditFilter{JobID: "job1", Limit: 2}, "[r6 r5 r4]"},
		{store.AuditFilter{Action: "POST /v1/jobs"}, "[r3 r2 r0]"},
		{store.AuditFilter{Target: "users/alice"}, "[r1]"}, // what was aimed at, not who asked
		{store.AuditFilter{Target: "job1/"}, "[r6 r5 r4]"},
		{store.AuditFilter{Since: base.Add(2 * time.Minute), Until: base.Add(5 * time.Minute), Limit: 2}, "[r4 r3 r2]"},
		{store.AuditFilter{User: "alice", JobID: "job1"}, "[r6 r4]"},
	} {
		if got := fmt.Sprint(ids(tt.f)); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.f, got, tt.want)
		}
	}
	if _, _, err := s.ListAudit(ctx, store.AuditFilter{PageToken: "nonsense"}); err == nil {
		t.Error("a bad page token was accepted")
	}
	n, err := s.PurgeAudit(ctx, base.Add(3*time.Minute), 2)
	if err != nil || n != 2 {
		t.Fatalf("purge: %d, %v; want 2", n, err)
	}
	n, err = s.PurgeAudit(ctx, base.Add(3*time.Minute), 10)
	if err != nil || n != 1 {
		t.Fatalf("second purge: %d, %v; want 1", n, err)
	}
	if got := fmt.Sprint(ids(store.AuditFilter{})); got != "[r6 r5 r4 r3]" {
		t.Errorf("after the purge: %s", got)
	}
}

// testAuditWithCreate: an entry given to CreateJob is written in the
// job's own transaction, with its id; none when the creation fails.
func testAuditWithCreate(t *testing.T, s store.Store) {
	ctx := context.Background()
	j := newJob("carol")
	j.IdemKey = "audit-key"
	e := &store.AuditEntry{User: "carol", TokenID: "tokc", Action: "POST /v1/jobs", Outcome: 201, RequestID: "create-1"}
	if _, err := s.CreateJob(ctx, j, &store.CreateOptions{Audit: e}); err != nil {
		t.Fatal(err)
	}
	again := newJob("carol")
	again.IdemKey = "audit-key"
	e2 := &store.AuditEntry{User: "carol", Action: "POST /v1/jobs", Outcome: 201, RequestID: "create-2"}
	if _, err := s.CreateJob(ctx, again, &store.CreateOptions{Audit: e2}); err == nil {
		t.Fatal("a second job with the same idempotency key was created")
	}
	got, _, err := s.ListAudit(ctx, store.AuditFilter{User: "carol"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].RequestID != "create-1" || got[0].JobID != j.ID || got[0].Time.IsZero() {
		t.Fatalf("audit entries %+v; want one, create-1, for job %s", got, j.ID)
	}
}
