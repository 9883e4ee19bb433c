// Package tes is hpcgate's GA4GH Task Execution Service 1.1: its types,
// how a task's state follows its job's, the task views, and the checks
// and translations of a task's inputs and outputs into hpcgate's terms.
//
// Work in progress: the routes under /ga4gh/tes/v1 and the agent's
// executors (several images sharing a volume) are not built yet.
package tes

import "time"

// State is a task's state (tesState).
type State string

// The states of TES 1.1.
const (
	Unknown       State = "UNKNOWN"
	Queued        State = "QUEUED"
	Initializing  State = "INITIALIZING"
	Running       State = "RUNNING"
	Paused        State = "PAUSED"
	Complete      State = "COMPLETE"
	ExecutorError State = "EXECUTOR_ERROR"
	SystemError   State = "SYSTEM_ERROR"
	Canceled      State = "CANCELED"
	Canceling     State = "CANCELING"
	Preempted     State = "PREEMPTED"
)

// FileType is FILE or DIRECTORY.
type FileType string

const (
	File      FileType = "FILE"
	Directory FileType = "DIRECTORY"
)

// Task is tesTask.
type Task struct {
	ID           string            `json:"id,omitempty"`
	State        State             `json:"state,omitempty"`
	Name         string            `json:"name,omitempty"`
	Description  string            `json:"description,omitempty"`
	Inputs       []Input           `json:"inputs,omitempty"`
	Outputs      []Output          `json:"outputs,omitempty"`
	Resources    *Resources        `json:"resources,omitempty"`
	Executors    []Executor        `json:"executors,omitempty"`
	Volumes      []string          `json:"volumes,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	Logs         []TaskLog         `json:"logs,omitempty"`
	CreationTime *time.Time        `json:"creation_time,omitempty"`
}

// Executor is tesExecutor: one image and command.
type Executor struct {
	Image       string            `json:"image"`
	Command     []string          `json:"command"`
	Workdir     string            `json:"workdir,omitempty"`
	Stdin       string            `json:"stdin,omitempty"`
	Stdout      string            `json:"stdout,omitempty"`
	Stderr      string            `json:"stderr,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	IgnoreError bool              `json:"ignore_error,omitempty"`
}

// Input is tesInput: by url or by content, at an absolute path.
type Input struct {
	Name        string   `json:"name,omitempty"`
	Description string   `json:"description,omitempty"`
	URL         string   `json:"url,omitempty"`
	Path        string   `json:"path"`
	Type        FileType `json:"type,omitempty"`
	Content     string   `json:"content,omitempty"`
	Streamable  bool     `json:"streamable,omitempty"`
}

// Output is tesOutput: a path (a glob with PathPrefix) to a url.
type Output struct {
	Name        string   `json:"name,omitempty"`
	Description string   `json:"description,omitempty"`
	URL         string   `json:"url"`
	Path        string   `json:"path"`
	PathPrefix  string   `json:"path_prefix,omitempty"`
	Type        FileType `json:"type,omitempty"`
}

// Resources is tesResources.
type Resources struct {
	CPUCores                int               `json:"cpu_cores,omitempty"`
	Preemptible             bool              `json:"preemptible,omitempty"`
	RAMGB                   float64           `json:"ram_gb,omitempty"`
	DiskGB                  float64           `json:"disk_gb,omitempty"`
	Zones                   []string          `json:"zones,omitempty"`
	BackendParameters       map[string]string `json:"backend_parameters,omitempty"`
	BackendParametersStrict bool              `json:"backend_parameters_strict,omitempty"`
}

// TaskLog is tesTaskLog.
type TaskLog struct {
	Logs       []ExecutorLog     `json:"logs"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	StartTime  string            `json:"start_time,omitempty"`
	EndTime    string            `json:"end_time,omitempty"`
	Outputs    []OutputFileLog   `json:"outputs"`
	SystemLogs []string          `json:"system_logs,omitempty"`
}

// ExecutorLog is tesExecutorLog.
type ExecutorLog struct {
	StartTime string `json:"start_time,omitempty"`
	EndTime   string `json:"end_time,omitempty"`
	Stdout    string `json:"stdout,omitempty"`
	Stderr    string `json:"stderr,omitempty"`
	ExitCode  int    `json:"exit_code"`
}

// OutputFileLog is tesOutputFileLog.
type OutputFileLog struct {
	URL       string `json:"url"`
	Path      string `json:"path"`
	SizeBytes string `json:"size_bytes"` // a string in TES 1.1
}

// CreateTaskResponse answers POST /tasks.
type CreateTaskResponse struct {
	ID string `json:"id"`
}

// ListTasksResponse answers GET /tasks.
type ListTasksResponse struct {
	Tasks         []Task `json:"tasks"`
	NextPageToken string `json:"next_page_token,omitempty"`
}

// View is how much of a task an answer shows.
type View string

const (
	Minimal View = "MINIMAL"
	Basic   View = "BASIC"
	Full    View = "FULL"
)

// ParseView reads the view parameter ("" is MINIMAL, as TES says).
func ParseView(v string) (View, bool) {
	switch View(v) {
	case "", Minimal:
		return Minimal, true
	case Basic, Full:
		return View(v), true
	}
	return "", false
}

// Shown is t as view shows it: MINIMAL only its id and state; BASIC all
// but the executors' stdout and stderr, the inputs' content and the
// system logs; FULL everything.
func Shown(t Task, v View) Task {
	switch v {
	case Minimal:
		return Task{ID: t.ID, State: t.State}
	case Basic:
		out := t
		out.Inputs = make([]Input, len(t.Inputs))
		for i, in := range t.Inputs {
			in.Content = ""
			out.Inputs[i] = in
		}
		out.Logs = make([]TaskLog, len(t.Logs))
		for i, l := range t.Logs {
			l.SystemLogs = nil
			l.Logs = make([]ExecutorLog, len(t.Logs[i].Logs))
			for k, el := range t.Logs[i].Logs {
				el.Stdout, el.Stderr = "", ""
				l.Logs[k] = el
			}
			out.Logs[i] = l
		}
		return out
	}
	return t
}
