package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hpcgate/hpcgate/client"
)

// tesConfig offers tasks an environment with an image allow-list; the
// tasks are created held, so that none runs and podman is not needed.
const tesConfig = benchConfig + `tes: {environment: pods}
environments:
  - {name: local, scheduler: local}
  - {name: pods, scheduler: local, container_runtime: podman, images: [localhost/]}
`

// tesTask is a task as a workflow engine sends one: an executor, an
// input by content, an output, tags; held (backend parameter hold).
var tesTask = []byte(`{"name":"bench","tags":{"workflow":"w1"},
 "inputs":[{"path":"/data/in.txt","content":"abc"}],
 "outputs":[{"path":"/data/out.txt","url":"s3://hpcgate/bench/out.txt"}],
 "resources":{"cpu_cores":1,"backend_parameters":{"hold":"true"}},
 "executors":[{"image":"localhost/tools:1","command":["sh","-c","wc -c /data/in.txt > /data/out.txt"]}]}`)

// tesBench measures TES task creation with concurrent clients over TLS
// against native job creation on the same server, in turn, rounds times;
// each round on a new server.
func tesBench(bin string, jobs, clients, rounds int) error {
	dir, err := os.MkdirTemp("", "hpcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	header()
	fmt.Printf("### TES tasks created (held) against native jobs (held), %d clients over TLS, SQLite durable\n\n", clients)
	fmt.Printf("Each round starts a server on an empty data directory and measures both in turn on it.\n\n")
	fmt.Printf("| round | API | created | per s | p50 | p99 |\n|---|---|---|---|---|---|\n")
	var native, task []float64
	for r := 1; r <= rounds; r++ {
		rd := filepath.Join(dir, strconv.Itoa(r))
		if err := os.MkdirAll(rd, 0o700); err != nil {
			return err
		}
		cfg := filepath.Join(rd, "tes.yaml")
		if err := os.WriteFile(cfg, []byte(tesConfig), 0o600); err != nil {
			return err
		}
		s, err := startServer(bin, rd, "--config", cfg)
		if err != nil {
			return err
		}
		rate, p50, p99, err := accept(s, jobs, clients)
		if err != nil {
			s.stop()
			return err
		}
		native = append(native, rate)
		fmt.Printf("| %d | native POST /v1/jobs | %d | **%.0f** | %v | %v |\n", r, jobs, rate, p50, p99)
		rate, p50, p99, err = createTasks(s, jobs, clients)
		s.stop()
		if err != nil {
			return err
		}
		task = append(task, rate)
		fmt.Printf("| %d | TES POST /ga4gh/tes/v1/tasks | %d | **%.0f** | %v | %v |\n", r, jobs, rate, p50, p99)
	}
	fmt.Printf("\n| API | median per s | of native |\n|---|---|---|\n| native | **%.0f** | 1.00 |\n| TES | **%.0f** | %.2f |\n\n",
		median(native), median(task), median(task)/median(native))
	return nil
}

// createTasks creates n held tasks from concurrent clients and returns
// the rate and latency percentiles.
func createTasks(s *server, n, clients int) (rate float64, p50, p99 time.Duration, err error) {
	return concurrently(s, n, clients, "tasks", createTask)
}

func createTask(ctx context.Context, c *client.Client) error {
	resp, err := c.Do(ctx, http.MethodPost, "/ga4gh/tes/v1/tasks", nil, bytes.NewReader(tesTask), http.Header{"Content-Type": {"application/json"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.ID == "" {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("create task: %v %s", err, b)
	}
	return nil
}
