// Command hpcgate-bench measures a real hpcgate server, started as its own
// process on a fresh data directory, against baselines measured in the same
// run. It prints a Markdown report.
//
//	go build -o /tmp/hpcgate ./cmd/hpcgate
//	go run ./cmd/hpcgate-bench --bin /tmp/hpcgate
//
// Measured: jobs accepted per second (created held, so nothing runs) with
// concurrent clients over TLS, with p50/p99 latency; trivial jobs per
// second end to end on the local executor; upload and download speed of a
// large file through the gateway against the same bytes written to and
// read from the same disk directly, with the server's RSS growth.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

func main() {
	bin := flag.String("bin", "", "the hpcgate binary (required)")
	jobs := flag.Int("jobs", 6000, "jobs to create in the acceptance run")
	clients := flag.Int("clients", 16, "concurrent clients")
	e2e := flag.Int("e2e", 200, "trivial jobs to run end to end")
	sizeMiB := flag.Int("size-mib", 1024, "size of the transfer file")
	engines := flag.String("engines", "", "with --config: measure job latency on these environments (e.g. slurm,sge) instead")
	config := flag.String("config", "", "server config for --engines (e.g. examples/config/cluster.yaml)")
	n := flag.Int("n", 30, "jobs per path for --engines and --only containers")
	pgURL := flag.String("postgres", "", "with --s3: compare PostgreSQL with SQLite and S3 upload paths (URL from scripts/setup-postgres.sh)")
	s3URL := flag.String("s3", "", "objects URL from scripts/setup-s3.sh, with --postgres")
	only := flag.String("only", "", `"accept": measure acceptance alone, durable against --unsynced, --rounds times; "containers": what a container adds to a trivial job, --n jobs each, on --engines (default local; local,slurm after scripts/setup-slurm.sh; needs scripts/setup-podman.sh and CONTAINERS_CONF); "sweep": --n variants as one sweep against --n single jobs on the environment --engines names (default slurm; needs --config); "tes": GA4GH TES task creation against native job creation, --jobs each, --rounds times; "webui": the web interface's pages in headless Chromium with --n jobs stored (e.g. 100000) and a --log-mb log (needs scripts/setup-browser.sh)`)
	unsynced := flag.String("unsynced", "OFF", "SQLite synchronous settings (comma-separated, e.g. OFF,NORMAL) of servers measured beside the durable one (FULL); \"\" for none")
	sweepOnly := flag.Bool("sweep-only", false, "with --only sweep: the sweep alone, without the single jobs (its arrays are canceled with scancel)")
	httpVersions := flag.String("http", "2", `HTTP versions of the clients, comma-separated: "2", "1.1"; --only accept measures each, other runs the first`)
	loads := flag.String("load", loadGo, `with --only accept: load generators, comma-separated: "go" (the hpcgate client library, as the CLI), "h2load" (nghttp2's, in C: Debian's nghttp2-client)`)
	rounds := flag.Int("rounds", 3, "with --only accept: rounds, each measuring every server once in turn; with --only webui: page loads of each kind")
	logMB := flag.Int("log-mb", 200, "with --only webui: the size of the big log, in MB")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "hpcgate-bench: --bin is required")
		os.Exit(2)
	}
	protos = strings.Split(*httpVersions, ",")
	for _, p := range protos {
		if p != "2" && p != "1.1" {
			fmt.Fprintf(os.Stderr, "hpcgate-bench: --http %s: want 2 or 1.1\n", p)
			os.Exit(2)
		}
	}
	loadList := strings.Split(*loads, ",")
	for _, l := range loadList {
		if l != loadGo && l != loadH2load {
			fmt.Fprintf(os.Stderr, "hpcgate-bench: --load %s: want go or h2load\n", l)
			os.Exit(2)
		}
	}
	var syncs []string
	if *unsynced != "" {
		syncs = strings.Split(*unsynced, ",")
	}
	var err error
	switch {
	case *only == "accept":
		err = acceptOnly(*bin, *jobs, *clients, *rounds, syncs, loadList)
	case *only == "containers":
		list := []string{"local"}
		if *engines != "" {
			list = strings.Split(*engines, ",")
		}
		err = containers(*bin, list, *n)
	case *only == "sweep":
		env := "slurm"
		if *engines != "" {
			env = *engines
		}
		err = sweepBench(*bin, *config, env, *n, *sweepOnly)
	case *only == "webui":
		err = webUI(*bin, *n, *logMB, *rounds)
	case *only == "tes":
		err = tesBench(*bin, *jobs, *clients, *rounds)
	case *only != "":
		err = fmt.Errorf("--only %q: want accept, containers, sweep, tes or webui", *only)
	case *engines != "":
		err = latency(*bin, *config, strings.Split(*engines, ","), *n)
	case *pgURL != "" || *s3URL != "":
		err = storage(*bin, *pgURL, *s3URL, []int64{1 << 30, 4 << 30}, *jobs, *clients)
	default:
		err = run(*bin, *jobs, *clients, *e2e, int64(*sizeMiB)<<20, syncs)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hpcgate-bench:", err)
		os.Exit(1)
	}
}

type server struct {
	cmd    *exec.Cmd
	url    string
	token  string
	cacert string
	proto  string // the HTTP version of its clients: "2" or "1.1"
}

// protos are the HTTP versions --http names; servers' clients speak the
// first unless a measurement sets server.proto.
var protos = []string{"2"}

func startServer(bin, dir string, extra ...string) (*server, error) {
	return startServerEnv(bin, dir, nil, extra...)
}

// syncEnv is the environment variable that sets the SQLite synchronous
// setting of a server the bench starts (sqlitestore.Options.Synchronous):
// benchmarks only.
const syncEnv = "HPCGATE_BENCH_SQLITE_SYNCHRONOUS"

// benchConfig lifts the quotas and rate limits of a server the bench
// starts without a config of its own.
const benchConfig = `quotas: {default: {jobs: 0, cores: 0, bytes: 0}}
rate_limit: {requests_per_second: 0, job_requests_per_second: 0}
`

// startServerEnv starts a server with env added to this process's.
func startServerEnv(bin, dir string, env []string, extra ...string) (*server, error) {
	if !slices.Contains(extra, "--config") {
		// Benchmarks measure the gateway, not its limiter: no quotas, no
		// rate limits.
		cfg := filepath.Join(dir, "bench.yaml")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(cfg, []byte(benchConfig), 0o600); err != nil {
			return nil, err
		}
		extra = append(extra, "--config", cfg)
	}
	cmd := exec.Command(bin, append([]string{"server", "--data-dir", filepath.Join(dir, "data"), "--addr", "127.0.0.1:0", "--log-level", "warn"}, extra...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, cacert: filepath.Join(dir, "data", "tls", "cert.pem"), proto: protos[0]}
	sc := bufio.NewScanner(out)
	for s.url == "" && sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "hpcgate listening on "); ok {
			s.url = u
		}
	}
	go io.Copy(io.Discard, out)
	tok, err := os.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		return nil, err
	}
	s.token = strings.TrimSpace(string(tok))
	return s, nil
}

// serverWithConfig starts a server in dir with the config file config,
// and a client of its admin's.
func serverWithConfig(bin, dir, config string) (*server, *client.Client, error) {
	s, err := startServer(bin, dir, "--config", config)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.client()
	if err != nil {
		s.stop()
		return nil, nil, err
	}
	return s, c, nil
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// client is a client of s's admin with a connection of its own, speaking
// HTTP/s.proto: HTTP/2 as the hpcgate CLI and Go clients do, or HTTP/1.1
// as curl without --http2, Python's requests and most workflow engines do.
func (s *server) client() (*client.Client, error) {
	c, err := client.New(s.url, s.token, &client.Options{CACertFile: s.cacert})
	if err != nil || s.proto == "2" {
		return c, err
	}
	tr := c.Transport().(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2
	if tr.TLSClientConfig != nil {
		tr.TLSClientConfig.NextProtos = nil
	}
	return client.New(s.url, s.token, &client.Options{HTTPClient: &http.Client{Transport: tr}})
}

// rss returns the server's resident and peak resident set, in bytes.
func (s *server) rss() (cur, peak int64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = n << 10
		case "VmHWM:":
			peak = n << 10
		}
	}
	return cur, peak
}

// resetPeak restarts the server's peak-RSS count.
func (s *server) resetPeak() {
	os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", s.cmd.Process.Pid), []byte("5"), 0)
}

func percentile(d []time.Duration, p float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[int(float64(len(d)-1)*p)]
}

func header() {
	fmt.Printf("## Run of %s\n\nMachine: %d cores (GOMAXPROCS %d), %s. Server and clients share the machine.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS+"/"+runtime.GOARCH)
}

// acceptServers starts a server for each SQLite synchronous setting of
// names, each on its own data directory under dir.
func acceptServers(bin, dir string, names []string) ([]*server, error) {
	var ss []*server
	for _, n := range names {
		s, err := startServerEnv(bin, filepath.Join(dir, "sync-"+n), []string{syncEnv + "=" + n})
		if err != nil {
			for _, s := range ss {
				s.stop()
			}
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, nil
}

func durability(sync string) string {
	if sync == "FULL" {
		return "durable (synchronous=FULL, as shipped)"
	}
	return "not durable (synchronous=" + sync + ", benchmark only)"
}

// acceptOnly measures acceptance alone: a durable server beside servers
// that do not sync, each measured once per round in turn with each HTTP
// version and load generator, so that all see the same machine. Every
// round starts new servers on empty data directories, so that no round
// inherits another's jobs.
func acceptOnly(bin string, jobs, clients, rounds int, syncs, loads []string) error {
	dir, err := os.MkdirTemp("", "hpcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	names := append([]string{"FULL"}, syncs...)
	header()
	fmt.Printf("### Jobs accepted (held), %d clients over TLS, SQLite: durable vs not, same run\n\n", clients)
	fmt.Printf("Each round starts a server per setting on an empty data directory and measures each in turn, with clients of each HTTP version and load generator.\n\n")
	fmt.Printf("| round | SQLite | HTTP | load | jobs | jobs/s | p50 | p99 |\n|---|---|---|---|---|---|---|---|\n")
	type setting struct{ sync, proto, load string }
	var settings []setting
	for _, l := range loads {
		for _, p := range protos {
			for _, n := range names {
				settings = append(settings, setting{n, p, l})
			}
		}
	}
	rates := make([][]float64, len(settings))
	for r := 1; r <= rounds; r++ {
		ss, err := acceptServers(bin, filepath.Join(dir, strconv.Itoa(r)), names)
		if err != nil {
			return err
		}
		for i, st := range settings {
			s := ss[slices.Index(names, st.sync)]
			s.proto = st.proto
			measure := accept
			if st.load == loadH2load {
				measure = acceptH2load
			}
			rate, p50, p99, err := measure(s, jobs, clients)
			if err != nil {
				return err
			}
			rates[i] = append(rates[i], rate)
			fmt.Printf("| %d | %s | %s | %s | %d | **%.0f** | %v | %v |\n", r, durability(st.sync), st.proto, st.load, jobs, rate, p50, p99)
		}
		for _, s := range ss {
			s.stop()
		}
	}
	fmt.Printf("\n| SQLite | HTTP | load | median jobs/s | min | max | of durable |\n|---|---|---|---|---|---|---|\n")
	for i, st := range settings {
		m := median(rates[i])
		base := median(rates[slices.Index(settings, setting{"FULL", st.proto, st.load})])
		fmt.Printf("| %s | %s | %s | **%.0f** | %.0f | %.0f | %.2f |\n", durability(st.sync), st.proto, st.load, m, slices.Min(rates[i]), slices.Max(rates[i]), m/base)
	}
	fmt.Println()
	return nil
}

func median(x []float64) float64 {
	y := slices.Clone(x)
	slices.Sort(y)
	if len(y)%2 == 1 {
		return y[len(y)/2]
	}
	return (y[len(y)/2-1] + y[len(y)/2]) / 2
}

func run(bin string, jobs, clients, e2e int, size int64, syncs []string) error {
	dir, err := os.MkdirTemp("", "hpcgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s, err := startServer(bin, dir)
	if err != nil {
		return err
	}
	defer s.stop()
	ctx := context.Background()
	header()

	// 1. Acceptance: held jobs, so nothing runs; beside it, the same on
	// servers that do not sync, to show what durability costs.
	rate, p50, p99, err := accept(s, jobs, clients)
	if err != nil {
		return err
	}
	fmt.Printf("### Jobs accepted (held), %d clients over TLS, SQLite\n\n| SQLite | jobs | jobs/s | p50 | p99 |\n|---|---|---|---|---|\n| %s | %d | **%.0f** | %v | %v |\n",
		clients, durability("FULL"), jobs, rate, p50, p99)
	if len(syncs) > 0 {
		ss, err := acceptServers(bin, filepath.Join(dir, "unsynced"), syncs)
		if err != nil {
			return err
		}
		for i, u := range ss {
			r, p50, p99, err := accept(u, jobs, clients)
			if err != nil {
				return err
			}
			fmt.Printf("| %s | %d | **%.0f** | %v | %v |\n", durability(syncs[i]), jobs, r, p50, p99)
		}
		for _, u := range ss {
			u.stop()
		}
	}
	fmt.Println()
	params := json.RawMessage(`{"name":"bench"}`)
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	var start time.Time
	var elapsed time.Duration

	// 2. Trivial jobs end to end on the local executor.
	start = time.Now()
	ids := make(chan string, e2e)
	for w := 0; w < clients; w++ {
		c, _ := s.client()
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < e2e; i += clients {
				j, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: params}, "")
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				ids <- j.ID
			}
		}(w)
	}
	wg.Wait()
	close(ids)
	c, _ := s.client()
	failed := 0
	for id := range ids {
		j, err := c.Wait(ctx, id)
		if err != nil {
			return err
		}
		if j.State != api.StateSucceeded {
			failed++
		}
	}
	elapsed = time.Since(start)
	if firstErr != nil {
		return fmt.Errorf("end to end: %w", firstErr)
	}
	fmt.Printf("### Trivial jobs end to end (hello, local executor, %d slots)\n\n| jobs | failed | seconds | jobs/s |\n|---|---|---|---|\n| %d | %d | %.2f | **%.1f** |\n\n",
		runtime.NumCPU(), e2e, failed, elapsed.Seconds(), float64(e2e)/elapsed.Seconds())

	// 3. Transfers against the same disk.
	src := filepath.Join(dir, "big.bin")
	if err := makeFile(src, size); err != nil {
		return err
	}
	mb := float64(size) / 1e6
	t0 := time.Now()
	if err := copyFile(src, filepath.Join(dir, "copy.bin")); err != nil {
		return err
	}
	diskW := mb / time.Since(t0).Seconds()
	t0 = time.Now()
	if err := readFile(filepath.Join(dir, "copy.bin")); err != nil {
		return err
	}
	diskR := mb / time.Since(t0).Seconds()
	os.Remove(filepath.Join(dir, "copy.bin"))

	before, _ := s.rss()
	s.resetPeak()
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	t0 = time.Now()
	if _, err := c.PutFile(ctx, "bench/big.bin", f, size); err != nil {
		return err
	}
	f.Close()
	up := mb / time.Since(t0).Seconds()
	_, peakUp := s.rss()
	s.resetPeak()
	t0 = time.Now()
	rc, _, err := c.GetFile(ctx, "bench/big.bin", 0)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != size {
		return fmt.Errorf("download: %d bytes, %v", n, err)
	}
	down := mb / time.Since(t0).Seconds()
	_, peakDown := s.rss()
	bareUp, bareDown, err := bareHTTPS(src, size)
	if err != nil {
		return err
	}
	fmt.Printf("### Transfer of %d MiB through the gateway (file store), against baselines in the same run\n\n", size>>20)
	fmt.Printf("Baselines: the same bytes through a bare stdlib HTTPS server (same TLS and HTTP/2 settings, no storage, no checksum), and the disk alone.\n\n")
	fmt.Printf("| | gateway MB/s | bare HTTPS MB/s | gateway / bare | disk alone MB/s | server RSS growth |\n|---|---|---|---|---|---|\n")
	fmt.Printf("| upload (PUT: sha256, write, fsync) | **%.0f** | %.0f | %.2f | %.0f (write + fsync) | %d MiB |\n", up, bareUp, up/bareUp, diskW, max(0, peakUp-before)>>20)
	fmt.Printf("| download (GET) | **%.0f** | %.0f | %.2f | %.0f (read) | %d MiB |\n\n", down, bareDown, down/bareDown, diskR, max(0, peakDown-before)>>20)
	return nil
}

// bareHTTPS measures a PUT and a GET of size bytes through a minimal
// stdlib HTTPS server that stores nothing: what TLS and HTTP/2 alone allow
// on this machine.
func bareHTTPS(src string, size int64) (up, down float64, err error) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			io.Copy(io.Discard, r.Body)
			return
		}
		f, err := os.Open(src)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer f.Close()
		io.CopyBuffer(w, struct{ io.Reader }{f}, make([]byte, 1<<20))
	}))
	ts.EnableHTTP2 = true
	ts.Config.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerConnection: 16 << 20, MaxReceiveBufferPerStream: 8 << 20, MaxReadFrameSize: 1 << 20}
	ts.StartTLS()
	defer ts.Close()
	tr := ts.Client().Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true
	tr.WriteBufferSize, tr.ReadBufferSize = 256<<10, 256<<10
	tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerConnection: 16 << 20, MaxReceiveBufferPerStream: 8 << 20, MaxReadFrameSize: 1 << 20}
	hc := ts.Client()
	mb := float64(size) / 1e6
	f, err := os.Open(src)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	req, _ := http.NewRequest(http.MethodPut, ts.URL, f)
	req.ContentLength = size
	t0 := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, 0, err
	}
	resp.Body.Close()
	up = mb / time.Since(t0).Seconds()
	t0 = time.Now()
	resp, err = hc.Get(ts.URL)
	if err != nil {
		return 0, 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	down = mb / time.Since(t0).Seconds()
	return up, down, nil
}

// accept creates jobs held (so nothing runs) from concurrent clients and
// returns the rate and the latency percentiles.
func accept(s *server, jobs, clients int) (rate float64, p50, p99 time.Duration, err error) {
	params := json.RawMessage(`{"name":"bench"}`)
	return concurrently(s, jobs, clients, "acceptance", func(ctx context.Context, c *client.Client) error {
		_, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: params, Hold: true}, "")
		return err
	})
}

// concurrently calls create n times from clients concurrent clients of s
// and returns the rate and the latency percentiles.
func concurrently(s *server, n, clients int, what string, create func(context.Context, *client.Client) error) (rate float64, p50, p99 time.Duration, err error) {
	ctx := context.Background()
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for w := 0; w < clients; w++ {
		c, cerr := s.client()
		if cerr != nil {
			return 0, 0, 0, cerr
		}
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += clients {
				t0 := time.Now()
				e := create(ctx, c)
				lat[i] = time.Since(t0)
				if e != nil {
					mu.Lock()
					err = e
					mu.Unlock()
					return
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("%s: %w", what, err)
	}
	return float64(n) / elapsed.Seconds(), percentile(lat, 0.5).Round(time.Microsecond), percentile(lat, 0.99).Round(time.Microsecond), nil
}

func makeFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	rand.Read(buf)
	for left := size; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			return err
		}
	}
	return f.Sync()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(struct{ io.Writer }{out}, in); err != nil { // a plain copy, as the server does
		return err
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

func readFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, struct{ io.Reader }{f})
	return err
}
