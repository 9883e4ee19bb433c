package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// latency measures, for each engine environment, how long a trivial job
// takes from submission to running and to finished: through the gateway
// (hello via the agent) and as a raw sbatch/qsub of an equivalent script,
// one job at a time, alternating, in the same run.
func latency(bin, config string, envs []string, n int) error {
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
	fmt.Printf("### Latency of a trivial job, gateway vs raw engine (%d jobs each, one at a time)\n\n", n)
	fmt.Printf("Gateway: `hello` through the agent; running = state starting (the job's process runs), finished = succeeded.\n")
	fmt.Printf("Raw: the engine's own submit command with `echo Hello`; running = RUNNING / r, finished = gone from the queue as done.\n")
	fmt.Printf("The gateway learns the end from the agent itself, which can be earlier than the engine's queue shows it.\n\n")
	fmt.Printf("| engine | path | submit→running p50 | p90 | submit→finished p50 | p90 | gateway adds (p50, running / finished) |\n|---|---|---|---|---|---|---|\n")
	for _, env := range envs {
		var gwRun, gwEnd, rawRun, rawEnd []time.Duration
		for i := 0; i < n; i++ {
			r, e, err := gatewayJob(ctx, c, env)
			if err != nil {
				return fmt.Errorf("%s via the gateway: %w", env, err)
			}
			gwRun, gwEnd = append(gwRun, r), append(gwEnd, e)
			r, e, err = rawJob(env, dir)
			if err != nil {
				return fmt.Errorf("%s raw: %w", env, err)
			}
			rawRun, rawEnd = append(rawRun, r), append(rawEnd, e)
		}
		ms := func(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
		gr, ge, rr, re := percentile(gwRun, 0.5), percentile(gwEnd, 0.5), percentile(rawRun, 0.5), percentile(rawEnd, 0.5)
		fmt.Printf("| %s | gateway | %s | %s | %s | %s | **%s / %s** |\n", env, ms(gr), ms(percentile(gwRun, 0.9)), ms(ge), ms(percentile(gwEnd, 0.9)), ms(gr-rr), ms(ge-re))
		fmt.Printf("| %s | raw | %s | %s | %s | %s | |\n", env, ms(rr), ms(percentile(rawRun, 0.9)), ms(re), ms(percentile(rawEnd, 0.9)))
	}
	fmt.Println()
	return nil
}

func gatewayJob(ctx context.Context, c interface {
	CreateJob(context.Context, api.JobRequest, string) (*api.Job, error)
	Job(context.Context, string) (*api.Job, error)
}, env string) (toRun, toEnd time.Duration, err error) {
	t0 := time.Now()
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Environment: env, Parameters: json.RawMessage(`{"name":"bench"}`)}, "")
	if err != nil {
		return 0, 0, err
	}
	deadline := t0.Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		cur, err := c.Job(ctx, j.ID)
		if err != nil {
			return 0, 0, err
		}
		switch cur.State {
		case api.StateStarting, api.StateRunning, api.StateFinishing:
			if toRun == 0 {
				toRun = time.Since(t0)
			}
		case api.StateSucceeded:
			if toRun == 0 {
				toRun = time.Since(t0)
			}
			return toRun, time.Since(t0), nil
		case api.StateFailed, api.StateCanceled:
			return 0, 0, fmt.Errorf("job %s %s: %s", j.ID, cur.State, cur.Error)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, 0, fmt.Errorf("job %s did not finish", j.ID)
}

func sgeCmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join("/usr/lib/gridengine", name), args...)
	cmd.Env = append(os.Environ(), "SGE_ROOT=/var/lib/gridengine", "SGE_CELL=default")
	return cmd
}

// rawJob submits `echo Hello` straight to the engine and polls it.
func rawJob(env, dir string) (toRun, toEnd time.Duration, err error) {
	script := "#!/bin/sh\necho Hello\n"
	var submit *exec.Cmd
	switch env {
	case "slurm":
		submit = exec.Command("sbatch", "--parsable", "--partition=debug", "--job-name=raw", "--output="+filepath.Join(dir, "raw-%j.out"))
	case "sge":
		submit = sgeCmd("qsub", "-terse", "-N", "raw", "-q", "all.q", "-S", "/bin/sh", "-j", "y", "-o", dir)
	default:
		return 0, 0, fmt.Errorf("no raw path for environment %s", env)
	}
	submit.Stdin = strings.NewReader(script)
	t0 := time.Now()
	out, err := submit.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("%v: %w", submit.Args, err)
	}
	id := strings.TrimSpace(strings.SplitN(string(out), ";", 2)[0])
	deadline := t0.Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		state := ""
		switch env {
		case "slurm":
			o, _ := exec.Command("squeue", "-h", "-t", "all", "-j", id, "-o", "%T").Output()
			state = strings.TrimSpace(string(o))
			if state == "RUNNING" || state == "COMPLETING" {
				state = "running"
			} else if state == "COMPLETED" || state == "" {
				state = "done"
			}
		case "sge":
			o, _ := sgeCmd("qstat", "-u", "*").Output()
			state = "done"
			for _, l := range strings.Split(string(o), "\n") {
				f := strings.Fields(l)
				if len(f) > 4 && f[0] == id {
					state = f[4]
					if strings.Contains(state, "r") { // not t: transferring, the job's process does not run yet
						state = "running"
					}
				}
			}
		}
		if state == "running" && toRun == 0 {
			toRun = time.Since(t0)
		}
		if state == "done" {
			if toRun == 0 {
				toRun = time.Since(t0)
			}
			return toRun, time.Since(t0), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, 0, fmt.Errorf("raw job %s did not finish", id)
}
