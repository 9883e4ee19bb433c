package main

import (
	"context"
	"encoding/json"
	"fmt"
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
	"github.com/hpcgate/hpcgate/internal/container"
	"github.com/hpcgate/hpcgate/internal/proctree"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/schedtest"
)

// exampleImage is what scripts/build-example-image.sh builds.
const exampleImage = "localhost/hpcgate-examples:latest"

// needPodman returns the containers.conf the test command made
// (scripts/setup-podman.sh), or skips t when podman or the example image
// is missing; with HPCGATE_TEST_PODMAN=1 (set by scripts/test.sh) it
// fails instead, so a broken set-up cannot pass in CI.
func needPodman(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("HPCGATE_TEST_PODMAN") == "1" {
			t.Fatalf(format+" (HPCGATE_TEST_PODMAN=1: scripts/test.sh should have set it up)", args...)
		}
		t.Skipf(format+"; scripts/setup-podman.sh sets it up", args...)
	}
	if _, err := exec.LookPath("podman"); err != nil {
		missing("podman is not installed")
	}
	conf := os.Getenv("CONTAINERS_CONF")
	if conf == "" {
		missing("CONTAINERS_CONF is not set (podman here needs runc and lower ulimits)")
	}
	if err := exec.Command("podman", "image", "exists", exampleImage).Run(); err != nil {
		missing("the image %s is missing", exampleImage)
	}
	return conf
}

const containerTemplates = `
name: ctr-exit
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'echo "out-$HPCGATE_PARAM_NAME"; echo err-line >&2; pwd > where.txt; ls /etc/hpcgate* /data 2>&1 | head -1 >> where.txt; test -e input.txt && echo input-ro >> where.txt && ! touch input.txt; exit 3']
parameters:
  type: object
  additionalProperties: false
  properties:
    name: {type: string, default: x}
inputs:
  - {name: text, path: input.txt}
outputs: [where.txt]
environments: [local-podman]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
---
name: ctr-sleep
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'trap "" TERM; echo started; while :; do sleep 1; done']
environments: [local-podman]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
---
name: ctr-missing
version: 1
image: localhost/hpcgate-no-such-image:1
command: ["true"]
environments: [local-podman]
---
name: ctr-parent
version: 1
image: localhost/hpcgate-examples:latest
container: {gateway: true}
command: [sh, -c, '"$HPCGATE_BIN" submit ctr-kid --param tag=from-container > child.txt && cat child.txt && ! wget -q -T 2 -O- "$HPCGATE_PARAM_PROBE_URL" 2>/dev/null']
environments: [local-podman]
outputs: [child.txt]
parameters:
  type: object
  properties:
    probe_url: {type: string}
---
name: ctr-kid
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'echo "kid-$HPCGATE_PARAM_TAG"']
environments: [local-podman]
parameters:
  type: object
  properties:
    tag: {type: string}
---
name: ctr-swap
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'cat data/in.txt']
inputs:
  - {name: text, path: data/in.txt}
adapters:
  prepare: [sh, -c, 'mv data old && mkdir data && ln -s /etc/shadow data/in.txt']
environments: [local-podman]
---
name: ctr-count
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'while :; do echo x >> count.txt; sleep 0.1; done']
environments: [local-podman]
---
name: ctr-archived
version: 1
image: localhost/hpcgate-archived:1
image_archive: archived.tar
command: [sh, -c, 'echo from-archive']
environments: [local-podman]
---
name: ctr-elsewhere
version: 1
image: docker.io/library/alpine:3
command: ["true"]
environments: [local-podman, local-any]
`

// containerGateway starts a gateway with two podman environments:
// local-podman (images from localhost/ only) and local-any.
func containerGateway(t *testing.T) *gw {
	g, _ := containerGatewayWork(t)
	return g
}

// containerGatewayWork is containerGateway, with the root of its jobs'
// directories.
func containerGatewayWork(t *testing.T) (*gw, string) {
	conf := needPodman(t)
	d := templatesDir(t, strings.Split(containerTemplates, "\n---\n")...)
	work := t.TempDir()
	return startGateway(t, `template_dirs: [`+d+`]
work_root: `+work+`
poll_interval: 500ms
environments:
  - name: local-podman
    scheduler: local
    container_runtime: podman
    images: [localhost/]
    env: {CONTAINERS_CONF: `+conf+`}
    max: {nodes: 1, cores_per_node: 2, walltime_s: 3600}
  - name: local-any
    scheduler: local
    container_runtime: podman
    env: {CONTAINERS_CONF: `+conf+`}
`), work
}

// The example wordcount-container runs in its image through podman:
// input in (read-only), outputs out, live logs, the verify adapter in the
// same image failing a job with an empty input.
func TestContainerWordcount(t *testing.T) {
	g := containerGateway(t)
	c := g.client(g.userToken("ada"))
	ctx := context.Background()
	story := "The cat sat on the mat. The cat ran.\nA dog, a cat!\n"
	if _, err := c.PutFile(ctx, "story.txt", strings.NewReader(story), int64(len(story))); err != nil {
		t.Fatal(err)
	}
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount-container", Inputs: map[string]string{"text": "story.txt"}, Parameters: json.RawMessage(`{"min_length": 3}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j.Environment != "local-podman" {
		t.Fatalf("environment %q", j.Environment)
	}
	j = waitJob(t, c, j.ID, 120*time.Second)
	if j.State != api.StateSucceeded {
		t.Fatalf("job %s: %s", j.State, j.Error)
	}
	res, err := c.Results(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var summary struct {
		Total      int    `json:"total_words"`
		MostCommon string `json:"most_common"`
	}
	if json.Unmarshal(res, &summary); summary.Total != 10 || summary.MostCommon != "cat" {
		t.Fatalf("results %s", res)
	}
	if out, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stdout", 0, false))); !strings.Contains(string(out), "10 words, 6 distinct") {
		t.Fatalf("stdout %q", out)
	}
	if _, err := c.PutFile(ctx, "empty.txt", strings.NewReader(""), 0); err != nil {
		t.Fatal(err)
	}
	bad, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount-container", Inputs: map[string]string{"text": "empty.txt"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	bj := waitJob(t, c, bad.ID, 120*time.Second)
	if bj.State != api.StateFailed || !strings.Contains(bj.Error, "verify") || !strings.Contains(bj.Error, "input text is empty") {
		t.Fatalf("empty input: %s, %q", bj.State, bj.Error)
	}
}

// A container job's exit code, logs and outputs come back; it sees its
// directory at /work, its input read-only, nothing of the node's; cancel
// and walltime stop the container itself; a missing image fails the job
// with the runtime named, apart from the command's own exit; an image the
// environment does not allow is refused at submission.
func TestContainerLifecycle(t *testing.T) {
	g := containerGateway(t)
	c := g.client(g.userToken("ada"))
	ctx := context.Background()
	if _, err := c.PutFile(ctx, "in.txt", strings.NewReader("data\n"), 5); err != nil {
		t.Fatal(err)
	}
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-exit", Inputs: map[string]string{"text": "in.txt"}, Parameters: json.RawMessage(`{"name": "y"}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, c, j.ID, 120*time.Second)
	if j.State != api.StateFailed || j.ExitCode == nil || *j.ExitCode != 3 || !strings.Contains(j.Error, "the command failed with exit code 3") {
		t.Fatalf("job %s, exit %v, error %q", j.State, j.ExitCode, j.Error)
	}
	if out, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stdout", 0, false))); string(out) != "out-y\n" {
		t.Fatalf("stdout %q", out)
	}
	if errs, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stderr", 0, false))); !strings.Contains(string(errs), "err-line") {
		t.Fatalf("stderr %q", errs)
	}
	rc, _, err := c.Output(ctx, j.ID, "where.txt")
	if err != nil {
		t.Fatal(err)
	}
	where, _ := io.ReadAll(rc)
	rc.Close()
	if lines := strings.Split(strings.TrimSpace(string(where)), "\n"); len(lines) != 3 || lines[0] != "/work" || !strings.Contains(lines[1], "No such file") || lines[2] != "input-ro" {
		t.Fatalf("where.txt %q: want /work, nothing of the node, a read-only input", where)
	}

	// a step that puts a link where an input was: the next step's
	// runtime would mount what the link names; the agent refuses
	sw, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-swap", Inputs: map[string]string{"text": "in.txt"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	sw = waitJob(t, c, sw.ID, 120*time.Second)
	if out, _ := io.ReadAll(must(c.Log(ctx, sw.ID, "stdout", 0, false))); sw.State != api.StateFailed || !strings.Contains(sw.Error, "symbolic link") || len(out) > 0 {
		t.Fatalf("input swapped for a link: %s, %q, stdout %q", sw.State, sw.Error, out)
	}

	// cancel while running: the container goes (its command ignores SIGTERM)
	cancelContainerJob(t, c, api.JobRequest{Template: "ctr-sleep"})

	// walltime: the agent stops the container and says so
	w, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-sleep", Resources: &api.Resources{WalltimeS: 3}}, "")
	if err != nil {
		t.Fatal(err)
	}
	w = waitJob(t, c, w.ID, 120*time.Second)
	if w.State != api.StateFailed || !strings.Contains(w.Error, "walltime") {
		t.Fatalf("walltime: %s, %q", w.State, w.Error)
	}
	waitNoContainer(t, w.ID)

	// a missing image: the runtime failed, not the command
	m, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-missing"}, "")
	if err != nil {
		t.Fatal(err)
	}
	m = waitJob(t, c, m.ID, 120*time.Second)
	if m.State != api.StateFailed || !strings.Contains(m.Error, "container runtime failed") || strings.Contains(m.Error, "exit code") {
		t.Fatalf("missing image: %s, %q", m.State, m.Error)
	}

	// an image this environment does not allow: 422 naming the environment
	_, err = c.CreateJob(ctx, api.JobRequest{Template: "ctr-elsewhere", Environment: "local-podman"}, "")
	var ce *client.Error
	if !errorsAs(err, &ce) || ce.Status != 422 || !strings.Contains(err.Error(), "limited to localhost/") {
		t.Fatalf("image not allowed: %v", err)
	}
	tm, err := c.Template(ctx, "ctr-elsewhere", 0)
	if err != nil || len(tm.Environments) != 1 || tm.Environments[0] != "local-any" {
		t.Fatalf("template %+v, %v: want it to run only in local-any", tm, err)
	}
}

// cancelContainerJob starts a job whose container prints "started" and
// ignores SIGTERM, cancels it once it has started, and waits for its
// container to go.
func cancelContainerJob(t *testing.T, c *client.Client, req api.JobRequest) {
	t.Helper()
	cancelContainerJobAs(t, c, req, nil)
}

// cancelContainerJobAs is cancelContainerJob for a job whose podman runs
// rootless as account.
func cancelContainerJobAs(t *testing.T, c *client.Client, req api.JobRequest, account *sched.Account) {
	t.Helper()
	s := startedJob(t, c, req)
	if _, err := c.Cancel(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
	waitNoContainerAs(t, s.ID, account)
}

// startedJob creates a job of req and waits until it runs and its log
// says "started".
func startedJob(t *testing.T, c *client.Client, req api.JobRequest) *api.Job {
	t.Helper()
	j, err := c.CreateJob(context.Background(), req, "")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, c, j.ID, api.StateRunning, 2*time.Minute)
	waitLog(t, c, j.ID, "started")
	return j
}

func waitLog(t *testing.T, c *client.Client, id, want string) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(200 * time.Millisecond) {
		b, _ := io.ReadAll(must(c.Log(context.Background(), id, "stdout", 0, false)))
		if strings.Contains(string(b), want) {
			return
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("job %s never logged %q (log %q)", id, want, b)
		}
	}
}

// jobProcesses lists the processes whose environment names job id (the
// agent, the runtime, the container's), as far as this process may read
// them (all, as root).
func jobProcesses(id string) []string {
	var out []string
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			if kv == "HPCGATE_JOB_ID="+id {
				cmd, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
				out = append(out, d.Name()+":"+strings.ReplaceAll(string(cmd), "\x00", " "))
				break
			}
		}
	}
	return out
}

// accountContainerSteps runs, in environment env whose jobs run rootless
// as account: an input in and outputs out with the live log, a failing
// verify adapter, the command's exit code, and the walltime.
func accountContainerSteps(t *testing.T, c *client.Client, env string, account *sched.Account) {
	t.Helper()
	ctx := context.Background()
	end := func(req api.JobRequest) *api.Job {
		t.Helper()
		j, err := c.CreateJob(ctx, req, "")
		if err != nil {
			t.Fatal(err)
		}
		return waitJob(t, c, j.ID, 3*time.Minute)
	}
	text := "gamma alpha beta alpha\n"
	if _, err := c.PutFile(ctx, "acct/text.txt", strings.NewReader(text), int64(len(text))); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutFile(ctx, "acct/empty.txt", strings.NewReader(""), 0); err != nil {
		t.Fatal(err)
	}
	w := end(api.JobRequest{Template: "wordcount-container", Environment: env, Inputs: map[string]string{"text": "acct/text.txt"}})
	if res, _ := c.Results(ctx, w.ID); w.State != api.StateSucceeded || !strings.Contains(string(res), `"most_common": "alpha"`) {
		t.Fatalf("wordcount-container as %s: %s (%s), results %s", account.Name, w.State, w.Error, res)
	}
	if out, _ := io.ReadAll(must(c.Log(ctx, w.ID, "stdout", 0, false))); !strings.Contains(string(out), "4 words, 3 distinct") {
		t.Fatalf("wordcount-container as %s: stdout %q", account.Name, out)
	}
	if v := end(api.JobRequest{Template: "wordcount-container", Environment: env, Inputs: map[string]string{"text": "acct/empty.txt"}}); v.State != api.StateFailed || !strings.Contains(v.Error, "input text is empty") {
		t.Fatalf("verify as %s: %s, %q", account.Name, v.State, v.Error)
	}
	if x := end(api.JobRequest{Template: "ctr-exit3", Environment: env}); x.State != api.StateFailed || x.ExitCode == nil || *x.ExitCode != 3 {
		t.Fatalf("exit 3 as %s: %s, %v, %q", account.Name, x.State, x.ExitCode, x.Error)
	}
	wt := end(api.JobRequest{Template: "ctr-steps", Environment: env, Resources: &api.Resources{WalltimeS: 3}})
	if wt.State != api.StateFailed || !strings.Contains(wt.Error, "walltime") {
		t.Fatalf("walltime as %s: %s, %q", account.Name, wt.State, wt.Error)
	}
	waitNoContainerAs(t, wt.ID, account)
	if m := end(api.JobRequest{Template: "ctr-noimage", Environment: env}); m.State != api.StateFailed || !strings.Contains(m.Error, "container runtime failed") {
		t.Fatalf("a missing image as %s: %s, %q", account.Name, m.State, m.Error)
	}
}

// breakRootlessPodman leaves account's podman as a reboot leaves it when
// its runtime directory is on disk (as the agent's own is, without a
// login session's /run/user/UID): records of a running container whose
// processes are gone. Without the agent's care podman then fails on every
// call, "invalid internal status" (a fresh CI machine from a snapshot).
func breakRootlessPodman(t *testing.T, account *sched.Account, store string) {
	t.Helper()
	run := filepath.Join("/tmp", "hpcgate-run-"+strconv.Itoa(account.UID))
	if _, err := os.Stat(filepath.Join("/run/user", strconv.Itoa(account.UID))); err == nil {
		return // the agent uses the login session's, which a reboot empties
	}
	storage := filepath.Join(filepath.Dir(store), "storage-"+account.Name+".conf")
	text := "[storage]\ndriver = \"overlay\"\n[storage.options]\nadditionalimagestores = [\"" + store + "\"]\n"
	if err := os.WriteFile(storage, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	podman := func(args ...string) ([]byte, error) {
		cmd := podmanAs(account, args...)
		cmd.Env = append(cmd.Env, "CONTAINERS_STORAGE_CONF="+storage)
		return cmd.CombinedOutput()
	}
	podman("system", "migrate") // from an earlier run of a broken agent's
	if out, err := podman("run", "--detach", "--replace", "--network", "none", "--name", "hpcgate-stale-test", "localhost/hpcgate-examples:latest", "sleep", "600"); err != nil {
		t.Fatalf("start a container as %s: %v\n%s", account.Name, err, out)
	}
	t.Cleanup(func() { podman("rm", "--force", "hpcgate-stale-test") })
	// the reboot: every process of the account's ends at once
	if out, err := exec.Command("pkill", "-KILL", "-u", account.Name).CombinedOutput(); err != nil {
		t.Fatalf("pkill: %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(run, "hpcgate-boot-id"), []byte("an earlier boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(filepath.Join(run, "hpcgate-boot-id"), account.UID, account.GID)
}

// waitStepsStopped waits until every process of job id but its agent
// (and the agent's reaper) is stopped, or with stopped false, until none
// is: a suspend reaches the command and, in a container, the processes
// below the runtime. It fails if the job has no such process.
func waitStepsStopped(t *testing.T, id string, stopped bool) {
	t.Helper()
	var last []string
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(200 * time.Millisecond) {
		last = last[:0]
		ok, n := true, 0
		for _, p := range jobProcesses(id) {
			pid, cmdline, _ := strings.Cut(p, ":")
			if f := strings.Fields(cmdline); len(f) > 1 && f[1] == "agent" {
				continue // the agent: Grid Engine stops it after the queue's notify time
			}
			n++
			pn, _ := strconv.Atoi(pid)
			st := proctree.State(pn)
			if st == 'Z' || st == 0 {
				continue
			}
			last = append(last, fmt.Sprintf("%s (%c)", p, st))
			if (st == 'T') != stopped {
				ok = false
			}
		}
		if ok && n > 0 {
			return
		}
	}
	t.Fatalf("job %s: want its steps' processes stopped=%v, have %q", id, stopped, last)
}

// podmanAs is podman run as account, with the runtime directory and
// containers.conf its jobs' agent uses (TestContainerAsAccount's).
func podmanAs(account *sched.Account, args ...string) *exec.Cmd {
	run := filepath.Join("/run/user", strconv.Itoa(account.UID))
	if fi, err := os.Stat(run); err != nil || !fi.IsDir() {
		run = filepath.Join("/tmp", "hpcgate-run-"+strconv.Itoa(account.UID))
	}
	cmd := exec.Command("runuser", append([]string{"-u", account.Name, "--", "podman"}, args...)...)
	cmd.Dir = "/"
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, "HOME="+account.Home, "XDG_RUNTIME_DIR="+run, "CONTAINERS_CONF="+accountContainersConf)
	return cmd
}

// waitNoContainer waits until podman has no container of job id.
func waitNoContainer(t *testing.T, id string) {
	t.Helper()
	waitNoContainerAs(t, id, nil)
}

// waitNoContainerAs waits until no process of job id is left and root's
// podman has no container of it (for an account's rootless podman, whose
// records are the account's, only the processes are checked).
func waitNoContainerAs(t *testing.T, id string, account *sched.Account) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(300 * time.Millisecond) {
		var out []byte
		var err error
		if account == nil {
			out, err = exec.Command("podman", "ps", "--all", "--quiet", "--filter", "name=hpcgate-"+id).Output()
		} else {
			out, err = podmanAs(account, "ps", "--all", "--quiet", "--filter", "name=hpcgate-"+id).Output()
		}
		// podman forgetting the container is not enough (a container
		// left "stopping" is dropped from its records with its processes
		// running): no process of the job may be left either
		procs := jobProcesses(id)
		if err == nil && strings.TrimSpace(string(out)) == "" && len(procs) == 0 {
			return
		}
		if len(procs) > 0 {
			out = append(out, fmt.Sprintf(" processes %v", procs)...)
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the container of job %s is still there: %s %v", id, out, err)
		}
	}
}

// A job that runs as its user's own account runs podman rootless as that
// account: the agent makes the runtime directory the engine did not, the
// image comes from the environment's shared read-only store (nothing
// pulled or loaded per account), and the command is root only of its
// user namespace: what it writes belongs to the account.
// accountContainersConf is the containers.conf TestContainerAsAccount's
// accounts read.
var accountContainersConf string

func TestContainerAsAccount(t *testing.T) {
	conf := needPodman(t)
	alice, _ := schedtest.Accounts(t)
	shared, bin := sharedDir(t)
	store := filepath.Join(shared, "images")
	if out, err := exec.Command("../../scripts/build-example-image.sh", "--root", store).CombinedOutput(); err != nil {
		t.Fatalf("build the shared image store: %v\n%s", err, out)
	}
	// the test command's containers.conf sits in root's home: a copy the
	// account can read
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(shared, "containers.conf")
	if err := os.WriteFile(conf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	accountContainersConf = conf
	breakRootlessPodman(t, alice, store)
	// on the local executor, and on Slurm and Grid Engine where the test
	// command started them
	envs := []string{"local"}
	extra := map[string]string{"local": "", "slurm": ", partition: debug", "sge": ", queue: all.q"}
	for _, e := range []string{"slurm", "sge"} {
		if os.Getenv("HPCGATE_TEST_"+strings.ToUpper(e)) == "1" {
			envs = append(envs, e)
		}
	}
	var envCfg strings.Builder
	for _, e := range envs {
		envCfg.WriteString("  - {name: " + e + "-podman, scheduler: " + e + extra[e] + ", container_runtime: podman, images: [localhost/], image_store: " + store + ", env: {CONTAINERS_CONF: " + conf + "}}\n")
	}
	// ctr-steps, ctr-exit3, ... as on every engine (engines_test.go)
	tmpl := templatesDir(t, append([]string{`
name: ctr-who
version: 1
image: localhost/hpcgate-examples:latest
command: [sh, -c, 'id -u > uid.txt; echo mine > mine.txt']
outputs: [uid.txt]
environments: [local-podman, slurm-podman, sge-podman]
`, string(must(os.ReadFile("../../examples/templates/wordcount-container.yaml")))},
		strings.Split(containerStepsTemplate, "\n---\n")...)...)
	g := &gw{t: t, dir: filepath.Join(t.TempDir(), "data"), bin: bin, addr: "127.0.0.1:0", slots: "2"}
	cfg := "template_dirs: [" + tmpl + "]\npoll_interval: 500ms\nwork_root: " + filepath.Join(shared, "work") +
		"\naccounts: {mode: map, map: {alice: hpcg-alice}}\nno_builtin_templates: true\n" +
		"environments:\n" + envCfg.String() +
		"agent_command: [" + filepath.Join(bin, "hpcgate") + ", agent, --keep-workdir]\n"
	g.cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(g.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.start()
	t.Cleanup(g.stop)
	c := g.client(g.userToken("alice"))
	tc := g.tes(g.userToken("alice", "tasks", "jobs:read", "jobs:write", "files:read", "files:write"))
	for _, e := range envs {
		t.Run(e, func(t *testing.T) {
			// a GA4GH TES task runs as the account too, its files the account's
			task := tc.create(map[string]any{"resources": map[string]any{"backend_parameters": map[string]string{"environment": e + "-podman"}},
				"outputs":   []any{map[string]any{"url": "tes/" + e + "/uid.txt", "path": "/out/uid.txt"}},
				"executors": []any{map[string]any{"image": exampleImage, "command": []string{"sh", "-c", "id -u > /out/uid.txt"}}}})
			if got := tc.wait(task, 3*time.Minute, "COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR"); got.State != "COMPLETE" {
				t.Fatalf("task as an account: %s %+v", got.State, got.Logs)
			}
			rc, _, err := c.GetFile(context.Background(), "tes/"+e+"/uid.txt", 0)
			if err != nil {
				t.Fatal(err)
			}
			uid, _ := io.ReadAll(rc)
			rc.Close()
			if strings.TrimSpace(string(uid)) != "0" {
				t.Errorf("the task ran as uid %q in its container, want 0 (the account, outside)", uid)
			}
			var tst syscall.Stat_t
			if err := syscall.Stat(filepath.Join(shared, "work", task, "work", "root", "out", "uid.txt"), &tst); err != nil || int(tst.Uid) != alice.UID {
				t.Errorf("the task's uid.txt: %v, owner %d, want %d", err, tst.Uid, alice.UID)
			}

			j, err := c.CreateJob(context.Background(), api.JobRequest{Template: "ctr-who", Environment: e + "-podman"}, "")
			if err != nil {
				t.Fatal(err)
			}
			j = waitJob(t, c, j.ID, 3*time.Minute)
			if j.State != api.StateSucceeded {
				errLog, _ := io.ReadAll(must(c.Log(context.Background(), j.ID, "stderr", 0, false)))
				t.Fatalf("job %s: %s\n%s", j.State, j.Error, errLog)
			}
			rc, _, err = c.Output(context.Background(), j.ID, "uid.txt")
			if err != nil {
				t.Fatal(err)
			}
			uid, _ = io.ReadAll(rc)
			rc.Close()
			if strings.TrimSpace(string(uid)) != "0" {
				t.Fatalf("the command ran as uid %q in its container, want 0 (the account, outside)", uid)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(shared, "work", j.ID, "work", "mine.txt"), &st); err != nil || int(st.Uid) != alice.UID {
				t.Fatalf("mine.txt: %v, owner %d, want %d", err, st.Uid, alice.UID)
			}
			// a rootless container is stopped by cancel too (podman
			// finds it through the same runtime directory)
			// (On Grid Engine qdel kills every process of an account's
			// job by its additional group id, the reaper included, which
			// a rootless container has dropped: the dispatcher lets the
			// agent stop its container before it calls qdel.)
			cancelContainerJobAs(t, c, api.JobRequest{Template: "ctr-steps", Environment: e + "-podman"}, alice)
			accountContainerSteps(t, c, e+"-podman", alice)
		})
	}
}

// A container job that declares it needs the gateway submits a child from
// inside its container, with the hpcgate client the agent mounts and the
// socket it serves (the job's token never enters the container), while
// the container still has no network.
func TestContainerTalksToGateway(t *testing.T) {
	g := containerGateway(t)
	if exe, _ := os.Executable(); !container.StaticBinary(exe) {
		if os.Getenv("HPCGATE_TEST_PODMAN") == "1" {
			t.Fatal("the test binary is not static: scripts/test.sh builds the end-to-end tests with -tags osusergo,netgo")
		}
		t.Skip("the hpcgate client is mounted in containers only when it is a static binary: go test -tags osusergo,netgo")
	}
	c := g.client(g.userToken("ada"))
	ctx := context.Background()
	p, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-parent", Parameters: json.RawMessage(`{"probe_url": "` + g.url + `/v1/status"}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	p = waitJob(t, c, p.ID, 2*time.Minute)
	if p.State != api.StateSucceeded {
		errLog, _ := io.ReadAll(must(c.Log(ctx, p.ID, "stderr", 0, false)))
		t.Fatalf("parent %s: %s\n%s", p.State, p.Error, errLog)
	}
	kids, err := c.Children(ctx, p.ID)
	if err != nil || len(kids) != 1 {
		t.Fatalf("children %v, %v", kids, err)
	}
	k := waitJob(t, c, kids[0].ID, 2*time.Minute)
	if out, _ := io.ReadAll(must(c.Log(ctx, k.ID, "stdout", 0, false))); k.State != api.StateSucceeded || string(out) != "kid-from-container\n" {
		t.Fatalf("child %s, stdout %q", k.State, out)
	}
}

// An image no registry serves comes from an archive an admin pushed to the
// object store: the first job on the node fetches and loads it, the next
// finds it loaded. Only admins push archives.
func TestContainerImageArchive(t *testing.T) {
	g := containerGateway(t)
	const image = "localhost/hpcgate-archived:1"
	podman := func(args ...string) error { return exec.Command("podman", args...).Run() }
	podman("rmi", image)
	if err := podman("tag", exampleImage, image); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "archived.tar")
	if out, err := exec.Command("podman", "save", "-o", archive, image).CombinedOutput(); err != nil {
		t.Fatalf("podman save: %v\n%s", err, out)
	}
	if err := podman("rmi", image); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { podman("rmi", image) })
	ada := g.userToken("ada")
	if _, stderr, err := g.cli(ada, "image", "push", archive, "archived.tar"); err == nil || !strings.Contains(stderr, "only admins") {
		t.Fatalf("a user pushed an image archive: %v, %s", err, stderr)
	}
	if out := g.mustCLI(g.token, "image", "push", archive, "archived.tar"); !strings.Contains(out, "pushed image archive archived.tar") {
		t.Fatalf("push said %q", out)
	}
	if out := g.mustCLI(g.token, "image", "list"); !strings.Contains(out, "archived.tar") {
		t.Fatalf("image list said %q", out)
	}
	c := g.client(ada)
	ctx := context.Background()
	run := func() (stdout, stderr string) {
		t.Helper()
		j, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-archived"}, "")
		if err != nil {
			t.Fatal(err)
		}
		j = waitJob(t, c, j.ID, 2*time.Minute)
		o, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stdout", 0, false)))
		e, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stderr", 0, false)))
		if j.State != api.StateSucceeded {
			t.Fatalf("job %s: %s\n%s", j.State, j.Error, e)
		}
		return string(o), string(e)
	}
	out, errs := run()
	if out != "from-archive\n" || !strings.Contains(errs, "fetching the image archive archived.tar") {
		t.Fatalf("first job: stdout %q, stderr %q", out, errs)
	}
	if podman("image", "exists", image) != nil {
		t.Fatal("the image was not loaded")
	}
	if out, errs := run(); out != "from-archive\n" || strings.Contains(errs, "fetching") {
		t.Fatalf("second job: stdout %q, stderr %q: want the loaded image reused", out, errs)
	}
}

// Suspending a container job pauses the container's processes too: the
// agent is their subreaper, so they stay in the job's process tree, which
// the local executor stops and continues.
func TestContainerSuspend(t *testing.T) {
	g, work := containerGatewayWork(t)
	c := g.client(g.userToken("ada"))
	ctx := context.Background()
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "ctr-count"}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, c, j.ID, api.StateRunning, 2*time.Minute)
	count := filepath.Join(work, j.ID, "count.txt")
	size := func() int64 {
		fi, err := os.Stat(count)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	for start := time.Now(); size() < 10; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > time.Minute {
			t.Fatalf("the container does not write %s", count)
		}
	}
	if _, err := c.Suspend(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	n := size()
	time.Sleep(1500 * time.Millisecond)
	if m := size(); m != n {
		t.Fatalf("the suspended job's container still writes: %d → %d bytes", n, m)
	}
	if _, err := c.Resume(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); size() <= n; time.Sleep(100 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatal("the resumed job's container does not write again")
		}
	}
	if _, err := c.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	waitNoContainer(t, j.ID)
}
