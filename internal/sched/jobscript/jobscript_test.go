package jobscript

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestQuoteSurvivesTheShell(t *testing.T) {
	for _, s := range []string{"plain", "with space", "it's", `$(reboot)`, "`x`", `a"b`, "new\nline", ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("Quote(%q) through sh = %q, %v", s, out, err)
		}
	}
}

func TestDefaultScriptStartsOnlyTheAgent(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "work dir", "job1")
	marker := filepath.Join(dir, "ran")
	script, err := Default().Render(Data{JobID: "job1", Name: "x", WorkDir: work,
		Command: []string{"/bin/sh", "-c", `pwd > "$1"; echo "$2" >> "$1"`, "sh", marker, "it's $(not) run"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(script), "#!/bin/sh\n") {
		t.Fatalf("script does not start with a shebang:\n%s", script)
	}
	p := filepath.Join(dir, "job.sh")
	os.WriteFile(p, script, 0o700)
	if out, err := exec.Command(p).CombinedOutput(); err != nil {
		t.Fatalf("script failed: %v\n%s\n%s", err, out, script)
	}
	b, _ := os.ReadFile(marker)
	if string(b) != work+"\nit's $(not) run\n" {
		t.Fatalf("the agent saw %q", b)
	}
}

func TestBadTemplate(t *testing.T) {
	if _, err := Parse("x", "{{.Nope}}"); err != nil {
		t.Fatal(err) // parses; fails at render
	}
	tm, _ := Parse("x", "{{.Nope}}")
	if _, err := tm.Render(Data{Command: []string{"x"}}); err == nil {
		t.Fatal("a template naming an unknown field rendered")
	}
}
