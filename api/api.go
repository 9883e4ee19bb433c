// Package api holds the wire types of the hpcgate HTTP API, version 1.
//
// It depends on the standard library only, so that clients can import it
// without pulling in any of the server.
package api

import (
	"encoding/json"
	"path"
	"strings"
	"time"
)

// Job states. Terminal states (succeeded, failed, canceled) never change.
const (
	StatePending   = "pending"
	StateHeld      = "held"
	StateQueued    = "queued"
	StateStarting  = "starting"
	StateRunning   = "running"
	StateSuspended = "suspended"
	StateFinishing = "finishing"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
	StateCanceled  = "canceled"
)

// AgentOnly are the routes (method and path, {id} the job's, a trailing
// / a prefix) that only a job's agent calls: its spec, its reports, its
// logs, its outputs and a TES task's deliveries. A job's container reaches
// the gateway through the agent's socket, which refuses these, so that the
// job's own code cannot forge its results.
var AgentOnly = []string{
	"GET /v1/jobs/{id}/spec",
	"POST /v1/jobs/{id}/state",
	"POST /v1/jobs/{id}/logs/",
	"PUT /v1/jobs/{id}/outputs/",
	"PUT /v1/jobs/{id}/deliveries/",
	"POST /v1/jobs/{id}/output-urls",
}

// Scopes a token may carry.
const (
	ScopeJobsRead   = "jobs:read"
	ScopeJobsWrite  = "jobs:write"
	ScopeFilesRead  = "files:read"
	ScopeFilesWrite = "files:write"
	ScopeAdmin      = "admin"
	// ScopeTasks creates GA4GH TES tasks: any image and command, outside
	// the templates. Only an admin grants it.
	ScopeTasks = "tasks"
	// ScopeJob marks a job token: it acts for one job only.
	ScopeJob = "job"
)

// Resources is what a job asks of its runtime environment.
type Resources struct {
	Nodes        int   `json:"nodes,omitempty"`
	CoresPerNode int   `json:"cores_per_node,omitempty"`
	MemoryMB     int64 `json:"memory_mb,omitempty"`
	WalltimeS    int64 `json:"walltime_s,omitempty"`
}

// Usage is what a job consumed.
type Usage struct {
	CPUSeconds  float64 `json:"cpu_seconds"`
	MaxRSSBytes int64   `json:"max_rss_bytes"`
	WallSeconds float64 `json:"wall_seconds"`
}

// Backend names the queueing engine that runs a job and the job's id there.
type Backend struct {
	Scheduler string `json:"scheduler"`
	ID        string `json:"id,omitempty"`
}

// Job is one job as the API shows it.
type Job struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	Owner           string            `json:"owner"`
	Template        string            `json:"template"`
	TemplateVersion int               `json:"template_version"`
	Environment     string            `json:"environment"`
	State           string            `json:"state"`
	Reason          string            `json:"reason,omitempty"`
	Parameters      json.RawMessage   `json:"parameters"`
	Inputs          map[string]string `json:"inputs"`
	Resources       Resources         `json:"resources"`
	Labels          map[string]string `json:"labels"`
	ParentID        string            `json:"parent_id,omitempty"`
	// SweepID is the sweep the job is a variant of; SweepIndex its
	// variant's place in it, from 0.
	SweepID    string `json:"sweep_id,omitempty"`
	SweepIndex *int   `json:"sweep_index,omitempty"`
	// Detached: a child that goes on when its parent is canceled.
	Detached bool `json:"detached,omitempty"`
	// After: what the job waits for before it is handed to its engine.
	After   []Dependency `json:"after,omitempty"`
	Notify  *Notify      `json:"notify,omitempty"`
	Project string       `json:"project,omitempty"`
	// Account is the OS account the job runs as (empty: the gateway's own).
	Account    string     `json:"account,omitempty"`
	Depth      int        `json:"depth"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	Usage      *Usage     `json:"usage,omitempty"`
	Backend    *Backend   `json:"backend,omitempty"`
	Error      string     `json:"error,omitempty"`
	// Steps are the executors of a GA4GH TES task, as they ran.
	Steps []Step `json:"steps,omitempty"`
}

// Step is one executor of a task as it ran: when, its exit code, and the
// bytes of the job's stdout and stderr it wrote ([from, to)).
type Step struct {
	Index     int        `json:"index"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	ExitCode  *int       `json:"exit_code,omitempty"`
	Stdout    [2]int64   `json:"stdout"`
	Stderr    [2]int64   `json:"stderr"`
}

// MaxJobName bounds a job's name, and a TES task's, in bytes.
const MaxJobName = 128

// JobRequest is the body of POST /v1/jobs.
type JobRequest struct {
	Template    string            `json:"template"`
	Version     int               `json:"version,omitempty"` // 0: the newest
	Name        string            `json:"name,omitempty"`
	Parameters  json.RawMessage   `json:"parameters,omitempty"`
	Inputs      map[string]string `json:"inputs,omitempty"`
	Environment string            `json:"environment,omitempty"`
	Resources   *Resources        `json:"resources,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Hold creates the job held: it is not handed to the engine until released.
	Hold bool `json:"hold,omitempty"`
	// Project is the project (allocation account) the job is charged to;
	// "": the user's default.
	Project string `json:"project,omitempty"`
	// Detached: a child (created with a job's token) that is not canceled
	// with its parent; without it, canceling a job cancels its unfinished
	// descendants.
	Detached bool `json:"detached,omitempty"`
	// After are jobs and sweeps that must end (or succeed) before this
	// job is handed to its engine; it waits pending meanwhile, and is
	// canceled, with the reason, if one of them cannot as asked.
	After []Dependency `json:"after,omitempty"`
	// Notify: the gateway posts the job's state changes to a URL.
	Notify *Notify `json:"notify,omitempty"`
}

// Notify is a webhook: the https URL the gateway posts a WebhookEvent to
// on each of Events (state names, or "terminal", the default: succeeded,
// failed or canceled), signed with the owner's webhook secret.
type Notify struct {
	URL    string   `json:"url"`
	Events []string `json:"events,omitempty"`
}

// WebhookEvent is the body the gateway posts to a job's Notify URL, with
// the headers X-Hpcgate-Event-Id (ID) and X-Hpcgate-Signature
// ("sha256=" and the HMAC-SHA256 of the body, in hex, keyed with the
// owner's webhook secret). It is delivered at least once: a receiver
// drops an ID it has seen.
type WebhookEvent struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"` // "job.state"
	Time    time.Time `json:"time"`
	JobID   string    `json:"job_id"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	SweepID string    `json:"sweep_id,omitempty"`
	// Sweep is the job's sweep as it stands when the event is posted.
	Sweep *Sweep `json:"sweep,omitempty"`
}

// Change is one state change of one of the caller's jobs, as
// GET /v1/events streams it (its SSE id is Seq).
type Change struct {
	Seq     int64     `json:"seq"`
	JobID   string    `json:"job_id"`
	SweepID string    `json:"sweep_id,omitempty"`
	State   string    `json:"state"`
	Reason  string    `json:"reason,omitempty"`
	Time    time.Time `json:"time"`
}

// WebhookSecret is the answer of POST /v1/webhook-secret: shown once.
type WebhookSecret struct {
	Secret string `json:"secret"`
}

// Dependency is one job (Job) or whole sweep (Sweep) a job waits for:
// When "succeeded" (the default: every job of it succeeded) or
// "finished" (ended, however).
type Dependency struct {
	Job   string `json:"job,omitempty"`
	Sweep string `json:"sweep,omitempty"`
	When  string `json:"when,omitempty"`
}

// SweepRequest is the body of POST /v1/sweeps: one template run once for
// each variant, every job with the fixed parameters and the shared inputs,
// and a variant's parameters over them.
type SweepRequest struct {
	Template    string            `json:"template"`
	Version     int               `json:"version,omitempty"`
	Name        string            `json:"name,omitempty"` // each job's; "": TEMPLATE-INDEX
	Parameters  json.RawMessage   `json:"parameters,omitempty"`
	Inputs      map[string]string `json:"inputs,omitempty"`
	Environment string            `json:"environment,omitempty"`
	Resources   *Resources        `json:"resources,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Hold        bool              `json:"hold,omitempty"`
	Project     string            `json:"project,omitempty"`
	// MaxRunning caps how many of the sweep's jobs are handed to the
	// engine at once (0: no cap); the others wait, pending.
	MaxRunning int `json:"max_running,omitempty"`
	// Notify: every job of the sweep posts its changes there, each event
	// with the sweep's counts.
	Notify *Notify `json:"notify,omitempty"`
	// Variants is a list of parameter objects, or value lists combined:
	// {"mode": "product" (the default) or "zip", "parameters": {NAME: [VALUES]}}.
	Variants json.RawMessage `json:"variants"`
}

// Sweep is a sweep's state: how many variants, and how many jobs are in
// each state.
type Sweep struct {
	ID       string         `json:"id"`
	Template string         `json:"template"`
	Total    int            `json:"total"`
	Counts   map[string]int `json:"counts"`
	// Deleted is how many of the sweep's jobs were deleted since it was
	// made: they are not in Total.
	Deleted int `json:"deleted,omitempty"`
	// Jobs are the jobs' ids, in the variants' order when the sweep is
	// created, for sweeps of up to 1,000 variants; GET /v1/jobs?sweep=ID
	// lists any sweep's.
	Jobs      []string  `json:"jobs,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// SweepResult is one row of GET /v1/sweeps/{id}/results: a variant's job,
// its parameters (the fixed ones, the variant's and the defaults), its
// state, exit code and results.json.
type SweepResult struct {
	Index      int             `json:"index"`
	Job        string          `json:"job"`
	State      string          `json:"state"`
	ExitCode   *int            `json:"exit_code,omitempty"`
	Parameters json.RawMessage `json:"parameters"`
	Results    json.RawMessage `json:"results,omitempty"`
}

// Event is one state transition of a job.
type Event struct {
	Time   time.Time `json:"time"`
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
}

// Page is one page of a list. NextPageToken is empty on the last page.
type Page[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

// Input declares one input file of a template.
type Input struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	Required    bool   `json:"required"`
	MaxSize     int64  `json:"max_size,omitempty"`
	Description string `json:"description,omitempty"`
	// Unpack: the input is an archive (.tar.gz, .tar, .zip) unpacked into
	// the directory Path, at most MaxUnpackedSize bytes.
	Unpack          bool  `json:"unpack,omitempty"`
	MaxUnpackedSize int64 `json:"max_unpacked_size,omitempty"`
}

// ResourceLimits are a template's defaults and maxima.
type ResourceLimits struct {
	Default Resources `json:"default"`
	Max     Resources `json:"max"`
}

// Adapters are argv lists the agent runs around a template's command.
type Adapters struct {
	Verify  []string `json:"verify,omitempty"`
	Prepare []string `json:"prepare,omitempty"`
	Collect []string `json:"collect,omitempty"`
}

// Template is a job template.
type Template struct {
	Name         string          `json:"name"`
	Version      int             `json:"version"`
	Description  string          `json:"description,omitempty"`
	Image        string          `json:"image,omitempty"`
	ImageArchive string          `json:"image_archive,omitempty"`
	Command      []string        `json:"command"`
	Parameters   json.RawMessage `json:"parameters"`
	Inputs       []Input         `json:"inputs"`
	Outputs      []string        `json:"outputs"`
	Environments []string        `json:"environments"`
	Resources    ResourceLimits  `json:"resources"`
	Adapters     Adapters        `json:"adapters"`
	// Container says how Image runs; set when Image is.
	Container *TemplateContainer `json:"container,omitempty"`
}

// TemplateContainer is how a template's image runs.
type TemplateContainer struct {
	Workdir string `json:"workdir"`           // where the job's directory is in the container
	Network bool   `json:"network,omitempty"` // the command has the network
	Gateway bool   `json:"gateway,omitempty"` // the command can reach the gateway (through the agent)
}

// Environment is a runtime environment: where and how jobs run.
type Environment struct {
	Name             string `json:"name"`
	Description      string `json:"description,omitempty"`
	Scheduler        string `json:"scheduler"`
	Partition        string `json:"partition,omitempty"`
	Queue            string `json:"queue,omitempty"`
	ParallelEnv      string `json:"parallel_environment,omitempty"`
	ContainerRuntime string `json:"container_runtime,omitempty"`
	// Images are the only images templates may use here (a trailing / or
	// : allows every image starting with it); empty: any.
	Images []string `json:"images,omitempty"`
	// ContainerNetwork: templates that ask for the network may have it.
	ContainerNetwork bool           `json:"container_network,omitempty"`
	Max              Resources      `json:"max"`
	Live             map[string]any `json:"live,omitempty"`
}

// Problem is an RFC 9457 problem document, the body of every error answer.
type Problem struct {
	Type      string       `json:"type,omitempty"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Code      string       `json:"code"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []FieldError `json:"errors,omitempty"`
}

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Stable problem codes.
const (
	CodeBadRequest       = "bad_request"
	CodeValidation       = "validation_failed"
	CodeUnauthenticated  = "unauthenticated"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeInvalidState     = "invalid_state"
	CodeTooLarge         = "too_large"
	CodeRangeUnsatisfied = "range_not_satisfiable"
	// CodePreconditionFailed: If-Match, If-None-Match or
	// If-Unmodified-Since does not hold for the file as it is.
	CodePreconditionFailed = "precondition_failed"
	CodeUnsupported        = "unsupported"
	// CodeMethodNotAllowed: the path takes other methods, which Allow
	// names.
	CodeMethodNotAllowed = "method_not_allowed"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
	// CodeIdempotencyMismatch: an Idempotency-Key was used before with
	// another request body.
	CodeIdempotencyMismatch = "idempotency_key_reused"
	// CodeMediaType: the body's Content-Type is not one the route takes.
	CodeMediaType = "unsupported_media_type"
	// CodeQuotaExceeded: the request would pass one of the user's quotas;
	// the detail names it and the use.
	CodeQuotaExceeded = "quota_exceeded"
	// CodeRateLimited: the token made too many requests; Retry-After says
	// when to try again.
	CodeRateLimited = "rate_limited"
)

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	User       string   `json:"user"`
	Scopes     []string `json:"scopes"`
	ExpiresInS int64    `json:"expires_in_s,omitempty"`
	Name       string   `json:"name,omitempty"`
}

// Token describes a token. Secret is set only in the answer that creates it.
type Token struct {
	ID        string     `json:"id"`
	Token     string     `json:"token,omitempty"`
	User      string     `json:"user"`
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes"`
	JobID     string     `json:"job_id,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// Session is the answer of POST /v1/sessions: a web session made from a
// token, held by the browser as an HttpOnly cookie (never in this body).
type Session struct {
	User      string    `json:"user"`
	Scopes    []string  `json:"scopes"`
	TokenID   string    `json:"token_id"` // the session's own; revoked by DELETE /v1/sessions/current
	ExpiresAt time.Time `json:"expires_at"`
	// Key is what the page sends as CSRFHeader with every request of the
	// session that changes something; it is shown in this answer only.
	Key string `json:"key"`
}

// CSRFHeader is the header every request that changes something must
// carry, with the session's key, when it is made with a web session: a
// page of another site cannot send it without the gateway's CORS
// consent, which it never gives, and a program that read the session's
// cookie (browsers send a host's cookies to every port of it) does not
// have the key, which the page keeps in its origin's storage.
const CSRFHeader = "X-Hpcgate-Csrf"

// Me is the answer of GET /v1/me.
type Me struct {
	User    string   `json:"user"`
	Scopes  []string `json:"scopes"`
	TokenID string   `json:"token_id"`
	JobID   string   `json:"job_id,omitempty"`
	// Quotas: the user's use against each limit (jobs, cores, bytes).
	Quotas map[string]Quota `json:"quotas,omitempty"`
	// Projects: the user's use per project they charged jobs to.
	Projects []ProjectUsage `json:"projects,omitempty"`
}

// Quota is a limit and the use against it; Limit 0 is no limit.
type Quota struct {
	Limit int64 `json:"limit"`
	Used  int64 `json:"used"`
}

// ProjectUsage is a user's use of one project ("" for jobs that named
// none), as GET /v1/me and GET /v1/usage show it.
type ProjectUsage struct {
	User        string  `json:"user,omitempty"`
	Project     string  `json:"project"`
	Jobs        int64   `json:"jobs"`         // jobs created
	ActiveJobs  int64   `json:"active_jobs"`  // not yet finished
	CoreSeconds float64 `json:"core_seconds"` // of the jobs that ended
}

// UserState is the answer of GET /v1/users/{name} and of disabling or
// enabling a user.
type UserState struct {
	Name       string     `json:"name"`
	Disabled   bool       `json:"disabled"`
	DisabledAt *time.Time `json:"disabled_at,omitempty"`
	// Held and Canceled count the jobs a disable held and canceled.
	Held     int `json:"held,omitempty"`
	Canceled int `json:"canceled,omitempty"`
}

// DisableRequest is the body of POST /v1/users/{name}/disable.
type DisableRequest struct {
	// Jobs is "hold" (the default: running jobs are canceled, the others
	// held) or "cancel" (every unfinished job is canceled).
	Jobs string `json:"jobs,omitempty"`
}

// FileInfo describes one stored file.
type FileInfo struct {
	Path     string    `json:"path"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256,omitempty"`
	Modified time.Time `json:"modified"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	Status     string            `json:"status"` // "ok" or "degraded"
	Version    string            `json:"version"`
	Components []ComponentStatus `json:"components"`
}

// ComponentStatus says whether one component answers.
type ComponentStatus struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"` // database, objects, scheduler
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

// Spec is what the agent needs to run a job (GET /v1/jobs/{id}/spec).
type Spec struct {
	JobID string `json:"job_id"`
	Image string `json:"image,omitempty"`
	// Container says how to run Image: set when Image is.
	Container  *ContainerSpec    `json:"container,omitempty"`
	Command    []string          `json:"command"`
	Env        map[string]string `json:"env"`
	Parameters json.RawMessage   `json:"parameters"`
	Inputs     []SpecInput       `json:"inputs"`
	Outputs    []string          `json:"outputs"`
	Adapters   Adapters          `json:"adapters"`
	Resources  Resources         `json:"resources"`
	// LogOffsets are the bytes of each stream the server holds already, so a
	// restarted agent resumes where the last one stopped.
	LogOffsets map[string]int64 `json:"log_offsets,omitempty"`
	// DirectOutputs says the agent may ask for presigned PUT URLs for its
	// outputs (POST /v1/jobs/{id}/output-urls) instead of sending them
	// through the gateway.
	DirectOutputs bool `json:"direct_outputs,omitempty"`
	// Task, for a GA4GH TES task, replaces Image, Command, Outputs and
	// Adapters: its executors run in order, each in its image, sharing
	// the task's files. Its stored inputs are in Inputs, each at the
	// path root/CONTAINER-PATH below the working directory.
	Task *TaskSpec `json:"task,omitempty"`
}

// TaskSpec is how the agent runs a GA4GH TES task.
type TaskSpec struct {
	// Runtime, Flags and ImageStore are the environment's container
	// runtime (as in ContainerSpec).
	Runtime    string         `json:"runtime"`
	Flags      []string       `json:"flags,omitempty"`
	ImageStore string         `json:"image_store,omitempty"`
	Executors  []TaskExecutor `json:"executors"`
	Contents   []TaskContent  `json:"contents,omitempty"`
	Inputs     []TaskPath     `json:"inputs,omitempty"`
	Volumes    []string       `json:"volumes,omitempty"`
	Outputs    []TaskOutput   `json:"outputs,omitempty"`
}

// TaskExecutor is one executor: an image and a command, with its
// working directory, variables and standard streams (paths in the
// container).
type TaskExecutor struct {
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	Workdir     string            `json:"workdir,omitempty"`
	Stdin       string            `json:"stdin,omitempty"`
	Stdout      string            `json:"stdout,omitempty"`
	Stderr      string            `json:"stderr,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	IgnoreError bool              `json:"ignore_error,omitempty"`
}

// TaskContent is an input given by its content, for the container path Path.
type TaskContent struct {
	Path    string `json:"path"`
	Content string `json:"content"`
}

// TaskPath is an input's container path and whether it is a directory.
type TaskPath struct {
	Path      string `json:"path"`
	Directory bool   `json:"directory,omitempty"`
}

// TaskOutput is what the agent delivers to the owner's files: the file
// at container path Path (a glob when PathPrefix is set: each match, less
// PathPrefix, below File) or every file below the directory Path, to
// File (a path of the owner's files).
type TaskOutput struct {
	Path       string `json:"path"`
	PathPrefix string `json:"path_prefix,omitempty"`
	Directory  bool   `json:"directory,omitempty"`
	File       string `json:"file"`
}

// ContainerSpec is how the agent runs a job's image: the environment's
// container runtime (podman, apptainer or docker) with its operator's
// flags, where the job's directory appears, and whether the container has
// the network.
type ContainerSpec struct {
	Runtime string   `json:"runtime"`
	Flags   []string `json:"flags,omitempty"`
	Workdir string   `json:"workdir"`
	Network bool     `json:"network,omitempty"`
	// ImageStore is a read-only image store for rootless podman.
	ImageStore string `json:"image_store,omitempty"`
	// Gateway: serve the gateway to the container (see the template's
	// container.gateway).
	Gateway bool `json:"gateway,omitempty"`
	// Archive, when set, names the image archive that holds the image:
	// the agent fetches it (GET /v1/jobs/{id}/image) and loads it when
	// the node's runtime lacks the image.
	Archive string `json:"archive,omitempty"`
}

// SpecInput is one input the agent downloads into the working directory.
type SpecInput struct {
	Name string `json:"name"`
	Path string `json:"path"` // relative to the working directory
	Size int64  `json:"size"`
	// URL, when set, is a presigned GET of the input straight from the
	// object store; else the agent reads it through the gateway.
	URL string `json:"url,omitempty"`
	// Remote: URL is the https:// address the input was given by, and
	// the agent fetches it from there alone, at most MaxSize bytes, and
	// checks SHA256 (lower-case hex) when it is set. Size is then 0.
	Remote  bool   `json:"remote,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	MaxSize int64  `json:"max_size,omitempty"`
	// Unpack: the input is an archive (.tar.gz, .tar, .zip) that the
	// agent unpacks into the directory Path, at most MaxUnpacked bytes.
	Unpack      bool  `json:"unpack,omitempty"`
	MaxUnpacked int64 `json:"max_unpacked,omitempty"`
}

// StateReport is what the agent posts to POST /v1/jobs/{id}/state.
type StateReport struct {
	State    string `json:"state"`
	Reason   string `json:"reason,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Usage    *Usage `json:"usage,omitempty"`
	Error    string `json:"error,omitempty"`
	// Step, for a task, is the executor that started or ended.
	Step *Step `json:"step,omitempty"`
}

// LogAppend is the answer to a log append: the stream's size after it.
type LogAppend struct {
	Size int64 `json:"size"`
	// Full: the stream reached the gateway's limit for one job's stream
	// (limits.max_log_bytes); it ends with a line that says so, and
	// nothing more is kept.
	Full bool `json:"full,omitempty"`
}

// Health is the answer of GET /v1/health.
type Health struct {
	Status string `json:"status"`
}

// UploadRequest is the body of POST /v1/uploads: a presigned multipart
// upload of a large file straight to the object store.
type UploadRequest struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	// SHA256, if given, is kept with the file (GET and HEAD show it as
	// X-Checksum-Sha256), so that the upload can be checked whole.
	SHA256 string `json:"sha256,omitempty"`
}

// Upload answers POST /v1/uploads: PUT each part's bytes to its URL (part
// i holds bytes (i-1)×PartSize up to i×PartSize), keep each answer's ETag,
// then POST them in order to CompleteURL.
type Upload struct {
	ID          string       `json:"id"`
	Path        string       `json:"path"`
	PartSize    int64        `json:"part_size"`
	Parts       []UploadPart `json:"parts"`
	CompleteURL string       `json:"complete_url"`
	ExpiresAt   time.Time    `json:"expires_at"`
}

// UploadPart is one part's presigned URL.
type UploadPart struct {
	Number int    `json:"number"`
	URL    string `json:"url"`
}

// UploadComplete is the body of POST /v1/uploads/{id}/complete.
type UploadComplete struct {
	ETags []string `json:"etags"`
}

// OutputURLRequest asks for a presigned PUT URL for one output (agent).
type OutputURLRequest struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// SignedURL is a presigned URL.
type SignedURL struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AuditEntry is one entry of the audit log (GET /v1/audit): a request
// that changed something, or tried to. It never holds a token's secret.
type AuditEntry struct {
	Time      time.Time `json:"time"`
	User      string    `json:"user,omitempty"`
	TokenID   string    `json:"token_id,omitempty"`
	JobID     string    `json:"job_id,omitempty"`
	Action    string    `json:"action"`           // the route, as "POST /v1/jobs"
	Target    string    `json:"target,omitempty"` // what it was aimed at: the path, or what it made
	Outcome   int       `json:"outcome"`          // the HTTP status of the answer
	Client    string    `json:"client,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
}

// Dest is the owner's file that the file at container path from goes
// to, if o delivers it: o.File itself for a FILE; below o.File, at its
// path below the directory o.Path, for a DIRECTORY; below o.File, at its
// path less o.PathPrefix, for a glob.
func (o TaskOutput) Dest(from string) (string, bool) {
	switch {
	case o.Directory:
		rel, ok := strings.CutPrefix(from, o.Path+"/")
		return o.File + "/" + rel, ok && rel != ""
	case o.PathPrefix != "":
		ok, _ := path.Match(o.Path, from)
		rel, has := strings.CutPrefix(from, o.PathPrefix)
		rel = strings.TrimPrefix(rel, "/")
		return o.File + "/" + rel, ok && has && rel != ""
	}
	return o.File, from == o.Path
}

// MountDir is the container directory that holds what o delivers: the
// directory itself, the directory of a FILE, or the directory of a
// glob's part before its first wildcard.
func (o TaskOutput) MountDir() string {
	switch {
	case o.Directory:
		return o.Path
	case o.PathPrefix != "":
		static := o.Path
		if i := strings.IndexAny(static, "*?["); i >= 0 {
			static = static[:i] + "x"
		}
		return path.Dir(static)
	}
	return path.Dir(o.Path)
}
