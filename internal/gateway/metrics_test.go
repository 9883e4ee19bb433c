package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The metrics parse in Prometheus' text format, are served to admins on
// the API's address and to anyone on metrics.addr, and move as jobs are
// submitted and handed to the engine.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "")
	cfg.NoBuiltinTemplates = false
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Metrics.Addr = ln.Addr().String()
	ln.Close()
	g, c := running(t, cfg)
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		resp, err := c.Do(ctx, "GET", "/metrics", nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET /metrics: %s", resp.Status)
		}
		p := expfmt.NewTextParser(model.UTF8Validation)
		mf, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return mf
	}
	value := func(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
		f := mf[name]
		if f == nil {
			return 0
		}
	metrics:
		for _, m := range f.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, l := range m.Label {
					ok = ok || (l.GetName() == labels[i] && l.GetValue() == labels[i+1])
				}
				if !ok {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		return 0
	}

	j, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name":"x"}`), Hold: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	mf := scrape()
	if got := value(mf, "hpcgate_jobs", "state", "held", "environment", "local"); got != 1 {
		t.Errorf("held jobs: %v, want 1", got)
	}
	if got := value(mf, "hpcgate_http_requests_seconds", "route", "POST /v1/jobs", "status", "201"); got != 1 {
		t.Errorf("POST /v1/jobs 201: %v, want 1", got)
	}
	if value(mf, "hpcgate_store_seconds", "op", "create_job") < 1 || value(mf, "hpcgate_http_request_bytes_total", "route", "POST /v1/jobs") == 0 {
		t.Errorf("store latency or request bytes not counted")
	}
	if _, err := c.Release(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for value(scrape(), "hpcgate_dispatch_submissions_total", "environment", "local") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the submission was not counted")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Without a token on metrics.addr; with a person's non-admin token
	// on the API, no.
	resp, err := http.Get(fmt.Sprintf("http://%s/metrics", cfg.Metrics.Addr))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "hpcgate_dispatch_submissions_total") {
		t.Errorf("metrics.addr: %s %.200s", resp.Status, body)
	}
	user, err := c.CreateToken(ctx, api.TokenRequest{User: "alice", Scopes: []string{api.ScopeJobsRead}})
	if err != nil {
		t.Fatal(err)
	}
	uc, _ := client.New(g.URL(), user.Token, nil)
	resp, err = uc.Do(ctx, "GET", "/metrics", nil, nil, nil)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a non-admin's GET /metrics: %s", resp.Status)
		}
	}
}
