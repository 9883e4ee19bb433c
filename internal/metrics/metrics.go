// Package metrics is hpcgate's Prometheus metrics: the counters the
// server and the dispatcher feed through their small hooks
// (server.Metrics, dispatch.Metrics), timing decorators of the store and
// the bucket, and the jobs gauge computed at scrape time.
//
// # What is measured
//
//   - hpcgate_http_requests_seconds{route,status}: a histogram of
//     request latencies; its _count is requests by route and status.
//   - hpcgate_http_request_bytes_total / hpcgate_http_response_bytes_total
//     {route}: bytes uploaded and downloaded.
//   - hpcgate_jobs{state,environment}: unfinished jobs, read from the
//     store at scrape time.
//   - hpcgate_dispatch_submissions_total{environment},
//     hpcgate_engine_errors_total{environment,op}.
//   - hpcgate_agent_state_reports_total{state},
//     hpcgate_agent_log_bytes_total.
//   - hpcgate_store_seconds{op}, hpcgate_objects_seconds{op}: latencies of
//     the database and the object store.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every metric of one gateway in a registry of its own.
// It implements server.Metrics and dispatch.Metrics.
type Metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.HistogramVec
	reqBytes    *prometheus.CounterVec
	respBytes   *prometheus.CounterVec
	submissions *prometheus.CounterVec
	engineErrs  *prometheus.CounterVec
	agentStates *prometheus.CounterVec
	agentLog    prometheus.Counter
	storeOps    *prometheus.HistogramVec
	objectOps   *prometheus.HistogramVec
}

// New returns the metrics. If st is not nil, a scrape also counts the
// unfinished jobs in st by state and environment.
func New(st store.Store) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hpcgate_http_requests_seconds",
			Help: "Latency of answered API requests, by route pattern and status.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 8)},
			[]string{"route", "status"}),
		reqBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hpcgate_http_request_bytes_total",
			Help: "Bytes of request bodies read (uploads), by route pattern."}, []string{"route"}),
		respBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hpcgate_http_response_bytes_total",
			Help: "Bytes of answer bodies written (downloads), by route pattern."}, []string{"route"}),
		submissions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hpcgate_dispatch_submissions_total",
			Help: "Jobs an engine accepted, by environment."}, []string{"environment"}),
		engineErrs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hpcgate_engine_errors_total",
			Help: "Failed engine calls, by environment and operation."}, []string{"environment", "op"}),
		agentStates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hpcgate_agent_state_reports_total",
			Help: "State reports of job agents, by reported state."}, []string{"state"}),
		agentLog: prometheus.NewCounter(prometheus.CounterOpts{Name: "hpcgate_agent_log_bytes_total",
			Help: "Log bytes job agents sent."}),
		storeOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hpcgate_store_seconds",
			Help: "Latency of database calls, by operation.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}, []string{"op"}),
		objectOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "hpcgate_objects_seconds",
			Help: "Latency of object-store calls, by operation (Put and Get: until the body is handed over).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"op"}),
	}
	m.reg.MustRegister(m.requests, m.reqBytes, m.respBytes, m.submissions, m.engineErrs, m.agentStates, m.agentLog, m.storeOps, m.objectOps,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if st != nil {
		m.reg.MustRegister(&jobsCollector{st: st})
	}
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry returns the registry, for tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Request implements server.Metrics.
func (m *Metrics) Request(route string, status int, d time.Duration, in, out int64) {
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
	if in > 0 {
		m.reqBytes.WithLabelValues(route).Add(float64(in))
	}
	if out > 0 {
		m.respBytes.WithLabelValues(route).Add(float64(out))
	}
}

// AgentState implements server.Metrics.
func (m *Metrics) AgentState(state string) { m.agentStates.WithLabelValues(state).Inc() }

// AgentLog implements server.Metrics.
func (m *Metrics) AgentLog(n int64) { m.agentLog.Add(float64(n)) }

// Submitted implements dispatch.Metrics.
func (m *Metrics) Submitted(env string) { m.submissions.WithLabelValues(env).Inc() }

// EngineError implements dispatch.Metrics.
func (m *Metrics) EngineError(env, op string) { m.engineErrs.WithLabelValues(env, op).Inc() }

// jobsCollector counts the unfinished jobs at scrape time: one indexed
// read per state, of at most maxCounted jobs in all.
type jobsCollector struct{ st store.Store }

var jobsDesc = prometheus.NewDesc("hpcgate_jobs", "Unfinished jobs, by state and environment (read at scrape time).", []string{"state", "environment"}, nil)

// maxCounted bounds the work of a scrape.
const maxCounted = 100000

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }

func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counted := 0
	for _, s := range []job.State{job.Held, job.Pending, job.Queued, job.Starting, job.Running, job.Finishing, job.Suspended} {
		n := map[string]int{}
		f := store.JobFilter{States: []job.State{s}, Limit: 1000}
		for counted < maxCounted {
			jobs, next, err := c.st.ListJobs(ctx, f)
			if err != nil {
				ch <- prometheus.NewInvalidMetric(jobsDesc, err)
				return
			}
			for _, j := range jobs {
				n[j.Environment]++
			}
			counted += len(jobs)
			if next == "" {
				break
			}
			f.PageToken = next
		}
		for env, v := range n {
			ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(v), string(s), env)
		}
	}
}
