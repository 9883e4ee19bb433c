package server

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/account"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/ctlchar"
	"github.com/hpcgate/hpcgate/internal/dispatch"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/store"
)

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newJobID is 16 characters: the time in milliseconds (its low 40 bits,
// which wrap every 35 years), then 40 random bits. Jobs made together
// share their first characters, so that their rows and index entries land
// on the same pages of the store instead of dirtying a page each. An id is
// no secret: another user's job answers 404 whatever its id.
func newJobID() string {
	var b [10]byte
	ms := uint64(time.Now().UnixMilli())
	for i := 4; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	rand.Read(b[5:])
	return idEncoding.EncodeToString(b[:])
}

func userFilesKey(user, p string) string { return "users/" + user + "/files/" + p }
func outputsPrefix(id string) string     { return "jobs/" + id + "/outputs/" }
func jobFilesPrefix(id string) string    { return "jobs/" + id + "/files/" }

// visibleJob loads a job the caller may see. Another user's job, or for a
// job token any job but itself, its children and (to read) the jobs it
// waits for, is "not found".
func (s *Server) visibleJob(ctx context.Context, p *auth.Principal, id string, read bool) (*job.Job, error) {
	j, err := s.store.GetJob(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, api.CodeNotFound, "no such job")
	}
	if err != nil {
		return nil, err
	}
	visible := false
	switch {
	case p.IsJob():
		visible = j.ID == p.JobID || j.ParentID == p.JobID
		if !visible && read && j.Owner == p.User {
			self, err := s.store.GetJob(ctx, p.JobID)
			if err != nil {
				return nil, err
			}
			visible = waitsFor(self, j)
		}
	default:
		visible = j.Owner == p.User || p.IsAdmin()
	}
	if !visible {
		return nil, errorf(http.StatusNotFound, api.CodeNotFound, "no such job")
	}
	return j, nil
}

// waitsFor tells whether self's after list names j, or j's sweep: a job
// may read (never control) what it waits for, so that a reduce job reads
// the sweep it follows.
func waitsFor(self, j *job.Job) bool {
	for _, d := range self.After {
		if (d.Job != "" && d.Job == j.ID) || (d.Sweep != "" && d.Sweep == j.SweepID) {
			return true
		}
	}
	return false
}

func (s *Server) jobFromPath(r *http.Request) (*job.Job, error) {
	return s.visibleJob(r.Context(), principal(r), r.PathValue("id"), r.Method == http.MethodGet || r.Method == http.MethodHead)
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	var req api.JobRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var parent *job.Job
	if p.IsJob() {
		if parent, err = s.store.GetJob(r.Context(), p.JobID); err != nil {
			return err
		}
	}
	readable, err := inputRule(p, parent, req.Inputs)
	if err != nil {
		return err
	}
	owner := p.User
	if parent != nil {
		owner = parent.Owner
	}
	waited := map[string]bool{} // jobs whose outputs may come later
	for _, d := range req.After {
		if d.Job != "" {
			waited[d.Job] = true
		}
	}
	j, err := s.newJob(p, parent, &req, s.inputStat(r.Context(), owner, parent, readable, waited))
	if err != nil {
		return err
	}
	if j.After, err = s.dependencies(r.Context(), owner, parent, req.After); err != nil {
		return err
	}
	if len(j.After) > 0 && j.State == job.Pending {
		j.Reason = waitingReason(j.After)
	}
	if j.Notify, err = s.checkNotify(r.Context(), owner, req.Notify); err != nil {
		return err
	}
	j.IdemKey = idem
	if idem != "" {
		j.IdemHash = requestHash(&req)
	}
	created, err := s.accept(r, j, http.StatusCreated)
	var dup *duplicateError
	if errors.As(err, &dup) {
		return writeJSON(w, http.StatusOK, apiJob(dup.job))
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/jobs/"+created.ID)
	return writeJSON(w, http.StatusCreated, apiJob(created))
}

// idempotencyKey returns the request's Idempotency-Key ("" for none) as
// it is kept: a job token's keys are its job's own (the job's id and a
// line break, which no header value holds, before the key), so that a job
// neither finds its owner's jobs through their keys (it was shown one it
// could not read otherwise) nor takes a key its owner will use.
func idempotencyKey(r *http.Request) (string, error) {
	vs := r.Header.Values("Idempotency-Key")
	switch {
	case len(vs) == 0 || vs[0] == "" && len(vs) == 1:
		return "", nil
	case len(vs) > 1:
		return "", fieldError("Idempotency-Key", "send it once: the request has %d", len(vs))
	case len(vs[0]) > 128:
		return "", fieldError("Idempotency-Key", "at most 128 characters")
	}
	if p := principal(r); p.IsJob() {
		return p.JobID + "\n" + vs[0], nil
	}
	return vs[0], nil
}

// shownKey is an Idempotency-Key kept by idempotencyKey as its client
// sent it.
func shownKey(k string) string {
	if _, key, scoped := strings.Cut(k, "\n"); scoped {
		return key
	}
	return k
}

// duplicateError is accept's answer to an Idempotency-Key used before
// with the same request: job is the job it made.
type duplicateError struct{ job *job.Job }

func (e *duplicateError) Error() string {
	return "job " + e.job.ID + " was made with this Idempotency-Key"
}

// accept stores j, a new job, within its owner's quota and with the
// request's audit entry (for an answer of status) in the same commit, and wakes the dispatcher. A
// repeated Idempotency-Key (j.IdemKey) is a *duplicateError with the job
// it made, or a 422 if that job came from another request (j.IdemHash).
func (s *Server) accept(r *http.Request, j *job.Job, status int) (*job.Job, error) {
	q := s.quotaOf(j.Owner)
	// The audit entry goes in the job's own transaction: one commit.
	entry, undo := auditWith(r, status)
	created, err := s.store.CreateJob(r.Context(), j, &store.CreateOptions{MaxChildren: s.opts.MaxChildren, MaxJobs: q.Jobs, MaxCores: q.Cores, Audit: entry})
	if err != nil {
		undo() // nothing was written: the middleware writes the entry
	}
	if errors.Is(err, store.ErrDuplicate) {
		if created.IdemHash != "" && created.IdemHash != j.IdemHash {
			return nil, errorf(http.StatusUnprocessableEntity, api.CodeIdempotencyMismatch,
				"the Idempotency-Key %q was used before with another request (job %s): use a new key for a new job", shownKey(j.IdemKey), created.ID)
		}
		return nil, &duplicateError{created}
	}
	if errors.Is(err, store.ErrLimit) {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "a job may have %d children at most", s.opts.MaxChildren)
	}
	if err != nil {
		return nil, err
	}
	setJobID(r, created.ID)
	if created.State == job.Pending {
		s.disp.Notify()
	}
	return created, nil
}

// newJob builds the job req asks for: validated against the catalogue (a
// *catalog.ValidationError names every invalid field), for p, or for its
// job parent when p is a job's token, with stat answering for the inputs.
// Nothing is stored.
func (s *Server) newJob(p *auth.Principal, parent *job.Job, req *api.JobRequest, stat catalog.StatFunc) (*job.Job, error) {
	if len(req.Name) > api.MaxJobName {
		return nil, fieldError("name", "at most %d characters", api.MaxJobName)
	}
	if ctlchar.In(req.Name) {
		return nil, fieldError("name", ctlchar.Refusal)
	}
	if req.Template == "" {
		return nil, fieldError("template", "is required")
	}
	j := &job.Job{ID: newJobID(), Owner: p.User, CreatedAt: time.Now().UTC(), State: job.Pending, Reason: "created"}
	for name, p := range req.Inputs {
		if _, _, ok := parseRef(p); strings.HasPrefix(p, refPrefix) && !ok {
			return nil, fieldError("inputs."+name, "%q: another job's data is named job:ID/outputs/PATH or job:ID/files/PATH", p)
		}
	}
	if req.Detached && parent == nil {
		return nil, fieldError("detached", "only a job's child (created with the job's token) can be detached from its parent")
	}
	j.Detached = req.Detached
	if parent != nil {
		if parent.Depth+1 > s.opts.MaxDepth {
			return nil, errorf(http.StatusConflict, api.CodeConflict, "children may be nested %d deep at most; this job is at depth %d", s.opts.MaxDepth, parent.Depth)
		}
		j.ParentID, j.Depth, j.Owner = parent.ID, parent.Depth+1, parent.Owner
	}
	if err := s.resolveAccount(j); err != nil {
		return nil, err
	}
	var res *job.Resources
	if req.Resources != nil {
		res = &job.Resources{Nodes: req.Resources.Nodes, CoresPerNode: req.Resources.CoresPerNode, MemoryMB: req.Resources.MemoryMB, WalltimeS: req.Resources.WalltimeS}
	}
	inst, err := s.catalog.Load().Instantiate(catalog.Request{
		Template: req.Template, Version: req.Version, Parameters: req.Parameters, Inputs: req.Inputs,
		Environment: req.Environment, Resources: res, Labels: req.Labels,
	}, stat)
	if err != nil {
		return nil, err
	}
	j.Name = req.Name
	if j.Name == "" {
		j.Name = inst.Template.Name
	}
	j.Template, j.TemplateVersion = inst.Template.Name, inst.Template.Version
	j.TemplateDoc = inst.Template.Recipe(inst.Environment).Encode()
	j.Environment = inst.Environment.Name
	j.Parameters, j.Inputs, j.InputSizes = inst.Parameters, inst.Inputs, inst.InputSizes
	j.Resources, j.Labels = inst.Resources, req.Labels
	if parent != nil && req.Project == "" {
		j.Project = parent.Project
	} else if j.Project, err = s.project(j.Owner, req.Project, "project"); err != nil {
		return nil, err
	}
	if req.Hold {
		j.State, j.Reason = job.Held, "created held"
	}
	return j, nil
}

// refPrefix starts an input that names another job's data instead of one
// of the owner's files: job:ID/outputs/PATH (an output) or
// job:ID/files/PATH (a file the job stored in its own space), read where
// it is, never copied. No file or output path may begin with it.
const refPrefix = "job:"

// parseRef reads an input path of the form job:ID/outputs/PATH or
// job:ID/files/PATH and returns the job's id and the object's key.
func parseRef(p string) (id, key string, ok bool) {
	rest, found := strings.CutPrefix(p, refPrefix)
	if !found {
		return "", "", false
	}
	id, rest, found = strings.Cut(rest, "/")
	if !found || id == "" || strings.Contains(id, ":") {
		return "", "", false
	}
	kind, path, found := strings.Cut(rest, "/")
	if !found || blob.CheckPath(path) != nil {
		return "", "", false
	}
	switch kind {
	case "outputs":
		return id, outputsPrefix(id) + path, true
	case "files":
		return id, jobFilesPrefix(id) + path, true
	}
	return "", "", false
}

// inputKey is the object an input path of owner's job names: another
// job's data, or one of owner's files.
func inputKey(owner, p string) string {
	if _, key, ok := parseRef(p); ok {
		return key
	}
	return userFilesKey(owner, p)
}

// inputStat answers for the inputs a job of owner names: the size of each
// of owner's files that readable allows, and of each job output the
// caller may read (mayReadJobData): its outputs and the files of its space.
// An output not there yet of a job in waited (the new job's dependencies)
// that has not ended is catalog.ErrLater: it may be there when the job
// starts (the agent's fetch says if it is not).
func (s *Server) inputStat(ctx context.Context, owner string, self *job.Job, readable func(string) bool, waited map[string]bool) catalog.StatFunc {
	return func(path string) (int64, error) {
		if id, _, ok := parseRef(path); ok {
			// A reference a job was given may be named by it (checked
			// when it was given) but must still be the owner's: a file of
			// that name stored before references existed was given
			// unchecked. Anything else: a person's jobs, a job's own and
			// its descendants'.
			by := self
			if self != nil && readable(path) {
				by = nil
			}
			if ok, err := s.mayReadJobData(ctx, owner, by, id); err != nil {
				return 0, err
			} else if !ok {
				// another user's job, or not a descendant: as if none
				return 0, fmt.Errorf("%s: %w", path, catalog.ErrNotFound)
			}
		} else if !readable(path) {
			return 0, fmt.Errorf("%s: %w", path, catalog.ErrNotGiven)
		}
		a, err := s.bucket.Stat(ctx, inputKey(owner, path))
		if errors.Is(err, blob.ErrNotFound) {
			if id, _, ok := parseRef(path); ok && waited[id] {
				dep, err := s.store.GetJob(ctx, id)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return 0, err
				}
				if err == nil && !dep.State.Terminal() {
					return 0, fmt.Errorf("%s: %w", path, catalog.ErrLater)
				}
			}
			return 0, fmt.Errorf("%s: %w", path, catalog.ErrNotFound)
		}
		return a.Size, err
	}
}

// mayReadJobData tells whether a job of owner's may take job id's data
// (outputs, files of its space) as inputs: from a person, any of owner's
// jobs'; from a job (self), its own, its descendants' and those of the
// jobs and sweeps it waits for.
func (s *Server) mayReadJobData(ctx context.Context, owner string, self *job.Job, id string) (bool, error) {
	if self != nil && id == self.ID {
		return true, nil
	}
	for depth := 0; depth <= s.opts.MaxDepth+1; depth++ {
		j, err := s.store.GetJob(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if j.Owner != owner {
			return false, nil
		}
		if self == nil || (depth == 0 && waitsFor(self, j)) {
			return true, nil
		}
		if j.ParentID == self.ID {
			return true, nil
		}
		if j.ParentID == "" {
			return false, nil
		}
		id = j.ParentID
	}
	return false, nil
}

// checkRefOwner answers 404 unless the input path p of a job of owner's
// is one of owner's files or names data of one of owner's jobs: checked
// again when the data is fetched, whatever was accepted before.
func (s *Server) checkRefOwner(ctx context.Context, owner, p string) error {
	id, _, ok := parseRef(p)
	if !ok {
		return nil
	}
	if mine, err := s.mayReadJobData(ctx, owner, nil, id); err != nil {
		return err
	} else if !mine {
		return errorf(http.StatusNotFound, api.CodeNotFound, "the input %q is gone", p)
	}
	return nil
}

// Needed is what a purge of finished jobs must leave because jobs not
// finished need it: the jobs whose outputs or files they take as inputs,
// and the jobs and sweeps they wait for. The purge took them (found by
// the eighth probe: a held job's input and a sweep a job waited for were
// purged, though DELETE refused the first).
func Needed(ctx context.Context, st store.Store) (store.Keep, error) {
	var f store.JobFilter
	for _, s := range job.States {
		if !s.Terminal() {
			f.States = append(f.States, s)
		}
	}
	jobs, sweeps := map[string]bool{}, map[string]bool{}
	err := store.EachJob(ctx, st, f, func(j *job.Job) error {
		for _, p := range j.Inputs {
			if ref, _, ok := parseRef(p); ok {
				jobs[ref] = true
			}
		}
		for _, d := range j.After {
			if d.Job != "" {
				jobs[d.Job] = true
			}
			if d.Sweep != "" {
				sweeps[d.Sweep] = true
			}
		}
		return nil
	})
	return store.Keep{Jobs: slices.Sorted(maps.Keys(jobs)), Sweeps: slices.Sorted(maps.Keys(sweeps))}, err
}

// referencedBy returns an unfinished job of owner's that takes an output
// of job id as an input, or "".
func (s *Server) referencedBy(ctx context.Context, owner, id string) (string, error) {
	f := store.JobFilter{Owner: owner}
	for _, st := range job.States {
		if !st.Terminal() {
			f.States = append(f.States, st)
		}
	}
	var by string
	errFound := errors.New("found")
	err := store.EachJob(ctx, s.store, f, func(j *job.Job) error {
		for _, p := range j.Inputs {
			if ref, _, ok := parseRef(p); ok && ref == id {
				by = j.ID
				return errFound
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return "", err
	}
	return by, nil
}

// inputRule says which of the owner's files the caller may name as
// inputs: naming a file needs the right to read it. A person's token needs
// files:read (asked for only when stored inputs are named: a URL needs no
// right); a job token (whose job is self) may name the files its own job
// was given.
func inputRule(p *auth.Principal, self *job.Job, inputs map[string]string) (func(path string) bool, error) {
	if self == nil {
		stored := false
		for _, v := range inputs {
			stored = stored || !catalog.IsURL(v)
		}
		if stored && !p.Has(api.ScopeFilesRead) {
			return nil, errorf(http.StatusForbidden, api.CodeForbidden, "naming files as inputs needs the scope %s, which this token lacks", api.ScopeFilesRead)
		}
		return func(string) bool { return true }, nil
	}
	given := map[string]bool{}
	for _, path := range self.Inputs {
		given[path] = true
	}
	return func(path string) bool { return given[path] }, nil
}

// requestHash identifies a job request's content, for Idempotency-Key
// reuse: the decoded request, encoded again (map keys sorted), so that
// whitespace and key order do not count.
func requestHash(req any) string {
	b, _ := json.Marshal(req)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	q := r.URL.Query()
	f := store.JobFilter{Owner: p.User, Template: q.Get("template"), ParentID: q.Get("parent"), SweepID: q.Get("sweep"), PageToken: q.Get("page_token"), Limit: 100}
	if owner := q.Get("owner"); owner != "" && owner != p.User {
		if !p.IsAdmin() {
			return errorf(http.StatusForbidden, api.CodeForbidden, "only admins may list other users' jobs (owner=%s)", owner)
		}
		f.Owner = owner
		if owner == "*" {
			f.Owner = ""
		}
	}
	if p.IsJob() {
		f.ParentID = p.JobID
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return fieldError("limit", "must be a whole number from 1 to 1000")
		}
		f.Limit = n
	}
	if v := q.Get("state"); v != "" {
		for _, st := range strings.Split(v, ",") {
			if !job.State(st).Valid() {
				return fieldError("state", "unknown state %q; the states: %s", st, strings.Trim(fmt.Sprint(job.States), "[]"))
			}
			f.States = append(f.States, job.State(st))
		}
	}
	if v := q.Get("label"); v != "" {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fieldError("label", "must be key=value")
		}
		f.LabelKey, f.LabelValue = k, val
	}
	jobs, next, err := s.store.ListJobs(r.Context(), f)
	if err != nil {
		if errors.Is(err, store.ErrBadPageToken) {
			return fieldError("page_token", "malformed")
		}
		return err
	}
	return writeJSON(w, http.StatusOK, jobPage(jobs, next))
}

func jobPage(jobs []*job.Job, next string) api.Page[api.Job] {
	page := api.Page[api.Job]{Items: make([]api.Job, 0, len(jobs)), NextPageToken: next}
	for _, j := range jobs {
		page.Items = append(page.Items, apiJob(j))
	}
	return page
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, apiJob(j))
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	// its outputs stay while a job that takes them as inputs may fetch them
	if by, err := s.referencedBy(r.Context(), j.Owner, j.ID); err != nil {
		return err
	} else if by != "" {
		return errorf(http.StatusConflict, api.CodeConflict, "job %s takes this job's outputs as inputs and has not ended: delete this one after it", by)
	}
	if !j.State.Terminal() {
		if _, err := s.disp.Cancel(r.Context(), j.ID, "canceled: the job was deleted"); err != nil && !errors.Is(err, job.ErrInvalidTransition) {
			return err
		}
	}
	// The row first: of two deletions at once one wins, and only it
	// counts the job's bytes off (the other is 404).
	if err := s.store.DeleteJob(r.Context(), j.ID); err != nil {
		return err
	}
	// then its outputs and the files it stored in its space, counted as
	// they go; what cannot be deleted now, or lands later through an
	// output URL handed out before, the gateway's sweep of leftovers
	// deletes (the store recorded the job with its deletion)
	ctx := context.WithoutCancel(r.Context())
	var objs []blob.Attrs
	err = s.bucket.List(ctx, "jobs/"+j.ID+"/", "", func(a blob.Attrs) error {
		objs = append(objs, a)
		return nil
	})
	var gone store.Stored
	for _, a := range objs {
		if err == nil {
			var size int64
			if size, err = s.deleteObject(ctx, a.Key, nil); err == nil && size >= 0 {
				gone.Bytes -= size
				gone.Files--
			}
		}
	}
	countStored(ctx, s.store, s.log, j.Owner, gone)
	if err != nil {
		s.logFor(r).Error("objects of a deleted job not deleted", "job_id", j.ID, "err", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type controlOp int

const (
	controlCancel controlOp = iota
	controlHold
	controlRelease
	controlSuspend
	controlResume
)

var opNames = map[controlOp]string{controlCancel: "cancel", controlHold: "hold", controlRelease: "release", controlSuspend: "suspend", controlResume: "resume"}

func (s *Server) control(op controlOp) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		j, err := s.jobFromPath(r)
		if err != nil {
			return err
		}
		var out *job.Job
		switch op {
		case controlCancel:
			out, err = s.cancel(r, j)
		case controlHold:
			out, err = s.disp.Hold(r.Context(), j.ID, "held by the user")
		case controlRelease:
			out, err = s.release(r, j)
		case controlSuspend:
			out, err = s.disp.Suspend(r.Context(), j.ID)
		case controlResume:
			out, err = s.disp.Resume(r.Context(), j.ID)
		}
		var other *dispatch.OtherReplicaError
		switch {
		case errors.As(err, &other):
			return wrapf(err, http.StatusConflict, api.CodeUnsupported, "%s", other.Error())
		case errors.Is(err, sched.ErrUnsupported):
			state := j.State // as it is now, not as it was asked (eighth probe)
			if now, err := s.store.GetJob(r.Context(), j.ID); err == nil {
				state = now.State
			}
			return wrapf(err, http.StatusConflict, api.CodeUnsupported, "the job's engine (%s) cannot %s it now: the job is %s", j.Scheduler, opNames[op], state)
		}
		if err != nil {
			return err
		}
		s.logs.Notify(out.ID + "/stdout")
		s.logs.Notify(out.ID + "/stderr")
		return writeJSON(w, http.StatusOK, apiJob(out))
	}
}

// release lets the held job j go on, unless its owner is disabled: an
// admin's release ran it, and its token, its owner's, did not work (found
// by the eighth probe).
func (s *Server) release(r *http.Request, j *job.Job) (*job.Job, error) {
	u, err := s.store.User(r.Context(), j.Owner)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "the user %s is disabled: enable them (hpcgate user enable %s) before releasing their jobs", j.Owner, j.Owner)
	}
	reason := "released by " + principal(r).User
	if p := principal(r); p.IsJob() {
		reason = "released by its parent job " + p.JobID
	}
	return s.disp.Release(r.Context(), j.ID, reason)
}

// cancel cancels j, and its descendants but for detached children, for
// the request's principal.
func (s *Server) cancel(r *http.Request, j *job.Job) (*job.Job, error) {
	reason := "canceled by " + principal(r).User
	if p := principal(r); p.IsJob() {
		reason = "canceled by its parent job " + p.JobID
	}
	out, err := s.disp.Cancel(r.Context(), j.ID, reason)
	if err != nil {
		return nil, err
	}
	return out, s.cancelDescendants(r.Context(), out)
}

// cancelDescendants cancels the unfinished descendants of the canceled job
// top, but for detached children and theirs.
func (s *Server) cancelDescendants(ctx context.Context, top *job.Job) error {
	reason := "its parent job was canceled (" + top.ID + ")"
	queue := []string{top.ID}
	for len(queue) > 0 {
		parent := queue[0]
		queue = queue[1:]
		err := store.EachJob(ctx, s.store, store.JobFilter{Owner: top.Owner, ParentID: parent}, func(k *job.Job) error {
			if k.Detached {
				return nil
			}
			if !k.State.Terminal() {
				var te *job.TransitionError
				if _, err := s.disp.Cancel(ctx, k.ID, reason); err != nil && !errors.As(err, &te) {
					return err // (one that ended meanwhile is fine)
				}
			}
			queue = append(queue, k.ID) // a finished child's children may still run
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	evs, err := s.store.Events(r.Context(), j.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, api.Page[api.Event]{Items: apiEvents(evs)})
}

func (s *Server) jobChildren(w http.ResponseWriter, r *http.Request) error {
	// a job token lists its own children and its children's, not those
	// of a job it only waits for (which it could not read one by one)
	j, err := s.visibleJob(r.Context(), principal(r), r.PathValue("id"), false)
	if err != nil {
		return err
	}
	jobs, next, err := s.store.ListJobs(r.Context(), store.JobFilter{ParentID: j.ID, Limit: 1000, PageToken: r.URL.Query().Get("page_token")})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, jobPage(jobs, next))
}

func (s *Server) jobParameters(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(j.Parameters, '\n'))
	return nil
}

func (s *Server) jobResults(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	rc, _, err := s.bucket.Get(r.Context(), outputsPrefix(j.ID)+"results.json", 0, -1)
	if errors.Is(err, blob.ErrNotFound) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "the job has written no results.json (yet)")
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, s.opts.MaxJSONBytes*16))
	if err != nil {
		return err
	}
	if !json.Valid(b) {
		return errorf(http.StatusConflict, api.CodeConflict, "the job's results.json is not valid JSON; download it as an output")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	return nil
}

func validStream(st string) error {
	if st != "stdout" && st != "stderr" {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no log stream %q: use stdout or stderr", st)
	}
	return nil
}

// getLog answers a job's log from offset; with follow=true it streams
// until the job has ended and every byte has been sent.
func (s *Server) getLog(w http.ResponseWriter, r *http.Request) error {
	stream := r.PathValue("stream")
	if err := validStream(stream); err != nil {
		return err
	}
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var offset int64
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil || offset < 0 {
			return fieldError("offset", "must be a whole number ≥ 0")
		}
	}
	follow := queryTrue(r, "follow")
	ctx := r.Context()
	if follow {
		release, err := s.streams.open(w, principal(r).User)
		if err != nil {
			return err
		}
		defer release()
	}
	if v := q.Get("tail"); v != "" {
		// the last bytes only (a log of hundreds of megabytes in a
		// browser): X-Log-Offset says where they begin
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || q.Has("offset") {
			return fieldError("tail", "must be a whole number ≥ 0, without offset")
		}
		_, size, err := s.store.ReadLog(ctx, j.ID, stream, math.MaxInt64, 0)
		if err != nil {
			return err
		}
		offset = max(0, size-n)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Log-Offset", strconv.FormatInt(offset, 10))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	if follow { // a download of what there is has no deadline, as a file's has none
		rc = streamDeadlines(w, r, s.opts.StreamWait)
	}
	started := false
	key := j.ID + "/" + stream
	ended := j.State.Terminal()
	release := func() {}
	defer func() { release() }()
	checked := time.Now()
	for {
		if follow {
			rc.SetWriteDeadline(time.Now().Add(s.opts.StreamWait)) // a client that does not read is let go
			select {
			case <-s.streamsClosed:
				panic(http.ErrAbortHandler) // as below: a busy log too
			default:
			}
		}
		if follow && time.Since(checked) >= time.Second {
			if !s.stillAuthorized(r) {
				// revoked, signed out or disabled: broken off, not
				// ended, which a client would take for the log's end
				panic(http.ErrAbortHandler)
			}
			checked = time.Now()
		}
		release()
		var wait <-chan struct{}
		release = func() {}
		if follow && !ended {
			wait, release = s.logs.Wait(key)
		}
		data, _, err := s.store.ReadLog(ctx, j.ID, stream, offset, 1<<20)
		if err != nil {
			return err
		}
		if len(data) > 0 {
			if !started {
				w.WriteHeader(http.StatusOK)
				started = true
			}
			if _, err := w.Write(data); err != nil {
				return nil // the client went away
			}
			offset += int64(len(data))
			if follow {
				rc.Flush()
			}
			continue
		}
		if !follow || ended {
			break
		}
		if !started {
			w.WriteHeader(http.StatusOK)
			started = true
			rc.Flush()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.streamsClosed:
			// the gateway stops: broken off, not ended, so that the
			// client resumes at its offset here later or elsewhere
			panic(http.ErrAbortHandler)
		case <-wait:
		case <-time.After(time.Second):
		}
		cur, err := s.store.GetJob(ctx, j.ID)
		if err != nil {
			return nil
		}
		// Agents send their last log bytes before their final state, so once
		// the job has ended one more read gets everything.
		ended = cur.State.Terminal()
	}
	if !started {
		w.WriteHeader(http.StatusOK)
	}
	return nil
}

func (s *Server) listOutputs(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	return s.listPrefix(w, r, outputsPrefix(j.ID), "")
}

func (s *Server) getOutput(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	p := r.PathValue("path")
	if err := checkPath("path", p); err != nil {
		return err
	}
	return s.serveObject(w, r, outputsPrefix(j.ID)+p, p)
}

// outputsArchive streams every output of a job as one tar.gz.
func (s *Server) outputsArchive(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	prefix := outputsPrefix(j.ID)
	var objs []blob.Attrs
	if err := s.bucket.List(r.Context(), prefix, "", func(a blob.Attrs) error { objs = append(objs, a); return nil }); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s-outputs.tar.gz"`, j.ID))
	// The first 64 KiB are held back: an error before they are sent is
	// still a clean refusal; after, the answer is broken off (wrap).
	buf := bufio.NewWriterSize(w, 64<<10)
	gz := gzip.NewWriter(buf)
	tw := tar.NewWriter(gz)
	for _, a := range objs {
		rc, attrs, err := s.bucket.Get(r.Context(), a.Key, 0, -1)
		if errors.Is(err, blob.ErrNotFound) {
			// An output gone since the listing (the job deleted meanwhile)
			// must not make a whole archive without it (found by the
			// eighth probe): a refusal before anything is sent, a broken
			// download after.
			err = wrapf(err, http.StatusConflict, api.CodeConflict, "the job's outputs changed while the archive was made: try again")
		}
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(a.Key, prefix), Mode: 0o644, Size: attrs.Size, ModTime: attrs.Modified, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			rc.Close()
			return err
		}
		_, err = io.Copy(tw, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return buf.Flush()
}

// resolveAccount sets the OS account j runs as from its owner, and refuses
// (403, naming the user) an owner without one.
func (s *Server) resolveAccount(j *job.Job) error {
	if s.opts.Accounts == nil {
		return nil
	}
	a, err := s.opts.Accounts.Resolve(j.Owner)
	var nae *account.NoAccountError
	if errors.As(err, &nae) {
		return errorf(http.StatusForbidden, api.CodeForbidden, "%s; ask the operator to give this user an account", nae.Error())
	}
	if err != nil {
		return err
	}
	if a != nil {
		j.Account = a.Name
	}
	return nil
}
