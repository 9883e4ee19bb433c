package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// sweepBench measures, in one run on environment env (Slurm: arrays),
// n variants of hello made as one sweep against the same n made as single
// jobs by 16 clients: the time until the gateway has accepted them all
// (validated and stored), and until the engine has every one (queued or
// further). Each batch is canceled before the next.
func sweepBench(bin, config, env string, n int, sweepOnly bool) error {
	dir, err := os.MkdirTemp("", "hpcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, c, err := serverWithConfig(bin, dir, config)
	if err != nil {
		return err
	}
	defer s.stop()
	ctx := context.Background()
	names := make([]map[string]any, n)
	for i := range names {
		names[i] = map[string]any{"name": fmt.Sprintf("v%d", i)}
	}
	variants, _ := json.Marshal(names)

	// the sweep
	start := time.Now()
	sw, err := c.CreateSweep(ctx, api.SweepRequest{Template: "hello", Environment: env, Variants: variants}, "")
	if err != nil {
		return err
	}
	sweepAccepted := time.Since(start)
	if err := allInEngine(ctx, c, client.JobFilter{Sweep: sw.ID}, n); err != nil {
		return err
	}
	sweepQueued := time.Since(start)
	if sweepOnly {
		fmt.Printf("### %d variants of hello on %s as one sweep\n\n| path | accepted (all stored) | all in the engine |\n|---|---|---|\n", n, env)
		fmt.Printf("| one sweep (arrays) | %.2f s | %.2f s |\n\n", sweepAccepted.Seconds(), sweepQueued.Seconds())
		return cancelArrays(ctx, c, sw.ID)
	}
	if _, err := c.CancelSweep(ctx, sw.ID); err != nil {
		return err
	}

	// the same as single jobs
	label := fmt.Sprintf("bench=%d", time.Now().UnixNano())
	start = time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	next := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p, _ := json.Marshal(names[i])
				if _, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Environment: env, Parameters: p, Labels: map[string]string{"bench": label[6:]}}, ""); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	singleAccepted := time.Since(start)
	if err := allInEngine(ctx, c, client.JobFilter{Label: label}, n); err != nil {
		return err
	}
	singleQueued := time.Since(start)
	page, err := c.Jobs(ctx, client.JobFilter{Label: label, Limit: 1000})
	for err == nil {
		for _, j := range page.Items {
			c.Cancel(ctx, j.ID)
		}
		if page.NextPageToken == "" {
			break
		}
		page, err = c.Jobs(ctx, client.JobFilter{Label: label, Limit: 1000, PageToken: page.NextPageToken})
	}

	fmt.Printf("### %d variants of hello on %s: one sweep against %d single jobs (16 clients), same run\n\n", n, env, n)
	fmt.Printf("| path | accepted (all stored) | all in the engine | ratio to single jobs (in the engine) |\n|---|---|---|---|\n")
	fmt.Printf("| one sweep (arrays) | %.2f s | %.2f s | **%.2f** |\n", sweepAccepted.Seconds(), sweepQueued.Seconds(), sweepQueued.Seconds()/singleQueued.Seconds())
	fmt.Printf("| single jobs | %.2f s | %.2f s | 1 |\n\n", singleAccepted.Seconds(), singleQueued.Seconds())
	return nil
}

// allInEngine waits until n jobs of f have left pending (an engine has
// them, or they ended).
func allInEngine(ctx context.Context, c *client.Client, f client.JobFilter, n int) error {
	deadline := time.Now().Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		f.State = "pending"
		f.Limit = 1
		page, err := c.Jobs(ctx, f)
		if err != nil {
			return err
		}
		if len(page.Items) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%d jobs were not all handed to the engine within 30 minutes", n)
}

// cancelArrays cancels a sweep's arrays in Slurm itself, one scancel an
// array: canceling thousands of jobs one by one through the gateway would
// outlast the measure by far.
func cancelArrays(ctx context.Context, c *client.Client, sweep string) error {
	arrays := map[string]bool{}
	f := client.JobFilter{Sweep: sweep, Limit: 1000}
	for {
		page, err := c.Jobs(ctx, f)
		if err != nil {
			return err
		}
		for _, j := range page.Items {
			if j.Backend != nil {
				a, _, _ := strings.Cut(j.Backend.ID, "_")
				arrays[a] = true
			}
		}
		if page.NextPageToken == "" {
			break
		}
		f.PageToken = page.NextPageToken
	}
	for a := range arrays {
		if out, err := exec.Command("scancel", a).CombinedOutput(); err != nil {
			return fmt.Errorf("scancel %s: %v: %s", a, err, out)
		}
	}
	return nil
}
