package server

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// Metrics receives what the server counts. Its methods are safe for
// concurrent use and must not block.
type Metrics interface {
	// Request counts an answered request of route (its pattern) with its
	// status, duration, and bytes of request and answer bodies.
	Request(route string, status int, d time.Duration, in, out int64)
	// AgentState counts a state report of a job's agent.
	AgentState(state string)
	// AgentLog counts log bytes an agent sent.
	AgentLog(n int64)
}

// metrics answers GET /metrics to admins, in Prometheus' text format.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	if s.opts.MetricsHandler == nil {
		return errorf(http.StatusNotFound, api.CodeNotFound, "this gateway keeps no metrics")
	}
	if !principal(r).IsAdmin() {
		return errorf(http.StatusForbidden, api.CodeForbidden, "only an admin may read the metrics")
	}
	s.opts.MetricsHandler.ServeHTTP(w, r)
	return nil
}

func newRIDPrefix() string {
	b := make([]byte, 3)
	rand.Read(b)
	return hex.EncodeToString(b) + "-"
}
