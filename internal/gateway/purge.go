package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/server"
	"github.com/hpcgate/hpcgate/internal/store"
)

// purgeBatch is how many jobs one purge removes at most before it lets
// other writers in.
const purgeBatch = 500

// every calls fn with the time age ago, at once and then every interval,
// until ctx ends; it logs fn's errors as what failed.
func (g *Gateway) every(ctx context.Context, interval, age time.Duration, what string, fn func(ctx context.Context, before time.Time) error) error {
	// a retention of nanoseconds made its tenth 0, and NewTicker panicked
	t := time.NewTicker(max(interval, time.Second))
	defer t.Stop()
	for {
		if err := fn(ctx, time.Now().Add(-age)); err != nil && ctx.Err() == nil {
			g.log.Error(what+" failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// purgeOnce removes every job that finished before before, in batches, and
// returns how many it removed.
func (g *Gateway) purgeOnce(ctx context.Context, before time.Time) (int, error) {
	// once a round (a scan of every unfinished job): a job made during
	// the round that takes an old job's outputs may find them gone, as
	// one made between DELETE's check and its deletion may
	keep, err := server.Needed(ctx, g.store)
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		ids, err := g.store.PurgeFinished(ctx, before, purgeBatch, keep)
		if err != nil {
			return n, err
		}
		for _, p := range ids {
			// its outputs and the files it stored in its space
			gone, err := deletePrefix(ctx, g.bucket, "jobs/"+p.ID+"/")
			if err != nil {
				// The job's row is gone: the sweep of leftovers tries again.
				g.log.Error("outputs of a purged job not deleted", "job_id", p.ID, "err", err)
			}
			g.countOff(ctx, p, gone)
		}
		n += len(ids)
		if len(ids) > 0 {
			g.log.Info("purged finished jobs", "count", len(ids), "finished_before", before)
		}
		if len(ids) < purgeBatch {
			return n, nil
		}
	}
}

// countOff counts what was deleted of removed job p's objects off its
// owner's stored bytes and files.
func (g *Gateway) countOff(ctx context.Context, p store.PurgedJob, gone store.Stored) {
	if gone == (store.Stored{}) {
		return
	}
	if _, err := g.store.AddStored(ctx, p.Owner, store.Stored{Bytes: -gone.Bytes, Files: -gone.Files}, store.Stored{}); err != nil {
		g.log.Error("stored bytes and files of a removed job's owner not counted down", "job_id", p.ID, "user", p.Owner, "bytes", gone.Bytes, "files", gone.Files, "err", err)
	}
}

// leftoverGrace is how long after a job's removal what it left in the
// bucket is swept: past the life of any output URL handed out before it
// went, and of an upload begun just before the URL expired (S3 checks
// the expiry when a PUT starts; 5 GiB at 1.5 MB/s takes an hour), so
// that nothing lands after the sweep. A sweep's claim on a job lasts as
// long.
const leftoverGrace = server.OutputURLTTL + time.Hour

// sweepOnce deletes the objects of every job removed before before (an
// output that landed after its job's deletion or purge had listed them,
// or what a crash or a failing bucket left), counts them off their
// owners' stored bytes and files, and forgets those jobs. It takes one
// job at a time, so that its claim on a job (leftoverGrace) runs out only
// if that one job's sweep takes as long. It stops at the first failure
// (the job is taken again once its claim has run out) and returns how
// many jobs it swept.
func (g *Gateway) sweepOnce(ctx context.Context, before time.Time) (int, error) {
	for n := 0; ; n++ {
		ps, err := g.store.TakeLeftovers(ctx, before, 1)
		if err != nil || len(ps) == 0 {
			return n, err
		}
		p := ps[0]
		gone, err := deletePrefix(ctx, g.bucket, "jobs/"+p.ID+"/")
		g.countOff(ctx, p, gone)
		if err != nil {
			return n, fmt.Errorf("objects of removed job %s: %w", p.ID, err)
		}
		if gone != (store.Stored{}) {
			g.log.Info("deleted what a removed job left", "job_id", p.ID, "user", p.Owner, "files", gone.Files, "bytes", gone.Bytes)
		}
		if err := g.store.DropLeftover(ctx, p.ID); err != nil {
			return n, err
		}
	}
}

// purgeOld removes what (audit entries, changes) is older than before,
// through purge in batches.
func (g *Gateway) purgeOld(ctx context.Context, what string, before time.Time, purge func(ctx context.Context, before time.Time, limit int) (int, error)) error {
	for ctx.Err() == nil {
		n, err := purge(ctx, before, purgeBatch)
		if err != nil {
			return err
		}
		if n > 0 {
			g.log.Info("purged old "+what, "count", n, "before", before)
		}
		if n < purgeBatch {
			break
		}
	}
	return nil
}

// deletePrefix deletes every object under prefix and returns what it
// deleted.
func deletePrefix(ctx context.Context, b blob.Bucket, prefix string) (store.Stored, error) {
	var objs []blob.Attrs
	if err := b.List(ctx, prefix, "", func(a blob.Attrs) error { objs = append(objs, a); return nil }); err != nil {
		return store.Stored{}, err
	}
	var gone store.Stored
	for _, a := range objs {
		switch err := b.Delete(ctx, a.Key); {
		case errors.Is(err, blob.ErrNotFound):
			continue // gone meanwhile: whoever deleted it counted it
		case err != nil:
			return gone, err
		}
		gone.Bytes += a.Size
		gone.Files++
	}
	return gone, nil
}
