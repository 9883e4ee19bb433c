package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

func newTestClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(srv.URL, "hpcg_secret", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestProblemDecoding(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/jobs":
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			json.NewEncoder(w).Encode(api.Problem{Title: "Invalid request", Status: 422, Code: api.CodeValidation, Detail: "parameters.n: must be at least 1",
				RequestID: "2a", Errors: []api.FieldError{{Field: "parameters.n", Message: "must be at least 1"}}})
		case "/v1/jobs/j1":
			http.Error(w, "upstream fell over", http.StatusBadGateway) // not a problem document
		default:
			http.NotFound(w, r)
		}
	}))
	_, err := c.CreateJob(context.Background(), api.JobRequest{Template: "hello"}, "")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%T %v, want *Error", err, err)
	}
	if e.Status != 422 || e.Code != api.CodeValidation || e.RequestID != "2a" || len(e.Errors) != 1 || e.Errors[0].Field != "parameters.n" {
		t.Fatalf("problem %+v", e.Problem)
	}
	if StatusOf(err) != 422 {
		t.Fatalf("StatusOf = %d", StatusOf(err))
	}
	if want := "422 Invalid request: parameters.n: must be at least 1\n  parameters.n: must be at least 1"; err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}

	_, err = c.Job(context.Background(), "j1")
	if !errors.As(err, &e) || e.Status != 502 || e.Title != "Bad Gateway" || e.Detail != "upstream fell over" {
		t.Fatalf("non-problem answer: %#v", err)
	}
	if StatusOf(errors.New("plain")) != 0 {
		t.Fatal("StatusOf of a plain error")
	}
}

func TestRequestShape(t *testing.T) {
	var got atomic.Value
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Method + " " + r.URL.EscapedPath() + "?" + r.URL.RawQuery + " " + r.Header.Get("Authorization") + " " + r.Header.Get("Idempotency-Key"))
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"j1","state":"pending"}`)
	}))
	ctx := context.Background()
	if _, err := c.CreateJob(ctx, api.JobRequest{Template: "hello"}, "key-1"); err != nil {
		t.Fatal(err)
	}
	if want := "POST /v1/jobs? Bearer hpcg_secret key-1"; got.Load() != want {
		t.Fatalf("request %q, want %q", got.Load(), want)
	}
	if _, err := c.StatFile(ctx, "dir/a b#c.txt"); err != nil {
		t.Fatal(err)
	}
	if want := "HEAD /v1/files/dir/a%20b%23c.txt? Bearer hpcg_secret "; got.Load() != want {
		t.Fatalf("request %q, want %q", got.Load(), want)
	}
	// A path with an empty, . or .. segment is never sent: on its way (a
	// proxy that normalises URLs) it would name another route,
	// files/../jobs/x being jobs/x. Ids too.
	got.Store("")
	for name, call := range map[string]func() error{
		"../jobs/x":   func() error { return c.DeleteFile(ctx, "../jobs/x") },
		"a/./b":       func() error { _, err := c.StatFile(ctx, "a/./b"); return err },
		"a//b":        func() error { _, err := c.StatFile(ctx, "a//b"); return err },
		"job ..":      func() error { return c.DeleteJob(ctx, "..") },
		"job (empty)": func() error { _, err := c.Job(ctx, ""); return err },
	} {
		if err := call(); err == nil || !strings.Contains(err.Error(), "segment") {
			t.Errorf("%s: %v; want it refused before sending", name, err)
		}
	}
	if got.Load() != "" {
		t.Fatalf("a request was sent: %q", got.Load())
	}
}

// The client follows no redirect to the gateway itself: it would carry
// the token to whatever route the redirect names.
func TestNoRedirectToTheGatewayFollowed(t *testing.T) {
	var hits atomic.Int32
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, "/v1/jobs/victim", http.StatusTemporaryRedirect)
	}))
	err := c.DeleteFile(context.Background(), "x")
	if StatusOf(err) != http.StatusTemporaryRedirect || hits.Load() != 1 {
		t.Fatalf("DeleteFile answered by a redirect: %v after %d requests; want the 307 itself, one request", err, hits.Load())
	}
}

func TestPaging(t *testing.T) {
	pages := map[string]api.Page[api.FileInfo]{
		"":   {Items: []api.FileInfo{{Path: "a"}, {Path: "b"}}, NextPageToken: "p2"},
		"p2": {Items: []api.FileInfo{{Path: "c"}}, NextPageToken: "p3"},
		"p3": {Items: []api.FileInfo{{Path: "d"}}},
	}
	var calls atomic.Int32
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Query().Get("prefix") != "in/" {
			t.Errorf("prefix %q lost on page %q", r.URL.Query().Get("prefix"), r.URL.Query().Get("page_token"))
		}
		p, ok := pages[r.URL.Query().Get("page_token")]
		if !ok {
			http.Error(w, `{"status":400,"title":"bad page token","code":"bad_request"}`, 400)
			return
		}
		json.NewEncoder(w).Encode(p)
	}))
	files, err := c.Files(context.Background(), "in/")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Path)
	}
	if strings.Join(names, "") != "abcd" || calls.Load() != 3 {
		t.Fatalf("files %v in %d calls", names, calls.Load())
	}
}

func TestJobsPage(t *testing.T) {
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("state") != "running,queued" || q.Get("limit") != "2" || q.Get("page_token") != "t1" || q.Get("label") != "k=v" {
			t.Errorf("query %v", q)
		}
		json.NewEncoder(w).Encode(api.Page[api.Job]{Items: []api.Job{{ID: "j3"}, {ID: "j4"}}, NextPageToken: "t2"})
	}))
	p, err := c.Jobs(context.Background(), JobFilter{State: "running,queued", Limit: 2, PageToken: "t1", Label: "k=v"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 2 || p.NextPageToken != "t2" {
		t.Fatalf("page %+v", p)
	}
}

// Wait is the one call that repeats itself: it polls until the job ends.
func TestWaitPolls(t *testing.T) {
	var n atomic.Int32
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		state := api.StateRunning
		if n.Add(1) >= 3 {
			state = api.StateSucceeded
		}
		json.NewEncoder(w).Encode(api.Job{ID: "j1", State: state})
	}))
	j, err := c.Wait(context.Background(), "j1")
	if err != nil || j.State != api.StateSucceeded || n.Load() != 3 {
		t.Fatalf("Wait: %+v %v after %d polls", j, err, n.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.Store(-100)
	if _, err := c.Wait(ctx, "j1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a canceled context: %v", err)
	}
}

func TestFromEnvTokenFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  hpcg_fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HPCGATE_URL", "https://127.0.0.1:8443")
	t.Setenv("HPCGATE_CACERT", "")

	t.Setenv("HPCGATE_TOKEN", "")
	t.Setenv("HPCGATE_TOKEN_FILE", file)
	c, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "hpcg_fromfile" {
		t.Fatalf("token %q, want the file's, trimmed", c.token)
	}

	t.Setenv("HPCGATE_TOKEN", "hpcg_fromenv")
	if c, err = FromEnv(); err != nil || c.token != "hpcg_fromenv" {
		t.Fatalf("with both set: %v, %v; want HPCGATE_TOKEN", c, err)
	}

	t.Setenv("HPCGATE_TOKEN", "")
	t.Setenv("HPCGATE_TOKEN_FILE", filepath.Join(dir, "missing"))
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "HPCGATE_TOKEN_FILE") {
		t.Fatalf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	t.Setenv("HPCGATE_TOKEN_FILE", empty)
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty file: %v", err)
	}
	t.Setenv("HPCGATE_TOKEN_FILE", "")
	if _, err := FromEnv(); err == nil || !strings.Contains(err.Error(), "HPCGATE_TOKEN_FILE") {
		t.Fatalf("nothing set: %v", err)
	}
}

func writeCert(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// otherCert writes a self-signed certificate that signed nothing the
// test servers use (httptest's servers all share one).
func otherCert(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "other"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUntrustedCertificateSaysWhatToSet(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	ctx := context.Background()

	for name, ca := range map[string]string{"no CA": "", "another CA": otherCert(t)} {
		c, err := New(srv.URL, "tok", &Options{CACertFile: ca})
		if err != nil {
			t.Fatal(err)
		}
		for call, fn := range map[string]func() error{
			"Health":  func() error { return c.Health(ctx) },
			"PutFile": func() error { _, err := c.PutFile(ctx, "a", strings.NewReader("x"), 1); return err },
		} {
			err := fn()
			if err == nil {
				t.Fatalf("%s, %s: an untrusted certificate was accepted", name, call)
			}
			msg := err.Error()
			if !strings.Contains(msg, "HPCGATE_CACERT") || !strings.Contains(msg, "tls/cert.pem") || strings.Contains(msg, "x509:") {
				t.Fatalf("%s, %s: message %q should say to set HPCGATE_CACERT, in words", name, call, msg)
			}
			var te *TLSTrustError
			if !errors.As(err, &te) || te.Unwrap() == nil {
				t.Fatalf("%s: %T lacks the TLS cause", name, err)
			}
		}
	}
	c, err := New(srv.URL, "tok", &Options{CACertFile: writeCert(t, srv)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Health(ctx); err != nil {
		t.Fatalf("with the right CA: %v", err)
	}
}

func TestCertificateForAnotherName(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	// httptest's certificate is for 127.0.0.1, ::1 and example.com, not localhost.
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	c, err := New(u, "tok", &Options{CACertFile: writeCert(t, srv)})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Health(context.Background())
	if err == nil {
		t.Skip("httptest's certificate is for localhost here")
	}
	if !strings.Contains(err.Error(), `not for "localhost"`) || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("message %q", err)
	}
}

// Wait on a gateway with the change stream: it opens the stream, reads
// the job once, and returns when the stream says the job ended, without
// polling.
func TestWaitOnChangeStream(t *testing.T) {
	var reads atomic.Int32
	ended := make(chan struct{})
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/events" {
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "retry: 2000\n: changes after 7\n\n")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "id: 8\nevent: job\ndata: {\"seq\":8,\"job_id\":\"other\",\"state\":\"succeeded\"}\n\n")
			<-ended
			fmt.Fprint(w, "id: 9\nevent: job\ndata: {\"seq\":9,\"job_id\":\"j1\",\"state\":\"failed\"}\n\n")
			return
		}
		state := api.StateRunning
		if reads.Add(1) > 1 {
			state = api.StateFailed
		}
		json.NewEncoder(w).Encode(api.Job{ID: "j1", State: state})
	}))
	go func() { time.Sleep(300 * time.Millisecond); close(ended) }()
	j, err := c.Wait(context.Background(), "j1")
	if err != nil || j.State != api.StateFailed || reads.Load() != 2 {
		t.Fatalf("Wait: %+v %v after %d reads of the job; want the end from the stream, then one read", j, err, reads.Load())
	}
}

// A gateway that is not there is said in words: where the client looked
// and what to check, not Go's "Get ...: dial tcp ...". The network's error
// stays in the chain (a follower reconnects on it).
func TestUnreachableGatewaySaysWhere(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := New("https://"+addr, "tok", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Health(context.Background())
	var ue *UnreachableError
	var op *net.OpError
	if !errors.As(err, &ue) || !errors.As(err, &op) {
		t.Fatalf("Health of nothing = %T %v; want an *UnreachableError over the dial's error", err, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "https://"+addr) || !strings.Contains(msg, "HPCGATE_URL") || strings.Contains(msg, "dial tcp") {
		t.Errorf("message %q: want where it looked and what names it, in words", msg)
	}
}

// An object store the client cannot reach (a name only the gateway
// resolves): a file is sent again through the gateway, and the upload it
// began is abandoned (found by the sixth probe: the upload failed).
func TestUploadThroughTheGatewayWhenTheStoreIsAway(t *testing.T) {
	var aborted, streamed atomic.Int32
	var got []byte
	c := newTestClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == "POST" && r.URL.Path == "/v1/uploads":
			json.NewEncoder(w).Encode(api.Upload{ID: "up1", Path: "big.bin", PartSize: 4,
				Parts:       []api.UploadPart{{Number: 1, URL: "http://127.0.0.1:1/b/1"}, {Number: 2, URL: "http://127.0.0.1:1/b/2"}},
				CompleteURL: "/v1/uploads/up1/complete"})
		case r.Method == "DELETE" && r.URL.Path == "/v1/uploads/up1":
			aborted.Add(1)
			w.WriteHeader(http.StatusNoContent)
		case r.Method == "PUT" && r.URL.Path == "/v1/files/big.bin":
			streamed.Add(1)
			got, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(api.FileInfo{Path: "big.bin", Size: int64(len(got))})
		default:
			http.NotFound(w, r)
		}
	}))
	fi, err := c.UploadFile(context.Background(), "big.bin", strings.NewReader("0123456"), 7, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size != 7 || string(got) != "0123456" || streamed.Load() != 1 || aborted.Load() != 1 {
		t.Fatalf("info %+v, streamed %d (%q), aborted %d", fi, streamed.Load(), got, aborted.Load())
	}
}
