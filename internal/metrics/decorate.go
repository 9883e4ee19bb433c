package metrics

import (
	"context"
	"io"
	"time"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

func since(h *prometheus.HistogramVec, op string, start time.Time) {
	h.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// Store returns st with the latency of its calls measured (the calls of
// every request and of the dispatcher; the rest pass through).
func (m *Metrics) Store(st store.Store) store.Store { return &timedStore{Store: st, h: m.storeOps} }

type timedStore struct {
	store.Store
	h *prometheus.HistogramVec
}

func (s *timedStore) CreateJob(ctx context.Context, j *job.Job, o *store.CreateOptions) (*job.Job, error) {
	defer since(s.h, "create_job", time.Now())
	return s.Store.CreateJob(ctx, j, o)
}

func (s *timedStore) GetJob(ctx context.Context, id string) (*job.Job, error) {
	defer since(s.h, "get_job", time.Now())
	return s.Store.GetJob(ctx, id)
}

func (s *timedStore) ListJobs(ctx context.Context, f store.JobFilter) ([]*job.Job, string, error) {
	defer since(s.h, "list_jobs", time.Now())
	return s.Store.ListJobs(ctx, f)
}

func (s *timedStore) UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error) {
	defer since(s.h, "update_job", time.Now())
	return s.Store.UpdateJob(ctx, id, fn)
}

func (s *timedStore) AppendLog(ctx context.Context, id, stream string, off int64, data []byte) (int64, error) {
	defer since(s.h, "append_log", time.Now())
	return s.Store.AppendLog(ctx, id, stream, off, data)
}

func (s *timedStore) ReadLog(ctx context.Context, id, stream string, off int64, n int) ([]byte, int64, error) {
	defer since(s.h, "read_log", time.Now())
	return s.Store.ReadLog(ctx, id, stream, off, n)
}

func (s *timedStore) TokenByHash(ctx context.Context, hash string) (store.Token, error) {
	defer since(s.h, "token_by_hash", time.Now())
	return s.Store.TokenByHash(ctx, hash)
}

func (s *timedStore) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	defer since(s.h, "append_audit", time.Now())
	return s.Store.AppendAudit(ctx, e)
}

// Bucket returns b with the latency of its calls measured; a b that is a
// blob.Signer stays one.
func (m *Metrics) Bucket(b blob.Bucket) blob.Bucket {
	tb := &timedBucket{Bucket: b, h: m.objectOps}
	if sg, ok := b.(blob.Signer); ok {
		return &timedSigner{timedBucket: tb, Signer: sg}
	}
	return tb
}

type timedBucket struct {
	blob.Bucket
	h *prometheus.HistogramVec
}

type timedSigner struct {
	*timedBucket
	blob.Signer
}

func (b *timedBucket) Put(ctx context.Context, key string, r io.Reader) (blob.Attrs, error) {
	defer since(b.h, "put", time.Now())
	return b.Bucket.Put(ctx, key, r)
}

func (b *timedBucket) Get(ctx context.Context, key string, off, n int64) (io.ReadCloser, blob.Attrs, error) {
	defer since(b.h, "get", time.Now())
	return b.Bucket.Get(ctx, key, off, n)
}

func (b *timedBucket) Stat(ctx context.Context, key string) (blob.Attrs, error) {
	defer since(b.h, "stat", time.Now())
	return b.Bucket.Stat(ctx, key)
}

func (b *timedBucket) Delete(ctx context.Context, key string) error {
	defer since(b.h, "delete", time.Now())
	return b.Bucket.Delete(ctx, key)
}

func (b *timedBucket) List(ctx context.Context, prefix, after string, fn func(blob.Attrs) error) error {
	defer since(b.h, "list", time.Now())
	return b.Bucket.List(ctx, prefix, after, fn)
}
