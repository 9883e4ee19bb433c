package storedriver

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/internal/job"
)

// JobRowVersion is the version of the JSON form of JobRow written now, in
// its "v" member. Version 1 (no "v") is job.Job marshalled with its Go field
// names, as hpcgate wrote it until schema version 2; DecodeJobRow reads it.
const JobRowVersion = 2

// JobRow is the stored form of a job.Job. Its JSON names are part of the
// stored data: never rename one; add a member, or a new version.
type JobRow struct {
	Version         int               `json:"v"`
	Seq             int64             `json:"-"` // list position, set by the driver on reads
	ID              string            `json:"id"`
	Name            string            `json:"name,omitempty"`
	Owner           string            `json:"owner"`
	Account         string            `json:"account,omitempty"`
	Template        string            `json:"template"`
	TemplateVersion int               `json:"template_version,omitempty"`
	Environment     string            `json:"environment,omitempty"`
	State           string            `json:"state"`
	Reason          string            `json:"reason,omitempty"`
	Parameters      json.RawMessage   `json:"parameters,omitempty"`
	Inputs          map[string]string `json:"inputs,omitempty"`
	InputSizes      map[string]int64  `json:"input_sizes,omitempty"`
	Resources       ResourcesRow      `json:"resources,omitzero"`
	Labels          map[string]string `json:"labels,omitempty"`
	ParentID        string            `json:"parent_id,omitempty"`
	SweepID         string            `json:"sweep_id,omitempty"`
	SweepIndex      int               `json:"sweep_index,omitempty"`
	SweepSize       int               `json:"sweep_size,omitempty"`
	SweepMaxRunning int               `json:"sweep_max_running,omitempty"`
	Detached        bool              `json:"detached,omitempty"`
	After           []DependencyRow   `json:"after,omitempty"`
	Notify          *NotifyRow        `json:"notify,omitempty"`
	Project         string            `json:"project,omitempty"`
	Depth           int               `json:"depth,omitempty"`
	CreatedAt       time.Time         `json:"created_at,omitzero"`
	StartedAt       time.Time         `json:"started_at,omitzero"`
	FinishedAt      time.Time         `json:"finished_at,omitzero"`
	ExitCode        *int              `json:"exit_code,omitempty"`
	Usage           *UsageRow         `json:"usage,omitempty"`
	Scheduler       string            `json:"scheduler,omitempty"`
	BackendID       string            `json:"backend_id,omitempty"`
	Error           string            `json:"error,omitempty"`
	IdemKey         string            `json:"idem_key,omitempty"`
	IdemHash        string            `json:"idem_hash,omitempty"`
	TemplateDoc     json.RawMessage   `json:"template_doc,omitempty"`
	Submissions     int               `json:"submissions,omitempty"`
	ClaimedBy       string            `json:"claimed_by,omitempty"`
	ClaimedUntil    time.Time         `json:"claimed_until,omitzero"`
	Steps           []StepRow         `json:"steps,omitempty"`
	Delivered       []DeliveredRow    `json:"delivered,omitempty"`
}

// StepRow is the stored form of job.Step.
type StepRow struct {
	Index     int       `json:"index"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	ExitCode  *int      `json:"exit_code,omitempty"`
	Stdout    [2]int64  `json:"stdout"`
	Stderr    [2]int64  `json:"stderr"`
}

// DeliveredRow is the stored form of job.Delivered.
type DeliveredRow struct {
	Path string `json:"path"`
	File string `json:"file"`
	Size int64  `json:"size"`
}

// DependencyRow is the stored form of job.Dependency.
type DependencyRow struct {
	Job   string `json:"job,omitempty"`
	Sweep string `json:"sweep,omitempty"`
	When  string `json:"when"`
}

// NotifyRow is the stored form of job.Notify.
type NotifyRow struct {
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// ResourcesRow is the stored form of job.Resources.
type ResourcesRow struct {
	Nodes        int   `json:"nodes,omitempty"`
	CoresPerNode int   `json:"cores_per_node,omitempty"`
	MemoryMB     int64 `json:"memory_mb,omitempty"`
	WalltimeS    int64 `json:"walltime_s,omitempty"`
}

// UsageRow is the stored form of job.Usage.
type UsageRow struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	MaxRSSBytes int64   `json:"max_rss_bytes"`
	WallSeconds float64 `json:"wall_seconds"`
}

// FromJob returns the row of j, sharing none of its memory.
func FromJob(j *job.Job) *JobRow {
	j = j.Clone()
	r := &JobRow{
		Version:         JobRowVersion,
		ID:              j.ID,
		Name:            j.Name,
		Owner:           j.Owner,
		Account:         j.Account,
		Template:        j.Template,
		TemplateVersion: j.TemplateVersion,
		Environment:     j.Environment,
		State:           string(j.State),
		Reason:          j.Reason,
		Parameters:      j.Parameters,
		Inputs:          j.Inputs,
		InputSizes:      j.InputSizes,
		Resources:       ResourcesRow(j.Resources),
		Labels:          j.Labels,
		ParentID:        j.ParentID,
		SweepID:         j.SweepID,
		SweepIndex:      j.SweepIndex,
		SweepSize:       j.SweepSize,
		SweepMaxRunning: j.SweepMaxRunning,
		Detached:        j.Detached,
		Project:         j.Project,
		Depth:           j.Depth,
		CreatedAt:       j.CreatedAt,
		StartedAt:       j.StartedAt,
		FinishedAt:      j.FinishedAt,
		ExitCode:        j.ExitCode,
		Scheduler:       j.Scheduler,
		BackendID:       j.BackendID,
		Error:           j.Error,
		IdemKey:         j.IdemKey,
		IdemHash:        j.IdemHash,
		TemplateDoc:     j.TemplateDoc,
		Submissions:     j.Submissions,
		ClaimedBy:       j.ClaimedBy,
		ClaimedUntil:    j.ClaimedUntil,
	}
	if j.Usage != nil {
		u := UsageRow(*j.Usage)
		r.Usage = &u
	}
	for _, d := range j.After {
		r.After = append(r.After, DependencyRow(d))
	}
	if j.Notify != nil {
		r.Notify = &NotifyRow{URL: j.Notify.URL, Events: j.Notify.Events}
	}
	for _, st := range j.Steps {
		r.Steps = append(r.Steps, StepRow(st))
	}
	for _, d := range j.Delivered {
		r.Delivered = append(r.Delivered, DeliveredRow(d))
	}
	return r
}

// Job returns the job of r, sharing none of its memory.
func (r *JobRow) Job() *job.Job {
	j := &job.Job{
		ID:              r.ID,
		Name:            r.Name,
		Owner:           r.Owner,
		Account:         r.Account,
		Template:        r.Template,
		TemplateVersion: r.TemplateVersion,
		Environment:     r.Environment,
		State:           job.State(r.State),
		Reason:          r.Reason,
		Parameters:      r.Parameters,
		Inputs:          r.Inputs,
		InputSizes:      r.InputSizes,
		Resources:       job.Resources(r.Resources),
		Labels:          r.Labels,
		ParentID:        r.ParentID,
		SweepID:         r.SweepID,
		SweepIndex:      r.SweepIndex,
		SweepSize:       r.SweepSize,
		SweepMaxRunning: r.SweepMaxRunning,
		Detached:        r.Detached,
		Project:         r.Project,
		Depth:           r.Depth,
		CreatedAt:       r.CreatedAt,
		StartedAt:       r.StartedAt,
		FinishedAt:      r.FinishedAt,
		ExitCode:        r.ExitCode,
		Scheduler:       r.Scheduler,
		BackendID:       r.BackendID,
		Error:           r.Error,
		IdemKey:         r.IdemKey,
		IdemHash:        r.IdemHash,
		TemplateDoc:     r.TemplateDoc,
		Submissions:     r.Submissions,
		ClaimedBy:       r.ClaimedBy,
		ClaimedUntil:    r.ClaimedUntil,
	}
	if r.Usage != nil {
		u := job.Usage(*r.Usage)
		j.Usage = &u
	}
	for _, d := range r.After {
		j.After = append(j.After, job.Dependency(d))
	}
	if r.Notify != nil {
		j.Notify = &job.Notify{URL: r.Notify.URL, Events: r.Notify.Events}
	}
	for _, st := range r.Steps {
		j.Steps = append(j.Steps, job.Step(st))
	}
	for _, d := range r.Delivered {
		j.Delivered = append(j.Delivered, job.Delivered(d))
	}
	return j.Clone()
}

// Finished returns when the job finished if it is in a terminal state (its
// FinishedAt, or its CreatedAt if that is unset), and false otherwise.
// Drivers keep it in a column for FinishedBefore.
func (r *JobRow) Finished() (time.Time, bool) {
	if !job.State(r.State).Terminal() {
		return time.Time{}, false
	}
	if r.FinishedAt.IsZero() {
		return r.CreatedAt, true
	}
	return r.FinishedAt, true
}

// InEngine reports whether an engine has the job and it has not ended: it
// has a BackendID and its state is not terminal. Drivers keep it in an
// indexed column for ListQuery.InEngine.
func (r *JobRow) InEngine() bool {
	return r.BackendID != "" && !job.State(r.State).Terminal()
}

// Encode returns r's JSON form, of version JobRowVersion.
func (r *JobRow) Encode() ([]byte, error) {
	c := *r
	c.Version = JobRowVersion
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", r.ID, err)
	}
	return b, nil
}

// DecodeJobRow reads a row's JSON form of any version.
func DecodeJobRow(doc []byte) (*JobRow, error) {
	var v struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, fmt.Errorf("decode job: %w", err)
	}
	switch v.V {
	case 0:
		var old jobRowV1
		if err := json.Unmarshal(doc, &old); err != nil {
			return nil, fmt.Errorf("decode job (version 1): %w", err)
		}
		return old.row(), nil
	case JobRowVersion:
		var r JobRow
		if err := json.Unmarshal(doc, &r); err != nil {
			return nil, fmt.Errorf("decode job: %w", err)
		}
		return &r, nil
	}
	return nil, fmt.Errorf("decode job: version %d is unknown to this hpcgate: use a newer hpcgate", v.V)
}

// jobRowV1 is version 1: job.Job as encoding/json wrote it without tags
// (until schema version 2), its names frozen here.
type jobRowV1 struct {
	ID              string            `json:"ID"`
	Name            string            `json:"Name"`
	Owner           string            `json:"Owner"`
	Template        string            `json:"Template"`
	TemplateVersion int               `json:"TemplateVersion"`
	Environment     string            `json:"Environment"`
	State           string            `json:"State"`
	Reason          string            `json:"Reason"`
	Parameters      json.RawMessage   `json:"Parameters"`
	Inputs          map[string]string `json:"Inputs"`
	InputSizes      map[string]int64  `json:"InputSizes"`
	Resources       struct {
		Nodes        int   `json:"Nodes"`
		CoresPerNode int   `json:"CoresPerNode"`
		MemoryMB     int64 `json:"MemoryMB"`
		WalltimeS    int64 `json:"WalltimeS"`
	} `json:"Resources"`
	Labels     map[string]string `json:"Labels"`
	ParentID   string            `json:"ParentID"`
	Depth      int               `json:"Depth"`
	CreatedAt  time.Time         `json:"CreatedAt"`
	StartedAt  time.Time         `json:"StartedAt"`
	FinishedAt time.Time         `json:"FinishedAt"`
	ExitCode   *int              `json:"ExitCode"`
	Usage      *struct {
		CPUSeconds  float64 `json:"CPUSeconds"`
		MaxRSSBytes int64   `json:"MaxRSSBytes"`
		WallSeconds float64 `json:"WallSeconds"`
	} `json:"Usage"`
	Scheduler    string          `json:"Scheduler"`
	BackendID    string          `json:"BackendID"`
	Error        string          `json:"Error"`
	IdemKey      string          `json:"IdemKey"`
	IdemHash     string          `json:"IdemHash"`
	TemplateDoc  json.RawMessage `json:"TemplateDoc"`
	Submissions  int             `json:"Submissions"`
	ClaimedBy    string          `json:"ClaimedBy"`
	ClaimedUntil time.Time       `json:"ClaimedUntil"`
}

func nullRaw(m json.RawMessage) json.RawMessage {
	if string(m) == "null" {
		return nil
	}
	return m
}

func (o *jobRowV1) row() *JobRow {
	r := &JobRow{
		Version:         1,
		ID:              o.ID,
		Name:            o.Name,
		Owner:           o.Owner,
		Template:        o.Template,
		TemplateVersion: o.TemplateVersion,
		Environment:     o.Environment,
		State:           o.State,
		Reason:          o.Reason,
		Parameters:      nullRaw(o.Parameters),
		Inputs:          o.Inputs,
		InputSizes:      o.InputSizes,
		Resources:       ResourcesRow(o.Resources),
		Labels:          o.Labels,
		ParentID:        o.ParentID,
		Depth:           o.Depth,
		CreatedAt:       o.CreatedAt,
		StartedAt:       o.StartedAt,
		FinishedAt:      o.FinishedAt,
		ExitCode:        o.ExitCode,
		Scheduler:       o.Scheduler,
		BackendID:       o.BackendID,
		Error:           o.Error,
		IdemKey:         o.IdemKey,
		IdemHash:        o.IdemHash,
		TemplateDoc:     nullRaw(o.TemplateDoc),
		Submissions:     o.Submissions,
		ClaimedBy:       o.ClaimedBy,
		ClaimedUntil:    o.ClaimedUntil,
	}
	if o.Usage != nil {
		u := UsageRow(*o.Usage)
		r.Usage = &u
	}
	return r
}
