package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/localsched"
	"github.com/hpcgate/hpcgate/internal/sched/schedtest"
)

const accountProbeTemplate = `
name: probe
version: 1
description: says which account it runs as and what it can read; for tests
command: [sh, -c, 'id -un > who.txt; echo mine > mine.txt; stat -c %U mine.txt > owner.txt; for p in $HPCGATE_PARAM_PATHS; do if ls "$p" >/dev/null 2>&1 || cat "$p" >/dev/null 2>&1; then echo "READ $p"; else echo "DENIED $p"; fi; done > probes.txt; echo probe-log']
parameters:
  type: object
  additionalProperties: false
  properties:
    paths: {type: string, default: ""}
outputs: [who.txt, owner.txt, probes.txt]
environments: [local]
resources:
  default: {nodes: 1, cores_per_node: 1, walltime_s: 600}
`

// sharedDir makes a directory that every account may read, with this
// hpcgate in its bin (the agent must be executable by the accounts: not in
// a private temporary directory).
func sharedDir(t *testing.T) (shared, bin string) {
	t.Helper()
	shared, err := os.MkdirTemp("/var/tmp", "hpcgate-e2e-*")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	os.Chmod(shared, 0o755)
	exe, _ := os.Executable()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(shared, "bin")
	os.Mkdir(bin, 0o755)
	if err := os.WriteFile(filepath.Join(bin, "hpcgate"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return shared, bin
}

// Through the whole gateway, as root with accounts mapped: each user's job
// runs as their account, and alice's cannot read bob's job's directory,
// the data directory, the admin token or the database; a user without an
// account is refused at submission, by name.
func TestJobsRunAsAccounts(t *testing.T) {
	alice, _ := schedtest.Accounts(t)
	shared, bin := sharedDir(t)
	tmpl := t.TempDir()
	envs, envNames := engineEnvs(t)
	probe := strings.Replace(accountProbeTemplate, "environments: [local]", "environments: ["+strings.Join(envNames, ", ")+"]", 1)
	if err := os.WriteFile(filepath.Join(tmpl, "probe.yaml"), []byte(probe), 0o600); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(shared, "work")
	g := &gw{t: t, dir: filepath.Join(t.TempDir(), "data"), bin: bin, addr: "127.0.0.1:0", slots: "2"}
	cfg := "template_dirs: [" + tmpl + "]\npoll_interval: 500ms\nwork_root: " + work +
		"\naccounts: {mode: map, map: {alice: hpcg-alice, bob: hpcg-bob}}\n" +
		// alice's jobs are charged to the project the test command makes
		// in Slurm and Grid Engine, her first (default) one
		"projects: {alice: [hpcg-proj]}\n" + envs + "agent_command: [" + filepath.Join(bin, "hpcgate") + ", agent]\n"
	g.cfgFile = filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(g.cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.start()
	t.Cleanup(g.stop)
	ctx := context.Background()

	run := func(user, paths string, env ...string) *api.Job {
		t.Helper()
		c := g.client(g.userToken(user))
		params, _ := json.Marshal(map[string]string{"paths": paths})
		req := api.JobRequest{Template: "probe", Parameters: params}
		if len(env) > 0 {
			req.Environment = env[0]
		}
		j, err := c.CreateJob(ctx, req, "")
		if err != nil {
			t.Fatalf("%s's job: %v", user, err)
		}
		j = waitJob(t, c, j.ID, 60*time.Second)
		if want := map[string]string{"alice": alice.Name}[user]; want != "" && j.Account != want {
			t.Errorf("the job of %s shows account %q, want %q", user, j.Account, want)
		}
		if j.State != api.StateSucceeded {
			t.Fatalf("%s's job: %+v\n%s", user, j, g.log)
		}
		return j
	}
	output := func(user, id, name string) string {
		t.Helper()
		r, _, err := g.client(g.userToken(user)).Output(ctx, id, name)
		if err != nil {
			t.Fatalf("output %s: %v", name, err)
		}
		defer r.Close()
		b, _ := io.ReadAll(r)
		return strings.TrimSpace(string(b))
	}

	bobJob := run("bob", "")
	if got := output("bob", bobJob.ID, "who.txt"); got != "hpcg-bob" {
		t.Errorf("bob's job ran as %q", got)
	}
	probes := []string{filepath.Join(work, bobJob.ID), filepath.Join(work, bobJob.ID, "work"), g.dir, filepath.Join(g.dir, "admin.token"), filepath.Join(g.dir, "hpcgate.db")}
	aliceJob := run("alice", strings.Join(probes, " "))
	if got := output("alice", aliceJob.ID, "who.txt"); got != "hpcg-alice" {
		t.Errorf("alice's job ran as %q", got)
	}
	for _, l := range strings.Split(output("alice", aliceJob.ID, "probes.txt"), "\n") {
		if !strings.HasPrefix(l, "DENIED ") {
			t.Errorf("from alice's job: %s", l)
		}
	}
	if n := len(strings.Split(output("alice", aliceJob.ID, "probes.txt"), "\n")); n != len(probes) {
		t.Errorf("%d probes, want %d", n, len(probes))
	}
	// what it wrote is its account's (the agent removes its directory at the end)
	if got := output("alice", aliceJob.ID, "owner.txt"); got != alice.Name {
		t.Errorf("the file alice's job wrote is owned by %q, want %s", got, alice.Name)
	}
	if logs := g.mustCLI(g.userToken("alice"), "logs", aliceJob.ID); !strings.Contains(logs, "probe-log") {
		t.Errorf("alice's job's log: %q", logs)
	}
	for _, p := range []string{g.dir, filepath.Join(g.dir, "admin.token")} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, %v; want the gateway's alone", p, fi.Mode(), err)
		}
	}

	// On Slurm and Grid Engine too, and their accounting names the account.
	for _, env := range envNames[1:] {
		j := run("alice", strings.Join(probes, " "), env)
		if got := output("alice", j.ID, "who.txt") + " " + output("alice", j.ID, "owner.txt"); got != alice.Name+" "+alice.Name {
			t.Errorf("%s: alice's job ran as, and wrote files of, %q", env, got)
		}
		for _, l := range strings.Split(output("alice", j.ID, "probes.txt"), "\n") {
			if !strings.HasPrefix(l, "DENIED ") {
				t.Errorf("%s: from alice's job: %s", env, l)
			}
		}
		if j.Project != "hpcg-proj" {
			t.Errorf("%s: alice's job is charged to %q, want her default project hpcg-proj", env, j.Project)
		}
		if logs := g.mustCLI(g.userToken("alice"), "logs", j.ID); !strings.Contains(logs, "probe-log") {
			t.Errorf("%s: alice's job's log: %q", env, logs)
		}
		var owner, project string
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if env == "slurm" {
				out, _ := exec.Command("sacct", "-n", "-X", "-P", "-o", "user,account", "-j", j.Backend.ID).Output()
				owner, project, _ = strings.Cut(strings.TrimSpace(string(out)), "|")
			} else {
				cmd := exec.Command("/usr/lib/gridengine/qacct", "-j", j.Backend.ID)
				cmd.Env = append(os.Environ(), "SGE_ROOT=/var/lib/gridengine", "SGE_CELL=default")
				out, _ := cmd.Output()
				for _, l := range strings.Split(string(out), "\n") {
					if f := strings.Fields(l); len(f) == 2 && f[0] == "owner" {
						owner = f[1]
					} else if len(f) == 2 && f[0] == "project" {
						project = f[1]
					}
				}
			}
			if owner == alice.Name && project == "hpcg-proj" {
				break
			}
		}
		if owner != alice.Name || project != "hpcg-proj" {
			t.Errorf("%s: the accounting names %q as the owner and %q as the project, want %s and hpcg-proj", env, owner, project, alice.Name)
		}
	}

	// A sweep goes to Slurm and Grid Engine as one array, submitted as the
	// account too: each variant runs as alice, in its own directory.
	ac := g.client(g.userToken("alice"))
	for _, env := range envNames[1:] {
		variants, _ := json.Marshal([]map[string]string{{"paths": ""}, {"paths": g.dir}})
		sw, err := ac.CreateSweep(ctx, api.SweepRequest{Template: "probe", Environment: env, Variants: variants}, "")
		if err != nil {
			t.Fatalf("%s: alice's sweep: %v", env, err)
		}
		arrays := map[string]bool{}
		for _, id := range sw.Jobs {
			j := waitJob(t, ac, id, 60*time.Second)
			if j.State != api.StateSucceeded || j.Backend == nil {
				t.Fatalf("%s: a job of alice's sweep: %+v", env, j)
			}
			arrays[strings.FieldsFunc(j.Backend.ID, func(r rune) bool { return r == '_' || r == '.' })[0]] = true
			if got := output("alice", id, "who.txt"); got != alice.Name {
				t.Errorf("%s: a job of alice's sweep ran as %q", env, got)
			}
		}
		if len(arrays) != 1 {
			t.Errorf("%s: alice's sweep went as %d arrays, want one", env, len(arrays))
		}
	}

	// carol has no account: refused at submission, by name.
	_, err := g.client(g.userToken("carol")).CreateJob(ctx, api.JobRequest{Template: "probe"}, "")
	var ce *client.Error
	if !errorsAs(err, &ce) || ce.Status != http.StatusForbidden || !strings.Contains(ce.Detail, "carol") {
		t.Fatalf("carol's job: %v; want 403 naming carol", err)
	}
}

// The laptop default (accounts mode single): jobs run as the gateway's own
// account, in the sandbox, where neither the data directory nor the admin
// token nor the database exists.
func TestSandboxedJobCannotReadDataDir(t *testing.T) {
	if _, err := localsched.FindSandbox(); err != nil {
		schedtest.Missing(t, "no working bubblewrap here (scripts/test.sh installs it): %v", err)
	}
	t.Run("gateway as this user", func(t *testing.T) {
		tmpl := t.TempDir()
		if err := os.WriteFile(filepath.Join(tmpl, "probe.yaml"), []byte(accountProbeTemplate), 0o600); err != nil {
			t.Fatal(err)
		}
		probeDataDir(t, startGateway(t, "template_dirs: ["+tmpl+"]\npoll_interval: 500ms\n"))
	})
	// The laptop's case: the gateway runs as an unprivileged account, and
	// bubblewrap makes its sandbox with user namespaces.
	t.Run("gateway as an unprivileged account", func(t *testing.T) {
		_, bob := schedtest.Accounts(t)
		shared, bin := sharedDir(t)
		data := filepath.Join(shared, "data")
		if err := os.Mkdir(data, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(data, bob.UID, bob.GID); err != nil {
			t.Fatal(err)
		}
		tmpl := filepath.Join(shared, "templates")
		os.Mkdir(tmpl, 0o755)
		if err := os.WriteFile(filepath.Join(tmpl, "probe.yaml"), []byte(accountProbeTemplate), 0o644); err != nil {
			t.Fatal(err)
		}
		// "hpcgate" in asBob is the gateway (and the CLI) run as bob
		asBob := filepath.Join(shared, "as-bob")
		os.Mkdir(asBob, 0o755)
		script := "#!/bin/sh\nexec " + sched.Runuser + " -u " + bob.Name + " -- " + filepath.Join(bin, "hpcgate") + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(asBob, "hpcgate"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		g := &gw{t: t, dir: data, bin: asBob, addr: "127.0.0.1:0", slots: "2", cfgFile: filepath.Join(shared, "config.yaml")}
		cfg := "template_dirs: [" + tmpl + "]\npoll_interval: 500ms\nagent_command: [" + filepath.Join(bin, "hpcgate") + ", agent]\n"
		if err := os.WriteFile(g.cfgFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		g.start()
		t.Cleanup(g.stop)
		if fi, err := os.Stat(filepath.Join(data, "admin.token")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(bob.UID) {
			t.Fatalf("the admin token: %v; want it made by the gateway, as %s", err, bob.Name)
		}
		probeDataDir(t, g)
	})
}

// probeDataDir runs a job on g's local executor that tries to read g's
// data directory, admin token and database: none may be found.
func probeDataDir(t *testing.T, g *gw) {
	t.Helper()
	c := g.client(g.userToken("alice"))
	probes := []string{g.dir, filepath.Join(g.dir, "admin.token"), filepath.Join(g.dir, "hpcgate.db")}
	params, _ := json.Marshal(map[string]string{"paths": strings.Join(probes, " ")})
	ctx := context.Background()
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "probe", Parameters: params}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j = waitJob(t, c, j.ID, 60*time.Second); j.State != api.StateSucceeded {
		t.Fatalf("job %+v", j)
	}
	r, _, err := c.Output(ctx, j.ID, "probes.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != len(probes) {
		t.Fatalf("probes: %q", lines)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "DENIED ") {
			t.Errorf("from a sandboxed job: %s", l)
		}
	}
}
