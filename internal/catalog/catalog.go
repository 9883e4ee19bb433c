// Package catalog holds the job templates and runtime environments a
// gateway offers, and turns a job request into a validated job: parameters
// checked against the template's JSON Schema (compiled once, at load),
// inputs against the template's declarations, resources against the
// template's and the environment's limits.
package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"net"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/container"
	"github.com/hpcgate/hpcgate/internal/job"
	"gopkg.in/yaml.v3"
)

// ErrNotFound is returned (wrapped) for an unknown template or environment.
var ErrNotFound = errors.New("not found")

// ErrNotGiven is returned (wrapped) by a StatFunc for a file the caller
// may not name as an input.
var ErrNotGiven = errors.New("not one of the caller's files")

// ErrLater is returned (wrapped) by a StatFunc for an input that is not
// there yet but may be when the job starts: an output of a job the new
// job waits for. Its size is known only then.
var ErrLater = errors.New("not there until a job it waits for ends")

// Input declares one input file of a template.
type Input struct {
	Name        string `yaml:"name"`
	Path        string `yaml:"path"` // where the agent puts it, relative to the working directory
	Required    bool   `yaml:"required"`
	MaxSize     Size   `yaml:"max_size"`
	Description string `yaml:"description"`
	// Unpack: the input is a .tar.gz, .tar or .zip archive that the agent
	// unpacks into the directory Path (the archive itself is not kept).
	Unpack bool `yaml:"unpack"`
	// MaxUnpackedSize bounds the bytes an archive unpacks to (default
	// DefaultMaxUnpacked).
	MaxUnpackedSize Size `yaml:"max_unpacked_size"`
}

// DefaultMaxUnpacked bounds what an archive input unpacks to when its
// template says nothing: a guard against archives that expand without end.
const DefaultMaxUnpacked = 10 << 30

// Limits are resource numbers in a template or environment.
type Limits struct {
	Nodes        int   `yaml:"nodes"`
	CoresPerNode int   `yaml:"cores_per_node"`
	MemoryMB     int64 `yaml:"memory_mb"`
	WalltimeS    int64 `yaml:"walltime_s"`
}

// limit is one of Limits' numbers, by its name in YAML.
type limit struct {
	name  string
	value int64
}

// named returns l's numbers by their names in YAML.
func (l Limits) named() []limit {
	return []limit{{"nodes", int64(l.Nodes)}, {"cores_per_node", int64(l.CoresPerNode)}, {"memory_mb", l.MemoryMB}, {"walltime_s", l.WalltimeS}}
}

// negative returns an error naming l's first negative number as
// "what.name", or nil.
func (l Limits) negative(what string) error {
	for _, f := range l.named() {
		if f.value < 0 {
			return fmt.Errorf("%s.%s %d: must not be negative", what, f.name, f.value)
		}
	}
	return nil
}

func (l Limits) resources() job.Resources {
	return job.Resources{Nodes: l.Nodes, CoresPerNode: l.CoresPerNode, MemoryMB: l.MemoryMB, WalltimeS: l.WalltimeS}
}

// Adapters are argv lists the agent runs around the command.
type Adapters struct {
	Verify  []string `yaml:"verify"`
	Prepare []string `yaml:"prepare"`
	Collect []string `yaml:"collect"`
}

// Template is a job template, as written in YAML.
type Template struct {
	Name        string `yaml:"name"`
	Version     int    `yaml:"version"`
	Description string `yaml:"description"`
	Image       string `yaml:"image"`
	// ImageArchive names an image archive in the object store (pushed
	// with hpcgate image push) that holds Image: the agent loads it on a
	// node whose runtime lacks Image.
	ImageArchive string         `yaml:"image_archive"`
	Command      []string       `yaml:"command"`
	Parameters   map[string]any `yaml:"parameters"`
	Inputs       []Input        `yaml:"inputs"`
	Outputs      []string       `yaml:"outputs"`
	Environments []string       `yaml:"environments"`
	Resources    struct {
		Default Limits `yaml:"default"`
		Max     Limits `yaml:"max"`
	} `yaml:"resources"`
	Adapters  Adapters         `yaml:"adapters"`
	Container ContainerOptions `yaml:"container"`

	schema *Schema
	// unavailable says why the template cannot run in environments it
	// names that are configured here (its image is not allowed there, or
	// there is no container runtime), by environment.
	unavailable map[string]string
	schemaJSON  json.RawMessage
}

// ContainerOptions say how a template's image runs.
type ContainerOptions struct {
	// Workdir is where the job's directory appears in the container
	// (default /work).
	Workdir string `yaml:"workdir"`
	// Network: the command needs the network (the environment must allow
	// it: container_network); without it the container has none.
	Network bool `yaml:"network"`
	// Gateway: the command talks to the gateway (submits children, reads
	// its inputs lazily). The agent serves the gateway on a socket in the
	// job's directory, with the job's token, and mounts the hpcgate client
	// (when it is a static binary): the container needs no network for it.
	Gateway bool `yaml:"gateway"`
}

// DefaultWorkdir is where a job's directory appears in its container.
const DefaultWorkdir = "/work"

// Unavailable returns why t cannot run in environment env, which it names,
// or "" if it can (or does not name it).
func (t *Template) Unavailable(env string) string { return t.unavailable[env] }

// SchemaJSON is the parameter schema as JSON.
func (t *Template) SchemaJSON() json.RawMessage { return t.schemaJSON }

// Environment is a runtime environment, as written in the server config.
type Environment struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Scheduler   string `yaml:"scheduler"` // local, slurm or sge
	Partition   string `yaml:"partition"` // slurm
	Account     string `yaml:"account"`   // slurm
	QOS         string `yaml:"qos"`       // slurm
	// SlurmConf is the slurm.conf of the cluster this environment's jobs
	// go to (SLURM_CONF for every Slurm command; "": Slurm's default), so
	// that one gateway serves several Slurm clusters.
	SlurmConf string `yaml:"slurm_conf"`
	Queue     string `yaml:"queue"` // sge
	// ParallelEnv is Grid Engine's parallel environment for jobs of more
	// than one core (default smp, all on one host). A name with %d is one
	// parallel environment per number of cores a job has on each host
	// (mpi-%d: mpi-1, mpi-2, ...), each with that number as its
	// allocation rule: every job then gets exactly its nodes x cores.
	ParallelEnv string `yaml:"parallel_environment"` // sge
	// GatewayHost is the host name or address this environment's jobs
	// reach the gateway at, when it is not that of public_url (nodes on
	// another network). The gateway also listens there, on its port, and
	// its self-signed certificate names it.
	GatewayHost string `yaml:"gateway_host"`
	// Launcher is the command that starts one process per task on every
	// node of a job (HPCGATE_LAUNCH; default srun on Slurm, mpirun
	// elsewhere).
	Launcher []string `yaml:"launcher"`
	// JobScript is a text/template file for the engine's job script
	// (default: the embedded one, which only starts the agent).
	JobScript string `yaml:"job_script"`
	// ContainerRuntime runs the templates that have an image: podman,
	// apptainer or docker ("": none, so such templates are not offered
	// here). Templates without an image run on the host.
	ContainerRuntime string `yaml:"container_runtime"`
	// ContainerFlags are an operator's extra options for the runtime
	// (placed before the image).
	ContainerFlags []string `yaml:"container_flags"`
	// Images, when set, are the only images templates may use here: an
	// entry ending in "/" or ":" allows every image that starts with it (a
	// registry, a repository), any other entry that image exactly.
	Images []string `yaml:"images"`
	// ContainerNetwork lets templates that ask for it (container.network)
	// use the node's network; otherwise no template does.
	ContainerNetwork bool `yaml:"container_network"`
	// ImageStore is a read-only podman image store (a storage root filled
	// by root) that jobs running as users' own accounts use with rootless
	// podman (podman's additionalimagestores), so that no user pulls or
	// loads the images.
	ImageStore string `yaml:"image_store"`
	// Env are variables every job of the environment gets (a runtime's
	// CONTAINERS_CONF, a module path); names starting with HPCGATE_ are
	// hpcgate's own.
	Env         map[string]string `yaml:"env"`
	WorkdirRoot string            `yaml:"workdir_root"`
	Max         Limits            `yaml:"max"`
}

// launcherWord is one word of a launcher: no shell syntax, no space.
var launcherWord = regexp.MustCompile(`^[A-Za-z0-9_./=:,+-]{1,128}$`)

// hostRE is a host name (an address is checked by net.ParseIP).
var hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.?)*$`)

// check checks what e says of itself: where its nodes reach the
// gateway, their launcher, their cluster, that its keys are its engine's,
// that its limits are not negative, and that more than one node is
// offered only where the engine can place them.
func (e *Environment) check() error {
	if h := e.GatewayHost; h != "" && net.ParseIP(h) == nil && (len(h) > 253 || !hostRE.MatchString(h)) {
		return fmt.Errorf("gateway_host %q: want a host name or an address", e.GatewayHost)
	}
	for _, w := range e.Launcher {
		if !launcherWord.MatchString(w) {
			return fmt.Errorf("launcher word %q: want letters, digits and _./=:,+- only", w)
		}
	}
	// a key of another engine was ignored without a word
	for _, k := range []struct {
		key, value, scheduler string
	}{{"partition", e.Partition, "slurm"}, {"account", e.Account, "slurm"}, {"qos", e.QOS, "slurm"}, {"slurm_conf", e.SlurmConf, "slurm"},
		{"queue", e.Queue, "sge"}, {"parallel_environment", e.ParallelEnv, "sge"}} {
		if k.value != "" && e.Scheduler != k.scheduler {
			return fmt.Errorf("%s is for scheduler %s, not %s", k.key, k.scheduler, e.Scheduler)
		}
	}
	if e.SlurmConf != "" && !path.IsAbs(e.SlurmConf) {
		return fmt.Errorf("slurm_conf %q: want an absolute path", e.SlurmConf)
	}
	if err := e.Max.negative("max"); err != nil {
		return fmt.Errorf("%w (0 or none: no limit)", err)
	}
	if pe := e.ParallelEnv; pe != "" {
		if strings.Count(pe, "%") > 1 || strings.Contains(pe, "%") && !strings.Contains(pe, "%d") ||
			strings.ContainsFunc(strings.ReplaceAll(pe, "%d", "1"), func(r rune) bool {
				return !(r == '_' || r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
			}) {
			return fmt.Errorf("parallel_environment %q: want a name, with at most one %%d", pe)
		}
	}
	if e.Scheduler == "sge" && e.Max.Nodes > 1 && !strings.Contains(e.ParallelEnv, "%d") {
		return fmt.Errorf("max.nodes %d: Grid Engine places a job's cores on several hosts exactly only through parallel environments with a fixed allocation rule: set parallel_environment to a name with %%d (mpi-%%d: mpi-1, mpi-2, ...)", e.Max.Nodes)
	}
	if e.Scheduler == "local" && e.Max.Nodes > 1 {
		return fmt.Errorf("max.nodes %d: the local executor has one node", e.Max.Nodes)
	}
	return nil
}

// Limits are the most a job may ask for in e: its max, with one node
// where its engine cannot place a job on several (the local executor, and
// Grid Engine without a parallel environment per cores per host).
func (e *Environment) Limits() Limits {
	m := e.Max
	if e.Scheduler == "local" || e.Scheduler == "sge" && !strings.Contains(e.ParallelEnv, "%d") {
		m.Nodes = 1
	}
	return m
}

// CannotRun says why e cannot run t (its image, its network), or "".
func (e *Environment) CannotRun(t *Template) string {
	if t.Image == "" {
		return ""
	}
	if e.ContainerRuntime == "" || e.ContainerRuntime == string(container.Host) {
		return "it has no container runtime"
	}
	if len(e.Images) > 0 && !slices.ContainsFunc(e.Images, func(allowed string) bool { return imageAllowed(allowed, t.Image) }) {
		return fmt.Sprintf("its images are limited to %s", strings.Join(e.Images, ", "))
	}
	if t.Container.Network && !e.ContainerNetwork {
		return "its containers have no network, and the template asks for it"
	}
	return ""
}

func imageAllowed(allowed, image string) bool {
	if strings.HasSuffix(allowed, "/") || strings.HasSuffix(allowed, ":") {
		return strings.HasPrefix(image, allowed)
	}
	return image == allowed
}

// Catalog is the set of templates and environments. It does not change
// after Load.
type Catalog struct {
	templates map[string][]*Template // by name, oldest version first
	envs      map[string]*Environment
	envNames  []string
	// Warnings name templates left out because none of their environments
	// is configured here.
	Warnings []string
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

var envVarRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// ImageArchiveRE is an image archive's name in the object store.
var ImageArchiveRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// imageRE is an image reference (docker and OCI names, apptainer's
// docker://, oras:// and library:// forms, or an absolute path to a SIF
// file): never an option, never a space.
var imageRE = regexp.MustCompile(`^(?:[a-z]+://)?[A-Za-z0-9/][A-Za-z0-9._/:@+-]{0,254}$`)

// validImage reports whether s is an image reference (imageRE) with no
// empty, "." or ".." part: "localhost/" or "a//b" passed the pattern and
// failed only when the job ran.
func validImage(s string) bool {
	if !imageRE.MatchString(s) || strings.HasSuffix(s, "/") || strings.HasSuffix(s, ":") {
		return false
	}
	_, rest, scheme := strings.Cut(s, "://")
	if !scheme {
		rest = strings.TrimPrefix(s, "/") // a path to an apptainer image
	}
	for _, part := range strings.Split(rest, "/") {
		if part == "" || part == "." || part == ".." {
			return false
		}
	}
	return true
}

// Load reads every *.yaml and *.yml template file of each fsys and checks
// them against each other and against envs. Every problem is reported. A
// template may name environments this gateway does not have (the built-in
// examples name local, slurm and sge): those are dropped from it, and a
// template left with none is not offered (see Warnings).
func Load(envs []Environment, fsyss ...fs.FS) (*Catalog, error) {
	c := &Catalog{templates: map[string][]*Template{}, envs: map[string]*Environment{}}
	var errs []error
	for i := range envs {
		e := &envs[i]
		if !nameRE.MatchString(e.Name) {
			errs = append(errs, fmt.Errorf("environment %q: name must match %s", e.Name, nameRE))
			continue
		}
		if _, dup := c.envs[e.Name]; dup {
			errs = append(errs, fmt.Errorf("environment %q defined twice", e.Name))
			continue
		}
		if _, err := container.ParseKind(e.ContainerRuntime); err != nil {
			errs = append(errs, fmt.Errorf("environment %s: %w", e.Name, err))
		}
		if st := e.ImageStore; st != "" && (!path.IsAbs(st) || path.Clean(st) != st || strings.ContainsFunc(st, func(r rune) bool { return r < 0x20 || r == '"' || r == '\\' || r == 0x7f })) {
			errs = append(errs, fmt.Errorf("environment %s: image_store %q: want an absolute, clean path", e.Name, st))
		}
		if err := e.check(); err != nil {
			errs = append(errs, fmt.Errorf("environment %s: %w", e.Name, err))
		}
		for k := range e.Env {
			if !envVarRE.MatchString(k) || strings.HasPrefix(k, "HPCGATE_") {
				errs = append(errs, fmt.Errorf("environment %s: env %q: want a variable name not starting with HPCGATE_", e.Name, k))
			}
		}
		c.envs[e.Name] = e
		c.envNames = append(c.envNames, e.Name)
	}
	where := map[*Template]string{} // the file each template came from, and its place
	for i, fsys := range fsyss {
		names, err := fs.Glob(fsys, "*.y*ml")
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			if ext := path.Ext(name); ext != ".yaml" && ext != ".yml" {
				continue
			}
			data, err := fs.ReadFile(fsys, name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			t, err := parseTemplate(data)
			if err != nil {
				// each problem on a line of its own names the file: only
				// the first did
				for _, line := range strings.Split(err.Error(), "\n") {
					if strings.TrimSpace(line) != "" {
						errs = append(errs, fmt.Errorf("template file %s: %s", name, strings.TrimSpace(line)))
					}
				}
				continue
			}
			var here, why []string
			for _, e := range t.Environments {
				env, ok := c.envs[e]
				if !ok {
					continue
				}
				if reason := env.CannotRun(t); reason != "" {
					t.unavailable[e] = reason
					why = append(why, fmt.Sprintf("not %s: %s", e, reason))
					continue
				}
				here = append(here, e)
			}
			if len(here) == 0 {
				msg := fmt.Sprintf("template %s (%s) is left out: none of its environments %v is configured", t.Name, name, t.Environments)
				if len(why) > 0 {
					msg = fmt.Sprintf("template %s (%s) is left out: it can run in none of its environments (%s)", t.Name, name, strings.Join(why, "; "))
				}
				c.Warnings = append(c.Warnings, msg)
				continue
			}
			t.Environments = here
			place := fmt.Sprintf("template set %d", i+1)
			if s, ok := fsys.(fmt.Stringer); ok {
				place = s.String() // the gateway names its sets: a directory, or the built-in templates
			}
			where[t] = name + " in " + place
			for _, old := range c.templates[t.Name] {
				if old.Version == t.Version {
					errs = append(errs, fmt.Errorf("template %s version %d defined twice: %s and %s", t.Name, t.Version, where[old], where[t]))
				}
			}
			c.templates[t.Name] = append(c.templates[t.Name], t)
		}
	}
	for _, ts := range c.templates {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Version < ts[j].Version })
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func parseTemplate(data []byte) (*Template, error) {
	var t Template
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return nil, YAMLError(err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		bad("a template file holds one template: it has a second YAML document (after ---); put each template in a file of its own")
	}
	if !nameRE.MatchString(t.Name) {
		bad("name %q must match %s", t.Name, nameRE)
	}
	if t.Version < 1 {
		bad("version must be 1 or more")
	}
	if len(t.Command) == 0 {
		bad("command is empty")
	}
	if len(t.Environments) == 0 {
		bad("environments is empty")
	}
	if t.Image != "" && !validImage(t.Image) {
		bad("image %q is not an image name (registry/repository:tag, or a path to an apptainer image)", t.Image)
	}
	if t.ImageArchive != "" && (t.Image == "" || !ImageArchiveRE.MatchString(t.ImageArchive)) {
		bad("image_archive %q: needs image, and a name of letters, digits, '.', '_' and '-'", t.ImageArchive)
	}
	if t.Container.Workdir == "" {
		t.Container.Workdir = DefaultWorkdir
	}
	if w := t.Container.Workdir; !path.IsAbs(w) || path.Clean(w) != w || w == "/" || strings.ContainsAny(w, ":,") {
		bad("container.workdir %q: want an absolute, clean path other than /, without ':' or ','", w)
	}
	t.unavailable = map[string]string{}
	if t.Parameters == nil {
		t.Parameters = map[string]any{"type": "object", "additionalProperties": false}
	}
	seen := map[string]bool{}
	at := map[string]string{} // input path → the input's name
	for _, in := range t.Inputs {
		switch {
		case !nameRE.MatchString(in.Name):
			bad("input name %q must match %s", in.Name, nameRE)
		case seen[in.Name]:
			bad("input name %q is used twice", in.Name)
		}
		seen[in.Name] = true
		// two inputs at one path, or one inside another (an unpacked
		// archive's directory): the job got one of them and said nothing
		for p, other := range at {
			if p == in.Path || strings.HasPrefix(in.Path, p+"/") || strings.HasPrefix(p, in.Path+"/") {
				bad("inputs %s and %s: paths %q and %q overlap: each input needs a place of its own", other, in.Name, p, in.Path)
			}
		}
		at[in.Path] = in.Name
		if err := blob.CheckPath(in.Path); err != nil {
			bad("input %s: path: %v", in.Name, err)
		} else if t.Image != "" && strings.ContainsAny(in.Path, ":,") {
			// each input is a mount of its own, and runtimes split mounts on these
			bad("input %s: path %q: a template with an image cannot have ':' or ',' in an input's path", in.Name, in.Path)
		}
		if in.Path == "params.json" {
			bad("input %s: path params.json is where the agent writes the parameters", in.Name)
		}
		if in.MaxUnpackedSize < 0 || (in.MaxUnpackedSize > 0 && !in.Unpack) {
			bad("input %s: max_unpacked_size is for inputs with unpack: true, and not negative", in.Name)
		}
	}
	for _, o := range t.Outputs {
		if _, err := path.Match(o, ""); err != nil || blob.CheckPath(strings.ReplaceAll(o, "*", "x")) != nil {
			bad("output pattern %q is not a relative glob", o)
		}
	}
	// a parameter required but not allowed: no job could be made of it
	if req, ok := t.Parameters["required"].([]any); ok && t.Parameters["additionalProperties"] == false {
		props, _ := t.Parameters["properties"].(map[string]any)
		for _, r := range req {
			if name, _ := r.(string); props[name] == nil {
				bad("parameters: %q is required but is none of the properties, and additionalProperties is false: no job could have it", name)
			}
		}
	}
	schemaJSON, err := json.Marshal(t.Parameters)
	if err != nil {
		bad("parameters: %v", err)
	} else if t.schema, err = CompileSchema(schemaJSON); err != nil {
		bad("parameters: %v", err)
	} else if !slices.Contains(t.schema.types, "object") {
		bad("parameters: the schema's type must be object")
	}
	t.schemaJSON = schemaJSON
	d, m := t.Resources.Default.named(), t.Resources.Max.named()
	for i := range d {
		if m[i].value > 0 && d[i].value > m[i].value {
			bad("resources: default.%s %d exceeds max.%s %d", d[i].name, d[i].value, m[i].name, m[i].value)
		}
	}
	for _, err := range []error{t.Resources.Default.negative("resources: default"), t.Resources.Max.negative("resources: max")} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return &t, errors.Join(errs...)
}

// NotFoundError is an unknown template, version or environment, with a
// message for the person who asked: what there is instead.
type NotFoundError struct{ msg string }

func (e *NotFoundError) Error() string        { return e.msg }
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// Template returns the template of that name and version (0: the newest).
func (c *Catalog) Template(name string, version int) (*Template, error) {
	ts := c.templates[name]
	if len(ts) == 0 {
		return nil, &NotFoundError{fmt.Sprintf("no template %q%s", name, closest(name, slices.Collect(maps.Keys(c.templates))))}
	}
	if version == 0 {
		return ts[len(ts)-1], nil
	}
	var have []string
	for _, t := range ts {
		if t.Version == version {
			return t, nil
		}
		have = append(have, strconv.Itoa(t.Version))
	}
	return nil, &NotFoundError{fmt.Sprintf("template %q has no version %d; its versions: %s", name, version, strings.Join(have, ", "))}
}

// closest suggests the one of names nearest to name, if any is near (a
// typo: two edits at most, or one for short names).
func closest(name string, names []string) string {
	best, dist := "", min(2, len(name)/3)+1
	slices.Sort(names)
	for _, n := range names {
		if d := editDistance(strings.ToLower(name), strings.ToLower(n)); d < dist {
			best, dist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of a and b, by bytes.
func editDistance(a, b string) int {
	if len(a) > 256 || len(b) > 256 {
		return max(len(a), len(b)) // no typo of each other worth the work
	}
	row := make([]int, len(b)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		prev := row[0]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			cur := row[j]
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			row[j] = min(row[j]+1, row[j-1]+1, prev+cost)
			prev = cur
		}
	}
	return row[len(b)]
}

// Templates returns every template, by name then version.
func (c *Catalog) Templates() []*Template {
	var out []*Template
	names := make([]string, 0, len(c.templates))
	for n := range c.templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, c.templates[n]...)
	}
	return out
}

// Environment returns the environment of that name.
func (c *Catalog) Environment(name string) (*Environment, error) {
	e, ok := c.envs[name]
	if !ok {
		return nil, &NotFoundError{fmt.Sprintf("no environment %q; the environments: %s", name, strings.Join(c.envNames, ", "))}
	}
	return e, nil
}

// Environments returns every environment, in configuration order.
func (c *Catalog) Environments() []*Environment {
	out := make([]*Environment, 0, len(c.envNames))
	for _, n := range c.envNames {
		out = append(out, c.envs[n])
	}
	return out
}

// FieldError is one invalid field of a request.
type FieldError struct {
	Field   string
	Message string
}

// ValidationError lists every invalid field of a request.
type ValidationError struct {
	Fields []FieldError
}

// maxErrorText is the most fields Error names; a request can have
// thousands of faults, each listed in a problem's errors.
const maxErrorText = 10

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid job request: ")
	for i, f := range e.Fields[:min(len(e.Fields), maxErrorText)] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Field + ": " + f.Message)
	}
	if n := len(e.Fields) - maxErrorText; n > 0 {
		fmt.Fprintf(&b, "; and %d more", n)
	}
	return b.String()
}

func (e *ValidationError) add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// MaxParameterBytes bounds a job's parameters as JSON. They are a job's
// settings, kept with it and sent in every page of jobs that lists it;
// data belongs in input files.
const MaxParameterBytes = 64 << 10

// unfitValues adds to verr what no schema need say, at any depth of v
// (decoded JSON at path): a number no float64 holds (1e400 would reach
// the job as +Inf), a string or key with a NUL (parameters become
// environment variables, which cannot hold one). It reports whether it
// found any.
func unfitValues(v any, path string, verr *ValidationError) bool {
	bad := false
	switch x := v.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err != nil || math.IsInf(f, 0) {
			verr.add(path, "%s is out of range: a number must fit a 64-bit float", x)
			bad = true
		}
	case string:
		if strings.ContainsRune(x, 0) {
			verr.add(path, "must not contain the NUL character (U+0000)")
			bad = true
		}
	case []any:
		for i, e := range x {
			bad = unfitValues(e, path+"["+strconv.Itoa(i)+"]", verr) || bad
		}
	case map[string]any:
		for k, e := range x {
			if strings.ContainsRune(k, 0) {
				verr.add(path, "a key must not contain the NUL character (U+0000)")
				bad = true
				continue
			}
			bad = unfitValues(e, path+"."+k, verr) || bad
		}
	}
	return bad
}

// validateParameters checks params (JSON) against the template's schema,
// applies the top-level defaults, and returns the result as JSON. Problems
// are added to verr with paths under "parameters".
func (t *Template) validateParameters(params json.RawMessage, verr *ValidationError) json.RawMessage {
	if len(bytes.TrimSpace(params)) == 0 || string(bytes.TrimSpace(params)) == "null" {
		params = json.RawMessage("{}")
	}
	if len(params) > MaxParameterBytes {
		verr.add("parameters", "%d bytes of JSON, more than the limit of %d: put large data in an input file", len(params), MaxParameterBytes)
		return nil
	}
	v, err := decodeJSON(params)
	if err != nil {
		verr.add("parameters", "not valid JSON: %v", err)
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		verr.add("parameters", "must be a JSON object, not %s", typeOf(v))
		return nil
	}
	if bad := unfitValues(obj, "parameters", verr); bad {
		return nil
	}
	for name, p := range t.schema.props {
		if _, set := obj[name]; !set && p.hasDefault {
			obj[name] = p.Default
		}
	}
	fields := t.schema.Validate(obj, "parameters")
	if len(fields) > 0 {
		for i := range fields {
			if strings.Count(fields[i].Field, ".") == 1 && fields[i].Message == "is not allowed here" {
				fields[i].Message = "is not a parameter of template " + t.Name
			}
		}
		verr.Fields = append(verr.Fields, fields...)
		return nil
	}
	out, err := json.Marshal(t.schema.Integers(obj))
	if err != nil {
		verr.add("parameters", "%v", err)
		return nil
	}
	return out
}
