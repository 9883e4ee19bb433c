package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// containerBenchConfig runs the same trivial command on the host and in
// the example image: on the local executor, and on Slurm when asked.
const containerBenchConfig = `quotas: {default: {jobs: 0, cores: 0, bytes: 0}}
rate_limit: {requests_per_second: 0, job_requests_per_second: 0}
poll_interval: 200ms
no_builtin_templates: true
template_dirs: [%s]
environments:
  - {name: local, scheduler: local}
  - {name: local-podman, scheduler: local, container_runtime: podman, env: {CONTAINERS_CONF: "${CONTAINERS_CONF}"}}
  - {name: slurm, scheduler: slurm, partition: debug}
  - {name: slurm-podman, scheduler: slurm, partition: debug, container_runtime: podman, env: {CONTAINERS_CONF: "${CONTAINERS_CONF}"}}
`

const (
	hostTrue      = "name: host-true\nversion: 1\ncommand: [\"true\"]\nenvironments: [local, slurm]\n"
	containerTrue = "name: container-true\nversion: 1\nimage: localhost/hpcgate-examples:latest\ncommand: [\"true\"]\nenvironments: [local-podman, slurm-podman]\n"
)

// containers measures what running in a container adds to a job, on each
// engine of engines (local, slurm): n trivial jobs on the host and n in
// the example image, alternating, one at a time (warm: one unmeasured
// container job first), from creation to succeeded as the client sees
// it. It needs scripts/setup-podman.sh and CONTAINERS_CONF, and for slurm
// scripts/setup-slurm.sh.
func containers(bin string, engines []string, n int) error {
	dir, err := os.MkdirTemp("", "hpcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tdir := filepath.Join(dir, "templates")
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		return err
	}
	for name, text := range map[string]string{"host.yaml": hostTrue, "container.yaml": containerTrue} {
		if err := os.WriteFile(filepath.Join(tdir, name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	cfg := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(containerBenchConfig, tdir)), 0o600); err != nil {
		return err
	}
	s, c, err := serverWithConfig(bin, dir, cfg)
	if err != nil {
		return err
	}
	defer s.stop()
	ctx := context.Background()
	// The gateway's own times, from the agent's start on the node to the
	// job's end: an engine's queueing (Slurm here: 60 to 760 ms, the same
	// for both kinds of job) would drown the figure, and the client's Wait
	// polls with back-off, which would round it to its steps.
	one := func(tmpl, env string) (time.Duration, error) {
		j, err := c.CreateJob(ctx, api.JobRequest{Template: tmpl, Environment: env}, "")
		if err != nil {
			return 0, err
		}
		if j, err = c.Wait(ctx, j.ID); err != nil {
			return 0, err
		}
		if j.State != api.StateSucceeded {
			return 0, fmt.Errorf("%s job %s: %s (%s)", tmpl, j.ID, j.State, j.Error)
		}
		if j.FinishedAt == nil || j.StartedAt == nil {
			return 0, fmt.Errorf("%s job %s has no start or end time", tmpl, j.ID)
		}
		return j.FinishedAt.Sub(*j.StartedAt), nil
	}
	header()
	fmt.Printf("### A trivial job (`true`) on the host and in a container, one at a time\n\n")
	fmt.Printf("From the agent's start on the node to the job's end, as the gateway records them (`started_at` to `finished_at`: the engine's queueing left out); the image is warm (one unmeasured container job first); host and container jobs alternate.\n\n")
	fmt.Printf("| engine | | jobs | p50 | p90 |\n|---|---|---|---|---|\n")
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	for _, e := range engines {
		if _, err := one("container-true", e+"-podman"); err != nil {
			return err
		}
		var host, ctr []time.Duration
		for i := 0; i < n; i++ {
			h, err := one("host-true", e)
			if err != nil {
				return err
			}
			k, err := one("container-true", e+"-podman")
			if err != nil {
				return err
			}
			host, ctr = append(host, h), append(ctr, k)
		}
		h50, h90, c50, c90 := percentile(host, 0.5), percentile(host, 0.9), percentile(ctr, 0.5), percentile(ctr, 0.9)
		fmt.Printf("| %s | host | %d | %v | %v |\n", e, n, ms(h50), ms(h90))
		fmt.Printf("| %s | podman | %d | %v | %v |\n", e, n, ms(c50), ms(c90))
		fmt.Printf("| %s | added by the container | | **%v** | %v |\n", e, ms(c50-h50), ms(c90-h90))
	}
	fmt.Println()
	return nil
}
