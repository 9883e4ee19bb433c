package main

import (
	"context"
	"os"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hpcgate/hpcgate/api"
)

// The counters of what agents report and of engine errors move as jobs
// run: a job's agent reports its states and ships its log; an engine
// that refuses a job (Slurm, asked for a partition it does not have) is
// an engine error of that environment's.
func TestMetricsMoveAsJobsRun(t *testing.T) {
	dir := templatesDir(t, `
name: greet
version: 1
command: [sh, -c, 'echo "greetings from the metrics test"']
environments: [local, nowhere]
`)
	cfg := "template_dirs: [" + dir + "]\nno_builtin_templates: true\nenvironments:\n  - {name: local, scheduler: local}\n"
	slurm := os.Getenv("HPCGATE_TEST_SLURM") == "1"
	if slurm {
		cfg += "  - {name: nowhere, scheduler: slurm, partition: hpcgate-no-such-partition}\n"
	}
	g := startGateway(t, cfg)
	ctx := context.Background()
	admin := g.client(g.token)
	c := g.client(g.userToken("mia"))
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		resp, err := admin.Do(ctx, "GET", "/metrics", nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		mf, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return mf
	}
	// sum adds the values of name's series that have the labels given
	sum := func(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		var n float64
		f := mf[name]
		if f == nil {
			return 0
		}
	series:
		for _, m := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.Label {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue series
				}
			}
			n += m.GetCounter().GetValue()
		}
		return n
	}
	before := scrape()
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "greet", Environment: "local"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j = waitJob(t, c, j.ID, time.Minute); j.State != api.StateSucceeded {
		t.Fatalf("job %s: %s", j.State, j.Error)
	}
	after := scrape()
	for _, st := range []string{"running", "succeeded"} {
		if d := sum(after, "hpcgate_agent_state_reports_total", "state", st) - sum(before, "hpcgate_agent_state_reports_total", "state", st); d < 1 {
			t.Errorf("agent reports of state %s: +%v, want at least 1", st, d)
		}
	}
	if d := sum(after, "hpcgate_agent_log_bytes_total") - sum(before, "hpcgate_agent_log_bytes_total"); d < float64(len("greetings from the metrics test\n")) {
		t.Errorf("agent log bytes: +%v, want at least the job's greeting", d)
	}
	if !slurm {
		t.Skip("HPCGATE_TEST_SLURM not set: the engine errors are checked on Slurm (scripts/test.sh sets it)")
	}
	bad, err := c.CreateJob(ctx, api.JobRequest{Template: "greet", Environment: "nowhere"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if bad = waitJob(t, c, bad.ID, time.Minute); bad.State != api.StateFailed {
		t.Fatalf("a job for a partition Slurm does not have: %s", bad.State)
	}
	if d := sum(scrape(), "hpcgate_engine_errors_total", "environment", "nowhere", "op", "submit"); d != 1 {
		t.Errorf("engine errors of environment nowhere: %v, want 1", d)
	}
}
