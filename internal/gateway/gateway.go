// Package gateway is the composition root of "hpcgate server": it reads the
// configuration, chooses and opens the backends in one place, and runs the
// HTTP server, the dispatcher and the local executor until stopped.
package gateway

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"github.com/hpcgate/hpcgate/internal/account"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hpcgate/hpcgate/examples/templates"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/fileblob"
	"github.com/hpcgate/hpcgate/internal/blob/s3blob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/config"
	"github.com/hpcgate/hpcgate/internal/dispatch"
	"github.com/hpcgate/hpcgate/internal/metrics"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/jobscript"
	"github.com/hpcgate/hpcgate/internal/sched/localsched"
	"github.com/hpcgate/hpcgate/internal/sched/sgesched"
	"github.com/hpcgate/hpcgate/internal/sched/slurmsched"
	"github.com/hpcgate/hpcgate/internal/server"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/pgstore"
	"github.com/hpcgate/hpcgate/internal/store/sqlitestore"
	"github.com/hpcgate/hpcgate/internal/webhook"
)

const usage = `usage: hpcgate server [flags]

Runs the gateway. With no flags it keeps everything in ./hpcgate-data
(SQLite database, objects, a self-signed TLS certificate, the first admin
token) and listens on https://127.0.0.1:8443. The first start prints the
admin token and writes it to DATA/admin.token (mode 0600).

Flags override the config file (--config, YAML; see examples/config/).
SIGHUP reloads the templates (template_dirs); an invalid set is logged and
the old one stays. One server per data directory: a second one exits at
once, naming the first one's PID.

Garbage collection: GOGC is 400 unless the environment sets it; set
GOMEMLIMIT too to bound the heap.

Example:
  hpcgate server --data-dir ./data --addr 127.0.0.1:8443

Flags:
`

// gcPercent is the server's GOGC. Its live heap is a few MB, so with
// Go's default of 100 it collected some 50 times a second while accepting
// jobs; at 400 it collects a fifth as often, for a heap of tens of MB, and
// accepts 5 to 10 % more jobs (docs/benchmarks.md).
const gcPercent = 400

// setGCPercent sets the runtime's GOGC to gcPercent unless the
// environment names one.
func setGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
}

// Command is "hpcgate server".
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("server", flag.ContinueOnError)
	fl.Usage = func() { fmt.Fprint(fl.Output(), usage); fl.PrintDefaults() }
	cfgFile := fl.String("config", "", "YAML config file")
	dataDir := fl.String("data-dir", "", "data directory (default ./hpcgate-data)")
	addr := fl.String("addr", "", "listen address (default 127.0.0.1:8443)")
	publicURL := fl.String("public-url", "", "URL jobs reach the gateway at (default https://ADDR)")
	tlsCert := fl.String("tls-cert", "", "TLS certificate PEM file (default: self-signed in DATA/tls)")
	tlsKey := fl.String("tls-key", "", "TLS key PEM file")
	database := fl.String("database", "", "postgres:// URL (default: SQLite in the data directory)")
	objects := fl.String("objects", "", "s3://BUCKET?endpoint=URL (default: the data directory); credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
	insecure := fl.Bool("insecure-http", false, "serve plain HTTP (loopback addresses only)")
	slots := fl.Int("slots", 0, "cores the local executor may use at once (default: CPU count)")
	logLevel := fl.String("log-level", "", "debug, info, warn or error (default info)")
	logFormat := fl.String("log-format", "", "text or json (default text)")
	fl.SetOutput(io.Discard)
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fl.SetOutput(stdout) // asked for: the answer, not an error
			fl.Usage()
			return err
		}
		return fmt.Errorf("server: %v (see hpcgate server --help)", err)
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("server: unexpected argument %q (see hpcgate server --help)", fl.Arg(0))
	}
	setGCPercent(os.Getenv)
	cfg, err := config.Load(*cfgFile)
	if err != nil {
		return err
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.DataDir, *dataDir)
	set(&cfg.Addr, *addr)
	set(&cfg.PublicURL, *publicURL)
	set(&cfg.TLSCert, *tlsCert)
	set(&cfg.TLSKey, *tlsKey)
	set(&cfg.LogLevel, *logLevel)
	set(&cfg.LogFormat, *logFormat)
	set(&cfg.Database, *database)
	set(&cfg.Objects, *objects)
	if *insecure {
		cfg.InsecureHTTP = true
	}
	if *slots < 0 {
		return errors.New("--slots must not be negative")
	}
	if *slots > 0 {
		cfg.Local.Slots = *slots
	}
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)
	// A busy address fails the start before the data directory, its TLS
	// certificate and the first admin token ("shown once") are made
	// (found by the eighth probe); Listen binds it for good after Open.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	ln.Close()
	g, err := Open(ctx, cfg, log, stdout)
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.Listen(); err != nil {
		return err
	}
	// SIGHUP reloads the templates. Asked for before the first line is
	// printed, so that whoever waits for that line may send it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.reload = hup
	fmt.Fprintf(stdout, "hpcgate listening on %s\n", g.URL())
	return g.Run(ctx)
}

// Gateway is a configured gateway.
type Gateway struct {
	cfg       *config.Config
	log       *slog.Logger
	out       io.Writer
	store     store.Store
	bucket    blob.Bucket
	cat       *catalog.Catalog
	local     *localsched.Executor
	scheds    map[string]sched.Scheduler
	certFile  string
	keyFile   string
	caFile    string
	dataDir   string            // absolute
	replica   string            // this gateway among replicas (replicaID)
	workRoot  string            // absolute: jobs' directories when their environment names none
	accounts  *account.Resolver // users' OS accounts
	ln        net.Listener
	extra     []net.Listener // where environments' jobs reach the gateway (gateway_host)
	metricsLn net.Listener   // metrics.addr's, if set
	url       string
	lock      *os.File // DATA/server.lock, flocked while the gateway is open

	// reload, if set, asks Run to reload the templates (SIGHUP).
	reload <-chan os.Signal

	// The catalog changes on Reload; the API is served by a Server over
	// the current one.
	catMu sync.Mutex
	srv   *server.Server // set by Run, under catMu
}

// Open prepares the data directory and opens the backends. It starts no
// goroutine and listens on nothing.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, out io.Writer) (*Gateway, error) {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// The data directory (database, admin token, TLS key, objects) is the
	// gateway's account's alone, also when it was made before.
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	g := &Gateway{cfg: cfg, log: log, out: out, scheds: map[string]sched.Scheduler{}}
	if g.lock, err = lockDataDir(dataDir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			g.Close()
		}
	}()

	if !cfg.InsecureHTTP {
		if cfg.TLSCert != "" {
			g.certFile, g.keyFile, g.caFile = cfg.TLSCert, cfg.TLSKey, cfg.CACert
			if err := checkTLSFiles(cfg, log); err != nil {
				return nil, err
			}
		} else {
			host, _, _ := net.SplitHostPort(cfg.Addr)
			hosts := []string{host}
			if u, err := url.Parse(cfg.PublicURL); err == nil && u.Hostname() != "" {
				hosts = append(hosts, u.Hostname())
			}
			for _, e := range cfg.Environments {
				hosts = append(hosts, e.GatewayHost)
			}
			var created bool
			g.certFile, g.keyFile, created, err = ensureSelfSigned(filepath.Join(dataDir, "tls"), hosts...)
			if err != nil {
				return nil, fmt.Errorf("TLS certificate: %w", err)
			}
			g.caFile = g.certFile
			if cfg.CACert != "" {
				g.caFile = cfg.CACert
			}
			if created {
				fmt.Fprintf(out, "made a self-signed TLS certificate: %s (clients: HPCGATE_CACERT=%s)\n", g.certFile, g.certFile)
			}
		}
	}

	// Backends, chosen here and only here. A store is set only once open:
	// a nil *pgstore.Store in the interface was not nil, and Close of a
	// failed start panicked where it should have said why.
	if cfg.Database != "" {
		st, err := pgstore.Open(ctx, cfg.Database)
		if err != nil {
			return nil, err
		}
		g.store = st
	} else {
		st, err := sqlitestore.Open(ctx, filepath.Join(dataDir, "hpcgate.db"))
		if err != nil {
			return nil, err
		}
		g.store = st
	}
	if g.bucket, err = openObjects(ctx, cfg, dataDir); err != nil {
		return nil, err
	}
	if err := checkEnvironments(cfg, dataDir); err != nil {
		return nil, err
	}
	if g.cat, err = g.loadCatalog(); err != nil {
		return nil, err
	}
	g.dataDir = dataDir
	if g.replica, err = replicaID(dataDir); err != nil {
		return nil, fmt.Errorf("replica id: %w", err)
	}
	if g.workRoot, g.accounts, err = prepareAccounts(cfg, dataDir); err != nil {
		return nil, err
	}
	for _, e := range cfg.Environments {
		switch e.Scheduler {
		case "local":
			if g.local == nil {
				g.local, err = localsched.New(filepath.Join(dataDir, "local"), &localsched.Options{Slots: cfg.Local.Slots, Retention: cfg.Local.WorkdirRetention, Logger: log, Sandbox: g.sandbox(dataDir)})
				if err != nil {
					return nil, err
				}
			}
			g.scheds[e.Name] = g.local
		case "slurm", "sge":
			var script *jobscript.Template // nil: the engine's default, which also makes arrays
			if e.JobScript != "" {
				var err error
				if script, err = jobscript.Load(e.JobScript); err != nil {
					return nil, fmt.Errorf("environment %s: %w", e.Name, err)
				}
			}
			if e.Scheduler == "slurm" {
				g.scheds[e.Name] = slurmsched.New(&slurmsched.Options{Partition: e.Partition, Account: e.Account, QOS: e.QOS, Conf: e.SlurmConf, Script: script, Logger: log})
			} else {
				g.scheds[e.Name] = sgesched.New(&sgesched.Options{Queue: e.Queue, ParallelEnv: e.ParallelEnv, Script: script, Notices: true, Logger: log})
			}
		default:
			return nil, fmt.Errorf("environment %s: unknown scheduler %q", e.Name, e.Scheduler)
		}
	}
	if err := g.ensureAdminToken(ctx, filepath.Join(dataDir, "admin.token")); err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

// checkEnvironments checks what only this machine can tell of the
// environments: a local one's jobs have the executor's slots at most (one
// that asked for more was accepted, and failed at once), no engine's
// working directories are inside the data directory (jobs would reach the
// gateway's data), and a Slurm environment's slurm_conf exists.
func checkEnvironments(cfg *config.Config, dataDir string) error {
	slots := cmp.Or(cfg.Local.Slots, runtime.NumCPU())
	for _, e := range cfg.Environments {
		if e.Scheduler == "local" && e.Max.CoresPerNode > slots {
			return fmt.Errorf("environment %s: max.cores_per_node %d is more than the local executor's %d slots (local.slots): such a job could never run", e.Name, e.Max.CoresPerNode, slots)
		}
		if w := e.WorkdirRoot; w != "" {
			abs, err := filepath.Abs(w)
			if err != nil {
				return err
			}
			if abs == dataDir || strings.HasPrefix(abs, dataDir+string(filepath.Separator)) {
				return fmt.Errorf("environment %s: workdir_root %s is inside the data directory %s: jobs must not reach the gateway's data", e.Name, w, dataDir)
			}
		}
		if c := e.SlurmConf; c != "" {
			if _, err := os.Stat(c); err != nil {
				return fmt.Errorf("environment %s: slurm_conf: %w", e.Name, err)
			}
		}
	}
	return nil
}

// checkTLSFiles checks the configured certificate and key before the
// gateway says it listens (a key of another certificate was found only
// when the first request came, after "listening"), and says when jobs
// will not trust the certificate: with no ca_cert they trust the system's
// CAs, and a certificate none of those signed left every job waiting for
// the gateway until it failed.
func checkTLSFiles(cfg *config.Config, log *slog.Logger) error {
	pair, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return fmt.Errorf("tls_cert %s and tls_key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
	}
	var roots *x509.CertPool // nil: the system's
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return fmt.Errorf("ca_cert: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ca_cert %s: no PEM certificate in it", cfg.CACert)
		}
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("tls_cert %s: %w", cfg.TLSCert, err)
	}
	inter := x509.NewCertPool()
	for _, c := range pair.Certificate[1:] {
		if ic, err := x509.ParseCertificate(c); err == nil {
			inter.AddCert(ic)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		trusted := "the system's CAs (ca_cert is not set)"
		if roots != nil {
			trusted = "ca_cert " + cfg.CACert
		}
		log.Warn("jobs will not trust the gateway's certificate: it is not signed by "+trusted+"; set ca_cert to the CA that signed tls_cert", "tls_cert", cfg.TLSCert, "err", err)
	}
	return nil
}

// replicaID names this gateway among replicas sharing a database (in
// jobs' claims, and as the replica whose local executor runs a job), as
// DATA/replica.id keeps it. A new data directory gets a random one: the
// name was host:data-dir, and two gateways on hosts of one name running
// from one path (containers on a host's network, cloned machines) took
// each other's local jobs for lost and failed them. A data directory from
// before whose local executor holds tasks keeps host:data-dir, the name
// their claims hold.
func replicaID(dataDir string) (string, error) {
	p := filepath.Join(dataDir, "replica.id")
	b, err := os.ReadFile(p)
	if err == nil && strings.TrimSpace(string(b)) != "" {
		return strings.TrimSpace(string(b)), nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	host, _ := os.Hostname()
	id := host + ":" + dataDir
	if ents, err := os.ReadDir(filepath.Join(dataDir, "local")); err != nil || len(ents) == 0 {
		r := make([]byte, 8)
		rand.Read(r)
		id = host + "-" + hex.EncodeToString(r)
	}
	return id, writeFileAtomic(p, []byte(id+"\n"), 0o600)
}

// ensureAdminToken makes the first admin token on first start: when the
// data directory has none and the database holds no admin's token that
// has not expired and whose user is enabled. A replica's new data
// directory on a shared database used to mint one more admin token that
// never expires. This is also the way back when no admin is left (every
// admin token expired, or every admin disabled): the user "admin" is
// enabled again if it was not (found by the eighth probe: admins who
// disabled each other were locked out for good).
func (g *Gateway) ensureAdminToken(ctx context.Context, path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	left, err := server.AdminsLeft(ctx, g.store, func(store.Token) bool { return false })
	if err != nil {
		return err
	}
	if left {
		fmt.Fprintf(g.out, "the database has an admin token already (another replica's, or an earlier data directory's): none made; copy its admin.token to %s to use it from here\n", path)
		return nil
	}
	now := time.Now()
	if u, err := g.store.User(ctx, "admin"); err != nil {
		return err
	} else if u.Disabled {
		if _, err := g.store.SetUserDisabled(ctx, "admin", false, now); err != nil {
			return err
		}
		fmt.Fprintln(g.out, "no enabled user held an admin token: the user admin is enabled again")
	}
	secret, hash := auth.NewSecret()
	t := store.Token{ID: auth.NewID(), Hash: hash, User: "admin", Name: "first admin token", Scopes: auth.UserScopes, CreatedAt: time.Now().UTC()}
	if err := g.store.CreateToken(ctx, t); err != nil {
		return err
	}
	if err := writeFileAtomic(path, []byte(secret+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(g.out, "admin token (shown once; also in %s):\n%s\n", path, secret)
	return nil
}

// Listen binds the API's address, and the metrics' (metrics.addr): a
// start that fails does so before it says it listens.
func (g *Gateway) Listen() error {
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return err
	}
	g.ln = ln
	if addr := g.cfg.Metrics.Addr; addr != "" {
		if g.metricsLn, err = net.Listen("tcp", addr); err != nil {
			return fmt.Errorf("metrics.addr: %w", err)
		}
	}
	scheme := "https"
	if g.cfg.InsecureHTTP {
		scheme = "http"
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	} else {
		// where environments' jobs reach the gateway: on its port there too
		for _, addr := range g.jobAddrs() {
			if addr == host || slices.ContainsFunc(g.extra, func(l net.Listener) bool { h, _, _ := net.SplitHostPort(l.Addr().String()); return h == addr }) {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort(addr, port))
			if err != nil {
				// the other environments work: say it, and go on
				g.log.Warn("cannot listen where an environment's jobs reach the gateway (gateway_host): its jobs will not reach it", "addr", net.JoinHostPort(addr, port), "err", err)
				continue
			}
			g.extra = append(g.extra, l)
		}
	}
	g.url = scheme + "://" + net.JoinHostPort(host, port)
	return nil
}

// jobAddrs are the addresses environments' jobs reach the gateway at
// (gateway_host, resolved).
func (g *Gateway) jobAddrs() []string {
	var addrs []string
	for _, e := range g.cfg.Environments {
		if e.GatewayHost == "" {
			continue
		}
		if ip := net.ParseIP(e.GatewayHost); ip != nil {
			addrs = append(addrs, ip.String())
			continue
		}
		as, err := net.LookupHost(e.GatewayHost)
		if err != nil {
			g.log.Warn("an environment's gateway_host does not resolve", "environment", e.Name, "gateway_host", e.GatewayHost, "err", err)
		}
		addrs = append(addrs, as...)
	}
	slices.Sort(addrs)
	return slices.Compact(addrs)
}

// jobURLs are the URLs each environment's jobs reach the gateway at, for
// the environments with a gateway_host: public's, with that host.
func (g *Gateway) jobURLs(public string) map[string]string {
	m := map[string]string{}
	for _, e := range g.cfg.Environments {
		if e.GatewayHost == "" {
			continue
		}
		u, err := url.Parse(public)
		if err != nil {
			continue // checked at load
		}
		u.Host = net.JoinHostPort(e.GatewayHost, u.Port())
		m[e.Name] = u.String()
	}
	return m
}

// URL is where the API answers (after Listen).
func (g *Gateway) URL() string { return g.url }

// Run serves until ctx ends, then shuts down gracefully, and returns when
// everything it started has ended: the HTTP server with every request in
// flight, the dispatcher and the local executor. Jobs on the local
// executor go on running; a new gateway on the same data directory finds
// them again.
func (g *Gateway) Run(ctx context.Context) error {
	public := g.cfg.PublicURL
	if public == "" {
		public = g.url
	}
	agentCmd := g.cfg.AgentCommand
	if len(agentCmd) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		agentCmd = []string{exe, "agent"}
	}
	workRoot := g.workRoot
	g.catMu.Lock()
	cat := g.cat
	g.catMu.Unlock()
	// Metrics: the store and the bucket of requests and of the dispatcher
	// are timed.
	met := metrics.New(g.store)
	st, bucket := met.Store(g.store), met.Bucket(g.bucket)
	// The dispatcher looks up environments only, which a reload keeps.
	disp := dispatch.New(st, cat, g.scheds, dispatch.Options{
		Metrics:      met,
		ReplicaID:    g.replica,
		GatewayURL:   public,
		GatewayURLs:  g.jobURLs(public),
		CACertFile:   g.caFile,
		AgentCommand: agentCmd,
		WorkRoot:     workRoot,
		PollInterval: g.cfg.PollInterval,
		Logger:       g.log,
	})
	authn, hub := auth.NewAuthenticator(g.store, 2*time.Second), server.NewHub()
	// A store replicas share keeps the turns and holds of uploads
	// through any of them (store.Leases).
	leases, _ := g.store.(store.Leases)
	g.catMu.Lock()
	metricsHandler := met.Handler()
	g.srv = server.New(st, bucket, g.cat, authn, disp, g.scheds, hub, g.log, &server.Options{
		Metrics:        met,
		MetricsHandler: metricsHandler,
		MaxJSONBytes:   int64(g.cfg.Limits.MaxJSONBytes),
		MaxUploadBytes: int64(g.cfg.Limits.MaxUploadBytes),
		MaxLogBytes:    int64(g.cfg.Limits.MaxLogBytes),
		MaxChildren:    g.cfg.Limits.MaxChildren,
		MaxDepth:       g.cfg.Limits.MaxDepth,
		BodyIdle:       g.cfg.Limits.BodyIdle,
		StreamWait:     g.cfg.Limits.StreamWait,
		Quota: func(user string) server.Quota {
			return server.Quota(g.cfg.QuotaOf(user))
		},
		RateLimit:    server.RateLimit{PerSecond: *g.cfg.RateLimit.RequestsPerSecond, Burst: g.cfg.RateLimit.Burst},
		JobRateLimit: server.RateLimit{PerSecond: *g.cfg.RateLimit.JobRequestsPerSecond, Burst: g.cfg.RateLimit.JobBurst},
		Projects:     g.cfg.Projects,
		Accounts:     g.accounts,

		AllowPrivateWebhooks: g.cfg.Webhooks.AllowPrivateNetworks,
		TES:                  server.TESOptions{Environment: g.cfg.TES.Environment, Bucket: g.cfg.TES.Bucket},
		Leases:               leases,
	})
	g.catMu.Unlock()

	// Requests in flight are counted, so that Run returns only after the
	// last handler has: the store is closed after Run.
	var inflight sync.WaitGroup
	// Requests run under their own context: a graceful shutdown lets them
	// finish, and only when it runs out of time are they canceled.
	reqCtx, cancelReqs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelReqs()
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inflight.Add(1)
			defer inflight.Done()
			g.srv.ServeHTTP(w, r)
		}),
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// Larger HTTP/2 windows than the defaults (1 MiB), which held bulk
		// transfers to about half of what TLS allows here.
		HTTP2:    &http.HTTP2Config{MaxReceiveBufferPerConnection: 16 << 20, MaxReceiveBufferPerStream: 8 << 20, MaxReadFrameSize: 1 << 20},
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	if !g.cfg.InsecureHTTP {
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	// streams (GET /v1/events) end at once, and their clients resume
	hs.RegisterOnShutdown(g.srv.CloseStreams)

	grp := newGroup(ctx)
	for _, ln := range append([]net.Listener{g.ln}, g.extra...) {
		grp.Go(func(ctx context.Context) error {
			var err error
			if g.cfg.InsecureHTTP {
				err = hs.Serve(ln)
			} else {
				err = hs.ServeTLS(ln, g.certFile, g.keyFile)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			return err
		})
	}
	grp.Go(func(ctx context.Context) error {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer scancel()
		if err := hs.Shutdown(sctx); err != nil {
			g.log.Warn("requests still running at shutdown; canceling them", "err", err)
			cancelReqs()
			hs.Close()
		}
		return nil
	})
	grp.Go(disp.Run)
	grp.Go(func(ctx context.Context) error {
		return g.every(ctx, 10*time.Minute, leftoverGrace, "sweep of what removed jobs left", func(ctx context.Context, before time.Time) error {
			_, err := g.sweepOnce(ctx, before)
			return err
		})
	})
	if r := *g.cfg.Retention.Jobs; r > 0 {
		grp.Go(func(ctx context.Context) error {
			return g.every(ctx, min(r/10, time.Hour), r, "purge of finished jobs", func(ctx context.Context, before time.Time) error {
				_, err := g.purgeOnce(ctx, before)
				return err
			})
		})
	}
	for _, o := range []struct {
		what      string
		retention time.Duration
		purge     func(ctx context.Context, before time.Time, limit int) (int, error)
	}{
		{"audit entries", *g.cfg.Retention.Audit, g.store.PurgeAudit},
		{"job changes", *g.cfg.Retention.Changes, g.store.PurgeChanges},
		{"expired tokens", *g.cfg.Retention.Tokens, g.store.PurgeTokens},
	} {
		if o.retention > 0 {
			grp.Go(func(ctx context.Context) error {
				return g.every(ctx, min(o.retention/10, time.Hour), o.retention, "purge of old "+o.what, func(ctx context.Context, before time.Time) error {
					return g.purgeOld(ctx, o.what, before, o.purge)
				})
			})
		}
	}
	if sg, ok := g.bucket.(blob.Signer); ok {
		// multipart uploads left unfinished once their part URLs expired:
		// their parts are stored, counted in no quota, until dropped
		grp.Go(func(ctx context.Context) error {
			// an hour past the URLs' end: a part sent just before may still be arriving
			return g.every(ctx, 10*time.Minute, server.UploadTTL+time.Hour, "purge of old unfinished uploads", func(ctx context.Context, before time.Time) error {
				return g.purgeOld(ctx, "unfinished uploads", before, sg.AbortStale)
			})
		})
	}
	if hooks, err := webhook.New(g.store, webhook.Options{AllowPrivate: g.cfg.Webhooks.AllowPrivateNetworks, CACertFile: g.caFile, Logger: g.log}); err != nil {
		grp.Go(func(context.Context) error { return err })
	} else {
		grp.Go(hooks.Run)
	}
	if r := *g.cfg.Retention.Workdirs; r > 0 && len(g.engineRoots()) > 0 {
		grp.Go(func(ctx context.Context) error { return g.sweepWorkdirs(ctx, r, min(r/10, time.Hour)) })
	}
	if ln := g.metricsLn; ln != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler)
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
		grp.Go(func(ctx context.Context) error {
			if err := ms.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics listener: %w", err)
			}
			return nil
		})
		grp.Go(func(ctx context.Context) error {
			<-ctx.Done()
			ms.Close()
			return nil
		})
		g.log.Info("metrics listening", "addr", ln.Addr().String())
	}
	if g.local != nil {
		grp.Go(g.local.Run)
	}
	if g.reload != nil {
		grp.Go(func(ctx context.Context) error {
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-g.reload:
					g.Reload() // logs its outcome
				}
			}
		})
	}
	g.log.Info("gateway started", "url", g.url, "data_dir", g.cfg.DataDir, "version", server.Version)
	err := grp.Wait()
	inflight.Wait()
	g.log.Info("gateway stopped")
	return err
}

// shutdownGrace is how long requests in flight may take to finish when
// the gateway stops.
const shutdownGrace = 10 * time.Second

// loadCatalog reads the templates: the built-in ones (unless left out)
// and every template directory.
func (g *Gateway) loadCatalog() (*catalog.Catalog, error) {
	var fss []fs.FS
	if !g.cfg.NoBuiltinTemplates {
		fss = append(fss, namedFS{templates.FS, "the built-in templates"})
	}
	for _, d := range g.cfg.TemplateDirs {
		// A directory that cannot be read is an invalid set: os.DirFS's
		// glob says nothing of it, and a directory moved away made every
		// template in it vanish on a reload that reported success.
		if _, err := os.ReadDir(d); err != nil {
			return nil, fmt.Errorf("templates: template_dirs: %w", err)
		}
		fss = append(fss, namedFS{os.DirFS(d), d})
	}
	cat, err := catalog.Load(g.cfg.Environments, fss...)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	for _, w := range cat.Warnings {
		// a template for environments this gateway does not have (the
		// built-in examples name several): worth knowing, not a fault
		g.log.Info(w)
	}
	return cat, nil
}

// namedFS is a set of templates with the name errors give it.
type namedFS struct {
	fs.FS
	name string
}

func (n namedFS) String() string { return n.name }

// Reload reads the templates again (on SIGHUP). When the new set is
// invalid, the gateway goes on offering the old one and the error, which
// names every problem, is returned and logged. The environments and the
// rest of the configuration stay as they were at start.
func (g *Gateway) Reload() error {
	g.catMu.Lock()
	defer g.catMu.Unlock()
	cat, err := g.loadCatalog()
	if err != nil {
		g.log.Error("templates not reloaded; the old ones stay in use", "err", err)
		return err
	}
	g.cat = cat
	if g.srv != nil {
		g.srv.SetCatalog(cat)
	}
	g.log.Info("templates reloaded", "templates", len(cat.Templates()))
	return nil
}

// Close releases the backends and the data directory. Call it after Run
// has returned.
func (g *Gateway) Close() error {
	var errs []error
	if g.ln != nil {
		g.ln.Close()
	}
	for _, l := range g.extra {
		l.Close()
	}
	if g.metricsLn != nil {
		g.metricsLn.Close()
	}
	if c, ok := g.bucket.(io.Closer); ok {
		errs = append(errs, c.Close())
	}
	if g.store != nil {
		errs = append(errs, g.store.Close())
		g.store = nil
	}
	if g.lock != nil {
		// Closing the file releases the lock; the file stays, its PID stale.
		errs = append(errs, g.lock.Close())
		g.lock = nil
	}
	return errors.Join(errs...)
}

// lockDataDir takes an exclusive flock of DIR/server.lock and writes this
// process's PID into it, so that a second server on the same directory
// stops at once and says whose it is. The kernel drops the lock when the
// process ends, however it ends. The descriptor is close-on-exec, so
// running jobs do not inherit it.
func lockDataDir(dir string) (*os.File, error) {
	p := filepath.Join(dir, "server.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b, _ := io.ReadAll(io.LimitReader(f, 32))
			pid := strings.TrimSpace(string(b))
			if _, err := strconv.Atoi(pid); err != nil {
				pid = "unknown"
			}
			return nil, fmt.Errorf("data directory %s is in use by another hpcgate server (pid %s): stop that one first, or give this one another --data-dir", dir, pid)
		}
		return nil, fmt.Errorf("data directory lock %s: %w", p, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory lock %s: %w", p, err)
	}
	return f, nil
}

// group runs functions until the first of them returns or the parent
// context ends, then cancels the others' context; Wait returns when all
// have returned (golang.org/x/sync/errgroup's WithContext, without the
// dependency).
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	err    error
}

func newGroup(parent context.Context) *group {
	ctx, cancel := context.WithCancel(parent)
	return &group{ctx: ctx, cancel: cancel}
}

// Go runs fn in a goroutine of the group.
func (gr *group) Go(fn func(context.Context) error) {
	gr.wg.Add(1)
	go func() {
		defer gr.wg.Done()
		if err := fn(gr.ctx); err != nil {
			gr.once.Do(func() { gr.err = err })
		}
		// Whichever ends first, for whatever reason, ends the others.
		gr.cancel()
	}()
}

// Wait waits for every function and returns the first error.
func (gr *group) Wait() error {
	gr.wg.Wait()
	gr.cancel()
	return gr.err
}

// openObjects opens the object store the configuration names.
func openObjects(ctx context.Context, cfg *config.Config, dataDir string) (blob.Bucket, error) {
	if cfg.Objects == "" {
		b, err := fileblob.Open(filepath.Join(dataDir, "objects"))
		if err != nil {
			return nil, err // not a nil *Bucket in the interface
		}
		return b, nil
	}
	key, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if cfg.S3CredentialsFile != "" {
		b, err := os.ReadFile(cfg.S3CredentialsFile)
		if err != nil {
			return nil, fmt.Errorf("S3 credentials: %w", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
			switch strings.TrimSpace(k) {
			case "AWS_ACCESS_KEY_ID", "aws_access_key_id":
				key = strings.TrimSpace(v)
			case "AWS_SECRET_ACCESS_KEY", "aws_secret_access_key":
				secret = strings.TrimSpace(v)
			}
		}
	}
	b, err := s3blob.Open(cfg.Objects, key, secret)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := b.CreateBucket(cctx); err != nil {
		return nil, fmt.Errorf("S3 bucket: %w", err)
	}
	return b, nil
}
