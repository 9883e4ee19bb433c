package sgesched

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/sched/jobscript"
)

// SubmitArray implements sched.ArraySubmitter: qsub -t 1-N [-tc LIMIT]
// with a script (jobscript.ArrayScript) in which SGE_TASK_ID picks the
// task's job id, directory and variables. Grid Engine shows job scripts
// to every user, so the tasks' secrets are written here, to their files,
// as Submit does, and only their paths are in the script; what all tasks
// share goes in qsub -v. Each task's output goes to JOBID.sge.out in its
// own job directory. The tasks' ids are JOB.TASK. Only the default job
// script makes arrays: with an operator's own, ErrUnsupported.
func (s *Scheduler) SubmitArray(ctx context.Context, tasks []sched.Task, limit int) ([]string, error) {
	if s.ownScript {
		return nil, fmt.Errorf("sge: arrays need the default job script: %w", sched.ErrUnsupported)
	}
	if len(tasks) > sched.MaxArray {
		return nil, fmt.Errorf("sge: an array of %d tasks: at most %d", len(tasks), sched.MaxArray)
	}
	return s.submitArray(ctx, tasks, limit)
}

func (s *Scheduler) submitArray(ctx context.Context, tasks []sched.Task, limit int) ([]string, error) {
	if len(tasks) == 0 {
		return nil, nil
	}
	first := tasks[0]
	if err := s.placeable(first); err != nil {
		return nil, err
	}
	// what every task has alike goes in qsub -v; the rest is each task's
	common, envs, err := sched.ArrayEnv(tasks)
	if err != nil {
		return nil, fmt.Errorf("sge: %w", err)
	}
	at := make([]jobscript.ArrayTask, len(tasks))
	for i, t := range tasks {
		at[i] = jobscript.ArrayTask{Index: i + 1, JobID: t.JobID, WorkDir: t.WorkDir, Output: t.JobDir() + "/" + t.JobID + ".sge.out", Env: envs[i]}
	}
	script, err := jobscript.ArrayScript("SGE_TASK_ID", at, first.Command)
	if err != nil {
		return nil, fmt.Errorf("sge: job %s: %w", first.JobID, err)
	}
	// qsub's arguments as for the first task, but its variables and
	// output: the array's
	base := first
	base.Env, base.Secret = common, nil
	args, env := s.qsubArgs(base)
	key := sched.ArrayKey(tasks) // what a retried submission is known by
	for i, a := range args {
		switch {
		case a == "-o":
			args[i+1] = "/dev/null" // each task's goes to its own directory
		case strings.HasPrefix(a, contextVar+"="):
			args[i] = contextVar + "=" + key
		}
	}
	args = append(args, "-t", "1-"+strconv.Itoa(len(tasks)))
	if limit > 0 {
		args = append(args, "-tc", strconv.Itoa(limit))
	}

	defer s.locks.Lock(key)()
	id, ok := s.remembered(key)
	if !ok {
		if id, err = s.find(ctx, sched.Task{JobID: key, Name: first.Name}); err != nil {
			return nil, err
		}
	}
	if id == "" {
		for _, t := range tasks {
			if err := t.MakeJobDir(); err != nil {
				return nil, fmt.Errorf("sge: %w", err)
			}
			if err := t.WriteSecrets(); err != nil {
				return nil, fmt.Errorf("sge: %w", err)
			}
		}
		out, err := s.cmd.RunAs(ctx, first.Account, script, env, "qsub", args...)
		if err != nil {
			for _, t := range tasks {
				t.RemoveSecrets()
			}
			if said(err, "no suitable queues") {
				return nil, fmt.Errorf("%w: grid engine refused the array: %w", sched.ErrUnsupported, err)
			}
			return nil, fmt.Errorf("sge: %w", err)
		}
		// -terse prints "ID.1-N:1" for an array
		id, _, _ = strings.Cut(strings.TrimSpace(string(out)), ".")
		if !idRe.MatchString(id) {
			return nil, fmt.Errorf("sge: qsub printed %q, not a job id", out)
		}
		s.log.Info("sge array submitted", "first_job", first.JobID, "tasks", len(tasks), "sge_id", id)
	}
	s.remember(key, id)
	ids := make([]string, len(tasks))
	for i := range tasks {
		ids[i] = id + "." + strconv.Itoa(i+1)
	}
	return slices.Clip(ids), nil
}
