package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
		if qe.Want > 1 { // a sweep's: its count said (found by the seventh probe)
			return fmt.Sprintf("quota jobs exceeded: you have %d unfinished jobs and this would add %d, the limit is %d; wait for some to finish, cancel some, or send fewer", qe.Used, qe.Want, qe.Limit)
		}
		return fmt.Sprintf("quota jobs exceeded: you have %d unfinished jobs, the limit is %d; wait for some to finish or cancel some", qe.Used, qe.Limit)
	case "cores":
		if qe.Want > 0 {
			return fmt.Sprintf("quota cores exceeded: your unfinished jobs hold %d cores and this would add %d, the limit is %d; wait for some to finish or ask for fewer cores", qe.Used, qe.Want, qe.Limit)
		}
		return fmt.Sprintf("quota cores exceeded: your unfinished jobs hold %d cores of a limit of %d, too many for this job; wait for some to finish or ask for fewer cores", qe.Used, qe.Limit)
	case "bytes":
		// Used counts what uploads in progress hold (eighth probe: "you
		// store 52428800" of a user who stored nothing yet)
		return fmt.Sprintf("quota bytes exceeded: your files, outputs and uploads in progress take %d bytes of a limit of %d, too many for this upload; delete files or outputs, or wait for uploads to end", qe.Used, qe.Limit)
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

// ---- stored bytes and files (uploads' turns and holds: rooms.go)

// objectSize is the size of the object at key, and whether there is one.
func (s *Server) objectSize(ctx context.Context, key string) (int64, bool, error) {
	a, err := s.bucket.Stat(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return 0, false, nil
	}
	return a.Size, err == nil, err
}

// stored is what user stores, from st's counters.
func stored(ctx context.Context, st store.Store, user string) (store.Stored, error) {
	rows, err := st.Usage(ctx, user)
	if err != nil {
		return store.Stored{}, err
	}
	var n store.Stored
	for _, u := range rows {
		n.Bytes += u.Bytes
		n.Files += u.Files
	}
	return n, nil
}

// countStored adds delta to what user stores; a failure is logged, not
// answered: the object is stored (or removed).
func countStored(ctx context.Context, st store.Store, log *slog.Logger, user string, delta store.Stored) {
	if delta == (store.Stored{}) {
		return
	}
	if _, err := st.AddStored(context.WithoutCancel(ctx), user, delta, store.Stored{}); err != nil {
		log.Error("count stored bytes and files", "user", user, "bytes", delta.Bytes, "files", delta.Files, "err", err)
	}
}

// ---- projects

// project returns the project a job of user is charged to: asked (which
// user must be allowed), else the user's default. A refusal names field,
// where the request gave asked.
func (s *Server) project(user, asked, field string) (string, error) {
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
		return "", fieldError(field, "you may charge no project here, and not %q", asked)
	}
	return "", fieldError(field, "you may not charge %q; your projects: %s", asked, strings.Join(allowed, ", "))
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
	u, err := s.knownUser(r.Context(), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apiUser(u))
}

// knownUser returns the record of a user the gateway knows: one who has
// (or had) a token, a job, a stored file, or a record of being disabled.
// Users exist only through their tokens, so a name with none of these is
// no user, most likely a typo: disabling one answered "disabled" for
// nobody at all (found by the sixth probe).
func (s *Server) knownUser(ctx context.Context, name string) (store.User, error) {
	u, err := s.store.User(ctx, name)
	if err != nil || u.Disabled || !u.DisabledAt.IsZero() {
		return u, err
	}
	toks, err := s.store.ListTokens(ctx, name)
	if err != nil {
		return u, err
	}
	rows, err := s.store.Usage(ctx, name)
	if err != nil {
		return u, err
	}
	if len(toks) == 0 && len(rows) == 0 {
		return u, errorf(http.StatusNotFound, api.CodeNotFound, "no user %q: they have no token, no job and no file here", name)
	}
	return u, nil
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
	if _, err := s.knownUser(r.Context(), name); err != nil {
		return err
	}
	// no one could administer the gateway: an admin disabled the last
	// other one, or two disabled each other at once (eighth probe)
	s.tokensMu.Lock()
	left, err := s.adminsLeft(r.Context(), func(t store.Token) bool { return t.User == name })
	if err == nil && !left {
		err = errorf(http.StatusConflict, api.CodeConflict, "%s holds the last admin token of an enabled user: make another admin's token (hpcgate token create --user NAME --scopes admin) before disabling them", name)
	}
	var u store.User
	if err == nil {
		u, err = s.store.SetUserDisabled(r.Context(), name, true, time.Now())
	}
	s.tokensMu.Unlock()
	if err != nil {
		return err
	}
	s.auth.ForgetUser(name)
	out := apiUser(u)
	reason := "canceled: the user " + name + " was disabled by " + principal(r).User
	heldWhy := "held: the user " + name + " was disabled by " + principal(r).User
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
					if _, err := s.disp.Hold(r.Context(), j.ID, heldWhy); err == nil {
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
