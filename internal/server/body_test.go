package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// rawRequest sends head (a request's line and headers, CRLF-ended, with
// no blank line) and then body's writes, one by one with pause between
// them, and returns the answer's status and how long it took from the
// end of head.
func rawRequest(t *testing.T, h *harness, head string, pause time.Duration, body ...string) (int, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", h.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	answered := make(chan *http.Response, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			answered <- nil
			return
		}
		answered <- resp
	}()
	for _, b := range body {
		select {
		case resp := <-answered:
			answered <- resp
		case <-time.After(pause):
			c.Write([]byte(b))
			continue
		}
		break
	}
	resp := <-answered
	if resp == nil {
		t.Fatal("no answer")
	}
	return resp.StatusCode, time.Since(start)
}

// A body that stalls, or trickles, is given up on: each held a
// connection, a goroutine, a temporary file and its upload's hold on the
// quota for as long as its client liked, an upload stalled for 400 s
// among them (found by the seventh probe). Malformed chunks are the
// client's fault (400), not the server's (500); a JSON body over the limit
// is refused at once, before it is sent.
func TestBodiesThatStallOrTrickle(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{BodyIdle: time.Second, Quota: func(string) Quota { return Quota{Files: 3} }}})
	tok := h.token("alice", time.Time{}, userScopes...)
	auth := "Authorization: Bearer " + tok + "\r\n"
	job := "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth

	// stalled: a JSON body, and an upload
	if st, took := rawRequest(t, h, job+"Content-Length: 100\r\n", 0, "{"); st != http.StatusRequestTimeout || took > 10*time.Second {
		t.Errorf("stalled JSON: %d after %v, want 408 after about a second", st, took)
	}
	put := "PUT /v1/files/stalled.txt HTTP/1.1\r\nHost: x\r\n" + auth
	if st, took := rawRequest(t, h, put+"Content-Length: 1000\r\n", 0, "abc"); st != http.StatusRequestTimeout || took > 10*time.Second {
		t.Errorf("stalled upload: %d after %v, want 408 after about a second", st, took)
	}
	// trickled: a byte every 200 ms never stalls for a second, but comes
	// at 5 bytes a second
	trickle := strings.Split(strings.Repeat("x", 100), "")
	if st, took := rawRequest(t, h, put+"Content-Length: 100\r\n", 200*time.Millisecond, trickle...); st != http.StatusRequestTimeout || took > 10*time.Second {
		t.Errorf("trickled upload: %d after %v, want 408", st, took)
	}
	// malformed chunks
	if st, _ := rawRequest(t, h, job+"Transfer-Encoding: chunked\r\n", 0, "\r\n5\r\n{\"tem\r\nZZ\r\n"); st != http.StatusBadRequest {
		t.Errorf("malformed chunks: %d, want 400", st)
	}
	// over the JSON limit: answered before the body is sent
	if st, took := rawRequest(t, h, job+fmt.Sprintf("Content-Length: %d\r\n", 10<<20), 0); st != http.StatusRequestEntityTooLarge || took > 5*time.Second {
		t.Errorf("a body over the limit: %d after %v, want 413 at once", st, took)
	}
	// a PUT with neither a length nor chunks (HTTP/1.0's): it stored an
	// empty file
	if st, _ := rawRequest(t, h, "PUT /v1/files/nolength.txt HTTP/1.0\r\nHost: x\r\n"+auth, 0, "data"); st != http.StatusLengthRequired {
		t.Errorf("a PUT without a length: %d, want 411", st)
	}
	// nothing of them was kept or held: three files fit the quota
	for i := range 3 {
		h.do("PUT", fmt.Sprintf("/v1/files/f%d.txt", i), tok, "ok").want(t, http.StatusCreated)
	}
	if strings.Contains(h.logs.String(), "level=ERROR") {
		t.Errorf("a client's slow or broken body was logged as an error:\n%s", h.logs)
	}
}

// Over HTTP/2 a stalled body is given up on too: the deadline is the
// stream's.
func TestBodyStallsOverHTTP2(t *testing.T) {
	h := newHarness(t, &harnessOptions{opts: &Options{BodyIdle: time.Second}})
	tok := h.token("alice", time.Time{}, userScopes...)
	ts := httptest.NewUnstartedServer(h.srv)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequestWithContext(context.Background(), "PUT", ts.URL+"/v1/files/h2.txt", pr)
	req.ContentLength = 1000
	req.Header.Set("Authorization", "Bearer "+tok)
	go pw.Write([]byte("abc")) // and nothing more
	start := time.Now()
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 10*time.Second {
		t.Errorf("HTTP/%d %d after %v, want HTTP/2 408 after about a second", resp.ProtoMajor, resp.StatusCode, time.Since(start))
	}
}
