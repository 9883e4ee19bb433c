package storetest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Fill creates n held jobs in s from 16 concurrent clients (one owner of
// ten, twenty templates, labels, every 20th a child, every 10th in a sweep),
// and reports the acceptance rate over the first and the last tenth of the
// jobs, the p99 of a filtered page of 50 for each filter, and (with size,
// which returns the bytes the store occupies) the bytes per job. Rare
// values (template "rare", label batch=0, the sweep and parent) match the
// oldest jobs, the worst case of a scan from the newest.
func Fill(b *testing.B, s store.Store, n int, size func() int64) {
	ctx := context.Background()
	const clients = 16
	times := make([]time.Time, n)
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= n {
					return
				}
				j := &job.Job{
					ID: fmt.Sprintf("fill%08d", i), Name: "bench", Owner: fmt.Sprintf("user%d", i%10),
					Template: fmt.Sprintf("t%d", i%20), Environment: "local", State: job.Held, Reason: "created",
					Parameters: []byte(`{"name":"World","n":` + fmt.Sprint(i) + `}`),
					Labels:     map[string]string{"batch": fmt.Sprint(i / 1000), "color": []string{"red", "blue"}[i%2]},
					Resources:  job.Resources{Nodes: 1, CoresPerNode: 1},
					CreatedAt:  time.Now().UTC(),
				}
				if i < 1000 && i%10 == 0 {
					j.Template = "rare"
				}
				if i%20 == 19 && i < 2000 {
					j.ParentID = "fill00000000"
				}
				if i%10 == 5 && i < 5000 {
					j.SweepID = "sweep-early"
				}
				if i%50 == 0 {
					j.State = job.Pending
				}
				if _, err := s.CreateJob(ctx, j, nil); err != nil {
					b.Error(err)
					return
				}
				times[i] = time.Now()
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	sort.Slice(times, func(i, k int) bool { return times[i].Before(times[k]) })
	tenth := n / 10
	rate := func(from, to time.Time) float64 { return float64(tenth) / to.Sub(from).Seconds() }
	b.ReportMetric(rate(start, times[tenth-1]), "jobs/s_first10%")
	b.ReportMetric(rate(times[n-tenth-1], times[n-1]), "jobs/s_last10%")
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "jobs/s_all")
	if size != nil {
		b.ReportMetric(float64(size())/float64(n), "bytes/job")
	}
	filters := []struct {
		name string
		f    store.JobFilter
	}{
		{"owner", store.JobFilter{Owner: "user3"}},
		{"owner+state", store.JobFilter{Owner: "user0", States: []job.State{job.Pending}}},
		{"owner+template", store.JobFilter{Owner: "user0", Template: "rare"}},
		{"owner+label", store.JobFilter{Owner: "user0", LabelKey: "batch", LabelValue: "0"}},
		{"parent", store.JobFilter{ParentID: "fill00000000"}},
		{"sweep", store.JobFilter{SweepID: "sweep-early"}},
	}
	for _, f := range filters {
		var d []time.Duration
		for k := 0; k < 100; k++ {
			f.f.Limit = 50
			f.f.PageToken = ""
			t0 := time.Now()
			page, next, err := s.ListJobs(ctx, f.f)
			if err != nil {
				b.Fatal(err)
			}
			if k%2 == 1 && next != "" { // every other: a second page
				f.f.PageToken = next
				if page, _, err = s.ListJobs(ctx, f.f); err != nil {
					b.Fatal(err)
				}
			}
			d = append(d, time.Since(t0))
			if len(page) == 0 {
				b.Fatalf("filter %s: empty page", f.name)
			}
		}
		sort.Slice(d, func(i, k int) bool { return d[i] < d[k] })
		b.ReportMetric(float64(d[98].Microseconds())/1000, "ms_p99_"+f.name)
	}
}
