package s3blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"github.com/hpcgate/hpcgate/internal/testenv"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/blob/blobtest"
)

// testBucket returns a bucket on the S3 server of HPCGATE_TEST_S3 (an
// objects URL, as scripts/setup-s3.sh prints) under a fresh prefix.
func testBucket(t *testing.T, partSize int64) *Bucket {
	t.Helper()
	u, key, secret := testenv.S3(t)
	b, err := Open(u.String(), key, secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.CreateBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	if partSize > 0 {
		b.opts.PartSize = partSize
	}
	return b
}

func TestConformance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blob.Bucket { return testBucket(t, 5<<20) })
}

func TestMultipartPutStreams(t *testing.T) {
	b := testBucket(t, 5<<20)
	data := make([]byte, 17<<20+123) // four parts, the last short
	rand.Read(data)
	a, err := b.Put(context.Background(), "big", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if a.Size != int64(len(data)) {
		t.Fatalf("size %d", a.Size)
	}
	rc, _, err := b.Get(context.Background(), "big", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatal("multipart object differs from what was put")
	}
}

func TestPresigned(t *testing.T) {
	b := testBucket(t, 0)
	ctx := context.Background()
	put, err := b.SignPut(ctx, "signed/x.txt", int64(len("by URL")), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// a PUT of another size than signed is refused
	req, _ := http.NewRequest(http.MethodPut, put, strings.NewReader("by URL, and more"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == 200 {
		t.Fatal("a presigned PUT of more bytes than signed was accepted")
	}
	req, _ = http.NewRequest(http.MethodPut, put, strings.NewReader("by URL"))
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("presigned PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	get, err := b.SignGet(ctx, "signed/x.txt", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(get)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "by URL" {
		t.Fatalf("presigned GET: %q", body)
	}
	if strings.Contains(get, "hpcgate-secret") {
		t.Fatal("a presigned URL carries the secret key")
	}

	// Multipart through presigned part URLs, as the CLI uploads.
	id, urls, err := b.StartMultipart(ctx, "signed/multi.bin", 5<<20+4, 5<<20, "ab12", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(urls) != 2 {
		t.Fatalf("%d part URLs for two parts", len(urls))
	}
	// a part's length is signed: more than declared is refused, so that
	// an upload of one declared byte cannot hold gigabytes of parts
	req, _ = http.NewRequest(http.MethodPut, urls[1], strings.NewReader("tail, and more"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode == 200 {
		t.Fatalf("a part longer than signed: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	parts := [][]byte{bytes.Repeat([]byte("a"), 5<<20), []byte("tail")}
	var etags []string
	for i, u := range urls {
		req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(parts[i]))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("part %d: %v %v", i, resp, err)
		}
		resp.Body.Close()
		etags = append(etags, resp.Header.Get("ETag"))
	}
	a, err := b.CompleteMultipart(ctx, "signed/multi.bin", id, etags)
	if err != nil || a.Size != 5<<20+4 || a.SHA256 != "ab12" {
		t.Fatalf("complete: %+v, %v; want the declared sha256 kept", a, err)
	}
}

// Unfinished uploads that began before a time are dropped, and only they:
// their parts were stored, counted in no quota, for as long as the
// object store kept them.
func TestAbortStale(t *testing.T) {
	b := testBucket(t, 0)
	ctx := context.Background()
	old, _, err := b.StartMultipart(ctx, "up/old.bin", 10, 10, "", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.AbortStale(ctx, time.Now().Add(-time.Hour), 100); err != nil || n != 0 {
		t.Fatalf("uploads begun before an hour ago: %d dropped, %v", n, err)
	}
	if n, err := b.AbortStale(ctx, time.Now().Add(time.Minute), 100); err != nil || n != 1 {
		t.Fatalf("uploads begun before now: %d dropped, %v; want 1", n, err)
	}
	if _, err := b.UploadedSize(ctx, "up/old.bin", old); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("a dropped upload: %v", err)
	}
}

func TestOpenURL(t *testing.T) {
	for _, bad := range []string{"http://x", "s3://", "s3://b?endpoint=http://x&colour=red", "s3://b?addressing=sideways"} {
		if _, err := Open(bad, "k", "s"); err == nil {
			t.Errorf("Open(%q) accepted", bad)
		}
	}
	b, err := Open("s3://bucket/pre/fix?endpoint=http://127.0.0.1:1&region=eu-west-1&addressing=virtual", "k", "s")
	if err != nil {
		t.Fatal(err)
	}
	if b.opts.Bucket != "bucket" || b.opts.Prefix != "pre/fix/" || b.opts.Region != "eu-west-1" || !b.opts.VirtualHost {
		t.Fatalf("options %+v", b.opts)
	}
	if _, err := Open("s3://bucket", "", ""); err == nil {
		t.Fatal("no credentials accepted")
	}
}
