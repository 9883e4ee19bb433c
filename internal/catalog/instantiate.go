package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/ctlchar"
	"github.com/hpcgate/hpcgate/internal/job"
)

// Request is what a user asks for when creating a job.
type Request struct {
	Template    string
	Version     int
	Parameters  json.RawMessage
	Inputs      map[string]string // input name → path in the user's files, job:ID/... reference or https:// URL
	Environment string            // "": the template's first
	Resources   *job.Resources    // nil: the template's defaults
	Labels      map[string]string
}

// Instance is a validated request, ready to become a job.
type Instance struct {
	Template    *Template
	Environment *Environment
	Parameters  json.RawMessage // defaults applied
	Inputs      map[string]string
	InputSizes  map[string]int64
	Resources   job.Resources
}

// StatFunc returns the size of a file in the user's namespace, or an error
// wrapping ErrNotFound, or one wrapping ErrNotGiven if the caller may not
// name it (a job naming a file it was not given).
type StatFunc func(path string) (int64, error)

var labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// checkLabels checks a job's labels (named field in errors).
func checkLabels(labels map[string]string, field string, verr *ValidationError) {
	if len(labels) > 32 {
		verr.add(field, "at most 32 labels")
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			verr.add(field+"."+k, "key must match %s", labelKeyRE)
		}
		if len(v) > 256 {
			verr.add(field+"."+k, "value longer than 256 bytes")
		}
		if ctlchar.In(v) {
			verr.add(field+"."+k, ctlchar.Refusal)
		}
	}
}

// Instantiate validates r against the catalogue and returns the job it
// describes, or a *ValidationError naming every invalid field. A template
// that does not exist is ErrNotFound.
func (c *Catalog) Instantiate(r Request, stat StatFunc) (*Instance, error) {
	t, err := c.Template(r.Template, r.Version)
	if err != nil {
		return nil, &ValidationError{Fields: []FieldError{{Field: "template", Message: err.Error()}}}
	}
	verr := &ValidationError{}
	inst := &Instance{Template: t, Inputs: map[string]string{}, InputSizes: map[string]int64{}}

	inst.Parameters = t.validateParameters(r.Parameters, verr)

	// Environment.
	envName := r.Environment
	if envName == "" {
		envName = t.Environments[0]
	}
	allowed := false
	for _, e := range t.Environments {
		allowed = allowed || e == envName
	}
	env, err := c.Environment(envName)
	switch {
	case err != nil:
		verr.add("environment", "%v", err)
	case !allowed && t.Unavailable(envName) != "":
		verr.add("environment", "template %s cannot run in environment %s: %s; it runs in %v", t.Name, envName, t.Unavailable(envName), t.Environments)
	case !allowed:
		verr.add("environment", "template %s runs only in %v", t.Name, t.Environments)
	default:
		inst.Environment = env
	}

	// Inputs.
	declared := map[string]Input{}
	for _, in := range t.Inputs {
		declared[in.Name] = in
	}
	names := make([]string, 0, len(r.Inputs))
	for n := range r.Inputs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		p := r.Inputs[n]
		field := "inputs." + n
		in, ok := declared[n]
		if !ok {
			verr.add(field, "is not an input of template %s", t.Name)
			continue
		}
		if IsURL(p) {
			// fetched where the job runs; its size is known only then
			if _, err := ParseURLInput(p); err != nil {
				verr.add(field, "%q %v", p, err)
			} else {
				inst.Inputs[n] = p
			}
			continue
		}
		if err := blob.CheckPath(p); err != nil {
			verr.add(field, "path %q: %v", p, err)
			continue
		}
		size, err := stat(p)
		switch {
		case errors.Is(err, ErrNotFound):
			verr.add(field, "file %q does not exist", p)
		case errors.Is(err, ErrNotGiven):
			verr.add(field, "file %q is not one this job was given: a job may name as inputs only its own inputs", p)
		case errors.Is(err, ErrLater):
			inst.Inputs[n] = p // checked when the job starts
		case err != nil:
			return nil, fmt.Errorf("check input %s: %w", n, err)
		case in.MaxSize > 0 && size > int64(in.MaxSize):
			verr.add(field, "file %q is %d bytes, more than the limit of %d", p, size, in.MaxSize)
		default:
			inst.Inputs[n] = p
			inst.InputSizes[n] = size
		}
	}
	for _, in := range t.Inputs {
		if _, given := r.Inputs[in.Name]; in.Required && !given {
			verr.add("inputs."+in.Name, "is required")
		}
	}

	// Resources: the template's defaults, the request over them, then the
	// template's and the environment's maxima.
	res := t.Resources.Default.resources()
	if r.Resources != nil {
		if r.Resources.Nodes != 0 {
			res.Nodes = r.Resources.Nodes
		}
		if r.Resources.CoresPerNode != 0 {
			res.CoresPerNode = r.Resources.CoresPerNode
		}
		if r.Resources.MemoryMB != 0 {
			res.MemoryMB = r.Resources.MemoryMB
		}
		if r.Resources.WalltimeS != 0 {
			res.WalltimeS = r.Resources.WalltimeS
		}
	}
	// 0 is "not given"; a negative count is an error below, not a 1
	if res.Nodes == 0 {
		res.Nodes = 1
	}
	if res.CoresPerNode == 0 {
		res.CoresPerNode = 1
	}
	checkRes := func(field string, v, lo int64) {
		if v < lo {
			verr.add("resources."+field, "must be at least %d", lo)
		}
	}
	checkRes("nodes", int64(res.Nodes), 1)
	checkRes("cores_per_node", int64(res.CoresPerNode), 1)
	checkRes("memory_mb", res.MemoryMB, 0)
	checkRes("walltime_s", res.WalltimeS, 0)
	limit := func(who string, m Limits) {
		over := func(field string, v, max int64) {
			if max > 0 && v > max {
				verr.add("resources."+field, "%d is more than the %s allows (%d)", v, who, max)
			}
		}
		over("nodes", int64(res.Nodes), int64(m.Nodes))
		over("cores_per_node", int64(res.CoresPerNode), int64(m.CoresPerNode))
		over("memory_mb", res.MemoryMB, m.MemoryMB)
		over("walltime_s", res.WalltimeS, m.WalltimeS)
	}
	limit("template", t.Resources.Max)
	if t.Image != "" && res.Nodes > 1 {
		verr.add("resources.nodes", "a template with an image runs on one node")
	}
	if inst.Environment != nil {
		limit("environment "+inst.Environment.Name, inst.Environment.Limits())
	}
	inst.Resources = res

	checkLabels(r.Labels, "labels", verr)
	if len(verr.Fields) > 0 {
		sort.SliceStable(verr.Fields, func(i, j int) bool { return verr.Fields[i].Field < verr.Fields[j].Field })
		return nil, verr
	}
	return inst, nil
}
