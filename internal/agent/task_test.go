package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/container"
)

// The task's paths are mounted once each, parents before what they hold:
// a path below a mount is seen through it.
func TestTaskMounts(t *testing.T) {
	root := t.TempDir()
	for _, f := range []string{"in/a.txt", "shared/in.txt", "refs/r.txt"} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(root, f), []byte("x"), 0o644)
	}
	ts := &api.TaskSpec{
		Volumes: []string{"/shared"},
		Outputs: []api.TaskOutput{{Path: "/shared/dir", Directory: true}, {Path: "/out/x.txt"}, {Path: "/out/*.csv", PathPrefix: "/out/"}},
		Inputs:  []api.TaskPath{{Path: "/in/a.txt"}, {Path: "/shared/in.txt"}, {Path: "/refs", Directory: true}},
	}
	ms, err := taskMounts(root, ts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		if m.Source != filepath.Join(root, m.Target) {
			t.Errorf("mount %s from %s, want the mirror below root", m.Target, m.Source)
		}
		got = append(got, fmt.Sprintf("%s:%v", m.Target, m.ReadOnly))
	}
	if want := "[/in/a.txt:true /out:false /refs:true /shared:false]"; fmt.Sprint(got) != want {
		t.Errorf("mounts %v, want %s", got, want)
	}
	if st, err := os.Stat(filepath.Join(root, "out")); err != nil || !st.IsDir() {
		t.Errorf("an output's directory was not made: %v", err)
	}

	// an output's directory below a read-only DIRECTORY input is mounted
	// read-write of its own
	ms, err = taskMounts(root, &api.TaskSpec{Inputs: []api.TaskPath{{Path: "/refs", Directory: true}}, Outputs: []api.TaskOutput{{Path: "/refs/res/x.txt"}}})
	if err != nil || len(ms) != 2 || ms[1].Target != "/refs/res" || ms[1].ReadOnly {
		t.Errorf("an output below a read-only input: %+v, %v", ms, err)
	}

	// an input that is missing, or behind a link, is refused
	if _, err := taskMounts(root, &api.TaskSpec{Inputs: []api.TaskPath{{Path: "/in/none.txt"}}}); err == nil {
		t.Error("a missing input was mounted")
	}
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	os.Symlink(outside, filepath.Join(root, "etc"))
	_, err = taskMounts(root, &api.TaskSpec{Inputs: []api.TaskPath{{Path: "/etc/secret"}}})
	if err == nil || !strings.Contains(err.Error(), "link") {
		t.Errorf("an input behind a link: %v", err)
	}
	_, err = taskMounts(root, &api.TaskSpec{Volumes: []string{"/etc/x"}})
	if err == nil {
		t.Error("a volume behind a link was made")
	}
	if _, err := os.Lstat(filepath.Join(outside, "x")); err == nil {
		t.Fatal("taskMounts made a directory through a link, outside the task's")
	}
	// nor does an executor's stdout file go through one
	a := &agent{}
	if _, _, _, err := a.executor(&containerRun{}, root, nil, &api.Spec{}, 0, api.TaskExecutor{Image: "i", Command: []string{"c"}, Stdout: "/etc/out.txt"}); err == nil {
		t.Error("an executor's stdout went through a link")
	}
	if _, err := os.Lstat(filepath.Join(outside, "out.txt")); err == nil {
		t.Fatal("stdout written outside the task's directory")
	}
}

// An executor's variables, named by the task, reach its container from a
// file, never the runtime's own environment (where LD_PRELOAD would load
// into podman itself); its stdin must be a regular file (a FIFO would
// block the agent, a device be read as root) and its stdout replaces
// whatever was there.
func TestExecutorEnvAndStdio(t *testing.T) {
	root, spool := t.TempDir(), t.TempDir()
	a := &agent{spool: spool, dir: t.TempDir()}
	c := &containerRun{rt: container.Runtime{Kind: container.Podman}, dir: a.dir}
	ex := api.TaskExecutor{Image: "localhost/x", Command: []string{"true"}, Env: map[string]string{"LD_PRELOAD": "/x.so", "A": "1 2"}}
	run, _, closeIO, err := a.executor(c, root, nil, &api.Spec{}, 0, ex)
	if err != nil {
		t.Fatal(err)
	}
	closeIO()
	argv, env, _, _, err := run.command("j", "exec-0", ex.Command, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range env {
		if strings.HasPrefix(e, "LD_PRELOAD=") || strings.HasPrefix(e, "A=") {
			t.Errorf("the task's variable %s is in the runtime's environment", e)
		}
	}
	i := slices.Index(argv, "--env-file")
	if i < 0 {
		t.Fatalf("no --env-file in %v", argv)
	}
	if b, _ := os.ReadFile(argv[i+1]); string(b) != "A=1 2\nLD_PRELOAD=/x.so\n" {
		t.Errorf("environment file %q", b)
	}
	if st, err := os.Stat(argv[i+1]); err != nil || st.Mode().Perm() != 0o600 || !strings.HasPrefix(argv[i+1], spool) {
		t.Errorf("environment file %s: %v, want 0600 in the spool", argv[i+1], err)
	}

	if err := syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, _, err := a.executor(c, root, nil, &api.Spec{}, 1, api.TaskExecutor{Image: "i", Command: []string{"c"}, Stdin: "/fifo"})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("a FIFO as stdin: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a FIFO as stdin blocked the agent")
	}
	_, sio, closeIO, err := a.executor(c, root, nil, &api.Spec{}, 2, api.TaskExecutor{Image: "i", Command: []string{"c"}, Stdout: "/fifo"})
	if err != nil {
		t.Fatal(err)
	}
	closeIO()
	if st, err := os.Lstat(filepath.Join(root, "fifo")); err != nil || !st.Mode().IsRegular() || sio.out == nil {
		t.Errorf("stdout over a FIFO: %v, %v", st.Mode(), err)
	}
}

// A FILE output that is a link or a directory delivered nothing (a link
// is not followed), and the task ended COMPLETE all the same: a workflow
// engine went on as if the file were there. It fails the task now, as a
// missing one does; it does not when the executors failed already.
func TestFileOutputThatIsNoFile(t *testing.T) {
	a := &agent{dir: t.TempDir()}
	out := filepath.Join(a.dir, taskRoot, "out")
	if err := os.MkdirAll(filepath.Join(out, "dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(out, "link")); err != nil {
		t.Fatal(err)
	}
	// a file reached through a link on the way
	if err := os.WriteFile(filepath.Join(out, "dir", "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(out, "dir"), filepath.Join(out, "via")); err != nil {
		t.Fatal(err)
	}
	ts := &api.TaskSpec{Outputs: []api.TaskOutput{{Path: "/out/link", File: "r/link"}, {Path: "/out/dir", File: "r/dir"}, {Path: "/out/none", File: "r/none"}, {Path: "/out/via/f", File: "r/f"}}}
	err := a.deliverOutputs(t.Context(), ts, true)
	if err == nil {
		t.Fatal("outputs that are no files passed")
	}
	for _, p := range []string{"/out/link (not a regular file", "/out/dir (not a regular file", "/out/none", "/out/via/f (not a regular file"} {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%v: want %s named", err, p)
		}
	}
	if err := a.deliverOutputs(t.Context(), ts, false); err != nil {
		t.Errorf("after failed executors: %v; want the outputs' lack not to mask that", err)
	}
}

// A glob output whose directory the executor replaced by a link (to the
// node's /etc, say) delivers nothing below it and ends at once. The
// agent, which runs outside the sandbox, listed the link's target, had
// each match refused as a link, took that for an outage and retried for
// as long as it may wait for a gateway, holding the task's slot (found
// by the seventh probe).
func TestGlobOutputThroughALink(t *testing.T) {
	a := &agent{dir: t.TempDir(), log: slog.New(slog.DiscardHandler), opts: Options{RetryFor: time.Hour, FinishRetryFor: time.Hour}}
	out := filepath.Join(a.dir, taskRoot, "out")
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "admin.token"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(out, "g")); err != nil {
		t.Fatal(err)
	}
	ts := &api.TaskSpec{Outputs: []api.TaskOutput{{Path: "/out/g/*", PathPrefix: "/out/g/", File: "r/"}}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.deliverOutputs(ctx, ts, true); err != nil {
		t.Fatalf("deliverOutputs = %v; want nothing delivered, and no wait", err)
	}
}

// globBelow matches as filepath.Glob does, but reads no directory that is
// a link.
func TestGlobBelow(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"real/sub", "other"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"real/a.txt", "real/sub/b.txt", "other/a.txt", ".hidden"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "real"), filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for pat, want := range map[string][]string{
		"*/a.txt":    {"other/a.txt", "real/a.txt"}, // not link/a.txt
		"link/*":     nil,
		"link/a.txt": nil,
		"real/*/*":   {"real/sub/b.txt"},
		"*":          {".hidden", "link", "other", "real"}, // a match may be a link: its reader checks
		"real/a.txt": {"real/a.txt"},
		"none/*":     nil,
	} {
		got, err := globBelow(root, pat)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("globBelow(%q) = %q, %v; want %q", pat, got, err, want)
		}
	}
	if _, err := globBelow(root, "out/["); err == nil {
		t.Error("a bad pattern passed")
	}
}

// An image that runs as a user of its own reads the task's inputs and
// writes its outputs' directories: the agent's 0600 files and 0700
// directories were root's alone (found by the seventh probe). A link is
// not followed: what it names keeps its mode.
func TestShareWithContainers(t *testing.T) {
	root := t.TempDir()
	in, out := filepath.Join(root, "in"), filepath.Join(root, "out")
	for _, d := range []string{filepath.Join(in, "sub"), out} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	file, exe, elsewhere := filepath.Join(in, "sub", "a.txt"), filepath.Join(in, "run.sh"), filepath.Join(t.TempDir(), "secret")
	for _, f := range []struct {
		p    string
		mode os.FileMode
	}{{file, 0o600}, {exe, 0o700}, {elsewhere, 0o600}} {
		if err := os.WriteFile(f.p, nil, f.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(f.p, f.mode) // whatever the umask
	}
	if err := os.Symlink(elsewhere, filepath.Join(in, "link")); err != nil {
		t.Fatal(err)
	}
	// an input below a volume, in a directory of its own (found by review)
	under := filepath.Join(out, "in", "data.txt")
	if err := os.MkdirAll(filepath.Dir(under), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(under, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(under, 0o600)
	single := filepath.Join(root, "single.txt")
	if err := os.WriteFile(single, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := shareWithContainers([]container.Mount{{Source: in, Target: "/in", ReadOnly: true}, {Source: single, Target: "/s.txt", ReadOnly: true}, {Source: out, Target: "/out"}})
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{in: 0o755, filepath.Join(in, "sub"): 0o755, file: 0o644, exe: 0o744, single: 0o644, out: 0o777, elsewhere: 0o600,
		filepath.Dir(under): 0o777, under: 0o644} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}
}
