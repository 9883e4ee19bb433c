package main

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// On every engine, the example variant studies: optimize runs rounds of
// child sweeps, each decided by the last one's results, to the minimum of
// evaluate; sweep-reduce runs a sweep and a reduce job that waits for it
// (after:) and reads its results with its own token.
func TestVariantStudiesEndToEnd(t *testing.T) {
	envs, names := engineEnvs(t)
	g := startGateway(t, "poll_interval: 500ms\n"+envs)
	c := g.client(g.userToken("olga"))
	ctx := context.Background()
	run := func(t *testing.T, template, env, params string) *api.Job {
		t.Helper()
		j, err := c.CreateJob(ctx, api.JobRequest{Template: template, Environment: env, Parameters: []byte(params)}, "")
		if err != nil {
			t.Fatal(err)
		}
		if j = waitJob(t, c, j.ID, 5*time.Minute); j.State != api.StateSucceeded {
			errLog, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stderr", 0, false)))
			t.Fatalf("%s: %s (%s)\n%s", template, j.State, j.Error, errLog)
		}
		return j
	}
	for _, env := range names {
		t.Run(env, func(t *testing.T) {
			t.Run("optimize", func(t *testing.T) {
				// [0, 10] in 5 points, 3 rounds: 2.5, then 3.75 twice
				j := run(t, "optimize", env, `{"lo": 0, "hi": 10, "points": 5, "tolerance": 1, "max_rounds": 3}`)
				var res struct {
					X, F   float64
					Rounds int
				}
				b, _ := c.Results(ctx, j.ID)
				if err := json.Unmarshal(b, &res); err != nil || res.Rounds != 3 || math.Abs(res.X-3.75) > 1e-9 || math.Abs(res.F-1.0025) > 1e-9 {
					t.Fatalf("results %s (%v)", b, err)
				}
				kids, err := c.Children(ctx, j.ID)
				if err != nil || len(kids) != 15 {
					t.Fatalf("%d children, want 3 rounds of 5 (%v)", len(kids), err)
				}
				rounds := string(readAll(t, must2(c.Output(ctx, j.ID, "rounds.csv"))))
				if !strings.HasPrefix(rounds, "round,lo,hi,best_x,best_f\n1,0,10,2.5,") || strings.Count(rounds, "\n") != 4 {
					t.Fatalf("rounds.csv:\n%s", rounds)
				}
			})
			t.Run("sweep-reduce", func(t *testing.T) {
				j := run(t, "sweep-reduce", env, `{"from": 0, "to": 4, "step": 1}`)
				var res struct{ Sweep, Reduce string }
				b, _ := c.Results(ctx, j.ID)
				if err := json.Unmarshal(b, &res); err != nil || res.Sweep == "" || res.Reduce == "" {
					t.Fatalf("results %s (%v)", b, err)
				}
				red, err := c.Job(ctx, res.Reduce)
				if err != nil || len(red.After) != 1 || red.After[0] != (api.Dependency{Sweep: res.Sweep, When: "finished"}) || red.State != api.StateSucceeded {
					t.Fatalf("the reduce job: %+v, %v", red, err)
				}
				sw, err := c.Sweep(ctx, res.Sweep)
				if err != nil || sw.Total != 5 || sw.Counts[api.StateSucceeded] != 5 {
					t.Fatalf("sweep %+v, %v", sw, err)
				}
				// it started only once the last variant had ended
				var lastEnd time.Time
				for _, id := range sw.Jobs {
					v, err := c.Job(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if v.FinishedAt != nil && v.FinishedAt.After(lastEnd) {
						lastEnd = *v.FinishedAt
					}
				}
				if red.StartedAt == nil || red.StartedAt.Before(lastEnd) {
					t.Fatalf("the reduce job started at %v, before the sweep's last job ended at %v", red.StartedAt, lastEnd)
				}
				table := string(readAll(t, must2(c.Output(ctx, j.ID, "table.csv"))))
				if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 6 || !strings.Contains(lines[0], "result.f") || !strings.Contains(table, ",succeeded,0,4,") {
					t.Fatalf("table.csv:\n%s", table)
				}
			})
		})
	}
}

func must2[T any](v T, _ int64, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
