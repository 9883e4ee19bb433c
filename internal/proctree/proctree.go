// Package proctree reads the process tree from Linux's /proc: which
// processes run below a process, and in which state. The local executor
// signals a task's tree with it, and the agent the steps below it.
package proctree

import (
	"os"
	"strconv"
	"strings"
)

// Descendants returns pid and every process below it, parents first. A
// process that forks while the tree is read may be missed: callers that
// must reach every process (to stop them) read it again until it holds no
// new one.
func Descendants(pid int) []int {
	children := map[int][]int{}
	des, _ := os.ReadDir("/proc")
	for _, de := range des {
		p, err := strconv.Atoi(de.Name())
		if err != nil {
			continue
		}
		if f := statFields(p); len(f) >= 2 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// State is pid's state letter as /proc shows it ('R' running, 'S'
// sleeping, 'T' stopped, 'Z' zombie, ...), or 0 if there is no such
// process.
func State(pid int) byte {
	if f := statFields(pid); len(f) > 0 && f[0] != "" {
		return f[0][0]
	}
	return 0
}

// statFields returns the fields of /proc/PID/stat after the command's
// name (which may hold spaces and parentheses): state, ppid, ...
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}
