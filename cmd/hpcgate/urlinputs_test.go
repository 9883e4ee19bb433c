package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// tlsServer starts an https server of h, with the gateway's own
// certificate (and so trusted by its jobs and by the gateway itself),
// closed when the test ends.
func (g *gw) tlsServer(h http.Handler) *httptest.Server {
	g.t.Helper()
	srv := httptest.NewUnstartedServer(h)
	cert, err := tls.LoadX509KeyPair(g.cacert, filepath.Join(filepath.Dir(g.cacert), "key.pem"))
	if err != nil {
		g.t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	g.t.Cleanup(srv.Close)
	return srv
}

// On every engine: a job's inputs come from an https:// server (trusted
// as the gateway is), the text checked against the digest in its URL and
// the corpus archive unpacked into the directory its template names; a
// wrong digest fails the job before its command runs, saying both.
func TestInputsByURLEndToEnd(t *testing.T) {
	envs, names := engineEnvs(t)
	g := startGateway(t, "poll_interval: 500ms\n"+envs)
	text := []byte("The cat sat.\n")
	var corpus bytes.Buffer
	zw := gzip.NewWriter(&corpus)
	tw := tar.NewWriter(zw)
	for name, body := range map[string]string{"a/one.txt": "cat dog\n", "b.txt": "cat\n"} {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	files := map[string][]byte{"/text.txt": text, "/corpus.tar.gz": corpus.Bytes()}
	srv := g.tlsServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	good := sha256.Sum256(text)
	c := g.client(g.userToken("una"))
	ctx := context.Background()
	for _, env := range names {
		t.Run(env, func(t *testing.T) {
			j, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount", Environment: env, Parameters: []byte(`{"min_length": 3}`),
				Inputs: map[string]string{"text": srv.URL + "/text.txt#sha256=" + hex.EncodeToString(good[:]), "corpus": srv.URL + "/corpus.tar.gz"}}, "")
			if err != nil {
				t.Fatal(err)
			}
			if j = waitJob(t, c, j.ID, 2*time.Minute); j.State != api.StateSucceeded {
				t.Fatalf("%s: %s", j.State, j.Error)
			}
			var summary struct {
				Total      int    `json:"total_words"`
				MostCommon string `json:"most_common"`
			}
			res, _ := c.Results(ctx, j.ID)
			if json.Unmarshal(res, &summary); summary.Total != 6 || summary.MostCommon != "cat" { // the cat sat, cat dog, cat
				t.Fatalf("results %s: the text and the unpacked corpus were not both read", res)
			}

			wrong := strings.Repeat("00", 32)
			j, err = c.CreateJob(ctx, api.JobRequest{Template: "wordcount", Environment: env,
				Inputs: map[string]string{"text": srv.URL + "/text.txt#sha256=" + wrong}}, "")
			if err != nil {
				t.Fatal(err)
			}
			j = waitJob(t, c, j.ID, 2*time.Minute)
			if j.State != api.StateFailed || !strings.Contains(j.Error, "input text") || !strings.Contains(j.Error, hex.EncodeToString(good[:])+", not "+wrong) {
				t.Fatalf("a wrong digest: %s (%s)", j.State, j.Error)
			}
			if slices.Contains(states(t, c, j.ID), api.StateRunning) {
				t.Fatal("the command ran on an input whose digest was wrong")
			}
		})
	}
}
