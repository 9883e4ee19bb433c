package sgesched

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
)

// qjob is one job as qstat -xml lists it.
type qjob struct {
	Number string `xml:"JB_job_number"`
	// Tasks is an array task's index (one task a line with qstat -g d),
	// a range of them otherwise; "" for a plain job.
	Tasks string `xml:"tasks"`
	Name  string `xml:"JB_name"`
	Owner string `xml:"JB_owner"`
	State string `xml:"state"`
	Queue string `xml:"queue_name"`
	Slots int    `xml:"slots"`
}

// qinstance is one queue instance (QUEUE@HOST) as qstat -f -xml lists it.
type qinstance struct {
	Name  string `xml:"name"`
	State string `xml:"state"`
	Used  int    `xml:"slots_used"`
	Resv  int    `xml:"slots_resv"`
	Total int    `xml:"slots_total"`
}

// qstatList is what qstat [-f] -xml says: the queue instances (with -f) and
// every job, running ones (under queue_info, inside their instance with -f)
// and pending ones (under job_info) alike. A job on several instances is
// listed once per instance; jobs keeps the first.
type qstatList struct {
	instances []qinstance
	jobs      map[string]qjob
	order     []string // job numbers in the order listed
}

// parseQstat reads the XML of qstat -u '*' -xml or qstat -f -u '*' -xml.
// It finds job_list elements wherever they are nested (inside Queue-List
// with -f, under queue_info or job_info without), so it does not depend on
// the layout, which differs between the two forms.
func parseQstat(b []byte) (*qstatList, error) {
	l := &qstatList{jobs: map[string]qjob{}}
	d := xml.NewDecoder(bytes.NewReader(b))
	var (
		depth, instDepth int
		root             bool
		inst             *qinstance
		field            string
		text             strings.Builder
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("qstat XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch {
			case depth == 1:
				if t.Name.Local != "job_info" {
					return nil, fmt.Errorf("qstat XML: root element %q, want job_info", t.Name.Local)
				}
				root = true
			case t.Name.Local == "job_list":
				var j qjob
				if err := d.DecodeElement(&j, &t); err != nil {
					return nil, fmt.Errorf("qstat XML: %w", err)
				}
				depth-- // DecodeElement consumed the end element
				j.Number = strings.TrimSpace(j.Number)
				j.State = strings.TrimSpace(j.State)
				key := j.Number
				if t := strings.TrimSpace(j.Tasks); idRe.MatchString(t) {
					key += "." + t // an array task, by the id its user knows
				}
				if _, dup := l.jobs[key]; !dup && j.Number != "" {
					l.jobs[key] = j
					l.order = append(l.order, key)
				}
			case t.Name.Local == "Queue-List" && inst == nil:
				inst, instDepth = &qinstance{}, depth
			case inst != nil && depth == instDepth+1:
				field = t.Name.Local
				text.Reset()
			}
		case xml.CharData:
			if field != "" {
				text.Write(t)
			}
		case xml.EndElement:
			switch {
			case inst != nil && depth == instDepth+1 && field != "":
				v := strings.TrimSpace(text.String())
				n, _ := strconv.Atoi(v)
				switch field {
				case "name":
					inst.Name = v
				case "state":
					inst.State = v
				case "slots_used":
					inst.Used = n
				case "slots_resv":
					inst.Resv = n
				case "slots_total":
					inst.Total = n
				}
				field = ""
			case inst != nil && depth == instDepth:
				l.instances = append(l.instances, *inst)
				inst = nil
			}
			depth--
		}
	}
	if !root {
		return nil, errors.New("qstat XML: empty answer")
	}
	if depth != 0 {
		return nil, errors.New("qstat XML: truncated")
	}
	return l, nil
}

// detailedJob is one job of qstat -j ID|NAME -xml.
type detailedJob struct {
	Number  string `xml:"JB_job_number"`
	Name    string `xml:"JB_job_name"`
	Context []struct {
		Name  string `xml:"VA_variable"`
		Value string `xml:"VA_value"`
	} `xml:"JB_context>context_list"`
	Messages []string `xml:"JB_ja_tasks>ulong_sublist>JAT_message_list>ulong_sublist>QIM_message"`
}

func (j detailedJob) context(name string) (string, bool) {
	for _, c := range j.Context {
		if c.Name == name {
			return c.Value, true
		}
	}
	return "", false
}

// parseDetailed reads the XML of qstat -j LIST -xml: the jobs found (none
// when the answer is <unknown_jobs>).
func parseDetailed(b []byte) ([]detailedJob, error) {
	var doc struct {
		XMLName xml.Name
		Jobs    []detailedJob `xml:"djob_info>element"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("qstat -j XML: %w", err)
	}
	switch doc.XMLName.Local {
	case "detailed_job_info":
		return doc.Jobs, nil
	case "unknown_jobs":
		return nil, nil
	}
	return nil, fmt.Errorf("qstat -j XML: root element %q", doc.XMLName.Local)
}

// statusOf maps a qstat state code (qw, hqw, r, t, Rr, s, S, T, Eqw, dr,
// ...) to an engine state. Letters: q queued, w waiting, h hold, r running,
// t transferring, R restarted, s suspended, S suspended by its queue, T
// suspended at a load threshold, E error, d being deleted.
func statusOf(code string) sched.Status {
	has := func(letters string) bool { return strings.ContainsAny(code, letters) }
	var st sched.Status
	switch {
	case has("E"):
		// Grid Engine keeps the job, but it will not run unless an
		// administrator clears the error (qmod -cj): for hpcgate it ended.
		return sched.Status{State: sched.Done, Reason: "error state"}
	case has("sST"):
		st.State = sched.Suspended
		switch {
		case has("S"):
			st.Reason = "its queue is suspended"
		case has("T"):
			st.Reason = "suspended at a load threshold"
		}
	case has("rt"):
		st.State = sched.Running
	case has("h"):
		st.State = sched.Held
	case has("qw"):
		st.State = sched.Queued
		if has("R") {
			st.Reason = "rescheduled"
		}
	default:
		st.State = sched.Queued
		st.Reason = "unknown state " + strconv.Quote(code)
	}
	if has("d") {
		st.Reason = "being deleted"
	}
	return st
}

// A qacct record: "key value" lines.
type record map[string]string

// parseQacct reads the output of qacct -j ID: one record per run of the
// job (a job id can have several: reruns, or ids reused after a wrap or a
// fresh spool), each starting with a line of '='.
func parseQacct(b []byte) []record {
	var recs []record
	var cur record
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if strings.HasPrefix(line, "====") {
			cur = record{}
			recs = append(recs, cur)
			continue
		}
		if cur == nil || line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, " ")
		cur[k] = strings.TrimSpace(v)
	}
	return recs
}

// leadingInt is the integer that starts s ("137   (Killed)" → 137).
func leadingInt(s string) (int, bool) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(f[0])
	return n, err == nil
}

// parseSeconds reads qacct times: "3s", "0.713s", "3".
func parseSeconds(s string) float64 {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "s"), 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// parseSize reads qacct sizes ("0.000B", "207.902KB", "209.707MB",
// "1.5GB", or a bare number): qacct prints a value with K, M, G, T or P
// for powers of 1024 and a B after.
func parseSize(s string) float64 {
	s = strings.TrimSuffix(strings.TrimSpace(s), "B")
	mult := 1.0
	if n := len(s); n > 0 {
		if i := strings.IndexByte("KMGTP", s[n-1]); i >= 0 {
			mult = math.Pow(1024, float64(i+1))
			s = s[:n-1]
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v * mult
}

var hrtRe = regexp.MustCompile(`(?:^|[ ,])h_rt=([0-9:]+)`)

// parseDuration reads a Grid Engine time: seconds, or [[H:]M:]S.
func parseDuration(s string) (float64, bool) {
	var total float64
	for _, p := range strings.Split(s, ":") {
		n, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return 0, false
		}
		total = total*60 + n
	}
	return total, true
}

// doneStatus turns the qacct record of an ended job into its status.
func doneStatus(r record) sched.Status {
	st := sched.Status{State: sched.Done}
	code, hasCode := leadingInt(r["exit_status"])
	if hasCode {
		st.ExitCode = &code
	}
	failed, _ := leadingInt(r["failed"])
	_, failText, _ := strings.Cut(r["failed"], ":")
	failText = strings.TrimSpace(failText)
	switch {
	case failed == 0:
	case failed == 100 && code == 137:
		// The job was killed with SIGKILL: by qdel, or from elsewhere (the
		// kernel's OOM killer, a kill by hand). The accounting cannot tell
		// them apart, so this does not claim a cancel (the gateway records
		// its own cancels before it asks for them).
		st.Reason = "killed with SIGKILL (qdel, or a kill outside Grid Engine): failed 100: " + failText
	case failed == 37:
		st.Reason = "a hard limit was enforced: " + failText
		if m := hrtRe.FindStringSubmatch(r["category"]); m != nil {
			lim, ok := parseDuration(m[1])
			if wall := parseSeconds(r["ru_wallclock"]); ok && wall+1 >= lim {
				st.Reason = fmt.Sprintf("walltime limit reached (h_rt=%s): %s", m[1], failText)
			}
		}
	default:
		st.Reason = fmt.Sprintf("failed %d: %s", failed, failText)
	}
	u := job.Usage{
		WallSeconds: parseSeconds(r["ru_wallclock"]),
		CPUSeconds:  parseSeconds(r["cpu"]),
	}
	if u.CPUSeconds == 0 {
		u.CPUSeconds = parseSeconds(r["ru_utime"]) + parseSeconds(r["ru_stime"])
	}
	// ru_maxrss is getrusage's, in KiB, but qacct prints it as if it were
	// bytes ("207.902KB" for 212892 KiB); maxvmem is in bytes.
	if rss := parseSize(r["ru_maxrss"]); rss > 0 {
		u.MaxRSSBytes = int64(math.Round(rss)) * 1024
	} else {
		u.MaxRSSBytes = int64(math.Round(parseSize(r["maxvmem"])))
	}
	if u != (job.Usage{}) {
		st.Usage = &u
	}
	return st
}
