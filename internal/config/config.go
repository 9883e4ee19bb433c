// Package config is the server's configuration: one struct, read from an
// optional YAML file and overridden by flags. Every field's default is in
// its comment; Validate reports every problem at once.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/catalog"
	"gopkg.in/yaml.v3"
)

// Config is the server's configuration.
type Config struct {
	// DataDir holds the database, objects, TLS files, admin token and the
	// local executor's state (default ./hpcgate-data).
	DataDir string `yaml:"data_dir"`
	// Addr is where the API listens (default 127.0.0.1:8443).
	Addr string `yaml:"addr"`
	// PublicURL is the URL jobs reach the gateway at (default
	// https://ADDR, with 127.0.0.1 for an unspecified host).
	PublicURL string `yaml:"public_url"`
	// TLSCert and TLSKey are PEM files; empty: a self-signed pair made in
	// DataDir/tls on first start.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// CACert is the CA file jobs trust (default: the self-signed
	// certificate, or the system's roots with TLSCert).
	CACert string `yaml:"ca_cert"`
	// Database selects the store: "" for SQLite in DataDir/hpcgate.db, or
	// a postgres:// URL (several gateway replicas may share one).
	Database string `yaml:"database"`
	// Objects selects the object store: "" for the directory
	// DataDir/objects, or s3://BUCKET[/PREFIX]?endpoint=URL&region=R for
	// any S3 API. S3 credentials come from AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY, or from S3CredentialsFile; never from flags.
	Objects string `yaml:"objects"`
	// S3CredentialsFile holds AWS_ACCESS_KEY_ID=... and
	// AWS_SECRET_ACCESS_KEY=... lines.
	S3CredentialsFile string `yaml:"s3_credentials_file"`
	// InsecureHTTP serves plain HTTP; allowed on loopback addresses only.
	InsecureHTTP bool `yaml:"insecure_http"`
	// TemplateDirs are directories of *.yaml templates, besides the
	// built-in examples.
	TemplateDirs []string `yaml:"template_dirs"`
	// NoBuiltinTemplates leaves out the built-in example templates.
	NoBuiltinTemplates bool `yaml:"no_builtin_templates"`
	// Environments are the runtime environments (default: one, "local",
	// on the local executor with this machine's cores).
	Environments []catalog.Environment `yaml:"environments"`
	// Local configures the local executor.
	Local struct {
		// Slots is how many cores jobs may use at once (default: CPU count).
		Slots int `yaml:"slots"`
		// WorkdirRetention is how long an ended task's working directory
		// is kept (default 24h); its token file is removed at once.
		WorkdirRetention time.Duration `yaml:"workdir_retention"`
		// Sandbox is auto (default: jobs that run as the gateway's own
		// account run in a bubblewrap sandbox without the data directory,
		// when bwrap works here) or off.
		Sandbox string `yaml:"sandbox"`
	} `yaml:"local"`
	// WorkRoot is where jobs' working directories go when their
	// environment names none (default /var/tmp/hpcgate-jobs as root,
	// TMPDIR/hpcgate-jobs-UID otherwise): never inside DataDir.
	WorkRoot string `yaml:"work_root"`
	// Accounts say which OS account each user's jobs run as.
	Accounts struct {
		// Mode is single (default: the gateway's own account), same-name
		// or map.
		Mode string `yaml:"mode"`
		// Map is user → account, for mode map.
		Map map[string]string `yaml:"map"`
		// MinUID and MaxUID bound the uid of a user's account unless Map
		// names it (default 1000, and no MaxUID); the system ranges above
		// 60000 to 65535 are never a user's.
		MinUID *int `yaml:"min_uid"`
		MaxUID *int `yaml:"max_uid"`
	} `yaml:"accounts"`
	// Retention says how long what is finished is kept.
	Retention struct {
		// Jobs: finished jobs older than this are purged with their
		// events, logs and outputs (default 2160h, 90 days; 0s keeps
		// them for ever).
		Jobs *time.Duration `yaml:"jobs"`
		// Audit: audit entries older than this are purged (default
		// 8760h, 365 days; 0s keeps them for ever).
		Audit *time.Duration `yaml:"audit"`
		// Workdirs: the directories Slurm and Grid Engine jobs leave
		// below the work roots are removed this long after their job
		// ended (default 24h; 0s keeps them). The local executor's:
		// local.workdir_retention.
		Workdirs *time.Duration `yaml:"workdirs"`
		// Changes: the job state changes GET /v1/events can replay
		// (default 168h, 7 days; 0s keeps them for ever).
		Changes *time.Duration `yaml:"changes"`
		// Tokens: tokens (web sessions too) are deleted this long after
		// they expired (default 720h, 30 days; 0s keeps them for ever).
		Tokens *time.Duration `yaml:"tokens"`
	} `yaml:"retention"`
	// Webhooks configure the posts to jobs' notify URLs.
	Webhooks struct {
		// AllowPrivateNetworks lets notify URLs name loopback and
		// private addresses (default false: a gateway must not be a way
		// into the network it stands in).
		AllowPrivateNetworks bool `yaml:"allow_private_networks"`
	} `yaml:"webhooks"`
	// TES configures the GA4GH Task Execution Service API
	// (/ga4gh/tes/v1).
	TES struct {
		// Environment runs the tasks that name no environment (backend
		// parameter environment, or a zone); "": such tasks are refused.
		Environment string `yaml:"environment"`
		// Bucket is the name in tasks' s3://BUCKET/PATH urls that means
		// the user's files, whatever store the gateway has (default
		// hpcgate); service-info lists it under storage.
		Bucket string `yaml:"bucket"`
	} `yaml:"tes"`
	// AgentCommand starts the agent inside a job (default: this binary
	// with "agent").
	AgentCommand []string `yaml:"agent_command"`
	// PollInterval is how often engines are polled (default 2s).
	PollInterval time.Duration `yaml:"poll_interval"`
	Limits       Limits        `yaml:"limits"`
	// Quotas limit each user's use: a default and per-user overrides.
	Quotas struct {
		Default Quota            `yaml:"default"`
		Users   map[string]Quota `yaml:"users"` // user → the limits that differ from Default
	} `yaml:"quotas"`
	// RateLimit bounds the requests of each token, in each gateway
	// process (token bucket).
	RateLimit struct {
		RequestsPerSecond    *float64 `yaml:"requests_per_second"`     // person tokens; default 200, 0 disables
		Burst                int      `yaml:"burst"`                   // default 2000
		JobRequestsPerSecond *float64 `yaml:"job_requests_per_second"` // job tokens; default 200, 0 disables
		JobBurst             int      `yaml:"job_burst"`               // default 1000
	} `yaml:"rate_limit"`
	// Projects says which projects (allocation accounts) each user may
	// charge jobs to: user (or "*", for everyone) → projects; a user's
	// first project (else the first of "*") is their default. None: jobs
	// name no project.
	Projects map[string][]string `yaml:"projects"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json (JSON lines; default text).
	LogFormat string `yaml:"log_format"`
	// Metrics: Addr, if set, serves GET /metrics without a token on an
	// address of its own (plain HTTP); without it, admins read them on
	// the API's address.
	Metrics struct {
		Addr string `yaml:"addr"`
	} `yaml:"metrics"`
}

// Quota is a user's limits; 0 is no limit, an unset key the default's.
type Quota struct {
	Jobs  *int64        `yaml:"jobs"`  // unfinished jobs; default 10000
	Cores *int64        `yaml:"cores"` // cores of unfinished jobs; default 4096
	Bytes *catalog.Size `yaml:"bytes"` // files and outputs stored; default 1TiB
	Files *int64        `yaml:"files"` // how many; default 1000000
}

// QuotaLimits are a user's limits in effect; 0 is no limit.
type QuotaLimits struct {
	Jobs, Cores, Bytes, Files int64
}

// QuotaOf returns user's limits: the user's own, else the default's, else
// the built-in default.
func (c *Config) QuotaOf(user string) QuotaLimits {
	l := QuotaLimits{Jobs: 10000, Cores: 4096, Bytes: 1 << 40, Files: 1000000}
	for _, q := range []Quota{c.Quotas.Default, c.Quotas.Users[user]} {
		if q.Jobs != nil {
			l.Jobs = *q.Jobs
		}
		if q.Cores != nil {
			l.Cores = *q.Cores
		}
		if q.Bytes != nil {
			l.Bytes = int64(*q.Bytes)
		}
		if q.Files != nil {
			l.Files = *q.Files
		}
	}
	return l
}

// Limits bound what clients may send.
type Limits struct {
	MaxJSONBytes   catalog.Size `yaml:"max_json_bytes"`   // default 1MiB
	MaxUploadBytes catalog.Size `yaml:"max_upload_bytes"` // default 10GiB
	MaxLogBytes    catalog.Size `yaml:"max_log_bytes"`    // per job and stream; default 1GiB
	MaxChildren    int          `yaml:"max_children"`     // per job; default 100
	MaxDepth       int          `yaml:"max_depth"`        // generations of children; default 3
	// BodyIdle: the longest a request's body may send nothing; StreamWait:
	// the longest a stream's write may wait for its client (server.Options).
	BodyIdle   time.Duration `yaml:"body_idle"`   // default 1m
	StreamWait time.Duration `yaml:"stream_wait"` // default 30s
}

// Default returns the configuration with every default filled in.
func Default() *Config {
	c := &Config{}
	c.fill()
	return c
}

func (c *Config) fill() {
	if c.DataDir == "" {
		c.DataDir = "hpcgate-data"
	}
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8443"
	}
	if c.PollInterval == 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.RateLimit.RequestsPerSecond == nil {
		v := 200.0
		c.RateLimit.RequestsPerSecond = &v
	}
	if c.RateLimit.Burst == 0 {
		c.RateLimit.Burst = 2000
	}
	if c.RateLimit.JobRequestsPerSecond == nil {
		v := 200.0
		c.RateLimit.JobRequestsPerSecond = &v
	}
	if c.RateLimit.JobBurst == 0 {
		c.RateLimit.JobBurst = 1000
	}
	if c.Retention.Jobs == nil {
		d := 90 * 24 * time.Hour
		c.Retention.Jobs = &d
	}
	if c.Retention.Audit == nil {
		d := 365 * 24 * time.Hour
		c.Retention.Audit = &d
	}
	if c.Retention.Workdirs == nil {
		d := 24 * time.Hour
		c.Retention.Workdirs = &d
	}
	if c.Retention.Changes == nil {
		d := 7 * 24 * time.Hour
		c.Retention.Changes = &d
	}
	if c.Retention.Tokens == nil {
		d := 30 * 24 * time.Hour
		c.Retention.Tokens = &d
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	for i := range c.Environments {
		// An environment's env may name the gateway's own variables,
		// as ${NAME}, so that one file serves machines whose paths differ.
		for k, v := range c.Environments[i].Env {
			c.Environments[i].Env[k] = os.Expand(v, os.Getenv)
		}
	}
	if len(c.Environments) == 0 {
		c.Environments = []catalog.Environment{{
			Name:        "local",
			Description: "this machine, through the local executor",
			Scheduler:   "local",
			Max:         catalog.Limits{Nodes: 1, CoresPerNode: cmp.Or(c.Local.Slots, runtime.NumCPU()), WalltimeS: 7 * 24 * 3600},
		}}
	}
}

// Load reads a YAML file (unknown keys are errors); Fill applies the
// defaults, once the flags are set too (the default local environment's
// cores are --slots').
func Load(path string) (*Config, error) {
	c := &Config{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, catalog.YAMLError(err))
		}
	}
	return c, nil
}

// Fill applies the defaults to fields still empty (after flags).
func (c *Config) Fill() { c.fill() }

// redact hides a password in a URL.
func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "(unparsable)"
}

// Validate reports every problem of the configuration.
// bucketRE is an S3 bucket name.
var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func (c *Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %v", c.Addr, err))
	}
	if c.InsecureHTTP {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("insecure_http: plain HTTP is allowed only on a loopback address, not %q", host))
		}
		for _, e := range c.Environments {
			if e.GatewayHost != "" {
				errs = append(errs, fmt.Errorf("environment %s: gateway_host: jobs on other hosts need TLS, and insecure_http is on", e.Name))
			}
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	}
	for _, e := range c.Environments {
		switch e.Scheduler {
		case "local", "slurm", "sge":
		default:
			errs = append(errs, fmt.Errorf("environment %s: scheduler %q: want local, slurm or sge", e.Name, e.Scheduler))
		}
	}
	if env := c.TES.Environment; env != "" && !slices.ContainsFunc(c.Environments, func(e catalog.Environment) bool { return e.Name == env }) && !(env == "local" && len(c.Environments) == 0) {
		errs = append(errs, fmt.Errorf("tes.environment %q: no such environment", env))
	}
	if b := c.TES.Bucket; b != "" && !bucketRE.MatchString(b) {
		errs = append(errs, fmt.Errorf("tes.bucket %q: want a bucket name (3 to 63 of a-z, 0-9, . and -)", b))
	}
	if c.Database != "" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		errs = append(errs, fmt.Errorf("database %q: want a postgres:// URL, or nothing for SQLite", redact(c.Database)))
	}
	if c.Objects != "" && !strings.HasPrefix(c.Objects, "s3://") {
		errs = append(errs, fmt.Errorf("objects %q: want an s3:// URL, or nothing for the data directory", c.Objects))
	}
	if c.Retention.Jobs != nil && *c.Retention.Jobs < 0 {
		errs = append(errs, errors.New("retention.jobs must not be negative (0s keeps jobs for ever)"))
	}
	if c.Retention.Workdirs != nil && *c.Retention.Workdirs < 0 {
		errs = append(errs, errors.New("retention.workdirs must not be negative (0s keeps them for ever)"))
	}
	if c.Retention.Changes != nil && *c.Retention.Changes < 0 {
		errs = append(errs, errors.New("retention.changes must not be negative (0s keeps them for ever)"))
	}
	if c.Retention.Tokens != nil && *c.Retention.Tokens < 0 {
		errs = append(errs, errors.New("retention.tokens must not be negative (0s keeps them for ever)"))
	}
	if c.Retention.Audit != nil && *c.Retention.Audit < 0 {
		errs = append(errs, errors.New("retention.audit must not be negative (0s keeps the audit log for ever)"))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	for user, q := range c.Quotas.Users {
		for name, v := range map[string]*int64{"jobs": q.Jobs, "cores": q.Cores, "files": q.Files} {
			if v != nil && *v < 0 {
				errs = append(errs, fmt.Errorf("quotas.users.%s.%s must not be negative", user, name))
			}
		}
	}
	for name, v := range map[string]*int64{"jobs": c.Quotas.Default.Jobs, "cores": c.Quotas.Default.Cores, "files": c.Quotas.Default.Files} {
		if v != nil && *v < 0 {
			errs = append(errs, fmt.Errorf("quotas.default.%s must not be negative", name))
		}
	}
	if neg := func(v *float64) bool { return v != nil && *v < 0 }; neg(c.RateLimit.RequestsPerSecond) || neg(c.RateLimit.JobRequestsPerSecond) {
		errs = append(errs, errors.New("rate_limit: requests per second must not be negative"))
	}
	for user, ps := range c.Projects {
		for _, p := range ps {
			if p == "" || len(p) > 64 || strings.ContainsAny(p, " \t\n\"'$;&|<>`") {
				errs = append(errs, fmt.Errorf("projects.%s: %q is not a project name", user, p))
			}
		}
	}
	if c.Local.WorkdirRetention < 0 {
		errs = append(errs, errors.New("local.workdir_retention must not be negative"))
	}
	switch c.Local.Sandbox {
	case "", "auto", "off":
	default:
		errs = append(errs, fmt.Errorf("local.sandbox %q: want auto or off", c.Local.Sandbox))
	}
	switch c.Accounts.Mode {
	case "", "single", "same-name":
		if len(c.Accounts.Map) > 0 {
			errs = append(errs, errors.New("accounts.map is used only with accounts.mode map"))
		}
	case "map":
		if len(c.Accounts.Map) == 0 {
			errs = append(errs, errors.New("accounts.mode map needs accounts.map"))
		}
	default:
		errs = append(errs, fmt.Errorf("accounts.mode %q: want single, same-name or map", c.Accounts.Mode))
	}
	if c.WorkRoot != "" && !filepath.IsAbs(c.WorkRoot) {
		errs = append(errs, fmt.Errorf("work_root %q: want an absolute path", c.WorkRoot))
	}
	if c.Local.Slots < 0 {
		errs = append(errs, errors.New("local.slots must not be negative"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	// Negative numbers used to become the defaults without a word (an
	// admin who wrote max_children: -1 to forbid children got 100).
	for _, l := range []struct {
		name string
		v    int64
	}{{"poll_interval", int64(c.PollInterval)}, {"rate_limit.burst", int64(c.RateLimit.Burst)}, {"rate_limit.job_burst", int64(c.RateLimit.JobBurst)},
		{"limits.max_children", int64(c.Limits.MaxChildren)}, {"limits.max_depth", int64(c.Limits.MaxDepth)}, {"limits.max_json_bytes", int64(c.Limits.MaxJSONBytes)},
		{"limits.max_upload_bytes", int64(c.Limits.MaxUploadBytes)}, {"limits.max_log_bytes", int64(c.Limits.MaxLogBytes)},
		{"limits.body_idle", int64(c.Limits.BodyIdle)}, {"limits.stream_wait", int64(c.Limits.StreamWait)}} {
		if l.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative (0 is the default)", l.name))
		}
	}
	if c.PublicURL != "" {
		// jobs reach the gateway there: a URL without its scheme failed
		// every job, with nothing said at start
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil || u.Host == "" || u.Scheme != "https" && u.Scheme != "http":
			errs = append(errs, fmt.Errorf("public_url %q: want https://HOST[:PORT]", c.PublicURL))
		case u.Scheme == "http" && !c.InsecureHTTP:
			errs = append(errs, fmt.Errorf("public_url %q: the gateway serves https", c.PublicURL))
		case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			errs = append(errs, fmt.Errorf("public_url %q: want the gateway's address alone (https://HOST[:PORT]), without a path", c.PublicURL))
		}
	}
	if len(c.AgentCommand) > 0 && !filepath.IsAbs(c.AgentCommand[0]) {
		errs = append(errs, fmt.Errorf("agent_command %q: want an absolute path to the hpcgate binary on the nodes", c.AgentCommand[0]))
	}
	return errors.Join(errs...)
}
