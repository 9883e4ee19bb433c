package agent

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/api"
)

// An allocation is where a job runs: its nodes, in the engine's order
// (the first is where the agent runs), with the tasks it may start on
// each (one per core).
type allocation struct {
	hosts []string
	tasks []int
}

// allocationOf reads the job's allocation from its engine's variables:
// Slurm's SLURM_JOB_NODELIST and SLURM_TASKS_PER_NODE, Grid Engine's
// PE_HOSTFILE, or else this host with the job's cores.
func allocationOf(getenv func(string) string, res api.Resources) (allocation, error) {
	cores := max(1, res.CoresPerNode)
	if list := getenv("SLURM_JOB_NODELIST"); list != "" && getenv("SLURM_JOB_ID") != "" {
		hosts, err := expandHostlist(list)
		if err != nil {
			return allocation{}, fmt.Errorf("SLURM_JOB_NODELIST: %w", err)
		}
		tasks, err := expandCounts(getenv("SLURM_TASKS_PER_NODE"), len(hosts), cores)
		if err != nil {
			return allocation{}, fmt.Errorf("SLURM_TASKS_PER_NODE: %w", err)
		}
		return allocation{hosts, tasks}, nil
	}
	if f := getenv("PE_HOSTFILE"); f != "" {
		return readPEHostfile(f)
	}
	return allocation{[]string{hostname()}, []int{cores}}, nil
}

// readPEHostfile reads Grid Engine's PE_HOSTFILE: "HOST SLOTS QUEUE
// PROCESSORS" a line.
func readPEHostfile(name string) (allocation, error) {
	f, err := os.Open(name)
	if err != nil {
		return allocation{}, fmt.Errorf("PE_HOSTFILE: %w", err)
	}
	defer f.Close()
	var a allocation
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.Atoi(fields[min(1, len(fields)-1)])
		if len(fields) < 2 || err != nil || n < 1 {
			return allocation{}, fmt.Errorf("PE_HOSTFILE: unexpected line %q", sc.Text())
		}
		a.hosts, a.tasks = append(a.hosts, fields[0]), append(a.tasks, n)
	}
	if err := sc.Err(); err != nil {
		return allocation{}, fmt.Errorf("PE_HOSTFILE: %w", err)
	}
	if len(a.hosts) == 0 {
		return allocation{}, fmt.Errorf("PE_HOSTFILE %s lists no host", name)
	}
	return a, nil
}

// environ is the allocation as the job's command learns it, engine-neutral:
// HPCGATE_NODES, HPCGATE_NODELIST (comma-separated), HPCGATE_NTASKS (one
// task per core), HPCGATE_CORES_PER_NODE, HPCGATE_HOSTFILE (Open MPI's
// format, "HOST slots=N" a line, written to hostfile) and HPCGATE_LAUNCH,
// the command that starts one process per task on every node (the
// environment's launcher, or srun on Slurm and mpirun with the host file
// elsewhere), and OMPI_MCA_orte_forward_job_control=1 unless the job has
// it already.
func (a allocation) environ(hostfile string, res api.Resources, getenv func(string) string) ([]string, error) {
	var b strings.Builder
	total := 0
	for i, h := range a.hosts {
		fmt.Fprintf(&b, "%s slots=%d\n", h, a.tasks[i])
		total += a.tasks[i]
	}
	if err := os.MkdirAll(filepath.Dir(hostfile), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(hostfile, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	launch := getenv("HPCGATE_LAUNCH")
	switch {
	case launch != "":
	case getenv("SLURM_JOB_ID") != "":
		launch = "srun"
	default:
		launch = "mpirun --hostfile " + hostfile
	}
	vars := []string{
		"HPCGATE_NODES=" + strconv.Itoa(len(a.hosts)),
		"HPCGATE_NODELIST=" + strings.Join(a.hosts, ","),
		"HPCGATE_NTASKS=" + strconv.Itoa(total),
		"HPCGATE_CORES_PER_NODE=" + strconv.Itoa(max(1, res.CoresPerNode)),
		"HPCGATE_HOSTFILE=" + hostfile,
		"HPCGATE_LAUNCH=" + launch,
	}
	if getenv(forwardJobControl) == "" {
		// Open MPI's mpirun passes the agent's SIGTSTP and SIGCONT on to
		// the processes it started on other nodes (see freezer.freeze)
		vars = append(vars, forwardJobControl+"=1")
	}
	return vars, nil
}

// forwardJobControl makes Open MPI's mpirun pass SIGTSTP (as SIGSTOP) and
// SIGCONT on to the job's processes on every node.
const forwardJobControl = "OMPI_MCA_orte_forward_job_control"

// hostlistPart is one part of a Slurm host list: a prefix, an optional
// bracketed range list, and a suffix without brackets (n1, n[1-3,7],
// rack[1-2]-node).
var hostlistPart = regexp.MustCompile(`^([^\[\],]*)(?:\[([0-9,-]+)\]([^\[\],]*))?$`)

// expandHostlist expands Slurm's compressed host list (n[1-3,5],m7 is n1,
// n2, n3, n5, m7), keeping each range's zero padding (n[01-02]). One
// bracket a name, as Slurm's own lists of nodes with one index have.
func expandHostlist(list string) ([]string, error) {
	var hosts []string
	for _, part := range splitTop(list) {
		m := hostlistPart.FindStringSubmatch(part)
		if m == nil || part == "" {
			return nil, fmt.Errorf("unexpected host list %q", list)
		}
		if m[2] == "" {
			hosts = append(hosts, part)
			continue
		}
		for _, r := range strings.Split(m[2], ",") {
			lo, hi, isRange := strings.Cut(r, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || lo == "" || hi == "" || a > b || b-a > 100000 || len(hosts)+b-a > 100000 {
				return nil, fmt.Errorf("unexpected range %q in host list %q", r, list)
			}
			for i := a; i <= b; i++ {
				hosts = append(hosts, fmt.Sprintf("%s%0*d%s", m[1], len(lo), i, m[3]))
			}
		}
	}
	return hosts, nil
}

// splitTop splits s at the commas outside brackets.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// expandCounts expands Slurm's per-node counts ("2(x3),1" is 2, 2, 2, 1)
// for n nodes; "" is def on each.
func expandCounts(s string, n, def int) ([]int, error) {
	var out []int
	if s == "" {
		for range n {
			out = append(out, def)
		}
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		v, rep, repeated := strings.Cut(part, "(x")
		times := 1
		if repeated {
			r, ok := strings.CutSuffix(rep, ")")
			t, err := strconv.Atoi(r)
			if !ok || err != nil || t < 1 || t > n {
				return nil, fmt.Errorf("unexpected counts %q", s)
			}
			times = t
		}
		c, err := strconv.Atoi(v)
		if err != nil || c < 1 || len(out)+times > n {
			return nil, fmt.Errorf("unexpected counts %q for %d nodes", s, n)
		}
		for range times {
			out = append(out, c)
		}
	}
	if len(out) != n {
		return nil, fmt.Errorf("counts %q are not for %d nodes", s, n)
	}
	return out, nil
}
