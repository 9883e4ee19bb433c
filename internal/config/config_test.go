package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTESEnvironmentNamesOne(t *testing.T) {
	c := Default()
	c.TES.Environment = "local" // the default environment
	if err := c.Validate(); err != nil {
		t.Errorf("tes.environment local with the default environments: %v", err)
	}
}

func TestDefaultsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8443" || c.DataDir != "hpcgate-data" || len(c.Environments) != 1 || c.Environments[0].Name != "local" {
		t.Fatalf("defaults %+v", c)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	c := Default()
	c.Addr = "0.0.0.0:80"
	c.InsecureHTTP = true
	c.TLSCert = "x.pem"
	c.LogLevel = "loud"
	c.TES.Environment = "mars"
	c.TES.Bucket = "Not_A_Bucket"
	// found by the sixth probe: negative limits became the defaults, and a
	// public_url without its scheme failed every job
	c.Limits.MaxChildren = -5
	c.RateLimit.Burst = -5
	c.PollInterval = -5 * time.Second
	c.PublicURL = "127.0.0.1:19444"
	c.AgentCommand = []string{"hpcgate", "agent"}
	c.Limits.BodyIdle = -time.Second
	err := c.Validate()
	for _, want := range []string{"loopback", "tls_key", "log_level", "tes.environment", "tes.bucket",
		"limits.max_children must not be negative", "rate_limit.burst must not be negative", "poll_interval must not be negative", `public_url "127.0.0.1:19444"`, "agent_command",
		"limits.body_idle must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %s", err, want)
		}
	}
}

func TestLoadRefusesUnknownKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("addr: 127.0.0.1:1\nno_such_key: 1\n"), 0o600)
	if _, err := Load(p); err == nil || !strings.HasSuffix(err.Error(), `yaml: line 2: unknown key "no_such_key"`) {
		t.Fatalf("Load = %v, want an error naming the unknown key in plain words", err)
	}
	os.WriteFile(p, []byte("addr: 127.0.0.1:1\nlimits: {max_upload_bytes: 1GiB, body_idle: 5m, stream_wait: 10s}\nenvironments: [{name: e, scheduler: local, max: {cores_per_node: 2}}]\n"), 0o600)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxUploadBytes != 1<<30 || c.Limits.BodyIdle != 5*time.Minute || c.Limits.StreamWait != 10*time.Second || c.Environments[0].Name != "e" || c.Environments[0].Max.CoresPerNode != 2 {
		t.Fatalf("loaded %+v", c)
	}
}

// A syntax error names the line an editor shows (yaml.v3 named the line
// before it).
func TestLoadNamesTheLineOfASyntaxError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("addr: 127.0.0.1:1\n# a comment\nquotas: {default: {jobs: 1}\nrate_limit: {}\n"), 0o600)
	if _, err := Load(p); err == nil || !strings.HasSuffix(err.Error(), "yaml: line 3: did not find expected ',' or '}'") {
		t.Fatalf("Load = %v, want line 3 named", err)
	}
}
