package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/store"
)

// audited says whether the route's requests go to the audit log: every
// route that may change something (all but GET and HEAD), except the
// agent's routes of a job token (state reports, log appends, outputs),
// which a job's events and logs record already and which are the bulk of
// all requests.
func (rt route) audited() bool {
	if rt.noAudit || rt.access == jobOnly || rt.pattern == "/" {
		return false
	}
	method, _, _ := strings.Cut(rt.pattern, " ")
	return method != http.MethodGet && method != http.MethodHead
}

// reqInfo is what the middleware and the handler of one request share.
type reqInfo struct {
	id      string
	log     *slog.Logger // the server's logger with the request id
	jobID   string       // the job acted on, if the handler names one
	target  string       // what the action made, if the handler names it (setTarget)
	route   route
	start   time.Time
	audited bool // the handler wrote the audit entry with its own change
}

func info(r *http.Request) *reqInfo {
	ri, _ := r.Context().Value(reqInfoKey).(*reqInfo)
	return ri
}

// setTarget names what the request made, for its audit entry (a new
// token: its id, user and scopes), in place of its path.
func setTarget(r *http.Request, target string) {
	if ri := info(r); ri != nil {
		ri.target = target
	}
}

// setJobID tells the audit log and the request's log which job the
// request acted on (a created job's id, for one).
func setJobID(r *http.Request, id string) {
	if ri := info(r); ri != nil {
		ri.jobID = id
		ri.log = ri.log.With("job_id", id)
	}
}

// logFor returns the logger of the request: every line carries its
// request id (and its job id, once known).
func (s *Server) logFor(r *http.Request) *slog.Logger {
	if ri := info(r); ri != nil {
		return ri.log
	}
	return s.log
}

// audit writes the request's entry. It runs after the answer was written:
// the entry joins whatever write the store commits next (SQLite's group
// commit), and its failure is logged, not answered.
// anonymousAudit bounds the audit entries of requests refused before a
// principal was known (no token, an unknown or revoked one, over the rate
// limit): every gateway keeps a trace of them, and an anonymous flood of
// POSTs, which no rate limit stops, cannot become a durable write each.
var anonymousAudit = RateLimit{PerSecond: 2, Burst: 50}

// auditAnonymous reports whether a request refused before a principal was
// known is audited: as long as the gateway's bucket for them holds one.
func (s *Server) auditAnonymous(now time.Time) bool {
	ok, _ := s.limits.allow("audit: no principal", anonymousAudit, now)
	return ok
}

func (s *Server) audit(r *http.Request, rt route, start time.Time, status int) {
	e := auditEntry(r, rt, start, status)
	// The client has its answer; the entry is written even if it hung up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	defer cancel()
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.logFor(r).Error("audit entry not written", "action", e.Action, "outcome", e.Outcome, "err", err)
	}
}

// auditWith returns the audit entry a handler writes with its own change,
// as if the request ended with status, and marks the request audited; if
// the change fails, undo makes the middleware write it as usual.
func auditWith(r *http.Request, status int) (e *store.AuditEntry, undo func()) {
	ri := info(r)
	if ri == nil || !ri.route.audited() {
		return nil, func() {}
	}
	entry := auditEntry(r, ri.route, ri.start, status)
	ri.audited = true
	return &entry, func() { ri.audited = false }
}

// auditEntry is the audit entry of a request that ended with status.
func auditEntry(r *http.Request, rt route, start time.Time, status int) store.AuditEntry {
	e := store.AuditEntry{Time: start.UTC(), Action: rt.pattern, Outcome: status, Client: clientAddr(r)}
	if strings.Contains(rt.pattern, "{") {
		// whom or what: the user disabled, the token revoked, the file
		// written (the route alone said none of it)
		e.Target = r.URL.Path
	}
	if ri := info(r); ri != nil {
		e.RequestID, e.JobID = ri.id, ri.jobID
		if ri.target != "" {
			e.Target = ri.target
		}
	}
	// a client's path is up to the header limit (64 KiB), and refused
	// requests are audited too: an entry stays small
	e.Target = clip(e.Target, maxAuditTarget)
	if e.JobID == "" && strings.Contains(rt.pattern, "/jobs/{id}") {
		e.JobID = r.PathValue("id")
	}
	if p := principal(r); p != nil {
		e.User, e.TokenID = p.User, p.TokenID
	}
	return e
}

// maxAuditTarget bounds an audit entry's target, in bytes.
const maxAuditTarget = 512

func clientAddr(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// listAudit answers GET /v1/audit: admins only.
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	if !principal(r).IsAdmin() {
		return errorf(http.StatusForbidden, api.CodeForbidden, "only an admin may read the audit log")
	}
	q := r.URL.Query()
	f := store.AuditFilter{User: q.Get("user"), JobID: q.Get("job"), Action: q.Get("action"), Target: q.Get("target"), PageToken: q.Get("page_token")}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(t.name); v != "" {
			tm, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return fieldError(t.name, "must be a time in RFC 3339 form (2006-01-02T15:04:05Z)")
			}
			*t.dst = tm
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return fieldError("limit", "must be a number from 1 to 1000")
		}
		f.Limit = n
	}
	entries, next, err := s.store.ListAudit(r.Context(), f)
	if errors.Is(err, store.ErrBadPageToken) {
		return fieldError("page_token", "is not a page token of this list")
	}
	if err != nil {
		return err
	}
	out := api.Page[api.AuditEntry]{Items: []api.AuditEntry{}, NextPageToken: next}
	for _, e := range entries {
		out.Items = append(out.Items, api.AuditEntry{Time: e.Time.UTC(), User: e.User, TokenID: e.TokenID, JobID: e.JobID,
			Action: e.Action, Target: e.Target, Outcome: e.Outcome, Client: e.Client, RequestID: e.RequestID})
	}
	return writeJSON(w, http.StatusOK, out)
}
