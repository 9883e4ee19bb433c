package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/api"
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
	if _, _, _, err := a.executor(&containerRun{}, root, nil, &api.Spec{}, api.TaskExecutor{Image: "i", Command: []string{"c"}, Stdout: "/etc/out.txt"}); err == nil {
		t.Error("an executor's stdout went through a link")
	}
	if _, err := os.Lstat(filepath.Join(outside, "out.txt")); err == nil {
		t.Fatal("stdout written outside the task's directory")
	}
}
