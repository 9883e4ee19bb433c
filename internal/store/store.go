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
	"fmt"
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
	// ErrQuota: a user's quota would be exceeded; the error is a
	// *QuotaError, which says which.
	ErrQuota = errors.New("quota exceeded")
)

// QuotaError says which quota a change would exceed, and the use before it.
// It is ErrQuota (errors.Is).
type QuotaError struct {
	Name  string // "jobs", "cores" or "bytes"
	Limit int64
	Used  int64
	Want  int64 // what the request would add, when known (0: not said)
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota %s exceeded: %d of %d used", e.Name, e.Used, e.Limit)
}

// Is makes a QuotaError match ErrQuota.
func (e *QuotaError) Is(target error) bool { return target == ErrQuota }

// Fit is how much of want fits within limit over used: all of it, or
// with partial what is left of the room if that is more than nothing;
// else the *QuotaError named name. Nothing (want ≤ 0) always fits, and
// anything does where there is no limit (limit ≤ 0).
func Fit(name string, want, used, limit int64, partial bool) (int64, error) {
	if want <= 0 {
		return 0, nil
	}
	if limit <= 0 {
		return want, nil
	}
	n := min(want, limit-used)
	if n < want && (!partial || n <= 0) {
		return 0, &QuotaError{Name: name, Limit: limit, Used: used, Want: want}
	}
	return n, nil
}

// Leases are kept by a store that several gateway processes share
// (PostgreSQL), so that uploads through any of them take turns of a path
// and hold their users' room together, where one process alone keeps
// them in its memory. They are not durable, and each lapses at its end
// unless taken again before it: a process that dies leaves nothing held
// for longer than a lease. The store's clock tells when, not the
// processes'.
type Leases interface {
	// LeaseKey gives key to holder for ttl unless another holder has it
	// (in a lease that has not lapsed), and answers whether holder has it
	// now; taken again by its holder, it is extended.
	LeaseKey(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
	// ReleaseKey ends holder's lease of key, if it has it.
	ReleaseKey(ctx context.Context, key, holder string) error
	// Hold adds want to the hold id of user's room (a new hold if there
	// is none) and extends it for ttl. Each part of want must Fit its
	// part of limit over what user stores and what all of user's holds
	// that have not lapsed hold together; a bytes part that does not fit
	// whole is, with partial, what is left of the room. What does not fit
	// changes nothing, and the error is a *QuotaError. It returns what it
	// added.
	Hold(ctx context.Context, id, user string, want, limit Stored, partial bool, ttl time.Duration) (Stored, error)
	// Settle adds delta to what user stores (as AddStored does with no
	// limit) and ends the hold id, in one transaction: the room is
	// counted in one or the other, never in both or neither.
	Settle(ctx context.Context, id, user string, delta Stored) error
}

// Store keeps hpcgate's state. Every method is safe for concurrent use.
type Store interface {
	// CreateJob stores j (its State, normally pending or held, becomes its
	// first event). If j.IdemKey is set and the owner already has a job
	// with that key, it returns that job and an error wrapping ErrDuplicate.
	// If j.ParentID is set and opts.MaxChildren > 0 and the parent has that
	// many children already, it returns an error wrapping ErrLimit.
	CreateJob(ctx context.Context, j *job.Job, opts *CreateOptions) (*job.Job, error)

	// CreateJobs stores jobs (a sweep's) in one transaction: all of them
	// or, on an error, none. Only the first may have an IdemKey (the
	// sweep's): if the owner has a job with that key already, nothing is
	// stored, and CreateJobs returns that job and an error wrapping
	// ErrDuplicate. opts' limits hold for them together: MaxChildren for
	// the parent they share, MaxJobs and MaxCores for the owner they
	// share; opts.Audit is not written.
	CreateJobs(ctx context.Context, jobs []*job.Job, opts *CreateOptions) (*job.Job, error)

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
	// job, or an error wrapping ErrNotFound. fn may be called more than
	// once, each time with a fresh copy: it must have no other effect than
	// on the copy and on variables it sets anew each time.
	UpdateJob(ctx context.Context, id string, fn func(*job.Job) error) (*job.Job, error)

	// DeleteJob removes the job with its events, logs and tokens, and
	// records it among the leftovers; an error wrapping ErrNotFound if
	// there is no such job.
	DeleteJob(ctx context.Context, id string) error

	// PurgeFinished removes up to limit jobs in a terminal state that
	// finished before before (but none of a sweep with jobs not finished,
	// and none that keep names), oldest first, with their events, logs and
	// tokens, and returns which (so that the caller removes what they
	// left elsewhere, like their outputs, and counts them off their
	// owner's stored bytes); it records them among the leftovers too.
	PurgeFinished(ctx context.Context, before time.Time, limit int, keep Keep) ([]PurgedJob, error)
	// TakeLeftovers returns up to limit of the jobs DeleteJob and
	// PurgeFinished removed before before, oldest first, and takes them:
	// they are returned again only once as long has passed since, as a
	// sweep's claim that ran out. Removed jobs' objects may outlive them
	// (an output's presigned URL handed out before the job went works
	// until it expires, and a crash may come between the job's row and
	// its objects): a sweep deletes what is left, then drops the job with
	// DropLeftover. Of several sweeps at once (replicas), each job goes
	// to one.
	TakeLeftovers(ctx context.Context, before time.Time, limit int) ([]PurgedJob, error)
	// DropLeftover forgets a removed job whose objects are all gone.
	DropLeftover(ctx context.Context, id string) error

	// Events returns the job's events in the order they happened.
	Events(ctx context.Context, id string) ([]job.Event, error)

	// AddDelivered records a file a GA4GH TES task's outputs delivered: a
	// record of the same File is replaced in place, else a new one comes
	// last, unless the job holds max records already (an error wrapping
	// ErrLimit). A record with a negative Size is pending (its upload
	// runs): it holds a place for a file not recorded yet, and leaves a
	// record there is as it is. A job that is not there: ErrNotFound.
	AddDelivered(ctx context.Context, id string, d job.Delivered, max int) error

	// Delivered returns the job's records of delivered files, in the
	// order first delivered.
	Delivered(ctx context.Context, id string) ([]job.Delivered, error)

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

	// AppendAudit stores an entry at the end of the audit log (its Seq is
	// set by the store). When it returns nil the entry is durable.
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns the entries that match f, newest (highest Seq)
	// first, and a token for the next page ("" on the last page).
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, string, error)
	// PurgeAudit removes up to limit entries older than before, oldest
	// first, and returns how many it removed.
	PurgeAudit(ctx context.Context, before time.Time, limit int) (int, error)

	// Usage returns the usage rows of user (every user's if user is ""),
	// by user, then project: one per project the user's jobs named ("" for
	// none; that row also holds the user's stored bytes and files). CreateJob counts
	// a job (ActiveJobs, ActiveCores, Jobs) in the same transaction; the
	// UpdateJob that ends it or the DeleteJob of an unfinished job takes it
	// out of ActiveJobs and ActiveCores, and an end adds its CoreSeconds
	// (cores × (FinishedAt - StartedAt); see rowstore's wallSeconds).
	// Purging or deleting an ended job leaves Jobs and CoreSeconds as they
	// are: they are history.
	Usage(ctx context.Context, user string) ([]Usage, error)
	// AddStored adds delta (negative for a removal) to the user's stored
	// bytes and files and returns the totals after it. If a part of delta
	// is > 0 and that part of limit > 0 and its total would pass it,
	// nothing changes and the error is a *QuotaError named "bytes" or
	// "files". A total never goes below 0.
	AddStored(ctx context.Context, user string, delta, limit Stored) (Stored, error)

	// User returns the user's record; a user never recorded is enabled:
	// User{Name: name}.
	User(ctx context.Context, name string) (User, error)
	// SetUserDisabled disables or enables the user (at is when) and
	// returns the record stored.
	SetUserDisabled(ctx context.Context, name string, disabled bool, at time.Time) (User, error)

	// Changes returns up to limit of the owner's job state changes after
	// the one numbered after, in order. CreateJob and every UpdateJob that
	// changes a state record one, numbered 1, 2, ... per owner in the
	// order they commit: a reader that resumes after the last number it
	// saw misses nothing.
	Changes(ctx context.Context, owner string, after int64, limit int) ([]Change, error)
	// LastChange returns the number of the owner's last change (0 for
	// none), where a reader that wants only what comes next starts.
	LastChange(ctx context.Context, owner string) (int64, error)
	// PurgeChanges removes up to limit changes older than before, oldest
	// first, and returns how many.
	PurgeChanges(ctx context.Context, before time.Time, limit int) (int, error)
	// PurgeTokens removes up to limit tokens that expired before before,
	// and returns how many (tokens that never expire stay).
	PurgeTokens(ctx context.Context, before time.Time, limit int) (int, error)

	// DueDeliveries returns up to limit webhook deliveries due at now,
	// the longest due first, and at most perOwner of any one owner's
	// (their longest due; 0: no such bound), so that one owner's flood
	// does not hold the others' back. A change of a job whose Notify
	// wants it queues one, in the change's transaction.
	DueDeliveries(ctx context.Context, now time.Time, limit, perOwner int) ([]Delivery, error)
	// ClaimDelivery takes a due delivery for the caller until until (it
	// is then due again, should the caller die): false if another has
	// taken or finished it since it was read.
	ClaimDelivery(ctx context.Context, d Delivery, until time.Time) (bool, error)
	// DeliveryDone removes a delivery: it was delivered, or given up (a
	// note on its job says which, when note is not "").
	DeliveryDone(ctx context.Context, d Delivery, note string) error
	// RetryDelivery counts an attempt of a delivery and makes it due
	// again at next (a note on its job, when note is not "").
	RetryDelivery(ctx context.Context, d Delivery, next time.Time, note string) error
	// PostponeDeliveries makes every delivery to url due before until due
	// at until, attempts unchanged (a receiver that failed: the others
	// wait with it), and returns how many.
	PostponeDeliveries(ctx context.Context, url string, until time.Time) (int, error)

	// SetWebhookSecret stores the key the user's webhook deliveries are
	// signed with, over any before it.
	SetWebhookSecret(ctx context.Context, user, secret string) error

	// Ping checks that the store answers.
	Ping(ctx context.Context) error
	// Close releases the store's resources.
	Close() error
}

// CreateOptions are optional limits for CreateJob.
type CreateOptions struct {
	// MaxChildren limits the children of j.ParentID (0: no limit).
	MaxChildren int
	// MaxJobs limits the owner's unfinished jobs (0: no limit); MaxCores
	// the cores of the owner's unfinished jobs, this one included (0: no
	// limit). Over either, CreateJob stores nothing and returns a
	// *QuotaError named "jobs" or "cores".
	MaxJobs, MaxCores int64
	// Audit, if set, is the audit entry of the request that creates the
	// job: it is written in the same transaction, with the job's id, so
	// that an accepted job costs one commit, not two. Nothing of it is
	// written when CreateJob fails.
	Audit *AuditEntry
}

// Usage is one user's use of the centre, for one project.
type Usage struct {
	User        string
	Project     string
	ActiveJobs  int64   // jobs not yet finished
	ActiveCores int64   // their cores (nodes × cores per node)
	Jobs        int64   // jobs created
	CoreSeconds float64 // of the jobs that ended
	Bytes       int64   // files and job outputs stored (in the project "" row)
	Files       int64   // how many (in the project "" row)
}

// Stored is what a user stores: bytes, and files (a person's files and
// their jobs' outputs, each an object).
type Stored struct {
	Bytes, Files int64
}

// User is what the store records of a user.
type User struct {
	Name       string
	Disabled   bool
	DisabledAt time.Time // when last disabled; zero if never
	// WebhookSecret signs the user's webhook deliveries ("": none made).
	WebhookSecret string
}

// Change is one state change of a job, as its owner's feed has it.
type Change struct {
	Seq     int64 // in the owner's feed, from 1
	Owner   string
	JobID   string
	SweepID string
	Time    time.Time
	State   job.State
	Reason  string
}

// EventID names a change for its receivers: unique, and the same on every
// delivery of it.
func (c Change) EventID() string { return fmt.Sprintf("%d-%s", c.Seq, c.JobID) }

// Delivery is a webhook event waiting to be posted: a change, where to,
// and how often it was tried.
type Delivery struct {
	ID       int64
	Change   Change
	URL      string
	Attempts int
	NextAt   time.Time
}

// JobFilter selects jobs. Zero fields match everything. A page with Owner
// and one of States (one state), Template or LabelKey, or with ParentID,
// SweepID or InEngine, is read from an index, whatever the number of jobs
// stored.
type JobFilter struct {
	Owner      string
	States     []job.State
	Template   string
	LabelKey   string // with LabelValue: only jobs labelled so
	LabelValue string
	ParentID   string
	SweepID    string
	// InEngine: only jobs that an engine has and that have not ended (a
	// BackendID, a state that is not terminal), what the dispatcher polls.
	// Jobs held at creation and ended jobs, however many, are not read.
	InEngine  bool
	Oldest    bool // oldest first
	Limit     int  // at most this many (default 100)
	PageToken string
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
	// SessionKey is set for a web session: the hex SHA-256 of the key its
	// page holds, without which the session's cookie changes nothing.
	SessionKey string
}

// Keep names what a purge must leave, because jobs not finished need it:
// the jobs whose outputs they take as inputs or whose end they wait for,
// and the sweeps they wait for.
type Keep struct {
	Jobs, Sweeps []string
}

// PurgedJob is a job PurgeFinished or DeleteJob removed.
type PurgedJob struct {
	ID, Owner string
}

// String is the job's id.
func (p PurgedJob) String() string { return p.ID }

// EachJob calls fn with every job f selects, page after page (f's Limit
// is the page size; PageToken is where it starts), until fn returns an
// error, which it returns.
func EachJob(ctx context.Context, s Store, f JobFilter, fn func(*job.Job) error) error {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	for {
		jobs, next, err := s.ListJobs(ctx, f)
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if err := fn(j); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		f.PageToken = next
	}
}

// EachSweepJob calls fn with every job of owner's sweep id, page after
// page, and returns how many of its jobs were deleted since it was made
// (its size, kept in each job, less the jobs there).
func EachSweepJob(ctx context.Context, s Store, owner, id string, fn func(*job.Job) error) (deleted int, err error) {
	n, size := 0, 0
	err = EachJob(ctx, s, JobFilter{Owner: owner, SweepID: id}, func(j *job.Job) error {
		n, size = n+1, max(size, j.SweepSize)
		return fn(j)
	})
	return max(size-n, 0), err
}

// CountJobs is how many jobs f selects.
func CountJobs(ctx context.Context, s Store, f JobFilter) (int, error) {
	n := 0
	err := EachJob(ctx, s, f, func(*job.Job) error { n++; return nil })
	return n, err
}
