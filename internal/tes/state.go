package tes

import (
	"strings"

	"github.com/hpcgate/hpcgate/api"
)

// StateOf is the TES state of a task whose job is j. A held or suspended
// job is PAUSED; a failed job is an EXECUTOR_ERROR when an executor's
// command exited non-zero (the job has its exit code), a SYSTEM_ERROR
// otherwise (an input not fetched, an image missing, the engine lost the
// job); a job its engine preempted is PREEMPTED.
func StateOf(j *api.Job) State {
	switch j.State {
	case api.StatePending, api.StateQueued:
		return Queued
	case api.StateHeld, api.StateSuspended:
		return Paused
	case api.StateStarting:
		return Initializing
	case api.StateRunning, api.StateFinishing:
		return Running
	case api.StateSucceeded:
		return Complete
	case api.StateCanceled:
		return Canceled
	case api.StateFailed:
		if preempted(j) {
			return Preempted
		}
		if j.ExitCode != nil && *j.ExitCode != 0 {
			return ExecutorError
		}
		return SystemError
	}
	return Unknown
}

// preempted says whether the engine ended j by preemption (Slurm's
// PREEMPTED, which the job's reason names).
func preempted(j *api.Job) bool {
	return strings.Contains(strings.ToLower(j.Reason+" "+j.Error), "preempt")
}

// JobStates are the job states of tasks in state s (false: s is no
// state). A failed job is any of EXECUTOR_ERROR, SYSTEM_ERROR and
// PREEMPTED (StateOf tells which); no job is UNKNOWN or CANCELING (a
// cancel ends a job at once).
func JobStates(s State) ([]string, bool) {
	switch s {
	case Queued:
		return []string{api.StatePending, api.StateQueued}, true
	case Initializing:
		return []string{api.StateStarting}, true
	case Running:
		return []string{api.StateRunning, api.StateFinishing}, true
	case Paused:
		return []string{api.StateHeld, api.StateSuspended}, true
	case Complete:
		return []string{api.StateSucceeded}, true
	case Canceled:
		return []string{api.StateCanceled}, true
	case ExecutorError, SystemError, Preempted:
		return []string{api.StateFailed}, true
	case Unknown, Canceling:
		return nil, true
	}
	return nil, false
}
