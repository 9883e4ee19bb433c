package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/tes"
)

// GA4GH TES 1.1 over the native API: a task is a job whose template is
// catalog.TaskTemplate and whose recipe holds the task. Invalid tasks are
// 400 (TES's word), with the same field errors as the native API's 422.

// TESOptions configure the TES API.
type TESOptions struct {
	// Environment runs the tasks that name none (backend parameter
	// environment, or a zone); "": such tasks are refused.
	Environment string
	// Bucket is the name of the user's files in s3://BUCKET/PATH urls,
	// listed by service-info under storage (default hpcgate).
	Bucket string
}

// maxDirFiles bounds the files a task's DIRECTORY inputs may name, all
// together (a variable for the tests); maxDelivered the files its outputs
// may deliver.
var maxDirFiles = 10000

var maxDelivered = 10000

// maxWalltime bounds a task's walltime_s: ten years.
const maxWalltime = 10 * 365 * 24 * 3600

// tesFullPageBytes bounds a FULL page's tasks as JSON (a task shows up to
// 1 MiB of input contents and 128 KiB of logs for each of its executors):
// past it the page ends early, with a next_page_token. The first task of
// a page is always in it. A variable for the tests.
var tesFullPageBytes = 16 << 20

// tesScanJobs bounds the jobs one list request reads when filters the
// store cannot apply (name_prefix, a failed state's kind, a second tag)
// leave few matches: the answer then has fewer tasks than page_size, and
// a next_page_token. It was 20 store pages, up to 40,940 jobs a request.
// A variable for the tests.
var tesScanJobs = 4096

// Task pages: TES's page_size, by default and at most.
const (
	tesPageSize    = 256
	tesMaxPageSize = 2047 // "less than 2048"
)

func (s *Server) tesBucket() string { return cmp.Or(s.opts.TES.Bucket, "hpcgate") }

// tes400 answers an invalid request with 400, as TES asks, where the
// native API says 422.
func tes400(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := h(w, r)
		if err == nil {
			return nil
		}
		if pe := problemFor(err); pe.status == http.StatusUnprocessableEntity {
			c := *pe
			c.status = http.StatusBadRequest
			c.detail = strings.Replace(c.detail, "invalid job request", "invalid task", 1)
			return &c
		}
		return err
	}
}

func (s *Server) tesServiceInfo(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, tes.NewServiceInfo("org.hpcgate.tes", Version, "hpcgate", "https://github.com/hpcgate/hpcgate", s.tesBucket()))
}

func (s *Server) tesCreate(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	var t tes.Task
	if err := s.readJSONLenient(w, r, &t); err != nil {
		return err
	}
	idem, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	if errs := tes.Check(&t, s.tesBucket()); len(errs) > 0 {
		return &httpError{status: http.StatusBadRequest, code: api.CodeValidation, detail: "invalid task: " + errs[0].Field + ": " + errs[0].Message, fields: errs}
	}
	j, err := s.newTaskJob(r.Context(), p.User, &t, p.Has(api.ScopeFilesRead), p.Has(api.ScopeFilesWrite))
	if err != nil {
		return err
	}
	if idem != "" {
		j.IdemKey, j.IdemHash = idem, requestHash(&t)
	}
	created, err := s.accept(r, j, http.StatusOK)
	var dup *duplicateError
	if errors.As(err, &dup) {
		created, err = dup.job, nil
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, tes.CreateTaskResponse{ID: created.ID})
}

// newTaskJob builds the job of task t for owner: its recipe, inputs,
// resources and environment, checked against the catalogue. mayRead and
// mayWrite say whether the caller may name the owner's files as inputs
// and outputs. Nothing is stored.
func (s *Server) newTaskJob(ctx context.Context, owner string, t *tes.Task, mayRead, mayWrite bool) (*job.Job, error) {
	bucket := s.tesBucket()
	rec := &catalog.TaskRecipe{Description: t.Description, Volumes: t.Volumes}
	for _, e := range t.Executors {
		rec.Executors = append(rec.Executors, catalog.TaskExecutor(e))
	}
	inputs := map[string]string{}
	var fields []api.FieldError
	bad := func(field, format string, args ...any) {
		fields = append(fields, api.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	// Naming the user's files or jobs' outputs needs files:read: checked
	// before a DIRECTORY input's files are even listed.
	refs := make([]tes.Ref, len(t.Inputs))
	for i, in := range t.Inputs {
		if in.URL == "" {
			continue
		}
		refs[i], _ = tes.ParseURL(in.URL, bucket, true) // checked
		if refs[i].Kind != "https" && !mayRead {
			return nil, errorf(http.StatusForbidden, api.CodeForbidden, "naming files as inputs needs the scope %s, which this token lacks", api.ScopeFilesRead)
		}
	}
	dirFilesLeft := maxDirFiles
	for i, in := range t.Inputs {
		ti := catalog.TaskInput{Name: in.Name, Description: in.Description, URL: in.URL, Path: in.Path, Type: string(cmpType(in.Type)), Content: in.Content, Streamable: in.Streamable}
		if in.URL != "" {
			ref := refs[i]
			name := "in" + strconv.Itoa(i)
			switch {
			case ti.Type == string(tes.File):
				inputs[name] = ref.Path
				ti.Files = []catalog.TaskFile{{Input: name}}
			case ref.Kind == "https":
				bad(fmt.Sprintf("inputs[%d].type", i), "a DIRECTORY cannot come from an https:// URL")
			case dirFilesLeft < 0:
				// the listings are spent: each DIRECTORY input is a walk
				// of the user's files, and a folder too large is not
				// listed again and again
				bad(fmt.Sprintf("inputs[%d].url", i), "not listed: the task's DIRECTORY inputs already have more than %d files", maxDirFiles)
			default:
				files, err := s.dirFiles(ctx, owner, ref.Path, dirFilesLeft)
				if err != nil {
					return nil, err
				}
				if len(files) == 0 {
					// also another user's job, or one the caller may not read
					bad(fmt.Sprintf("inputs[%d].url", i), "no files below %q", in.URL)
				}
				if len(files) > dirFilesLeft {
					bad(fmt.Sprintf("inputs[%d].url", i), "more than %d files below %q: a task's DIRECTORY inputs may have %d at most", dirFilesLeft, in.URL, maxDirFiles)
				}
				dirFilesLeft -= len(files)
				if dirFilesLeft < 0 {
					files = nil
				}
				for k, rel := range files {
					n := name + "." + strconv.Itoa(k)
					inputs[n] = ref.Path + "/" + rel
					ti.Files = append(ti.Files, catalog.TaskFile{Input: n, Rel: rel})
				}
			}
		}
		rec.Inputs = append(rec.Inputs, ti)
	}
	for _, o := range t.Outputs {
		ref, _ := tes.ParseURL(o.URL, bucket, false) // checked
		rec.Outputs = append(rec.Outputs, catalog.TaskOutput{Name: o.Name, Description: o.Description, URL: o.URL, Path: o.Path,
			PathPrefix: o.PathPrefix, Type: string(cmpType(o.Type)), File: ref.Path})
	}
	if len(t.Outputs) > 0 && !mayWrite {
		return nil, errorf(http.StatusForbidden, api.CodeForbidden, "outputs go to the user's files: this needs the scope %s, which this token lacks", api.ScopeFilesWrite)
	}

	// Resources and backend parameters.
	req := catalog.TaskRequest{Task: rec, Inputs: inputs, DefaultEnvironment: s.opts.TES.Environment, Labels: t.Tags}
	var project string
	hold := false
	if res := t.Resources; res != nil {
		tr := catalog.TaskResources(*res)
		rec.Resources = &tr
		req.Resources.CoresPerNode = res.CPUCores
		req.Resources.MemoryMB = int64(math.Ceil(res.RAMGB * 1024))
		for k, v := range res.BackendParameters {
			f := "resources.backend_parameters." + k
			switch k {
			case "environment":
				req.Environment = v
			case "project":
				project = v
			case "hold":
				if hold = v == "true"; !hold && v != "false" {
					bad(f, "must be true or false")
				}
			case "walltime_s":
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil || n < 1 || n > maxWalltime {
					bad(f, "must be a whole number of seconds, from 1 to %d", maxWalltime)
				}
				req.Resources.WalltimeS = n
			default:
				if res.BackendParametersStrict {
					bad(f, "is not a backend parameter here (there are %v), and backend_parameters_strict is set", tes.BackendParameters)
				}
			}
		}
	}
	if len(fields) > 0 {
		return nil, &httpError{status: http.StatusBadRequest, code: api.CodeValidation, detail: "invalid task: " + fields[0].Field + ": " + fields[0].Message, fields: fields}
	}
	inst, err := s.catalog.Load().InstantiateTask(req, s.inputStat(ctx, owner, nil, func(string) bool { return true }, nil))
	if err != nil {
		return nil, err
	}
	j := &job.Job{ID: newJobID(), Owner: owner, Name: t.Name, CreatedAt: time.Now().UTC(), State: job.Pending, Reason: "created",
		Template: catalog.TaskTemplate, TemplateDoc: inst.Recipe.Encode(), Environment: inst.Environment.Name,
		Inputs: inputs, InputSizes: inst.InputSizes, Resources: inst.Resources, Labels: t.Tags}
	if j.Name == "" {
		j.Name = "task"
	}
	if hold {
		j.State, j.Reason = job.Held, "created held"
	}
	if err := s.resolveAccount(j); err != nil {
		return nil, err
	}
	if j.Project, err = s.project(owner, project, "resources.backend_parameters.project"); err != nil {
		return nil, err
	}
	return j, nil
}

func cmpType(t tes.FileType) tes.FileType {
	if t == "" {
		return tes.File
	}
	return t
}

// dirFiles lists the files below ref (one of owner's file paths, or
// job:ID/outputs/PATH of a job owner may read), as paths relative to it,
// in order: at most limit+1, none for a job owner may not read.
func (s *Server) dirFiles(ctx context.Context, owner, ref string, limit int) ([]string, error) {
	if id, _, ok := parseRef(ref); ok {
		if mine, err := s.mayReadJobData(ctx, owner, nil, id); err != nil || !mine {
			return nil, err
		}
	}
	prefix := inputKey(owner, ref) + "/"
	var out []string
	err := s.bucket.List(ctx, prefix, "", func(a blob.Attrs) error {
		out = append(out, strings.TrimPrefix(a.Key, prefix))
		if len(out) > limit {
			return errTooMany
		}
		return nil
	})
	if errors.Is(err, errTooMany) {
		err = nil
	}
	return out, err
}

var errTooMany = errors.New("too many")

func (s *Server) tesGet(w http.ResponseWriter, r *http.Request) error {
	view, ok := tes.ParseView(r.URL.Query().Get("view"))
	if !ok {
		return fieldError("view", "must be MINIMAL, BASIC or FULL")
	}
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	t, ok, err := s.taskOf(r.Context(), j, view)
	if err != nil {
		return err
	}
	if !ok {
		return errorf(http.StatusNotFound, api.CodeNotFound, "job %s is not a task: its template runs on the host, not in an image", j.ID)
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) tesCancel(w http.ResponseWriter, r *http.Request) error {
	j, err := s.jobFromPath(r)
	if err != nil {
		return err
	}
	if _, ok, err := s.taskOf(r.Context(), j, tes.Minimal); err != nil {
		return err
	} else if !ok {
		return errorf(http.StatusNotFound, api.CodeNotFound, "job %s is not a task: its template runs on the host, not in an image", j.ID)
	}
	if !j.State.Terminal() {
		if _, err := s.cancel(r, j); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) tesList(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	view, ok := tes.ParseView(q.Get("view"))
	if !ok {
		return fieldError("view", "must be MINIMAL, BASIC or FULL")
	}
	size := tesPageSize
	if v := q.Get("page_size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > tesMaxPageSize {
			return fieldError("page_size", "must be a whole number from 1 to %d", tesMaxPageSize)
		}
		size = n
	}
	keys, vals := q["tag_key"], q["tag_value"]
	if len(vals) > len(keys) {
		return fieldError("tag_value", "each tag_value needs its tag_key")
	}
	f := store.JobFilter{Owner: principal(r).User, PageToken: q.Get("page_token")}
	var want tes.State
	if v := q.Get("state"); v != "" {
		want = tes.State(v)
		states, ok := tes.JobStates(want)
		if !ok {
			return fieldError("state", "unknown state %q", v)
		}
		if len(states) == 0 {
			return writeJSON(w, http.StatusOK, tes.ListTasksResponse{Tasks: []tes.Task{}})
		}
		for _, st := range states {
			f.States = append(f.States, job.State(st))
		}
	}
	if len(keys) > 0 && len(vals) > 0 && vals[0] != "" {
		// the store filters one exact tag; the rest below (a key with
		// no value, or an empty one, matches any value)
		f.LabelKey, f.LabelValue = keys[0], vals[0]
	}
	prefix := q.Get("name_prefix")
	match := func(j *job.Job) bool {
		if !strings.HasPrefix(j.Name, prefix) {
			return false
		}
		for i, k := range keys {
			v, has := j.Labels[k]
			if !has || i < len(vals) && vals[i] != "" && v != vals[i] {
				return false
			}
		}
		aj := apiJob(j)
		return want == "" || tes.StateOf(&aj) == want
	}
	out := tes.ListTasksResponse{Tasks: []tes.Task{}}
	budget := tesFullPageBytes
	for scanned := 0; scanned < tesScanJobs; {
		f.Limit = min(size-len(out.Tasks), tesScanJobs-scanned)
		jobs, next, err := s.store.ListJobs(r.Context(), f)
		if errors.Is(err, store.ErrBadPageToken) {
			return fieldError("page_token", "malformed")
		}
		if err != nil {
			return err
		}
		scanned += len(jobs)
		for i, j := range jobs {
			if !match(j) {
				continue
			}
			t, ok, err := s.taskOf(r.Context(), j, view)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if view == tes.Full {
				b, _ := json.Marshal(t)
				if budget -= len(b); budget < 0 && len(out.Tasks) > 0 {
					// the page ends before this task; the next starts at it
					out.NextPageToken = f.PageToken
					if i > 0 {
						f.Limit = i
						if _, out.NextPageToken, err = s.store.ListJobs(r.Context(), f); err != nil {
							return err
						}
					}
					return writeJSON(w, http.StatusOK, out)
				}
			}
			out.Tasks = append(out.Tasks, t)
		}
		f.PageToken, out.NextPageToken = next, next
		if next == "" || len(out.Tasks) == size {
			break
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// maxTaskLog is the most of an executor's stdout or stderr a FULL view
// shows: its end (the whole log is GET /v1/jobs/{id}/logs/{stream}).
const maxTaskLog = 64 << 10

// taskOf is job j as a TES task in view v; false if j cannot be one (a
// template that runs on the host has no image).
func (s *Server) taskOf(ctx context.Context, j *job.Job, v tes.View) (tes.Task, bool, error) {
	aj := apiJob(j)
	t := tes.Task{ID: j.ID, State: tes.StateOf(&aj)}
	rec, err := catalog.DecodeRecipe(j.TemplateDoc)
	if err != nil && len(j.TemplateDoc) > 0 {
		return t, false, err
	}
	if rec == nil || !rec.InContainer() {
		return t, false, nil
	}
	if v == tes.Minimal {
		return t, true, nil
	}
	created := j.CreatedAt.UTC()
	t.Name, t.Tags, t.CreationTime = j.Name, j.Labels, &created
	if tr := rec.Task; tr != nil {
		t.Description, t.Volumes = tr.Description, tr.Volumes
		for _, e := range tr.Executors {
			t.Executors = append(t.Executors, tes.Executor(e))
		}
		for _, in := range tr.Inputs {
			t.Inputs = append(t.Inputs, tes.Input{Name: in.Name, Description: in.Description, URL: in.URL, Path: in.Path,
				Type: tes.FileType(in.Type), Content: in.Content, Streamable: in.Streamable})
		}
		for _, o := range tr.Outputs {
			t.Outputs = append(t.Outputs, tes.Output{Name: o.Name, Description: o.Description, URL: o.URL, Path: o.Path, PathPrefix: o.PathPrefix, Type: tes.FileType(o.Type)})
		}
		if tr.Resources != nil {
			res := tes.Resources(*tr.Resources)
			t.Resources = &res
		}
	} else {
		// A template's job: its image and command, its inputs in its
		// container's working directory.
		wd := cmp.Or(rec.Workdir, catalog.DefaultWorkdir)
		t.Executors = []tes.Executor{{Image: rec.Image, Command: rec.Command, Workdir: wd}}
		for _, in := range rec.Inputs {
			if p, ok := j.Inputs[in.Name]; ok {
				t.Inputs = append(t.Inputs, tes.Input{Name: in.Name, URL: p, Path: path.Join(wd, in.Path), Type: tes.File})
			}
		}
		t.Resources = &tes.Resources{CPUCores: j.Resources.CoresPerNode, RAMGB: float64(j.Resources.MemoryMB) / 1024}
	}
	if j.StartedAt.IsZero() && len(j.Steps) == 0 && !j.State.Terminal() {
		return tes.Shown(t, v), true, nil
	}
	l := tes.TaskLog{Logs: []tes.ExecutorLog{}, Outputs: []tes.OutputFileLog{}, StartTime: rfc3339(j.StartedAt), EndTime: rfc3339(j.FinishedAt),
		Metadata: map[string]string{"hpcgate.environment": j.Environment}}
	if j.BackendID != "" {
		l.Metadata["hpcgate."+j.Scheduler+"_id"] = j.BackendID
	}
	steps, whole := j.Steps, false
	if len(steps) == 0 && rec.Task == nil && !j.StartedAt.IsZero() {
		whole = true
		// a template's job reports no steps: its one executor is the
		// job itself, its logs the job's
		steps = []job.Step{{StartedAt: j.StartedAt, EndedAt: j.FinishedAt, ExitCode: j.ExitCode}}
	}
	for _, st := range steps {
		el := tes.ExecutorLog{StartTime: rfc3339(st.StartedAt), EndTime: rfc3339(st.EndedAt)}
		switch {
		case st.ExitCode != nil:
			el.ExitCode = *st.ExitCode
		case j.State.Terminal():
			// stopped (canceled, its job failed) before it could exit:
			// not 0, which reads as success
			el.ExitCode = -1
		}
		if st.EndedAt.IsZero() && j.State.Terminal() {
			el.EndTime = rfc3339(j.FinishedAt)
		}
		if v == tes.Full {
			running := st.EndedAt.IsZero() || whole // to the stream's end
			if el.Stdout, err = s.logRange(ctx, j.ID, "stdout", st.Stdout, running); err != nil {
				return t, false, err
			}
			if el.Stderr, err = s.logRange(ctx, j.ID, "stderr", st.Stderr, running); err != nil {
				return t, false, err
			}
		}
		l.Logs = append(l.Logs, el)
	}
	if rec.Task != nil {
		delivered, err := s.delivered(ctx, j)
		if err != nil {
			return t, false, err
		}
		for _, d := range delivered {
			l.Outputs = append(l.Outputs, tes.OutputFileLog{URL: "s3://" + s.tesBucket() + "/" + d.File, Path: d.Path, SizeBytes: strconv.FormatInt(d.Size, 10)})
		}
	}
	if j.Error != "" {
		l.SystemLogs = append(l.SystemLogs, j.Error)
	}
	t.Logs = []tes.TaskLog{l}
	return tes.Shown(t, v), true, nil
}

// logRange is the end of bytes [from, to) of a job's stream, at most
// maxTaskLog, as text; for a running executor (open), from to the
// stream's end: its output so far, live.
func (s *Server) logRange(ctx context.Context, id, stream string, r [2]int64, open bool) (string, error) {
	from, to := r[0], r[1]
	if open {
		_, size, err := s.store.ReadLog(ctx, id, stream, 0, 0)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
		to = size
	}
	if to <= from {
		return "", nil
	}
	from = max(from, to-maxTaskLog, 0)
	b, _, err := s.store.ReadLog(ctx, id, stream, from, int(to-from))
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return strings.ToValidUTF8(string(b), "\uFFFD"), err
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// delivered is what task j's outputs delivered, in the order first
// delivered: the records its row still holds (written before they had a
// table of their own) but those of files delivered again since, then the
// store's. A place held for a delivery whose upload is not done
// (pendingSize) is left out.
func (s *Server) delivered(ctx context.Context, j *job.Job) ([]job.Delivered, error) {
	recs, err := s.store.Delivered(ctx, j.ID)
	if err != nil {
		return nil, err
	}
	recs = slices.DeleteFunc(recs, func(d job.Delivered) bool { return d.Size == pendingSize })
	if len(j.Delivered) > 0 {
		again := make(map[string]bool, len(recs))
		for _, d := range recs {
			again[d.File] = true
		}
		recs = append(slices.DeleteFunc(slices.Clone(j.Delivered), func(old job.Delivered) bool { return again[old.File] }), recs...)
	}
	return recs, nil
}

// pendingSize is the size of a delivery's record while its upload runs:
// it holds the file's place (store.AddDelivered), or leaves its record
// of an earlier delivery as it was.
const pendingSize = -1

// agentDeliver stores one file of a task's outputs in the owner's files,
// where the task's outputs send it: the agent names the destination and
// (from) the container path it was at. Each file is a record of its own
// (store.AddDelivered), its place held before the upload so that one past
// the limit is refused before it is stored, and shown once it is done; a
// file delivered again keeps its record until its new upload is done.
func (s *Server) agentDeliver(w http.ResponseWriter, r *http.Request) error {
	j, err := s.agentJob(r)
	if err != nil {
		return err
	}
	dst, from := r.PathValue("path"), r.URL.Query().Get("from")
	if err := checkPath("path", dst); err != nil {
		return err
	}
	rec, err := s.recipe(j)
	if err != nil {
		return err
	}
	if rec.Task == nil || !slices.ContainsFunc(rec.Task.Outputs, func(o catalog.TaskOutput) bool {
		d, ok := o.Spec().Dest(from)
		return ok && d == dst
	}) {
		return errorf(http.StatusForbidden, api.CodeForbidden, "%s is not where an output of this task goes", dst)
	}
	err = s.store.AddDelivered(r.Context(), j.ID, job.Delivered{Path: from, File: dst, Size: pendingSize}, maxDelivered)
	if errors.Is(err, store.ErrLimit) {
		return errorf(http.StatusConflict, api.CodeConflict, "a task's outputs may deliver %d files at most", maxDelivered)
	}
	if err != nil {
		return err
	}
	fi, err := s.putBody(w, r, j.Owner, userFilesKey(j.Owner, dst))
	if err != nil {
		return err
	}
	fi.Path = dst
	if err := s.store.AddDelivered(r.Context(), j.ID, job.Delivered{Path: from, File: dst, Size: fi.Size}, maxDelivered); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, fi)
}

// taskSpec is how the agent runs the task of recipe t: its executors and
// runtime, its inputs' container paths (the agent's spec has the stored
// ones, at root/PATH below the working directory), its volumes and
// outputs.
func taskSpec(t *catalog.Recipe) *api.TaskSpec {
	rec := t.Task
	ts := &api.TaskSpec{Runtime: t.Runtime, Flags: t.RuntimeFlags, ImageStore: t.ImageStore, Volumes: rec.Volumes}
	for _, e := range rec.Executors {
		ts.Executors = append(ts.Executors, api.TaskExecutor(e))
	}
	for _, in := range rec.Inputs {
		ts.Inputs = append(ts.Inputs, api.TaskPath{Path: in.Path, Directory: in.Type == string(tes.Directory)})
		if in.URL == "" {
			ts.Contents = append(ts.Contents, api.TaskContent{Path: in.Path, Content: in.Content})
		}
	}
	for _, o := range rec.Outputs {
		ts.Outputs = append(ts.Outputs, o.Spec())
	}
	return ts
}
