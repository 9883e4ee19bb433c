package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/client"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/config"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/testenv"
)

// tlog routes a logger to t.Log.
type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func testConfig(t *testing.T, templateDir string) *config.Config {
	cfg := &config.Config{DataDir: t.TempDir(), Addr: "127.0.0.1:0", InsecureHTTP: true, NoBuiltinTemplates: true}
	if templateDir != "" {
		cfg.TemplateDirs = []string{templateDir}
	}
	cfg.Local.Slots = 1
	cfg.Fill()
	return cfg
}

// slowSched is an engine whose Submit ignores its context for a while,
// like an sbatch that takes its time: Run must wait for it.
type slowSched struct {
	entered  chan struct{}
	returned atomic.Bool
}

func (s *slowSched) Name() string { return "slow" }
func (s *slowSched) Submit(ctx context.Context, t sched.Task) (string, error) {
	close(s.entered)
	time.Sleep(300 * time.Millisecond)
	s.returned.Store(true)
	return "", errors.New("slow engine says no")
}
func (s *slowSched) Poll(ctx context.Context, ids []string) (map[string]sched.Status, error) {
	return map[string]sched.Status{}, nil
}
func (s *slowSched) Cancel(ctx context.Context, id string) error { return nil }
func (s *slowSched) Ping(ctx context.Context) error              { return nil }

// runInBackground runs g (listening already) until cancel; done answers
// what Run returned.
func runInBackground(ctx context.Context, g *Gateway) (cancel context.CancelFunc, done <-chan error) {
	rctx, cancel := context.WithCancel(ctx)
	d := make(chan error, 1)
	go func() { d <- g.Run(rctx) }()
	return cancel, d
}

func TestRunWaitsForWhatItStarted(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "")
	g, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	slow := &slowSched{entered: make(chan struct{})}
	g.scheds["local"] = slow
	if _, err := g.store.CreateJob(ctx, &job.Job{ID: "j1", Owner: "u", Template: "t", TemplateVersion: 1, Environment: "local",
		State: job.Pending, Reason: "created", Parameters: json.RawMessage("{}"), CreatedAt: time.Now()}, nil); err != nil {
		t.Fatal(err)
	}
	if err := g.Listen(); err != nil {
		t.Fatal(err)
	}
	cancel, done := runInBackground(ctx, g)
	select {
	case <-slow.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the dispatcher never submitted")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return")
	}
	if !slow.returned.Load() {
		t.Fatal("Run returned while the dispatcher was still inside the engine's Submit")
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestGroupWaitsForAll(t *testing.T) {
	var ended atomic.Int32
	gr := newGroup(context.Background())
	boom := errors.New("boom")
	gr.Go(func(ctx context.Context) error { return boom })
	for range 3 {
		gr.Go(func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond)
			ended.Add(1)
			return nil
		})
	}
	if err := gr.Wait(); err != boom {
		t.Fatalf("Wait = %v, want the first error", err)
	}
	if n := ended.Load(); n != 3 {
		t.Fatalf("Wait returned with %d of 3 functions ended", n)
	}
}

func TestSecondServerOnDataDirRefused(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "")
	g1, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, cfg, testLogger(t), io.Discard)
	if err == nil {
		t.Fatal("a second gateway opened the same data directory")
	}
	if want := "pid " + strconv.Itoa(os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the holder (%s)", err, want)
	}
	t.Logf("second open: %v", err)
	if err := g1.Close(); err != nil {
		t.Fatal(err)
	}
	g2, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatalf("open after the first closed: %v", err)
	}
	g2.Close()
}

// A database that cannot be reached is said as such: the failed start's
// clean-up panicked on a nil store in the interface, and the cause was
// never shown (found by the sixth probe). The data directory is free
// again after it.
func TestUnreachableDatabaseSaysWhy(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.Database = "postgres://nobody@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=2"
	_, err := Open(context.Background(), cfg, testLogger(t), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "connect to postgres at 127.0.0.1:1/nothing") {
		t.Fatalf("Open with an unreachable database: %v", err)
	}
	cfg.Database = ""
	g, err := Open(context.Background(), cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatalf("the data directory after a failed start: %v", err)
	}
	g.Close()
}

// A replica's new data directory on a shared database makes no second
// admin token that never expires: each fresh one used to (found by the
// sixth probe). It says how to use the one there is.
func TestOneFirstAdminTokenPerDatabase(t *testing.T) {
	db := testenv.PostgresSchema(t)
	var outs []string
	for i := range 2 {
		cfg := testConfig(t, "")
		cfg.Database = db
		var out strings.Builder
		g, err := Open(context.Background(), cfg, testLogger(t), &out)
		if err != nil {
			t.Fatal(err)
		}
		_, statErr := os.Stat(filepath.Join(cfg.DataDir, "admin.token"))
		if (statErr == nil) != (i == 0) {
			t.Errorf("data directory %d: admin.token %v", i, statErr)
		}
		toks, err := g.store.ListTokens(context.Background(), "admin")
		g.Close()
		if err != nil || len(toks) != 1 {
			t.Fatalf("after data directory %d: %d admin tokens, %v", i, len(toks), err)
		}
		outs = append(outs, out.String())
	}
	if !strings.Contains(outs[0], "admin token (shown once") || !strings.Contains(outs[1], "has an admin token already") {
		t.Fatalf("said %q", outs)
	}
}

// With every admin disabled, a start without DATA/admin.token makes a new
// admin token and enables the user admin again: admins who disabled each
// other were locked out for good, as the start counted their tokens
// (found by the eighth probe).
func TestAdminTokenWayBack(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "")
	g, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.store.SetUserDisabled(ctx, "admin", true, time.Now()); err != nil {
		t.Fatal(err)
	}
	g.Close()
	os.Remove(filepath.Join(cfg.DataDir, "admin.token"))
	var out strings.Builder
	g, err = Open(ctx, cfg, testLogger(t), &out)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	u, err := g.store.User(ctx, "admin")
	toks, _ := g.store.ListTokens(ctx, "admin")
	if err != nil || u.Disabled || len(toks) != 2 || !strings.Contains(out.String(), "the user admin is enabled again") {
		t.Fatalf("admin %+v, %v, %d tokens; said %q", u, err, len(toks), out.String())
	}
}

// Replicas are named apart: host:data-dir was the name, and two gateways
// on hosts of one name running from one path failed each other's local
// jobs (found by the sixth probe). A new data directory gets a random
// name it keeps; one whose local executor holds tasks from before keeps
// the old name, which their claims hold.
func TestReplicaID(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	ida, err := replicaID(a)
	if err != nil {
		t.Fatal(err)
	}
	idb, _ := replicaID(b)
	host, _ := os.Hostname()
	if ida == idb || !strings.HasPrefix(ida, host+"-") || strings.Contains(ida, a) {
		t.Fatalf("ids %q and %q", ida, idb)
	}
	if again, err := replicaID(a); err != nil || again != ida {
		t.Fatalf("again: %q, %v; want %q", again, err, ida)
	}
	old := t.TempDir()
	if err := os.MkdirAll(filepath.Join(old, "local", "uinitask"), 0o700); err != nil {
		t.Fatal(err)
	}
	if id, err := replicaID(old); err != nil || id != host+":"+old {
		t.Fatalf("a data directory from before: %q, %v", id, err)
	}
}

// TestSecondServerProcessRefused runs the second server as another
// process, as an operator would.
func TestSecondServerProcessRefused(t *testing.T) {
	if os.Getenv("HPCGATE_TEST_SECOND_SERVER") != "" {
		err := Command(context.Background(), []string{"--data-dir", os.Getenv("HPCGATE_TEST_SECOND_SERVER"), "--addr", "127.0.0.1:0", "--insecure-http"}, io.Discard, io.Discard)
		fmt.Fprintln(os.Stderr, "RESULT:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	cfg := testConfig(t, "")
	g, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	cmd := execSelf(t, "TestSecondServerProcessRefused", "HPCGATE_TEST_SECOND_SERVER="+cfg.DataDir)
	start := time.Now()
	out, _ := cmd.CombinedOutput()
	if time.Since(start) > 30*time.Second {
		t.Fatal("the second server took too long to give up")
	}
	want := fmt.Sprintf("in use by another hpcgate server (pid %d)", os.Getpid())
	if !strings.Contains(string(out), want) {
		t.Fatalf("second server said:\n%s\nwant it to contain %q", out, want)
	}
}

const helloV1 = `name: greet
version: 1
command: [echo, hello]
environments: [local]
`

const helloV2 = `name: greet
version: 2
command: [echo, hello, again]
environments: [local]
`

const other = `name: other
version: 1
command: [true]
environments: [local]
`

func templateNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	ts, err := c.Templates(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tp := range ts {
		out = append(out, fmt.Sprintf("%s@%d", tp.Name, tp.Version))
	}
	return out
}

func TestReloadTemplates(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("greet.yaml", helloV1)
	cfg := testConfig(t, dir)
	g, c := running(t, cfg)
	if got := templateNames(t, c); strings.Join(got, " ") != "greet@1" {
		t.Fatalf("templates at start: %v", got)
	}

	write("greet2.yaml", helloV2)
	write("other.yaml", other)
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(templateNames(t, c), " ")
	for _, want := range []string{"greet@2", "other@1"} {
		if !strings.Contains(got, want) {
			t.Fatalf("after reload: %s, want %s offered", got, want)
		}
	}

	// An invalid set keeps the old one.
	write("broken.yaml", "name: broken\nversion: 1\ncommand: [true]\nenvironments: [local]\nbogus_field: 1\n")
	err := g.Reload()
	if err == nil || !strings.Contains(err.Error(), "broken.yaml") {
		t.Fatalf("reload of an invalid set: %v, want an error naming broken.yaml", err)
	}
	if after := strings.Join(templateNames(t, c), " "); after != got {
		t.Fatalf("after a failed reload: %s, want the old set %s", after, got)
	}
	// So does a directory that cannot be read: moved away, its templates
	// all vanished on a reload that said it succeeded (found by the sixth
	// probe).
	os.Remove(filepath.Join(dir, "broken.yaml"))
	if err := os.Rename(dir, dir+".moved"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Rename(dir+".moved", dir) })
	if err := g.Reload(); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("reload with a template directory gone: %v, want an error naming it", err)
	}
	if after := strings.Join(templateNames(t, c), " "); after != got {
		t.Fatalf("after a reload with a directory gone: %s, want the old set %s", after, got)
	}
}

// A template directory that does not exist stops the start, naming it.
func TestMissingTemplateDirRefused(t *testing.T) {
	cfg := testConfig(t, filepath.Join(t.TempDir(), "nosuchdir"))
	if _, err := Open(context.Background(), cfg, testLogger(t), io.Discard); err == nil || !strings.Contains(err.Error(), "nosuchdir") {
		t.Fatalf("Open with a missing template directory: %v", err)
	}
}

// syncBuffer collects output written by another goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReloadOnSIGHUP runs "hpcgate server" in this process and sends it a
// real SIGHUP.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "greet.yaml"), []byte(helloV1), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf("no_builtin_templates: true\ntemplate_dirs: [%q]\n", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Command(ctx, []string{"--config", cfgFile, "--data-dir", dataDir, "--addr", "127.0.0.1:0", "--insecure-http", "--slots", "1"}, pw, logs)
		pw.Close()
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		t.Logf("server log:\n%s", logs.String())
	}()
	var url string
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "hpcgate listening on "); ok {
			url = u
			break
		}
	}
	go io.Copy(io.Discard, pr)
	if url == "" {
		t.Fatal("the server never said where it listens")
	}
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(url, strings.TrimSpace(string(tok)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(templateNames(t, c), " "); got != "greet@1" {
		t.Fatalf("templates at start: %s", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "greet.yaml"), []byte(helloV2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := strings.Join(templateNames(t, c), " ")
		if got == "greet@2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("templates after SIGHUP: %s, want greet@2", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "templates reloaded") {
		t.Fatal("the reload was not logged")
	}
}

// execSelf returns a command running this test binary with only the test
// named run, and env added.
func execSelf(t *testing.T, run string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^"+run+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// running opens a gateway on cfg, runs it until the test ends, and
// returns it with a client holding its admin token.
func running(t *testing.T, cfg *config.Config) (*Gateway, *client.Client) {
	t.Helper()
	ctx := context.Background()
	g, err := Open(ctx, cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Listen(); err != nil {
		g.Close()
		t.Fatal(err)
	}
	cancel, done := runInBackground(ctx, g)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		g.Close()
	})
	tok, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(g.URL(), strings.TrimSpace(string(tok)), nil)
	if err != nil {
		t.Fatal(err)
	}
	return g, c
}

// The server collects garbage less often than Go's default unless GOGC
// says otherwise.
func TestGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	setGCPercent(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != gcPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, gcPercent)
	}
	setGCPercent(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=50 in the environment: GC percent %d, want it left as it was (100)", got)
	}
}

// A start that cannot serve says so before it says it listens (found by
// the sixth probe: a key of another certificate, and a metrics address
// that cannot be bound, failed after "listening"); a certificate jobs will
// not trust is warned of.
func TestStartChecksTLSAndMetrics(t *testing.T) {
	c1, k1, _, err := ensureSelfSigned(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, k2, _, err := ensureSelfSigned(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, "")
	cfg.InsecureHTTP, cfg.TLSCert, cfg.TLSKey = false, c1, k2
	if _, err := Open(context.Background(), cfg, testLogger(t), io.Discard); err == nil || !strings.Contains(err.Error(), "tls_key "+k2) {
		t.Fatalf("Open with the key of another certificate: %v", err)
	}
	// its own key, but a certificate no CA the system trusts signed, and
	// no ca_cert: jobs would wait for a gateway they cannot trust
	var logs syncBuffer
	cfg.TLSKey = k1
	g, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "jobs will not trust the gateway's certificate") {
		t.Errorf("no warning of an untrusted certificate: %s", logs.String())
	}
	g.Close()
	cfg.CACert = c1
	var logs2 syncBuffer
	if g, err = Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs2, nil)), io.Discard); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs2.String(), "will not trust") {
		t.Errorf("a warning with ca_cert, its CA, set: %s", logs2.String())
	}
	g.Close()

	cfg = testConfig(t, "")
	cfg.Metrics.Addr = "garbage"
	g, err = Open(context.Background(), cfg, testLogger(t), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.Listen(); err == nil || !strings.Contains(err.Error(), "metrics.addr") {
		t.Fatalf("Listen with metrics.addr garbage: %v", err)
	}
}

// What only this machine can tell of the environments is checked at
// start: a local one offering more cores than the executor's slots (such a
// job was accepted and failed at once), working directories inside the
// data directory, a slurm_conf that does not exist (found by the sixth
// probe).
func TestEnvironmentsCheckedAtStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(cfg *config.Config)
		want string
	}{
		{"cores over the slots", func(cfg *config.Config) {
			cfg.Environments = []catalog.Environment{{Name: "big", Scheduler: "local", Max: catalog.Limits{CoresPerNode: 64}}}
		}, "max.cores_per_node 64 is more than the local executor's 1 slots"},
		{"workdir_root in the data directory", func(cfg *config.Config) {
			cfg.Environments = append(cfg.Environments, catalog.Environment{Name: "hpc", Scheduler: "slurm", WorkdirRoot: filepath.Join(cfg.DataDir, "w")})
		}, "is inside the data directory"},
		{"slurm_conf missing", func(cfg *config.Config) {
			cfg.Environments = append(cfg.Environments, catalog.Environment{Name: "hpc", Scheduler: "slurm", SlurmConf: "/nonexistent/slurm.conf"})
		}, "slurm_conf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "")
			tc.set(cfg)
			if g, err := Open(context.Background(), cfg, testLogger(t), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
				if g != nil {
					g.Close()
				}
				t.Fatalf("Open: %v, want %q", err, tc.want)
			}
		})
	}
	// the default local environment offers the slots it has
	cfg := testConfig(t, "")
	if cfg.Environments[0].Max.CoresPerNode != 1 {
		t.Fatalf("the default environment offers %d cores with 1 slot", cfg.Environments[0].Max.CoresPerNode)
	}
}

// A server whose address is taken fails before it makes its data
// directory, certificate and first admin token: it printed the token as
// "shown once" and then failed (found by the eighth probe).
func TestBusyAddressMakesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	var out bytes.Buffer
	err = Command(context.Background(), []string{"--data-dir", dataDir, "--addr", busy.Addr().String()}, &out, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("a busy address: %v", err)
	}
	if _, statErr := os.Stat(dataDir); !os.IsNotExist(statErr) || out.Len() > 0 {
		t.Fatalf("after the refusal: data directory %v, printed %q", statErr, out.String())
	}
}
