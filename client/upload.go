package client

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/hpcgate/hpcgate/api"
)

// DirectClient is the HTTP client for presigned object-store URLs: they
// point at the store, not the gateway, and carry their own authority, so
// it trusts the system's roots and sends no token.
var DirectClient = &http.Client{}

// ErrNoDirect reports that the gateway's object store cannot presign URLs.
var ErrNoDirect = errors.New("the gateway's object store does not presign URLs")

// StartUpload starts a presigned multipart upload of size bytes to path.
// It returns ErrNoDirect (wrapped) when the store cannot presign.
func (c *Client) StartUpload(ctx context.Context, path string, size int64, sha256 string) (*api.Upload, error) {
	var out api.Upload
	err := c.call(ctx, http.MethodPost, "/v1/uploads", nil, api.UploadRequest{Path: path, Size: size, SHA256: sha256}, &out, nil)
	var e *Error
	if errors.As(err, &e) && e.Code == api.CodeUnsupported {
		return nil, fmt.Errorf("%w: %v", ErrNoDirect, err)
	}
	return &out, err
}

// CompleteUpload assembles an upload's parts.
func (c *Client) CompleteUpload(ctx context.Context, up *api.Upload, etags []string) (*api.FileInfo, error) {
	var out api.FileInfo
	return &out, c.call(ctx, http.MethodPost, up.CompleteURL, nil, api.UploadComplete{ETags: etags}, &out, nil)
}

// AbortUpload abandons an upload.
func (c *Client) AbortUpload(ctx context.Context, up *api.Upload) error {
	return c.call(ctx, http.MethodDelete, "/v1/uploads/"+url.PathEscape(up.ID), nil, nil, nil, nil)
}

// UploadOptions tune UploadFile.
type UploadOptions struct {
	// Workers is how many parts go up at once (default 4).
	Workers int
	// Progress, if set, is called with each chunk of bytes sent.
	Progress func(n int64)
}

// UploadFile sends size bytes of r to the caller's file at path: as a
// presigned multipart upload straight to the object store when the
// gateway's store allows it (parts in parallel, each part's MD5 checked
// against the store's ETag), else streamed through the gateway, as is a
// file (r an io.ReadSeeker) when the store cannot be reached. It
// returns the file's info, with the SHA-256 computed while reading.
//
// When r is also an io.ReadSeeker (a file), the SHA-256 is computed first
// and recorded with the upload; the bytes sent must hash to it, and the
// store must report it, or the upload fails: a whole-file check on top of
// the per-part ones, which also catches a file that changed meanwhile.
func (c *Client) UploadFile(ctx context.Context, path string, r io.Reader, size int64, opts *UploadOptions) (*api.FileInfo, error) {
	o := UploadOptions{}
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	declared := ""
	var start int64
	if rs, ok := r.(io.ReadSeeker); ok {
		var err error
		if start, err = rs.Seek(0, io.SeekCurrent); err != nil {
			return nil, err
		}
		h := sha256.New()
		if _, err := io.CopyN(h, rs, size); err != nil {
			return nil, fmt.Errorf("hash %s: %w", path, err)
		}
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return nil, err
		}
		declared = hex.EncodeToString(h.Sum(nil))
	}
	up, err := c.StartUpload(ctx, path, size, declared)
	if errors.Is(err, ErrNoDirect) {
		return c.streamFile(ctx, path, r, size, o)
	}
	if err != nil {
		return nil, err
	}
	etags, sum, err := c.sendParts(ctx, up, r, size, o)
	if err != nil {
		c.AbortUpload(context.WithoutCancel(ctx), up)
		// The object store cannot be reached from here (a name only the
		// gateway resolves, a firewall): a file is sent again, through
		// the gateway.
		var ue *url.Error
		if rs, ok := r.(io.ReadSeeker); ok && errors.As(err, &ue) && ctx.Err() == nil {
			if _, serr := rs.Seek(start, io.SeekStart); serr == nil {
				return c.streamFile(ctx, path, r, size, o)
			}
		}
		return nil, err
	}
	fi, err := c.CompleteUpload(ctx, up, etags)
	if err != nil {
		return nil, err
	}
	if fi.Size != size {
		return nil, fmt.Errorf("upload of %s: the store holds %d bytes, %d were sent", path, fi.Size, size)
	}
	if declared != "" && (sum != declared || fi.SHA256 != declared) {
		return nil, fmt.Errorf("upload of %s: sha256 check failed: declared %s, sent %s, stored %s (did the file change during the upload?)", path, declared, sum, fi.SHA256)
	}
	fi.SHA256 = sum
	return fi, nil
}

// streamFile sends size bytes of r to the file at path through the
// gateway, and checks the SHA-256 it stored.
func (c *Client) streamFile(ctx context.Context, path string, r io.Reader, size int64, o UploadOptions) (*api.FileInfo, error) {
	h := sha256.New()
	body := io.TeeReader(r, h)
	if o.Progress != nil {
		body = &progressReader{r: body, fn: o.Progress}
	}
	fi, err := c.PutFile(ctx, path, body, size)
	if err != nil {
		return nil, err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); fi.SHA256 != "" && fi.SHA256 != sum {
		return nil, fmt.Errorf("upload of %s: the gateway stored sha256 %s, the file has %s", path, fi.SHA256, sum)
	}
	return fi, nil
}

type progressReader struct {
	r  io.Reader
	fn func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.fn(int64(n))
	}
	return n, err
}

// sendParts reads r in order (hashing it) and PUTs its parts with workers.
func (c *Client) sendParts(ctx context.Context, up *api.Upload, r io.Reader, size int64, o UploadOptions) ([]string, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type part struct {
		n    int
		data []byte
	}
	work := make(chan part)
	free := make(chan []byte, o.Workers+1)
	etags := make([]string, len(up.Parts))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for w := 0; w < o.Workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				etag, err := putPart(ctx, up.Parts[p.n].URL, p.data, o.Progress)
				if err != nil {
					fail(fmt.Errorf("part %d: %w", p.n+1, err))
				}
				etags[p.n] = etag
				free <- p.data[:cap(p.data)]
			}
		}()
	}
	h := sha256.New()
	var readErr error
	for i := range up.Parts {
		var buf []byte
		select {
		case buf = <-free:
		default:
			buf = make([]byte, up.PartSize)
		}
		want := min(up.PartSize, size-int64(i)*up.PartSize)
		n, err := io.ReadFull(r, buf[:want])
		if err != nil {
			readErr = fmt.Errorf("read part %d: %w", i+1, err)
			break
		}
		h.Write(buf[:n])
		select {
		case work <- part{n: i, data: buf[:n]}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	if readErr != nil {
		return nil, "", readErr
	}
	if firstErr != nil {
		return nil, "", firstErr
	}
	return etags, hex.EncodeToString(h.Sum(nil)), nil
}

// putPart sends one part and checks the store's ETag against its MD5.
func putPart(ctx context.Context, u string, data []byte, progress func(int64)) (string, error) {
	var body io.Reader = bytes.NewReader(data)
	if progress != nil {
		body = &progressReader{r: body, fn: progress}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = int64(len(data))
	resp, err := DirectClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("the object store answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	etag := resp.Header.Get("ETag")
	sum := md5.Sum(data)
	if e := strings.Trim(etag, `"`); len(e) == 32 && e != hex.EncodeToString(sum[:]) {
		return "", fmt.Errorf("the store's checksum %s differs from the part's MD5 %x", e, sum)
	}
	return etag, nil
}

// OutputURL asks for a presigned PUT URL for one of the job's outputs
// (agent). It returns ErrNoDirect (wrapped) when the store cannot presign.
func (c *Client) OutputURL(ctx context.Context, id, path string, size int64) (*api.SignedURL, error) {
	var out api.SignedURL
	err := c.call(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/output-urls", nil, api.OutputURLRequest{Path: path, Size: size}, &out, nil)
	var e *Error
	if errors.As(err, &e) && (e.Code == api.CodeUnsupported || e.Code == api.CodeValidation) {
		return nil, fmt.Errorf("%w: %v", ErrNoDirect, err)
	}
	return &out, err
}

// PutURL sends size bytes of r to a presigned PUT URL.
func PutURL(ctx context.Context, u string, r io.Reader, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, r)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	resp, err := DirectClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("the object store answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// GetURL opens a presigned GET URL from offset.
func GetURL(ctx context.Context, u string, offset int64) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	resp, err := DirectClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, fmt.Errorf("the object store answered %s", resp.Status)
	}
	return resp.Body, nil
}
