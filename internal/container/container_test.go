package container

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// step has every option a runtime turns into flags.
func step(network bool) Step {
	return Step{
		Name: "hpcgate-j1-command", Image: "localhost/solver:2", Argv: []string{"sh", "-c", `echo "$X" > out; exit 3`},
		WorkDir: "/work",
		Mounts: []Mount{
			{Source: "/var/lib/hpcgate/work/j1", Target: "/work"},
			{Source: "/var/lib/hpcgate/work/j1/mesh.dat", Target: "/work/mesh.dat", ReadOnly: true},
		},
		Env:     []string{"HPCGATE_PARAM_N", "HPCGATE_JOB_ID"},
		Network: network, Cores: 4, MemoryMB: 2048,
	}
}

// The command line of every runtime, with mounts, environment, network and
// resource options, against its golden file (go test -update rewrites them).
func TestCommandLines(t *testing.T) {
	env := []string{"HPCGATE_PARAM_N=10", "HPCGATE_JOB_ID=j1"}
	for _, k := range Kinds {
		for _, network := range []bool{false, true} {
			name := string(k)
			if network {
				name += "-network"
			}
			t.Run(name, func(t *testing.T) {
				r := Runtime{Kind: k, Flags: []string{"--runtime", "runc"}}
				argv, procEnv, err := r.Command(step(network), env)
				if err != nil {
					t.Fatal(err)
				}
				var b strings.Builder
				b.WriteString("argv:\n")
				for _, a := range argv {
					b.WriteString("  " + a + "\n")
				}
				b.WriteString("env:\n")
				for _, e := range procEnv {
					b.WriteString("  " + e + "\n")
				}
				cmds := [][]string{r.StopCommand("hpcgate-j1-command", 10*time.Second)}
				cmds = append(cmds, r.PidCommand("hpcgate-j1-command"), r.RemoveCommand("hpcgate-j1-command"))
				cmds = append(cmds, r.ExistsCommand("localhost/solver:2"), r.LoadCommand("/tmp/hpcgate-images-0/solver.tar"))
				for _, c := range cmds {
					b.WriteString("then: " + strings.Join(c, " ") + "\n")
				}
				golden := filepath.Join("testdata", name+".golden")
				if *update {
					if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatal(err)
				}
				if b.String() != string(want) {
					t.Errorf("command line differs from %s:\n%s", golden, b.String())
				}
				if k != Host {
					// no value reaches a command line, where ps shows it
					for _, a := range argv {
						if strings.Contains(a, "=10") || strings.Contains(a, "=j1") {
							t.Errorf("argument %q carries an environment value", a)
						}
					}
				}
			})
		}
	}
}

// A step whose paths, names or image could be taken for options or would
// mount something else is refused before any runtime sees it.
func TestCheckRefusesUnsafeSteps(t *testing.T) {
	r := Runtime{Kind: Podman}
	for name, mod := range map[string]func(*Step){
		"image as option":   func(s *Step) { s.Image = "--privileged" },
		"no image":          func(s *Step) { s.Image = "" },
		"no command":        func(s *Step) { s.Argv = nil },
		"relative workdir":  func(s *Step) { s.WorkDir = "work" },
		"dotdot in mount":   func(s *Step) { s.Mounts[0].Source = "/var/lib/../../etc" },
		"colon in mount":    func(s *Step) { s.Mounts[0].Target = "/work:/etc" },
		"comma in mount":    func(s *Step) { s.Mounts[0].Source = "/a,ro" },
		"relative target":   func(s *Step) { s.Mounts[1].Target = "mesh.dat" },
		"env with value":    func(s *Step) { s.Env = []string{"A=b"} },
		"env pattern":       func(s *Step) { s.Env = []string{"AWS*"} },
		"name with a space": func(s *Step) { s.Name = "a b" },
		"relative env file": func(s *Step) { s.EnvFile = "env" },
	} {
		s := step(false)
		mod(&s)
		if _, _, err := r.Command(s, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// a step's variables from a file, for the runtimes that read one;
	// apptainer takes them prefixed, never from a file
	for _, k := range []Kind{Podman, Docker} {
		s := step(false)
		s.EnvFile, s.Stdin, s.WorkDir = "/spool/env-exec-0", true, ""
		argv, _, err := Runtime{Kind: k}.Command(s, nil)
		if err != nil {
			t.Fatal(err)
		}
		line := strings.Join(argv, " ")
		if !strings.Contains(line, " --env-file /spool/env-exec-0 ") || !strings.Contains(line, " --interactive ") || strings.Contains(line, "--workdir") {
			t.Errorf("%s: %s", k, line)
		}
	}
	s := step(false)
	s.EnvFile = "/spool/env"
	if _, _, err := (Runtime{Kind: Apptainer}).Command(s, nil); err == nil {
		t.Error("apptainer was given an environment file")
	}
	if _, err := ParseKind("singularity"); err == nil {
		t.Error("an unknown runtime was accepted")
	}
	if k, err := ParseKind(""); err != nil || k != Host {
		t.Errorf(`ParseKind("") = %v, %v; want host`, k, err)
	}
}

// The exit codes a runtime keeps for its own failures are told apart from
// the command's.
func TestRuntimeFailed(t *testing.T) {
	for _, c := range []struct {
		k    Kind
		code int
		want bool
	}{{Podman, 125, true}, {Podman, 127, true}, {Podman, 1, false}, {Podman, 3, false}, {Docker, 125, true}, {Apptainer, 255, true}, {Apptainer, 1, false}, {Host, 127, false}} {
		if _, got := (Runtime{Kind: c.k}).RuntimeFailed(c.code); got != c.want {
			t.Errorf("%s exit %d: runtime failed = %v, want %v", c.k, c.code, got, c.want)
		}
	}
}
