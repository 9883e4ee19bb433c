package slurmsched

import (
	"strings"
	"testing"
)

// The parsers read what Slurm's commands print; whatever that is, they do
// not panic, and what they return comes from their input. CI runs these on
// their seed corpus (go test); go test -fuzz=FuzzX explores further.

func FuzzParseQueue(f *testing.F) {
	f.Add("12|PENDING|JobHeldAdmin|Unknown|10:00\n13|COMPLETED|None|2026-11-23T10:13:07|1:00\n\n")
	f.Add("1|RUNNING|None|2026-11-23T10:13:07|10:00\n2|PENDING|JobHeldUser|Unknown|10:00\n3|COMPLETED|None|x|10:00\n")
	f.Add("12|PENDING")
	f.Add("|RUNNING|None|x|y")
	f.Add("")
	f.Fuzz(func(t *testing.T, out string) {
		rows, err := parseQueue(out)
		if err != nil {
			return
		}
		for id, r := range rows {
			if id == "" || r.ID != id || r.State == "" || !strings.Contains(out, id+"|"+r.State+"|") {
				t.Fatalf("row %q: %+v, not a line of %q", id, r, out)
			}
			// whatever the row, mapping it to a status does not panic
			if finished(r.State) {
				endStatus(r.State, "", r.TimeLimit)
			} else {
				liveStatus(r.State, r.Reason)
			}
			ended(r.End)
		}
	})
}

func FuzzParseAcct(f *testing.F) {
	f.Add("7|COMPLETED|0:0|13|00:12.989||00:05:00\n7.batch|COMPLETED|0:0|13|00:12.989|219496K|\n7.extern|COMPLETED|0:0|13|00:00:00|1024K|\n" +
		"8|CANCELLED by 0|0:0|1|00:00.008||00:01:00\n8.batch|CANCELLED|0:9|3|00:00.008||\n9|PENDING|0:0|0|00:00:00||UNLIMITED\n")
	f.Add("3|COMPLETED|0:0|5|00:04.500||00:10:00\n3.batch|COMPLETED|0:0|5|00:04.500|2048K|\n4|FAILED|3:0|2|00:01.000||00:10:00\n")
	f.Add("7|COMPLETED|0:0|x|00:12.989||")
	f.Add("7.batch|COMPLETED|0:0|1|00:01|9Z|")
	f.Add("Slurm accounting storage is disabled")
	f.Fuzz(func(t *testing.T, out string) {
		recs, err := parseAcct(out)
		if err != nil {
			return
		}
		for id, r := range recs {
			if r.ID != id || !strings.Contains(out, id+"|"+r.State+"|"+r.ExitCode+"|") {
				t.Fatalf("record %q: %+v, not a line of %q", id, r, out)
			}
			if r.Usage.CPUSeconds < 0 || r.Usage.MaxRSSBytes < 0 {
				t.Fatalf("record %q: negative usage %+v from %q", id, r.Usage, out)
			}
			endStatus(r.State, r.ExitCode, r.TimeLimit)
		}
	})
}

func FuzzParseScontrolJobs(f *testing.F) {
	f.Add("JobId=6 JobName=sbatch JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0 TimeLimit=00:02:00 Comment=hpcgate:abc x=1 WorkDir=/tmp/a b\nJobId=8 JobState=CANCELLED ExitCode=0:15\n\n")
	f.Add("JobId=8 JobState=TIMEOUT ExitCode=0:15 TimeLimit=00:01:00\nJobId=9 JobState=COMPLETED ExitCode=0:0\n")
	f.Fuzz(func(t *testing.T, out string) {
		for id, kv := range parseScontrolJobs(out) {
			if kv["JobId"] != id || !strings.Contains(out, "JobId="+id) {
				t.Fatalf("job %q: %v, not in %q", id, kv, out)
			}
			for k, v := range kv {
				if !strings.Contains(out, k+"="+v) {
					t.Fatalf("%s=%s is not in %q", k, v, out)
				}
			}
			endStatus(kv["JobState"], kv["ExitCode"], kv["TimeLimit"])
		}
	})
}

func FuzzParseDurationAndRSS(f *testing.F) {
	for _, s := range []string{"", "00:00:00", "00:12.989", "1-00:00:00.5", "2-03:04:05", "12", "a:b", "00:-1", "00:1e3",
		"0", "4096", "219496K", "1.5M", "2G", "9Z", "-1K", "1e400M", "NaNK"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseDuration(s); err == nil && (d < 0 || d != d) {
			t.Fatalf("parseDuration(%q) = %v", s, d)
		}
		if n, err := parseRSS(s); err == nil && n < 0 {
			t.Fatalf("parseRSS(%q) = %v", s, n)
		}
		parseExit(s)
	})
}
