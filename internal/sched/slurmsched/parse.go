package slurmsched

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// queueFormat is squeue's output format (-O, with -r: one line per array
// task) for Poll: array job id and task index (N/A for a plain job), job
// id, state, reason, end time (SLURM_TIME_FORMAT=standard), time limit and
// the batch script's wait status (exit code << 8 | signal), as slurmctld
// has them. An array task's id is ARRAY_INDEX, as sbatch's user knows it
// (Slurm gives a task a job id of its own once it starts).
const queueFormat = "ArrayJobID:|,ArrayTaskID:|,JobID:|,State:|,Reason:|,EndTime:|,TimeLimit:|,exit_code"

// queueRow is one line of squeue -O queueFormat. Exit is the wait status
// as sacct's ExitCode writes it ("code:signal").
type queueRow struct {
	ID, State, Reason, End, TimeLimit, Exit string
}

// parseQueue parses squeue -h -O queueFormat output, keyed by job id.
func parseQueue(out string) (map[string]queueRow, error) {
	rows := make(map[string]queueRow)
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 8 || f[2] == "" || f[3] == "" {
			return nil, fmt.Errorf("squeue: unexpected line %q", line)
		}
		id := f[2]
		if f[1] != "N/A" {
			if _, err := strconv.ParseUint(f[1], 10, 32); err != nil || f[0] == "" {
				return nil, fmt.Errorf("squeue: unexpected line %q", line)
			}
			id = f[0] + "_" + f[1]
		}
		if !slurmID.MatchString(id) {
			return nil, fmt.Errorf("squeue: unexpected line %q", line)
		}
		status, err := strconv.ParseUint(f[7], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("squeue: job %s: exit status %q", id, f[7])
		}
		exit := fmt.Sprintf("%d:%d", status>>8, status&0x7f)
		rows[id] = queueRow{ID: id, State: f[3], Reason: f[4], End: f[5], TimeLimit: f[6], Exit: exit}
	}
	return rows, nil
}

// acctFormat is sacct's output format for Poll.
const acctFormat = "JobID,State,ExitCode,ElapsedRaw,TotalCPU,MaxRSS,Timelimit"

// acctRecord is what sacct says about one job: its allocation line, with
// the largest MaxRSS of its steps.
type acctRecord struct {
	ID, State, ExitCode, TimeLimit string
	Usage                          job.Usage
}

// parseAcct parses sacct -P -n -o acctFormat output, steps included
// (12, 12.batch, 12.extern, 12.0): each job's state, exit code, elapsed
// and CPU time come from its allocation line, max RSS from its steps.
func parseAcct(out string) (map[string]*acctRecord, error) {
	recs := make(map[string]*acctRecord)
	rss := make(map[string]int64)
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 7 || f[0] == "" {
			return nil, fmt.Errorf("sacct: unexpected line %q", line)
		}
		id, _, isStep := strings.Cut(f[0], ".")
		maxRSS, err := parseRSS(f[5])
		if err != nil {
			return nil, fmt.Errorf("sacct: job %s: %w", f[0], err)
		}
		rss[id] = max(rss[id], maxRSS)
		if isStep {
			continue
		}
		elapsed, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil && f[3] != "" {
			return nil, fmt.Errorf("sacct: job %s: elapsed %q", id, f[3])
		}
		cpu, err := parseDuration(f[4])
		if err != nil {
			return nil, fmt.Errorf("sacct: job %s: %w", id, err)
		}
		recs[id] = &acctRecord{ID: id, State: f[1], ExitCode: f[2], TimeLimit: f[6],
			Usage: job.Usage{CPUSeconds: cpu, WallSeconds: float64(elapsed)}}
	}
	for id, r := range recs {
		r.Usage.MaxRSSBytes = rss[id]
	}
	return recs, nil
}

// parseDuration parses Slurm's [DD-[HH:]]MM:SS[.mmm] (as in TotalCPU, or
// [DD-]HH:MM:SS) into seconds. "" is 0.
func parseDuration(s string) (float64, error) {
	if s == "" {
		return 0, nil
	}
	bad := fmt.Errorf("bad duration %q", s)
	var days float64
	if d, rest, ok := strings.Cut(s, "-"); ok {
		n, err := strconv.ParseUint(d, 10, 32)
		if err != nil {
			return 0, bad
		}
		days, s = float64(n), rest
	}
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || (days > 0 && len(parts) != 3) {
		return 0, bad
	}
	secs, err := strconv.ParseFloat(parts[len(parts)-1], 64)
	if err != nil || secs < 0 || strings.ContainsAny(parts[len(parts)-1], "eE+-") {
		return 0, bad
	}
	total := days*86400 + secs
	mult := 60.0
	for i := len(parts) - 2; i >= 0; i-- {
		n, err := strconv.ParseUint(parts[i], 10, 32)
		if err != nil {
			return 0, bad
		}
		total += float64(n) * mult
		mult *= 60
	}
	return total, nil
}

// parseRSS parses a memory size as sacct prints it (1234K, 12.5M, 2G,
// 0, "") into bytes; K, M, G, T, P are powers of 1024 and a bare number
// is bytes.
func parseRSS(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := 1.0
	switch s[len(s)-1] {
	case 'K', 'k':
		mult = 1 << 10
	case 'M', 'm':
		mult = 1 << 20
	case 'G', 'g':
		mult = 1 << 30
	case 'T', 't':
		mult = 1 << 40
	case 'P', 'p':
		mult = 1 << 50
	}
	num := s
	if mult != 1 {
		num = s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || strings.ContainsAny(num, "eE+-xXnN") {
		return 0, fmt.Errorf("bad memory size %q", s)
	}
	return int64(v * mult), nil
}

// parseExit parses Slurm's ExitCode "code:signal".
func parseExit(s string) (code, signal int, ok bool) {
	a, b, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	c, err1 := strconv.Atoi(a)
	g, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || c < 0 || g < 0 {
		return 0, 0, false
	}
	return c, g, true
}

// baseState is a Slurm state without what follows it ("CANCELLED by 0").
func baseState(state string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(state), " ")
	return strings.TrimSuffix(s, "+")
}

// finished tells whether a Slurm job state is final.
func finished(state string) bool {
	switch baseState(state) {
	case "PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "RESIZING",
		"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SPECIAL_EXIT", "SIGNALING",
		"STAGE_OUT", "STOPPED", "RESV_DEL_HOLD":
		return false
	}
	return true
}

// liveStatus maps the state and reason of a job Slurm still runs or
// queues (see finished).
func liveStatus(state, reason string) sched.Status {
	if reason == "None" || reason == "(null)" {
		reason = ""
	}
	switch baseState(state) {
	case "PENDING", "REQUEUED", "REQUEUE_FED":
		if reason == "JobHeldUser" || reason == "JobHeldAdmin" {
			return sched.Status{State: sched.Held, Reason: reason}
		}
		return sched.Status{State: sched.Queued, Reason: reason}
	case "REQUEUE_HOLD", "SPECIAL_EXIT", "RESV_DEL_HOLD":
		return sched.Status{State: sched.Held, Reason: reason}
	case "SUSPENDED", "STOPPED":
		return sched.Status{State: sched.Suspended, Reason: reason}
	default: // RUNNING, COMPLETING, CONFIGURING, RESIZING, SIGNALING, STAGE_OUT
		return sched.Status{State: sched.Running, Reason: reason}
	}
}

// endStatus maps a final state, its ExitCode (code:signal) and time limit
// to a Done status.
func endStatus(state, exit, timeLimit string) sched.Status {
	st := sched.Status{State: sched.Done}
	code, signal, ok := parseExit(exit)
	if ok {
		c := code
		if signal != 0 {
			c = 128 + signal
			st.Reason = fmt.Sprintf("killed by signal %d", signal)
		}
		st.ExitCode = &c
	}
	switch baseState(state) {
	case "COMPLETED", "FAILED":
		if !ok && baseState(state) == "COMPLETED" {
			zero := 0
			st.ExitCode = &zero
		}
	case "CANCELLED":
		st.Canceled = true
		st.Reason = "canceled in Slurm"
		if ok && code == 0 {
			st.ExitCode = nil // never ran, or killed by the cancel: no code to tell
		}
	case "TIMEOUT":
		st.Reason = "reached its walltime limit"
		if timeLimit != "" && timeLimit != "UNLIMITED" && timeLimit != "Partition_Limit" {
			st.Reason += " (" + timeLimit + ")"
		}
	case "NODE_FAIL":
		st.Reason = "node failure"
	case "OUT_OF_MEMORY":
		st.Reason = "out of memory"
	case "PREEMPTED":
		st.Reason = "preempted"
	case "BOOT_FAIL":
		st.Reason = "node boot failure"
	case "DEADLINE":
		st.Reason = "missed its deadline"
	default:
		st.Reason = "ended in Slurm state " + strings.TrimSpace(state)
	}
	return st
}

// ended reads squeue's end time (SLURM_TIME_FORMAT=standard, local time).
func ended(end string) (time.Time, bool) {
	t, err := time.ParseInLocation("2006-01-02T15:04:05", end, time.Local)
	return t, err == nil
}
