// Package jobscript renders the batch script a queueing engine runs for a
// job. The script only ever starts the agent: every value in it comes from
// the gateway (the working directory, the agent's argv, the job id), is
// shell-quoted, and no user-supplied value is part of it; the job's
// parameters travel in its spec.
//
// The default template is embedded; operators may give their own per
// environment (text/template, with the function "quote").
package jobscript

import (
	_ "embed"
	"fmt"
	"os"
	"strings"
	"text/template"
)

//go:embed default.sh.tmpl
var defaultText string

// Data is what a template sees.
type Data struct {
	JobID   string   // the gateway's job id (letters and digits)
	Name    string   // sched.SafeName of the job's name
	WorkDir string   // absolute working directory
	Command []string // the agent's argv
}

// Template is a parsed job-script template.
type Template struct{ t *template.Template }

// Quote returns s as one single-quoted shell word.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Parse parses a template text.
func Parse(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"quote": Quote,
		"argv": func(args []string) string {
			q := make([]string, len(args))
			for i, a := range args {
				q[i] = Quote(a)
			}
			return strings.Join(q, " ")
		},
	}).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("job script template %s: %w", name, err)
	}
	return &Template{t: t}, nil
}

// Load reads a template file; path "" gives the default.
func Load(path string) (*Template, error) {
	if path == "" {
		return Default(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, string(b))
}

// Default returns the embedded template.
func Default() *Template {
	t, err := Parse("default.sh.tmpl", defaultText)
	if err != nil {
		panic(err) // the embedded template is tested
	}
	return t
}

// Render renders the script for d.
func (t *Template) Render(d Data) ([]byte, error) {
	if len(d.Command) == 0 {
		return nil, fmt.Errorf("job script: empty command")
	}
	var b strings.Builder
	if err := t.t.Execute(&b, d); err != nil {
		return nil, fmt.Errorf("job script: %w", err)
	}
	return []byte(b.String()), nil
}
