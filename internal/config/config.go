// Package config is the server's configuration: one struct, read from an
// optional YAML file and overridden by flags. Every field's default is in
// its comment; Validate reports every problem at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
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
	} `yaml:"local"`
	// Retention says how long what is finished is kept.
	Retention struct {
		// Jobs: finished jobs older than this are purged with their
		// events, logs and outputs (default 2160h, 90 days; 0s keeps
		// them for ever).
		Jobs *time.Duration `yaml:"jobs"`
	} `yaml:"retention"`
	// AgentCommand starts the agent inside a job (default: this binary
	// with "agent").
	AgentCommand []string `yaml:"agent_command"`
	// PollInterval is how often engines are polled (default 2s).
	PollInterval time.Duration `yaml:"poll_interval"`
	Limits       Limits        `yaml:"limits"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
}

// Limits bound what clients may send.
type Limits struct {
	MaxJSONBytes   catalog.Size `yaml:"max_json_bytes"`   // default 1MiB
	MaxUploadBytes catalog.Size `yaml:"max_upload_bytes"` // default 10GiB
	MaxChildren    int          `yaml:"max_children"`     // per job; default 100
	MaxDepth       int          `yaml:"max_depth"`        // generations of children; default 3
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
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Retention.Jobs == nil {
		d := 90 * 24 * time.Hour
		c.Retention.Jobs = &d
	}
	if len(c.Environments) == 0 {
		c.Environments = []catalog.Environment{{
			Name:        "local",
			Description: "this machine, through the local executor",
			Scheduler:   "local",
			Max:         catalog.Limits{Nodes: 1, CoresPerNode: max(c.Local.Slots, runtime.NumCPU()), WalltimeS: 7 * 24 * 3600},
		}}
	}
}

// Load reads a YAML file (unknown keys are errors) and fills in defaults.
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
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	c.fill()
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
	if c.Database != "" && !strings.HasPrefix(c.Database, "postgres://") && !strings.HasPrefix(c.Database, "postgresql://") {
		errs = append(errs, fmt.Errorf("database %q: want a postgres:// URL, or nothing for SQLite", redact(c.Database)))
	}
	if c.Objects != "" && !strings.HasPrefix(c.Objects, "s3://") {
		errs = append(errs, fmt.Errorf("objects %q: want an s3:// URL, or nothing for the data directory", c.Objects))
	}
	if c.Retention.Jobs != nil && *c.Retention.Jobs < 0 {
		errs = append(errs, errors.New("retention.jobs must not be negative (0s keeps jobs for ever)"))
	}
	if c.Local.WorkdirRetention < 0 {
		errs = append(errs, errors.New("local.workdir_retention must not be negative"))
	}
	if c.Local.Slots < 0 {
		errs = append(errs, errors.New("local.slots must not be negative"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}
