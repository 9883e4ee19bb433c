package jobscript

import (
	"flag"
	"fmt"
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
	if _, err := Parse("x", "{{quote .Nope}}"); err != nil {
		t.Fatal(err) // parses; fails at render
	}
	tm, _ := Parse("x", "{{quote .Nope}}")
	if _, err := tm.Render(Data{Command: []string{"x"}}); err == nil {
		t.Fatal("a template naming an unknown field rendered")
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The default script, rendered with hostile values, is kept in testdata.
func TestDefaultGolden(t *testing.T) {
	got, err := Default().Render(Data{JobID: "j1", Name: "x\nrm -rf / #", WorkDir: "/w/it's",
		Command: []string{"/opt/agent", "run", "$(x)"}, Secrets: []Secret{{Path: "/w/j1.secret.HPCGATE_TOKEN", Value: "t'ok\nen"}}})
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "default.sh")
	if *update {
		os.MkdirAll("testdata", 0o755)
		os.WriteFile(golden, got, 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil || string(want) != string(got) {
		t.Fatalf("rendered\n%s\nwant (%v; -update rewrites it)\n%s", got, err, want)
	}
}

// A newline in the name stays inside the comment; the secrets reach their
// files, readable by this account only, and appear nowhere else.
func TestScriptQuotesEverything(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "escaped")
	work := filepath.Join(dir, "w")
	secret := filepath.Join(dir, "j1.secret.TOKEN")
	script, err := Default().Render(Data{JobID: "j1", Name: "x\ntouch " + marker + "\n#", WorkDir: work,
		Command: []string{"/bin/sh", "-c", "true"}, Secrets: []Secret{{Path: secret, Value: "s3cret'\n$(touch " + marker + ")"}}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "job.sh")
	os.WriteFile(p, script, 0o700)
	if out, err := exec.Command(p).CombinedOutput(); err != nil {
		t.Fatalf("script failed: %v\n%s\n%s", err, out, script)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatalf("a value broke out of its quotes:\n%s", script)
	}
	fi, err := os.Stat(secret)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v, %v; want mode 0600", fi, err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "s3cret'\n$(touch "+marker+")" {
		t.Fatalf("secret file holds %q", b)
	}
}

func TestTemplateMustQuote(t *testing.T) {
	for _, text := range []string{
		"{{.WorkDir}}",
		"{{.Name | printf \"%s\"}}",
		"{{range .Secrets}}{{.Value}}{{end}}",
		"{{if .Name}}{{.JobID}}{{end}}",
		`{{define "x"}}{{.Name}}{{end}}{{template "x" .}}`,
	} {
		if _, err := Parse("x", text); err == nil {
			t.Errorf("Parse(%q) took a template that prints a value unquoted", text)
		}
	}
	for _, text := range []string{"{{quote .WorkDir}}", "{{.Name | comment}}", "{{$w := .WorkDir}}{{quote $w}}", "{{argv .Command}}"} {
		if _, err := Parse("x", text); err != nil {
			t.Errorf("Parse(%q): %v", text, err)
		}
	}
	tm, _ := Parse("x", "#!/bin/sh\nexec {{argv .Command}}\n")
	if _, err := tm.Render(Data{Command: []string{"x"}, Secrets: []Secret{{Path: "/p", Value: "v"}}}); err == nil {
		t.Fatal("a template that drops the secrets rendered")
	}
}

// An array script, run as the engine would run each task: every task
// writes its own secrets, has its own variables and directory, sends its
// output to its own file, and no value escapes its quotes.
func TestArrayScript(t *testing.T) {
	dir := t.TempDir()
	evil := `'; touch ` + dir + `/pwned; echo '`
	var tasks []ArrayTask
	for i, id := range []string{"ja", "jb"} {
		jd := filepath.Join(dir, id)
		tasks = append(tasks, ArrayTask{Index: i + 1, JobID: id, WorkDir: filepath.Join(jd, "work"), Output: filepath.Join(jd, id+".out"),
			Secrets: []Secret{{Path: filepath.Join(jd, "token"), Value: "tok-" + id + evil}, {Path: filepath.Join(jd, "ca"), Value: "the CA\n" + evil}},
			Env:     map[string]string{"HPCGATE_JOB_ID": id, "HPCGATE_TOKEN_FILE": filepath.Join(jd, "token")}})
	}
	script, err := ArrayScript("TASK_INDEX", tasks, []string{"sh", "-c", `echo "$HPCGATE_JOB_ID in $(pwd)"; cat "$HPCGATE_TOKEN_FILE"`})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(script), "the CA"); n != 1 {
		t.Errorf("the shared secret is in the script %d times, want once", n)
	}
	for _, tk := range tasks {
		cmd := exec.Command("sh", "-s")
		cmd.Stdin = strings.NewReader(string(script))
		cmd.Env = append(os.Environ(), fmt.Sprintf("TASK_INDEX=%d", tk.Index))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("task %d: %v\n%s", tk.Index, err, out)
		}
		out, _ := os.ReadFile(tk.Output)
		want := tk.JobID + " in " + tk.WorkDir + "\ntok-" + tk.JobID + evil
		if string(out) != want {
			t.Errorf("task %d wrote %q, want %q", tk.Index, out, want)
		}
		ca, _ := os.ReadFile(tk.Secrets[1].Path)
		if st, _ := os.Stat(tk.Secrets[1].Path); string(ca) != "the CA\n"+evil || st.Mode().Perm() != 0o600 {
			t.Errorf("task %d's CA: %q, mode %v", tk.Index, ca, st.Mode())
		}
	}
	cmd := exec.Command("sh", "-s")
	cmd.Stdin = strings.NewReader(string(script))
	cmd.Env = append(os.Environ(), "TASK_INDEX=7")
	if err := cmd.Run(); err == nil {
		t.Error("a task index the array does not have ran")
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("a value escaped its quotes")
	}
}
