package server

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/internal/blob"
)

// vanishingBucket answers a Get of any key holding gone as not found, as
// when the job is deleted while its archive is made.
type vanishingBucket struct {
	blob.Bucket
	gone string
}

func (b *vanishingBucket) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, blob.Attrs, error) {
	if b.gone != "" && strings.Contains(key, b.gone) {
		return nil, blob.Attrs{}, fmt.Errorf("%s: %w", key, blob.ErrNotFound)
	}
	return b.Bucket.Get(ctx, key, off, n)
}

// An output gone while the outputs' archive is made breaks the download
// off, or refuses it if it is the first: the archive was whole without it,
// and the client could not tell (found by the eighth probe).
func TestOutputsArchiveNotWholeWithoutAnOutput(t *testing.T) {
	vb := &vanishingBucket{}
	h := newHarness(t, nil)
	vb.Bucket = h.bucket
	h2 := newHarness(t, &harnessOptions{store: h.store, bucket: vb})
	alice := h.token("alice", time.Time{}, allScopes...)
	j, jt := h.jobToken("alice", nil)
	raw := make([]byte, 256<<10) // past what the archive holds back, compressed too
	rand.Read(raw)
	big := string(raw)
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/a.txt", jt, big).want(t, http.StatusCreated)
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/b.txt", jt, "b").want(t, http.StatusCreated)

	get := func() (int, error) {
		req, _ := http.NewRequest("GET", h2.http.URL+"/v1/jobs/"+j.ID+"/outputs.tar.gz", nil)
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := h2.http.Client().Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		gz, err := gzip.NewReader(resp.Body)
		if err != nil {
			return resp.StatusCode, err
		}
		tr := tar.NewReader(gz)
		for {
			if _, err := tr.Next(); err != nil {
				if err == io.EOF {
					return resp.StatusCode, nil
				}
				return resp.StatusCode, err
			}
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return resp.StatusCode, err
			}
		}
	}
	if code, err := get(); code != http.StatusOK || err != nil {
		t.Fatalf("the whole archive: %d, %v", code, err)
	}
	vb.gone = "/b.txt"
	if code, err := get(); code != http.StatusOK || err == nil {
		t.Fatalf("an archive without b.txt after a large a.txt: %d, %v; want a broken download", code, err)
	}
	vb.gone = "/a.txt"
	if code, _ := get(); code != http.StatusConflict {
		t.Fatalf("the first output gone: %d, want 409", code)
	}
	// a second output gone after a first too small to have been sent yet
	// (gzip holds it back): still a refusal, not a broken download
	h.do("PUT", "/v1/jobs/"+j.ID+"/outputs/a.txt", jt, "a").want(t, http.StatusCreated)
	vb.gone = "/b.txt"
	if code, _ := get(); code != http.StatusConflict {
		t.Fatalf("the second output gone after a small first: %d, want 409", code)
	}
}
