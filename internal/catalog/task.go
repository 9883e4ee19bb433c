package catalog

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/job"
)

// TaskTemplate is the template name of every job made from a GA4GH TES
// task: upper case, so no template can have it.
const TaskTemplate = "TES"

// TaskRecipe is what a GA4GH TES task runs, in place of a template's
// command: its executors in order, each in its image, sharing the task's
// inputs, outputs and volumes. Its JSON names are TES's own and its stored
// form (see Recipe).
type TaskRecipe struct {
	Description string         `json:"description,omitempty"`
	Executors   []TaskExecutor `json:"executors"`
	Inputs      []TaskInput    `json:"inputs,omitempty"`
	Outputs     []TaskOutput   `json:"outputs,omitempty"`
	Volumes     []string       `json:"volumes,omitempty"`
	Resources   *TaskResources `json:"resources,omitempty"`
}

// TaskExecutor is one executor: an image and a command.
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

// TaskInput is an input at an absolute container path: its content, or
// the job's inputs that make it (Files).
type TaskInput struct {
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url,omitempty"` // as the task gave it
	Path        string `json:"path"`
	Type        string `json:"type"` // FILE or DIRECTORY
	Content     string `json:"content,omitempty"`
	Streamable  bool   `json:"streamable,omitempty"`
	// Files are the job's inputs (keys of job.Job.Inputs) this input is
	// made of: one for a FILE; for a DIRECTORY one per file below it, each
	// with its path below Path.
	Files []TaskFile `json:"files,omitempty"`
}

// TaskFile is one of the job's inputs and its path below its task
// input's path ("" for a FILE input itself).
type TaskFile struct {
	Input string `json:"input"`
	Rel   string `json:"rel,omitempty"`
}

// TaskOutput is an output: the container path (a glob when PathPrefix is
// set) and the owner's file (or directory, for a DIRECTORY or a glob) it
// goes to.
type TaskOutput struct {
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	URL         string `json:"url"` // as the task gave it
	Path        string `json:"path"`
	PathPrefix  string `json:"path_prefix,omitempty"`
	Type        string `json:"type"`
	File        string `json:"file"`
}

// TaskResources are the resources the task asked for, kept as asked.
type TaskResources struct {
	CPUCores                int               `json:"cpu_cores,omitempty"`
	Preemptible             bool              `json:"preemptible,omitempty"`
	RAMGB                   float64           `json:"ram_gb,omitempty"`
	DiskGB                  float64           `json:"disk_gb,omitempty"`
	Zones                   []string          `json:"zones,omitempty"`
	BackendParameters       map[string]string `json:"backend_parameters,omitempty"`
	BackendParametersStrict bool              `json:"backend_parameters_strict,omitempty"`
}

// TaskRequest is a task to check against the catalogue: its recipe (its
// inputs' Files named in Inputs), the environment it asks for ("": the
// default, then the first of Zones), and its resources.
type TaskRequest struct {
	Task               *TaskRecipe
	Inputs             map[string]string // the job's inputs: name → the user's file, job:ID/outputs/PATH or https:// URL
	Environment        string
	DefaultEnvironment string // the gateway's tes.environment
	Resources          job.Resources
	Labels             map[string]string
}

// TaskInstance is a checked task, ready to become a job.
type TaskInstance struct {
	Environment *Environment
	Recipe      *Recipe
	InputSizes  map[string]int64
	Resources   job.Resources
}

// Reserved container paths: a task may not put its files over the
// container's own.
var reservedPaths = []string{"/proc", "/sys", "/dev"}

// InstantiateTask checks r against the catalogue: the environment exists,
// runs containers and admits every image (only environments with an
// images allow-list run tasks: their images are any the task names), the
// resources fit, every stored input exists and may be read (stat). A
// *ValidationError names every problem, with TES's field names.
func (c *Catalog) InstantiateTask(r TaskRequest, stat StatFunc) (*TaskInstance, error) {
	verr := &ValidationError{}
	inst := &TaskInstance{InputSizes: map[string]int64{}}
	t := r.Task

	// Environment: asked for, the default, or the first zone that is one.
	name, field := r.Environment, "resources.backend_parameters.environment"
	var zones []string
	if t.Resources != nil {
		zones = t.Resources.Zones
	}
	if name == "" && len(zones) > 0 {
		field = "resources.zones"
		for _, z := range zones {
			if _, err := c.Environment(z); err == nil {
				name = z
				break
			}
		}
		if name == "" {
			verr.add(field, "none of %v is a runtime environment here; there are %v", zones, c.envNames)
		}
	} else if name == "" {
		name = r.DefaultEnvironment
	}
	env, err := c.Environment(name)
	switch {
	case name == "" && len(zones) > 0:
		// said above: none of the zones is an environment
	case name == "":
		verr.add(field, "name the runtime environment: this gateway has no default for tasks (tes.environment); it offers %v", c.envNames)
	case err != nil:
		verr.add(field, "no runtime environment %q here; there are %v", name, c.envNames)
	case len(zones) > 0 && !slices.Contains(zones, name):
		verr.add("resources.zones", "the task runs in environment %s, which its zones %v do not include", name, zones)
	case env.ContainerRuntime == "":
		verr.add(field, "environment %s has no container runtime, so it runs no tasks", name)
	case len(env.Images) == 0:
		verr.add(field, "environment %s has no image allow-list (images), so it runs no tasks: a task's image is any it names", name)
	default:
		inst.Environment = env
	}
	for i, e := range t.Executors {
		if !validImage(e.Image) {
			verr.add(fmt.Sprintf("executors[%d].image", i), "%q is not an image name", e.Image)
			continue
		}
		if inst.Environment != nil && !slices.ContainsFunc(env.Images, func(a string) bool { return imageAllowed(a, e.Image) }) {
			verr.add(fmt.Sprintf("executors[%d].image", i), "image %q is not allowed in environment %s (allowed: %v)", e.Image, env.Name, env.Images)
		}
	}

	// Container paths: absolute, clean, and not over the container's own.
	checkPath := func(field, p string) {
		if strings.ContainsAny(p, ":,") {
			verr.add(field, "%s: a container path here may not have ':' or ','", p)
		}
		if p == "/" || slices.ContainsFunc(reservedPaths, func(r string) bool { return p == r || strings.HasPrefix(p, r+"/") }) {
			verr.add(field, "%s is the container's own: put the task's files elsewhere", p)
		}
	}
	for i, in := range t.Inputs {
		checkPath(fmt.Sprintf("inputs[%d].path", i), in.Path)
	}
	for i, o := range t.Outputs {
		checkPath(fmt.Sprintf("outputs[%d].path", i), o.Spec().MountDir())
	}
	for i, v := range t.Volumes {
		checkPath(fmt.Sprintf("volumes[%d]", i), v)
	}

	// Stored inputs: they exist and the caller may read them.
	for i, in := range t.Inputs {
		for _, f := range in.Files {
			p := r.Inputs[f.Input]
			if IsURL(p) {
				if _, err := ParseURLInput(p); err != nil {
					verr.add(fmt.Sprintf("inputs[%d].url", i), "%q %v", p, err)
				}
				continue
			}
			size, err := stat(p)
			switch {
			case errors.Is(err, ErrNotFound), errors.Is(err, ErrLater): // a task waits for no job
				verr.add(fmt.Sprintf("inputs[%d].url", i), "%q does not exist", p)
			case errors.Is(err, ErrNotGiven):
				verr.add(fmt.Sprintf("inputs[%d].url", i), "%q may not be read with this token", p)
			case err != nil:
				return nil, fmt.Errorf("check input %s: %w", f.Input, err)
			default:
				inst.InputSizes[f.Input] = size
			}
		}
	}

	// Resources: one node, within the environment's limits.
	res := r.Resources
	res.Nodes = 1
	res.CoresPerNode = max(res.CoresPerNode, 1)
	if inst.Environment != nil {
		m := inst.Environment.Limits()
		if res.WalltimeS == 0 {
			res.WalltimeS = m.WalltimeS
		}
		over := func(field string, v, lim int64, unit string) {
			if lim > 0 && v > lim {
				verr.add(field, "%d%s is more than environment %s allows (%d%s)", v, unit, inst.Environment.Name, lim, unit)
			}
		}
		over("resources.cpu_cores", int64(res.CoresPerNode), int64(m.CoresPerNode), "")
		over("resources.ram_gb", res.MemoryMB, m.MemoryMB, " MB")
		over("resources.backend_parameters.walltime_s", res.WalltimeS, m.WalltimeS, " s")
	}
	inst.Resources = res

	checkLabels(r.Labels, "tags", verr)
	if len(verr.Fields) > 0 {
		sort.SliceStable(verr.Fields, func(i, j int) bool { return verr.Fields[i].Field < verr.Fields[j].Field })
		return nil, verr
	}
	inst.Recipe = &Recipe{Version: RecipeVersion, Template: TaskTemplate, Task: t,
		Runtime: env.ContainerRuntime, RuntimeFlags: env.ContainerFlags, ImageStore: env.ImageStore}
	return inst, nil
}

// StoredInputs are the task's inputs the agent fetches, as a template's
// declared inputs: each of the job's inputs at root/CONTAINER-PATH below
// the working directory.
func (t *TaskRecipe) StoredInputs() []RecipeInput {
	var out []RecipeInput
	for _, in := range t.Inputs {
		for _, f := range in.Files {
			out = append(out, RecipeInput{Name: f.Input, Path: "root" + path.Join(in.Path, f.Rel)})
		}
	}
	return out
}

// Spec is how the agent delivers o.
func (o TaskOutput) Spec() api.TaskOutput {
	return api.TaskOutput{Path: o.Path, PathPrefix: o.PathPrefix, Directory: o.Type == "DIRECTORY", File: o.File}
}
