package tes

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/ctlchar"
)

// MaxExecutors bounds a task's executors, MaxInputs its inputs and
// outputs each (a DIRECTORY input is a listing of the user's files).
const (
	MaxExecutors = 100
	MaxInputs    = 1000
)

// MaxContent is the most an input's content may hold (TES asks servers
// for at least 128 KiB).
const MaxContent = 1 << 20

// A Ref is where an input comes from or an output goes, in hpcgate's
// terms.
type Ref struct {
	Kind string // "file": the user's file Path; "job": a job's output (Path is job:ID/outputs/PATH); "https": the URL
	Path string
}

// ParseURL reads a task's url. s3://BUCKET/PATH, where BUCKET is the one
// service-info lists under storage, and a plain relative PATH are the
// user's file PATH, on whatever store the gateway has; job:ID/outputs/PATH
// is a job's output; https:// (inputs only) a URL; file:// and anything
// else are refused.
func ParseURL(raw, bucket string, input bool) (Ref, error) {
	switch {
	case strings.HasPrefix(raw, "job:"):
		if !input {
			return Ref{}, fmt.Errorf("outputs go to the user's files (s3://%s/PATH or PATH), not to a job", bucket)
		}
		id, rest, ok := strings.Cut(strings.TrimPrefix(raw, "job:"), "/outputs/")
		if !ok || id == "" || strings.ContainsAny(id, "/:") || blob.CheckPath(rest) != nil {
			return Ref{}, fmt.Errorf("want job:ID/outputs/PATH, PATH a clean relative path")
		}
		return Ref{Kind: "job", Path: raw}, nil
	case strings.HasPrefix(raw, "https://"):
		if !input {
			return Ref{}, fmt.Errorf("outputs go to the user's files (s3://%s/PATH or PATH), not to a URL", bucket)
		}
		if u, err := url.Parse(raw); err != nil || u.Hostname() == "" {
			return Ref{}, fmt.Errorf("not a URL with a host")
		}
		return Ref{Kind: "https", Path: raw}, nil
	case strings.HasPrefix(raw, "s3://"):
		rest := strings.TrimPrefix(raw, "s3://")
		b, p, _ := strings.Cut(rest, "/")
		if b != bucket {
			return Ref{}, fmt.Errorf("the bucket here is %s (service-info lists it under storage)", bucket)
		}
		return filePath(p)
	case strings.Contains(raw, "://"):
		return Ref{}, fmt.Errorf("want s3://%s/PATH, a relative PATH, job:ID/outputs/PATH or https:// (file:// and others are not served)", bucket)
	}
	return filePath(raw)
}

func filePath(p string) (Ref, error) {
	if err := blob.CheckPath(p); err != nil || strings.HasPrefix(p, "job:") {
		return Ref{}, fmt.Errorf("want a clean relative path of the user's files")
	}
	return Ref{Kind: "file", Path: p}, nil
}

// envNameRE is a variable name a container runtime passes on.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Check reports every problem of task t, as the API's field errors (the
// field is the task's JSON path, such as executors[0].image). bucket is
// the name service-info lists under storage.
func Check(t *Task, bucket string) []api.FieldError {
	var errs []api.FieldError
	bad := func(field, format string, args ...any) {
		errs = append(errs, api.FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	abs := func(field, p string, required bool) {
		if p == "" {
			if required {
				bad(field, "is required")
			}
			return
		}
		if !path.IsAbs(p) || path.Clean(p) != p || strings.ContainsRune(p, 0) {
			bad(field, "must be a clean absolute path")
		}
	}
	if len(t.Name) > api.MaxJobName {
		bad("name", "at most %d characters", api.MaxJobName)
	}
	if ctlchar.In(t.Name) {
		bad("name", ctlchar.Refusal)
	}
	if len(t.Executors) == 0 {
		bad("executors", "at least one executor is needed")
	}
	if len(t.Executors) > MaxExecutors {
		bad("executors", "at most %d executors", MaxExecutors)
	}
	if len(t.Inputs) > MaxInputs {
		bad("inputs", "at most %d inputs: put many files in a DIRECTORY input", MaxInputs)
	}
	if len(t.Outputs) > MaxInputs {
		bad("outputs", "at most %d outputs: deliver many files with a DIRECTORY output or a glob", MaxInputs)
	}
	for i, v := range t.Volumes {
		abs(fmt.Sprintf("volumes[%d]", i), v, true)
	}
	for i, e := range t.Executors {
		f := fmt.Sprintf("executors[%d]", i)
		if e.Image == "" {
			bad(f+".image", "is required")
		} else if strings.HasPrefix(e.Image, "-") || strings.ContainsFunc(e.Image, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			bad(f+".image", "%q is not an image name", e.Image)
		}
		if len(e.Command) == 0 {
			bad(f+".command", "is required")
		}
		for j, a := range e.Command {
			if strings.ContainsRune(a, 0) {
				bad(fmt.Sprintf("%s.command[%d]", f, j), "may not have a NUL byte: no program can be given one")
			}
		}
		abs(f+".workdir", e.Workdir, false)
		abs(f+".stdin", e.Stdin, false)
		abs(f+".stdout", e.Stdout, false)
		abs(f+".stderr", e.Stderr, false)
		for k, v := range e.Env {
			if !envNameRE.MatchString(k) {
				bad(f+".env", "%q is not a variable name (letters, digits and _, not first a digit)", k)
			}
			if strings.ContainsAny(v, "\x00\n\r") {
				bad(f+".env."+k, "may not have a NUL byte or a line break")
			}
		}
	}
	for i, in := range t.Inputs {
		f := fmt.Sprintf("inputs[%d]", i)
		abs(f+".path", in.Path, true)
		switch {
		case in.URL == "" && in.Content == "":
			bad(f+".url", "url or content is required")
		case in.URL != "" && in.Content != "":
			bad(f+".content", "either url or content, not both")
		case len(in.Content) > MaxContent:
			bad(f+".content", "at most %d bytes", MaxContent)
		case in.URL != "":
			if _, err := ParseURL(in.URL, bucket, true); err != nil {
				bad(f+".url", "%v", err)
			}
		}
		if in.Type != "" && in.Type != File && in.Type != Directory {
			bad(f+".type", "must be FILE or DIRECTORY")
		}
		if in.Content != "" && in.Type == Directory {
			bad(f+".type", "content makes a file: a DIRECTORY input needs a url")
		}
	}
	if len(t.Inputs) <= MaxInputs {
		overlaps(t.Inputs, bad)
	}
	for i, out := range t.Outputs {
		f := fmt.Sprintf("outputs[%d]", i)
		abs(f+".path", strings.NewReplacer("*", "x", "?", "x", "[", "x", "]", "x").Replace(out.Path), true)
		if _, err := ParseURL(out.URL, bucket, false); err != nil {
			bad(f+".url", "%v", err)
		}
		if _, err := path.Match(out.Path, ""); err != nil {
			bad(f+".path", "%q is not a pattern: a '[' needs its ']'", out.Path)
		} else if strings.ContainsAny(out.Path, "*?[") {
			if out.PathPrefix == "" {
				bad(f+".path_prefix", "is required when the path has wildcards")
			} else if !strings.HasPrefix(out.Path, out.PathPrefix) {
				bad(f+".path_prefix", "must begin the path")
			}
		}
		if out.Type != "" && out.Type != File && out.Type != Directory {
			bad(f+".type", "must be FILE or DIRECTORY")
		}
		if len(t.Inputs) <= MaxInputs {
			for j, in := range t.Inputs {
				if in.Type != Directory && strings.HasPrefix(out.Path, in.Path+"/") {
					bad(f+".path", "is below inputs[%d], a file: nothing can be written there", j)
					break
				}
			}
		}
	}
	if r := t.Resources; r != nil {
		if r.CPUCores < 0 || r.RAMGB < 0 || r.DiskGB < 0 {
			bad("resources", "must not be negative")
		}
		if r.CPUCores > 1<<20 {
			bad("resources.cpu_cores", "at most %d", 1<<20)
		}
		if r.RAMGB > 1<<20 || r.DiskGB > 1<<30 {
			bad("resources.ram_gb", "at most %d GB of memory and %d GB of disk", 1<<20, 1<<30)
		}
	}
	return errs
}

// overlaps reports inputs that share a place: a second input at a path
// would silently win, and one below a file could not be written at all.
// Sorted with "/" first of all characters, a path follows its parents
// directly, so one pass with a stack of the file paths above finds every
// clash: n log n, one report an input at most.
func overlaps(inputs []Input, bad func(field, format string, args ...any)) {
	key := make([]string, len(inputs))
	order := make([]int, len(inputs))
	for i, in := range inputs {
		key[i], order[i] = strings.ReplaceAll(in.Path, "/", "\x00"), i
	}
	sort.SliceStable(order, func(a, b int) bool { return key[order[a]] < key[order[b]] })
	prev := -1
	var files []int // file inputs above the current path, innermost last
	for _, i := range order {
		in, f := inputs[i], fmt.Sprintf("inputs[%d].path", i)
		if prev >= 0 && inputs[prev].Path == in.Path {
			bad(f, "is inputs[%d]'s path too", prev)
			continue
		}
		prev = i
		for len(files) > 0 && !strings.HasPrefix(in.Path, inputs[files[len(files)-1]].Path+"/") {
			files = files[:len(files)-1]
		}
		if len(files) > 0 {
			bad(f, "is below inputs[%d], a file", files[len(files)-1])
			continue
		}
		if in.Type != Directory {
			files = append(files, i)
		}
	}
}
