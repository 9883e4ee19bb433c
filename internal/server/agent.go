package server

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"regexp"
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

// The routes in this file are for the agent, with its job's own token.

// agentJob loads the job of the path, which must be the token's own.
func (s *Server) agentJob(r *http.Request) (*job.Job, error) {
	p := principal(r)
	if r.PathValue("id") != p.JobID {
		return nil, errorf(http.StatusNotFound, api.CodeNotFound, "no such job")
	}
	return s.store.GetJob(r.Context(), p.JobID)
}

var envNameRE = regexp.MustCompile(`[^A-Z0-9_]`)

// ParamEnv returns the HPCGATE_PARAM_<NAME> variables for a parameters
// object: strings as they are, everything else as JSON text.
func ParamEnv(params json.RawMessage) map[string]string {
	out := map[string]string{}
	var obj map[string]json.RawMessage
	if json.Unmarshal(params, &obj) != nil {
		return out
	}
	for k, raw := range obj {
		name := "HPCGATE_PARAM_" + envNameRE.ReplaceAllString(strings.ToUpper(k), "_")
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[name] = s
		} else {
			var buf bytes.Buffer
			json.Compact(&buf, raw)
			out[name] = buf.String()
		}
	}
	return out
}

func (s *Server) agentSpec(w http.ResponseWriter, r *http.Request) error {
	j, err := s.agentJob(r)
	if err != nil {
		return err
	}
	t, err := s.recipe(j)
	if err != nil {
		return err
	}
	spec := api.Spec{
		JobID:      j.ID,
		Image:      t.Image,
		Container:  containerSpec(t),
		Command:    t.Command,
		Env:        ParamEnv(j.Parameters),
		Parameters: j.Parameters,
		Inputs:     []api.SpecInput{},
		Outputs:    t.Outputs,
		Adapters:   api.Adapters{Verify: t.Verify, Prepare: t.Prepare, Collect: t.Collect},
		Resources:  api.Resources{Nodes: j.Resources.Nodes, CoresPerNode: j.Resources.CoresPerNode, MemoryMB: j.Resources.MemoryMB, WalltimeS: j.Resources.WalltimeS},
		LogOffsets: map[string]int64{},
	}
	// children submitted from the job can go where it runs
	spec.Env["HPCGATE_ENVIRONMENT"] = j.Environment
	sg, direct := s.bucket.(blob.Signer)
	spec.DirectOutputs = direct
	declared := t.Inputs
	if t.Task != nil {
		declared = t.Task.StoredInputs()
	}
	for _, in := range declared {
		p, given := j.Inputs[in.Name]
		if !given {
			continue
		}
		si := api.SpecInput{Name: in.Name, Path: in.Path, Size: j.InputSizes[in.Name], Unpack: in.Unpack, MaxUnpacked: in.MaxUnpacked}
		if catalog.IsURL(p) {
			u, err := catalog.ParseURLInput(p)
			if err != nil {
				return err // checked at submission
			}
			si.URL, si.SHA256, si.Remote = u.URL, u.SHA256, true
			si.MaxSize = cmp.Or(in.MaxSize, s.opts.MaxUploadBytes)
			spec.Inputs = append(spec.Inputs, si)
			continue
		}
		// Checked again now: the job whose output it names may be gone,
		// and an output of a job this one waited for had no size at
		// submission (it is looked at now). One that is not right goes
		// without a URL: the agent's fetch through the gateway fails
		// saying why.
		_, known := j.InputSizes[in.Name]
		if known {
			err = s.checkRefOwner(r.Context(), j.Owner, p)
		} else {
			var a blob.Attrs
			if a, err = s.storedInput(r.Context(), j, in.Name, p, in.MaxSize); err == nil {
				si.Size, known = a.Size, true
			}
		}
		if errors.As(err, new(*httpError)) {
			known = false
		} else if err != nil {
			return err
		}
		if direct && known {
			// Long enough for a job that waits for a node to fetch it; the
			// agent falls back to the gateway if it has expired. (An input
			// that was to come from a job this one waited for goes
			// through the gateway, which checks it now.)
			if si.URL, err = sg.SignGet(r.Context(), inputKey(j.Owner, p), 12*time.Hour); err != nil {
				return err
			}
		}
		spec.Inputs = append(spec.Inputs, si)
	}
	if t.Task != nil {
		// a task's outputs go to its owner's files, through the gateway
		spec.Task, spec.DirectOutputs = taskSpec(t), false
	}
	for _, st := range []string{"stdout", "stderr"} {
		_, size, err := s.store.ReadLog(r.Context(), j.ID, st, 0, 0)
		if err != nil {
			return err
		}
		spec.LogOffsets[st] = size
	}
	return writeJSON(w, http.StatusOK, spec)
}

// containerSpec is how the agent runs a recipe's image, or nil.
func containerSpec(t *catalog.Recipe) *api.ContainerSpec {
	if t.Image == "" {
		return nil
	}
	workdir := t.Workdir
	if workdir == "" {
		workdir = catalog.DefaultWorkdir
	}
	return &api.ContainerSpec{Runtime: t.Runtime, Flags: t.RuntimeFlags, Workdir: workdir, Network: t.Network, ImageStore: t.ImageStore, Gateway: t.Gateway, Archive: t.ImageArchive}
}

// recipe returns what j runs: the template it was accepted with. Jobs
// accepted before jobs kept their template look it up in the catalogue.
func (s *Server) recipe(j *job.Job) (*catalog.Recipe, error) {
	if len(j.TemplateDoc) > 0 {
		return catalog.DecodeRecipe(j.TemplateDoc)
	}
	t, err := s.catalog.Load().Template(j.Template, j.TemplateVersion)
	if err != nil {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "template %s version %d is no longer offered", j.Template, j.TemplateVersion)
	}
	env, _ := s.catalog.Load().Environment(j.Environment)
	return t.Recipe(env), nil
}

func (s *Server) agentInput(w http.ResponseWriter, r *http.Request) error {
	j, err := s.agentJob(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	p, ok := j.Inputs[name]
	if !ok || catalog.IsURL(p) {
		return errorf(http.StatusNotFound, api.CodeNotFound, "the job has no stored input %q", name)
	}
	t, err := s.recipe(j)
	if err != nil {
		return err
	}
	var maxSize int64
	for _, in := range t.Inputs {
		if in.Name == name {
			maxSize = in.MaxSize
		}
	}
	if _, err := s.storedInput(r.Context(), j, name, p, maxSize); err != nil {
		return err
	}
	return s.serveObject(w, r, inputKey(j.Owner, p), name)
}

// storedInput checks job j's stored input name (path p) as its job starts:
// an input checked at submission, or an output of a job it waited for,
// whose size is known only now. A refusal is a 409 that says why (never
// a 404, which tells an agent its job is gone).
func (s *Server) storedInput(ctx context.Context, j *job.Job, name, p string, maxSize int64) (blob.Attrs, error) {
	if err := s.checkRefOwner(ctx, j.Owner, p); err != nil {
		if errors.As(err, new(*httpError)) {
			return blob.Attrs{}, errorf(http.StatusConflict, api.CodeConflict, "the input %s, %s, is gone: its job was deleted", name, p)
		}
		return blob.Attrs{}, err
	}
	a, err := s.bucket.Stat(ctx, inputKey(j.Owner, p))
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return a, errorf(http.StatusConflict, api.CodeConflict, "the input %s, %s, does not exist: deleted, or never made by the job it was to come from", name, p)
	case err != nil:
		return a, err
	case maxSize > 0 && a.Size > maxSize:
		return a, errorf(http.StatusConflict, api.CodeConflict, "the input %s, %s, is %d bytes, more than the template's limit of %d", name, p, a.Size, maxSize)
	}
	return a, nil
}

// maxUsage bounds each figure of a job's reported usage (seconds, or
// bytes): a thousand years of a million cores. The report is the job's
// own word, shown as it is; accounting counts the gateway's clock.
const maxUsage = 1e3 * 365 * 24 * 3600 * 1e6

func (s *Server) agentState(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.agentJob(r); err != nil {
		return err
	}
	var rep api.StateReport
	if err := s.readJSON(w, r, &rep); err != nil {
		return err
	}
	if rep.Step != nil {
		if rep.Step.Index < 0 || rep.Step.Index >= tes.MaxExecutors {
			return fieldError("step.index", "must be from 0 to %d", tes.MaxExecutors-1)
		}
		// [from, to] with 0 <= from <= to; a step still running may leave
		// its end open: [from, 0]
		for _, f := range []struct {
			name string
			span [2]int64
		}{{"step.stdout", rep.Step.Stdout}, {"step.stderr", rep.Step.Stderr}} {
			open := rep.Step.EndedAt == nil && f.span[1] == 0
			if f.span[0] < 0 || f.span[1] < f.span[0] && !open {
				return fieldError(f.name, "must be [from, to] with 0 <= from <= to (a running step's to may be 0), not %v", f.span)
			}
		}
	}
	if u := rep.Usage; u != nil {
		for _, f := range []struct {
			name string
			v    float64
		}{{"usage.cpu_seconds", u.CPUSeconds}, {"usage.wall_seconds", u.WallSeconds}, {"usage.max_rss_bytes", float64(u.MaxRSSBytes)}} {
			if !(f.v >= 0 && f.v <= maxUsage) { // NaN too
				return fieldError(f.name, "must be from 0 to %g", maxUsage)
			}
		}
	}
	to := job.State(rep.State)
	switch to {
	case job.Starting, job.Running, job.Finishing, job.Succeeded, job.Failed:
	default:
		return fieldError("state", "an agent may report starting, running, finishing, succeeded or failed, not %q", rep.State)
	}
	if s.opts.Metrics != nil {
		s.opts.Metrics.AgentState(string(to))
	}
	j, err := s.store.UpdateJob(r.Context(), principal(r).JobID, func(j *job.Job) error {
		if j.State.Terminal() { // since the token was checked
			return errorf(http.StatusConflict, api.CodeInvalidState, "the job has ended: its state, exit code and usage are final")
		}
		if rep.ExitCode != nil {
			j.ExitCode = rep.ExitCode
		}
		if rep.Usage != nil {
			j.Usage = &job.Usage{CPUSeconds: rep.Usage.CPUSeconds, MaxRSSBytes: rep.Usage.MaxRSSBytes, WallSeconds: rep.Usage.WallSeconds}
		}
		if rep.Error != "" {
			j.Error = rep.Error
		}
		if rep.Step != nil {
			j.SetStep(jobStep(rep.Step))
		}
		// A job that moved on (the reconciler saw the engine first) keeps
		// its state; a report of where it already is changes nothing.
		return j.SetState(to, rep.Reason, time.Now())
	})
	if err != nil {
		return err
	}
	if j.State.Terminal() {
		s.logs.Notify(j.ID + "/stdout")
		s.logs.Notify(j.ID + "/stderr")
		s.disp.Notify() // jobs may wait for this one
	}
	return writeJSON(w, http.StatusOK, apiJob(j))
}

func (s *Server) agentLog(w http.ResponseWriter, r *http.Request) error {
	stream := r.PathValue("stream")
	if err := validStream(stream); err != nil {
		return err
	}
	j, err := s.agentJob(r)
	if err != nil {
		return err
	}
	offset, err := strconv.ParseInt(r.URL.Query().Get("offset"), 10, 64)
	if err != nil || offset < 0 {
		return fieldError("offset", "is required: the byte offset of this chunk in the stream")
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxLogChunk))
	if err != nil {
		return err
	}
	// A stream keeps up to its limit, then a line that says so, then
	// nothing: a job that prints without end does not fill the store.
	limit, full := s.opts.MaxLogBytes, false
	if offset+int64(len(data)) > limit {
		_, stored, err := s.store.ReadLog(r.Context(), j.ID, stream, 0, 0)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("log %s of job %s: %w", stream, j.ID, err)
		}
		if stored > limit { // its end is written
			return writeJSON(w, http.StatusOK, api.LogAppend{Size: stored, Full: true})
		}
		if offset <= stored {
			data = append(data[:limit-offset:limit-offset], fmt.Sprintf("\n[hpcgate: %s reached the limit of %d bytes a job's stream may keep; the rest was not kept]\n", stream, limit)...)
			full = true
		}
	}
	size, err := s.store.AppendLog(r.Context(), j.ID, stream, offset, data)
	if errors.Is(err, store.ErrConflict) {
		return wrapf(err, http.StatusConflict, api.CodeConflict, "offset %d is beyond the end of the stored %s: send from the stored size", offset, stream)
	}
	if err != nil {
		return fmt.Errorf("log %s of job %s: %w", stream, j.ID, err)
	}
	s.logs.Notify(j.ID + "/" + stream)
	if s.opts.Metrics != nil {
		s.opts.Metrics.AgentLog(int64(len(data)))
	}
	return writeJSON(w, http.StatusOK, api.LogAppend{Size: size, Full: full})
}

// checkOutput refuses an output path p of job j that its template does
// not declare (the agent uploads only what matches its outputs), or one
// that begins job: (which names another job's data): a job's own code
// holds its token and could upload any name.
func (s *Server) checkOutput(j *job.Job, p string) error {
	if err := checkNewPath("path", p); err != nil {
		return err
	}
	t, err := s.recipe(j)
	if err != nil {
		return err
	}
	for _, pat := range t.Outputs {
		if ok, _ := path.Match(pat, p); ok {
			return nil
		}
	}
	if len(t.Outputs) == 0 {
		return fieldError("path", "the template of this job declares no outputs")
	}
	return fieldError("path", "%q matches none of the template's outputs (%s)", p, strings.Join(t.Outputs, ", "))
}

func (s *Server) agentOutput(w http.ResponseWriter, r *http.Request) error {
	j, err := s.agentJob(r)
	if err != nil {
		return err
	}
	p := r.PathValue("path")
	if err := s.checkOutput(j, p); err != nil {
		return err
	}
	key := outputsPrefix(j.ID) + p
	fi, err := s.putBody(w, r, j.Owner, key)
	if err != nil {
		return err
	}
	// A job canceled while this output was sent uploads nothing after
	// its cancel: the upload had begun before it, and landed after the
	// cancel's answer (found by the eighth probe).
	if now, err := s.store.GetJob(r.Context(), j.ID); err == nil && now.State == job.Canceled {
		if size, err := s.deleteObject(r.Context(), key, nil); err == nil && size >= 0 {
			countStored(r.Context(), s.store, s.logFor(r), j.Owner, store.Stored{Bytes: -size, Files: -1})
		}
		return errorf(http.StatusConflict, api.CodeConflict, "the job was canceled while its output %s was uploaded: it is not kept", p)
	}
	fi.Path = p
	return writeJSON(w, http.StatusCreated, fi)
}
