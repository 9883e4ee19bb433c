package dispatch

import (
	"context"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// A job of several nodes reports the usage its agent sees, which is that
// of its first node only. Its engine's accounting covers every node: once
// the job has ended, the dispatcher asks the engine for it and keeps the
// larger of the two (settleUsage).

// acctWait is a multi-node job whose engine's accounting is awaited.
type acctWait struct {
	env, backendID string
	since          time.Time
}

// acctPatience is how long the engine's accounting of an ended job is
// waited for.
const acctPatience = 10 * time.Minute

// awaitUsage notes that j's usage is to be taken from its engine once it
// ends, when j runs on several nodes.
func (d *Dispatcher) awaitUsage(j *job.Job) {
	if j.Resources.Nodes < 2 || j.BackendID == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.usage[j.ID]; !ok {
		d.usage[j.ID] = acctWait{env: j.Environment, backendID: j.BackendID, since: time.Now()}
	}
}

// settleUsage takes the engine's usage of the awaited jobs that are no
// longer active (active holds those that are), when the engine has it.
func (d *Dispatcher) settleUsage(ctx context.Context, active map[string]bool) {
	byEnv := map[string]map[string]string{} // env → backend id → job id
	d.mu.Lock()
	for id, w := range d.usage {
		if active[id] {
			continue
		}
		if time.Since(w.since) > acctPatience {
			delete(d.usage, id)
			continue
		}
		if byEnv[w.env] == nil {
			byEnv[w.env] = map[string]string{}
		}
		byEnv[w.env][w.backendID] = id
	}
	d.mu.Unlock()
	d.pollEnded(ctx, byEnv, func(sched.Scheduler) bool { return true },
		func(_ sched.Scheduler, _, id string, st sched.Status) {
			switch {
			case st.State == sched.Done && st.Usage != nil:
				d.takeUsage(ctx, id, st.Usage)
			case st.State == sched.Gone:
			default:
				return // not accounted yet: ask again next time
			}
			d.mu.Lock()
			delete(d.usage, id)
			d.mu.Unlock()
		})
}

// takeUsage records the engine's usage u of ended job id where it covers
// more than what the job has.
func (d *Dispatcher) takeUsage(ctx context.Context, id string, u *job.Usage) {
	_, err := d.store.UpdateJob(ctx, id, func(j *job.Job) error {
		if !j.State.Terminal() {
			return errStateMoved
		}
		if j.Usage != nil && j.Usage.CPUSeconds >= u.CPUSeconds {
			return errStateMoved // nothing to add
		}
		merged := *u
		if j.Usage != nil {
			merged.MaxRSSBytes = max(merged.MaxRSSBytes, j.Usage.MaxRSSBytes)
			merged.WallSeconds = max(merged.WallSeconds, j.Usage.WallSeconds)
		}
		j.Usage = &merged
		return nil
	})
	if err != nil && err != errStateMoved {
		d.log.Warn("recording the engine's usage", "job_id", id, "err", err)
	}
}
