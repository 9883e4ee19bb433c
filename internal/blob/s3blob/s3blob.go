// Package s3blob is a blob.Bucket on any S3 API (AWS, Ceph RGW, MinIO,
// versitygw, ...), with path-style or virtual-host addressing, a region
// and a custom endpoint.
//
// Objects are streamed: a Put sends objects up to PartSize in one PUT and
// larger ones as a multipart upload of PartSize parts, so memory stays at
// about PartSize × Concurrency whatever the object's size; a failed Put
// aborts its upload. Bodies are sent unsigned (UNSIGNED-PAYLOAD, as
// presigned URLs are) over the connection's own integrity; the SHA-256 of
// every object is computed while it streams and kept in its metadata when
// it is known up front.
//
// Bucket also implements blob.Signer, for presigned GET and PUT URLs and
// presigned multipart uploads, so that bulk data need not pass through the
// gateway.
package s3blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/hpcgate/hpcgate/internal/blob"
)

// Options configure a Bucket. Zero fields take the defaults.
type Options struct {
	// Bucket is the bucket's name (required).
	Bucket string
	// Endpoint is the S3 API's URL (default: AWS for the region).
	Endpoint string
	// Region (default us-east-1).
	Region string
	// VirtualHost addresses buckets as BUCKET.host instead of host/BUCKET
	// (default: path style, which every S3 server understands).
	VirtualHost bool
	// AccessKey and SecretKey are the credentials (required).
	AccessKey, SecretKey string
	// Prefix is put before every key (default none).
	Prefix string
	// PartSize is the multipart part size (default 8 MiB, at least 5 MiB).
	// A Put holds at most Concurrency+1 parts in memory.
	PartSize int64
	// Concurrency is how many parts of one object are sent at once (default 2).
	Concurrency int
	// HTTPClient replaces the default client.
	HTTPClient *http.Client
}

// Bucket is a blob.Bucket on S3.
type Bucket struct {
	c       *s3.Client
	presign *s3.PresignClient
	opts    Options
}

var (
	_ blob.Bucket = (*Bucket)(nil)
	_ blob.Signer = (*Bucket)(nil)
)

// New returns a bucket. It does not contact the server.
func New(o Options) (*Bucket, error) {
	if o.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	if o.AccessKey == "" || o.SecretKey == "" {
		return nil, errors.New("s3: no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a credentials file)")
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.PartSize == 0 {
		o.PartSize = 8 << 20
	}
	o.PartSize = max(o.PartSize, 5<<20)
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	cfg := aws.Config{
		Region:      o.Region,
		Credentials: credentials.NewStaticCredentialsProvider(o.AccessKey, o.SecretKey, ""),
		// Checksums only where S3 demands them: the payload's SHA-256 is
		// ours to compute, once.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if o.HTTPClient != nil {
		cfg.HTTPClient = o.HTTPClient
	}
	c := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = !o.VirtualHost
	})
	return &Bucket{c: c, presign: s3.NewPresignClient(c), opts: o}, nil
}

// Open parses a URL s3://BUCKET[/PREFIX]?endpoint=URL&region=R&addressing=virtual
// and returns its bucket with the given credentials.
func Open(rawURL, accessKey, secretKey string) (*Bucket, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("objects URL %q: want s3://BUCKET?endpoint=URL", rawURL)
	}
	q := u.Query()
	o := Options{Bucket: u.Host, Endpoint: q.Get("endpoint"), Region: q.Get("region"), AccessKey: accessKey, SecretKey: secretKey,
		Prefix: strings.Trim(u.Path, "/")}
	if o.Prefix != "" {
		o.Prefix += "/"
	}
	switch q.Get("addressing") {
	case "", "path":
	case "virtual":
		o.VirtualHost = true
	default:
		return nil, fmt.Errorf("objects URL: addressing must be path or virtual")
	}
	for k := range q {
		switch k {
		case "endpoint", "region", "addressing":
		default:
			return nil, fmt.Errorf("objects URL: unknown parameter %q (known: endpoint, region, addressing)", k)
		}
	}
	return New(o)
}

func unsigned(o *s3.Options) {
	o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
}

func (b *Bucket) key(k string) (string, error) {
	if err := blob.CheckKey(k); err != nil {
		return "", err
	}
	return b.opts.Prefix + k, nil
}

// notFound reports whether err is S3's answer for a missing object.
func notFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var ae smithy.APIError
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	return errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchKey" || ae.ErrorCode() == "NotFound")
}

const shaMeta = "sha256"

// Put implements blob.Bucket.
func (b *Bucket) Put(ctx context.Context, key string, r io.Reader) (blob.Attrs, error) {
	k, err := b.key(key)
	if err != nil {
		return blob.Attrs{}, err
	}
	h := sha256.New()
	first := make([]byte, b.opts.PartSize)
	n, err := io.ReadFull(io.TeeReader(r, h), first)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	if int64(n) < b.opts.PartSize { // the whole object: one PUT
		sum := hex.EncodeToString(h.Sum(nil))
		_, err := b.c.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &b.opts.Bucket, Key: &k, Body: bytes.NewReader(first[:n]), ContentLength: aws.Int64(int64(n)),
			Metadata: map[string]string{shaMeta: sum},
		}, unsigned)
		if err != nil {
			return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
		}
		return blob.Attrs{Key: key, Size: int64(n), SHA256: sum, Modified: time.Now().UTC()}, nil
	}
	return b.putMultipart(ctx, key, k, first, io.TeeReader(r, h), h)
}

func (b *Bucket) putMultipart(ctx context.Context, key, k string, first []byte, rest io.Reader, h interface{ Sum([]byte) []byte }) (blob.Attrs, error) {
	up, err := b.c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &b.opts.Bucket, Key: &k})
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	abort := func(err error) (blob.Attrs, error) {
		b.c.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &b.opts.Bucket, Key: &k, UploadId: up.UploadId})
		return blob.Attrs{}, fmt.Errorf("put %s: %w", key, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		parts    []types.CompletedPart
		firstErr error
		wg       sync.WaitGroup
		size     int64
	)
	sem := make(chan struct{}, b.opts.Concurrency)
	bufs := make(chan []byte, b.opts.Concurrency+1)
	getBuf := func() []byte {
		select {
		case buf := <-bufs:
			return buf
		default:
			return make([]byte, b.opts.PartSize)
		}
	}
	send := func(num int32, data []byte, buf []byte) {
		defer wg.Done()
		defer func() { <-sem }()
		out, err := b.c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: &b.opts.Bucket, Key: &k, UploadId: up.UploadId, PartNumber: aws.Int32(num),
			Body: bytes.NewReader(data), ContentLength: aws.Int64(int64(len(data))),
		}, unsigned)
		bufs <- buf
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if firstErr == nil {
				firstErr = err
				cancel()
			}
			return
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num)})
	}
	buf, n := first, len(first)
	for num := int32(1); ; num++ {
		size += int64(n)
		sem <- struct{}{}
		wg.Add(1)
		go send(num, buf[:n], buf)
		mu.Lock()
		failed := firstErr
		mu.Unlock()
		if failed != nil {
			break
		}
		buf = getBuf()
		var err error
		n, err = io.ReadFull(rest, buf)
		if err == io.EOF {
			break
		}
		if err != nil && err != io.ErrUnexpectedEOF {
			wg.Wait()
			return abort(err)
		}
		if num == 10000 {
			wg.Wait()
			return abort(fmt.Errorf("more than 10000 parts of %d bytes", b.opts.PartSize))
		}
	}
	wg.Wait()
	if firstErr != nil {
		return abort(firstErr)
	}
	sortParts(parts)
	_, err = b.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &b.opts.Bucket, Key: &k, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return abort(err)
	}
	return blob.Attrs{Key: key, Size: size, SHA256: hex.EncodeToString(h.Sum(nil)), Modified: time.Now().UTC()}, nil
}

func sortParts(p []types.CompletedPart) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && *p[j].PartNumber < *p[j-1].PartNumber; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

func attrsOf(key string, size *int64, mod *time.Time, meta map[string]string) blob.Attrs {
	a := blob.Attrs{Key: key, SHA256: meta[shaMeta]}
	if size != nil {
		a.Size = *size
	}
	if mod != nil {
		a.Modified = *mod
	}
	return a
}

// Get implements blob.Bucket.
func (b *Bucket) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, blob.Attrs, error) {
	a, err := b.Stat(ctx, key)
	if err != nil {
		return nil, a, err
	}
	k, _ := b.key(key)
	if offset >= a.Size || length == 0 {
		return io.NopCloser(strings.NewReader("")), a, nil
	}
	in := &s3.GetObjectInput{Bucket: &b.opts.Bucket, Key: &k}
	if offset > 0 || length >= 0 {
		end := a.Size - 1
		if length >= 0 {
			end = min(end, offset+length-1)
		}
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, end))
	}
	out, err := b.c.GetObject(ctx, in)
	if notFound(err) {
		return nil, a, fmt.Errorf("%s: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return nil, a, fmt.Errorf("get %s: %w", key, err)
	}
	return out.Body, a, nil
}

// Stat implements blob.Bucket.
func (b *Bucket) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	k, err := b.key(key)
	if err != nil {
		return blob.Attrs{}, err
	}
	out, err := b.c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &b.opts.Bucket, Key: &k})
	if notFound(err) {
		return blob.Attrs{}, fmt.Errorf("%s: %w", key, blob.ErrNotFound)
	}
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return attrsOf(key, out.ContentLength, out.LastModified, out.Metadata), nil
}

// Delete implements blob.Bucket.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if _, err := b.Stat(ctx, key); err != nil {
		return err
	}
	k, _ := b.key(key)
	if _, err := b.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &b.opts.Bucket, Key: &k}); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// List implements blob.Bucket.
func (b *Bucket) List(ctx context.Context, prefix, after string, fn func(blob.Attrs) error) error {
	in := &s3.ListObjectsV2Input{Bucket: &b.opts.Bucket, Prefix: aws.String(b.opts.Prefix + prefix)}
	if after != "" {
		in.StartAfter = aws.String(b.opts.Prefix + after)
	}
	p := s3.NewListObjectsV2Paginator(b.c, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			key := strings.TrimPrefix(aws.ToString(o.Key), b.opts.Prefix)
			if err := fn(attrsOf(key, o.Size, o.LastModified, nil)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Ping checks that the bucket answers.
func (b *Bucket) Ping(ctx context.Context) error {
	_, err := b.c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &b.opts.Bucket})
	return err
}

// CreateBucket makes the bucket if it does not exist (for tests and first
// starts against an empty server).
func (b *Bucket) CreateBucket(ctx context.Context) error {
	if b.Ping(ctx) == nil {
		return nil
	}
	_, err := b.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &b.opts.Bucket})
	var owned *types.BucketAlreadyOwnedByYou
	if errors.As(err, &owned) {
		return nil
	}
	return err
}

// SignGet implements blob.Signer.
func (b *Bucket) SignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	k, err := b.key(key)
	if err != nil {
		return "", err
	}
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &b.opts.Bucket, Key: &k}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", err
	}
	return req.URL, nil
}

// SignPut implements blob.Signer.
func (b *Bucket) SignPut(ctx context.Context, key string, size int64, ttl time.Duration) (string, error) {
	k, err := b.key(key)
	if err != nil {
		return "", err
	}
	// the length is signed: a PUT of any other size is refused
	req, err := b.presign.PresignPutObject(ctx, &s3.PutObjectInput{Bucket: &b.opts.Bucket, Key: &k, ContentLength: &size}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", err
	}
	return req.URL, nil
}

// StartMultipart implements blob.Signer: it starts a multipart upload and
// presigns a PUT URL for each of its parts, with the part's length signed:
// a part of any other size is refused, so the parts hold what was
// declared, however often they are sent.
func (b *Bucket) StartMultipart(ctx context.Context, key string, size, partSize int64, sha256 string, ttl time.Duration) (string, []string, error) {
	k, err := b.key(key)
	if err != nil {
		return "", nil, err
	}
	if size < 1 || partSize < 1 {
		return "", nil, fmt.Errorf("multipart upload of %d bytes in parts of %d", size, partSize)
	}
	parts := (size + partSize - 1) / partSize
	if parts > 10000 {
		return "", nil, fmt.Errorf("multipart upload of %d parts: want 1 to 10000", parts)
	}
	in := &s3.CreateMultipartUploadInput{Bucket: &b.opts.Bucket, Key: &k}
	if sha256 != "" {
		in.Metadata = map[string]string{shaMeta: sha256}
	}
	up, err := b.c.CreateMultipartUpload(ctx, in)
	if err != nil {
		return "", nil, err
	}
	urls := make([]string, parts)
	for i := range urls {
		n := min(partSize, size-int64(i)*partSize)
		req, err := b.presign.PresignUploadPart(ctx, &s3.UploadPartInput{Bucket: &b.opts.Bucket, Key: &k, UploadId: up.UploadId,
			PartNumber: aws.Int32(int32(i + 1)), ContentLength: &n}, s3.WithPresignExpires(ttl))
		if err != nil {
			return "", nil, err
		}
		urls[i] = req.URL
	}
	return aws.ToString(up.UploadId), urls, nil
}

// CompleteMultipart implements blob.Signer.
func (b *Bucket) CompleteMultipart(ctx context.Context, key, uploadID string, etags []string) (blob.Attrs, error) {
	k, err := b.key(key)
	if err != nil {
		return blob.Attrs{}, err
	}
	parts := make([]types.CompletedPart, len(etags))
	for i, e := range etags {
		parts[i] = types.CompletedPart{ETag: aws.String(e), PartNumber: aws.Int32(int32(i + 1))}
	}
	_, err = b.c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &b.opts.Bucket, Key: &k, UploadId: &uploadID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		return blob.Attrs{}, fmt.Errorf("complete upload of %s: %w", key, err)
	}
	return b.Stat(ctx, key)
}

// AbortMultipart implements blob.Signer.
func (b *Bucket) AbortMultipart(ctx context.Context, key, uploadID string) error {
	k, err := b.key(key)
	if err != nil {
		return err
	}
	_, err = b.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &b.opts.Bucket, Key: &k, UploadId: &uploadID})
	if noSuchUpload(err) {
		return fmt.Errorf("upload %s: %w", uploadID, blob.ErrNotFound)
	}
	return err
}

// AbortStale implements blob.Signer: it drops the unfinished uploads
// under the bucket's prefix that began before before.
func (b *Bucket) AbortStale(ctx context.Context, before time.Time, limit int) (int, error) {
	n := 0
	p := s3.NewListMultipartUploadsPaginator(b.c, &s3.ListMultipartUploadsInput{Bucket: &b.opts.Bucket, Prefix: aws.String(b.opts.Prefix)})
	for p.HasMorePages() && n < limit {
		page, err := p.NextPage(ctx)
		if err != nil {
			return n, fmt.Errorf("list unfinished uploads: %w", err)
		}
		for _, u := range page.Uploads {
			if n >= limit {
				break
			}
			if u.Initiated == nil || !u.Initiated.Before(before) {
				continue
			}
			_, err := b.c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &b.opts.Bucket, Key: u.Key, UploadId: u.UploadId})
			if err != nil && !noSuchUpload(err) {
				return n, fmt.Errorf("abort unfinished upload of %s: %w", aws.ToString(u.Key), err)
			}
			n++
		}
	}
	return n, nil
}

// UploadedSize implements blob.Signer.
func (b *Bucket) UploadedSize(ctx context.Context, key, uploadID string) (int64, error) {
	k, err := b.key(key)
	if err != nil {
		return 0, err
	}
	var n int64
	p := s3.NewListPartsPaginator(b.c, &s3.ListPartsInput{Bucket: &b.opts.Bucket, Key: &k, UploadId: &uploadID})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if noSuchUpload(err) {
			return 0, fmt.Errorf("upload %s: %w", uploadID, blob.ErrNotFound)
		}
		if err != nil {
			return 0, err
		}
		for _, part := range page.Parts {
			if part.Size != nil {
				n += *part.Size
			}
		}
	}
	return n, nil
}

// noSuchUpload reports whether err is S3's answer for an unknown upload.
func noSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	var ae smithy.APIError
	return errors.As(err, &nsu) || errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}
