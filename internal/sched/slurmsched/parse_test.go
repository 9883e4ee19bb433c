package slurmsched

import (
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

func TestParseDuration(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
		bad  bool
	}{
		{"", 0, false},
		{"00:00:00", 0, false},
		{"00:00.007", 0.007, false},
		{"00:12.989", 12.989, false},
		{"59:59.500", 3599.5, false},
		{"01:02:03", 3723, false},
		{"01:02:03.250", 3723.25, false},
		{"2-03:04:05", 2*86400 + 3*3600 + 4*60 + 5, false},
		{"1-00:00:00.5", 86400.5, false},
		{"12", 0, true},
		{"1-02:03", 0, true},
		{"a:b", 0, true},
		{"00:-1", 0, true},
		{"00:1e3", 0, true},
		{"1:2:3:4", 0, true},
		{"x-01:02:03", 0, true},
	} {
		got, err := parseDuration(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseDuration(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseRSS(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{"", 0, false},
		{"0", 0, false},
		{"4096", 4096, false},
		{"219496K", 219496 * 1024, false},
		{"1.5M", 3 << 19, false},
		{"2G", 2 << 30, false},
		{"1T", 1 << 40, false},
		{"K", 0, true},
		{"12Q", 0, true},
		{"-1K", 0, true},
		{"NaNK", 0, true},
		{"1e3K", 0, true},
	} {
		got, err := parseRSS(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("parseRSS(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseRSS(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseQueue(t *testing.T) {
	out := "12|N/A|12|PENDING|JobHeldAdmin|N/A|10:00|0                   \n13|N/A|13|FAILED|NonZeroExitCode|2026-11-23T10:13:07|1:00|768\n14|N/A|14|CANCELLED|None|2026-11-23T10:13:07|1:00|15\n" +
		"2380|3|2382|PENDING|JobArrayTaskLimit|N/A|UNLIMITED|0\n2380|0|2381|COMPLETED|None|2026-11-23T10:13:07|UNLIMITED|512\n\n"
	got, err := parseQueue(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]queueRow{
		"12": {ID: "12", State: "PENDING", Reason: "JobHeldAdmin", End: "N/A", TimeLimit: "10:00", Exit: "0:0"},
		"13": {ID: "13", State: "FAILED", Reason: "NonZeroExitCode", End: "2026-11-23T10:13:07", TimeLimit: "1:00", Exit: "3:0"},
		"14": {ID: "14", State: "CANCELLED", Reason: "None", End: "2026-11-23T10:13:07", TimeLimit: "1:00", Exit: "0:15"},
		// array tasks, by the ids their user knows
		"2380_3": {ID: "2380_3", State: "PENDING", Reason: "JobArrayTaskLimit", End: "N/A", TimeLimit: "UNLIMITED", Exit: "0:0"},
		"2380_0": {ID: "2380_0", State: "COMPLETED", Reason: "None", End: "2026-11-23T10:13:07", TimeLimit: "UNLIMITED", Exit: "2:0"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseQueue = %+v, want %+v", got, want)
	}
	if got, _ := parseQueue(""); len(got) != 0 {
		t.Fatalf("empty output gave %+v", got)
	}
	for _, bad := range []string{"12|PENDING", "12 PENDING None", "|RUNNING|None|x|y|0", "12|N/A|12|PENDING|None|N/A|1:00", "12|N/A|12|PENDING|None|N/A|1:00|-1", "12|N/A|12|PENDING|None|N/A|1:00|x", "2380|x|2382|PENDING|None|N/A|1:00|0", "|3|2382|PENDING|None|N/A|1:00|0", "12|N/A|1;2|PENDING|None|N/A|1:00|0"} {
		if _, err := parseQueue(bad); err == nil {
			t.Errorf("parseQueue(%q) took a malformed line", bad)
		}
	}
}

func TestParseAcct(t *testing.T) {
	out := strings.Join([]string{
		"7|COMPLETED|0:0|13|00:12.989||00:05:00",
		"7.batch|COMPLETED|0:0|13|00:12.989|219496K|",
		"7.extern|COMPLETED|0:0|13|00:00:00|1024K|",
		"8|CANCELLED by 0|0:0|1|00:00.008||00:01:00",
		"8.batch|CANCELLED|0:9|3|00:00.008||",
		"9|PENDING|0:0|0|00:00:00||UNLIMITED",
		"",
	}, "\n")
	got, err := parseAcct(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*acctRecord{
		"7": {ID: "7", State: "COMPLETED", ExitCode: "0:0", TimeLimit: "00:05:00",
			Usage: job.Usage{CPUSeconds: 12.989, MaxRSSBytes: 219496 * 1024, WallSeconds: 13}},
		"8": {ID: "8", State: "CANCELLED by 0", ExitCode: "0:0", TimeLimit: "00:01:00",
			Usage: job.Usage{CPUSeconds: 0.008, WallSeconds: 1}},
		"9": {ID: "9", State: "PENDING", ExitCode: "0:0", TimeLimit: "UNLIMITED"},
	}
	if !reflect.DeepEqual(got, want) {
		for id := range want {
			t.Errorf("%s: got %+v, want %+v", id, got[id], want[id])
		}
	}
	for _, bad := range []string{
		"7|COMPLETED|0:0|13|00:12.989|",     // too few fields
		"7|COMPLETED|0:0|x|00:12.989||",     // elapsed
		"7|COMPLETED|0:0|1|soon||",          // cpu time
		"7.batch|COMPLETED|0:0|1|00:01|9Z|", // rss
		"Slurm accounting storage is disabled",
	} {
		if _, err := parseAcct(bad); err == nil {
			t.Errorf("parseAcct(%q) took a malformed line", bad)
		}
	}
}

func ptr(n int) *int { return &n }

func TestStateMapping(t *testing.T) {
	for _, tt := range []struct {
		state, reason string
		want          sched.Status
	}{
		{"PENDING", "Priority", sched.Status{State: sched.Queued, Reason: "Priority"}},
		{"PENDING", "None", sched.Status{State: sched.Queued}},
		{"PENDING", "JobHeldUser", sched.Status{State: sched.Held, Reason: "JobHeldUser"}},
		{"PENDING", "JobHeldAdmin", sched.Status{State: sched.Held, Reason: "JobHeldAdmin"}},
		{"REQUEUE_HOLD", "JobHeldAdmin", sched.Status{State: sched.Held, Reason: "JobHeldAdmin"}},
		{"RUNNING", "None", sched.Status{State: sched.Running}},
		{"COMPLETING", "None", sched.Status{State: sched.Running}},
		{"CONFIGURING", "None", sched.Status{State: sched.Running}},
		{"SUSPENDED", "None", sched.Status{State: sched.Suspended}},
	} {
		if finished(tt.state) {
			t.Errorf("%s counted as finished", tt.state)
		}
		if got := liveStatus(tt.state, tt.reason); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("liveStatus(%s, %s) = %+v, want %+v", tt.state, tt.reason, got, tt.want)
		}
	}

	for _, tt := range []struct {
		state, exit, limit string
		want               sched.Status
	}{
		{"COMPLETED", "0:0", "", sched.Status{State: sched.Done, ExitCode: ptr(0)}},
		{"COMPLETED", "", "", sched.Status{State: sched.Done, ExitCode: ptr(0)}},
		{"FAILED", "3:0", "", sched.Status{State: sched.Done, ExitCode: ptr(3)}},
		{"FAILED", "0:9", "", sched.Status{State: sched.Done, ExitCode: ptr(137), Reason: "killed by signal 9"}},
		{"FAILED", "", "", sched.Status{State: sched.Done}},
		{"CANCELLED by 0", "0:0", "", sched.Status{State: sched.Done, Canceled: true, Reason: "canceled in Slurm"}},
		{"CANCELLED", "0:15", "", sched.Status{State: sched.Done, Canceled: true, Reason: "canceled in Slurm"}}, // the cancel's signal is not the job's exit code
		{"CANCELLED", "2:0", "", sched.Status{State: sched.Done, Canceled: true, ExitCode: ptr(2), Reason: "canceled in Slurm"}},
		{"CANCELLED+", "", "", sched.Status{State: sched.Done, Canceled: true, Reason: "canceled in Slurm"}},
		{"TIMEOUT", "0:15", "00:01:00", sched.Status{State: sched.Done, ExitCode: ptr(143), Reason: "reached its walltime limit (00:01:00)"}},
		{"TIMEOUT", "0:0", "UNLIMITED", sched.Status{State: sched.Done, ExitCode: ptr(0), Reason: "reached its walltime limit"}},
		{"NODE_FAIL", "0:0", "", sched.Status{State: sched.Done, ExitCode: ptr(0), Reason: "node failure"}},
		{"OUT_OF_MEMORY", "0:125", "", sched.Status{State: sched.Done, ExitCode: ptr(253), Reason: "out of memory"}},
		{"PREEMPTED", "0:0", "", sched.Status{State: sched.Done, ExitCode: ptr(0), Reason: "preempted"}},
		{"BOOT_FAIL", "", "", sched.Status{State: sched.Done, Reason: "node boot failure"}},
		{"DEADLINE", "", "", sched.Status{State: sched.Done, Reason: "missed its deadline"}},
		{"REVOKED", "", "", sched.Status{State: sched.Done, Reason: "ended in Slurm state REVOKED"}},
	} {
		if !finished(tt.state) {
			t.Errorf("%s not counted as finished", tt.state)
		}
		if got := endStatus(tt.state, tt.exit, tt.limit); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("endStatus(%s, %s, %s) = %+v (exit %v), want %+v (exit %v)", tt.state, tt.exit, tt.limit,
				got, deref(got.ExitCode), tt.want, deref(tt.want.ExitCode))
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestParseNodeCores(t *testing.T) {
	got, err := parseNodeCores("n1|2/0/0/2\nn2|0/2/0/2\nn3|1/1/0/2\n")
	if err != nil || !maps.Equal(got, map[string]int{"n1": 0, "n2": 2, "n3": 1}) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"n1|2/0/2", "n1 2/0/0/2", "|0/2/0/2", "n1|a/b/c/d"} {
		if _, err := parseNodeCores(bad); err == nil {
			t.Errorf("%q was taken", bad)
		}
	}
}

func TestParsePartition(t *testing.T) {
	out := "debug*|up|1/3/0/4|2|mixed\ndebug*|up|0/0/2/2|1|drained\nbatch|down|0/4/0/4|1|idle\n"
	p, err := parsePartition(out, "")
	if err != nil {
		t.Fatal(err)
	}
	want := &partitionFacts{name: "debug", state: "up", allocated: 1, idle: 3, other: 2, total: 6, nodes: 3,
		nodeStates: map[string]int{"mixed": 2, "drained": 1}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("default partition: %+v, want %+v", p, want)
	}
	if p, err := parsePartition(out, "batch"); err != nil || p.state != "down" || p.total != 4 || p.idle != 4 {
		t.Fatalf("batch: %+v, %v", p, err)
	}
	if _, err := parsePartition(out, "nope"); err == nil {
		t.Fatal("an unknown partition was found")
	}
	if _, err := parsePartition("debug|up|1/2/3|1|idle", "debug"); err == nil {
		t.Fatal("cores without four fields were taken")
	}
}

// An environment's own slurm.conf reaches every command (and, through
// sbatch's environment, the job's srun) as SLURM_CONF, over this process's.
func TestConfReachesCommands(t *testing.T) {
	t.Setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
	confs := func(s *Scheduler) (out []string) {
		for _, kv := range s.cmd.Env {
			if strings.HasPrefix(kv, "SLURM_CONF=") {
				out = append(out, kv)
			}
		}
		return out
	}
	if got := confs(New(&Options{Conf: "/etc/slurm-multi/slurm.conf"})); !slices.Equal(got, []string{"SLURM_CONF=/etc/slurm-multi/slurm.conf"}) {
		t.Errorf("with Conf: %q", got)
	}
	if got := confs(New(nil)); !slices.Equal(got, []string{"SLURM_CONF=/etc/slurm/slurm.conf"}) {
		t.Errorf("without Conf: %q", got)
	}
}

func TestSubmitArgs(t *testing.T) {
	s := New(&Options{Partition: "debug", Account: "proj", QOS: "short"})
	task := sched.Task{JobID: "J1", Resources: job.Resources{Nodes: 2, CoresPerNode: 4, MemoryMB: 512, WalltimeS: 61}}
	got := s.submitArgs(task, "name", "/w")
	for _, want := range []string{"--parsable", "--export=ALL", "--job-name=name", "--comment=hpcgate:J1",
		"--output=/w/J1.slurm.out", "--error=/w/J1.slurm.out", "--chdir=/w", "--nodes=2", "--ntasks-per-node=4",
		"--cpus-per-task=1", "--mem=512", "--time=2", "--partition=debug", "--account=proj", "--qos=short"} {
		if !slices.Contains(got, want) {
			t.Errorf("sbatch arguments %q lack %s", got, want)
		}
	}
	// A job's project is its account, over the environment's.
	task.Project = "chem01"
	if got := s.submitArgs(task, "name", "/w"); !slices.Contains(got, "--account=chem01") || slices.Contains(got, "--account=proj") {
		t.Errorf("with a project: %q", got)
	}
	got = New(nil).submitArgs(sched.Task{JobID: "J2", Resources: job.Resources{WalltimeS: 60}}, "n", "/w")
	for _, want := range []string{"--nodes=1", "--cpus-per-task=1", "--time=1"} {
		if !slices.Contains(got, want) {
			t.Errorf("defaults: %q lack %s", got, want)
		}
	}
	for _, a := range got {
		for _, p := range []string{"--mem", "--partition", "--account", "--qos"} {
			if strings.HasPrefix(a, p) {
				t.Errorf("zero options gave %s", a)
			}
		}
	}
}
