package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// total sums a user's usage rows.
func total(t *testing.T, s store.Store, user string) (store.Usage, map[string]store.Usage) {
	t.Helper()
	rows, err := s.Usage(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	var tot store.Usage
	by := map[string]store.Usage{}
	for _, u := range rows {
		if u.User != user {
			t.Fatalf("Usage(%q) returned a row of %q", user, u.User)
		}
		tot.ActiveJobs += u.ActiveJobs
		tot.ActiveCores += u.ActiveCores
		tot.Jobs += u.Jobs
		tot.CoreSeconds += u.CoreSeconds
		tot.Bytes += u.Bytes
		tot.Files += u.Files
		by[u.Project] = u
	}
	return tot, by
}

func testUsageCounts(t *testing.T, s store.Store) {
	ctx := context.Background()
	a := newJob("uc") // 2 cores
	a.Project = "chem01"
	b := newJob("uc")
	b.Resources = job.Resources{Nodes: 2, CoresPerNode: 4}
	c := newJob("uc")
	c.State = job.Held
	for _, j := range []*job.Job{a, b, c} {
		if _, err := s.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
	}
	tot, by := total(t, s, "uc")
	if tot.ActiveJobs != 3 || tot.ActiveCores != 12 || tot.Jobs != 3 {
		t.Fatalf("after 3 creations: %+v", tot)
	}
	if by["chem01"].Jobs != 1 || by["chem01"].ActiveCores != 2 || by[""].Jobs != 2 {
		t.Fatalf("per project: %+v", by)
	}
	// An end counts core-seconds from the job's start to its end, on the
	// gateway's clock: the usage's wall time is the job's own word.
	now := time.Now().UTC().Truncate(time.Microsecond)
	_, err := s.UpdateJob(ctx, a.ID, func(j *job.Job) error {
		j.StartedAt = now.Add(-10 * time.Second)
		j.Usage = &job.Usage{WallSeconds: 1e308}
		return j.SetState(job.Failed, "failed", now)
	})
	if err != nil {
		t.Fatal(err)
	}
	// A change that is no end counts nothing.
	if _, err := s.UpdateJob(ctx, b.ID, func(j *job.Job) error { return j.SetState(job.Queued, "queued", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	// Deleting an unfinished job takes it out.
	if err := s.DeleteJob(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	tot, by = total(t, s, "uc")
	if tot.ActiveJobs != 1 || tot.ActiveCores != 2 || tot.Jobs != 3 || by["chem01"].CoreSeconds != 20 {
		t.Fatalf("after an end and a delete: %+v %+v", tot, by)
	}
	// Deleting an ended job leaves history.
	if err := s.DeleteJob(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, by = total(t, s, "uc"); by["chem01"].CoreSeconds != 20 || by["chem01"].ActiveJobs != 0 {
		t.Fatalf("after deleting an ended job: %+v", by)
	}
	// A job the gateway never saw start counts its reported wall time, but
	// never more than it existed.
	d := newJob("uc")
	d.Project = "phys"
	d.CreatedAt = now.Add(-3 * time.Second)
	if _, err := s.CreateJob(ctx, d, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateJob(ctx, d.ID, func(j *job.Job) error {
		j.Usage = &job.Usage{WallSeconds: 1e308}
		return j.SetState(job.Failed, "failed", now)
	}); err != nil {
		t.Fatal(err)
	}
	if _, by = total(t, s, "uc"); by["phys"].CoreSeconds != 6 {
		t.Fatalf("a job without a start that reported 1e308 s: %+v", by["phys"])
	}
	// Every user's rows.
	if _, err := s.CreateJob(ctx, newJob("uc2"), nil); err != nil {
		t.Fatal(err)
	}
	all, err := s.Usage(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]bool{}
	for _, u := range all {
		users[u.User] = true
	}
	if !users["uc"] || !users["uc2"] {
		t.Fatalf("Usage(\"\") = %+v", all)
	}
}

func testQuotas(t *testing.T, s store.Store) {
	ctx := context.Background()
	opts := &store.CreateOptions{MaxJobs: 2, MaxCores: 5}
	for i := 0; i < 2; i++ {
		if _, err := s.CreateJob(ctx, newJob("q"), opts); err != nil {
			t.Fatal(err)
		}
	}
	// 4 cores used: a third job passes the jobs quota.
	j := newJob("q")
	_, err := s.CreateJob(ctx, j, opts)
	var qe *store.QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, store.ErrQuota) || qe.Name != "jobs" || qe.Used != 2 || qe.Limit != 2 {
		t.Fatalf("third job: %v", err)
	}
	if _, err := s.GetJob(ctx, j.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused job was stored: %v", err)
	}
	opts.MaxJobs = 10
	_, err = s.CreateJob(ctx, j, opts)
	if !errors.As(err, &qe) || qe.Name != "cores" || qe.Used != 4 || qe.Limit != 5 {
		t.Fatalf("over cores: %v", err)
	}
	if tot, _ := total(t, s, "q"); tot.ActiveJobs != 2 || tot.ActiveCores != 4 || tot.Jobs != 2 {
		t.Fatalf("a refusal changed the usage: %+v", tot)
	}
	// Concurrent creations never pass the quota together.
	opts = &store.CreateOptions{MaxJobs: 5}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := 0; i < 10; i++ {
		j := newJob("qc")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.CreateJob(ctx, j, opts); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if !errors.Is(err, store.ErrQuota) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok != 5 {
		t.Fatalf("%d of 10 concurrent creations passed a quota of 5", ok)
	}
}

func testStored(t *testing.T, s store.Store) {
	ctx := context.Background()
	type st = store.Stored
	limit := st{Bytes: 1000, Files: 3}
	n, err := s.AddStored(ctx, "by", st{Bytes: 600, Files: 2}, limit)
	if err != nil || n != (st{Bytes: 600, Files: 2}) {
		t.Fatalf("AddStored = %+v, %v", n, err)
	}
	for _, c := range []struct {
		delta st
		name  string
		used  int64
	}{{st{Bytes: 500, Files: 1}, "bytes", 600}, {st{Bytes: 1, Files: 2}, "files", 2}} {
		_, err = s.AddStored(ctx, "by", c.delta, limit)
		var qe *store.QuotaError
		if !errors.As(err, &qe) || qe.Name != c.name || qe.Used != c.used {
			t.Fatalf("%+v over the quota: %v, want the %s quota with %d used", c.delta, err, c.name, c.used)
		}
	}
	// without a files limit, files pass 3; over a limit, a removal passes
	if n, err = s.AddStored(ctx, "by", st{Bytes: -100, Files: 5}, st{Bytes: 1000}); err != nil || n != (st{Bytes: 500, Files: 7}) {
		t.Fatalf("no files limit: %+v, %v", n, err)
	}
	if n, err = s.AddStored(ctx, "by", st{Bytes: -100, Files: -1}, limit); err != nil || n != (st{Bytes: 400, Files: 6}) {
		t.Fatalf("removal over the files limit: %+v, %v", n, err)
	}
	if n, err = s.AddStored(ctx, "by", st{Bytes: 10000}, st{}); err != nil || n != (st{Bytes: 10400, Files: 6}) {
		t.Fatalf("without a limit: %+v, %v", n, err)
	}
	if n, err = s.AddStored(ctx, "by", st{Bytes: -20000, Files: -10}, limit); err != nil || n != (st{}) {
		t.Fatalf("below zero: %+v, %v", n, err)
	}
	if tot, _ := total(t, s, "by"); tot.Bytes != 0 || tot.Files != 0 {
		t.Fatalf("Usage bytes %d, files %d", tot.Bytes, tot.Files)
	}
}

func testUsers(t *testing.T, s store.Store) {
	ctx := context.Background()
	u, err := s.User(ctx, "nobody")
	if err != nil || u.Name != "nobody" || u.Disabled {
		t.Fatalf("unknown user: %+v, %v", u, err)
	}
	at := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := s.SetUserDisabled(ctx, "bob", true, at); err != nil {
		t.Fatal(err)
	}
	u, err = s.User(ctx, "bob")
	if err != nil || !u.Disabled || !u.DisabledAt.Equal(at) {
		t.Fatalf("disabled: %+v, %v", u, err)
	}
	if _, err := s.SetUserDisabled(ctx, "bob", false, at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	u, err = s.User(ctx, "bob")
	if err != nil || u.Disabled || !u.DisabledAt.Equal(at) {
		t.Fatalf("enabled again: %+v, %v", u, err)
	}
}

// RunLeases checks a store that keeps leases for the processes sharing
// it (store.Leases), empty; a store one process owns keeps none.
func RunLeases(t *testing.T, s store.Store) {
	l, ok := s.(store.Leases)
	if !ok {
		t.Fatalf("%T keeps no leases", s)
	}
	ctx := context.Background()
	lease := func(key, holder string, ttl time.Duration, want bool) {
		t.Helper()
		if got, err := l.LeaseKey(ctx, key, holder, ttl); err != nil || got != want {
			t.Fatalf("LeaseKey(%s, %s) = %v, %v; want %v", key, holder, got, err, want)
		}
	}
	lease("k", "a", time.Minute, true)
	lease("k", "b", time.Minute, false)
	lease("k", "a", time.Minute, true) // extended
	if err := l.ReleaseKey(ctx, "k", "b"); err != nil {
		t.Fatal(err)
	}
	lease("k", "b", time.Minute, false) // not b's to release
	if err := l.ReleaseKey(ctx, "k", "a"); err != nil {
		t.Fatal(err)
	}
	lease("k", "b", time.Minute, true)
	lease("short", "a", 50*time.Millisecond, true)
	lease("other", "b", time.Minute, true) // keys apart
	time.Sleep(100 * time.Millisecond)
	lease("short", "b", time.Minute, true) // lapsed: taken over

	type st = store.Stored
	limit := st{Bytes: 1000, Files: 3}
	hold := func(id string, want st, partial bool, ttl time.Duration) (st, error) {
		t.Helper()
		return l.Hold(ctx, id, "u", want, limit, partial, ttl)
	}
	refused := func(err error, name string, used int64) {
		t.Helper()
		want := map[string]int64{"bytes": limit.Bytes, "files": limit.Files}[name]
		var qe *store.QuotaError
		if !errors.As(err, &qe) || qe.Name != name || qe.Used != used || qe.Limit != want {
			t.Fatalf("%v, want the %s quota with %d used", err, name, used)
		}
	}
	if _, err := s.AddStored(ctx, "u", st{Bytes: 600, Files: 1}, st{}); err != nil {
		t.Fatal(err)
	}
	if got, err := hold("h1", st{Bytes: 300, Files: 1}, false, time.Minute); err != nil || got != (st{Bytes: 300, Files: 1}) {
		t.Fatalf("h1: %+v, %v", got, err)
	}
	_, err := hold("h2", st{Bytes: 200}, false, time.Minute)
	refused(err, "bytes", 900) // stored and held
	if got, err := hold("h2", st{Bytes: 200}, true, time.Minute); err != nil || got != (st{Bytes: 100}) {
		t.Fatalf("partial: %+v, %v", got, err)
	}
	_, err = hold("h2", st{Bytes: 1}, true, time.Minute)
	refused(err, "bytes", 1000) // no room left: even partial is refused
	if got, err := hold("h3", st{Files: 1}, false, time.Minute); err != nil || got != (st{Files: 1}) {
		t.Fatalf("h3: %+v, %v", got, err)
	}
	_, err = hold("h4", st{Files: 1}, false, time.Minute)
	refused(err, "files", 3)
	if _, err := l.Hold(ctx, "other", "v", st{Bytes: 1000, Files: 3}, limit, false, time.Minute); err != nil {
		t.Fatalf("another user's room is apart: %v", err)
	}
	// h1 stores 250 bytes in a new file: counted, and its hold let go at once
	if err := l.Settle(ctx, "h1", "u", st{Bytes: 250, Files: 1}); err != nil {
		t.Fatal(err)
	}
	if tot, _ := total(t, s, "u"); tot.Bytes != 850 || tot.Files != 2 {
		t.Fatalf("settled: stored %d bytes, %d files", tot.Bytes, tot.Files)
	}
	_, err = hold("h5", st{Bytes: 51}, false, time.Minute)
	refused(err, "bytes", 950) // 850 stored, h2 100
	if err := l.Settle(ctx, "h2", "u", st{}); err != nil {
		t.Fatal(err)
	}
	if got, err := hold("h5", st{Bytes: 150}, false, 50*time.Millisecond); err != nil || got.Bytes != 150 {
		t.Fatalf("h2 let go: %+v, %v", got, err)
	}
	_, err = hold("h6", st{Bytes: 1}, false, time.Minute)
	refused(err, "bytes", 1000)
	time.Sleep(100 * time.Millisecond) // h5 lapses
	if got, err := hold("h6", st{Bytes: 150}, false, time.Minute); err != nil || got.Bytes != 150 {
		t.Fatalf("h5 lapsed: %+v, %v", got, err)
	}
	// taken again with nothing more, a hold is extended
	if got, err := hold("h6", st{}, false, time.Minute); err != nil || got != (st{}) {
		t.Fatalf("extend: %+v, %v", got, err)
	}
	_, err = hold("h7", st{Bytes: 1}, false, time.Minute)
	refused(err, "bytes", 1000)

	// holds at once never pass the quota together
	var wg sync.WaitGroup
	var held atomic.Int32
	for i := range 10 {
		wg.Go(func() {
			_, err := l.Hold(ctx, fmt.Sprint("c", i), "w", st{Bytes: 100}, st{Bytes: 500}, false, time.Minute)
			if err == nil {
				held.Add(1)
			} else if !errors.Is(err, store.ErrQuota) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if held.Load() != 5 {
		t.Fatalf("%d of 10 holds of 100 bytes at once within 500", held.Load())
	}
}
