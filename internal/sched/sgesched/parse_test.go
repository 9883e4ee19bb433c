package sgesched

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// Outputs below are Son of Grid Engine 8.1.9's, as captured on a cell set
// up by scripts/setup-sge.sh.

const qstatPlain = `<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>11</JB_job_number>
      <JAT_prio>0.75000</JAT_prio>
      <JB_name>qdelr</JB_name>
      <JB_owner>root</JB_owner>
      <state>dr</state>
      <JAT_start_time>2026-11-23T10:15:00</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>9</JB_job_number>
      <JAT_prio>0.75000</JAT_prio>
      <JB_name>mem</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-23T10:14:59</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>2</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>6</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>abc</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-23T10:14:36</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>13</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>err</JB_name>
      <JB_owner>nobody</JB_owner>
      <state>Eqw</state>
      <JB_submission_time>2026-11-23T10:16:36</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>`

const qstatEmpty = `<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
  </queue_info>
  <job_info>
  </job_info>
</job_info>`

// qstat -f -u '*' -xml: two instances, one disabled; job 20 runs on both
// (a parallel job) and is listed in each.
const qstatFull = `<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <Queue-List>
      <name>all.q@vm</name>
      <qtype>BIP</qtype>
      <slots_used>2</slots_used>
      <slots_resv>0</slots_resv>
      <slots_total>4</slots_total>
      <load_avg>0.33545</load_avg>
      <arch>lx-amd64</arch>
      <job_list state="running">
        <JB_job_number>16</JB_job_number>
        <JAT_prio>0.50000</JAT_prio>
        <JB_name>b1</JB_name>
        <JB_owner>root</JB_owner>
        <state>r</state>
        <JAT_start_time>2026-11-23T10:17:14</JAT_start_time>
        <slots>1</slots>
      </job_list>
      <job_list state="running">
        <JB_job_number>20</JB_job_number>
        <JAT_prio>0.50000</JAT_prio>
        <JB_name>par</JB_name>
        <JB_owner>root</JB_owner>
        <state>s</state>
        <JAT_start_time>2026-11-23T10:17:14</JAT_start_time>
        <slots>1</slots>
      </job_list>
    </Queue-List>
    <Queue-List>
      <name>all.q@node2</name>
      <qtype>BIP</qtype>
      <slots_used>1</slots_used>
      <slots_resv>0</slots_resv>
      <slots_total>2</slots_total>
      <state>d</state>
      <job_list state="running">
        <JB_job_number>20</JB_job_number>
        <JAT_prio>0.50000</JAT_prio>
        <JB_name>par</JB_name>
        <JB_owner>root</JB_owner>
        <state>s</state>
        <JAT_start_time>2026-11-23T10:17:14</JAT_start_time>
        <slots>1</slots>
      </job_list>
    </Queue-List>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>18</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>b3</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-23T10:17:14</JB_submission_time>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>19</JB_job_number>
      <JAT_prio>0.50000</JAT_prio>
      <JB_name>b4</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-23T10:17:14</JB_submission_time>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>`

func TestParseQstat(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		states    map[string]string // job number → state code
		order     []string
		instances []qinstance
		wantErr   bool
	}{
		{name: "plain", in: qstatPlain,
			states: map[string]string{"11": "dr", "9": "r", "6": "hqw", "13": "Eqw"},
			order:  []string{"11", "9", "6", "13"}},
		{name: "no jobs", in: qstatEmpty, states: map[string]string{}},
		{name: "full, parallel job listed twice", in: qstatFull,
			states: map[string]string{"16": "r", "20": "s", "18": "qw", "19": "hqw"},
			order:  []string{"16", "20", "18", "19"},
			instances: []qinstance{
				{Name: "all.q@vm", Used: 2, Total: 4},
				{Name: "all.q@node2", State: "d", Used: 1, Total: 2},
			}},
		{name: "array tasks one by one (-g d)", in: qstatArray,
			states: map[string]string{"2979.1": "r", "2979.4": "hqw", "2980": "qw", "2979.3": "qw"},
			order:  []string{"2979.1", "2979.4", "2980", "2979.3"}},
		{name: "empty answer", in: "", wantErr: true},
		{name: "not qstat", in: `<?xml version='1.0'?><unknown_jobs><ST_name>x</ST_name></unknown_jobs>`, wantErr: true},
		{name: "truncated", in: qstatPlain[:len(qstatPlain)/2], wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := parseQstat([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("no error; got %+v", l)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for id, j := range l.jobs {
				got[id] = j.State
			}
			if !reflect.DeepEqual(got, tt.states) {
				t.Errorf("states %v, want %v", got, tt.states)
			}
			if tt.order != nil && !slices.Equal(l.order, tt.order) {
				t.Errorf("order %v, want %v", l.order, tt.order)
			}
			if !reflect.DeepEqual(l.instances, tt.instances) {
				t.Errorf("instances %+v, want %+v", l.instances, tt.instances)
			}
		})
	}
	l, _ := parseQstat([]byte(qstatPlain))
	if j := l.jobs["9"]; j.Name != "mem" || j.Owner != "root" || j.Slots != 2 || j.Queue != "all.q@vm" {
		t.Errorf("job 9 = %+v", j)
	}
}

const qstatJ = `<?xml version='1.0'?>
<detailed_job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/detailed_job_info.xsd">
  <djob_info>
    <element>
      <JB_job_number>6</JB_job_number>
      <JB_ar>0</JB_ar>
      <JB_owner>root</JB_owner>
      <JB_mail_list>
        <element>
          <MR_user>root</MR_user>
          <MR_host>vm</MR_host>
        </element>
      </JB_mail_list>
      <JB_job_name>abc</JB_job_name>
      <JB_env_list>
        <job_sublist>
          <VA_variable>HPCGATE_TOKEN</VA_variable>
          <VA_value>secret</VA_value>
        </job_sublist>
      </JB_env_list>
      <JB_context>
        <context_list>
          <VA_variable>other</VA_variable>
          <VA_value>x</VA_value>
        </context_list>
        <context_list>
          <VA_variable>hpcgate_job</VA_variable>
          <VA_value>J2</VA_value>
        </context_list>
      </JB_context>
    </element>
    <element>
      <JB_job_number>13</JB_job_number>
      <JB_job_name>abc</JB_job_name>
      <JB_ja_tasks>
        <ulong_sublist>
          <JAT_status>0</JAT_status>
          <JAT_task_number>1</JAT_task_number>
          <JAT_message_list>
            <ulong_sublist>
              <QIM_type>1</QIM_type>
              <QIM_message>11/23/2026 10:16:36 [0:3725]: error: can&apos;t open output file &quot;/nonexistent/dir/x.out&quot;: No such file or directory</QIM_message>
            </ulong_sublist>
          </JAT_message_list>
        </ulong_sublist>
      </JB_ja_tasks>
    </element>
  </djob_info>
  <messages>
    <element>
      <SME_message_list>
        <element>
          <MES_message_number>32</MES_message_number>
          <MES_message>Job is in error state</MES_message>
        </element>
      </SME_message_list>
    </element>
  </messages>
</detailed_job_info>`

func TestParseDetailed(t *testing.T) {
	jobs, err := parseDetailed([]byte(qstatJ))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].Number != "6" || jobs[1].Number != "13" {
		t.Fatalf("jobs %+v", jobs)
	}
	if v, ok := jobs[0].context("hpcgate_job"); !ok || v != "J2" {
		t.Errorf("context hpcgate_job = %q, %v", v, ok)
	}
	if _, ok := jobs[1].context("hpcgate_job"); ok {
		t.Error("job 13 has no context, found one")
	}
	want := `11/23/2026 10:16:36 [0:3725]: error: can't open output file "/nonexistent/dir/x.out": No such file or directory`
	if len(jobs[1].Messages) != 1 || jobs[1].Messages[0] != want {
		t.Errorf("messages %q", jobs[1].Messages)
	}

	unknown := "<?xml version='1.0'?>\n<unknown_jobs >\n    <ST_name>nosuch</ST_name>\n</unknown_jobs>"
	if jobs, err := parseDetailed([]byte(unknown)); err != nil || len(jobs) != 0 {
		t.Errorf("unknown_jobs: %v, %v", jobs, err)
	}
	if _, err := parseDetailed([]byte("<job_info></job_info>")); err == nil {
		t.Error("qstat -xml taken for qstat -j -xml")
	}
	if _, err := parseDetailed([]byte("error: commlib error")); err == nil {
		t.Error("garbage parsed")
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		code   string
		state  sched.State
		reason string
	}{
		{"qw", sched.Queued, ""},
		{"Rq", sched.Queued, "rescheduled"},
		{"hqw", sched.Held, ""},
		{"hRwq", sched.Held, ""},
		{"t", sched.Running, ""},
		{"r", sched.Running, ""},
		{"Rr", sched.Running, ""},
		{"hr", sched.Running, ""},
		{"dr", sched.Running, "being deleted"},
		{"dt", sched.Running, "being deleted"},
		{"dqw", sched.Queued, "being deleted"},
		{"s", sched.Suspended, ""},
		{"ds", sched.Suspended, "being deleted"},
		{"S", sched.Suspended, "its queue is suspended"},
		{"T", sched.Suspended, "suspended at a load threshold"},
		{"Eqw", sched.Done, "error state"},
		{"Ehqw", sched.Done, "error state"},
		{"dEqw", sched.Done, "error state"},
		{"x", sched.Queued, `unknown state "x"`},
	}
	for _, tt := range tests {
		st := statusOf(tt.code)
		if st.State != tt.state || st.Reason != tt.reason || st.ExitCode != nil || st.Canceled {
			t.Errorf("statusOf(%q) = %+v, want %s %q", tt.code, st, tt.state, tt.reason)
		}
	}
}

// qacct records, as printed (trailing blanks included). ru_maxrss is in KiB
// though printed as bytes: 4.508KB is 4616 KiB (the accounting file's value).
const (
	acctExit3 = `==============================================================
qname        all.q               
hostname     vm                  
group        root                
owner        root                
jobname      abc                 
jobnumber    8                   
taskid       undefined
account      sge                 
qsub_time    Mon Nov 23 10:14:46 2026
start_time   Mon Nov 23 10:14:46 2026
end_time     Mon Nov 23 10:14:46 2026
granted_pe   NONE                
slots        1                   
failed       0    
exit_status  3                   
ru_wallclock 0s
ru_utime     0.004s
ru_stime     0.026s
ru_maxrss    4.438KB
ru_ixrss     0.000B
cpu          0.030s
mem          0.000Bs
io           0.000B
iow          0.000s
maxvmem      0.000B
arid         undefined
ar_sub_time  undefined
category     -l h_rt=100,h_vmem=100M`
	acctMem = `==============================================================
jobname      mem                 
jobnumber    9                   
failed       0    
exit_status  0                   
ru_wallclock 3s
ru_utime     0.378s
ru_stime     0.335s
ru_maxrss    207.902KB
cpu          0.713s
mem          74.435MBs
maxvmem      209.707MB
`
	acctQdel = `==============================================================
jobname      qdelr               
jobnumber    11                  
failed       100 : assumedly after job
exit_status  137                  (Killed)
ru_wallclock 0s
ru_utime     0.016s
ru_stime     0.012s
ru_maxrss    4.508KB
cpu          0.028s
maxvmem      3.422MB
`
	acctHrt = `==============================================================
jobname      hrt                 
jobnumber    12                  
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
ru_wallclock 3s
ru_maxrss    4.434KB
cpu          0.034s
maxvmem      3.477MB
category     -q all.q -l h_rt=2
`
	acctVmem = `==============================================================
jobnumber    14                  
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
ru_wallclock 1s
category     -l h_rt=0:10:0,h_vmem=100M
`
	acctSegv = `==============================================================
jobnumber    15                  
failed       100 : assumedly after job
exit_status  139                  (Segmentation fault)
ru_wallclock 1s
`
	acctBeforeJob = `==============================================================
jobnumber    16                  
failed       26  : opening input/output file
exit_status  0                   
ru_wallclock 0s
`
)

func TestDoneStatus(t *testing.T) {
	code := func(n int) *int { return &n }
	tests := []struct {
		name     string
		in       string
		exit     *int
		canceled bool
		reason   string // contained in Reason; "" means Reason is empty
		usage    *job.Usage
	}{
		{name: "exit 3", in: acctExit3, exit: code(3),
			usage: &job.Usage{WallSeconds: 0, CPUSeconds: 0.03, MaxRSSBytes: 4545 * 1024}},
		{name: "memory", in: acctMem, exit: code(0),
			usage: &job.Usage{WallSeconds: 3, CPUSeconds: 0.713, MaxRSSBytes: 212892 * 1024}},
		{name: "qdel", in: acctQdel, exit: code(137), canceled: false, reason: "assumedly after job",
			usage: &job.Usage{CPUSeconds: 0.028, MaxRSSBytes: 4616 * 1024}},
		{name: "walltime", in: acctHrt, exit: code(137), reason: "walltime limit reached (h_rt=2)",
			usage: &job.Usage{WallSeconds: 3, CPUSeconds: 0.034, MaxRSSBytes: 4540 * 1024}},
		{name: "other hard limit", in: acctVmem, exit: code(137), reason: "a hard limit was enforced: qmaster enforced",
			usage: &job.Usage{WallSeconds: 1}},
		{name: "segfault is no cancel", in: acctSegv, exit: code(139), reason: "failed 100: assumedly after job",
			usage: &job.Usage{WallSeconds: 1}},
		{name: "failed before the job", in: acctBeforeJob, exit: code(0), reason: "failed 26: opening input/output file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := parseQacct([]byte(tt.in))
			if len(recs) != 1 {
				t.Fatalf("%d records", len(recs))
			}
			st := doneStatus(recs[0])
			if st.State != sched.Done {
				t.Errorf("state %s", st.State)
			}
			if !reflect.DeepEqual(st.ExitCode, tt.exit) {
				t.Errorf("exit code %v, want %v", st.ExitCode, tt.exit)
			}
			if st.Canceled != tt.canceled {
				t.Errorf("canceled %v, want %v", st.Canceled, tt.canceled)
			}
			if tt.reason == "" && st.Reason != "" || !strings.Contains(st.Reason, tt.reason) {
				t.Errorf("reason %q, want %q", st.Reason, tt.reason)
			}
			if !reflect.DeepEqual(st.Usage, tt.usage) {
				t.Errorf("usage %+v, want %+v", st.Usage, tt.usage)
			}
		})
	}
}

func TestParseQacctRecords(t *testing.T) {
	// a job id seen twice (rerun, or reused): the last record is the latest
	recs := parseQacct([]byte(acctExit3 + "\n" + acctQdel))
	if len(recs) != 2 || recs[0]["jobname"] != "abc" || recs[1]["jobname"] != "qdelr" {
		t.Fatalf("records %v", recs)
	}
	if recs[0]["category"] != "-l h_rt=100,h_vmem=100M" || recs[1]["failed"] != "100 : assumedly after job" {
		t.Errorf("values %q, %q", recs[0]["category"], recs[1]["failed"])
	}
	if recs := parseQacct([]byte("error: job id 6 not found\n")); len(recs) != 0 {
		t.Errorf("an error message parsed as %v", recs)
	}
}

func TestParseSizeAndSeconds(t *testing.T) {
	sizes := map[string]float64{
		"0.000B": 0, "4.609KB": 4719.616, "207.902KB": 212891.648, "209.707MB": 209.707 * 1024 * 1024,
		"1.5GB": 1.5 * 1024 * 1024 * 1024, "2TB": 2 << 40, "512": 512, "": 0, "x": 0, "-1B": 0,
	}
	for in, want := range sizes {
		if got := parseSize(in); got < want-0.01 || got > want+0.01 {
			t.Errorf("parseSize(%q) = %v, want %v", in, got, want)
		}
	}
	secs := map[string]float64{"3s": 3, "0.713s": 0.713, "42": 42, "": 0, "abc": 0}
	for in, want := range secs {
		if got := parseSeconds(in); got != want {
			t.Errorf("parseSeconds(%q) = %v, want %v", in, got, want)
		}
	}
	durs := map[string]float64{"100": 100, "0:0:3": 3, "1:02:03": 3723, "10:00": 600}
	for in, want := range durs {
		if got, ok := parseDuration(in); !ok || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
}

func TestQsubArgs(t *testing.T) {
	s := New(&Options{Queue: "all.q", Notices: true})
	task := sched.Task{
		JobID:   "J42",
		Name:    "2fast",
		Command: []string{"/bin/true"},
		Env: map[string]string{
			"HPCGATE_TOKEN": "tok-s3cret",
			"HPCGATE_URL":   "https://gw.example:8443/a,b",
		},
		WorkDir:   "/work/jobs/J42",
		Resources: job.Resources{Nodes: 1, CoresPerNode: 4, MemoryMB: 2000, WalltimeS: 3600},
	}
	if err := task.Validate(); err != nil {
		t.Fatal(err)
	}
	args, env := s.qsubArgs(task)
	line := strings.Join(args, " ")
	for _, v := range task.Env {
		if strings.Contains(line, v) {
			t.Errorf("a variable's value is on qsub's command line: %s", line)
		}
	}
	for _, want := range []string{
		"-terse", "-w e", "-N j2fast", "-S /bin/sh", "-wd /work/jobs", "-o /work/jobs/J42.sge.out", "-j y",
		"-ac hpcgate_job=J42", "-notify", "-q all.q", "-pe smp 4",
		"-l h_rt=3600,h_vmem=1012M", // (2000+2048)/4, rounded up
		"-v HPCGATE_TOKEN_FILE,HPCGATE_URL," + sched.NoticesVar,
	} {
		if !strings.Contains(" "+line+" ", " "+want+" ") {
			t.Errorf("qsub %s: no %q", line, want)
		}
	}
	// the token is not in the job's environment (qstat -j shows it to all)
	// and the agent is told to pass -notify's warnings on
	if want := []string{"HPCGATE_TOKEN_FILE=/work/jobs/J42.secret.HPCGATE_TOKEN", "HPCGATE_URL=https://gw.example:8443/a,b", sched.NoticesVar + "=sge"}; !slices.Equal(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}

	task.Project = "chem01"
	if args, _ := s.qsubArgs(task); !strings.Contains(strings.Join(args, " "), " -P chem01") {
		t.Errorf("with a project: qsub %q", args)
	}

	// one core: no parallel environment; no memory, walltime or env: no
	// -l, -v; no notices: no -notify
	s = New(&Options{VmemHeadroomMB: -1})
	args, env = s.qsubArgs(sched.Task{JobID: "a1", Name: "x", WorkDir: "/w/a1", Resources: job.Resources{Nodes: 1, CoresPerNode: 1, MemoryMB: 100}})
	line = strings.Join(args, " ")
	if strings.Contains(line, "-pe") || strings.Contains(line, "-q") || strings.Contains(line, "-v") || strings.Contains(line, "-notify") || len(env) != 0 {
		t.Errorf("one-core task without queue or env: qsub %s, env %q", line, env)
	}
	if !strings.Contains(line, "-l h_vmem=100M") {
		t.Errorf("no headroom: qsub %s, want h_vmem=100M", line)
	}

	bad := []sched.Task{
		{JobID: "", Name: "x", WorkDir: "/w/x"},
		{JobID: "a,b=c", Name: "x", WorkDir: "/w/x"},
		{JobID: "ok", Name: "x", WorkDir: "relative/x"},
		{JobID: "ok", Name: "x", WorkDir: "/w/x", Env: map[string]string{"A=B": "v"}},
		{JobID: "ok", Name: "x", WorkDir: "/w/x", Env: map[string]string{"A,B": "v"}},
	}
	for _, b := range bad {
		b.Command = []string{"/bin/true"}
		if _, err := s.Submit(context.Background(), b); err == nil {
			t.Errorf("task %+v accepted", b)
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"1", "42", "999999998", "12.1", "2979.40"} { // an array's task: JOB.TASK
		if err := checkID(id); err != nil {
			t.Errorf("checkID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "0", "01", "abc", "*", "12.0", "12.", "12.1-4", "12.1.1", "-1", "1 2"} {
		if err := checkID(id); !errors.Is(err, sched.ErrNotFound) {
			t.Errorf("checkID(%q) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestDescribeFacts(t *testing.T) {
	l, err := parseQstat([]byte(qstatFull))
	if err != nil {
		t.Fatal(err)
	}
	got := describe("all.q", l)
	want := map[string]any{
		"queue": "all.q", "state": "degraded", "hosts": 2,
		"total_cores": 6, "used_cores": 3, "free_cores": 2,
		"running_jobs": 2, "queued_jobs": 1, "held_jobs": 1,
		"unavailable":         []string{"all.q@node2 (d)"},
		"free_cores_per_node": map[string]int{"vm": 2, "node2": 0},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("describe = %v\nwant       %v", got, want)
	}
	l, _ = parseQstat([]byte(qstatEmpty))
	if got := describe("", l); got["state"] != "no queue instances" || got["queue"] != "*" || got["total_cores"] != 0 {
		t.Errorf("no instances: %v", got)
	}
}

// qstatArray is qstat -u '*' -g d -xml with an array job's tasks (one
// running, one held, one waiting) and a plain job, as Grid Engine 8.1
// wrote it here.
const qstatArray = `<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>2979</JB_job_number>
      <JAT_prio>0.55500</JAT_prio>
      <JB_name>arr.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-26T05:05:59</JAT_start_time>
      <queue_name>all.q@vm</queue_name>
      <slots>1</slots>
      <tasks>1</tasks>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>2979</JB_job_number>
      <JB_name>arr.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <slots>1</slots>
      <tasks>4</tasks>
    </job_list>
    <job_list state="pending">
      <JB_job_number>2980</JB_job_number>
      <JB_name>plain</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>2979</JB_job_number>
      <JB_name>arr.sh</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <slots>1</slots>
      <tasks>3</tasks>
    </job_list>
  </job_info>
</job_info>
`
