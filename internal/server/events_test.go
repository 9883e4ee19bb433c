package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/job"
)

// sseEvent is one event of a text/event-stream.
type sseEvent struct {
	id     int64
	change api.Change
}

// openEvents opens GET /v1/events with the given Last-Event-ID ("" for
// none) and returns a channel of its events.
func openEvents(t *testing.T, h *harness, tok, last string) (<-chan sseEvent, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.http.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /v1/events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	out := make(chan sseEvent, 100)
	go func() {
		defer resp.Body.Close()
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id, _ = strconv.ParseInt(line[4:], 10, 64)
			case strings.HasPrefix(line, "data: "):
				json.Unmarshal([]byte(line[6:]), &ev.change)
			case line == "" && ev.id != 0:
				out <- ev
				ev = sseEvent{}
			}
		}
	}()
	return out, cancel
}

func next(t *testing.T, c <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-c:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
	}
	return sseEvent{}
}

// GET /v1/events: the caller's changes as they happen, none of another
// user's; a client that reconnects with the last id it saw misses none;
// the stream ends when the server closes its streams.
func TestEventStream(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	alice := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	var early api.Job
	h.do("POST", "/v1/jobs", alice, map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true}).want(t, http.StatusCreated).decode(t, &early)

	live, stop := openEvents(t, h, alice, "")
	var j api.Job
	h.do("POST", "/v1/jobs", alice, map[string]any{"template": "hello", "parameters": map[string]any{"name": "y"}, "hold": true}).want(t, http.StatusCreated).decode(t, &j)
	h.do("POST", "/v1/jobs", bob, map[string]any{"template": "hello", "parameters": map[string]any{"name": "z"}, "hold": true}).want(t, http.StatusCreated)
	first := next(t, live)
	if first.change.JobID != j.ID || first.change.State != "held" || first.id != 2 || first.change.Seq != 2 {
		t.Fatalf("first live event %+v: want the new job's creation (the earlier one is not replayed)", first)
	}
	stop()
	// while nobody listens
	for _, st := range []job.State{job.Pending, job.Queued, job.Running} {
		if _, err := h.store.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(st, "test", time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	again, stop := openEvents(t, h, alice, strconv.FormatInt(first.id, 10))
	defer stop()
	var got []string
	for i := 0; i < 3; i++ {
		ev := next(t, again)
		got = append(got, strconv.FormatInt(ev.id, 10)+" "+ev.change.State)
	}
	if strings.Join(got, ", ") != "3 pending, 4 queued, 5 running" {
		t.Fatalf("resumed: %q", got)
	}
	h.srv.CloseStreams()
	select {
	case _, ok := <-again:
		if ok {
			t.Fatal("an event after the streams closed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the server closed its streams")
	}
	if r := h.do("GET", "/v1/events", alice, nil, "Last-Event-ID", "x").want(t, http.StatusUnprocessableEntity); r.field("Last-Event-ID") == "" {
		t.Errorf("a bad Last-Event-ID: %s", r.body)
	}
	if r := h.do("GET", "/v1/events?after=abc", alice, nil).want(t, http.StatusUnprocessableEntity); r.field("after") == "" {
		t.Errorf("a bad ?after names another field: %s", r.body)
	}
	jt := h.tokenForJob("alice", early.ID)
	h.do("GET", "/v1/events", jt, nil).want(t, http.StatusForbidden)
}

// notify: checked at submission (https, no private address, known
// events), needs the owner's webhook secret, which is shown once.
func TestNotifyIsChecked(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	hello := func(n any) map[string]any {
		return map[string]any{"template": "hello", "parameters": map[string]any{"name": "x"}, "hold": true, "notify": n}
	}
	ok := map[string]any{"url": "https://hooks.example.org/hpc"}
	r := h.do("POST", "/v1/jobs", alice, hello(ok)).want(t, http.StatusConflict)
	if !strings.Contains(r.problem.Detail, "webhook secret") {
		t.Fatalf("without a secret: %+v", r.problem)
	}
	var sec api.WebhookSecret
	h.do("POST", "/v1/webhook-secret", alice, nil).want(t, http.StatusCreated).decode(t, &sec)
	if len(sec.Secret) < 32 {
		t.Fatalf("secret %q", sec.Secret)
	}
	for _, bad := range []struct {
		n     any
		field string
	}{
		{map[string]any{"url": "http://hooks.example.org/"}, "notify.url"},
		{map[string]any{"url": "https://127.0.0.1:8080/"}, "notify.url"},
		{map[string]any{"url": "https://169.254.169.254/"}, "notify.url"},
		{map[string]any{"url": "https://hooks.example.org/", "events": []string{"terminal", "exploded"}}, "notify.events[1]"},
	} {
		r := h.do("POST", "/v1/jobs", alice, hello(bad.n)).want(t, http.StatusUnprocessableEntity)
		if r.field(bad.field) == "" {
			t.Errorf("%v: errors %+v, want one at %s", bad.n, r.problem.Errors, bad.field)
		}
	}
	var j api.Job
	h.do("POST", "/v1/jobs", alice, hello(ok)).want(t, http.StatusCreated).decode(t, &j)
	if j.Notify == nil || j.Notify.URL != ok["url"] || len(j.Notify.Events) != 1 || j.Notify.Events[0] != "terminal" {
		t.Fatalf("notify %+v", j.Notify)
	}
	u, _ := h.store.User(context.Background(), "alice")
	if u.WebhookSecret != sec.Secret {
		t.Fatal("the secret shown is not the one kept")
	}
	// a job token makes no secret
	jt := h.tokenForJob("alice", j.ID)
	h.do("POST", "/v1/webhook-secret", jt, nil).want(t, http.StatusForbidden)
}

// A long answer ends when its credentials do: an event stream or a
// followed log went on after its token was revoked or its user disabled
// (the third probe watched a revoked token's stream deliver a new job's
// every change).
func TestStreamsEndWithTheirCredentials(t *testing.T) {
	h := newHarness(t, nil)
	admin := h.token("root", time.Time{}, api.ScopeAdmin)
	alice := h.token("alice", time.Time{}, allScopes...)
	var tok api.Token
	h.do("POST", "/v1/tokens", alice, map[string]any{"name": "watcher", "scopes": []string{api.ScopeJobsRead}}).want(t, http.StatusCreated).decode(t, &tok)
	ended := func(what string, c <-chan sseEvent) {
		t.Helper()
		for deadline := time.After(5 * time.Second); ; {
			select {
			case _, ok := <-c:
				if !ok {
					return
				}
			case <-deadline:
				t.Fatalf("%s: the stream goes on", what)
			}
		}
	}
	// credentials that hold keep their stream past its checks
	kept, stopKept := openEvents(t, h, tok.Token, "")
	time.Sleep(1500 * time.Millisecond)
	var j0 api.Job
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated).decode(t, &j0)
	if ev := next(t, kept); ev.change.JobID != j0.ID {
		t.Fatalf("event %+v, want the new job's", ev)
	}
	stopKept()

	live, stop := openEvents(t, h, tok.Token, "")
	defer stop()
	h.do("DELETE", "/v1/tokens/"+tok.ID, alice, nil).want(t, http.StatusNoContent)
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated)
	ended("a revoked token's event stream", live)

	// a followed log, its user disabled
	var j api.Job
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated).decode(t, &j)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", h.http.URL+"/v1/jobs/"+j.ID+"/logs/stdout?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %v %v", resp, err)
	}
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, resp.Body); resp.Body.Close(); close(done) }()
	h.do("POST", "/v1/users/alice/disable", admin, map[string]any{}).want(t, http.StatusOK)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a disabled user's followed log goes on")
	}
}

// A followed log went on through the gateway's shutdown until the grace
// ran out (10 s of a silent Ctrl-C). It is broken off at once, not ended
// cleanly: its client resumes at its offset once the gateway is back.
func TestFollowedLogBrokenOffAtShutdown(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	var j api.Job
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated).decode(t, &j)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // a stream left open would hold the test server's Close
	req, _ := http.NewRequestWithContext(ctx, "GET", h.http.URL+"/v1/jobs/"+j.ID+"/logs/stdout?follow=true", nil)
	req.Header.Set("Authorization", "Bearer "+alice)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("follow: %v %v", resp, err)
	}
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); resp.Body.Close(); done <- err }()
	h.srv.CloseStreams()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the followed log ended cleanly at shutdown: a client takes that for the log's end")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a followed log goes on after the gateway closed its streams")
	}
}

// A followed log whose client never reads is let go once a write has
// waited StreamWait: it kept its stream, one of the few a person may
// hold, for as long as it held the connection (found by the seventh
// probe).
func TestStreamOfAClientThatDoesNotRead(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{StreamWait: 300 * time.Millisecond}})
	alice := h.token("alice", time.Time{}, allScopes...)
	j, _ := h.jobToken("alice", nil)
	chunk := strings.Repeat("x", 1<<20)
	for i := range 32 { // more than the socket buffers hold
		if _, err := h.store.AppendLog(context.Background(), j.ID, "stdout", int64(i)<<20, []byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := net.Dial("tcp", h.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/jobs/%s/logs/stdout?follow=true HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", j.ID, alice)
	open := func() int {
		h.srv.streams.mu.Lock()
		defer h.srv.streams.mu.Unlock()
		return h.srv.streams.n["alice"]
	}
	deadline := time.Now().Add(30 * time.Second)
	for open() == 0 && time.Now().Before(deadline) { // begun
		time.Sleep(10 * time.Millisecond)
	}
	for open() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream of a client that reads nothing is still open")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A Last-Event-ID past the newest event (a database restored from a
// backup) made a stream that said nothing, for good (found by the seventh
// probe): it goes on from the newest.
func TestEventsPastTheNewest(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated)
	past, stop := openEvents(t, h, alice, "9223372036854775807")
	defer stop()
	var late api.Job
	h.do("POST", "/v1/jobs", alice, hello(nil)).want(t, http.StatusCreated).decode(t, &late)
	if ev := next(t, past); ev.change.JobID != late.ID {
		t.Errorf("after a Last-Event-ID past the newest: %+v", ev)
	}
}
