package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/container"
)

// A GA4GH TES task runs its executors in order, each in its own image.
// They share the task's files: below the working directory, root mirrors
// the containers' paths (the file a task puts at /data/in.txt is
// root/data/in.txt on the node), and each volume, each output's
// directory and each input is mounted at its path.

// taskRoot is the directory below the working directory that mirrors the
// containers' paths.
const taskRoot = "root"

// executeTask runs the task of spec: its inputs are fetched already.
func (a *agent) executeTask(ctx context.Context, spec *api.Spec, logs *shippers) outcome {
	ts := spec.Task
	root := filepath.Join(a.dir, taskRoot)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return outcome{err: "cannot make the task's directory: " + err.Error()}
	}
	for _, c := range ts.Contents {
		if err := writeBelow(root, strings.TrimPrefix(c.Path, "/"), []byte(c.Content)); err != nil {
			return outcome{err: "cannot write input " + c.Path + ": " + err.Error()}
		}
	}
	mounts, err := taskMounts(root, ts)
	if err != nil {
		return outcome{err: err.Error()}
	}
	if err := shareWithContainers(mounts); err != nil {
		return outcome{err: "cannot open the task's files to its containers: " + err.Error()}
	}
	kind, err := container.ParseKind(ts.Runtime)
	if err != nil || kind == container.Host {
		return outcome{err: "the task's environment has no container runtime"}
	}
	c := &containerRun{rt: container.Runtime{Kind: kind, Flags: ts.Flags}, dir: a.dir}
	if kind == container.Podman && os.Geteuid() != 0 {
		if c.env, err = a.rootless(ts.ImageStore); err != nil {
			return outcome{err: "cannot prepare rootless podman: " + err.Error()}
		}
	}
	var names []string
	for i := range ts.Executors {
		names = append(names, c.name(a.id, executorStep(i)))
	}
	done, out := a.guardContainers(c, names)
	if done == nil {
		return out
	}
	defer done()

	env := a.environ(spec)
	deadline := time.Time{}
	if w := spec.Resources.WalltimeS; w > 0 {
		deadline = time.Now().Add(time.Duration(w) * time.Second)
	}
	total := &api.Usage{}
	var last outcome
	for i, ex := range ts.Executors {
		// an earlier executor may have put a link where a mount's source
		// is (below a volume): the runtime would follow it
		for _, m := range mounts {
			if err := noLinkBelow(root, strings.TrimPrefix(m.Target, "/")); err != nil {
				return outcome{err: fmt.Sprintf("executor %d: %v", i, err), usage: total}
			}
		}
		run, sio, closeIO, err := a.executor(c, root, mounts, spec, i, ex)
		if err != nil {
			return outcome{err: fmt.Sprintf("executor %d: %v", i, err), usage: total}
		}
		a.ctr = run
		step := &api.Step{Index: i, StartedAt: time.Now().UTC(), Stdout: [2]int64{logs.stdout.offset(), 0}, Stderr: [2]int64{logs.stderr.offset(), 0}}
		rep := api.StateReport{State: api.StateRunning, Reason: fmt.Sprintf("executor %d of %d started", i+1, len(ts.Executors)), Step: step}
		if err := a.report(ctx, rep); err != nil {
			closeIO()
			return outcome{gone: true}
		}
		var limit time.Duration
		if !deadline.IsZero() {
			if limit = time.Until(deadline); limit <= 0 {
				closeIO()
				return outcome{err: walltimeExceeded(time.Duration(spec.Resources.WalltimeS) * time.Second), usage: total}
			}
		}
		res := a.runCmd(ctx, executorStep(i), ex.Command, env, logs, limit, sio)
		closeIO()
		if res.timedOut { // the task's walltime, not what was left of it
			res.err = walltimeExceeded(time.Duration(spec.Resources.WalltimeS) * time.Second)
		}
		a.ctr = nil
		if res.usage != nil {
			total.CPUSeconds += res.usage.CPUSeconds
			total.WallSeconds += res.usage.WallSeconds
			total.MaxRSSBytes = max(total.MaxRSSBytes, res.usage.MaxRSSBytes)
		}
		res.usage = total
		if res.gone {
			return res
		}
		ended := time.Now().UTC()
		step.EndedAt, step.ExitCode = &ended, res.exitCode
		step.Stdout[1], step.Stderr[1] = logs.stdout.offset(), logs.stderr.offset()
		rep = api.StateReport{State: api.StateRunning, Reason: fmt.Sprintf("executor %d of %d ended", i+1, len(ts.Executors)), Step: step}
		if err := a.report(ctx, rep); err != nil {
			return outcome{gone: true}
		}
		last = res
		failed := res.err != "" || res.exitCode == nil || *res.exitCode != 0
		if failed && (!ex.IgnoreError || res.err != "" || ctx.Err() != nil) {
			if res.err != "" {
				// not the executor's own exit (a signal, the walltime, the
				// runtime's failure): a system error in TES's terms
				res.exitCode = nil
			} else {
				res.err = fmt.Sprintf("executor %d (%s) failed%s", i, ex.Image, describeExit(res))
			}
			return res
		}
	}
	// The task's exit code is its last executor's, but for executors
	// whose failure it ignores: a task that goes on succeeds.
	zero := 0
	last.exitCode, last.err = &zero, ""
	return last
}

// executorStep names executor i's step (its container, its log lines).
func executorStep(i int) string { return "exec-" + strconv.Itoa(i) }

// executor is how executor i (ex) runs: its container (the task's
// mounts, its image, working directory and variables, the job's cores
// and memory) and its standard streams, which closeIO closes.
func (a *agent) executor(c *containerRun, root string, mounts []container.Mount, spec *api.Spec, i int, ex api.TaskExecutor) (run *containerRun, sio *stdio, closeIO func(), err error) {
	run = &containerRun{rt: c.rt, dir: c.dir, env: c.env}
	run.base = container.Step{Image: ex.Image, WorkDir: ex.Workdir, Mounts: mounts,
		Cores: spec.Resources.CoresPerNode, MemoryMB: spec.Resources.MemoryMB}
	if len(ex.Env) > 0 {
		// The task chose the names: never in the runtime's own environment,
		// where LD_PRELOAD or CONTAINERS_CONF would change the runtime
		// itself. Apptainer's prefix keeps them apart; podman and docker
		// read them from a file of the agent's.
		keys := slices.Sorted(maps.Keys(ex.Env))
		if c.rt.Kind == container.Apptainer {
			for _, k := range keys {
				run.add(k, ex.Env[k])
			}
		} else {
			var b strings.Builder
			for _, k := range keys {
				fmt.Fprintf(&b, "%s=%s\n", k, ex.Env[k])
			}
			spool, err := filepath.Abs(a.spool)
			if err != nil {
				return nil, nil, nil, err
			}
			run.base.EnvFile = filepath.Join(spool, "env-"+executorStep(i))
			if err := writeFileAtomic(run.base.EnvFile, []byte(b.String())); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	var files []*os.File
	closeIO = func() {
		for _, f := range files {
			f.Close()
		}
	}
	sio = &stdio{}
	for _, s := range []struct {
		p     string
		write bool
		set   func(*os.File)
	}{
		{ex.Stdin, false, func(f *os.File) { sio.in = f; run.base.Stdin = true }},
		{ex.Stdout, true, func(f *os.File) { sio.out = f }},
		{ex.Stderr, true, func(f *os.File) { sio.err = f }},
	} {
		if s.p == "" {
			continue
		}
		rel := strings.TrimPrefix(path.Clean(s.p), "/")
		var f *os.File
		if s.write {
			if f, err = createBelow(root, rel); err == nil {
				// readable by the next executors, whatever their image's
				// user (shareWithContainers)
				err = f.Chmod(0o644)
			}
		} else {
			f, _, err = openRegularBelow(root, rel)
		}
		if err != nil {
			closeIO()
			return nil, nil, nil, fmt.Errorf("%s: %w", s.p, err)
		}
		files = append(files, f)
		s.set(f)
	}
	return run, sio, closeIO, nil
}

// shareWithContainers lets every user of an executor's image use the
// mounts: inputs readable (directories searchable), each output's
// directory and each volume writable with the directories below them,
// and what is below them (an input under a volume) readable. The files
// were the agent's own (0600, directories 0700), and an image that runs
// as a user of its own (USER 65534, as many do) could neither read its
// inputs nor write its outputs. Nothing opens to the node's other users:
// the working directory above is 0700. No link is followed.
func shareWithContainers(mounts []container.Mount) error {
	for _, m := range mounts {
		err := filepath.WalkDir(m.Source, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type()&fs.ModeSymlink != 0 || !d.IsDir() && !d.Type().IsRegular() {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			add := fs.FileMode(0o444)
			switch {
			case d.IsDir() && !m.ReadOnly:
				add = 0o777 // a volume's, an output's: what an executor writes, and the inputs below
			case d.IsDir():
				add = 0o555
			}
			if fi.Mode().Perm()&add == add {
				return nil
			}
			return os.Chmod(p, fi.Mode().Perm()|add)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// taskMounts makes the task's shared paths below root and returns their
// mounts, parents first: each volume and each output's directory
// read-write, each input read-only, but none below another mount, which
// shows it already (root mirrors the containers' paths), except a
// read-write one below a read-only one.
func taskMounts(root string, ts *api.TaskSpec) ([]container.Mount, error) {
	type want struct {
		p   string
		ro  bool
		dir bool
	}
	var ws []want
	for _, v := range ts.Volumes {
		ws = append(ws, want{v, false, true})
	}
	for _, o := range ts.Outputs {
		ws = append(ws, want{o.MountDir(), false, true})
	}
	for _, in := range ts.Inputs {
		ws = append(ws, want{in.Path, true, in.Directory})
	}
	// parents first; of one path, read-write first
	slices.SortStableFunc(ws, func(a, b want) int {
		if c := strings.Compare(a.p, b.p); c != 0 {
			return c
		}
		if a.ro == b.ro {
			return 0
		}
		if !a.ro {
			return -1
		}
		return 1
	})
	var out []container.Mount
	for _, w := range ws {
		// seen through a mount above it, unless that one is read-only and
		// this one is not (an output's directory below a DIRECTORY input)
		if slices.ContainsFunc(out, func(m container.Mount) bool {
			return (w.p == m.Target || strings.HasPrefix(w.p, m.Target+"/")) && (w.ro || !m.ReadOnly)
		}) {
			continue
		}
		src := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(w.p, "/")))
		rel := strings.TrimPrefix(w.p, "/")
		if w.dir && !w.ro {
			if err := mkdirBelow(root, rel); err != nil {
				return nil, fmt.Errorf("%s: %w", w.p, err)
			}
		}
		if err := noLinkBelow(root, rel); err != nil {
			return nil, fmt.Errorf("%s: %w", w.p, err)
		}
		if _, err := os.Lstat(src); err != nil {
			return nil, fmt.Errorf("input %s is missing: %w", w.p, err)
		}
		out = append(out, container.Mount{Source: src, Target: w.p, ReadOnly: w.ro})
	}
	return out, nil
}

// deliverOutputs sends the task's outputs to the owner's files. A FILE
// output that is missing fails a task whose executors succeeded (ok).
func (a *agent) deliverOutputs(ctx context.Context, ts *api.TaskSpec, ok bool) error {
	root := filepath.Join(a.dir, taskRoot)
	var missing []string
	var refused refusals
	for _, o := range ts.Outputs {
		var froms []string
		switch {
		case o.Directory:
			dir := filepath.Join(root, strings.TrimPrefix(o.Path, "/"))
			if noLinkBelow(root, strings.TrimPrefix(o.Path, "/")) != nil {
				continue
			}
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					rel, _ := filepath.Rel(root, p)
					froms = append(froms, "/"+filepath.ToSlash(rel))
				}
				return nil
			})
		case o.PathPrefix != "":
			matches, err := globBelow(root, strings.TrimPrefix(o.Path, "/"))
			if err != nil {
				refused.tried++
				refused.msgs = append(refused.msgs, err.Error())
			}
			for _, m := range matches {
				if noLinkBelow(root, m) == nil {
					froms = append(froms, "/"+m)
				}
			}
		default:
			st, err := os.Lstat(filepath.Join(root, strings.TrimPrefix(o.Path, "/")))
			switch {
			case err != nil:
				missing = append(missing, o.Path)
				continue
			case !st.Mode().IsRegular() || noLinkBelow(root, strings.TrimPrefix(o.Path, "/")) != nil:
				// a link is not followed, a directory is no FILE: either
				// delivered nothing, which must not pass for success
				missing = append(missing, o.Path+" (not a regular file: a link, a directory or a device)")
				continue
			}
			froms = []string{o.Path}
		}
		for _, from := range froms {
			dst, match := o.Dest(from)
			if !match {
				continue
			}
			if err := refused.note(a.deliver(ctx, root, from, dst)); err != nil {
				return err
			}
		}
	}
	var msgs []string
	if ok && len(missing) > 0 {
		msgs = append(msgs, "the task made no "+strings.Join(missing, ", "))
	}
	if err := refused.err(); err != nil {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) > 0 {
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

// deliver sends the regular file at container path from (no link on the
// way) to the owner's file dst.
func (a *agent) deliver(ctx context.Context, root, from, dst string) error {
	rel := strings.TrimPrefix(from, "/")
	if st, err := os.Lstat(filepath.Join(root, rel)); err != nil || !st.Mode().IsRegular() {
		return nil // not a file: a directory, a link, a device
	}
	return a.retry(ctx, "output "+from, func(ctx context.Context) error {
		f, st, err := openRegularBelow(root, rel)
		if err != nil {
			return permanentError{err} // a link on the way, or changed: no retry mends it
		}
		defer f.Close()
		return putChecked(f, st.Size(), func(r io.Reader, size int64) (*api.FileInfo, error) {
			return a.c.PutDelivery(ctx, a.id, dst, from, r, size)
		})
	})
}

// taskPaths says msg in the task's terms: paths below the task's tree on
// the node become the containers' paths, so that the node's directories
// do not reach the task's log.
func (a *agent) taskPaths(msg string) string {
	if msg == "" {
		return ""
	}
	if root, err := filepath.Abs(filepath.Join(a.dir, taskRoot)); err == nil {
		msg = strings.ReplaceAll(msg, root, "")
	}
	return strings.ReplaceAll(msg, filepath.Join(a.dir, taskRoot), "")
}
