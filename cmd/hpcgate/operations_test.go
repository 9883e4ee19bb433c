package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// An operator's view: the audit log through the CLI, and JSON log lines
// that carry the request and job they are about.
func TestAuditCLIAndJSONLogs(t *testing.T) {
	g := startGateway(t, "log_format: json\n")
	alice := g.userToken("alice")
	id := strings.TrimSpace(g.mustCLI(alice, "submit", "hello", "--param", "name=Audit", "--hold", "--quiet"))
	g.mustCLI(alice, "cancel", id)

	out := g.mustCLI(g.token, "audit", "--user", "alice")
	if !strings.Contains(out, "POST /v1/jobs") || !strings.Contains(out, "201") || !strings.Contains(out, id) {
		t.Errorf("hpcgate audit --user alice:\n%s\nwant the job's creation (201) and cancel", out)
	}
	if strings.Contains(out, alice) {
		t.Errorf("the audit log shows a token's secret:\n%s", out)
	}
	var entries []map[string]any
	if err := json.Unmarshal([]byte(g.mustCLI(g.token, "audit", "--job", id, "--json")), &entries); err != nil || len(entries) < 2 {
		t.Errorf("audit --job --json: %v, %d entries", err, len(entries))
	}
	if _, errOut, err := g.cli(alice, "audit"); err == nil || !strings.Contains(errOut, "admin") {
		t.Errorf("audit as a user: %v, %q; want a refusal naming admins", err, errOut)
	}

	// Every line is JSON; the lines of requests carry their request id,
	// those about a job its job id (the gateway runs at debug level here,
	// so every request has its access line).
	var sawRequest, sawJob bool
	for _, line := range strings.Split(strings.TrimSpace(g.log.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		if _, ok := rec["request_id"]; ok {
			sawRequest = true
		}
		if rec["job_id"] == id {
			sawJob = true
		}
	}
	if !sawRequest || !sawJob {
		t.Errorf("no log line with a request_id (%v) or with job_id %s (%v):\n%s", sawRequest, id, sawJob, g.log)
	}
}

// hpcgate me shows the user's use against each quota, as stored and run.
func TestMeShowsQuotas(t *testing.T) {
	g := startGateway(t, "quotas: {default: {jobs: 5, cores: 8, bytes: 1000, files: 9}, users: {bea: {jobs: 7}}}\n")
	bea := g.userToken("bea")
	story := filepath.Join(t.TempDir(), "story.txt")
	if err := os.WriteFile(story, []byte("twelve bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	g.mustCLI(bea, "upload", story, "in/story.txt")
	g.mustCLI(bea, "submit", "hello", "--param", "name=Quota", "--hold", "--quiet")
	out := g.mustCLI(bea, "me")
	for _, want := range []string{`Quota jobs:\s+1 of 7\n`, `Quota cores:\s+1 of 8\n`, `Quota bytes:\s+12 B of 1000 B\n`, `Quota files:\s+1 of 9\n`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("hpcgate me:\n%s\nwant %q", out, want)
		}
	}
}
