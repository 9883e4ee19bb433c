package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
)

// openStream starts GET path with token and returns its status once the
// answer's header is in; cancel ends the stream.
func (h *harness) openStream(path, token string) (status int, end func()) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", h.http.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := h.http.Client().Do(req)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
	}
	return resp.StatusCode, func() { cancel(); resp.Body.Close() }
}

// A user holds at most maxStreams event streams and followed logs: each
// is a goroutine and a read of the store every second, and there was no
// bound on them.
func TestStreamsPerUserBounded(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	bob := h.token("bob", time.Time{}, allScopes...)
	j, _ := h.jobToken("alice", nil)
	var cancels []func()
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range maxStreams {
		path := "/v1/events"
		if i%2 == 1 {
			path = "/v1/jobs/" + j.ID + "/logs/stdout?follow=true"
		}
		st, cancel := h.openStream(path, alice)
		cancels = append(cancels, cancel)
		if st != http.StatusOK {
			t.Fatalf("stream %d: %d", i, st)
		}
	}
	for _, path := range []string{"/v1/events", "/v1/jobs/" + j.ID + "/logs/stdout?follow=true"} {
		if st, cancel := h.openStream(path, alice); st != http.StatusTooManyRequests {
			cancel()
			t.Fatalf("GET %s past the limit: %d, want 429", path, st)
		}
	}
	h.do("GET", "/v1/jobs/"+j.ID+"/logs/stdout", alice, nil).want(t, http.StatusOK) // not followed: not a stream
	st, cancel := h.openStream("/v1/events", bob)
	cancel()
	if st != http.StatusOK {
		t.Fatalf("another user's stream: %d", st)
	}
	// a stream that ends makes room
	cancels[0]()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, cancel := h.openStream("/v1/events", alice)
		cancels = append(cancels, cancel)
		if st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one stream ended: %d", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The log hub forgets a key once no one waits for it: reading the log of
// an ended job left an entry that no Notify would ever remove.
func TestHubForgets(t *testing.T) {
	hub := NewHub()
	c1, done1 := hub.Wait("j/stdout")
	_, done2 := hub.Wait("j/stdout")
	done1()
	done1() // twice is once
	if hub.keys() != 1 {
		t.Fatalf("%d keys with one waiter left", hub.keys())
	}
	done2()
	if hub.keys() != 0 {
		t.Fatalf("%d keys with no waiter", hub.keys())
	}
	c3, done3 := hub.Wait("j/stdout")
	hub.Notify("j/stdout")
	select {
	case <-c3:
	default:
		t.Fatal("Notify did not wake a waiter")
	}
	done3()
	select {
	case <-c1:
		t.Fatal("a released channel was closed by a later Notify")
	default:
	}

	h := newHarness(t, nil)
	alice := h.token("alice", time.Time{}, allScopes...)
	j, _ := h.jobToken("alice", nil)
	if _, err := h.store.UpdateJob(context.Background(), j.ID, func(j *job.Job) error { return j.SetState(job.Succeeded, "test", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	h.do("GET", "/v1/jobs/"+j.ID+"/logs/stdout", alice, nil).want(t, http.StatusOK)
	h.do("GET", "/v1/jobs/"+j.ID+"/logs/stdout?follow=true", alice, nil).want(t, http.StatusOK)
	if n := h.srv.logs.keys(); n != 0 {
		t.Fatalf("%d hub keys after reading an ended job's log", n)
	}
}
