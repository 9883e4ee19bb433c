// Package storedriver is what a store backend implements: it reads and
// writes hpcgate's rows, inside transactions, and knows nothing of what a
// change means. The rules (idempotency, children limits, the state machine,
// events, log offsets, paging) are written once, in rowstore, on top of any
// Driver; a backend is a Driver and rowstore.New.
//
// Jobs travel as JobRow, the stored form of a job.Job with explicit,
// versioned JSON names (jobrow.go), so that renaming a Go field never breaks
// stored jobs.
package storedriver

import (
	"context"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Driver reads and writes rows. Every method is safe for concurrent use.
// Errors callers branch on wrap the sentinels of package store.
type Driver interface {
	// Write runs fn in a read-write transaction and commits what it did if
	// it returns nil; if fn returns an error nothing it did is kept and the
	// error is returned. When Write returns nil, what fn wrote is durable:
	// it survives a crash of the process and of the machine. fn may be
	// called more than once (a driver that commits concurrent writes
	// together runs them again when one of them fails); only what its last
	// call wrote is kept, so it must have no effect outside tx but to set
	// its own results.
	Write(ctx context.Context, fn func(ctx context.Context, tx Tx) error) error

	// Job returns the job's row, or an error wrapping store.ErrNotFound.
	Job(ctx context.Context, id string) (*JobRow, error)
	// ListJobs returns up to q.Limit rows that match q, by Seq, descending
	// (ascending with q.Oldest), each with its Seq.
	ListJobs(ctx context.Context, q ListQuery) ([]*JobRow, error)
	// Events returns the job's events in the order they were appended.
	Events(ctx context.Context, id string) ([]job.Event, error)
	// Delivered returns the job's records of delivered files, by number.
	Delivered(ctx context.Context, id string) ([]job.Delivered, error)
	// LogChunks returns the stream's size and its chunks (ordered by
	// offset) that hold any byte in [from, to).
	LogChunks(ctx context.Context, id, stream string, from, to int64) (size int64, chunks []LogChunk, err error)
	// TokenByHash returns the token with that hash, or an error wrapping
	// store.ErrNotFound.
	TokenByHash(ctx context.Context, hash string) (store.Token, error)
	// ListTokens returns the tokens without a job of user (all users' if
	// user is ""), by creation time, then id.
	ListTokens(ctx context.Context, user string) ([]store.Token, error)

	// ListAudit returns up to q.Limit audit entries that match q, by Seq,
	// descending.
	ListAudit(ctx context.Context, q AuditQuery) ([]store.AuditEntry, error)

	// Usage returns the usage rows of user (all users' if user is ""), by
	// user, then project.
	Usage(ctx context.Context, user string) ([]store.Usage, error)
	// User returns the user's row, or an error wrapping store.ErrNotFound.
	User(ctx context.Context, name string) (store.User, error)

	// Changes returns up to limit of the owner's changes whose Seq is
	// above after, by Seq.
	Changes(ctx context.Context, owner string, after int64, limit int) ([]store.Change, error)
	// LastChange returns the Seq of the owner's last change, 0 for none.
	LastChange(ctx context.Context, owner string) (int64, error)
	// DueDeliveries returns up to limit deliveries whose NextAt is not
	// after now, at most perOwner (> 0) of each owner (the first in this
	// order), by NextAt, then ID.
	DueDeliveries(ctx context.Context, now time.Time, limit, perOwner int) ([]store.Delivery, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the driver's resources.
	Close() error
}

// Tx is one transaction of Write. Its methods are not for concurrent use.
type Tx interface {
	// JobForUpdate returns the job's row, or an error wrapping
	// store.ErrNotFound. Other transactions' writes of that job wait until
	// this one ends.
	JobForUpdate(ctx context.Context, id string) (*JobRow, error)
	// JobByIdemKey returns the owner's job created with the idempotency
	// key, as committed (by any transaction) when it is called, or an
	// error wrapping store.ErrNotFound.
	JobByIdemKey(ctx context.Context, owner, key string) (*JobRow, error)
	// CountChildren returns the number of jobs whose parent is id. Other
	// transactions that count the same parent's children wait until this
	// one ends, so that a limit checked with it holds.
	CountChildren(ctx context.Context, id string) (int, error)
	// InsertJob stores a new job. It returns an error wrapping
	// store.ErrDuplicate if the owner has a job with r.IdemKey (committed
	// by any transaction), else one wrapping store.ErrConflict if r.ID is
	// taken.
	InsertJob(ctx context.Context, r *JobRow) error
	// UpdateJob stores r over the job's row. old is the row as
	// JobForUpdate returned it, so that a driver may write only what
	// changed. The owner and id never change.
	UpdateJob(ctx context.Context, old, r *JobRow) error
	// AppendEvent stores the job's next event.
	AppendEvent(ctx context.Context, id string, e job.Event) error
	// DeleteJob removes the job with its events, logs, records of
	// delivered files and job tokens, or returns an error wrapping
	// store.ErrNotFound.
	DeleteJob(ctx context.Context, id string) error
	// FinishedBefore returns the ids of up to limit jobs in a terminal
	// state that finished before t, oldest first, but for the jobs of a
	// sweep that has jobs not finished (a sweep goes whole, so that a job
	// waiting for it never finds some of its jobs gone) and those keep
	// names, themselves or by their sweep.
	FinishedBefore(ctx context.Context, t time.Time, limit int, keep store.Keep) ([]string, error)
	// PutLeftover records a removed job with a time: when it was removed,
	// or last taken by a sweep.
	PutLeftover(ctx context.Context, p store.PurgedJob, at time.Time) error
	// LeftoversForUpdate returns up to limit removed jobs whose time is
	// before before, oldest first. Other transactions' LeftoversForUpdate
	// do not return them until this one ends.
	LeftoversForUpdate(ctx context.Context, before time.Time, limit int) ([]store.PurgedJob, error)
	// DeleteLeftover forgets a removed job (recorded or not).
	DeleteLeftover(ctx context.Context, id string) error
	// LogSize returns the size of the stream: where its last chunk ends.
	// Other transactions' appends to the same stream wait until this one
	// ends.
	LogSize(ctx context.Context, id, stream string) (int64, error)
	// InsertLogChunk stores data at offset off of the stream.
	InsertLogChunk(ctx context.Context, id, stream string, off int64, data []byte) error
	// LastDelivered returns the number of the job's last record of a
	// delivered file (0: none), which is how many it has.
	LastDelivered(ctx context.Context, id string) (int, error)
	// UpdateDelivered sets the path and size of the job's record of
	// d.File, and tells whether there is one.
	UpdateDelivered(ctx context.Context, id string, d job.Delivered) (bool, error)
	// InsertDelivered stores a new record of the job, numbered seq, unless
	// there is one of d.File; it tells whether it stored it.
	InsertDelivered(ctx context.Context, id string, seq int, d job.Delivered) (bool, error)
	// InsertToken stores a token, or returns an error wrapping
	// store.ErrConflict if its id or hash is taken.
	InsertToken(ctx context.Context, t store.Token) error
	// DeleteToken removes a token, or returns an error wrapping
	// store.ErrNotFound.
	DeleteToken(ctx context.Context, id string) error
	// DeleteTokensExpired removes up to limit tokens that expired before
	// before, and returns how many.
	DeleteTokensExpired(ctx context.Context, before time.Time, limit int) (int, error)
	// UsageForUpdate returns the usage rows of user, by project. Other
	// transactions' UsageForUpdate of the same user wait until this one
	// ends, so that a quota checked with it holds.
	UsageForUpdate(ctx context.Context, user string) ([]store.Usage, error)
	// AddUsage adds u's counters to the row of (u.User, u.Project), which
	// it creates if there is none.
	AddUsage(ctx context.Context, u store.Usage) error
	// PutWebhookSecret sets the user's webhook secret, and nothing else
	// of the user's row (made if there is none).
	PutWebhookSecret(ctx context.Context, user, secret string) error
	// User is Driver.User in the transaction: it sees the transaction's
	// own writes, and other transactions' writes of the user wait until
	// this one ends (a row with nothing set may be made for that).
	User(ctx context.Context, name string) (store.User, error)
	// PutUser stores the user's row over any row of that name, but its
	// webhook secret (PutWebhookSecret's; a new row has none).
	PutUser(ctx context.Context, u store.User) error
	// AppendChange stores a change as the owner's next and returns its
	// Seq (the owner's last plus one). Other transactions' AppendChange
	// for the same owner wait until this one ends, so that an owner's
	// changes are numbered in the order they commit.
	AppendChange(ctx context.Context, c store.Change) (int64, error)
	// DeleteChangesBefore removes up to limit changes whose time is before
	// t, oldest first, and returns how many it removed.
	DeleteChangesBefore(ctx context.Context, t time.Time, limit int) (int, error)
	// InsertDelivery queues a delivery; the driver assigns its ID.
	InsertDelivery(ctx context.Context, d store.Delivery) error
	// DeleteDelivery removes a delivery (none with that ID: no error).
	DeleteDelivery(ctx context.Context, id int64) error
	// ClaimDelivery sets the delivery's NextAt to until if it is still
	// was (its NextAt as read), and tells whether it did.
	ClaimDelivery(ctx context.Context, id int64, was, until time.Time) (bool, error)
	// UpdateDelivery sets a delivery's attempts and when it is next due.
	UpdateDelivery(ctx context.Context, id int64, attempts int, next time.Time) error
	// PostponeDeliveries makes every delivery to url due before until
	// due at until, and returns how many.
	PostponeDeliveries(ctx context.Context, url string, until time.Time) (int, error)
	// InsertAudit appends an audit entry; the driver assigns its Seq.
	InsertAudit(ctx context.Context, e store.AuditEntry) error
	// DeleteAuditBefore removes up to limit audit entries whose time is
	// before t, oldest first, and returns how many it removed.
	DeleteAuditBefore(ctx context.Context, t time.Time, limit int) (int, error)
}

// AuditQuery selects audit entries. Zero fields match everything.
type AuditQuery struct {
	User      string
	JobID     string
	Action    string
	Target    string    // contained in the entry's target
	Since     time.Time // time >= Since
	Until     time.Time // time < Until
	Before    int64     // with HasBefore: only entries with a lower Seq
	HasBefore bool
	Limit     int // at most this many; > 0
}

// ListQuery selects job rows. Zero fields match everything.
type ListQuery struct {
	Owner      string
	States     []job.State
	Template   string
	LabelKey   string // with LabelValue
	LabelValue string
	ParentID   string
	SweepID    string
	InEngine   bool  // only rows whose InEngine is true
	Oldest     bool  // ascending Seq
	After      int64 // with HasAfter: only rows after this Seq in the list's order
	HasAfter   bool
	Limit      int // at most this many; > 0
}

// LogChunk is a piece of a log stream stored at Offset.
type LogChunk struct {
	Offset int64
	Data   []byte
}
