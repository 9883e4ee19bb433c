package slurmsched

import (
	"strings"
	"testing"
)

// The parsers read what Slurm's commands print; whatever that is, they do
// not panic, and what they return comes from their input. CI runs these on
// their seed corpus (go test); go test -fuzz=FuzzX explores further.

func FuzzParseQueue(f *testing.F) {
	f.Add("12|N/A|12|PENDING|JobHeldAdmin|N/A|10:00|0        \n13|N/A|13|FAILED|NonZeroExitCode|2026-11-23T10:13:07|1:00|768\n\n")
	f.Add("1|N/A|1|RUNNING|None|2026-11-23T10:13:07|10:00|0\n2|N/A|2|PENDING|JobHeldUser|Unknown|10:00|0\n3|N/A|3|CANCELLED|None|x|10:00|15\n")
	f.Add("2380|3|2382|PENDING|JobArrayTaskLimit|N/A|UNLIMITED|0\n2380|0|2381|COMPLETED|None|2026-11-23T10:13:07|UNLIMITED|0\n")
	f.Add("12|PENDING")
	f.Add("|RUNNING|None|x|y")
	f.Add("")
	f.Fuzz(func(t *testing.T, out string) {
		rows, err := parseQueue(out)
		if err != nil {
			return
		}
		for id, r := range rows {
			if !slurmID.MatchString(id) || r.ID != id || r.State == "" || !strings.Contains(out, "|"+r.State+"|") {
				t.Fatalf("row %q: %+v, not a line of %q", id, r, out)
			}
			// whatever the row, mapping it to a status does not panic
			if finished(r.State) {
				endStatus(r.State, r.Exit, r.TimeLimit)
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
