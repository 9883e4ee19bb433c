package main

// The job lifecycle on every queueing engine: the local executor always,
// Slurm with HPCGATE_TEST_SLURM=1 and Grid Engine with HPCGATE_TEST_SGE=1
// (scripts/test.sh starts both and sets them). The gateway runs the
// project's own examples/config/cluster.yaml.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// engineTemplate sleeps in steps, printing a line each, and records the
// cores its engine granted.
const engineTemplate = `
name: steps
version: 1
command: [sh, -c, 'echo "${SLURM_CPUS_ON_NODE:-${NSLOTS:-none}}" > cores.txt; echo started; i=0; while [ $i -lt "$HPCGATE_PARAM_LINES" ]; do i=$((i+1)); echo "line $i"; sleep "$HPCGATE_PARAM_PAUSE"; done']
parameters:
  type: object
  additionalProperties: false
  properties:
    lines: {type: integer, minimum: 0, default: 3}
    pause: {type: number, minimum: 0, default: 0.2}
outputs: [cores.txt]
environments: [local, slurm, sge]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
  max: {nodes: 1, cores_per_node: 2, walltime_s: 3600}
`

// containerStepsTemplate prints a line a second in the example image,
// ignoring SIGTERM (only the runtime's stop ends it).
const containerStepsTemplate = `
name: ctr-steps
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'trap "" TERM; echo started; while :; do sleep 1; echo tick; done']
environments: [local-podman, slurm-podman, sge-podman]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
---
name: ctr-exit3
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'echo out; exit 3']
environments: [local-podman, slurm-podman, sge-podman]
---
name: ctr-noimage
version: 1
image: localhost/hpcgate-no-such-image:1
command: ["true"]
environments: [local-podman, slurm-podman, sge-podman]
`

type engineCase struct {
	env, kind string
	envVar    string // "" for always
	config    string // the environment in a gateway's config
}

var engineCases = []engineCase{
	{"local", "local", "", "{name: local, scheduler: local}"},
	{"slurm", "slurm", "HPCGATE_TEST_SLURM", "{name: slurm, scheduler: slurm, partition: debug}"},
	{"sge", "sge", "HPCGATE_TEST_SGE", "{name: sge, scheduler: sge, queue: all.q}"},
}

// engineEnvs is the config of the environments local, slurm and sge
// (those the test command started), with their names. An engine it did
// not start shows as a skipped subtest of t, saying why.
func engineEnvs(t *testing.T) (string, []string) {
	t.Helper()
	envs := "environments:\n"
	var names []string
	for _, ec := range engineCases {
		if ec.envVar != "" && os.Getenv(ec.envVar) != "1" {
			t.Run(ec.env, func(t *testing.T) {
				t.Skipf("%s not set: run scripts/setup-%s.sh and set %s=1 (scripts/test.sh does both)", ec.envVar, ec.kind, ec.envVar)
			})
			continue
		}
		envs += "  - " + ec.config + "\n"
		names = append(names, ec.env)
	}
	return envs, names
}

// engineKill runs the engine's own cancel command, as an administrator
// would, outside the gateway.
func engineKill(t *testing.T, kind, id string) {
	t.Helper()
	var cmd *exec.Cmd
	switch kind {
	case "slurm":
		cmd = exec.Command("scancel", id)
	case "sge":
		cmd = exec.Command("/usr/lib/gridengine/qdel", id)
		cmd.Env = append(os.Environ(), "SGE_ROOT=/var/lib/gridengine", "SGE_CELL=default")
	default:
		t.Fatalf("no outside cancel command for %s", kind)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
}

// agentPID finds the agent process of a job by its environment.
func agentPID(t *testing.T, jobID string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		des, _ := os.ReadDir("/proc")
		for _, de := range des {
			pid, err := strconv.Atoi(de.Name())
			if err != nil {
				continue
			}
			env, err := os.ReadFile(filepath.Join("/proc", de.Name(), "environ"))
			if err != nil || !bytes.Contains(env, []byte("\x00HPCGATE_JOB_ID="+jobID+"\x00")) && !bytes.HasPrefix(env, []byte("HPCGATE_JOB_ID="+jobID+"\x00")) {
				continue
			}
			cmdline, _ := os.ReadFile(filepath.Join("/proc", de.Name(), "cmdline"))
			if args := strings.Split(string(cmdline), "\x00"); len(args) > 1 && args[1] == "agent" {
				return pid
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no agent process for job %s", jobID)
	return 0
}

func TestEngines(t *testing.T) {
	cluster, err := os.ReadFile("../../examples/config/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, ec := range engineCases {
		t.Run(ec.env, func(t *testing.T) {
			if ec.envVar != "" && os.Getenv(ec.envVar) != "1" {
				t.Skipf("%s not set: run scripts/setup-%s.sh and set %s=1 (scripts/test.sh does both)", ec.envVar, ec.kind, ec.envVar)
			}
			dir := templatesDir(t, append([]string{engineTemplate}, strings.Split(containerStepsTemplate, "\n---\n")...)...)
			g := newGateway(t, string(cluster)+"\ntemplate_dirs: ["+dir+"]\n")
			g.slots = "2"
			g.start()
			t.Cleanup(g.stop)
			testEngine(t, g, ec)
		})
	}
}

func testEngine(t *testing.T, g *gw, ec engineCase) {
	ctx := context.Background()
	c := g.client(g.userToken("lena"))
	create := func(t *testing.T, tpl, params string, res *api.Resources) *api.Job {
		t.Helper()
		j, err := c.CreateJob(ctx, api.JobRequest{Template: tpl, Environment: ec.env, Parameters: json.RawMessage(params), Resources: res}, "")
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	logLen := func(id string) int {
		b, _ := io.ReadAll(must(c.Log(ctx, id, "stdout", 0, false)))
		return len(b)
	}
	done := func(t *testing.T, id, want string) *api.Job {
		t.Helper()
		j := waitJob(t, c, id, 3*time.Minute)
		if j.State != want {
			errLog, _ := io.ReadAll(must(c.Log(ctx, id, "stderr", 0, false)))
			t.Fatalf("job %s ended %s (%s), want %s; stderr:\n%s", id, j.State, j.Error, want, errLog)
		}
		return j
	}
	// blocker fills both cores of the node.
	blocker := func(t *testing.T) *api.Job {
		t.Helper()
		b := create(t, "steps", `{"lines": 600, "pause": 0.5}`, &api.Resources{CoresPerNode: 2})
		waitState(t, c, b.ID, api.StateRunning, 2*time.Minute)
		return b
	}

	t.Run("ExampleTemplates", func(t *testing.T) {
		h := create(t, "hello", `{"name":"`+ec.env+`"}`, nil)
		hj := done(t, h.ID, api.StateSucceeded)
		if hj.Backend == nil || hj.Backend.Scheduler != ec.kind || hj.Backend.ID == "" || hj.Usage == nil {
			t.Fatalf("job %+v: backend or usage missing", hj)
		}
		if got := outputText(t, c, h.ID, "greeting.txt"); got != "Hello, "+ec.env+"\n" {
			t.Fatalf("greeting %q", got)
		}
		if _, err := c.PutFile(ctx, "in/text.txt", strings.NewReader("alpha beta alpha gamma\n"), -1); err != nil {
			t.Fatal(err)
		}
		w, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount", Environment: ec.env, Inputs: map[string]string{"text": "in/text.txt"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		done(t, w.ID, api.StateSucceeded)
		if res, _ := c.Results(ctx, w.ID); !strings.Contains(string(res), `"most_common": "alpha"`) {
			t.Fatalf("wordcount results %s", res)
		}
		f := create(t, "fanout", `{"n": 2}`, nil)
		done(t, f.ID, api.StateSucceeded)
		kids, _ := c.Children(ctx, f.ID)
		if len(kids) != 2 {
			t.Fatalf("fanout made %d children", len(kids))
		}
	})

	// The example wordcount-container through the engine and podman
	// (environments ENGINE-podman of cluster.yaml): input in, outputs
	// out; a running container job canceled through the gateway goes.
	t.Run("Container", func(t *testing.T) {
		needPodman(t)
		penv := ec.env + "-podman"
		if _, err := c.PutFile(ctx, "in/ctext.txt", strings.NewReader("alpha beta alpha gamma\n"), 23); err != nil {
			t.Fatal(err)
		}
		w, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount-container", Environment: penv, Inputs: map[string]string{"text": "in/ctext.txt"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		done(t, w.ID, api.StateSucceeded)
		if res, _ := c.Results(ctx, w.ID); !strings.Contains(string(res), `"most_common": "alpha"`) {
			t.Fatalf("wordcount-container results %s", res)
		}
		// a failing verify adapter, in the image
		if _, err := c.PutFile(ctx, "in/empty.txt", strings.NewReader(""), 0); err != nil {
			t.Fatal(err)
		}
		v, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount-container", Environment: penv, Inputs: map[string]string{"text": "in/empty.txt"}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if vj := done(t, v.ID, api.StateFailed); !strings.Contains(vj.Error, "verify") || !strings.Contains(vj.Error, "input text is empty") {
			t.Fatalf("verify: %q", vj.Error)
		}
		// the command's exit code, apart from the runtime's own failures
		x, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-exit3", Environment: penv}, "")
		if err != nil {
			t.Fatal(err)
		}
		if xj := done(t, x.ID, api.StateFailed); xj.ExitCode == nil || *xj.ExitCode != 3 || !strings.Contains(xj.Error, "exit code 3") {
			t.Fatalf("exit 3: %v, %q", xj.ExitCode, xj.Error)
		}
		m, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-noimage", Environment: penv}, "")
		if err != nil {
			t.Fatal(err)
		}
		if mj := done(t, m.ID, api.StateFailed); !strings.Contains(mj.Error, "container runtime failed") {
			t.Fatalf("missing image: %q", mj.Error)
		}
		// suspend reaches the container's processes, resume continues them
		sj := startedJob(t, c, api.JobRequest{Template: "ctr-steps", Environment: penv})
		if _, err := c.Suspend(ctx, sj.ID); err != nil {
			t.Fatal(err)
		}
		waitStepsStopped(t, sj.ID, true)
		if _, err := c.Resume(ctx, sj.ID); err != nil {
			t.Fatal(err)
		}
		waitStepsStopped(t, sj.ID, false)
		if _, err := c.Cancel(ctx, sj.ID); err != nil {
			t.Fatal(err)
		}
		waitNoContainer(t, sj.ID)
		cancelContainerJob(t, c, api.JobRequest{Template: "ctr-steps", Environment: penv})
		// walltime: the agent stops the container and says so
		w3, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-steps", Environment: penv, Resources: &api.Resources{WalltimeS: 3}}, "")
		if err != nil {
			t.Fatal(err)
		}
		if wj := done(t, w3.ID, api.StateFailed); !strings.Contains(wj.Error, "walltime") {
			t.Fatalf("walltime: %q", wj.Error)
		}
		waitNoContainer(t, w3.ID)
	})

	t.Run("TwoCores", func(t *testing.T) {
		j := create(t, "steps", `{"lines": 0}`, &api.Resources{CoresPerNode: 2})
		done(t, j.ID, api.StateSucceeded)
		want := "2\n"
		if ec.kind == "local" {
			want = "none\n"
		}
		if got := outputText(t, c, j.ID, "cores.txt"); got != want {
			t.Fatalf("cores granted %q, want %q", got, want)
		}
	})

	t.Run("CancelQueuedAndRunning", func(t *testing.T) {
		b := blocker(t)
		q := create(t, "steps", `{"lines": 1}`, nil)
		waitState(t, c, q.ID, api.StateQueued, time.Minute)
		time.Sleep(time.Second)
		if j, _ := c.Job(ctx, q.ID); j.State != api.StateQueued {
			t.Fatalf("job behind a full node is %s, want queued", j.State)
		}
		if _, err := c.Cancel(ctx, q.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Cancel(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{q.ID, b.ID} {
			if j, _ := c.Job(ctx, id); j.State != api.StateCanceled {
				t.Fatalf("job %s is %s after cancel", id, j.State)
			}
		}
		time.Sleep(3 * time.Second)
		n := logLen(b.ID)
		time.Sleep(2 * time.Second)
		if m := logLen(b.ID); m != n {
			t.Fatalf("canceled job still writes: %d → %d bytes", n, m)
		}
		if logLen(q.ID) != 0 {
			t.Fatal("the job canceled while queued ran")
		}
	})

	t.Run("HoldRelease", func(t *testing.T) {
		b := blocker(t)
		q := create(t, "steps", `{"lines": 1}`, nil)
		waitState(t, c, q.ID, api.StateQueued, time.Minute)
		if _, err := c.Hold(ctx, q.ID); err != nil {
			t.Fatal(err)
		}
		c.Cancel(ctx, b.ID)
		time.Sleep(4 * time.Second)
		if j, _ := c.Job(ctx, q.ID); j.State != api.StateHeld {
			t.Fatalf("held job is %s", j.State)
		}
		if _, err := c.Release(ctx, q.ID); err != nil {
			t.Fatal(err)
		}
		done(t, q.ID, api.StateSucceeded)
	})

	t.Run("SuspendResume", func(t *testing.T) {
		j := create(t, "steps", `{"lines": 30, "pause": 0.2}`, nil)
		waitState(t, c, j.ID, api.StateRunning, 2*time.Minute)
		time.Sleep(time.Second)
		if _, err := c.Suspend(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		// the command itself (not only the agent that ships its log)
		waitStepsStopped(t, j.ID, true)
		time.Sleep(time.Second)
		n := logLen(j.ID)
		time.Sleep(2 * time.Second)
		if m := logLen(j.ID); m != n {
			t.Fatalf("suspended job still writes: %d → %d bytes", n, m)
		}
		if cur, _ := c.Job(ctx, j.ID); cur.State != api.StateSuspended {
			t.Fatalf("job is %s, want suspended", cur.State)
		}
		if _, err := c.Resume(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		waitStepsStopped(t, j.ID, false)
		done(t, j.ID, api.StateSucceeded)
		if _, err := c.Suspend(ctx, j.ID); client.StatusOf(err) != 409 {
			t.Fatalf("suspend of an ended job: %v, want 409", err)
		}
	})

	t.Run("WalltimeExceeded", func(t *testing.T) {
		j := create(t, "steps", `{"lines": 1000, "pause": 0.1}`, &api.Resources{WalltimeS: 3})
		fj := done(t, j.ID, api.StateFailed)
		if !strings.Contains(fj.Error, "walltime") {
			t.Fatalf("error %q does not name the walltime", fj.Error)
		}
	})

	// An administrator's scancel or qdel (the local executor has no
	// outside cancel command).
	killedInEngine := func(t *testing.T) {
		j := create(t, "steps", `{"lines": 600, "pause": 0.5}`, nil)
		rj := waitState(t, c, j.ID, api.StateRunning, 2*time.Minute)
		engineKill(t, ec.kind, rj.Backend.ID)
		if ec.kind == "sge" {
			// Grid Engine warns the agent of a kill (qsub -notify) but
			// not why: the agent stops the steps and reports the job
			// failed, naming qdel among the causes.
			fj := done(t, j.ID, api.StateFailed)
			if !strings.Contains(fj.Error, "qdel") {
				t.Fatalf("error %q does not name the kill", fj.Error)
			}
			return
		}
		cj := done(t, j.ID, api.StateCanceled)
		if !strings.Contains(cj.Reason, "engine") {
			t.Fatalf("reason %q does not say the engine canceled it", cj.Reason)
		}
	}
	if ec.kind != "local" {
		t.Run("KilledInTheEngine", killedInEngine)
	}

	t.Run("AgentNeverReports", func(t *testing.T) {
		j := create(t, "steps", `{"lines": 600, "pause": 0.5}`, nil)
		waitState(t, c, j.ID, api.StateRunning, 2*time.Minute)
		syscall.Kill(agentPID(t, j.ID), syscall.SIGKILL)
		fj := done(t, j.ID, api.StateFailed)
		if !strings.Contains(fj.Error, "without its agent reporting") {
			t.Fatalf("error %q", fj.Error)
		}
	})

	t.Run("GatewayRestart", func(t *testing.T) {
		run := create(t, "steps", `{"lines": 10, "pause": 0.4}`, &api.Resources{CoresPerNode: 2})
		waitState(t, c, run.ID, api.StateRunning, 2*time.Minute)
		q := create(t, "steps", `{"lines": 2}`, nil)
		waitState(t, c, q.ID, api.StateQueued, time.Minute)
		g.kill()
		time.Sleep(2 * time.Second)
		g.start()
		done(t, run.ID, api.StateSucceeded)
		done(t, q.ID, api.StateSucceeded)
		b, _ := io.ReadAll(must(c.Log(ctx, run.ID, "stdout", 0, false)))
		if !strings.HasSuffix(string(b), "line 10\n") {
			t.Fatalf("log after restart ends %q", b[max(0, len(b)-40):])
		}
	})
}
