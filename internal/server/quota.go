package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Quota is one user's limits; 0 is no limit.
type Quota struct {
	Jobs  int64 // unfinished jobs
	Cores int64 // cores of unfinished jobs
	Bytes int64 // files and outputs stored
	Files int64 // how many (each an object: empty ones cost no bytes)
}

// RateLimit is a token bucket: PerSecond requests a second on average, up
// to Burst at once. PerSecond 0 is no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

func (s *Server) quotaOf(user string) Quota {
	if s.opts.Quota == nil {
		return Quota{}
	}
	return s.opts.Quota(user)
}

// quotaMessage says which quota a request would pass, and the use.
func quotaMessage(qe *store.QuotaError) string {
	switch qe.Name {
	case "jobs":
		return fmt.Sprintf("quota jobs exceeded: you have %d unfinished jobs, the limit is %d; wait for some to finish or cancel some", qe.Used, qe.Limit)
	case "cores":
		return fmt.Sprintf("quota cores exceeded: your unfinished jobs hold %d cores of a limit of %d, too many for this job; wait for some to finish or ask for fewer cores", qe.Used, qe.Limit)
	case "bytes":
		return fmt.Sprintf("quota bytes exceeded: you store %d bytes of a limit of %d, too many for this upload; delete files or outputs", qe.Used, qe.Limit)
	case "files":
		return fmt.Sprintf("quota files exceeded: you store %d files and outputs of a limit of %d; delete some, or replace one instead", qe.Used, qe.Limit)
	}
	return fmt.Sprintf("quota %s exceeded: %d of %d used", qe.Name, qe.Used, qe.Limit)
}

// ---- rate limits

type bucket struct {
	tokens float64
	last   time.Time
}

// limiter is a token bucket per key (a user, a job), in memory.
type limiter struct {
	mu      sync.Mutex
	buckets map[string]*bucket
}

// allow takes one request from key's bucket; if it is empty, it returns
// how long until it holds one.
func (l *limiter) allow(key string, rl RateLimit, now time.Time) (bool, time.Duration) {
	if rl.PerSecond <= 0 {
		return true, 0
	}
	burst := float64(max(rl.Burst, 1))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= 100000 {
			// Forget buckets that have refilled: they are as new ones.
			for k, o := range l.buckets {
				if o.tokens+now.Sub(o.last).Seconds()*rl.PerSecond >= burst {
					delete(l.buckets, k)
				}
			}
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rl.PerSecond)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rl.PerSecond * float64(time.Second))
}

// rateLimit answers 429 when p's user, or p's job, has made too many
// requests: a person's tokens share one bucket (tokens are cheap to make,
// so a bucket each would multiply the limit), a job's token has its own.
func (s *Server) rateLimit(w http.ResponseWriter, p *auth.Principal) error {
	rl, key, who := s.opts.RateLimit, "user "+p.User, "your tokens together"
	if p.IsJob() {
		rl, key, who = s.opts.JobRateLimit, "job "+p.JobID, "this job's token"
	}
	ok, wait := s.limits.allow(key, rl, time.Now())
	if ok {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return errorf(http.StatusTooManyRequests, api.CodeRateLimited, "%s made more than %g requests a second (bursts of %d); retry after %d s", who, rl.PerSecond, rl.Burst, max(secs, 1))
}

// ---- stored bytes and files

// holds are the bytes (and the new files) uploads in this process have
// taken of their users' rooms and not stored yet. They live in memory: a
// crash drops them with the uploads they were for, and nothing stays
// counted that is not stored. (Replicas hold apart: uploads through
// several gateways at once may pass a quota by what they send together.)
type holds struct {
	mu sync.Mutex
	n  map[string]store.Stored
}

// add adds d to user's holds (under mu).
func (h *holds) add(user string, d store.Stored) {
	if h.n == nil {
		h.n = map[string]store.Stored{}
	}
	n := h.n[user]
	n.Bytes += d.Bytes
	n.Files += d.Files
	if n.Bytes <= 0 && n.Files <= 0 {
		delete(h.n, user)
		return
	}
	h.n[user] = n
}

// take holds want more bytes of user's room, or (partial) what is left of
// it if less, and returns how many; when nothing can be held, it answers
// the QuotaError. It reads the use under the lock: an upload that stores,
// counts, and then lets go of its hold is seen in one or the other.
func (s *Server) take(ctx context.Context, user string, want, limit int64, partial bool) (int64, error) {
	if want <= 0 {
		return 0, nil // nothing more stored: even a user over the quota may shrink a file
	}
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	st, err := s.stored(ctx, user)
	if err != nil {
		return 0, err
	}
	used, held := st.Bytes, s.holds.n[user].Bytes
	n := min(want, limit-used-held)
	if n < want && (!partial || n <= 0) {
		return 0, &store.QuotaError{Name: "bytes", Limit: limit, Used: used + held}
	}
	s.holds.add(user, store.Stored{Bytes: n})
	return n, nil
}

// letGo gives back what user's uploads held (take's bytes, takeFile's
// files).
func (s *Server) letGo(user string, n store.Stored) {
	if n == (store.Stored{}) {
		return
	}
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	s.holds.add(user, store.Stored{Bytes: -n.Bytes, Files: -n.Files})
}

// takeFile holds room for one more of user's files within limit (> 0),
// or answers the QuotaError.
func (s *Server) takeFile(ctx context.Context, user string, limit int64) error {
	s.holds.mu.Lock()
	defer s.holds.mu.Unlock()
	st, err := s.stored(ctx, user)
	if err != nil {
		return err
	}
	if used := st.Files + s.holds.n[user].Files; used >= limit {
		return &store.QuotaError{Name: "files", Limit: limit, Used: used}
	}
	s.holds.add(user, store.Stored{Files: 1})
	return nil
}

// holdStep is how much an upload of no known size takes of its user's
// room at a time, as it reads.
const holdStep = 64 << 20

// quotaReader reads an upload's body within what it holds, taking more
// (when it may) as it goes past it.
type quotaReader struct {
	r    io.Reader
	room int64                 // what may still be read
	more func() (int64, error) // more room, or the QuotaError
}

func (q *quotaReader) Read(b []byte) (int, error) {
	if q.room <= 0 {
		n, err := q.more()
		if err != nil {
			return 0, err
		}
		q.room += n
	}
	b = b[:min(int64(len(b)), q.room)]
	n, err := q.r.Read(b)
	q.room -= int64(n)
	return n, err
}

// keyLocks let one write of an object's key run at a time in this
// process: an upload counts what it replaces, and a deletion what it
// removes, from the object they saw first, so two at once used to count
// one object twice or not at all (a PUT racing a DELETE of its key left
// its bytes uncounted: a way past the quota).
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	held    chan struct{} // capacity 1: full while held
	waiters int           // guarded by keyLocks.mu, the holder too
}

// writeWait is the longest a write waits for another of its key.
var writeWait = 30 * time.Second

// lock waits until no other write of key runs, and returns the function
// that ends this one's turn; after writeWait (or when ctx ends) it gives
// up: a 409 to retry.
func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{held: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.waiters++
	l.mu.Unlock()
	leave := func() {
		l.mu.Lock()
		if kl.waiters--; kl.waiters == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	t := time.NewTimer(writeWait)
	defer t.Stop()
	select {
	case kl.held <- struct{}{}:
		return sync.OnceFunc(func() { <-kl.held; leave() }), nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	case <-t.C:
		leave()
		return nil, errorf(http.StatusConflict, api.CodeConflict, "another write of this path has run for over %s; retry when it ends", writeWait)
	}
}

// What settle (of holdRoom) is told stands at the key in the end, but an
// object's size.
const (
	keptOld = -1 // the object that was there before, or none: nothing stored
	removed = -2 // nothing: the object that was there is gone too
)

// holdRoom holds, before anything is read, the room an upload of size
// bytes (-1: not known) to key needs in user's bytes quota, and in the
// files quota if there is no object at key yet: what does not fit is
// refused at once, and uploads at once cannot pass the quota together
// (each used to check the same room). An upload of no known size holds
// its room up to 64 MiB at a time as it reads, and is stopped where the
// room ends. Other writes of key in this process wait from here until
// settle, which counts what stands at key in the end (an object's size,
// keptOld or removed) and lets the holds go. Only its first call counts:
// a caller defers settle(keptOld) at once (for every way out that stores
// nothing, a panic too) and settles what it stored.
func (s *Server) holdRoom(ctx context.Context, user, key string, body io.Reader, size int64) (io.Reader, func(stored int64), error) {
	unlock, err := s.writing.lock(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	old, existed, err := s.objectSize(ctx, key)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	q := s.quotaOf(user)
	newFile := !existed && q.Files > 0
	if newFile {
		if err := s.takeFile(ctx, user, q.Files); err != nil {
			unlock()
			return nil, nil, err
		}
	}
	var before store.Stored // what key held
	if existed {
		before = store.Stored{Bytes: old, Files: 1}
	}
	var held int64
	settled := false
	settle := func(stored int64) {
		if settled {
			return
		}
		settled = true
		switch {
		case stored >= 0:
			s.countStored(ctx, user, store.Stored{Bytes: stored - before.Bytes, Files: 1 - before.Files})
		case stored == removed:
			s.countStored(ctx, user, store.Stored{Bytes: -before.Bytes, Files: -before.Files})
		}
		release := store.Stored{Bytes: held}
		if newFile {
			release.Files = 1
		}
		s.letGo(user, release)
		unlock()
	}
	limit := q.Bytes
	switch {
	case limit <= 0:
	case size >= 0: // the body is no longer than it says
		if held, err = s.take(ctx, user, max(size-old, 0), limit, false); err != nil {
			settle(keptOld)
			return nil, nil, err
		}
	default: // the old object's bytes first, then what it holds
		body = &quotaReader{r: body, room: old, more: func() (int64, error) {
			n, err := s.take(ctx, user, holdStep, limit, true)
			held += n
			return n, err
		}}
	}
	return body, settle, nil
}

// objectSize is the size of the object at key, and whether there is one.
func (s *Server) objectSize(ctx context.Context, key string) (int64, bool, error) {
	a, err := s.bucket.Stat(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return 0, false, nil
	}
	return a.Size, err == nil, err
}

// stored is what user stores, from the store's counters.
func (s *Server) stored(ctx context.Context, user string) (store.Stored, error) {
	rows, err := s.store.Usage(ctx, user)
	if err != nil {
		return store.Stored{}, err
	}
	var st store.Stored
	for _, u := range rows {
		st.Bytes += u.Bytes
		st.Files += u.Files
	}
	return st, nil
}

// countStored adds delta to what user stores; a failure is logged, not
// answered: the object is stored (or removed).
func (s *Server) countStored(ctx context.Context, user string, delta store.Stored) {
	if delta == (store.Stored{}) {
		return
	}
	if _, err := s.store.AddStored(context.WithoutCancel(ctx), user, delta, store.Stored{}); err != nil {
		s.log.Error("count stored bytes and files", "user", user, "bytes", delta.Bytes, "files", delta.Files, "err", err)
	}
}

// ---- projects

// project returns the project a job of user is charged to: asked (which
// user must be allowed), else the user's default.
func (s *Server) project(user, asked string) (string, error) {
	allowed := append(slices.Clone(s.opts.Projects[user]), s.opts.Projects["*"]...)
	if asked == "" {
		if len(allowed) > 0 {
			return allowed[0], nil
		}
		return "", nil
	}
	if slices.Contains(allowed, asked) {
		return asked, nil
	}
	if len(allowed) == 0 {
		return "", fieldError("project", "you may charge no project here, and not %q", asked)
	}
	return "", fieldError("project", "you may not charge %q; your projects: %s", asked, strings.Join(allowed, ", "))
}

// ---- GET /v1/me, GET /v1/usage

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	out := api.Me{User: p.User, Scopes: p.Scopes, TokenID: p.TokenID, JobID: p.JobID}
	rows, err := s.store.Usage(r.Context(), p.User)
	if err != nil {
		return err
	}
	var t store.Usage
	for _, u := range rows {
		t.ActiveJobs += u.ActiveJobs
		t.ActiveCores += u.ActiveCores
		t.Bytes += u.Bytes
		t.Files += u.Files
		if u.Jobs > 0 {
			out.Projects = append(out.Projects, api.ProjectUsage{Project: u.Project, Jobs: u.Jobs, ActiveJobs: u.ActiveJobs, CoreSeconds: u.CoreSeconds})
		}
	}
	q := s.quotaOf(p.User)
	out.Quotas = map[string]api.Quota{
		"jobs":  {Limit: q.Jobs, Used: t.ActiveJobs},
		"cores": {Limit: q.Cores, Used: t.ActiveCores},
		"bytes": {Limit: q.Bytes, Used: t.Bytes},
		"files": {Limit: q.Files, Used: t.Files},
	}
	return writeJSON(w, http.StatusOK, out)
}

// usage answers every user's use per project (admins only).
func (s *Server) usage(w http.ResponseWriter, r *http.Request) error {
	if !principal(r).IsAdmin() {
		return errorf(http.StatusForbidden, api.CodeForbidden, "only admins may read every user's usage; see GET /v1/me for yours")
	}
	by := r.URL.Query().Get("by")
	if by != "" && by != "project" && by != "user" {
		return fieldError("by", "must be project or user")
	}
	rows, err := s.store.Usage(r.Context(), r.URL.Query().Get("user"))
	if err != nil {
		return err
	}
	sums := map[string]*api.ProjectUsage{}
	var keys []string
	for _, u := range rows {
		if u.Jobs == 0 {
			continue
		}
		k := u.User + "\x00" + u.Project
		if by == "project" {
			k = u.Project
		} else if by == "user" {
			k = u.User
		}
		e, ok := sums[k]
		if !ok {
			e = &api.ProjectUsage{}
			if by != "user" {
				e.Project = u.Project
			}
			if by != "project" {
				e.User = u.User
			}
			sums[k] = e
			keys = append(keys, k)
		}
		e.Jobs += u.Jobs
		e.ActiveJobs += u.ActiveJobs
		e.CoreSeconds += u.CoreSeconds
	}
	slices.Sort(keys)
	page := api.Page[api.ProjectUsage]{Items: []api.ProjectUsage{}}
	for _, k := range keys {
		page.Items = append(page.Items, *sums[k])
	}
	return writeJSON(w, http.StatusOK, page)
}

// ---- users

func (s *Server) adminOnly(r *http.Request) error {
	if !principal(r).IsAdmin() {
		return errorf(http.StatusForbidden, api.CodeForbidden, "only admins may manage users")
	}
	return nil
}

func apiUser(u store.User) api.UserState {
	out := api.UserState{Name: u.Name, Disabled: u.Disabled}
	if !u.DisabledAt.IsZero() {
		t := u.DisabledAt
		out.DisabledAt = &t
	}
	return out
}

func userName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "/\x00") {
		return "", fieldError("name", "is not a user name")
	}
	return name, nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	if err := s.adminOnly(r); err != nil {
		return err
	}
	name, err := userName(r)
	if err != nil {
		return err
	}
	u, err := s.store.User(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apiUser(u))
}

// disableUser stops every token of the user at once (in this process; other
// replicas within the authenticator's cache time) and holds or cancels the
// user's unfinished jobs. A job that has started cannot be held: with
// "hold" it is canceled, as its job token stops working too.
func (s *Server) disableUser(w http.ResponseWriter, r *http.Request) error {
	if err := s.adminOnly(r); err != nil {
		return err
	}
	name, err := userName(r)
	if err != nil {
		return err
	}
	var req api.DisableRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if req.Jobs == "" {
		req.Jobs = "hold"
	}
	if req.Jobs != "hold" && req.Jobs != "cancel" {
		return fieldError("jobs", "must be hold or cancel, not %q", req.Jobs)
	}
	if name == principal(r).User {
		return fieldError("name", "you may not disable yourself")
	}
	u, err := s.store.SetUserDisabled(r.Context(), name, true, time.Now())
	if err != nil {
		return err
	}
	s.auth.ForgetUser(name)
	out := apiUser(u)
	reason := "canceled: the user " + name + " was disabled by " + principal(r).User
	page := ""
	for {
		jobs, next, err := s.store.ListJobs(r.Context(), store.JobFilter{Owner: name, Limit: 1000, PageToken: page,
			States: []job.State{job.Pending, job.Held, job.Queued, job.Starting, job.Running, job.Suspended, job.Finishing}})
		if err != nil {
			return err
		}
		for _, j := range jobs {
			held := false
			if req.Jobs == "hold" {
				switch j.State {
				case job.Held:
					held = true
				case job.Pending, job.Queued:
					if _, err := s.disp.Hold(r.Context(), j.ID); err == nil {
						held = true
					}
				}
			}
			if held {
				out.Held++
				continue
			}
			if _, err := s.disp.Cancel(r.Context(), j.ID, reason); err != nil && !errors.Is(err, job.ErrInvalidTransition) {
				return err
			}
			out.Canceled++
		}
		if next == "" {
			break
		}
		page = next
	}
	return writeJSON(w, http.StatusOK, out)
}

// enableUser lets the user's tokens work again. Held jobs stay held until
// released.
func (s *Server) enableUser(w http.ResponseWriter, r *http.Request) error {
	if err := s.adminOnly(r); err != nil {
		return err
	}
	name, err := userName(r)
	if err != nil {
		return err
	}
	u, err := s.store.SetUserDisabled(r.Context(), name, false, time.Now())
	if err != nil {
		return err
	}
	s.auth.ForgetUser(name)
	return writeJSON(w, http.StatusOK, apiUser(u))
}
