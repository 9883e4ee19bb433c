package main

// End-to-end tests: the real server, local executor, agent and CLI, each
// in its own process. The test binary is the hpcgate binary: started as
// "hpcgate" (a link to it), or with HPCGATE_E2E_BINARY=1 in its
// environment, it runs main's run instead of the tests. Engines that pass
// jobs only the variables they are given (Grid Engine) start the agent by
// the link's name.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

const asBinary = "HPCGATE_E2E_BINARY"

func TestMain(m *testing.M) {
	if os.Getenv(asBinary) == "1" || filepath.Base(os.Args[0]) == "hpcgate" {
		os.Exit(runMain())
	}
	os.Exit(m.Run())
}

// binDir holds "hpcgate", a link to this test binary, so that jobs (fanout)
// can call hpcgate by name.
func binDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(exe, filepath.Join(d, "hpcgate")); err != nil {
		t.Fatal(err)
	}
	return d
}

type gw struct {
	t       *testing.T
	dir     string // data directory
	bin     string
	addr    string
	url     string
	token   string
	cacert  string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	exited  chan struct{}
	cfgFile string
	slots   string
}

// startGateway starts "hpcgate server" on a fresh data directory.
func startGateway(t *testing.T, cfg string) *gw {
	t.Helper()
	g := newGateway(t, cfg)
	g.start()
	t.Cleanup(g.stop)
	return g
}

// newGateway prepares a gateway without starting it.
func newGateway(t *testing.T, cfg string) *gw {
	t.Helper()
	g := &gw{t: t, dir: filepath.Join(t.TempDir(), "data"), bin: binDir(t), addr: "127.0.0.1:0", slots: "4"}
	cfg += "\nagent_command: [" + filepath.Join(g.bin, "hpcgate") + ", agent]\n"
	g.cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(g.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *gw) env() []string {
	return append(os.Environ(), asBinary+"=1", "PATH="+g.bin+":"+os.Getenv("PATH"))
}

func (g *gw) start() {
	t := g.t
	t.Helper()
	args := []string{"server", "--data-dir", g.dir, "--addr", g.addr, "--slots", g.slots, "--log-level", "debug"}
	if g.cfgFile != "" {
		args = append(args, "--config", g.cfgFile)
	}
	cmd := exec.Command(filepath.Join(g.bin, "hpcgate"), args...)
	cmd.Env = g.env()
	g.log = &bytes.Buffer{}
	cmd.Stderr = &lockedWriter{w: g.log}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g.cmd = cmd
	g.url = ""
	g.exited = make(chan struct{})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		cmd.Wait()
		close(g.exited)
	}()
	deadline := time.After(30 * time.Second)
	nextIsToken := false
	for g.url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				<-g.exited
				t.Fatalf("server exited before listening:\n%s", g.log)
			}
			if nextIsToken {
				g.token, nextIsToken = strings.TrimSpace(l), false
			}
			if strings.HasPrefix(l, "admin token") {
				nextIsToken = true
			}
			if u, ok := strings.CutPrefix(l, "hpcgate listening on "); ok {
				g.url = u
			}
		case <-deadline:
			t.Fatalf("server did not start:\n%s", g.log)
		}
	}
	go func() {
		for range lines {
		}
	}()
	g.addr = strings.TrimPrefix(g.url, "https://") // a restart reuses the port
	if g.token == "" {
		b, err := os.ReadFile(filepath.Join(g.dir, "admin.token"))
		if err != nil {
			t.Fatal(err)
		}
		g.token = strings.TrimSpace(string(b))
	}
	g.cacert = filepath.Join(g.dir, "tls", "cert.pem")
}

// kill stops the server at once, as a crash would.
func (g *gw) kill() {
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.exited
}

func (g *gw) stop() {
	if g.cmd.ProcessState == nil {
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(15 * time.Second):
			g.cmd.Process.Kill()
			<-g.exited
		}
	}
	if g.t.Failed() {
		g.t.Logf("server log:\n%s", g.log)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (g *gw) client(token string) *client.Client {
	g.t.Helper()
	c, err := client.New(g.url, token, &client.Options{CACertFile: g.cacert})
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}

// cli runs an hpcgate client command as a user would, with token.
func (g *gw) cli(token string, args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(g.bin, "hpcgate"), args...)
	cmd.Env = append(g.env(), "HPCGATE_URL="+g.url, "HPCGATE_TOKEN="+token, "HPCGATE_CACERT="+g.cacert)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (g *gw) mustCLI(token string, args ...string) string {
	g.t.Helper()
	out, errOut, err := g.cli(token, args...)
	if err != nil {
		g.t.Fatalf("hpcgate %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (g *gw) userToken(user string, scopes ...string) string {
	g.t.Helper()
	if len(scopes) == 0 {
		scopes = []string{api.ScopeJobsRead, api.ScopeJobsWrite, api.ScopeFilesRead, api.ScopeFilesWrite}
	}
	tok, err := g.client(g.token).CreateToken(context.Background(), api.TokenRequest{User: user, Scopes: scopes})
	if err != nil {
		g.t.Fatal(err)
	}
	return tok.Token
}

func waitJob(t *testing.T, c *client.Client, id string, timeout time.Duration) *api.Job {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	j, err := c.Wait(ctx, id)
	if err != nil {
		t.Fatalf("waiting for job %s: %v", id, err)
	}
	return j
}

// outputText is job id's output p, whole.
func outputText(t *testing.T, c *client.Client, id, p string) string {
	t.Helper()
	rc, _, err := c.Output(context.Background(), id, p)
	if err != nil {
		t.Fatalf("output %s of job %s: %v", p, id, err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

func waitState(t *testing.T, c *client.Client, id, state string, timeout time.Duration) *api.Job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j, err := c.Job(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if j.State == state {
			return j
		}
		if client.Terminal(j.State) || time.Now().After(deadline) {
			t.Fatalf("job %s is %s (%s), want %s", id, j.State, j.Error, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func states(t *testing.T, c *client.Client, id string) []string {
	t.Helper()
	evs, err := c.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, e.State)
	}
	return out
}

const sleeperTemplate = `
name: sleeper
version: 1
description: prints lines slowly; for tests
command: [sh, -c, 'echo started; i=0; while [ $i -lt "$HPCGATE_PARAM_LINES" ]; do i=$((i+1)); echo "line $i"; sleep "$HPCGATE_PARAM_PAUSE"; done; echo done > done.txt']
parameters:
  type: object
  additionalProperties: false
  properties:
    lines: {type: integer, minimum: 0, default: 3}
    pause: {type: number, minimum: 0, default: 0.2}
outputs: [done.txt]
environments: [local]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
  max: {nodes: 1, cores_per_node: 2, walltime_s: 3600}
`

func withSleeper(t *testing.T) string {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "sleeper.yaml"), []byte(sleeperTemplate), 0o600); err != nil {
		t.Fatal(err)
	}
	return "template_dirs: [" + d + "]\npoll_interval: 500ms\n"
}

func TestHelloEndToEnd(t *testing.T) {
	g := startGateway(t, "")
	alice := g.userToken("alice")
	out := g.mustCLI(alice, "submit", "hello", "--param", "name=World", "--wait")
	if !strings.Contains(out, "succeeded") {
		t.Fatalf("submit --wait said:\n%s", out)
	}
	c := g.client(alice)
	page, err := c.Jobs(context.Background(), client.JobFilter{Template: "hello"})
	if err != nil || len(page.Items) != 1 {
		t.Fatalf("jobs = %+v, %v", page, err)
	}
	j := page.Items[0]
	if j.State != api.StateSucceeded || j.ExitCode == nil || *j.ExitCode != 0 || j.Usage == nil || j.Backend == nil || j.Backend.Scheduler != "local" {
		t.Fatalf("job %+v", j)
	}
	if j.StartedAt == nil || j.FinishedAt == nil || j.Owner != "alice" || j.Resources.CoresPerNode != 1 {
		t.Fatalf("job fields missing: %+v", j)
	}
	want := []string{"pending", "queued", "starting", "running", "finishing", "succeeded"}
	if got := states(t, c, j.ID); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	logs := g.mustCLI(alice, "logs", j.ID)
	if logs != "Hello, World\n" {
		t.Fatalf("stdout log %q", logs)
	}
	dl := filepath.Join(t.TempDir(), "results")
	g.mustCLI(alice, "download", j.ID, "--out", dl)
	b, err := os.ReadFile(filepath.Join(dl, "greeting.txt"))
	if err != nil || string(b) != "Hello, World\n" {
		t.Fatalf("downloaded greeting.txt = %q, %v", b, err)
	}
	params, _ := c.Parameters(context.Background(), j.ID)
	if !strings.Contains(string(params), `"World"`) {
		t.Fatalf("parameters %s", params)
	}
}

func TestWordcountEndToEnd(t *testing.T) {
	g := startGateway(t, "")
	bob := g.userToken("bob")
	story := filepath.Join(t.TempDir(), "story.txt")
	os.WriteFile(story, []byte("The cat sat on the mat. The cat ran.\nA dog, a cat!\n"), 0o600)
	up := g.mustCLI(bob, "upload", story, "inputs/story.txt")
	if !strings.Contains(up, "inputs/story.txt") {
		t.Fatalf("upload said %q", up)
	}
	out := g.mustCLI(bob, "submit", "wordcount", "--input", "text=inputs/story.txt", "--param", "min_length=3", "--follow")
	if !strings.Contains(out, "words") {
		t.Fatalf("submit --follow did not show the job's output:\n%s", out)
	}
	c := g.client(bob)
	page, _ := c.Jobs(context.Background(), client.JobFilter{})
	j := page.Items[0]
	res, err := c.Results(context.Background(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var summary struct {
		Total      int    `json:"total_words"`
		Distinct   int    `json:"distinct_words"`
		MostCommon string `json:"most_common"`
	}
	if err := json.Unmarshal(res, &summary); err != nil {
		t.Fatalf("results %s: %v", res, err)
	}
	// Words of ≥ 3 letters: the×3 cat×3 sat mat ran dog.
	if summary.Total != 10 || summary.Distinct != 6 || summary.MostCommon != "cat" {
		t.Fatalf("results %+v from %s", summary, res)
	}
	rc, _, err := c.Output(context.Background(), j.ID, "counts.json")
	if err != nil {
		t.Fatal(err)
	}
	var counts map[string]int
	json.NewDecoder(rc).Decode(&counts)
	rc.Close()
	if counts["the"] != 3 || counts["cat"] != 3 || counts["on"] != 0 {
		t.Fatalf("counts %v", counts)
	}

	// The verify adapter fails a job with an empty input, with a clear error.
	if _, err := c.PutFile(context.Background(), "inputs/empty.txt", strings.NewReader(""), 0); err != nil {
		t.Fatal(err)
	}
	bad, err := c.CreateJob(context.Background(), api.JobRequest{Template: "wordcount", Inputs: map[string]string{"text": "inputs/empty.txt"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	bj := waitJob(t, c, bad.ID, 60*time.Second)
	if bj.State != api.StateFailed || !strings.Contains(bj.Error, "input text is empty") || !strings.Contains(bj.Error, "verify") {
		t.Fatalf("empty input: state %s, error %q", bj.State, bj.Error)
	}
}

func TestFanoutSubmitsChildren(t *testing.T) {
	g := startGateway(t, "")
	carol := g.userToken("carol")
	c := g.client(carol)
	j, err := c.CreateJob(context.Background(), api.JobRequest{Template: "fanout", Parameters: json.RawMessage(`{"n": 3}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	done := waitJob(t, c, j.ID, 120*time.Second)
	if done.State != api.StateSucceeded {
		logs, _ := c.Log(context.Background(), j.ID, "stderr", 0, false)
		b, _ := io.ReadAll(logs)
		t.Fatalf("fanout %s: %s\nstderr:\n%s", done.State, done.Error, b)
	}
	kids, err := c.Children(context.Background(), j.ID)
	if err != nil || len(kids) != 3 {
		t.Fatalf("children %d, %v", len(kids), err)
	}
	for _, k := range kids {
		if k.ParentID != j.ID || k.Owner != "carol" || k.Depth != 1 || k.State != api.StateSucceeded {
			t.Fatalf("child %+v", k)
		}
	}
	rc, _, err := c.Output(context.Background(), j.ID, "summary.txt")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	for i := 1; i <= 3; i++ {
		if !strings.Contains(string(b), fmt.Sprintf("Hello, child %d\n", i)) {
			t.Fatalf("summary lacks child %d:\n%s", i, b)
		}
	}
}

func TestInvalidRequestsReportEveryField(t *testing.T) {
	g := startGateway(t, "")
	c := g.client(g.userToken("dave"))
	_, err := c.CreateJob(context.Background(), api.JobRequest{
		Template:   "wordcount",
		Parameters: json.RawMessage(`{"min_length": 0, "colour": "red"}`),
		Inputs:     map[string]string{"text": "../etc/passwd"},
		Resources:  &api.Resources{CoresPerNode: 99},
	}, "")
	var ce *client.Error
	if !errorsAs(err, &ce) || ce.Status != 422 || ce.Code != api.CodeValidation {
		t.Fatalf("CreateJob = %v, want 422 validation_failed", err)
	}
	var fields []string
	for _, f := range ce.Errors {
		fields = append(fields, f.Field)
	}
	for _, want := range []string{"parameters.min_length", "parameters.colour", "inputs.text", "resources.cores_per_node"} {
		if !slices.Contains(fields, want) {
			t.Errorf("field %s not reported; got %v", want, fields)
		}
	}
	// A body with an unknown field, and one that is not JSON.
	for body, want := range map[string]int{`{"template":"hello","bogus":1}`: 422, `{"template":`: 400, `{"template": 5}`: 422} {
		_, err := c.Do(context.Background(), "POST", "/v1/jobs", nil, strings.NewReader(body), http.Header{"Content-Type": {"application/json"}})
		if got := client.StatusOf(err); got != want {
			t.Errorf("POST %s: %v, want %d", body, err, want)
		}
	}
	// A body over the JSON limit.
	big := `{"template":"hello","name":"` + strings.Repeat("x", 2<<20) + `"}`
	if _, err := c.Do(context.Background(), "POST", "/v1/jobs", nil, strings.NewReader(big), nil); client.StatusOf(err) != 413 {
		t.Errorf("2 MiB body: %v, want 413", err)
	}
}

func errorsAs(err error, target **client.Error) bool {
	e, ok := err.(*client.Error)
	if ok {
		*target = e
	}
	return ok
}

func TestAccessControl(t *testing.T) {
	g := startGateway(t, "")
	ctx := context.Background()
	alice := g.client(g.userToken("alice"))
	mallory := g.client(g.userToken("mallory"))
	readOnly := g.client(g.userToken("alice", api.ScopeJobsRead))
	if _, err := alice.PutFile(ctx, "secret.txt", strings.NewReader("alice's"), 7); err != nil {
		t.Fatal(err)
	}
	j, err := alice.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name":"x"}`), Hold: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, err error, status int) {
		t.Helper()
		if got := client.StatusOf(err); got != status {
			t.Errorf("%s: status %d (%v), want %d", name, got, err, status)
		}
	}
	_, err = g.client("").Jobs(ctx, client.JobFilter{})
	check("no token", err, 401)
	_, err = g.client("hpcg_notarealtoken").Jobs(ctx, client.JobFilter{})
	check("unknown token", err, 401)
	_, err = readOnly.CreateJob(ctx, api.JobRequest{Template: "hello"}, "")
	check("read-only token creates a job", err, 403)
	_, _, err = readOnly.GetFile(ctx, "secret.txt", 0)
	check("jobs-only token reads a file", err, 403)
	_, err = mallory.Job(ctx, j.ID)
	check("another user's job", err, 404)
	_, err = mallory.Cancel(ctx, j.ID)
	check("cancel another user's job", err, 404)
	_, err = mallory.Events(ctx, j.ID)
	check("another user's events", err, 404)
	_, _, err = mallory.GetFile(ctx, "secret.txt", 0)
	check("another user's file", err, 404)
	page, err := mallory.Jobs(ctx, client.JobFilter{})
	if err != nil || len(page.Items) != 0 {
		t.Errorf("mallory sees %d jobs, %v", len(page.Items), err)
	}
	_, err = mallory.CreateToken(ctx, api.TokenRequest{User: "alice", Scopes: []string{api.ScopeJobsRead}})
	check("token for another user", err, 403)
	_, err = mallory.CreateToken(ctx, api.TokenRequest{Scopes: []string{api.ScopeAdmin}})
	check("token with a scope its maker lacks", err, 403)
	// Paths that try to leave the namespace, sent as raw bytes.
	hc := &http.Client{
		Transport:     g.client(g.token).Transport(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	aliceTok := g.userToken("alice")
	for _, p := range []string{"a/%2E%2E/%2E%2E/b", "%2E%2E/x", "a%5Cb", "a/%00b", "%2Fetc%2Fpasswd"} {
		req, err := http.NewRequest("PUT", g.url+"/v1/files/"+p, strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+aliceTok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 300 {
			t.Errorf("PUT /v1/files/%s answered %d; it must be refused", p, resp.StatusCode)
		}
	}
	files, err := alice.Files(ctx, "")
	if err != nil || len(files) != 1 || files[0].Path != "secret.txt" {
		t.Errorf("alice's files after the traversal attempts: %+v, %v", files, err)
	}
	// The owner still sees everything.
	if _, err := alice.Job(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	// A revoked token stops working.
	tok, err := g.client(g.token).CreateToken(ctx, api.TokenRequest{User: "erin", Scopes: []string{api.ScopeJobsRead}})
	if err != nil {
		t.Fatal(err)
	}
	erin := g.client(tok.Token)
	if _, err := erin.Me(ctx); err != nil {
		t.Fatal(err)
	}
	if err := erin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = erin.Me(ctx)
	check("revoked token", err, 401)
}

func TestCancelRunningJob(t *testing.T) {
	g := startGateway(t, withSleeper(t))
	c := g.client(g.userToken("frank"))
	ctx := context.Background()
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "sleeper", Parameters: json.RawMessage(`{"lines": 1000, "pause": 0.1}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, c, j.ID, api.StateRunning, 30*time.Second)
	if _, err := c.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := c.Job(ctx, j.ID)
	if got.State != api.StateCanceled {
		t.Fatalf("after cancel: %s", got.State)
	}
	// The job's processes end: the log stops growing.
	time.Sleep(2 * time.Second)
	a, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stdout", 0, false)))
	time.Sleep(1 * time.Second)
	b, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stdout", 0, false)))
	if len(a) != len(b) {
		t.Fatalf("log grew from %d to %d bytes after cancel", len(a), len(b))
	}
	if _, err := c.Cancel(ctx, j.ID); client.StatusOf(err) != 409 {
		t.Fatalf("second cancel: %v, want 409", err)
	}
	if st := states(t, c, j.ID); st[len(st)-1] != "canceled" {
		t.Fatalf("events end %v", st)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestFollowLogWhileJobWrites(t *testing.T) {
	g := startGateway(t, withSleeper(t))
	c := g.client(g.userToken("gina"))
	ctx := context.Background()
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "sleeper", Parameters: json.RawMessage(`{"lines": 6, "pause": 0.5}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := c.Log(ctx, j.ID, "stdout", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	var lines []string
	sawRunning := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "line 2" {
			cur, _ := c.Job(ctx, j.ID)
			sawRunning = cur.State == api.StateRunning
		}
	}
	want := []string{"started", "line 1", "line 2", "line 3", "line 4", "line 5", "line 6"}
	if !slices.Equal(lines, want) {
		t.Fatalf("followed %q, want %q", lines, want)
	}
	if !sawRunning {
		t.Fatal("line 2 arrived only after the job ended: the log is not live")
	}
	if cur, _ := c.Job(ctx, j.ID); cur.State != api.StateSucceeded {
		t.Fatalf("follow ended before the job: %s", cur.State)
	}
	// Resume from an offset.
	rc2, _ := c.Log(ctx, j.ID, "stdout", int64(len("started\n")), false)
	b, _ := io.ReadAll(rc2)
	rc2.Close()
	if !strings.HasPrefix(string(b), "line 1\n") {
		t.Fatalf("log from offset %q", b)
	}
}

func TestGatewayRestartWhileJobRuns(t *testing.T) {
	g := startGateway(t, withSleeper(t))
	c := g.client(g.userToken("hank"))
	ctx := context.Background()
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "sleeper", Parameters: json.RawMessage(`{"lines": 8, "pause": 0.4}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, c, j.ID, api.StateRunning, 30*time.Second)
	queued, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name":"later"}`), Hold: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	g.kill()
	time.Sleep(1500 * time.Millisecond) // the job goes on writing while nobody listens
	g.start()
	done := waitJob(t, c, j.ID, 60*time.Second)
	if done.State != api.StateSucceeded {
		t.Fatalf("job after restart: %s (%s)", done.State, done.Error)
	}
	b, _ := io.ReadAll(must(c.Log(ctx, j.ID, "stdout", 0, false)))
	want := "started\nline 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\n"
	if string(b) != want {
		t.Fatalf("log after restart:\n%q\nwant\n%q", b, want)
	}
	if _, err := c.Release(ctx, queued.ID); err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, queued.ID, 60*time.Second); j.State != api.StateSucceeded {
		t.Fatalf("job released after restart: %s (%s)", j.State, j.Error)
	}
}
