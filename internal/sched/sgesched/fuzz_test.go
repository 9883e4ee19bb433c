package sgesched

import (
	"bytes"
	"strings"
	"testing"
)

// The parsers read what Grid Engine's clients print; whatever that is, they
// do not panic, and what they return comes from their input. CI runs these
// on their seed corpus (go test); go test -fuzz=FuzzX explores further.

func FuzzParseQstat(f *testing.F) {
	for _, s := range []string{qstatPlain, qstatEmpty, qstatFull, "", "<job_info>", "<a><b></a>"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseQstat(b)
		if err != nil {
			return
		}
		if len(l.order) != len(l.jobs) {
			t.Fatalf("order %v and jobs %v disagree", l.order, l.jobs)
		}
		for _, id := range l.order {
			j, ok := l.jobs[id]
			if !ok || j.Number != id {
				t.Fatalf("job %q listed as %+v", id, j)
			}
			if id != "" && !bytes.Contains(b, []byte(id)) {
				t.Fatalf("job %q is not in the input", id)
			}
			statusOf(j.State)
		}
		describe("", l)
	})
}

func FuzzParseDetailed(f *testing.F) {
	for _, s := range []string{qstatJ, "<unknown_jobs></unknown_jobs>", "<other/>", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		jobs, err := parseDetailed(b)
		if err != nil {
			return
		}
		for _, j := range jobs {
			if j.Number != "" && !bytes.Contains(b, []byte(j.Number)) {
				t.Fatalf("job %q is not in the input", j.Number)
			}
			if v, ok := j.context(contextVar); ok && v != "" && !bytes.Contains(b, []byte(v)) {
				t.Fatalf("context %q is not in the input", v)
			}
		}
	})
}

func FuzzParseQacct(f *testing.F) {
	for _, s := range []string{acctExit3, acctMem, acctQdel, acctHrt, acctVmem, acctSegv, acctBeforeJob,
		acctExit3 + "\n" + acctQdel, "error: job id 6 not found\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		recs := parseQacct(b)
		if n := bytes.Count(b, []byte("\n====")) + bytes.Count(b[:min(len(b), 4)], []byte("====")); len(recs) > n {
			t.Fatalf("%d records from %d separators", len(recs), n)
		}
		for _, r := range recs {
			for k, v := range r {
				if !bytes.Contains(b, []byte(k)) || !bytes.Contains(b, []byte(strings.TrimSpace(v))) {
					t.Fatalf("%q %q is not in the input", k, v)
				}
			}
			st := doneStatus(r)
			if st.Usage != nil && (st.Usage.CPUSeconds < 0 || st.Usage.WallSeconds < 0 || st.Usage.MaxRSSBytes < 0) {
				t.Fatalf("negative usage %+v from %v", st.Usage, r)
			}
		}
	})
}
