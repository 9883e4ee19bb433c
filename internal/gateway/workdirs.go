package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/hpcgate/hpcgate/internal/store"
)

// jobDirName is what a job's directory below a work root is called: the
// job's id (server.newJobID).
var jobDirName = regexp.MustCompile(`^[a-z2-7]{16}$`)

// sweepWorkdirs removes, every interval until ctx ends, the directories
// that Slurm and Grid Engine jobs leave below the work roots (the
// engine's output file, a working directory the agent kept) once their
// job has been finished for retention (sweepWorkdirsOnce). The local
// executor removes its own tasks' (local.workdir_retention).
func (g *Gateway) sweepWorkdirs(ctx context.Context, retention, interval time.Duration) error {
	return g.every(ctx, interval, retention, "removing finished jobs' directories", func(ctx context.Context, before time.Time) error {
		n, err := g.sweepWorkdirsOnce(ctx, before, before.Add(retention-max(retention, orphanAge)))
		if n > 0 {
			g.log.Info("removed finished jobs' directories", "count", n)
		}
		return err
	})
}

// engineRoots returns the work roots of the environments whose engine is
// not the local executor.
func (g *Gateway) engineRoots() []string {
	seen := map[string]bool{}
	var roots []string
	for _, e := range g.cfg.Environments {
		if e.Scheduler == "local" {
			continue
		}
		root := e.WorkdirRoot
		if root == "" {
			root = g.workRoot
		}
		if !seen[root] {
			seen[root] = true
			roots = append(roots, root)
		}
	}
	return roots
}

// orphanAge is how long a directory named as a job's must have been left
// unchanged before it is removed when no job of this gateway's has its
// name: one that another gateway shares the work root with may still run
// it.
const orphanAge = 7 * 24 * time.Hour

// sweepWorkdirsOnce removes the directory of every job below an engine's
// work root that finished before before, or, for a job no longer in the
// store (purged, deleted, or never this gateway's), last changed before
// orphansBefore. It returns how many it removed. What is not named as a
// job's directory is left alone, and so are a local environment's jobs.
func (g *Gateway) sweepWorkdirsOnce(ctx context.Context, before, orphansBefore time.Time) (int, error) {
	locals := map[string]bool{}
	for _, e := range g.cfg.Environments {
		if e.Scheduler == "local" {
			locals[e.Name] = true
		}
	}
	n := 0
	var errs []error
	for _, root := range g.engineRoots() {
		ents, err := os.ReadDir(root)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range ents {
			if ctx.Err() != nil {
				return n, ctx.Err()
			}
			if !e.IsDir() || !jobDirName.MatchString(e.Name()) {
				continue
			}
			dir := filepath.Join(root, e.Name())
			j, err := g.store.GetJob(ctx, e.Name())
			switch {
			case errors.Is(err, store.ErrNotFound):
				fi, err := e.Info()
				if err != nil || !fi.ModTime().Before(orphansBefore) {
					continue
				}
			case err != nil:
				errs = append(errs, err)
				continue
			case !j.State.Terminal() || locals[j.Environment] || !j.FinishedAt.Before(before):
				continue
			}
			// os.RemoveAll removes links below dir, never what they name
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, err)
				continue
			}
			n++
		}
	}
	return n, errors.Join(errs...)
}
