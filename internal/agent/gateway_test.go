package agent

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// The container's gateway socket forwards requests with the job's token
// (never the container's own Authorization) and refuses what only the
// agent may do for its job: reporting its state, appending its logs,
// uploading its outputs, reading its spec.
func TestGatewaySocket(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // "METHOD path" → Authorization
	gw := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.Method+" "+r.URL.Path] = r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"items":[]}`))
	}))
	defer gw.Close()
	jc, err := client.New(gw.URL, "job-token", &client.Options{HTTPClient: gw.Client()})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{c: jc, id: "j1", spool: t.TempDir(), log: slog.New(slog.DiscardHandler)}
	sock, stop, err := a.serveGateway()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	// the container's client: no token of its own
	cc, err := client.New("unix://"+sock, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cc.Jobs(ctx, client.JobFilter{}); err != nil {
		t.Fatal(err)
	}
	resp, err := cc.Do(ctx, "GET", "/v1/jobs/j1/inputs/text", nil, nil, http.Header{"Authorization": {"Bearer forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	if seen["GET /v1/jobs"] != "Bearer job-token" || seen["GET /v1/jobs/j1/inputs/text"] != "Bearer job-token" {
		t.Errorf("the gateway saw %v; want the job's token on every request", seen)
	}
	mu.Unlock()
	if _, err := cc.ReportState(ctx, "j1", api.StateReport{State: api.StateSucceeded}); client.StatusOf(err) != 403 {
		t.Errorf("reporting the job's state through the socket: %v, want 403", err)
	}
	// what any client in the container may send (hpcgate's own sends no
	// dot segments): raw requests over the socket
	raw := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	for _, p := range []struct{ method, path string }{{"GET", "/v1/jobs/j1/spec"}, {"POST", "/v1/jobs/j1/logs/stdout"}, {"PUT", "/v1/jobs/j1/outputs/x"}, {"POST", "/v1/jobs/j1/output-urls"}, {"PUT", "/v1/jobs/j1/deliveries/x"}, {"POST", "/v1/jobs/j1/%73tate"}, {"POST", "/v1/jobs/x/%2e%2e/j1/state"}, {"POST", "/v1/jobs/x%2F..%2Fj1/state"}, {"POST", "/v1/jobs/x/../j1/state"}} {
		req, err := http.NewRequestWithContext(ctx, p.method, "http://hpcgate"+p.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatalf("%s %s through the socket: %v", p.method, p.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 && resp.StatusCode != 400 {
			t.Errorf("%s %s through the socket: %s, want 403 or 400", p.method, p.path, resp.Status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k := range seen {
		if k != "GET /v1/jobs" && k != "GET /v1/jobs/j1/inputs/text" {
			t.Errorf("the gateway was reached with %s", k)
		}
	}
}
