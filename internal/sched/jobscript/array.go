package jobscript

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// ArrayTask is one task of an array job, as ArrayScript writes it.
type ArrayTask struct {
	Index   int    // the engine's task index
	JobID   string // the gateway's job id
	WorkDir string // absolute
	Output  string // the file the task's own output goes to
	Secrets []Secret
	Env     map[string]string // this task's variables (the rest are the array's)
}

var varName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ArrayScript renders the batch script of an array job: indexVar (the
// engine's task index variable, SLURM_ARRAY_TASK_ID or SGE_TASK_ID)
// chooses a task in a case, which sends the rest of its output to its own
// file, writes its secrets (umask 077, new files), exports its variables
// and enters its working directory; then the agent starts. Every value is
// quoted; a secret every task has the same value of is written in the
// script once.
func ArrayScript(indexVar string, tasks []ArrayTask, command []string) ([]byte, error) {
	if len(tasks) == 0 || len(command) == 0 {
		return nil, fmt.Errorf("job script: an array needs tasks and a command")
	}
	if !varName.MatchString(indexVar) {
		return nil, fmt.Errorf("job script: index variable %q", indexVar)
	}
	// secrets of one value in every task are hoisted into variables
	shared := map[string]string{} // value → variable
	counts := map[string]int{}
	for _, t := range tasks {
		seen := map[string]bool{}
		for _, s := range t.Secrets {
			if !seen[s.Value] {
				seen[s.Value] = true
				counts[s.Value]++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# hpcgate array of %d jobs, from job %s.\n", len(tasks), Comment(tasks[0].JobID))
	b.WriteString("# This script only starts the agent, as the job whose task index this is.\numask 077\n")
	var values []string
	for v, n := range counts {
		if n == len(tasks) && len(tasks) > 1 {
			values = append(values, v)
		}
	}
	sort.Strings(values)
	for i, v := range values {
		shared[v] = "hpcgate_secret_" + strconv.Itoa(i)
		fmt.Fprintf(&b, "%s=%s\n", shared[v], Quote(v))
	}
	fmt.Fprintf(&b, "case \"${%s:-}\" in\n", indexVar)
	for _, t := range tasks {
		fmt.Fprintf(&b, "%d)\n", t.Index)
		fmt.Fprintf(&b, "\tmkdir -p %s || exit 111\n", Quote(t.WorkDir))
		fmt.Fprintf(&b, "\texec >>%s 2>&1\n", Quote(t.Output))
		for _, s := range t.Secrets {
			val := Quote(s.Value)
			if name, ok := shared[s.Value]; ok {
				val = `"$` + name + `"`
			}
			fmt.Fprintf(&b, "\trm -f %s && (set -C && printf '%%s' %s > %s) || exit 111\n", Quote(s.Path), val, Quote(s.Path))
		}
		names := make([]string, 0, len(t.Env))
		for k := range t.Env {
			if !varName.MatchString(k) {
				return nil, fmt.Errorf("job script: variable name %q", k)
			}
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(&b, "\texport %s=%s\n", k, Quote(t.Env[k]))
		}
		fmt.Fprintf(&b, "\tcd %s || exit 111\n\t;;\n", Quote(t.WorkDir))
	}
	fmt.Fprintf(&b, "*)\n\techo \"hpcgate: this array has no task ${%s:-}\" >&2\n\texit 111\n\t;;\nesac\n", indexVar)
	for i := range values {
		fmt.Fprintf(&b, "unset hpcgate_secret_%d\n", i)
	}
	q := make([]string, len(command))
	for i, a := range command {
		q[i] = Quote(a)
	}
	fmt.Fprintf(&b, "exec %s\n", strings.Join(q, " "))
	return []byte(b.String()), nil
}
