package agent

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hpcgate/hpcgate/api"
)

// tarGz builds a .tar.gz of entries: name → content, with a trailing "/"
// for a directory and "->TARGET" as content for a symbolic link.
func tarGz(t *testing.T, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e[0], Mode: 0o644, Size: int64(len(e[1]))}
		switch {
		case strings.HasSuffix(e[0], "/"):
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case strings.HasPrefix(e[1], "->"):
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e[1][2:], 0
		case strings.HasPrefix(e[1], "=>"):
			h.Typeflag, h.Linkname, h.Size = tar.TypeLink, e[1][2:], 0
		case strings.HasPrefix(e[1], "#!"):
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e[1]))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

func zipOf(t *testing.T, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.Create(e[0])
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(e[1]))
	}
	zw.Close()
	return buf.Bytes()
}

func unpackBytes(t *testing.T, archive []byte, limit int64) (string, error) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "archive")
	if err := os.WriteFile(src, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out")
	return dst, unpack(src, dst, limit)
}

func TestUnpack(t *testing.T) {
	good := [][2]string{{"./", ""}, {"mesh/", ""}, {"mesh/a.dat", "aaa"}, {"run.sh", "#!/bin/sh\n"}, {"latest", "->mesh/a.dat"}}
	for name, archive := range map[string][]byte{"tar.gz": tarGz(t, good), "zip": zipOf(t, [][2]string{{"mesh/", ""}, {"mesh/a.dat", "aaa"}, {"run.sh", "#!/bin/sh\n"}})} {
		t.Run(name, func(t *testing.T) {
			dst, err := unpackBytes(t, archive, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dst, "mesh/a.dat")); err != nil || string(b) != "aaa" {
				t.Fatalf("mesh/a.dat = %q, %v", b, err)
			}
			if st, err := os.Stat(filepath.Join(dst, "run.sh")); err != nil || (name == "tar.gz" && st.Mode().Perm() != 0o700) {
				t.Fatalf("run.sh: %v, %v (an executable stays one, for its owner only)", st.Mode(), err)
			}
			if _, err := os.Stat(dst + ".unpacking"); !os.IsNotExist(err) {
				t.Fatalf("the unpacking directory is left: %v", err)
			}
		})
	}
	plain := tarGz(t, [][2]string{{"a.txt", "x"}})
	zr, _ := gzip.NewReader(bytes.NewReader(plain))
	var tarOnly bytes.Buffer
	tarOnly.ReadFrom(zr)
	if dst, err := unpackBytes(t, tarOnly.Bytes(), 10); err != nil {
		t.Fatalf("a plain .tar: %v", err)
	} else if b, _ := os.ReadFile(filepath.Join(dst, "a.txt")); string(b) != "x" {
		t.Fatalf("a plain .tar gave %q", b)
	}
}

func TestUnpackRefuses(t *testing.T) {
	for _, tt := range []struct {
		name    string
		archive []byte
		limit   int64
		want    string
	}{
		{"dot-dot", tarGz(t, [][2]string{{"../escape.txt", "x"}}), 100, "outside the archive's directory"},
		{"absolute", tarGz(t, [][2]string{{"/tmp/escape.txt", "x"}}), 100, "outside the archive's directory"},
		{"deep dot-dot", tarGz(t, [][2]string{{"a/../../escape.txt", "x"}}), 100, "outside the archive's directory"},
		{"zip dot-dot", zipOf(t, [][2]string{{"../escape.txt", "x"}}), 100, "outside the archive's directory"},
		{"link out", tarGz(t, [][2]string{{"etc", "->../../../etc"}}), 100, "outside the archive's directory"},
		{"absolute link", tarGz(t, [][2]string{{"pw", "->/etc/passwd"}}), 100, "outside the archive's directory"},
		{"write through a link", tarGz(t, [][2]string{{"d/", ""}, {"d/up", "->.."}, {"d/up/x", "->.."}, {"d/up/x/escape.txt", "x"}}), 100, "escape"},
		// each link alone stays inside; followed through the first, the
		// second leads three levels out
		{"link through a link", tarGz(t, [][2]string{{"d", "->."}, {"d/d/d/x", "->../../../home"}}), 100, "leads out"},
		{"target through a link", tarGz(t, [][2]string{{"up", "->."}, {"x", "->up/../etc"}}), 100, "leads out"},
		{"hard link", tarGz(t, [][2]string{{"a", "x"}, {"b", "=>a"}}), 100, "hard links"},
		{"too big", tarGz(t, [][2]string{{"a", "0123456789"}, {"b", "0123456789"}}), 15, "max_unpacked_size"},
		{"twice the same file", tarGz(t, [][2]string{{"a", "x"}, {"a", "y"}}), 100, "exists"},
		{"not an archive", []byte("just text, no archive at all"), 100, "not a .tar.gz, .tar or .zip"},
		{"damaged", tarGz(t, [][2]string{{"a", "x"}})[:30], 100, "damaged"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dst, err := unpackBytes(t, tt.archive, tt.limit)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("unpack = %v, want an error saying %q", err, tt.want)
			}
			for _, p := range []string{dst, dst + ".unpacking", filepath.Join(filepath.Dir(dst), "escape.txt")} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s is left after a refused archive (%v)", p, err)
				}
			}
		})
	}
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// A job's inputs given by URL are fetched by the agent from there, checked
// against their sha256, and unpacked when the template says so.
func TestRemoteInputs(t *testing.T) {
	archive := tarGz(t, [][2]string{{"mesh/a.dat", "aaa"}})
	files := map[string][]byte{"/data.txt": []byte("remote data\n"), "/mesh.tar.gz": archive}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "http://"+r.Host+"/data.txt", http.StatusFound)
			return
		}
		if r.Header.Get("Authorization") != "" {
			t.Errorf("a token was sent to %s", r.URL)
		}
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	defer srv.Close()
	run := func(t *testing.T, inputs ...api.SpecInput) (*gateway, string) {
		t.Helper()
		g, c := newGateway(t, api.Spec{JobID: "job1", Command: sh("cat data.txt mesh/mesh/a.dat > seen.txt"), Outputs: []string{"seen.txt"}, Inputs: inputs})
		o, dir := opts(t)
		o.Remote = srv.Client()
		if err := Run(context.Background(), c, "job1", o); err != nil {
			t.Fatal(err)
		}
		return g, dir
	}
	data := api.SpecInput{Name: "data", Path: "data.txt", URL: srv.URL + "/data.txt", Remote: true, SHA256: sum(files["/data.txt"]), MaxSize: 100}
	mesh := api.SpecInput{Name: "mesh", Path: "mesh", URL: srv.URL + "/mesh.tar.gz", Remote: true, MaxSize: 1 << 20, Unpack: true, MaxUnpacked: 100}

	t.Run("fetched, checked and unpacked", func(t *testing.T) {
		g, _ := run(t, data, mesh)
		if got, _ := g.output("seen.txt"); got != "remote data\naaa" {
			t.Fatalf("the command saw %q (final %+v)", got, g.final())
		}
		g.mu.Lock()
		asked := g.calls["inputs"]
		g.mu.Unlock()
		if asked != 0 {
			t.Fatal("a remote input was asked of the gateway")
		}
	})
	for _, tt := range []struct {
		name string
		edit func(*api.SpecInput)
		want string
	}{
		{"wrong sha256", func(in *api.SpecInput) { in.SHA256 = sum([]byte("other")) }, "has sha256 " + sum(files["/data.txt"]) + ", not " + sum([]byte("other"))},
		{"not found", func(in *api.SpecInput) { in.URL = srv.URL + "/nothing" }, "404 Not Found"},
		{"too big", func(in *api.SpecInput) { in.MaxSize = 5 }, "more than the input's limit of 5"},
		{"redirect to http", func(in *api.SpecInput) { in.URL = srv.URL + "/moved" }, "only https:// is followed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := data
			tt.edit(&in)
			g, dir := run(t, in)
			if rep := g.final(); rep.State != api.StateFailed || !strings.Contains(rep.Error, tt.want) || !strings.Contains(rep.Error, "input data") {
				t.Fatalf("final %+v, want failed saying %q", rep, tt.want)
			}
			if strings.Contains(g.states(), "running") {
				t.Fatal("the command ran without its input")
			}
			if _, err := os.Stat(filepath.Join(dir, "data.txt")); !os.IsNotExist(err) {
				t.Fatalf("a refused input is left in the working directory (%v)", err)
			}
		})
	}
	t.Run("archive that is none", func(t *testing.T) {
		in := mesh
		in.URL = srv.URL + "/data.txt"
		g, _ := run(t, in)
		if rep := g.final(); rep.State != api.StateFailed || !strings.Contains(rep.Error, "input mesh: cannot unpack it") || !strings.Contains(rep.Error, "not a .tar.gz") {
			t.Fatalf("final %+v", rep)
		}
	})
}

// An input's URL may not name the node's own services, nor a link-local
// address (a cloud's metadata), unless the gateway itself is on loopback
// (one machine for everything): the agent, which may run as root, fetched
// https://127.0.0.1:PORT/ for a task without network of its own (found by
// the seventh probe). The refusal is final, not an outage to retry.
func TestRemoteClientRefusesTheNode(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") }))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func(hc *http.Client, url string) error {
		return fetchRemote(ctx, hc, api.SpecInput{Name: "x", URL: url, MaxSize: 100}, filepath.Join(t.TempDir(), "x"))
	}
	closed, err := RemoteClient(ca, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1), "https://169.254.169.254/latest/meta-data/", "https://[::ffff:127.0.0.1]:1/"} {
		if err := get(closed, url); err == nil || !errors.As(err, new(permanentError)) {
			t.Errorf("%s: %v, want a final refusal", url, err)
		}
	}
	open, err := RemoteClient(ca, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(open, srv.URL); err != nil {
		t.Errorf("with the gateway on loopback: %v", err)
	}
	// through a proxy, the target is checked by its name's addresses
	// before the request goes to the proxy (whose own address may be
	// loopback), and the node's own interfaces' addresses are the node's
	// too (found by review)
	g := &nodeGuard{own: nodeAddrs()}
	for _, host := range []string{"localhost", "127.0.0.1", "169.254.169.254", "::1"} {
		if err := g.checkHost(ctx, host); err == nil {
			t.Errorf("checkHost(%s) passed", host)
		}
	}
	for a := range g.own {
		if err := g.checkHost(ctx, a.String()); err == nil {
			t.Errorf("the node's own %s passed", a)
		}
	}
	if err := g.checkHost(ctx, "192.0.2.7"); err != nil && !g.own[netip.MustParseAddr("192.0.2.7")] {
		t.Errorf("another host's address: %v", err)
	}
	for url, want := range map[string]bool{"https://127.0.0.1:8443": true, "https://localhost:8443": true, "https://[::1]:8443": true, "https://gw.example.org": false, "https://10.0.0.1": false} {
		if LoopbackGateway(url) != want {
			t.Errorf("LoopbackGateway(%s) = %v", url, !want)
		}
	}
}
