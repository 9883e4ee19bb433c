package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
)

const (
	// maxVariants is the most variants one sweep may have.
	maxVariants = 10000
	// maxSweepBytes bounds what a sweep's jobs carry together (each its
	// variant's parameters and the shared ones, inputs and labels), so
	// that a body of 1 MiB cannot become 10,000 jobs of 1 MiB.
	maxSweepBytes = 64 << 20
	// maxListedJobs is the most job ids a sweep's answer lists; a larger
	// sweep's are read with GET /v1/jobs?sweep=ID.
	maxListedJobs = 1000
)

// maxSweepResultBytes bounds the results.json read for one answer of GET
// /v1/sweeps/{id}/results, valid or not; rows past it have none (each
// job's is at GET /v1/jobs/{id}/results). A variable for the tests.
var maxSweepResultBytes = 16 << 20

// variant is one of a sweep's variants: its own parameters, and how a
// field error of its job is named in the sweep's request.
type variant struct {
	params map[string]json.RawMessage
	field  func(field string) string
}

// expandVariants reads a sweep's variants: a list of parameter objects,
// or {"mode": "product"|"zip", "parameters": {NAME: [VALUES]}}. fixed are
// the parameters every variant shares (a fault of theirs is named once).
func expandVariants(raw json.RawMessage, fixed map[string]json.RawMessage) ([]variant, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fieldError("variants", "is required: a list of parameter objects, or {\"mode\": \"product\" or \"zip\", \"parameters\": {NAME: [VALUES]}}")
	}
	if raw[0] == '[' {
		var list []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, variantsError(raw, err, "must be a list of parameter objects")
		}
		if err := countOK(len(list)); err != nil {
			return nil, err
		}
		varied := map[string]bool{} // what any variant sets is the variants' to set
		for i, p := range list {
			if p == nil { // null: no variant (its faults were the shared parameters')
				return nil, fieldError("variants["+strconv.Itoa(i)+"]", "must be an object of parameters, not null")
			}
			for name := range p {
				varied[name] = true
			}
		}
		out := make([]variant, len(list))
		for i, p := range list {
			prefix := "variants[" + strconv.Itoa(i) + "]"
			out[i] = variant{params: p, field: func(f string) string {
				if f == "parameters" {
					return prefix // the object as a whole (a property it may not have)
				}
				name, ok := strings.CutPrefix(f, "parameters.")
				top, _, _ := strings.Cut(name, ".")
				// its own value, or one it lacks that others set and the
				// shared parameters do not
				if ok && (p[top] != nil || varied[top] && fixed[top] == nil) {
					return prefix + "." + name
				}
				return f
			}}
		}
		return out, nil
	}
	var spec struct {
		Mode       string                       `json:"mode"`
		Parameters map[string][]json.RawMessage `json:"parameters"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return nil, variantsError(raw, err, "must be a list of parameter objects, or {\"mode\": ..., \"parameters\": {NAME: [VALUES]}}")
	}
	if len(spec.Parameters) == 0 {
		return nil, fieldError("variants.parameters", "names no parameter to vary")
	}
	names := make([]string, 0, len(spec.Parameters))
	for n, vals := range spec.Parameters {
		if len(vals) == 0 {
			return nil, fieldError("variants.parameters."+n, "has no values")
		}
		names = append(names, n)
	}
	sort.Strings(names)
	// idx[k] is the place, in its list, of each parameter's value
	var combos [][]int
	switch spec.Mode {
	case "product", "":
		n := 1
		for _, name := range names {
			n *= len(spec.Parameters[name])
			if err := countOK(n); err != nil {
				return nil, err
			}
		}
		for c := 0; c < n; c++ {
			idx, rest := make([]int, len(names)), c
			for k := len(names) - 1; k >= 0; k-- { // the last name varies fastest
				l := len(spec.Parameters[names[k]])
				idx[k], rest = rest%l, rest/l
			}
			combos = append(combos, idx)
		}
	case "zip":
		n := len(spec.Parameters[names[0]])
		for _, name := range names[1:] {
			if len(spec.Parameters[name]) != n {
				return nil, fieldError("variants.parameters."+name, "has %d values, but %s has %d: zip pairs lists of the same length", len(spec.Parameters[name]), names[0], n)
			}
		}
		if err := countOK(n); err != nil {
			return nil, err
		}
		for c := 0; c < n; c++ {
			idx := make([]int, len(names))
			for k := range idx {
				idx[k] = c
			}
			combos = append(combos, idx)
		}
	default:
		return nil, fieldError("variants.mode", "must be product or zip, not %q", spec.Mode)
	}
	out := make([]variant, len(combos))
	for i, idx := range combos {
		p := map[string]json.RawMessage{}
		at := map[string]int{}
		for k, name := range names {
			p[name], at[name] = spec.Parameters[name][idx[k]], idx[k]
		}
		out[i] = variant{params: p, field: func(f string) string {
			if name, ok := strings.CutPrefix(f, "parameters."); ok {
				top, sub, _ := strings.Cut(name, ".")
				if k, ok := at[top]; ok {
					f = "variants.parameters." + top + "[" + strconv.Itoa(k) + "]"
					if sub != "" {
						f += "." + sub
					}
				}
			}
			return f
		}}
	}
	return out, nil
}

func countOK(n int) error {
	if n < 1 || n > maxVariants {
		return fieldError("variants", "a sweep has from 1 to %d variants, not %d", maxVariants, n)
	}
	return nil
}

// variantsError is a field error for a sweep's variants, raw, that did
// not decode: a value of the wrong kind is named by its path (variants[2],
// variants.parameters.n); anything else gets what, in general terms, and
// why, in words that name no server internals.
func variantsError(raw []byte, err error, what string) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := "variants"
		if p := typeErrorField(raw, te); p != "" {
			if p[0] != '[' {
				field += "."
			}
			field += p
		}
		return fieldError(field, "must be %s, not %s", jsonKind(te.Type), te.Value)
	case errors.As(err, &se):
		return fieldError("variants", "%s: malformed JSON", what)
	}
	return fieldError("variants", "%s: %s", what, strings.TrimPrefix(err.Error(), "json: "))
}

// sweepBytes is about what the jobs of a sweep of req carry together:
// each the shared parameters, name, project, notify URL, inputs and
// labels, and its variant's own parameters.
func sweepBytes(req *api.SweepRequest, variants []variant) int64 {
	shared := len(req.Parameters) + len(req.Name) + len(req.Project)
	if req.Notify != nil {
		shared += len(req.Notify.URL)
	}
	for _, m := range []map[string]string{req.Inputs, req.Labels} {
		for k, v := range m {
			shared += len(k) + len(v)
		}
	}
	n := int64(shared) * int64(len(variants))
	for _, v := range variants {
		for k, x := range v.params {
			n += int64(len(k) + len(x))
		}
	}
	return n
}

// mergeParams is fixed with the variant's parameters over it.
func mergeParams(fixed map[string]json.RawMessage, v map[string]json.RawMessage) json.RawMessage {
	m := make(map[string]json.RawMessage, len(fixed)+len(v))
	for k, x := range fixed {
		m[k] = x
	}
	for k, x := range v {
		m[k] = x
	}
	b, _ := json.Marshal(m)
	return b
}

// createSweep creates one job for each variant of a template: every
// variant is validated first, and every error is reported, with its
// variant's place in the field's name; then all the jobs are created held
// and released together, so that a sweep is created whole or not at all.
func (s *Server) createSweep(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	var req api.SweepRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if req.MaxRunning < 0 {
		return fieldError("max_running", "must not be negative (0: no cap)")
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	var fixed map[string]json.RawMessage
	if len(bytes.TrimSpace(req.Parameters)) > 0 {
		if err := json.Unmarshal(req.Parameters, &fixed); err != nil {
			return fieldError("parameters", "must be an object")
		}
	}
	variants, err := expandVariants(req.Variants, fixed)
	if err != nil {
		return err
	}
	if n := sweepBytes(&req, variants); n > maxSweepBytes {
		return fieldError("variants", "the sweep's %d jobs would carry %.1f MiB of parameters, inputs and labels together; the limit is %d MiB: put large values in an input file the variants share",
			len(variants), float64(n)/(1<<20), maxSweepBytes>>20)
	}
	// From inside a job (its token), the jobs are its children: a driver
	// makes its variants in one call.
	var parent *job.Job
	owner := p.User
	if p.IsJob() {
		if parent, err = s.store.GetJob(r.Context(), p.JobID); err != nil {
			return err
		}
		owner = parent.Owner
	}
	readable, err := inputRule(p, parent, req.Inputs)
	if err != nil {
		return err
	}
	notify, err := s.checkNotify(r.Context(), owner, req.Notify)
	if err != nil {
		return err
	}
	// the shared inputs are looked at once, whatever the number of variants
	stat := s.inputStat(r.Context(), owner, parent, readable, nil)
	type sized struct {
		n   int64
		err error
	}
	sizes := map[string]sized{} // the variants are checked one after the other
	cached := func(path string) (int64, error) {
		c, ok := sizes[path]
		if !ok {
			c.n, c.err = stat(path)
			sizes[path] = c
		}
		return c.n, c.err
	}
	id := newJobID()
	if idem != "" {
		// A retry finds the sweep it repeats by its id, which the key
		// gives, even once the job that carries the key was deleted: the
		// key was free again then, and the retry made a second sweep.
		id = keyedSweepID(owner, idem)
		prior, _, err := s.store.ListJobs(r.Context(), store.JobFilter{Owner: owner, SweepID: id, Limit: 1})
		if err != nil {
			return err
		}
		if len(prior) > 0 {
			return s.sweepAgain(w, r, idem, requestHash(&req), prior[0])
		}
	}
	jobs := make([]*job.Job, 0, len(variants))
	verr := &catalog.ValidationError{}
	seen := map[catalog.FieldError]bool{}
	for i, v := range variants {
		jr := api.JobRequest{Template: req.Template, Version: req.Version, Name: req.Name, Parameters: mergeParams(fixed, v.params),
			Inputs: req.Inputs, Environment: req.Environment, Resources: req.Resources, Labels: req.Labels, Project: req.Project, Hold: req.Hold}
		j, err := s.newJob(p, parent, &jr, cached)
		var ve *catalog.ValidationError
		switch {
		case errors.As(err, &ve):
			for _, f := range ve.Fields {
				f.Field = v.field(f.Field)
				if !seen[f] {
					seen[f] = true
					verr.Fields = append(verr.Fields, f)
				}
			}
			continue
		case err != nil:
			return err
		}
		j.SweepID, j.SweepIndex, j.SweepSize, j.SweepMaxRunning, j.Notify = id, i, len(variants), req.MaxRunning, notify
		if req.Name == "" {
			j.Name = j.Template + "-" + strconv.Itoa(i)
		}
		jobs = append(jobs, j)
	}
	if len(verr.Fields) > 0 {
		return verr
	}
	q := s.quotaOf(owner)
	// The children and jobs quota are told here in the owner's words; with
	// an Idempotency-Key they are left to CreateJobs, which looks the key
	// up first: the sweep a retry repeats holds its own jobs, and the
	// retry was refused over the quota they took.
	if parent != nil && s.opts.MaxChildren > 0 && idem == "" {
		if kids, err := s.countChildren(r.Context(), owner, parent.ID); err != nil {
			return err
		} else if kids+len(jobs) > s.opts.MaxChildren {
			return errorf(http.StatusConflict, api.CodeConflict, "a job may have %d children at most; it has %d, and the sweep would add %d", s.opts.MaxChildren, kids, len(jobs))
		}
	}
	if q.Jobs > 0 && idem == "" {
		if used, err := s.unfinishedJobs(r.Context(), owner); err != nil {
			return err
		} else if used+int64(len(jobs)) > q.Jobs {
			return &store.QuotaError{Name: "jobs", Limit: q.Jobs, Used: used, Want: int64(len(jobs))}
		}
	}
	// The sweep's first job carries its Idempotency-Key: a sweep sent
	// again with it is the sweep it made (each used to make a new one).
	// Each job carries the request's hash, so that a retry is checked
	// against whichever of them is left.
	if idem != "" {
		jobs[0].IdemKey = idem
		for _, j := range jobs {
			j.IdemHash = requestHash(&req)
		}
	}
	// one transaction: the whole sweep or nothing, and the dispatcher
	// sees all its jobs at once (an array, on engines that make them)
	dup, err := s.store.CreateJobs(r.Context(), jobs, &store.CreateOptions{MaxChildren: s.opts.MaxChildren, MaxJobs: q.Jobs, MaxCores: q.Cores})
	switch {
	case errors.Is(err, store.ErrDuplicate):
		return s.sweepAgain(w, r, idem, jobs[0].IdemHash, dup)
	case errors.Is(err, store.ErrLimit):
		return errorf(http.StatusConflict, api.CodeConflict, "a job may have %d children at most", s.opts.MaxChildren)
	case err != nil:
		return err
	}
	created := jobs
	if !req.Hold {
		s.disp.Notify()
	}
	out := api.Sweep{ID: id, Template: created[0].Template, Total: len(created), Counts: map[string]int{}, CreatedAt: created[0].CreatedAt.UTC()}
	state := string(job.Pending)
	if req.Hold {
		state = string(job.Held)
	}
	out.Counts[state] = len(created)
	if len(created) <= maxListedJobs {
		for _, j := range created {
			out.Jobs = append(out.Jobs, j.ID)
		}
	}
	w.Header().Set("Location", "/v1/sweeps/"+id)
	return writeJSON(w, http.StatusCreated, out)
}

// countChildren is how many children job id of owner's has.
func (s *Server) countChildren(ctx context.Context, owner, id string) (int, error) {
	return store.CountJobs(ctx, s.store, store.JobFilter{Owner: owner, ParentID: id})
}

// unfinishedJobs is how many of user's jobs are not finished.
func (s *Server) unfinishedJobs(ctx context.Context, user string) (int64, error) {
	rows, err := s.store.Usage(ctx, user)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, u := range rows {
		n += u.ActiveJobs
	}
	return n, nil
}

// keyedSweepID is the id of owner's sweep made with the Idempotency-Key
// key (as idempotencyKey keeps it): a job id's form, from a digest.
func keyedSweepID(owner, key string) string {
	sum := sha256.Sum256([]byte("sweep\x00" + owner + "\x00" + key))
	return idEncoding.EncodeToString(sum[:10])
}

// sweepAgain answers a sweep request sent again with the Idempotency-Key
// key and a request of hash: the sweep of made, one of its jobs, if that
// came from the same request (200), else 422.
func (s *Server) sweepAgain(w http.ResponseWriter, r *http.Request, key, hash string, made *job.Job) error {
	switch {
	case made.SweepID == "":
		return errorf(http.StatusUnprocessableEntity, api.CodeIdempotencyMismatch,
			"the Idempotency-Key %q was used before for a job (%s), not a sweep: use a new key for a new sweep", shownKey(key), made.ID)
	case made.IdemHash != hash:
		return errorf(http.StatusUnprocessableEntity, api.CodeIdempotencyMismatch,
			"the Idempotency-Key %q was used before with another request (sweep %s): use a new key for a new sweep", shownKey(key), made.SweepID)
	}
	r.SetPathValue("id", made.SweepID)
	sw, err := s.sweepOf(r)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/sweeps/"+sw.ID)
	return writeJSON(w, http.StatusOK, sw)
}

// sweepJobs calls fn with each of the caller's jobs of the sweep in the
// request's path, in pages; no such job is "not found".
func (s *Server) sweepJobs(r *http.Request, fn func(*job.Job) error) error {
	f := store.JobFilter{Owner: principal(r).User, SweepID: r.PathValue("id")}
	if p := principal(r); p.IsJob() {
		// a job sees the sweeps it made, and reads those it waits for
		f.ParentID = p.JobID
		if r.Method == http.MethodGet {
			self, err := s.store.GetJob(r.Context(), p.JobID)
			if err != nil {
				return err
			}
			if waitsFor(self, &job.Job{SweepID: f.SweepID}) {
				f.ParentID = ""
			}
		}
	}
	n := 0
	if err := store.EachJob(r.Context(), s.store, f, func(j *job.Job) error { n++; return fn(j) }); err != nil {
		return err
	}
	if n == 0 {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no such sweep")
	}
	return nil
}

// sweepOf sums up the sweep in the request's path.
func (s *Server) sweepOf(r *http.Request) (*api.Sweep, error) {
	out := &api.Sweep{ID: r.PathValue("id"), Counts: map[string]int{}}
	type entry struct {
		index int
		id    string
	}
	var ids []entry
	size := 0 // as made; 0 for sweeps made before it was kept
	err := s.sweepJobs(r, func(j *job.Job) error {
		if out.Total == 0 || j.CreatedAt.Before(out.CreatedAt) {
			out.CreatedAt = j.CreatedAt.UTC()
		}
		out.Template = j.Template
		out.Total++
		out.Counts[string(j.State)]++
		size = max(size, j.SweepSize)
		if len(ids) <= maxListedJobs {
			ids = append(ids, entry{j.SweepIndex, j.ID})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Deleted = max(size-out.Total, 0)
	if out.Total <= maxListedJobs {
		sort.Slice(ids, func(a, b int) bool { return ids[a].index < ids[b].index })
		for _, e := range ids {
			out.Jobs = append(out.Jobs, e.id)
		}
	}
	return out, nil
}

func (s *Server) getSweep(w http.ResponseWriter, r *http.Request) error {
	out, err := s.sweepOf(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// cancelSweep cancels every job of the sweep that has not finished.
func (s *Server) cancelSweep(w http.ResponseWriter, r *http.Request) error {
	var open []string
	if err := s.sweepJobs(r, func(j *job.Job) error {
		if !j.State.Terminal() {
			open = append(open, j.ID)
		}
		return nil
	}); err != nil {
		return err
	}
	reason := "its sweep was canceled by " + principal(r).User
	if p := principal(r); p.IsJob() {
		reason = "its sweep was canceled by its parent job " + p.JobID
	}
	for _, id := range open {
		j, err := s.disp.Cancel(r.Context(), id, reason)
		var te *job.TransitionError
		switch {
		case errors.As(err, &te): // it ended meanwhile
		case err != nil:
			return err
		default:
			if err := s.cancelDescendants(r.Context(), j); err != nil {
				return err
			}
		}
	}
	out, err := s.sweepOf(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// sweepResults answers one row per variant, in the variants' order: its
// parameters, state, exit code and results.json, as JSON or (Accept:
// text/csv) as CSV with a column for each parameter and for each top-level
// member of the results.
func (s *Server) sweepResults(w http.ResponseWriter, r *http.Request) error {
	var rows []api.SweepResult
	budget := maxSweepResultBytes
	if err := s.sweepJobs(r, func(j *job.Job) error {
		row := api.SweepResult{Index: j.SweepIndex, Job: j.ID, State: string(j.State), ExitCode: j.ExitCode, Parameters: j.Parameters}
		if (j.State == job.Succeeded || j.State == job.Failed) && budget > 0 {
			b, read, err := s.readResults(r.Context(), j.ID)
			if err != nil {
				return err
			}
			row.Results = b
			budget -= read // what was read, shown or not
		}
		rows = append(rows, row)
		return nil
	}); err != nil {
		return err
	}
	sort.Slice(rows, func(a, b int) bool { return rows[a].Index < rows[b].Index })
	if !strings.Contains(r.Header.Get("Accept"), "text/csv") {
		return writeJSON(w, http.StatusOK, rows)
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	return writeResultsCSV(w, rows)
}

// readResults is job id's results.json if it wrote a valid one (up to
// 64 KiB), else nil, and how many bytes it read to find out.
func (s *Server) readResults(ctx context.Context, id string) (json.RawMessage, int, error) {
	rc, _, err := s.bucket.Get(ctx, outputsPrefix(id)+"results.json", 0, -1)
	if errors.Is(err, blob.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10+1))
	if err != nil {
		return nil, len(b), err
	}
	if len(b) > 64<<10 || !json.Valid(b) {
		return nil, len(b), nil
	}
	return b, len(b), nil
}

// writeResultsCSV writes rows as CSV: index, job, state, exit_code, a
// column for each parameter and one for each top-level member of the
// results ("result." before its name); a value that is not a string or a
// number is written as JSON.
func writeResultsCSV(w io.Writer, rows []api.SweepResult) error {
	params, results := map[string]bool{}, map[string]bool{}
	decoded := make([][2]map[string]json.RawMessage, len(rows))
	for i, row := range rows {
		json.Unmarshal(row.Parameters, &decoded[i][0])
		json.Unmarshal(row.Results, &decoded[i][1])
		for k := range decoded[i][0] {
			params[k] = true
		}
		for k := range decoded[i][1] {
			results[k] = true
		}
	}
	pk, rk := sortedKeys(params), sortedKeys(results)
	cw := csv.NewWriter(w)
	head := []string{"index", "job", "state", "exit_code"}
	head = append(head, pk...)
	for _, k := range rk {
		head = append(head, "result."+k)
	}
	cw.Write(head)
	for i, row := range rows {
		rec := []string{strconv.Itoa(row.Index), row.Job, row.State, ""}
		if row.ExitCode != nil {
			rec[3] = strconv.Itoa(*row.ExitCode)
		}
		for _, k := range pk {
			rec = append(rec, csvValue(decoded[i][0][k]))
		}
		for _, k := range rk {
			rec = append(rec, csvValue(decoded[i][1][k]))
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// csvValue is a JSON value as a CSV cell: a string's text, a number or
// boolean as written, anything else as JSON, nothing for no value.
func csvValue(v json.RawMessage) string {
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	var str string
	if json.Unmarshal(v, &str) == nil {
		return str
	}
	return string(v)
}
