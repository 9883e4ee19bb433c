package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// gateway implements the agent's routes of the real server
// (internal/server/agent.go) in memory, over TLS.
type gateway struct {
	t     *testing.T
	token string

	mu      sync.Mutex
	spec    api.Spec
	inputs  map[string][]byte
	logs    map[string][]byte
	outputs map[string][]byte
	reports []api.StateReport
	state   string
	// unavailable: how many more requests of each route (by the route's
	// last word) answer 503.
	unavailable map[string]int
	calls       map[string]int
	logLimit    int            // > 0: what a stream keeps, then a last line (limits.max_log_bytes)
	refuse      map[string]int // output path → the status its upload answers
	pastFull    map[string]int // appends to a stream after it was full
}

func newGateway(t *testing.T, spec api.Spec) (*gateway, *client.Client) {
	g := &gateway{t: t, token: "hpcg_jobtoken", spec: spec, inputs: map[string][]byte{}, logs: map[string][]byte{},
		outputs: map[string][]byte{}, state: api.StateQueued, unavailable: map[string]int{}, calls: map[string]int{}, pastFull: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/jobs/{id}/spec", g.wrap("spec", g.getSpec))
	mux.HandleFunc("GET /v1/jobs/{id}/inputs/{name}", g.wrap("inputs", g.getInput))
	mux.HandleFunc("POST /v1/jobs/{id}/state", g.wrap("state", g.postState))
	mux.HandleFunc("POST /v1/jobs/{id}/logs/{stream}", g.wrap("logs", g.postLog))
	mux.HandleFunc("PUT /v1/jobs/{id}/outputs/{path...}", g.wrap("outputs", g.putOutput))
	mux.HandleFunc("GET /v1/jobs/{id}", g.wrap("job", g.getJob))
	mux.HandleFunc("POST /v1/jobs/{id}/output-urls", g.wrap("output-urls", func(w http.ResponseWriter, r *http.Request) {
		// an object store no one can reach
		json.NewEncoder(w).Encode(api.SignedURL{URL: "http://127.0.0.1:1/bucket/" + r.PathValue("id"), ExpiresAt: time.Now().Add(time.Hour)})
	}))
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(srv.URL, g.token, &client.Options{CACertFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

func problem(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Problem{Status: status, Title: http.StatusText(status), Detail: msg, Code: "x"})
}

func (g *gateway) wrap(route string, h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.calls[route]++
		down := g.unavailable[route] > 0
		if down {
			g.unavailable[route]--
		}
		terminal := client.Terminal(g.state)
		g.mu.Unlock()
		switch {
		case down:
			problem(w, http.StatusServiceUnavailable, "the gateway is restarting")
		case r.Header.Get("Authorization") != "Bearer "+g.token || r.PathValue("id") != "job1":
			problem(w, http.StatusNotFound, "no such job")
		case terminal:
			problem(w, http.StatusUnauthorized, "this job token has expired: its job has ended")
		default:
			h(w, r)
		}
	}
}

func (g *gateway) getSpec(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	spec := g.spec
	spec.LogOffsets = map[string]int64{}
	for _, st := range []string{"stdout", "stderr"} {
		spec.LogOffsets[st] = int64(len(g.logs[st]))
	}
	g.mu.Unlock()
	json.NewEncoder(w).Encode(spec)
}

func (g *gateway) getInput(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	data, ok := g.inputs[r.PathValue("name")]
	g.mu.Unlock()
	if !ok {
		problem(w, 404, "no such input")
		return
	}
	http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(data)))
}

func (g *gateway) postState(w http.ResponseWriter, r *http.Request) {
	var rep api.StateReport
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		problem(w, 400, err.Error())
		return
	}
	g.mu.Lock()
	g.reports = append(g.reports, rep)
	g.state = rep.State
	g.mu.Unlock()
	json.NewEncoder(w).Encode(api.Job{ID: "job1", State: rep.State})
}

// postLog keeps the bytes it lacks, as the store does.
func (g *gateway) postLog(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	off, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil {
		problem(w, 422, "offset")
		return
	}
	data, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	defer g.mu.Unlock()
	have := g.logs[stream]
	if g.logLimit > 0 && len(have) > g.logLimit {
		g.pastFull[stream]++
		json.NewEncoder(w).Encode(api.LogAppend{Size: int64(len(have)), Full: true})
		return
	}
	if off > int64(len(have)) {
		problem(w, http.StatusConflict, "a gap in the log")
		return
	}
	full := g.logLimit > 0 && off+int64(len(data)) > int64(g.logLimit)
	if full {
		data = append(data[:int64(g.logLimit)-off:int64(g.logLimit)-off], "\n[full]\n"...)
	}
	if end := off + int64(len(data)); end > int64(len(have)) {
		g.logs[stream] = append(have, data[int64(len(have))-off:]...)
	}
	json.NewEncoder(w).Encode(api.LogAppend{Size: int64(len(g.logs[stream])), Full: full})
}

func (g *gateway) putOutput(w http.ResponseWriter, r *http.Request) {
	if st := g.refuse[r.PathValue("path")]; st != 0 {
		problem(w, st, "the upload holds more bytes than the limit")
		return
	}
	data, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(data)
	g.mu.Lock()
	g.outputs[r.PathValue("path")] = data
	g.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(api.FileInfo{Path: r.PathValue("path"), Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
}

func (g *gateway) getJob(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	st := g.state
	g.mu.Unlock()
	json.NewEncoder(w).Encode(api.Job{ID: "job1", State: st})
}

func (g *gateway) final() api.StateReport {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reports) == 0 {
		g.t.Fatal("no state reported")
	}
	return g.reports[len(g.reports)-1]
}

func (g *gateway) states() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s []string
	for _, r := range g.reports {
		s = append(s, r.State)
	}
	return strings.Join(s, " ")
}

func (g *gateway) log(stream string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return string(g.logs[stream])
}

// cancelOnceLogged cancels the job once its stdout holds s.
func (g *gateway) cancelOnceLogged(s string) {
	for !strings.Contains(g.log("stdout"), s) {
		time.Sleep(10 * time.Millisecond)
	}
	g.mu.Lock()
	g.state = api.StateCanceled
	g.mu.Unlock()
}

func (g *gateway) output(p string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.outputs[p]
	return string(b), ok
}

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func opts(t *testing.T) (*Options, string) {
	dir := filepath.Join(t.TempDir(), "work")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return &Options{WorkDir: dir, FlushInterval: 10 * time.Millisecond, RetryFor: 30 * time.Second, KillGrace: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))}, dir
}

func sh(script string) []string { return []string{"/bin/sh", "-c", script} }

func TestRunsJob(t *testing.T) {
	g, c := newGateway(t, api.Spec{
		JobID:      "job1",
		Command:    sh(`cat in/data.txt; echo "to stderr" >&2; echo "n=$HPCGATE_PARAM_N" > result.txt; cat params.json > params.out; mkdir sub; echo x > sub/deep.txt; ln -s /etc/passwd link.txt`),
		Env:        map[string]string{"HPCGATE_PARAM_N": "3"},
		Parameters: json.RawMessage(`{"n":3}`),
		Inputs:     []api.SpecInput{{Name: "data", Path: "in/data.txt", Size: 6}},
		Outputs:    []string{"*.txt", "params.out", "sub/*.txt"},
	})
	g.inputs["data"] = []byte("input\n")
	o, dir := opts(t)
	o.TokenFile = filepath.Join(t.TempDir(), "job1.secret.HPCGATE_TOKEN")
	if err := os.WriteFile(o.TokenFile, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(o.TokenFile); !os.IsNotExist(err) {
		t.Errorf("the token's file is left after the job: %v", err)
	}
	if got := g.states(); got != "starting running finishing succeeded" {
		t.Fatalf("states %q", got)
	}
	rep := g.final()
	if rep.ExitCode == nil || *rep.ExitCode != 0 || rep.Usage == nil || rep.Error != "" {
		t.Fatalf("final report %+v", rep)
	}
	if g.log("stdout") != "input\n" || g.log("stderr") != "to stderr\n" {
		t.Fatalf("logs %q %q", g.log("stdout"), g.log("stderr"))
	}
	for p, want := range map[string]string{"result.txt": "n=3\n", "params.out": `{"n":3}` + "\n", "sub/deep.txt": "x\n"} {
		if got, ok := g.output(p); !ok || got != want {
			t.Errorf("output %s = %q, %v; want %q", p, got, ok, want)
		}
	}
	if _, ok := g.output("link.txt"); ok {
		t.Error("a symlink was uploaded")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the working directory is left: %v", err)
	}
}

// The gateway answers 503 for a while on every route (a restart): the
// agent retries each call and loses nothing.
func TestRetriesWhileGatewayUnavailable(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`echo one; echo two > out.txt`), Outputs: []string{"out.txt"}})
	for _, r := range []string{"spec", "state", "logs", "outputs"} {
		g.unavailable[r] = 2
	}
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if got := g.final(); got.State != api.StateSucceeded {
		t.Fatalf("final %+v", got)
	}
	if g.log("stdout") != "one\n" {
		t.Fatalf("stdout %q", g.log("stdout"))
	}
	if got, _ := g.output("out.txt"); got != "two\n" {
		t.Fatalf("output %q", got)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for r, n := range g.unavailable {
		if n != 0 {
			t.Errorf("route %s: %d 503s left unasked (calls %d)", r, n, g.calls[r])
		}
	}
}

// A job that fails for good (a 4xx other than 408/429) is not retried.
func TestNoRetryOnClientError(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh("true")})
	o, _ := opts(t)
	err := Run(context.Background(), c, "job2", o) // not the token's job: 404
	if err == nil || !strings.Contains(err.Error(), "no longer accepts") {
		t.Fatalf("Run of another job: %v", err)
	}
	if g.calls["spec"] != 1 {
		t.Fatalf("%d spec calls, want 1", g.calls["spec"])
	}
}

// A restarted agent resumes the logs at the offsets the spec gives.
func TestResumesLogsAtSpecOffsets(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`echo second; echo err2 >&2`)})
	g.logs["stdout"] = []byte("first run\n")
	g.logs["stderr"] = []byte("err1\n")
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if got := g.log("stdout"); got != "first run\nsecond\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := g.log("stderr"); got != "err1\nerr2\n" {
		t.Fatalf("stderr %q", got)
	}
}

// Once the gateway says a stream is full, the agent sends no more of it
// (each chunk would cross the network to be dropped), and the job goes
// on and succeeds.
func TestStopsShippingAFullLog(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`head -c 3000000 /dev/zero | tr '\0' x; echo done >&2`)})
	g.logLimit = 100
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if got := g.log("stdout"); got != strings.Repeat("x", 100)+"\n[full]\n" {
		t.Fatalf("stdout %q", got)
	}
	if got := g.log("stderr"); got != "done\n" {
		t.Fatalf("stderr %q", got)
	}
	if rep := g.final(); rep.State != api.StateSucceeded {
		t.Fatalf("final report %+v", rep)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.pastFull["stdout"]; n > 0 {
		t.Fatalf("%d appends to stdout after the gateway said it was full", n)
	}
}

// Outputs are uploaded also when the command failed; the report says how.
func TestUploadsOutputsAfterFailure(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`echo partial > part.txt; echo "disk full" >&2; exit 3`), Outputs: []string{"part.txt"}})
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	rep := g.final()
	if rep.State != api.StateFailed || rep.ExitCode == nil || *rep.ExitCode != 3 || rep.Error != "the command failed with exit code 3" {
		t.Fatalf("final %+v", rep)
	}
	if got, ok := g.output("part.txt"); !ok || got != "partial\n" {
		t.Fatalf("output %q %v", got, ok)
	}
	if !strings.Contains(g.states(), "finishing failed") {
		t.Fatalf("states %q", g.states())
	}
}

// One output the gateway refuses (over the upload limit or the quota)
// stopped the upload: the outputs after it were lost, with the working
// directory. The others now go, the job fails naming the refused one,
// and the working directory stays.
func TestRefusedOutputLeavesTheOthers(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`echo a > a.txt; echo big > m_big.bin; echo z > z.txt`), Outputs: []string{"*"}})
	g.refuse = map[string]int{"m_big.bin": http.StatusRequestEntityTooLarge}
	o, dir := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"a.txt", "z.txt"} {
		if _, ok := g.output(f); !ok {
			t.Errorf("%s was not uploaded", f)
		}
	}
	rep := g.final()
	if rep.State != api.StateFailed || !strings.Contains(rep.Error, "m_big.bin") || !strings.Contains(rep.Error, "the 3 other outputs were uploaded") || !strings.Contains(rep.Error, "working directory is kept: "+dir) {
		t.Fatalf("final %+v", rep)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "m_big.bin")); err != nil || string(b) != "big\n" {
		t.Fatalf("the refused output in the working directory: %q, %v", b, err)
	}
}

// An object store the node cannot reach: the outputs go through the
// gateway, and the presigned URL, which the gateway counts against the
// quota each time it hands one out, is asked once, not at every retry
// (found by the sixth probe: a 13-byte output counted as 35 files).
func TestOutputsThroughTheGatewayWhenTheStoreIsAway(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`echo a > a.txt; echo b > b.txt`), Outputs: []string{"*.txt"}, DirectOutputs: true})
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if rep := g.final(); rep.State != api.StateSucceeded {
		t.Fatalf("final %+v", rep)
	}
	for _, f := range []string{"a.txt", "b.txt"} {
		if _, ok := g.output(f); !ok {
			t.Errorf("%s was not uploaded", f)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if n := g.calls["output-urls"]; n != 1 {
		t.Fatalf("%d output URLs asked, want 1 (then the gateway for the rest)", n)
	}
}

// Once the command has ended, the agent waits longer for a gateway away
// than before it (FinishRetryFor): a gateway down for maintenance longer
// than RetryFor failed jobs that had succeeded and lost their outputs
// (found by the sixth probe).
func TestFinishOutlastsAnOutage(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`echo done > a.txt`), Outputs: []string{"a.txt"}})
	g.mu.Lock()
	g.unavailable["outputs"] = 4 // about 1.5 s of back-off
	g.mu.Unlock()
	o, _ := opts(t)
	o.RetryFor, o.FinishRetryFor = 300*time.Millisecond, 30*time.Second
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if rep := g.final(); rep.State != api.StateSucceeded {
		t.Fatalf("final %+v", rep)
	}
	if got, ok := g.output("a.txt"); !ok || got != "done\n" {
		t.Fatalf("output %q %v", got, ok)
	}
}

func TestFailedAdapterSaysWhich(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh("echo never"),
		Adapters: api.Adapters{Verify: sh(`echo "input is not FASTA" >&2; exit 1`)}})
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	rep := g.final()
	if rep.State != api.StateFailed || rep.Error != "the verify adapter failed with exit code 1: input is not FASTA" {
		t.Fatalf("final %+v", rep)
	}
	if strings.Contains(g.log("stdout"), "never") {
		t.Fatal("the command ran after its verify adapter failed")
	}
}

// The walltime stops the command (its whole process group); the report
// says so. Under -race this also checks the watcher's hand-over.
func TestWalltime(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`echo started; sleep 30 & sleep 30; echo never`),
		Resources: api.Resources{WalltimeS: 1}})
	o, _ := opts(t)
	start := time.Now()
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v", d)
	}
	rep := g.final()
	if rep.State != api.StateFailed || rep.Error != "the walltime of 1s was exceeded" {
		t.Fatalf("final %+v", rep)
	}
	// SIGTERM ended it: 128 + 15, as a shell says, where it was -1
	if rep.ExitCode == nil || *rep.ExitCode != 143 {
		t.Fatalf("exit code %v, want 143", rep.ExitCode)
	}
	if g.log("stdout") != "started\n" {
		t.Fatalf("stdout %q", g.log("stdout"))
	}
}

// A command ended by a signal (not the walltime) says which.
func TestKilledBySignal(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`kill -9 $$`)})
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	rep := g.final()
	if rep.State != api.StateFailed || !strings.Contains(rep.Error, "killed by signal killed") {
		t.Fatalf("final %+v", rep)
	}
	if rep.ExitCode == nil || *rep.ExitCode != 137 {
		t.Fatalf("exit code %v, want 137 (128 + SIGKILL)", rep.ExitCode)
	}
}

// A job canceled at the gateway stops: the agent notices its token no
// longer works, kills the command and reports nothing more.
func TestStopsWhenJobCanceled(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`while :; do echo tick; sleep 0.05; done`)})
	o, _ := opts(t)
	go g.cancelOnceLogged("tick")
	start := time.Now()
	err := Run(context.Background(), c, "job1", o)
	if err == nil || !strings.Contains(err.Error(), "no longer accepts") {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("took %v to stop", d)
	}
	if got := g.states(); strings.Contains(got, "succeeded") || strings.Contains(got, "failed") {
		t.Fatalf("reported %q after the cancel", got)
	}
}

// A job that goes on printing into a full stream still asks whether it is
// wanted: the bytes it dropped counted as traffic, so its heartbeat never
// ran, no append was refused, and a cancel through another replica never
// reached it.
func TestFullLogStillHearsCancel(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh(`while :; do echo tick; sleep 0.05; done`)})
	g.logLimit = 10
	o, _ := opts(t)
	go g.cancelOnceLogged("[full]")
	done := make(chan error, 1)
	go func() { done <- Run(context.Background(), c, "job1", o) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no longer accepts") {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the job printing into a full log did not stop 20 s after its cancel")
	}
}

func TestInputResumes(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh("cat big.bin > copy.bin"), Outputs: []string{"copy.bin"},
		Inputs: []api.SpecInput{{Name: "big", Path: "big.bin", Size: 10}}})
	g.inputs["big"] = []byte("0123456789")
	o, dir := opts(t)
	// An earlier attempt got the first four bytes.
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), []byte("0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if got, _ := g.output("copy.bin"); got != "0123456789" {
		t.Fatalf("input as the command saw it: %q", got)
	}
}

func TestUnsafeInputPath(t *testing.T) {
	g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh("true"), Inputs: []api.SpecInput{{Name: "x", Path: "../escape", Size: 1}}})
	g.inputs["x"] = []byte("x")
	o, dir := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if rep := g.final(); rep.State != api.StateFailed || !strings.Contains(rep.Error, "unsafe path") {
		t.Fatalf("final %+v", rep)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
		t.Fatal("an input was written outside the working directory")
	}
}

// A directory the command replaced by a link (to the gateway's data, say)
// is not followed when outputs are uploaded: only files really below the
// working directory go.
func TestOutputsNotThroughLinks(t *testing.T) {
	secret := t.TempDir()
	if err := os.WriteFile(filepath.Join(secret, "admin.token"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	g, c := newGateway(t, api.Spec{JobID: "job1",
		Command: sh(`mkdir real; echo ok > real/a.txt; ln -s "$HPCGATE_PARAM_SECRET" results`),
		Env:     map[string]string{"HPCGATE_PARAM_SECRET": secret},
		Outputs: []string{"real/*", "results/*"}})
	o, _ := opts(t)
	if err := Run(context.Background(), c, "job1", o); err != nil {
		t.Fatal(err)
	}
	if got, ok := g.output("real/a.txt"); !ok || got != "ok\n" {
		t.Errorf("real/a.txt = %q, %v", got, ok)
	}
	if got, ok := g.output("results/admin.token"); ok {
		t.Fatalf("a file behind a link was uploaded: %q", got)
	}
}

// A refusal of every output says that none was uploaded: it said the
// others were (found by the eighth probe).
func TestRefusalsSayWhatWasUploaded(t *testing.T) {
	refused := &client.Error{Problem: api.Problem{Status: http.StatusConflict, Detail: "quota"}}
	var none, some refusals
	none.note(refused)
	none.note(refused)
	some.note(nil)
	some.note(refused)
	if err := none.err(); err == nil || !strings.HasSuffix(err.Error(), "(no output was uploaded)") {
		t.Errorf("all refused: %v", err)
	}
	if err := some.err(); err == nil || !strings.HasSuffix(err.Error(), "(the other output was uploaded)") {
		t.Errorf("one refused: %v", err)
	}
	if err := (refusals{tried: 3}).err(); err != nil {
		t.Errorf("none refused: %v", err)
	}
}
