package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/pgstore"
	"github.com/hpcgate/hpcgate/internal/testenv"
)

// replicas are two servers over one PostgreSQL store and one bucket
// (fileblob over one directory, or bucket), as replicas of a gateway
// are; each keeps its uploads' turns and holds in the store.
func replicas(t *testing.T, q Quota, bucket blob.Bucket) (a, b *harness, st *pgstore.Store) {
	t.Helper()
	st, err := pgstore.Open(context.Background(), testenv.PostgresSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if bucket == nil {
		if bucket, err = fileblob.Open(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	replica := func() *harness {
		return newHarness(t, &harnessOptions{store: st, bucket: bucket, opts: &Options{
			Quota:  func(string) Quota { return q },
			Leases: st,
		}})
	}
	return replica(), replica(), st
}

// Each replica used to hold its uploads' room in its own memory, so that
// uploads through two replicas at once passed the quota together.
func TestReplicasKeepTheQuotaTogether(t *testing.T) {
	fb, err := fileblob.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	gb := &gatedBucket{Bucket: fb, n: n, all: make(chan struct{})}
	a, b, _ := replicas(t, Quota{Bytes: 100, Files: 5}, gb)
	alice := a.token("alice", time.Time{}, allScopes...)
	puts := func(n int, name, body string) (created int) {
		t.Helper()
		var wg sync.WaitGroup
		codes := make([]int, n)
		for i := range n {
			h := []*harness{a, b}[i%2]
			wg.Go(func() { codes[i] = h.do("PUT", fmt.Sprintf("/v1/files/%s%d", name, i), alice, body).status })
		}
		wg.Wait()
		for _, c := range codes {
			switch c {
			case http.StatusCreated:
				created++
			case http.StatusConflict:
			default:
				t.Errorf("status %d", c)
			}
		}
		return created
	}
	if got := puts(n, "f", strings.Repeat("x", 30)); got != 3 {
		t.Fatalf("%d of %d uploads of 30 bytes through two replicas at once stored under a quota of 100 bytes", got, n)
	}
	gb.mu.Lock()
	gb.arrived, gb.n, gb.all = 0, 6, make(chan struct{})
	gb.mu.Unlock()
	if got := puts(6, "e", ""); got != 2 {
		t.Fatalf("%d of 6 new files through two replicas at once stored with 3 of a quota of 5 files stored", got)
	}
	for _, h := range []*harness{a, b} {
		if m := me(t, h, alice); m.Quotas["bytes"].Used != 90 || m.Quotas["files"].Used != 5 {
			t.Fatalf("use %+v, want 90 bytes in 5 files", m.Quotas)
		}
	}
}

// Writes of one path through two replicas take turns, as they do in one.
func TestReplicasTakeTurnsOfAPath(t *testing.T) {
	a, b, _ := replicas(t, Quota{Bytes: 1000, Files: 10}, nil)
	alice := a.token("alice", time.Time{}, allScopes...)
	pathTakesTurns(t, a, b, alice)
}

// A replica that dies leaves its turns and holds to lapse; one that runs
// keeps them for as long as its uploads last.
func TestReplicaLeasesLapseAndAreKept(t *testing.T) {
	defer func(d time.Duration) { leaseTTL = d }(leaseTTL)
	leaseTTL = time.Second // kept every third of it
	a, b, st := replicas(t, Quota{Bytes: 100}, nil)
	alice := a.token("alice", time.Time{}, allScopes...)
	ctx := context.Background()

	// a dead replica's hold of the whole room, and its turn of a path
	leased := time.Now()
	if _, err := st.Hold(ctx, "dead-1", "alice", store.Stored{Bytes: 100}, store.Stored{Bytes: 100}, false, leaseTTL); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.LeaseKey(ctx, userFilesKey("alice", "p"), "dead", leaseTTL); err != nil || !ok {
		t.Fatalf("lease: %v, %v", ok, err)
	}
	b.do("PUT", "/v1/files/q", alice, "0123456789").want(t, http.StatusConflict)
	b.do("PUT", "/v1/files/p", alice, "0123456789").want(t, http.StatusCreated) // waits for the lapse
	if waited := time.Since(leased); waited < leaseTTL {
		t.Fatalf("the PUT of a path leased by another for %s was done after %s, before the lease lapsed", leaseTTL, waited)
	}

	// a running upload keeps its hold past several leases
	finish, put := a.slowPut(alice, "/v1/files/r", "012345", "6789012345678901234567890123456789012345678901234567890123456789", 70)
	atTurn(t, a, userFilesKey("alice", "r"), 1)
	time.Sleep(3 * leaseTTL)
	r := b.do("PUT", "/v1/files/s", alice, strings.Repeat("y", 30)).want(t, http.StatusConflict)
	if !strings.Contains(r.problem.Detail, "bytes") {
		t.Fatalf("problem: %+v", r.problem)
	}
	finish()
	if st := <-put; st != http.StatusCreated {
		t.Fatalf("PUT: %d", st)
	}
	b.do("PUT", "/v1/files/s", alice, strings.Repeat("y", 20)).want(t, http.StatusCreated)
	if m := me(t, a, alice); m.Quotas["bytes"].Used != 100 {
		t.Fatalf("use %+v", m.Quotas)
	}
}
