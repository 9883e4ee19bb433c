package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// spreadTemplate starts one process per task on every node of its job
// through the launcher: each sleeps, writing its host and its sleep's
// process id to tasks.txt (in the job's directory, which every node
// sees), works, and writes the CPU time it took to cpu.txt.
const spreadTemplate = `
name: spread
version: 1
description: one process per task on every node
command:
  - sh
  - -c
  - |
    set -eu
    echo "nodes=$HPCGATE_NODES list=$HPCGATE_NODELIST tasks=$HPCGATE_NTASKS cores=$HPCGATE_CORES_PER_NODE"
    cp "$HPCGATE_HOSTFILE" hostfile.txt
    # each task: a sleep (its host and process id in tasks.txt), some
    # work, and the CPU time it took by the shell's own count (times,
    # without a subshell)
    $HPCGATE_LAUNCH sh -c 'sleep "$0" & echo "$(hostname) $!" >> tasks.txt; wait $!
      i=0; while [ "$i" -lt "$1" ]; do i=$((i + 1)); done
      times > "cpu.$$"; echo "$(hostname) $(head -n 1 "cpu.$$")" >> cpu.txt; rm "cpu.$$"' \
      "$HPCGATE_PARAM_SLEEP" "$HPCGATE_PARAM_WORK"
    cut -d' ' -f1 tasks.txt | sort -u > hosts.txt
parameters:
  type: object
  additionalProperties: false
  properties:
    sleep: {type: integer, default: 0}
    work: {type: integer, default: 0}
outputs: [hosts.txt, tasks.txt, hostfile.txt, cpu.txt]
environments: [slurm-multi, sge-multi]
resources:
  max: {walltime_s: 3600}
`

// multiNodeCases are the clusters of several nodes the test command sets
// up (scripts/setup-slurm-multi.sh, scripts/setup-sge-multi.sh).
var multiNodeCases = []struct {
	env, envVar, script string
	hosts               []string
}{
	{"slurm-multi", "HPCGATE_TEST_SLURM_MULTI", "setup-slurm-multi.sh", []string{"n1", "n2", "n3"}},
	{"sge-multi", "HPCGATE_TEST_SGE_MULTI", "setup-sge-multi.sh", []string{"g1", "g2"}},
}

// TestMultiNode runs jobs across the nodes of real clusters whose nodes
// reach the gateway over a network, not loopback: every node runs the
// job's tasks, an MPI program computes pi across nodes, usage covers every
// node, cancel leaves no process on any node, and a job asking for more
// nodes than the environment has is refused.
func TestMultiNode(t *testing.T) {
	cluster, err := os.ReadFile("../../examples/config/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Environments []struct {
			Name        string `yaml:"name"`
			WorkdirRoot string `yaml:"workdir_root"`
		} `yaml:"environments"`
	}
	if err := yaml.Unmarshal(cluster, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, mc := range multiNodeCases {
		t.Run(mc.env, func(t *testing.T) {
			if os.Getenv(mc.envVar) != "1" {
				t.Skipf("%s not set: run scripts/%s and set %s=1 (scripts/test.sh does both)", mc.envVar, mc.script, mc.envVar)
			}
			root := ""
			for _, e := range cfg.Environments {
				if e.Name == mc.env {
					root = e.WorkdirRoot
				}
			}
			g := newGateway(t, string(cluster)+"\ntemplate_dirs: ["+templatesDir(t, spreadTemplate)+"]\n")
			g.start()
			t.Cleanup(g.stop)
			testMultiNode(t, g, mc.env, root, mc.hosts)
		})
	}
}

func testMultiNode(t *testing.T, g *gw, env, root string, hosts []string) {
	ctx := context.Background()
	c := g.client(g.userToken("mona"))
	n := len(hosts)
	create := func(t *testing.T, tpl, params string, res api.Resources) *api.Job {
		t.Helper()
		j, err := c.CreateJob(ctx, api.JobRequest{Template: tpl, Environment: env, Parameters: json.RawMessage(params), Resources: &res}, "")
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	succeed := func(t *testing.T, id string) *api.Job {
		t.Helper()
		j := waitJob(t, c, id, 3*time.Minute)
		if j.State != api.StateSucceeded {
			logs, _ := io.ReadAll(must(c.Log(ctx, id, "stderr", 0, false)))
			out, _ := io.ReadAll(must(c.Log(ctx, id, "stdout", 0, false)))
			t.Fatalf("job %s ended %s (%s); stdout:\n%s\nstderr:\n%s", id, j.State, j.Error, out, logs)
		}
		return j
	}

	t.Run("EveryNode", func(t *testing.T) {
		// one task on each node, each working for about a CPU second: the
		// engine's accounting counts them all, not only the first node's
		j := succeed(t, create(t, "spread", `{"work": 700000}`, api.Resources{Nodes: n, CoresPerNode: 1}).ID)
		if got := strings.Fields(outputText(t, c, j.ID, "hosts.txt")); !slices.Equal(got, hosts) {
			t.Fatalf("the tasks ran on %q, want %q", got, hosts)
		}
		// the engine chooses which node comes first (Grid Engine's master
		// host may be either): the same nodes, in any order
		var wantLines []string
		for _, h := range hosts {
			wantLines = append(wantLines, h+" slots=1")
		}
		gotLines := strings.Split(strings.TrimSpace(outputText(t, c, j.ID, "hostfile.txt")), "\n")
		slices.Sort(gotLines)
		if !slices.Equal(gotLines, wantLines) {
			t.Errorf("HPCGATE_HOSTFILE holds %q, want %q in any order", gotLines, wantLines)
		}
		out, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stdout", 0, false)))
		var nodes, ntasks, cores int
		var list string
		if _, err := fmt.Sscanf(string(out), "nodes=%d list=%s tasks=%d cores=%d", &nodes, &list, &ntasks, &cores); err != nil {
			t.Fatalf("stdout %q: %v", out, err)
		}
		listed := strings.Split(list, ",")
		slices.Sort(listed)
		if nodes != n || ntasks != n || cores != 1 || !slices.Equal(listed, hosts) {
			t.Errorf("the job was told nodes=%d list=%s tasks=%d cores=%d, want %d nodes %q, %d tasks, 1 core", nodes, list, ntasks, cores, n, hosts, n)
		}
		// The tasks are not the agent's children (or one is, under
		// mpirun): only the engine's accounting of every node sees what
		// they all took.
		var tasks float64
		for _, line := range strings.Split(strings.TrimSpace(outputText(t, c, j.ID, "cpu.txt")), "\n") {
			var host string
			var um, sm int
			var us, ss float64
			if _, err := fmt.Sscanf(line, "%s %dm%fs %dm%fs", &host, &um, &us, &sm, &ss); err != nil {
				t.Fatalf("cpu.txt: %q: %v", line, err)
			}
			tasks += float64(um*60+sm*60) + us + ss
		}
		deadline := time.Now().Add(time.Minute)
		for {
			j = must(c.Job(ctx, j.ID))
			if j.Usage != nil && j.Usage.CPUSeconds >= 0.8*tasks {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("usage %+v: want the %.2f CPU seconds of the tasks on %d nodes", j.Usage, tasks, n)
			}
			time.Sleep(time.Second)
		}
	})

	t.Run("MPI", func(t *testing.T) {
		j := succeed(t, create(t, "mpi-pi", `{"intervals": 20000000}`, api.Resources{Nodes: 2, CoresPerNode: 2}).ID)
		var res struct {
			Pi    float64  `json:"pi"`
			Tasks int      `json:"tasks"`
			Hosts []string `json:"hosts"`
		}
		if err := json.Unmarshal([]byte(outputText(t, c, j.ID, "results.json")), &res); err != nil {
			t.Fatal(err)
		}
		if math.Abs(res.Pi-math.Pi) > 1e-9 || res.Tasks != 4 || len(res.Hosts) != 2 {
			t.Fatalf("results %+v: want pi, 4 tasks on 2 hosts", res)
		}
		for _, h := range res.Hosts {
			if !slices.Contains(hosts, h) {
				t.Fatalf("a task ran on %q, not a node of %s (%q)", h, env, hosts)
			}
		}
	})

	// started runs spread's tasks for a long sleep on every node and
	// returns the job and its tasks' process ids (the nodes share this
	// machine's process ids).
	started := func(t *testing.T, res api.Resources) (*api.Job, []int) {
		t.Helper()
		res.Nodes, res.CoresPerNode = n, 1
		j := create(t, "spread", `{"sleep": 3141}`, res)
		t.Cleanup(func() { // a failed test leaves no job holding the nodes
			c.Resume(ctx, j.ID)
			c.Cancel(ctx, j.ID)
		})
		tasks := filepath.Join(root, j.ID, "tasks.txt")
		var pids []int
		deadline := time.Now().Add(2 * time.Minute)
		for len(pids) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s lists %d tasks, want %d", tasks, len(pids), n)
			}
			time.Sleep(200 * time.Millisecond)
			b, _ := os.ReadFile(tasks)
			pids = pids[:0]
			seen := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				host, pid, ok := strings.Cut(line, " ")
				if p, err := strconv.Atoi(pid); ok && err == nil {
					pids, seen[host] = append(pids, p), true
				}
			}
			if len(pids) == n && len(seen) != n {
				t.Fatalf("the tasks are on %d hosts, want %d: %s", len(seen), n, b)
			}
		}
		return j, pids
	}
	// sleeping is the state of each task's sleep ('S' sleeping, 'T'
	// stopped), "" for one that is gone (by its command line, not its id
	// alone).
	sleeping := func(pid int) string {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Equal(cmdline, []byte("sleep\x003141\x00")) {
			return ""
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if _, after, ok := bytes.Cut(stat, []byte(") ")); ok && len(after) > 0 {
			return string(after[:1])
		}
		return ""
	}
	// waitTasks waits until every task is in state want ("" gone).
	waitTasks := func(t *testing.T, pids []int, want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for _, pid := range pids {
			for sleeping(pid) != want {
				if time.Now().After(deadline) {
					t.Fatalf("task %d is %q, want %q", pid, sleeping(pid), want)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
	}

	t.Run("CancelReachesEveryNode", func(t *testing.T) {
		j, pids := started(t, api.Resources{})
		if _, err := c.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		if j := waitJob(t, c, j.ID, 2*time.Minute); j.State != api.StateCanceled {
			t.Fatalf("job %s is %s, want canceled", j.ID, j.State)
		}
		waitTasks(t, pids, "")
	})

	t.Run("WalltimeReachesEveryNode", func(t *testing.T) {
		j, pids := started(t, api.Resources{WalltimeS: 5})
		if j := waitJob(t, c, j.ID, 2*time.Minute); j.State != api.StateFailed || !strings.Contains(j.Error, "walltime") {
			t.Fatalf("job %s is %s (%s), want failed for its walltime", j.ID, j.State, j.Error)
		}
		waitTasks(t, pids, "")
	})

	t.Run("SuspendReachesEveryNode", func(t *testing.T) {
		j, pids := started(t, api.Resources{})
		waitState(t, c, j.ID, api.StateRunning, time.Minute)
		if _, err := c.Suspend(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		waitTasks(t, pids, "T")
		if _, err := c.Resume(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		waitTasks(t, pids, "S")
		if _, err := c.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		waitJob(t, c, j.ID, 2*time.Minute)
		waitTasks(t, pids, "")
	})

	t.Run("TooManyNodes", func(t *testing.T) {
		_, err := c.CreateJob(ctx, api.JobRequest{Template: "spread", Environment: env, Resources: &api.Resources{Nodes: n + 1}}, "")
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 422 || len(ce.Errors) != 1 || ce.Errors[0].Field != "resources.nodes" ||
			!strings.Contains(ce.Errors[0].Message, fmt.Sprintf("allows (%d)", n)) {
			t.Fatalf("%d nodes: %v, want 422 on resources.nodes naming the limit %d", n+1, err, n)
		}
	})

	t.Run("FreeCoresPerNode", func(t *testing.T) {
		e, err := c.Environment(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		per, ok := e.Live["free_cores_per_node"].(map[string]any)
		if !ok {
			t.Fatalf("live %v: no free_cores_per_node", e.Live)
		}
		for _, h := range hosts {
			if _, ok := per[h].(float64); !ok {
				t.Errorf("free cores per node %v: none for %s", per, h)
			}
		}
	})
}
