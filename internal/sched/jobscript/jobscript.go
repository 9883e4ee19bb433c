// Package jobscript renders the batch script a queueing engine runs for a
// job. The script only ever starts the agent: every value in it comes from
// the gateway (the working directory, the agent's argv, the job id, the
// sanitised name, secrets to write to files), and no user-supplied value
// is part of it; the job's parameters travel in its spec.
//
// # Quoting
//
// The template quotes every value itself: Parse refuses a template with an
// action that prints a value other than through one of its functions:
// "quote" (one single-quoted shell word), "argv" (a command line of quoted
// words) or "comment" (a Go-quoted string on one line, for comments: a
// newline in a value cannot end the comment).
//
// # Secrets
//
// Data.Secrets are written by the script to files (umask 077) before the
// agent starts; Render refuses a template that does not write them all.
// Only an engine whose script other accounts cannot read passes secrets
// here (Slurm keeps it readable by the job's owner and its administrators).
//
// The default template is embedded; operators may give their own per
// environment (text/template).
package jobscript

import (
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
)

//go:embed default.sh.tmpl
var defaultText string

// Data is what a template sees.
type Data struct {
	JobID   string   // the gateway's job id (letters and digits)
	Name    string   // sched.SafeName of the job's name
	WorkDir string   // absolute working directory
	Command []string // the agent's argv
	Secrets []Secret // written to files before the agent starts
}

// Secret is a value the script writes to a file only its account can read.
type Secret struct {
	Path  string // absolute
	Value string
}

// Template is a parsed job-script template.
type Template struct{ t *template.Template }

// Quote returns s as one single-quoted shell word.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Comment returns s as a Go-quoted string: one line, fit for a comment.
func Comment(s string) string { return strconv.Quote(s) }

// quoting are the functions a printed value must go through.
var quoting = template.FuncMap{
	"quote":   Quote,
	"comment": Comment,
	"argv": func(args []string) string {
		q := make([]string, len(args))
		for i, a := range args {
			q[i] = Quote(a)
		}
		return strings.Join(q, " ")
	},
}

// Parse parses a template text. It refuses one that prints a value other
// than through quote, argv or comment.
func Parse(name, text string) (*Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(quoting).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("job script template %s: %w", name, err)
	}
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		if err := checkQuoted(tt.Tree.Root); err != nil {
			return nil, fmt.Errorf("job script template %s: %w", name, err)
		}
	}
	return &Template{t: t}, nil
}

// checkQuoted walks a template's nodes: every action that prints must end
// in a quoting function.
func checkQuoted(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkQuoted(c); err != nil {
				return err
			}
		}
	case *parse.ActionNode:
		if len(n.Pipe.Decl) > 0 {
			return nil // {{$x := ...}} prints nothing
		}
		cmds := n.Pipe.Cmds
		if len(cmds) > 0 {
			if id, ok := cmds[len(cmds)-1].Args[0].(*parse.IdentifierNode); ok && quoting[id.Ident] != nil {
				return nil
			}
		}
		return fmt.Errorf("line %d: %s prints a value unquoted: use quote, argv or comment", n.Line, n)
	case *parse.IfNode:
		return checkBranches(n.List, n.ElseList)
	case *parse.RangeNode:
		return checkBranches(n.List, n.ElseList)
	case *parse.WithNode:
		return checkBranches(n.List, n.ElseList)
	}
	return nil
}

func checkBranches(list, elseList *parse.ListNode) error {
	if err := checkQuoted(list); err != nil {
		return err
	}
	if elseList != nil {
		return checkQuoted(elseList)
	}
	return nil
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
	for _, s := range d.Secrets {
		if !strings.Contains(b.String(), Quote(s.Value)) || !strings.Contains(b.String(), Quote(s.Path)) {
			return nil, fmt.Errorf("job script: the template does not write the job's secrets to their files (range .Secrets)")
		}
	}
	return []byte(b.String()), nil
}
