package slurmsched

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/jobscript"
)

// SubmitArray implements sched.ArraySubmitter: sbatch --array=0-N[%limit]
// with a script (jobscript.ArrayScript) in which SLURM_ARRAY_TASK_ID picks
// the task's job id, directory, secrets and variables; what all tasks
// share goes in sbatch's environment. Each task's batch output goes to
// JOBID.slurm.out in its own job directory, as a single job's; the array
// has the first task's name. The tasks' ids are ARRAYID_INDEX. Only the default job script makes arrays: with
// an operator's own, it answers ErrUnsupported.
func (s *Scheduler) SubmitArray(ctx context.Context, tasks []sched.Task, limit int) ([]string, error) {
	if s.opts.Script != nil {
		return nil, fmt.Errorf("slurm: arrays need the default job script: %w", sched.ErrUnsupported)
	}
	if len(tasks) > sched.MaxArray {
		return nil, fmt.Errorf("slurm: an array of %d tasks: at most %d", len(tasks), sched.MaxArray)
	}
	return s.submitArray(ctx, tasks, limit)
}

func (s *Scheduler) submitArray(ctx context.Context, tasks []sched.Task, limit int) ([]string, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	first := tasks[0]
	vars, envs, err := sched.ArrayEnv(tasks)
	if err != nil {
		return nil, fmt.Errorf("slurm: %w", err)
	}
	// what every task has alike is the array's environment; the rest is
	// each task's, in the script
	common := make([]string, 0, len(vars))
	for k, v := range vars {
		common = append(common, k+"="+v)
	}
	sort.Strings(common)
	env, err := taskEnv(common)
	if err != nil {
		return nil, fmt.Errorf("slurm: job %s: %w", first.JobID, err)
	}
	at := make([]jobscript.ArrayTask, len(tasks))
	for i, t := range tasks {
		at[i] = jobscript.ArrayTask{Index: i, JobID: t.JobID, WorkDir: t.WorkDir, Output: filepath.Join(t.JobDir(), t.JobID+".slurm.out"), Env: envs[i]}
		for k, v := range t.Secret {
			at[i].Secrets = append(at[i].Secrets, jobscript.Secret{Path: t.SecretPath(k), Value: v})
		}
		for k := range envs[i] {
			if strings.HasPrefix(k, "SBATCH_") || strings.HasPrefix(k, "SLURM_") {
				return nil, fmt.Errorf("slurm: job %s: variable %s would steer Slurm", t.JobID, k)
			}
		}
	}
	script, err := jobscript.ArrayScript("SLURM_ARRAY_TASK_ID", at, first.Command)
	if err != nil {
		return nil, fmt.Errorf("slurm: job %s: %w", first.JobID, err)
	}

	key := sched.ArrayKey(tasks) // what a retried submission is known by
	defer s.locks.Lock(key)()
	id, err := s.find(ctx, first.Name, key)
	if err != nil {
		return nil, err
	}
	if id == "" {
		for _, t := range tasks {
			if err := t.MakeJobDir(); err != nil {
				s.log.Warn("cannot create the job's directory here; the nodes must have it", "job", t.JobID, "dir", t.JobDir(), "err", err)
			}
		}
		args := s.submitArgs(first, first.Name, filepath.Dir(first.JobDir()))
		for i, a := range args {
			switch {
			case strings.HasPrefix(a, "--comment="):
				args[i] = "--comment=" + commentPrefix + key
			case strings.HasPrefix(a, "--output="), strings.HasPrefix(a, "--error="):
				args[i] = a[:strings.Index(a, "=")+1] + "/dev/null" // each task's goes to its own directory
			}
		}
		spec := "--array=0-" + strconv.Itoa(len(tasks)-1)
		if limit > 0 {
			spec += "%" + strconv.Itoa(limit)
		}
		args = append(args, spec)
		b, err := s.cmd.RunAs(ctx, first.Account, script, env, "sbatch", args...)
		if err != nil {
			return nil, fmt.Errorf("slurm did not take the array of job %s: %w", first.JobID, err)
		}
		id, _, _ = strings.Cut(strings.TrimSpace(string(b)), ";")
		if _, err := strconv.ParseUint(id, 10, 64); err != nil {
			return nil, fmt.Errorf("slurm: array of job %s: sbatch printed %q, not a job id", first.JobID, b)
		}
		s.log.Info("submitted to Slurm as an array", "first_job", first.JobID, "tasks", len(tasks), "slurm_id", id)
	} else {
		s.log.Info("array already in Slurm", "first_job", first.JobID, "slurm_id", id)
	}
	ids := make([]string, len(tasks))
	for i := range tasks {
		ids[i] = id + "_" + strconv.Itoa(i)
	}
	return ids, nil
}
