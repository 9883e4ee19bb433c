// Package store defines Store, where hpcgate keeps jobs, their events and
// logs, and tokens; and the errors every implementation returns.
//
// Implementations: sqlitestore (embedded default) and pgstore. Both are a
// storedriver.Driver (rows, transactions) under rowstore, which holds the
// rules once; every implementation passes the conformance suite in
// storetest.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
)

// Errors callers branch on. Implementations wrap them with context.
var (
	// ErrNotFound: no such job or token.
	ErrNotFound = errors.New("not found")
	// ErrDuplicate: a job with the same owner and idempotency key exists.
	ErrDuplicate = errors.New("duplicate idempotency key")
	// ErrConflict: the id is taken, or a log append leaves a gap.
	ErrConflict = errors.New("conflict")
	// ErrLimit: a limit was reached (children per job).
	ErrLimit = errors.New("limit reached")
)

// Store keeps hpcgate's state. Every method is safe for concurrent use.
type Store interface {
	// CreateJob stores j (its State, normally pending or held, becomes its
	// first event). If j.IdemKey is set and the owner already has a job
	// with that key, it returns that job and an error wrapping ErrDuplicate.
	// If j.ParentID is set and opts.MaxChildren > 0 and the parent has that
	// many children already, it returns an error wrapping ErrLimit.
	CreateJob(ctx context.Context, j *job.Job, opts *CreateOptions) (*job.Job, error)

	// GetJob returns the job, or an error wrapping ErrNotFound.
	GetJob(ctx context.Context, id string) (*job.Job, error)

	// ListJobs returns the jobs that match f, newest first (oldest first
	// with f.Oldest), and a token for the next page ("" on the last page).
	ListJobs(ctx context.Context, f JobFilter) ([]*job.Job, string, error)

	// UpdateJob calls fn with a copy of the job and stores what fn leaves
	// in it, atomically. If fn returns an error nothing is stored and the
	// error is returned. A change of State must be allowed by
	// job.Transition (else an error wrapping job.ErrInvalidTransition) and
	// is recorded as an event with the job's Reason. It returns the stored
	// job, or an error wrapping ErrNotFound.
	UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error)

	// DeleteJob removes the job with its events, logs and tokens; an error
	// wrapping ErrNotFound if there is no such job.
	DeleteJob(ctx context.Context, id string) error

	// PurgeFinished removes up to limit jobs in a terminal state that
	// finished before before, oldest first, with their events, logs and
	// tokens, and returns their ids (so that the caller removes what they
	// left elsewhere, like their outputs).
	PurgeFinished(ctx context.Context, before time.Time, limit int) ([]string, error)

	// Events returns the job's events in the order they happened.
	Events(ctx context.Context, id string) ([]job.Event, error)

	// AppendLog stores data at offset of the job's stream and returns the
	// stream's size after it. Bytes the store holds already are not written
	// again, so a retried append is harmless; an offset beyond the end
	// returns an error wrapping ErrConflict.
	AppendLog(ctx context.Context, id, stream string, offset int64, data []byte) (int64, error)

	// ReadLog returns up to max bytes of the stream from offset, and the
	// stream's size. Reading at or past the end returns no bytes.
	ReadLog(ctx context.Context, id, stream string, offset int64, max int) ([]byte, int64, error)

	// CreateToken stores a token; an error wrapping ErrConflict if its id
	// or hash is taken.
	CreateToken(ctx context.Context, t Token) error
	// TokenByHash returns the token with that hash, or ErrNotFound.
	TokenByHash(ctx context.Context, hash string) (Token, error)
	// ListTokens returns the tokens of user (every user's if user is ""),
	// oldest first. Job tokens are not listed.
	ListTokens(ctx context.Context, user string) ([]Token, error)
	// DeleteToken removes a token, or returns ErrNotFound.
	DeleteToken(ctx context.Context, id string) error

	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// CreateOptions are optional limits for CreateJob.
type CreateOptions struct {
	// MaxChildren limits the children of j.ParentID (0: no limit).
	MaxChildren int
}

// JobFilter selects jobs. Zero fields match everything. A page with Owner
// and one of States (one state), Template or LabelKey, or with ParentID or
// SweepID, is read from an index, whatever the number of jobs stored.
type JobFilter struct {
	Owner      string
	States     []job.State
	Template   string
	LabelKey   string // with LabelValue: only jobs labelled so
	LabelValue string
	ParentID   string
	SweepID    string
	Oldest     bool // oldest first
	Limit      int  // at most this many (default 100)
	PageToken  string
}

// Token is a stored token. The secret itself is never stored, only its hash.
type Token struct {
	ID        string
	Hash      string // hex SHA-256 of the secret
	User      string
	Name      string
	Scopes    []string
	JobID     string // set for a job token
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
}
