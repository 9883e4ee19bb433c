package main

import (
	"context"
	"encoding/csv"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// sweepTemplate adds two numbers into results.json; sweepSlowTemplate
// runs until canceled.
const sweepTemplates = `
name: sum
version: 1
command: [sh, -c, 'echo "{\"sum\": $((HPCGATE_PARAM_A + HPCGATE_PARAM_B))}" > results.json']
parameters:
  type: object
  additionalProperties: false
  required: [a, b]
  properties:
    a: {type: integer}
    b: {type: integer, maximum: 100}
outputs: [results.json]
environments: [local, slurm, sge]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 300}
---
name: family
version: 1
command: [sh, -c, 'hpcgate submit slow --env "$HPCGATE_PARAM_ENV" --quiet > kid && hpcgate submit slow --env "$HPCGATE_PARAM_ENV" --detached --quiet > free && echo started && sleep 300']
parameters:
  type: object
  properties:
    env: {type: string}
outputs: [kid, free]
environments: [local, slurm, sge]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
---
name: count
version: 1
command: [sh, -c, 'echo "{\"words\": $(wc -w < in.txt)}" > results.json']
inputs: [{name: text, path: in.txt, required: true}]
outputs: [results.json]
environments: [local, slurm, sge]
---
name: pipeline
version: 1
command: [sh, -c, 'echo "one two three" > d.txt && hpcgate upload d.txt data/d.txt && hpcgate submit count --env "$HPCGATE_PARAM_ENV" --input "text=job:$HPCGATE_JOB_ID/files/data/d.txt" --wait --quiet > child']
parameters:
  type: object
  properties:
    env: {type: string}
outputs: [child]
environments: [local, slurm, sge]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
---
name: driver
version: 1
command: [sh, -c, 'hpcgate sweep sum --env "$HPCGATE_PARAM_ENV" --param a=1 --vary b=10,20 --follow']
parameters:
  type: object
  properties:
    env: {type: string}
environments: [local, slurm, sge]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
---
name: slow
version: 1
command: [sh, -c, 'echo started; sleep 300']
parameters:
  type: object
  properties:
    n: {type: integer}
environments: [local, slurm, sge]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
`

// familyGateway starts a gateway with sweepTemplates on the local
// executor, and on Slurm and Grid Engine where the test command started
// them; it returns it with its environments' names.
func familyGateway(t *testing.T) (*gw, []string) {
	t.Helper()
	envs, names := engineEnvs(t)
	dir := templatesDir(t, strings.Split(sweepTemplates, "\n---\n")...)
	g := startGateway(t, "template_dirs: ["+dir+"]\nno_builtin_templates: true\npoll_interval: 500ms\n"+envs)
	return g, names
}

// From the command line, on every engine: a 3×3 product sweep runs to its
// results table, a sweep with an invalid variant is refused whole, and a
// sweep canceled half-way ends canceled.
func TestSweepsFromCLI(t *testing.T) {
	g, names := familyGateway(t)
	tok := g.userToken("vera")
	c := g.client(tok)
	ctx := context.Background()
	for _, env := range names {
		t.Run(env, func(t *testing.T) {
			// --follow shows the progress and succeeds once every job has
			out, errOut, err := g.cli(tok, "sweep", "sum", "--env", env, "--vary", "a=1:3:1", "--vary", "b=10,20,30", "--follow")
			if err != nil || !strings.Contains(errOut, "9/9 ended: 9 succeeded") {
				t.Fatalf("sweep --follow: %v\n%s%s", err, out, errOut)
			}
			id := strings.TrimSuffix(strings.Fields(out)[2], ":") // created sweep ID: ...
			sw, err := c.Sweep(ctx, id)
			if err != nil || sw.Total != 9 || sw.Counts[api.StateSucceeded] != 9 {
				t.Fatalf("sweep %s: %+v, %v", id, sw, err)
			}
			if sep := map[string]string{"slurm": "_", "sge": "."}[env]; sep != "" {
				// one array: one submission, the variants its tasks
				arrays := map[string]bool{}
				for _, jid := range sw.Jobs {
					j, err := c.Job(ctx, jid)
					if err != nil || j.Backend == nil {
						t.Fatalf("job %s: %+v, %v", jid, j, err)
					}
					a, _, ok := strings.Cut(j.Backend.ID, sep)
					if !ok {
						t.Fatalf("job %s went to %s as %s, not as an array's task", jid, env, j.Backend.ID)
					}
					arrays[a] = true
				}
				if len(arrays) != 1 {
					t.Fatalf("the sweep went to %s as %d arrays", env, len(arrays))
				}
			}
			if out := g.mustCLI(tok, "sweep", "status", id); !strings.Contains(out, "9/9 ended") {
				t.Fatalf("sweep status: %q", out)
			}
			recs, err := csv.NewReader(strings.NewReader(g.mustCLI(tok, "sweep", "results", id, "--csv"))).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 10 || strings.Join(recs[0], ",") != "index,job,state,exit_code,a,b,result.sum" {
				t.Fatalf("results CSV %q", recs)
			}
			for i, r := range recs[1:] {
				a, b := 1+i/3, 10*(1+i%3) // the names in alphabetical order, the last varies fastest
				if r[0] != strconv.Itoa(i) || r[2] != "succeeded" || r[4] != strconv.Itoa(a) || r[5] != strconv.Itoa(b) || r[6] != strconv.Itoa(a+b) {
					t.Errorf("row %d: %q, want a=%d b=%d sum=%d", i, r, a, b, a+b)
				}
			}
			if table := g.mustCLI(tok, "sweep", "results", id); !strings.Contains(table, "result.sum") || strings.Count(table, "succeeded") != 9 {
				t.Errorf("results table:\n%s", table)
			}

			// b=200 passes the schema's maximum: nothing is created
			_, errOut, err = g.cli(tok, "sweep", "sum", "--env", env, "--param", "a=1", "--vary", "b=50,200")
			if err == nil || !strings.Contains(errOut, "variants.parameters.b[1]") {
				t.Fatalf("an invalid variant: %v\n%s", err, errOut)
			}

			// one at a time (max_running), then canceled half-way: the
			// running job and the waiting ones
			slow := strings.TrimSpace(g.mustCLI(tok, "sweep", "slow", "--env", env, "--vary", "n=1:4:1", "--max-running", "1", "--quiet"))
			sw, err = c.Sweep(ctx, slow)
			if err != nil || len(sw.Jobs) != 4 {
				t.Fatalf("slow sweep %+v, %v", sw, err)
			}
			waitState(t, c, sw.Jobs[0], api.StateRunning, 2*time.Minute)
			time.Sleep(1500 * time.Millisecond) // three dispatcher passes
			for _, id := range sw.Jobs[1:] {
				// waiting in the gateway, or (an array's %1) in Slurm
				if j, err := c.Job(ctx, id); err != nil || (j.State != api.StatePending && j.State != api.StateQueued) {
					t.Fatalf("with max_running 1, a second job of the sweep is %s (%v)", j.State, err)
				}
			}
			if out := g.mustCLI(tok, "sweep", "cancel", slow); !strings.Contains(out, "4 canceled") {
				t.Fatalf("sweep cancel: %q", out)
			}
			for _, j := range sw.Jobs {
				if got := waitJob(t, c, j, time.Minute); got.State != api.StateCanceled {
					t.Errorf("job %s of the canceled sweep: %s", j, got.State)
				}
			}
			if _, _, err := g.cli(tok, "sweep", "status", slow); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// On every engine: canceling a job cancels the child it submitted, but
// not the one it submitted --detached.
func TestCancelCascadesEndToEnd(t *testing.T) {
	g, names := familyGateway(t)
	c := g.client(g.userToken("vera"))
	ctx := context.Background()
	for _, env := range names {
		t.Run(env, func(t *testing.T) {
			p := startedJob(t, c, api.JobRequest{Template: "family", Environment: env, Parameters: []byte(`{"env": "` + env + `"}`)})
			kids, err := c.Children(ctx, p.ID)
			if err != nil || len(kids) != 2 {
				t.Fatalf("children %v, %v", kids, err)
			}
			if _, err := c.Cancel(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
			for _, k := range kids {
				if k.Detached {
					if cur, err := c.Job(ctx, k.ID); err != nil || cur.State == api.StateCanceled {
						t.Errorf("the detached child: %v, %v", cur.State, err)
					}
					c.Cancel(ctx, k.ID)
					continue
				}
				if got := waitJob(t, c, k.ID, time.Minute); got.State != api.StateCanceled || !strings.Contains(got.Reason, p.ID) {
					t.Errorf("the attached child: %s (%s)", got.State, got.Reason)
				}
			}
		})
	}
}

// On every engine: a job stores a file in its own space and its child
// takes it as an input by reference, without a copy; then another job
// takes the child's output.
func TestDataFlowsBetweenJobs(t *testing.T) {
	g, names := familyGateway(t)
	c := g.client(g.userToken("vera"))
	ctx := context.Background()
	for _, env := range names {
		t.Run(env, func(t *testing.T) {
			p, err := c.CreateJob(ctx, api.JobRequest{Template: "pipeline", Environment: env, Parameters: []byte(`{"env": "` + env + `"}`)}, "")
			if err != nil {
				t.Fatal(err)
			}
			if p = waitJob(t, c, p.ID, 3*time.Minute); p.State != api.StateSucceeded {
				errLog, _ := io.ReadAll(must(c.Log(ctx, p.ID, "stderr", 0, false)))
				t.Fatalf("pipeline %s: %s\n%s", p.State, p.Error, errLog)
			}
			kids, err := c.Children(ctx, p.ID)
			if err != nil || len(kids) != 1 {
				t.Fatalf("children %v, %v", kids, err)
			}
			k := kids[0]
			if want := "job:" + p.ID + "/files/data/d.txt"; k.Inputs["text"] != want || k.State != api.StateSucceeded {
				t.Fatalf("child %s, inputs %v; want %s", k.State, k.Inputs, want)
			}
			if res, _ := c.Results(ctx, k.ID); !strings.Contains(string(res), `"words": 3`) {
				t.Fatalf("child results %s", res)
			}
			// from outside, the child's output feeds another job
			j, err := c.CreateJob(ctx, api.JobRequest{Template: "count", Environment: env, Inputs: map[string]string{"text": "job:" + k.ID + "/outputs/results.json"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			if j = waitJob(t, c, j.ID, 2*time.Minute); j.State != api.StateSucceeded {
				t.Fatalf("a job on the child's output: %s (%s)", j.State, j.Error)
			}
			if res, _ := c.Results(ctx, j.ID); !strings.Contains(string(res), `"words": 2`) { // {"words": 3}
				t.Fatalf("results %s", res)
			}
		})
	}
}

// On every engine: a job makes a sweep of its own in one call and waits
// for it; the sweep's jobs are its children.
func TestSweepFromAJobEndToEnd(t *testing.T) {
	g, names := familyGateway(t)
	c := g.client(g.userToken("vera"))
	ctx := context.Background()
	for _, env := range names {
		t.Run(env, func(t *testing.T) {
			d, err := c.CreateJob(ctx, api.JobRequest{Template: "driver", Environment: env, Parameters: []byte(`{"env": "` + env + `"}`)}, "")
			if err != nil {
				t.Fatal(err)
			}
			if d = waitJob(t, c, d.ID, 3*time.Minute); d.State != api.StateSucceeded {
				errLog, _ := io.ReadAll(must(c.Log(ctx, d.ID, "stderr", 0, false)))
				t.Fatalf("driver %s: %s\n%s", d.State, d.Error, errLog)
			}
			kids, err := c.Children(ctx, d.ID)
			if err != nil || len(kids) != 2 || kids[0].SweepID == "" || kids[0].SweepID != kids[1].SweepID {
				t.Fatalf("the driver's children %+v, %v", kids, err)
			}
			rows, err := c.SweepResults(ctx, kids[0].SweepID)
			if err != nil || len(rows) != 2 || strings.ReplaceAll(string(rows[1].Results), " ", "") != `{"sum":21}` {
				t.Fatalf("the driver's sweep's results %+v, %v", rows, err)
			}
		})
	}
}
