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
// the example image, both on the local executor.
const containerBenchConfig = `quotas: {default: {jobs: 0, cores: 0, bytes: 0}}
rate_limit: {requests_per_second: 0, job_requests_per_second: 0}
poll_interval: 200ms
no_builtin_templates: true
template_dirs: [%s]
environments:
  - name: local
    scheduler: local
  - name: local-podman
    scheduler: local
    container_runtime: podman
    env: {CONTAINERS_CONF: "${CONTAINERS_CONF}"}
`

const (
	hostTrue      = "name: host-true\nversion: 1\ncommand: [\"true\"]\nenvironments: [local]\n"
	containerTrue = "name: container-true\nversion: 1\nimage: localhost/hpcgate-examples:latest\ncommand: [\"true\"]\nenvironments: [local-podman]\n"
)

// containers measures what running in a container adds to a job: n
// trivial jobs one after another on the host, then the same in the
// example image (warm: one unmeasured job first), from creation to
// succeeded as the client sees it. It needs scripts/setup-podman.sh and
// CONTAINERS_CONF.
func containers(bin string, n int) error {
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
	s, err := startServer(bin, dir, "--config", cfg)
	if err != nil {
		return err
	}
	defer s.stop()
	c, err := s.client()
	if err != nil {
		return err
	}
	ctx := context.Background()
	one := func(tmpl string) (time.Duration, error) {
		start := time.Now()
		j, err := c.CreateJob(ctx, api.JobRequest{Template: tmpl}, "")
		if err != nil {
			return 0, err
		}
		if j, err = c.Wait(ctx, j.ID); err != nil {
			return 0, err
		}
		if j.State != api.StateSucceeded {
			return 0, fmt.Errorf("%s job %s: %s (%s)", tmpl, j.ID, j.State, j.Error)
		}
		return time.Since(start), nil
	}
	header()
	fmt.Printf("### A trivial job (`true`) on the host and in a container, local executor, one at a time\n\n")
	fmt.Printf("Creation to `succeeded` as the client sees it; the image is warm (one unmeasured container job first); host and container jobs alternate.\n\n")
	if _, err := one("container-true"); err != nil {
		return err
	}
	var host, ctr []time.Duration
	for i := 0; i < n; i++ {
		h, err := one("host-true")
		if err != nil {
			return err
		}
		k, err := one("container-true")
		if err != nil {
			return err
		}
		host, ctr = append(host, h), append(ctr, k)
	}
	fmt.Printf("| | jobs | p50 | p90 |\n|---|---|---|---|\n")
	fmt.Printf("| host | %d | %v | %v |\n", n, percentile(host, 0.5).Round(time.Millisecond), percentile(host, 0.9).Round(time.Millisecond))
	fmt.Printf("| podman | %d | %v | %v |\n", n, percentile(ctr, 0.5).Round(time.Millisecond), percentile(ctr, 0.9).Round(time.Millisecond))
	fmt.Printf("| added by the container | | **%v** | %v |\n\n",
		(percentile(ctr, 0.5) - percentile(host, 0.5)).Round(time.Millisecond), (percentile(ctr, 0.9) - percentile(host, 0.9)).Round(time.Millisecond))
	return nil
}
