// Package cli implements the client subcommands of the hpcgate binary:
// templates, files, jobs, tokens and the gateway's status. It is built on
// package client (the Go SDK) and package api only.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/client"
	"github.com/hpcgate/hpcgate/internal/ctlchar"
)

// Command names one client subcommand and says in one line what it does.
type Command struct {
	Name, Summary string
}

// ExitError asks the program to end with a particular non-zero exit code.
// Err, if not nil, is the message to print.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// exitNotSucceeded is the exit code of a command that waited for a job or
// a sweep that ended without succeeding (submit --wait, sweep --follow,
// wait): 1 is the request's own failure, 2 a usage error.
const exitNotSucceeded = 3

// ExitCodes says what each exit code of the client commands means, for
// 'hpcgate help'.
const ExitCodes = `Exit codes:
  0  done
  1  the command failed: the gateway refused the request or could not be
     reached, a local file could not be read or written, --timeout passed
  2  a usage error: an unknown command or flag, a missing or wrong argument
  3  a job or sweep waited for (--wait, --follow, wait) ended without
     succeeding
`

// FlagUsage formats fs's flags as the client commands' --help does: one
// per line as --name VALUE, with its help below.
func FlagUsage(fs *flag.FlagSet) string {
	return printFlags(fs, false) + printFlags(fs, true)
}

// env is what a running command needs: its streams, its context and the
// connection settings given on its command line.
type env struct {
	ctx   context.Context
	stdin io.Reader
	// stdout and stderr escape control characters (ctlchar): names,
	// labels and errors come from other people and jobs. rawOut and rawErr
	// are the streams themselves, for a file's bytes, a log and progress
	// bars.
	stdout, stderr io.Writer
	rawOut, rawErr io.Writer
	now            func() time.Time

	url, token, cacert string
}

// runFunc runs a command with its positional arguments; its flags have
// been parsed into the variables its setup declared.
type runFunc func(e *env, args []string) error

// command describes one subcommand. setup declares its flags on fs and
// returns the function that runs it.
type command struct {
	name    string
	summary string
	args    string // the synopsis after "hpcgate NAME"
	desc    string // one paragraph
	example string // one or more lines
	minArgs int
	maxArgs int // -1: any number
	setup   func(fs *flag.FlagSet) runFunc
	subs    []*command // for commands with subcommands (token)
}

var commands []*command

func init() {
	commands = []*command{
		cmdTemplates, cmdTemplate, cmdEnvironments, cmdEnvironment,
		cmdUpload, cmdFiles, cmdRm, cmdCat, cmdFetch,
		cmdSubmit, cmdSweep, cmdJobs, cmdStatus, cmdLogs,
		cmdControl("cancel", "canceled", "cancel jobs", "Cancels each job given: a job that has not started never starts, a running job is stopped. Canceling a job that has ended is an error for that job; the others go on."),
		cmdControl("hold", "held", "hold jobs that have not started", "Holds each job given: a job that has not been handed to its engine yet stays put until it is released."),
		cmdControl("release", "released", "release held jobs", "Releases each held job given, so that it goes on to its engine."),
		cmdControl("suspend", "suspended", "suspend running jobs", "Suspends each running job given: its engine stops every process of it until it is resumed."),
		cmdControl("resume", "resumed", "resume suspended jobs", "Resumes each suspended job given."),
		cmdControl("delete", "deleted", "delete jobs with their logs and outputs", "Deletes each job given, with its logs, outputs and results. A job that has not ended is canceled first."),
		cmdWait, cmdEvents, cmdOutput, cmdDownload, cmdResults, cmdParameters, cmdChildren,
		cmdWebhookSecret, cmdToken, cmdUser, cmdImage, cmdMe, cmdAudit, cmdHealth,
	}
}

// Commands lists the client subcommands with a one-line summary each.
func Commands() []Command {
	out := make([]Command, len(commands))
	for i, c := range commands {
		out[i] = Command{Name: c.name, Summary: c.summary}
	}
	return out
}

func lookup(cmds []*command, name string) *command {
	for _, c := range cmds {
		if c.name == name {
			return c
		}
	}
	return nil
}

// Run runs one client subcommand. args excludes the program name (args[0]
// is the subcommand).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return &ExitError{Code: 2, Err: errors.New("no command given; run 'hpcgate help' for the list of commands")}
	}
	out, errs := ctlchar.NewWriter(stdout), ctlchar.NewWriter(stderr)
	defer out.Flush()
	defer errs.Flush()
	e := &env{ctx: ctx, stdin: stdin, stdout: out, stderr: errs, rawOut: stdout, rawErr: stderr, now: time.Now}
	if args[0] == "help" {
		return e.help(args[1:])
	}
	c := lookup(commands, args[0])
	if c == nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("unknown command %q; run 'hpcgate help' for the list of commands", args[0])}
	}
	return c.exec(e, "hpcgate "+c.name, args[1:])
}

// help answers "hpcgate help [COMMAND...]" in case the caller hands it
// over: the list of client commands, or the usage of one.
func (e *env) help(args []string) error {
	if len(args) == 0 {
		fmt.Fprintln(e.stdout, "Client commands:")
		tw := newTable(e.stdout)
		for _, c := range commands {
			tw.row("  "+c.name, c.summary)
		}
		tw.Flush()
		fmt.Fprintln(e.stdout, "\nRun 'hpcgate COMMAND --help' for the usage of one.")
		fmt.Fprint(e.stdout, "\n"+ExitCodes)
		return nil
	}
	c := lookup(commands, args[0])
	full := "hpcgate " + args[0]
	for _, a := range args[1:] {
		if c == nil {
			break
		}
		c = lookup(c.subs, a)
		full += " " + a
	}
	if c == nil {
		return &ExitError{Code: 2, Err: fmt.Errorf("unknown command %q; run 'hpcgate help' for the list of commands", strings.Join(args, " "))}
	}
	fs, _ := c.flagSet(&env{}, full)
	fs.SetOutput(e.stdout)
	fs.Usage()
	return nil
}

// flagSet builds the command's flag set: its own flags and the connection
// flags, with a Usage that prints the synopsis, the description, the
// flags and an example to the flag set's output.
func (c *command) flagSet(e *env, full string) (*flag.FlagSet, runFunc) {
	fs := flag.NewFlagSet(full, flag.ContinueOnError)
	var run runFunc
	if c.setup != nil {
		run = c.setup(fs)
	}
	// every command with --follow or --quiet takes -f or -q too
	for short, long := range flagAliases {
		if f := fs.Lookup(long); f != nil && fs.Lookup(short) == nil {
			fs.Var(f.Value, short, "short for --"+long)
		}
	}
	fs.StringVar(&e.url, "url", "", "gateway `URL`, e.g. https://host:8443 (default $HPCGATE_URL)")
	fs.StringVar(&e.token, "token", "", "API `TOKEN` (default $HPCGATE_TOKEN, or what the file $HPCGATE_TOKEN_FILE holds)")
	fs.StringVar(&e.cacert, "cacert", "", "PEM `FILE` of a CA to trust (default $HPCGATE_CACERT)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: %s %s\n\n", full, c.args)
		fmt.Fprintf(w, "%s\n", wrap(c.desc, 76))
		if len(c.subs) > 0 {
			fmt.Fprintf(w, "\nSubcommands:\n")
			tw := newTable(w)
			for _, s := range c.subs {
				tw.row("  "+s.name, s.summary)
			}
			tw.Flush()
			fmt.Fprintf(w, "Run '%s SUBCOMMAND --help' for the usage of one.\n", full)
		}
		if own := printFlags(fs, false); own != "" {
			fmt.Fprintf(w, "\nFlags:\n%s", own)
		}
		fmt.Fprintf(w, "\nConnection flags:\n%s", printFlags(fs, true))
		if c.example != "" {
			fmt.Fprintf(w, "\nExample:\n")
			for _, l := range strings.Split(strings.TrimRight(c.example, "\n"), "\n") {
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
	}
	fs.SetOutput(e.stdout) // where the usage goes when asked for (--help)
	return fs, run
}

var connFlags = map[string]bool{"url": true, "token": true, "cacert": true}

// flagAliases maps a one-letter alias to the long flag it stands for.
var flagAliases = map[string]string{"f": "follow", "q": "quiet"}

// printFlags formats the connection flags (conn) or the others, one per
// line with its help below, as --name VALUE.
func printFlags(fs *flag.FlagSet, conn bool) string {
	var b strings.Builder
	fs.VisitAll(func(f *flag.Flag) {
		if connFlags[f.Name] != conn {
			return
		}
		if long, ok := flagAliases[f.Name]; ok && fs.Lookup(long) != nil {
			return
		}
		name, usage := flag.UnquoteUsage(f)
		b.WriteString("  ")
		for short, long := range flagAliases {
			if long == f.Name && fs.Lookup(short) != nil {
				b.WriteString("-" + short + ", ")
			}
		}
		b.WriteString("--" + f.Name)
		if name != "" {
			b.WriteString(" " + name)
		}
		b.WriteString("\n    \t" + usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" && !strings.Contains(usage, "(default") {
			fmt.Fprintf(&b, " (default %s)", f.DefValue)
		}
		b.WriteString("\n")
	})
	return b.String()
}

// exec parses args and runs the command, or dispatches to a subcommand.
func (c *command) exec(e *env, full string, args []string) error {
	// A command with subcommands may run itself too (sweep TEMPLATE):
	// then a first argument that names no subcommand is its own.
	if len(c.subs) > 0 && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		s := lookup(c.subs, args[0])
		if s != nil {
			return s.exec(e, full+" "+s.name, args[1:])
		}
		if c.setup == nil {
			return &ExitError{Code: 2, Err: fmt.Errorf("%s: unknown subcommand %q; run '%s --help'", strings.TrimPrefix(full, "hpcgate "), args[0], full)}
		}
	}
	fs, run := c.flagSet(e, full)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(c.subs) > 0 && c.setup == nil {
		names := make([]string, len(c.subs))
		for i, s := range c.subs {
			names[i] = s.name
		}
		return &ExitError{Code: 2, Err: fmt.Errorf("%s: missing subcommand (%s); run '%s --help'", strings.TrimPrefix(full, "hpcgate "), strings.Join(names, ", "), full)}
	}
	if len(pos) < c.minArgs || (c.maxArgs >= 0 && len(pos) > c.maxArgs) {
		return &ExitError{Code: 2, Err: fmt.Errorf("usage: %s %s (run '%s --help')", full, c.args, full)}
	}
	return run(e, pos)
}

// parseArgs parses the flags of args wherever they are, before or after
// the positional arguments, and returns the positional arguments in order.
// "--" ends the flags. -h and --help print the usage and return
// flag.ErrHelp; other flag errors return an *ExitError of code 2.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	flags, pos := reorder(fs, args)
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(flags)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return nil, flag.ErrHelp
	}
	if err != nil {
		return nil, &ExitError{Code: 2, Err: fmt.Errorf("%s: %v (run '%s --help')", strings.TrimPrefix(fs.Name(), "hpcgate "), err, fs.Name())}
	}
	return append(fs.Args(), pos...), nil
}

// reorder splits args into flags (with the values of the flags that take
// one) and positional arguments.
func reorder(fs *flag.FlagSet, args []string) (flags, pos []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // unknown: Parse reports it
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, pos
}

// client returns a client of the gateway: the connection flags override
// HPCGATE_URL, HPCGATE_TOKEN and HPCGATE_CACERT.
func (e *env) client() (*client.Client, error) {
	if e.url == "" && e.token == "" && e.cacert == "" {
		return client.FromEnv()
	}
	u := firstNonEmpty(e.url, os.Getenv("HPCGATE_URL"))
	if u == "" {
		return nil, errors.New("no gateway URL: set HPCGATE_URL or pass --url (e.g. https://127.0.0.1:8443)")
	}
	tok := e.token
	if tok == "" {
		var err error
		if tok, err = client.TokenFromEnv(); err != nil {
			return nil, fmt.Errorf("no token: pass --token, or %w", err)
		}
	}
	return client.New(u, tok, &client.Options{CACertFile: firstNonEmpty(e.cacert, os.Getenv("HPCGATE_CACERT"))})
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// printRawJSON indents a JSON document and writes it with a newline.
func printRawJSON(w io.Writer, raw json.RawMessage) error {
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// wrap folds text into lines of at most width characters.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		if n > 0 && n+1+len(w) > width {
			b.WriteString("\n")
			n = 0
		} else if n > 0 {
			b.WriteString(" ")
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// keyValue parses k=v.
func keyValue(flagName, s string) (string, string, error) {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return "", "", fmt.Errorf("--%s %q: want KEY=VALUE", flagName, s)
	}
	return k, v, nil
}

// multiFlag collects the values of a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// forEach runs fn on each id, printing "DONE ID" for each success and the
// error for each failure on stderr. With one id its error is returned as
// is; with several, a summary.
func (e *env) forEach(ids []string, done string, fn func(id string) error) error {
	var failed int
	var last error
	for _, id := range ids {
		if err := fn(id); err != nil {
			failed++
			last = err
			if len(ids) > 1 {
				fmt.Fprintf(e.stderr, "%s: %v\n", id, err)
			}
			continue
		}
		fmt.Fprintf(e.stdout, "%s %s\n", done, id)
	}
	switch {
	case failed == 0:
		return nil
	case len(ids) == 1:
		return last
	default:
		return fmt.Errorf("%d of %d failed", failed, len(ids))
	}
}

// printJSONLine writes v as one line of JSON.
func printJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
