package catalog

import (
	"cmp"
	"encoding/json"
	"fmt"
)

// RecipeVersion is the version of Recipe's stored form.
const RecipeVersion = 1

// Recipe is what a job runs, resolved from its template when the job was
// accepted and kept with the job (job.Job.TemplateDoc): a template that
// changes later (a reload, a replica with other template directories)
// does not change an accepted job. Its JSON names are its stored form:
// rename a Go field freely, never a tag.
type Recipe struct {
	Version         int           `json:"v"`
	Template        string        `json:"template"`
	TemplateVersion int           `json:"template_version"`
	Image           string        `json:"image,omitempty"`
	ImageArchive    string        `json:"image_archive,omitempty"`
	Command         []string      `json:"command"`
	Inputs          []RecipeInput `json:"inputs,omitempty"`
	Outputs         []string      `json:"outputs,omitempty"`
	Verify          []string      `json:"verify,omitempty"`
	Prepare         []string      `json:"prepare,omitempty"`
	Collect         []string      `json:"collect,omitempty"`
	// The container, for a template with an image: the runtime and flags
	// of the environment the job was accepted for, where the job's
	// directory appears, and whether it has the network.
	Runtime      string   `json:"runtime,omitempty"`
	RuntimeFlags []string `json:"runtime_flags,omitempty"`
	Workdir      string   `json:"workdir,omitempty"`
	Network      bool     `json:"network,omitempty"`
	ImageStore   string   `json:"image_store,omitempty"`
	Gateway      bool     `json:"gateway,omitempty"`
	// Task, for a GA4GH TES task (Template TaskTemplate), is what it runs
	// in place of Image and Command; Runtime, RuntimeFlags and ImageStore
	// run its executors.
	Task *TaskRecipe `json:"task,omitempty"`
}

// InContainer tells whether the recipe's steps run in containers.
func (r *Recipe) InContainer() bool { return r.Image != "" || r.Task != nil }

// RecipeInput is a declared input: where the agent puts it, whether it
// is an archive to unpack there, and its limits.
type RecipeInput struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	MaxSize     int64  `json:"max_size,omitempty"`
	Unpack      bool   `json:"unpack,omitempty"`
	MaxUnpacked int64  `json:"max_unpacked,omitempty"`
}

// Recipe returns what a job of t runs in env (nil: none known, for jobs
// accepted before recipes were kept).
func (t *Template) Recipe(env *Environment) *Recipe {
	r := &Recipe{Version: RecipeVersion, Template: t.Name, TemplateVersion: t.Version, Image: t.Image, ImageArchive: t.ImageArchive,
		Command: t.Command, Outputs: t.Outputs, Verify: t.Adapters.Verify, Prepare: t.Adapters.Prepare, Collect: t.Adapters.Collect}
	if t.Image != "" {
		r.Workdir, r.Network, r.Gateway = t.Container.Workdir, t.Container.Network, t.Container.Gateway
		if env != nil {
			r.Runtime, r.RuntimeFlags, r.ImageStore = env.ContainerRuntime, env.ContainerFlags, env.ImageStore
		}
	}
	for _, in := range t.Inputs {
		ri := RecipeInput{Name: in.Name, Path: in.Path, MaxSize: int64(in.MaxSize), Unpack: in.Unpack}
		if in.Unpack {
			ri.MaxUnpacked = cmp.Or(int64(in.MaxUnpackedSize), DefaultMaxUnpacked)
		}
		r.Inputs = append(r.Inputs, ri)
	}
	return r
}

// Encode returns the recipe's stored form.
func (r *Recipe) Encode() json.RawMessage {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // strings and slices of strings always marshal
	}
	return b
}

// DecodeRecipe reads a recipe's stored form.
func DecodeRecipe(b []byte) (*Recipe, error) {
	var r Recipe
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("stored recipe: %w", err)
	}
	if r.Version != RecipeVersion {
		return nil, fmt.Errorf("stored recipe has version %d; this hpcgate reads version %d", r.Version, RecipeVersion)
	}
	return &r, nil
}
