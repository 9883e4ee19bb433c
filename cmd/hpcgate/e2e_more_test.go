package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// probeTemplate checks, from inside a job, what its job token may do, and
// writes its token to an output so the test can try it after the job.
const probeTemplate = `
name: probe
version: 1
command:
  - sh
  - -c
  - |
    hpcgate files > files.txt 2> files.err; echo "files=$?" > probe.txt
    hpcgate status "$HPCGATE_PARAM_OTHER" > /dev/null 2> other.err; echo "other=$?" >> probe.txt
    hpcgate status "$HPCGATE_JOB_ID" > /dev/null; echo "self=$?" >> probe.txt
    printf %s "$HPCGATE_TOKEN" > token.txt
parameters:
  type: object
  additionalProperties: false
  properties:
    other: {type: string, pattern: "^[a-z0-9]+$"}
outputs: [probe.txt, token.txt, files.txt, files.err, other.err]
environments: [local]
resources:
  default: {walltime_s: 600}
---
`

// nestTemplate submits a fanout, whose own children are one level deeper.
const nestTemplate = `
name: nest
version: 1
command: [sh, -c, 'hpcgate submit fanout --param n=1 --wait']
environments: [local]
resources:
  default: {walltime_s: 600}
`

func templatesDir(t *testing.T, texts ...string) string {
	d := t.TempDir()
	for i, text := range texts {
		text = strings.TrimSuffix(strings.TrimSpace(text), "---")
		if err := os.WriteFile(filepath.Join(d, string(rune('a'+i))+".yaml"), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func TestJobTokenLimits(t *testing.T) {
	dir := templatesDir(t, probeTemplate, nestTemplate)
	g := startGateway(t, "template_dirs: ["+dir+"]\npoll_interval: 500ms\nlimits: {max_children: 2, max_depth: 1}\n")
	ctx := context.Background()
	c := g.client(g.userToken("ivy"))
	if _, err := c.PutFile(ctx, "ivy-private.txt", strings.NewReader("ivy's"), 5); err != nil {
		t.Fatal(err)
	}
	other, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name":"x"}`), Hold: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	probe, err := c.CreateJob(ctx, api.JobRequest{Template: "probe", Parameters: json.RawMessage(`{"other":"` + other.ID + `"}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, probe.ID, 60*time.Second); j.State != api.StateSucceeded {
		t.Fatalf("probe %s: %s", j.State, j.Error)
	}
	if got := outputText(t, c, probe.ID, "probe.txt"); got != "files=0\nother=1\nself=0\n" {
		t.Fatalf("inside the job: %q (files.err %q, other.err %q)", got, outputText(t, c, probe.ID, "files.err"), outputText(t, c, probe.ID, "other.err"))
	}
	// a job's token lists its own job's space, never its owner's files
	if got := outputText(t, c, probe.ID, "files.txt"); strings.Contains(got, "ivy-private") {
		t.Errorf("a job token listing files sees its owner's: %q", got)
	}
	if e := outputText(t, c, probe.ID, "other.err"); !strings.Contains(e, "404") {
		t.Errorf("a job token reading an unrelated job: %q, want 404", e)
	}
	// The job has ended: its token no longer works.
	jobTok := outputText(t, c, probe.ID, "token.txt")
	if _, err := g.client(jobTok).Job(ctx, probe.ID); client.StatusOf(err) != 401 {
		t.Fatalf("the token of an ended job: %v, want 401", err)
	}

	// At most 2 children: fanout n=3 fails at the third, with two children.
	fan, err := c.CreateJob(ctx, api.JobRequest{Template: "fanout", Parameters: json.RawMessage(`{"n":3}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, fan.ID, 120*time.Second); j.State != api.StateFailed {
		t.Fatalf("fanout beyond the child limit: %s", j.State)
	}
	if kids, _ := c.Children(ctx, fan.ID); len(kids) != 2 {
		t.Fatalf("%d children, limit 2", len(kids))
	}
	errLog, _ := io.ReadAll(must(c.Log(ctx, fan.ID, "stderr", 0, false)))
	if !strings.Contains(string(errLog), "2 children at most") {
		t.Errorf("fanout's stderr does not say why: %q", errLog)
	}

	// Depth 1 at most: nest's child (fanout, depth 1) may not submit.
	nest, err := c.CreateJob(ctx, api.JobRequest{Template: "nest"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, nest.ID, 120*time.Second); j.State != api.StateFailed {
		t.Fatalf("nest: %s, want failed", j.State)
	}
	kids, _ := c.Children(ctx, nest.ID)
	if len(kids) != 1 || kids[0].State != api.StateFailed {
		t.Fatalf("nest's children: %+v", kids)
	}
	grandkids, _ := c.Children(ctx, kids[0].ID)
	if len(grandkids) != 0 {
		t.Fatalf("a job at the depth limit made %d children", len(grandkids))
	}
	errLog, _ = io.ReadAll(must(c.Log(ctx, kids[0].ID, "stderr", 0, false)))
	if !strings.Contains(string(errLog), "deep") {
		t.Errorf("depth refusal not explained: %q", errLog)
	}
}

func TestIdempotencyHoldReleaseDelete(t *testing.T) {
	g := startGateway(t, "")
	ctx := context.Background()
	c := g.client(g.userToken("jack"))
	req := api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name":"once"}`), Hold: true}
	a, err := c.CreateJob(ctx, req, "key-1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateJob(ctx, req, "key-1")
	if err != nil || b.ID != a.ID {
		t.Fatalf("same Idempotency-Key: %v, %v; want job %s again", b, err, a.ID)
	}
	if page, _ := c.Jobs(ctx, client.JobFilter{}); len(page.Items) != 1 {
		t.Fatalf("%d jobs after a repeated create", len(page.Items))
	}
	if a.State != api.StateHeld || a.Backend != nil {
		t.Fatalf("held job %+v", a)
	}
	time.Sleep(2500 * time.Millisecond) // past a poll: it must not run
	if j, _ := c.Job(ctx, a.ID); j.State != api.StateHeld {
		t.Fatalf("held job is %s", j.State)
	}
	if _, err := c.Hold(ctx, a.ID); err != nil {
		t.Fatalf("hold of a held job: %v", err)
	}
	if _, err := c.Release(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if j := waitJob(t, c, a.ID, 60*time.Second); j.State != api.StateSucceeded {
		t.Fatalf("released job: %s", j.State)
	}
	if _, err := c.Hold(ctx, a.ID); client.StatusOf(err) != 409 {
		t.Fatalf("hold of a finished job: %v, want 409", err)
	}
	if _, err := c.Release(ctx, a.ID); client.StatusOf(err) != 409 {
		t.Fatalf("release of a finished job: %v, want 409", err)
	}
	want := []string{"held", "pending", "queued", "starting", "running", "finishing", "succeeded"}
	if got := states(t, c, a.ID); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}

	// All outputs as one archive.
	rc, err := c.OutputsArchive(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != "greeting.txt" {
		t.Fatalf("archive entry %+v, %v", h, err)
	}
	body, _ := io.ReadAll(tr)
	rc.Close()
	if string(body) != "Hello, once\n" {
		t.Fatalf("archived greeting %q", body)
	}

	// Delete removes the job and its outputs.
	if err := c.DeleteJob(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Job(ctx, a.ID); client.StatusOf(err) != 404 {
		t.Fatalf("deleted job: %v", err)
	}
	if _, _, err := c.Output(ctx, a.ID, "greeting.txt"); client.StatusOf(err) != 404 {
		t.Fatalf("deleted job's output: %v", err)
	}
}

func TestFilesRangesStatusCatalogue(t *testing.T) {
	g := startGateway(t, "")
	ctx := context.Background()
	c := g.client(g.userToken("kim"))
	fi, err := c.PutFile(ctx, "data/numbers.txt", strings.NewReader("0123456789"), 10)
	if err != nil || fi.Size != 10 || fi.SHA256 != "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882" {
		t.Fatalf("PutFile = %+v, %v", fi, err)
	}
	resp, err := c.Do(ctx, "GET", "/v1/files/data/numbers.txt", nil, nil, http.Header{"Range": {"bytes=3-5"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 206 || string(b) != "345" || resp.Header.Get("Content-Range") != "bytes 3-5/10" {
		t.Fatalf("range: %d %q %q", resp.StatusCode, b, resp.Header.Get("Content-Range"))
	}
	if _, err := c.Do(ctx, "GET", "/v1/files/data/numbers.txt", nil, nil, http.Header{"Range": {"bytes=50-"}}); client.StatusOf(err) != 416 {
		t.Fatalf("unsatisfiable range: %v", err)
	}
	st, err := c.StatFile(ctx, "data/numbers.txt")
	if err != nil || st.Size != 10 || st.SHA256 != fi.SHA256 {
		t.Fatalf("HEAD = %+v, %v", st, err)
	}
	files, err := c.Files(ctx, "data/")
	if err != nil || len(files) != 1 || files[0].Path != "data/numbers.txt" {
		t.Fatalf("files %+v, %v", files, err)
	}
	if err := c.DeleteFile(ctx, "data/numbers.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StatFile(ctx, "data/numbers.txt"); client.StatusOf(err) != 404 {
		t.Fatalf("deleted file: %v", err)
	}

	// The file store cannot presign: large uploads stream through the
	// gateway, and a redirect request gets the bytes.
	if _, err := c.StartUpload(ctx, "x.bin", 100<<20, ""); !errors.Is(err, client.ErrNoDirect) {
		t.Fatalf("StartUpload on the file store: %v, want ErrNoDirect", err)
	}
	blob := strings.Repeat("z", 70<<20)
	if fi, err := c.UploadFile(ctx, "big/z.bin", strings.NewReader(blob), int64(len(blob)), nil); err != nil || fi.Size != int64(len(blob)) {
		t.Fatalf("UploadFile through the gateway: %+v, %v", fi, err)
	}
	resp, err = c.Do(ctx, "GET", "/v1/files/big/z.bin", url.Values{"redirect": {"true"}}, nil, http.Header{"Range": {"bytes=0-3"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "zzzz" {
		t.Fatalf("redirect=true on the file store: %q", b)
	}

	status, err := c.Status(ctx)
	if err != nil || status.Status != "ok" || len(status.Components) != 3 {
		t.Fatalf("status %+v, %v", status, err)
	}
	for _, comp := range status.Components {
		if !comp.Reachable {
			t.Errorf("component %s unreachable: %s", comp.Name, comp.Error)
		}
	}
	env, err := c.Environment(ctx, "local")
	if err != nil || env.Scheduler != "local" || env.Live["reachable"] != true || env.Live["total_cores"] == nil {
		t.Fatalf("environment %+v, %v", env, err)
	}
	tpl, err := c.Template(ctx, "wordcount", 0)
	if err != nil || len(tpl.Inputs) != 2 || tpl.Inputs[0].Name != "text" || !strings.Contains(string(tpl.Parameters), "min_length") ||
		tpl.Inputs[1].Name != "corpus" || !tpl.Inputs[1].Unpack || tpl.Inputs[1].MaxUnpackedSize != 4<<30 {
		t.Fatalf("template %+v, %v", tpl, err)
	}
	if _, err := c.Template(ctx, "nope", 0); client.StatusOf(err) != 404 {
		t.Fatalf("unknown template: %v", err)
	}
	if err := g.client("").Health(ctx); err != nil {
		t.Fatalf("health without a token: %v", err)
	}
	resp, err = g.client("").Do(ctx, "GET", "/openapi.json", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: %v", doc["openapi"])
	}
}
