package agent

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/api"
)

func TestExpandHostlist(t *testing.T) {
	for in, want := range map[string][]string{
		"n1":                 {"n1"},
		"n[1-3]":             {"n1", "n2", "n3"},
		"n[1-2,5],m7":        {"n1", "n2", "n5", "m7"},
		"node[08-10]":        {"node08", "node09", "node10"},
		"rack[1-2]-a,gpu":    {"rack1-a", "rack2-a", "gpu"},
		"a.example,b[3]":     {"a.example", "b3"},
		"n[1,3],x[2-3],y[9]": {"n1", "n3", "x2", "x3", "y9"},
	} {
		got, err := expandHostlist(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("expandHostlist(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "n[", "n[3-1]", "n[1-]", "n[a-b]", "n[1]x[2]", "n,,m", "n[1-999999]"} {
		if got, err := expandHostlist(bad); err == nil {
			t.Errorf("expandHostlist(%q) = %q, want an error", bad, got)
		}
	}
}

func FuzzExpandHostlist(f *testing.F) {
	for _, s := range []string{"n[1-3,5],m7", "node[08-10]", "a,b", "x[1]-y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hosts, err := expandHostlist(s)
		if err != nil {
			return
		}
		if len(hosts) == 0 || len(hosts) > 100001 {
			t.Fatalf("%q gave %d hosts", s, len(hosts))
		}
		for _, h := range hosts {
			if h == "" || strings.ContainsAny(h, "[],") {
				t.Fatalf("%q gave host %q", s, h)
			}
		}
	})
}

func TestExpandCounts(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want []int
	}{
		{"2(x3)", 3, []int{2, 2, 2}},
		{"2(x2),1", 3, []int{2, 2, 1}},
		{"4", 1, []int{4}},
		{"", 2, []int{7, 7}},
	} {
		got, err := expandCounts(c.in, c.n, 7)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("expandCounts(%q, %d) = %v, %v; want %v", c.in, c.n, got, err, c.want)
		}
	}
	for _, bad := range []string{"2(x4)", "2(x3", "a", "0", "2,2,2,2", "1"} {
		if got, err := expandCounts(bad, 3, 1); err == nil {
			t.Errorf("expandCounts(%q, 3) = %v, want an error", bad, got)
		}
	}
}

// Each engine's description of a job's nodes becomes the same variables.
func TestAllocationEnviron(t *testing.T) {
	dir := t.TempDir()
	pe := filepath.Join(dir, "pe_hostfile")
	if err := os.WriteFile(pe, []byte("g1 2 multi.q@g1 UNDEFINED\ng2 2 multi.q@g2 UNDEFINED\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := api.Resources{Nodes: 2, CoresPerNode: 2}
	for name, c := range map[string]struct {
		env       map[string]string
		want      []string
		hostfile  string
		nodesWant string
	}{
		"slurm": {
			env:      map[string]string{"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_TASKS_PER_NODE": "2(x2)"},
			want:     []string{"HPCGATE_NODES=2", "HPCGATE_NODELIST=n1,n2", "HPCGATE_NTASKS=4", "HPCGATE_CORES_PER_NODE=2", "HPCGATE_LAUNCH=srun", forwardJobControl + "=1"},
			hostfile: "n1 slots=2\nn2 slots=2\n",
		},
		"grid engine, the environment's launcher": {
			env:      map[string]string{"PE_HOSTFILE": pe, "HPCGATE_LAUNCH": "mpirun --bind-to none", forwardJobControl: "0"},
			want:     []string{"HPCGATE_NODES=2", "HPCGATE_NODELIST=g1,g2", "HPCGATE_NTASKS=4", "HPCGATE_LAUNCH=mpirun --bind-to none"},
			hostfile: "g1 slots=2\ng2 slots=2\n",
		},
		"this host": {
			env:      map[string]string{},
			want:     []string{"HPCGATE_NODES=1", "HPCGATE_NODELIST=" + hostname(), "HPCGATE_NTASKS=2"},
			hostfile: hostname() + " slots=2\n",
		},
	} {
		getenv := func(k string) string { return c.env[k] }
		a, err := allocationOf(getenv, res)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		hf := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"), "hostfile")
		vars, err := a.environ(hf, res, getenv)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if name == "this host" {
			c.want = append(c.want, "HPCGATE_LAUNCH=mpirun --hostfile "+hf)
		}
		if c.env[forwardJobControl] != "" && slices.Contains(vars, forwardJobControl+"=1") {
			t.Errorf("%s: the job's own %s was overridden", name, forwardJobControl)
		}
		for _, w := range append(c.want, "HPCGATE_HOSTFILE="+hf) {
			if !slices.Contains(vars, w) {
				t.Errorf("%s: %q lacks %s", name, vars, w)
			}
		}
		if b, err := os.ReadFile(hf); err != nil || string(b) != c.hostfile {
			t.Errorf("%s: host file %q, %v; want %q", name, b, err, c.hostfile)
		}
	}
	if _, err := readPEHostfile(filepath.Join(dir, "none")); err == nil {
		t.Error("a missing PE_HOSTFILE was read")
	}
	if err := os.WriteFile(pe, []byte("g1 two q UNDEFINED\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readPEHostfile(pe); err == nil {
		t.Error("a PE_HOSTFILE without slots was read")
	}
}

// Templates call "hpcgate" by name. When this hpcgate's file has another
// name (hpcgate-1.4, or the file a link resolved to), the job's PATH
// still finds it: through a link of that name in the spool. The test
// binary is such a file (agent.test).
func TestJobPathRunsThisHpcgate(t *testing.T) {
	a := &agent{id: "j1", dir: t.TempDir(), spool: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	env := a.environ(&api.Spec{Resources: api.Resources{Nodes: 1, CoresPerNode: 1}})
	cmd := exec.Command("sh", "-c", `command -v hpcgate`)
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hpcgate is not on the job's PATH: %v", err)
	}
	found, err := filepath.EvalSymlinks(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	self, _ := filepath.EvalSymlinks(selfPath())
	if found != self {
		t.Fatalf("hpcgate on the job's PATH is %s, want this binary, %s", found, self)
	}
	// a second job step makes the link again over the first
	if env2 := a.environ(&api.Spec{Resources: api.Resources{Nodes: 1, CoresPerNode: 1}}); !slices.Equal(env2, env) {
		t.Errorf("a second environment differs:\n%q\n%q", env2, env)
	}
}
