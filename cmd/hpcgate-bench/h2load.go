package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// Load generators of --only accept. "go" is the hpcgate client library
// in this process, as the CLI and Go programs call the gateway; "h2load"
// is nghttp2's load generator (Debian's nghttp2-client), written in C,
// one thread driving every connection, as servers are usually measured.
// Both share the machine's cores with the server, so the cheaper the
// client, the more of the machine the server gets.
const (
	loadGo     = "go"
	loadH2load = "h2load"
)

// h2loadRate is what h2load prints at the end of a run.
var h2loadRate = regexp.MustCompile(`finished in [^,]+, ([0-9.]+) req/s`)

// acceptH2load creates jobs held from clients connections of h2load, one
// request in flight on each, speaking HTTP/s.proto, and returns the rate
// and the latency percentiles. Every answer must be 201, and the server
// must hold jobs more jobs afterwards.
func acceptH2load(s *server, jobs, clients int) (rate float64, p50, p99 time.Duration, err error) {
	path, err := exec.LookPath("h2load")
	if err != nil {
		return 0, 0, 0, fmt.Errorf("--load h2load: h2load is not installed (Debian: apt-get install nghttp2-client)")
	}
	// h2load takes headers on its command line, which every user of the
	// machine may read: it gets a token of a user of its own that can only
	// create jobs, for as long as the run may take, revoked after it.
	tok, revoke, err := s.loadToken(jobs)
	if err != nil {
		return 0, 0, 0, err
	}
	defer revoke()
	before, err := s.jobsHeld(tok)
	if err != nil {
		return 0, 0, 0, err
	}
	dir, err := os.MkdirTemp("", "hpcgate-h2load-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.RemoveAll(dir)
	body := filepath.Join(dir, "job.json")
	if err := os.WriteFile(body, []byte(`{"template":"hello","parameters":{"name":"bench"},"hold":true}`), 0o600); err != nil {
		return 0, 0, 0, err
	}
	log := filepath.Join(dir, "requests.log")
	args := []string{"-n", strconv.Itoa(jobs), "-c", strconv.Itoa(clients), "-m", "1",
		"-d", body, "-H", "Content-Type: application/json", "-H", "Authorization: Bearer " + tok,
		"--log-file", log}
	if s.proto == "1.1" {
		args = append(args, "--h1")
	}
	// h2load does not check the server's certificate: the server is this
	// run's own, on loopback.
	out, err := exec.Command(path, append(args, s.url+"/v1/jobs")...).CombinedOutput()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("h2load: %v\n%s", err, out)
	}
	m := h2loadRate.FindSubmatch(out)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("h2load printed no rate:\n%s", out)
	}
	rate, _ = strconv.ParseFloat(string(m[1]), 64)
	lat, err := h2loadLatencies(log, jobs)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("h2load: %w\n%s", err, out)
	}
	after, err := s.jobsHeld(tok)
	if err != nil {
		return 0, 0, 0, err
	}
	if after-before != int64(jobs) {
		return 0, 0, 0, fmt.Errorf("h2load: the server holds %d jobs more, not %d", after-before, jobs)
	}
	return rate, percentile(lat, 0.5).Round(time.Microsecond), percentile(lat, 0.99).Round(time.Microsecond), nil
}

// loadUser is the user whose token h2load sends.
const loadUser = "bench-load"

// loadToken makes a token of loadUser's that may only create jobs, for
// long enough to create jobs of them (a minute, and a millisecond a job),
// and returns it with what revokes it.
func (s *server) loadToken(jobs int) (string, func(), error) {
	c, err := s.client()
	if err != nil {
		return "", nil, err
	}
	ctx := context.Background()
	t, err := c.CreateToken(ctx, api.TokenRequest{User: loadUser, Scopes: []string{"jobs:write"}, ExpiresInS: 60 + int64(jobs)/1000, Name: "h2load"})
	if err != nil {
		return "", nil, fmt.Errorf("a token for h2load: %w", err)
	}
	return t.Token, func() { c.RevokeToken(ctx, t.ID) }, nil
}

// jobsHeld returns how many jobs the server counts against the user of
// token tok.
func (s *server) jobsHeld(tok string) (int64, error) {
	c, err := client.New(s.url, tok, &client.Options{CACertFile: s.cacert})
	if err != nil {
		return 0, err
	}
	me, err := c.Me(context.Background())
	if err != nil {
		return 0, err
	}
	return me.Quotas["jobs"].Used, nil
}

// h2loadLatencies reads h2load's log of requests (start in µs, status,
// duration in µs, tab-separated), checks that each of the n requests was
// answered 201, and returns their durations.
func h2loadLatencies(path string, n int) ([]time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("log line %q: want 3 fields", sc.Text())
		}
		if f[1] != "201" {
			return nil, fmt.Errorf("a request was answered %s, not 201", f[1])
		}
		us, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("log line %q: %v", sc.Text(), err)
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	if len(lat) != n {
		return nil, fmt.Errorf("%d requests answered of %d", len(lat), n)
	}
	return lat, nil
}
