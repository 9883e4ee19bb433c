package main

// The gateway on production storage: PostgreSQL (HPCGATE_TEST_POSTGRES) and
// an S3 server (HPCGATE_TEST_S3), as scripts/setup-postgres.sh and
// scripts/setup-s3.sh start them; and two replicas sharing both.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// productionConfig returns config lines for a fresh PostgreSQL schema and
// a fresh S3 prefix, or skips.
func productionConfig(t *testing.T) string {
	t.Helper()
	pg, s3 := os.Getenv("HPCGATE_TEST_POSTGRES"), os.Getenv("HPCGATE_TEST_S3")
	if pg == "" || s3 == "" {
		t.Skip("HPCGATE_TEST_POSTGRES and HPCGATE_TEST_S3 not set: run scripts/setup-postgres.sh and scripts/setup-s3.sh and set them to the URLs they print (scripts/test.sh does both)")
	}
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		t.Setenv("AWS_ACCESS_KEY_ID", "hpcgate")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "hpcgate-secret")
	}
	var b [5]byte
	rand.Read(b[:])
	name := "e2e_" + hex.EncodeToString(b[:])
	if out, err := exec.Command("psql", pg, "-qc", "CREATE SCHEMA "+name).CombinedOutput(); err != nil {
		t.Fatalf("create schema: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("psql", pg, "-qc", "DROP SCHEMA "+name+" CASCADE").Run() })
	u, err := url.Parse(pg)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	su, err := url.Parse(s3)
	if err != nil {
		t.Fatal(err)
	}
	su.Path = "/" + name
	return "database: '" + u.String() + "'\nobjects: '" + su.String() + "'\npoll_interval: 500ms\n"
}

func TestProductionStorage(t *testing.T) {
	g := startGateway(t, productionConfig(t))
	ctx := context.Background()
	c := g.client(g.userToken("mona"))
	if st, err := c.Status(ctx); err != nil || st.Status != "ok" {
		t.Fatalf("status %+v, %v", st, err)
	}
	text := strings.Repeat("the quick brown fox jumps over the lazy dog\n", 200000) // 8.8 MB: a multipart upload to S3
	if _, err := c.PutFile(ctx, "in/fox.txt", strings.NewReader(text), int64(len(text))); err != nil {
		t.Fatal(err)
	}
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount", Inputs: map[string]string{"text": "in/fox.txt"}, Parameters: json.RawMessage(`{"min_length": 4}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, c, j.ID, 2*time.Minute); done.State != api.StateSucceeded {
		t.Fatalf("wordcount on PostgreSQL and S3: %s (%s)", done.State, done.Error)
	}
	res, _ := c.Results(ctx, j.ID)
	var r struct {
		Total int `json:"total_words"`
	}
	json.Unmarshal(res, &r)
	if r.Total != 5*200000 { // quick brown jumps over lazy
		t.Fatalf("results %s", res)
	}
	rc, _, err := c.GetFile(ctx, "in/fox.txt", 0)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(rc)
	rc.Close()
	if string(back) != text {
		t.Fatal("the file read back from S3 differs")
	}
	// Bulk data straight to and from the store: a presigned multipart
	// upload (three 16 MiB parts), and downloads that redirect.
	big := bytes.Repeat([]byte("0123456789abcdef"), 40<<20/16)
	fi, err := c.UploadFile(ctx, "in/big.bin", bytes.NewReader(big), int64(len(big)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256(big); fi.Size != int64(len(big)) || fi.SHA256 != hex.EncodeToString(want[:]) {
		t.Fatalf("multipart upload: %+v", fi)
	}
	// A file that changes between the hash and the upload is refused.
	changing := &changingReader{data: bytes.Clone(big[:20<<20])}
	if _, err := c.UploadFile(ctx, "in/changing.bin", changing, int64(len(changing.data)), nil); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("upload of a file that changed: %v, want a sha256 failure", err)
	}
	noFollow := &http.Client{Transport: c.Transport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", g.url+"/v1/files/in/big.bin?redirect=true", nil)
	req.Header.Set("Authorization", "Bearer "+g.userToken("mona"))
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(loc, "X-Amz-Signature") {
		t.Fatalf("redirect=true: %d %q", resp.StatusCode, loc)
	}
	direct, err := client.GetURL(ctx, loc, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(direct)
	direct.Close()
	if !bytes.Equal(got, big) {
		t.Fatal("the presigned download differs from the upload")
	}
	// The agent sent its outputs straight to the store too: those carry no
	// checksum of the gateway's.
	resp, err = c.Do(ctx, "GET", "/v1/jobs/"+j.ID+"/outputs/results.json", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Checksum-Sha256") != "" {
		t.Error("the output went through the gateway, not straight to the store")
	}

	f, err := c.CreateJob(ctx, api.JobRequest{Template: "fanout", Parameters: json.RawMessage(`{"n": 2}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, c, f.ID, 2*time.Minute); done.State != api.StateSucceeded {
		t.Fatalf("fanout: %s (%s)", done.State, done.Error)
	}
}

func TestTwoReplicas(t *testing.T) {
	cfg := productionConfig(t) + "template_dirs: [" + templatesDir(t, sleeperTemplate) + "]\n"
	a := startGateway(t, cfg)
	b := replicaOf(t, a, cfg)
	ctx := context.Background()
	tokA := a.userToken("nina") // tokens live in the shared database
	ca, cb := a.client(tokA), b.client(tokA)

	// A log written through one replica streams live from the other.
	slow, err := ca.CreateJob(ctx, api.JobRequest{Template: "sleeper", Parameters: json.RawMessage(`{"lines": 5, "pause": 0.4}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cb.Log(ctx, slow.ID, "stdout", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(rc)
	var lines []string
	live := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "line 1" {
			j, _ := cb.Job(ctx, slow.ID)
			live = !client.Terminal(j.State)
		}
	}
	rc.Close()
	if strings.Join(lines, ",") != "started,line 1,line 2,line 3,line 4,line 5" || !live {
		t.Fatalf("followed through the other replica: %q (live %v)", lines, live)
	}

	// A cancel through the replica that does not run the job: the job's
	// agent learns of it and stops the command within seconds.
	long, err := ca.CreateJob(ctx, api.JobRequest{Template: "sleeper", Parameters: json.RawMessage(`{"lines": 1000, "pause": 0.2}`)}, "")
	if err != nil {
		t.Fatal(err)
	}
	waitState(t, ca, long.ID, api.StateRunning, time.Minute)
	// Suspending needs the replica whose local executor runs it; the other
	// says so.
	if _, err := cb.Suspend(ctx, long.ID); client.StatusOf(err) != 409 || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("suspend through the other replica: %v, want 409 naming the replica", err)
	}
	if _, err := cb.Cancel(ctx, long.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	n1, _ := io.ReadAll(must(cb.Log(ctx, long.ID, "stdout", 0, false)))
	time.Sleep(2 * time.Second)
	n2, _ := io.ReadAll(must(cb.Log(ctx, long.ID, "stdout", 0, false)))
	if len(n1) != len(n2) {
		t.Fatalf("the job canceled through the other replica still writes (%d → %d bytes)", len(n1), len(n2))
	}

	// 500 jobs created alternately on both while one replica is killed and
	// restarted: every acknowledged job exists once and ends, and none is
	// handed to an engine twice.
	const n = 500
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				c := ca
				if i%2 == 1 {
					c = cb
				}
				key := "replica-test-" + strconv.Itoa(i)
				for try := 0; try < 50; try++ {
					j, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name":"r"}`)}, key)
					if err == nil {
						mu.Lock()
						acked = append(acked, j.ID)
						mu.Unlock()
						break
					}
					time.Sleep(200 * time.Millisecond) // that replica is down: try again, same key
				}
			}
		}(w)
	}
	time.Sleep(3 * time.Second)
	a.kill()
	time.Sleep(2 * time.Second)
	a.start()
	wg.Wait()
	if len(acked) != n {
		t.Fatalf("%d of %d jobs acknowledged", len(acked), n)
	}
	seen := map[string]bool{}
	for _, id := range acked {
		if seen[id] {
			t.Fatalf("job %s acknowledged twice", id)
		}
		seen[id] = true
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, id := range acked {
		var j *api.Job
		for {
			j, err = cb.Job(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if client.Terminal(j.State) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if j.State != api.StateSucceeded {
			t.Fatalf("job %s: %s (%s)", id, j.State, j.Error)
		}
		queued := 0
		for _, s := range states(t, cb, id) {
			if s == api.StateQueued {
				queued++
			}
		}
		if queued != 1 {
			t.Fatalf("job %s was handed to an engine %d times", id, queued)
		}
	}
	page, err := cb.Jobs(ctx, client.JobFilter{Template: "hello", Limit: 1000})
	if err != nil || len(page.Items) != n {
		t.Fatalf("%d hello jobs in the database, want %d", len(page.Items), n)
	}
}

// Replicas hold their uploads' room in the shared database: uploads at
// once through two replicas never pass the quota together.
func TestReplicasShareTheQuota(t *testing.T) {
	cfg := productionConfig(t) + "quotas: {users: {olga: {bytes: 100, files: 50}}}\n"
	a := startGateway(t, cfg)
	b := replicaOf(t, a, cfg)
	ctx := context.Background()
	tok := a.userToken("olga")
	clients := []*client.Client{a.client(tok), b.client(tok)}
	const n = 12
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := clients[i%2].PutFile(ctx, "f"+strconv.Itoa(i), strings.NewReader(strings.Repeat("x", 30)), 30)
			codes[i] = http.StatusCreated
			if err != nil {
				codes[i] = client.StatusOf(err)
			}
		})
	}
	wg.Wait()
	stored := 0
	for _, c := range codes {
		switch c {
		case http.StatusCreated:
			stored++
		case http.StatusConflict:
		default:
			t.Fatalf("statuses %v", codes)
		}
	}
	me, err := clients[1].Me(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if q := me.Quotas["bytes"]; stored != 3 || q.Used != 90 {
		t.Fatalf("%d of %d uploads of 30 bytes through two replicas stored under a quota of 100 (%v); use %+v", stored, n, codes, q)
	}
}

// replicaOf starts a replica of a: a gateway of its own data directory on
// a's database, given a's admin token as an operator gives it (a new data
// directory on a database that has one makes none).
func replicaOf(t *testing.T, a *gw, cfg string) *gw {
	t.Helper()
	b := newGateway(t, cfg)
	tok, err := os.ReadFile(filepath.Join(a.dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "admin.token"), tok, 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

// changingReader is a file that someone rewrites while it is uploaded:
// after the first rewind (the one that follows hashing it), its last byte
// is different.
type changingReader struct {
	data    []byte
	off     int64
	rewound int
}

func (r *changingReader) Read(p []byte) (int, error) {
	if r.off >= int64(len(r.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.data[r.off:])
	r.off += int64(n)
	return n, nil
}

func (r *changingReader) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekStart {
		if r.rewound++; r.rewound == 1 {
			r.data[len(r.data)-1] ^= 0xff
		}
		r.off = off
	}
	return r.off, nil
}

// On S3, the bytes quota holds on the paths that bypass the gateway: a
// presigned multipart upload that would pass it is refused before any
// part is sent, one that fits is counted once completed, a job's outputs
// sent to presigned URLs count to its owner, and deleting the job counts
// them off again.
func TestProductionQuotaBytes(t *testing.T) {
	const limit = 30 << 20
	g := startGateway(t, productionConfig(t)+"quotas: {users: {quinn: {bytes: 30MiB}}}\n")
	ctx := context.Background()
	c := g.client(g.userToken("quinn"))
	used := func() int64 {
		t.Helper()
		me, err := c.Me(ctx)
		if err != nil {
			t.Fatal(err)
		}
		q := me.Quotas["bytes"]
		if q.Limit != limit {
			t.Fatalf("bytes quota %+v, want a limit of %d", q, limit)
		}
		return q.Used
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16)
	if _, err := c.UploadFile(ctx, "in/a.bin", bytes.NewReader(big), int64(len(big)), nil); err != nil {
		t.Fatal(err)
	}
	if got := used(); got != int64(len(big)) {
		t.Fatalf("after a 20 MiB multipart upload: %d bytes used", got)
	}
	_, err := c.UploadFile(ctx, "in/b.bin", bytes.NewReader(big), int64(len(big)), nil)
	var ce *client.Error
	if !errorsAs(err, &ce) || ce.Status != http.StatusConflict || ce.Code != api.CodeQuotaExceeded {
		t.Fatalf("a second 20 MiB upload: %v, want 409 %s", err, api.CodeQuotaExceeded)
	}
	if _, err := c.StatFile(ctx, "in/b.bin"); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("the refused upload left a file: %v", err)
	}
	// an upload that sends more than it declared is refused by the object
	// store (each part URL is signed for its length), and leaves nothing
	liar, err := c.StartUpload(ctx, "in/liar.bin", 10, "")
	if err != nil {
		t.Fatal(err)
	}
	preq, _ := http.NewRequest(http.MethodPut, liar.Parts[0].URL, bytes.NewReader(big))
	if presp, err := (&http.Client{Transport: c.Transport()}).Do(preq); err == nil {
		presp.Body.Close()
		if presp.StatusCode == http.StatusOK {
			t.Fatal("a part of 20 MiB was stored for an upload declared as 10 bytes")
		}
	}
	if err := c.AbortUpload(ctx, liar); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StatFile(ctx, "in/liar.bin"); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("the refused upload left a file: %v", err)
	}
	if got := used(); got != int64(len(big)) {
		t.Fatalf("after a refused upload: %d bytes used", got)
	}
	// an upload aborted twice: the second is 404, not a server error
	up, err := c.StartUpload(ctx, "in/aborted.bin", 10, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AbortUpload(ctx, up); err != nil {
		t.Fatal(err)
	}
	if err := c.AbortUpload(ctx, up); client.StatusOf(err) != http.StatusNotFound {
		t.Fatalf("an upload aborted again: %v, want 404", err)
	}
	text := "alpha beta alpha\n"
	if _, err := c.PutFile(ctx, "in/t.txt", strings.NewReader(text), int64(len(text))); err != nil {
		t.Fatal(err)
	}
	j, err := c.CreateJob(ctx, api.JobRequest{Template: "wordcount", Inputs: map[string]string{"text": "in/t.txt"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if done := waitJob(t, c, j.ID, 2*time.Minute); done.State != api.StateSucceeded {
		t.Fatalf("wordcount: %s (%s)", done.State, done.Error)
	}
	outs, err := c.Outputs(ctx, j.ID)
	if err != nil || len(outs) == 0 {
		t.Fatalf("outputs %v, %v", outs, err)
	}
	var outBytes int64
	for _, o := range outs {
		outBytes += o.Size
	}
	base := int64(len(big) + len(text))
	if got := used(); got != base+outBytes {
		t.Fatalf("with the job's outputs (%d bytes, sent to presigned URLs): %d used, want %d", outBytes, got, base+outBytes)
	}
	if err := c.DeleteJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if got := used(); got != base {
		t.Fatalf("after the job's deletion: %d used, want %d", got, base)
	}
}
