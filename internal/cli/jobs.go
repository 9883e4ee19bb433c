package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
	"github.com/hpcgate/hpcgate/internal/ctlchar"
)

var cmdSubmit = &command{
	name:    "submit",
	summary: "submit a job from a template",
	args:    "TEMPLATE [--param K=V]... [--params-file F.json] [--input NAME=PATH]... [--after ID[:finished]]... [flags]",
	desc:    "Creates a job from the template TEMPLATE. Each --param K=V sets a parameter; V is read by the type the template's schema gives K: as is for a string, as JSON for an integer, number, boolean, object or array. --params-file gives the parameters as a JSON object, which --param entries override. Each --input NAME=PATH gives one of the template's inputs: the path of one of your files (see 'hpcgate upload'), another job's output as job:ID/outputs/PATH, or an https:// URL that the job fetches itself (end it with #sha256=HEX to have its bytes checked). Each --after makes the job wait, pending, until another job has succeeded (--after ID), or ended however (--after ID:finished), or until every job of a sweep has (--after sweep:ID, --after sweep:ID:finished); a job it waits for to succeed that fails cancels it. It prints the job's id and state; --wait waits for the job to end and --follow streams its standard output meanwhile, and then the command fails with exit code 3 if the job failed or was canceled.",
	example: "hpcgate submit hello --param name=Ada --wait\n" +
		"hpcgate submit wordcount --input text=texts/book.txt --param min_length=5 --follow\n" +
		"id=$(hpcgate submit hello --param name=child --quiet)\n" +
		"hpcgate submit reduce --param sweep=$sweep --after sweep:$sweep:finished --wait",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		var params, inputs, labels multiFlag
		fs.Var(&params, "param", "a parameter `K=V` (repeatable)")
		paramsFile := fs.String("params-file", "", "a `FILE` of parameters as a JSON object (- for standard input)")
		fs.Var(&inputs, "input", "an input `NAME=PATH`: one of your files, job:ID/outputs/PATH or an https:// URL (repeatable)")
		version := fs.Int("version", 0, "template version `N` (default the newest)")
		envName := fs.String("env", "", "runtime `ENVIRONMENT` (default the template's first)")
		name := fs.String("name", "", "a `NAME` for the job")
		fs.Var(&labels, "label", "a label `K=V` (repeatable)")
		var after multiFlag
		fs.Var(&after, "after", "wait for job `ID`[:finished] or sweep:ID[:finished] first (repeatable)")
		nodes := fs.Int("nodes", 0, "`N` nodes (default the template's)")
		cores := fs.Int("cores", 0, "`N` cores per node (default the template's)")
		mem := fs.Int64("memory-mb", 0, "memory in `MB` (default the template's)")
		walltime := fs.String("walltime", "", "most run time: seconds, a `DURATION` (1h30m, 2d) or [D-]HH:MM:SS")
		hold := fs.Bool("hold", false, "create the job held: it starts once released")
		project := fs.String("project", "", "the `PROJECT` (allocation account) the job is charged to (default your first)")
		idem := fs.String("idempotency-key", "", "a `KEY` that makes a retried submit answer the job the first created")
		detached := fs.Bool("detached", false, "from inside a job: the child goes on when its parent is canceled")
		wait := fs.Bool("wait", false, "wait for the job to end; fail if it does not succeed")
		follow := fs.Bool("follow", false, "stream the job's standard output, then wait as --wait")
		quiet := fs.Bool("quiet", false, "print only the job's id")
		asJSON := fs.Bool("json", false, "print the job JSON (the final one with --wait or --follow)")
		return func(e *env, args []string) error {
			req := api.JobRequest{Template: args[0], Version: *version, Name: *name, Environment: *envName, Hold: *hold, Project: *project, Detached: *detached}
			var res api.Resources
			res.Nodes, res.CoresPerNode, res.MemoryMB = *nodes, *cores, *mem
			if *nodes < 0 || *cores < 0 || *mem < 0 {
				return &ExitError{Code: 2, Err: errors.New("submit: --nodes, --cores and --memory-mb must not be negative")}
			}
			if *walltime != "" {
				s, err := parseSeconds(*walltime)
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--walltime: %w", err)}
				}
				res.WalltimeS = s
			}
			if res != (api.Resources{}) {
				req.Resources = &res
			}
			var err error
			if req.Inputs, err = kvMap("input", inputs); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if req.Labels, err = kvMap("label", labels); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if req.After, err = parseAfter(after); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			var file []byte
			switch *paramsFile {
			case "":
			case "-":
				file, err = io.ReadAll(e.stdin)
			default:
				file, err = os.ReadFile(*paramsFile)
			}
			if err != nil {
				return fmt.Errorf("--params-file: %w", err)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var s *schema
			if len(params) > 0 {
				t, err := c.Template(e.ctx, req.Template, req.Version)
				if err != nil {
					return err
				}
				if s, err = parseSchema(t.Parameters); err != nil {
					return err
				}
			}
			if req.Parameters, err = buildParams(s, file, params); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			j, err := c.CreateJob(e.ctx, req, *idem)
			if err != nil {
				return err
			}
			// With --follow, standard output is the job's: say the rest on
			// standard error.
			info := e.stdout
			if *follow {
				info = e.stderr
			}
			switch {
			case *quiet:
				fmt.Fprintln(e.stdout, j.ID)
			case *asJSON && !*wait && !*follow:
				return printJSON(e.stdout, j)
			case !*asJSON:
				fmt.Fprintf(info, "created job %s (template %s, state %s)\n", j.ID, j.Template, j.State)
			}
			if !*wait && !*follow {
				return nil
			}
			if *follow {
				// with --json, standard output is the final job's JSON alone
				to := e.rawOut
				if *asJSON {
					to = e.rawErr
				}
				logOut, flush := logWriter(to, false)
				err := copyLog(e.ctx, c, j.ID, "stdout", 0, true, logOut, e.stderr)
				flush()
				if err != nil {
					if e.ctx.Err() != nil {
						return err
					}
					fmt.Fprintf(e.stderr, "warning: log of %s: %v\n", j.ID, err)
				}
			}
			final, err := c.Wait(e.ctx, j.ID)
			if err != nil {
				return err
			}
			outcome := jobOutcome(final)
			switch {
			case *asJSON:
				if err := printJSON(e.stdout, final); err != nil {
					return err
				}
			case !*quiet:
				fmt.Fprintln(info, finalLine(final))
				if outcome != nil {
					return &ExitError{Code: outcome.(*ExitError).Code} // said just now
				}
			}
			return outcome
		}
	},
}

// kvMap makes a map of K=V entries of a repeated flag (nil if none).
func kvMap(flagName string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, err := keyValue(flagName, kv)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("--%s %s: given twice", flagName, k)
		}
		m[k] = v
	}
	return m, nil
}

// finalLine says how a job ended: "job ID succeeded", "job ID failed:
// ERROR (exit code N)".
func finalLine(j *api.Job) string {
	s := fmt.Sprintf("job %s %s", j.ID, j.State)
	if j.Error != "" {
		s += ": " + withoutState(j.State, j.Error)
	} else if j.Reason != "" && j.State != api.StateSucceeded {
		s += ": " + withoutState(j.State, j.Reason)
	}
	if j.ExitCode != nil && (*j.ExitCode != 0 || j.State != api.StateSucceeded) {
		said := regexp.MustCompile(`exit code ` + strconv.Itoa(*j.ExitCode) + `\b`)
		if !said.MatchString(s) {
			s += fmt.Sprintf(" (exit code %d)", *j.ExitCode)
		}
	}
	return s
}

// withoutState is a job's reason or error said after its state: without
// the state again where it starts with it (a dependent the gateway
// canceled has the reason "canceled: job ID did not succeed, ...").
func withoutState(state, why string) string {
	if rest, ok := strings.CutPrefix(why, state+": "); ok {
		return rest
	}
	return why
}

// jobOutcome is nil for a job that succeeded and an *ExitError of code
// exitNotSucceeded for one that failed or was canceled.
func jobOutcome(j *api.Job) error {
	if j.State == api.StateSucceeded {
		return nil
	}
	return &ExitError{Code: exitNotSucceeded, Err: errors.New(finalLine(j))}
}

// logWriter is where a job's log goes to w: as it is, unless w is a
// terminal and not raw; then its control sequences but colours and
// progress bars are escaped (ctlchar.LogWriter), since a log could
// otherwise retitle or clear the terminal, or write its clipboard. flush
// writes what a last escape sequence held.
func logWriter(w io.Writer, raw bool) (io.Writer, func() error) {
	if raw || !isTerminal(w) {
		return w, func() error { return nil }
	}
	lw := ctlchar.NewLogWriter(w)
	return lw, lw.Flush
}

// copyLog copies a job's stream from offset to w. With follow it goes on
// until the job has ended, and once the gateway has answered, reconnects
// from where it stopped when the connection breaks or the gateway is away
// (restarting, or a proxy's 502, 503, 504), for up to followRetry of
// failures in a row, saying so once on warn.
func copyLog(ctx context.Context, c *client.Client, id, stream string, offset int64, follow bool, w, warn io.Writer) error {
	var failing time.Time // since when every try fails; zero while they work
	answered, said := false, false
	retries := 0
	for {
		rc, err := c.Log(ctx, id, stream, offset, follow)
		if err == nil {
			answered, failing, retries = true, time.Time{}, 0
			n, err2 := io.Copy(w, rc)
			rc.Close()
			offset += n
			if err2 == nil || !follow || ctx.Err() != nil {
				return err2
			}
			err = err2
		} else if !follow || !answered || ctx.Err() != nil || !gatewayAway(err) {
			return err
		}
		if failing.IsZero() {
			failing = time.Now()
		} else if time.Since(failing) > followRetry {
			return err
		}
		if !said && retries > 0 {
			fmt.Fprintf(warn, "hpcgate: the log of %s broke off (%v); reconnecting for up to %v\n", id, err, followRetry)
			said = true
		}
		retries++
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(retries)*followBackoff, 10*followBackoff)):
		}
	}
}

// followRetry is how long a followed log keeps reconnecting while every
// try fails; followBackoff the first wait between tries, which grows to
// ten times that.
var (
	followRetry   = 2 * time.Minute
	followBackoff = 500 * time.Millisecond
)

// gatewayAway is whether err says the gateway could not be reached or
// could not answer for now, rather than that it refused the request.
func gatewayAway(err error) bool {
	switch client.StatusOf(err) {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	case 0:
		var op *net.OpError // refused, reset: not a certificate, say
		return errors.As(err, &op) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	}
	return false
}

var cmdJobs = &command{
	name:    "jobs",
	summary: "list your jobs",
	args:    "[--state S] [--template T] [--label K=V] [--parent ID] [--sweep ID] [--user NAME] [--limit N] [--all] [--tree] [--json]",
	desc:    "Lists your jobs, newest first: one page unless --all is given; an admin lists another user's with --user NAME, or everyone's with --user '*'. The filters narrow the list: --state takes one state or several separated by commas (pending, held, queued, starting, running, suspended, finishing, succeeded, failed, canceled). --tree lists every page and shows each job's children below it, oldest first (a child whose parent is not listed is shown at the top).",
	example: "hpcgate jobs --state running,queued\nhpcgate jobs --label fanout=j-123 --all\nhpcgate jobs --tree",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		var f client.JobFilter
		fs.StringVar(&f.State, "state", "", "only jobs in `STATE` (several: comma separated)")
		fs.StringVar(&f.Template, "template", "", "only jobs of `TEMPLATE`")
		fs.StringVar(&f.Label, "label", "", "only jobs with label `K=V`")
		fs.StringVar(&f.Parent, "parent", "", "only the children of job `ID`")
		fs.StringVar(&f.Sweep, "sweep", "", "only the jobs of sweep `ID`")
		fs.StringVar(&f.Owner, "user", "", "admins: the jobs of user `NAME` ('*': everyone's)")
		fs.IntVar(&f.Limit, "limit", 0, "`N` jobs per page (default the gateway's)")
		all := fs.Bool("all", false, "list every page")
		tree := fs.Bool("tree", false, "show children below their parents (lists every page)")
		asJSON := fs.Bool("json", false, "print the JSON list")
		return func(e *env, _ []string) error {
			if f.Limit < 0 {
				return &ExitError{Code: 2, Err: errors.New("jobs: --limit must not be negative")}
			}
			if f.Label != "" {
				if _, _, err := keyValue("label", f.Label); err != nil {
					return &ExitError{Code: 2, Err: err}
				}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var jobs []api.Job
			filter := f
			more := false
			for {
				page, err := c.Jobs(e.ctx, filter)
				if err != nil {
					return err
				}
				jobs = append(jobs, page.Items...)
				if page.NextPageToken == "" {
					break
				}
				if !*all && !*tree {
					more = true
					break
				}
				filter.PageToken = page.NextPageToken
			}
			var indent []string
			if *tree {
				jobs, indent = treeOrder(jobs)
			}
			if *asJSON {
				err = printJSON(e.stdout, nonNil(jobs))
			} else {
				err = e.jobTable(jobs, indent, f.Owner != "")
			}
			if more {
				fmt.Fprintln(e.stderr, "(more jobs: use --all to list them all)")
			}
			return err
		}
	},
}

// jobTable prints jobs as a table, each id after its indent (if any),
// with their owners if owners is set (an admin lists other users' jobs).
func (e *env) jobTable(jobs []api.Job, indent []string, owners bool) error {
	now := e.now()
	tw := newTable(e.stdout)
	head := []string{"ID", "NAME", "TEMPLATE", "STATE", "CREATED", "EXIT"}
	if owners {
		head = slices.Insert(head, 1, "OWNER")
	}
	tw.row(head...)
	for i, j := range jobs {
		exit := "-"
		if j.ExitCode != nil {
			exit = fmt.Sprint(*j.ExitCode)
		}
		id := j.ID
		if i < len(indent) {
			id = indent[i] + id
		}
		cells := []string{id, dash(j.Name), j.Template, j.State, age(now, j.CreatedAt), exit}
		if owners {
			cells = slices.Insert(cells, 1, dash(j.Owner))
		}
		tw.row(cells...)
	}
	return tw.Flush()
}

// treeOrder orders jobs (listed newest first) as a forest: each job
// followed by its children, oldest first, with the indent that draws the
// tree. A job whose parent is not among jobs is a root, in list order.
func treeOrder(jobs []api.Job) ([]api.Job, []string) {
	listed := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		listed[j.ID] = true
	}
	children := map[string][]api.Job{}
	var roots []api.Job
	for i := len(jobs) - 1; i >= 0; i-- { // oldest first
		j := jobs[i]
		if j.ParentID != "" && listed[j.ParentID] && j.ParentID != j.ID {
			children[j.ParentID] = append(children[j.ParentID], j)
		}
	}
	for _, j := range jobs {
		if j.ParentID == "" || !listed[j.ParentID] || j.ParentID == j.ID {
			roots = append(roots, j)
		}
	}
	out := make([]api.Job, 0, len(jobs))
	indent := make([]string, 0, len(jobs))
	var walk func(j api.Job, lead, branch string)
	walk = func(j api.Job, lead, branch string) {
		out = append(out, j)
		indent = append(indent, lead+branch)
		kids := children[j.ID]
		next := lead
		switch branch {
		case "├─ ":
			next += "│  "
		case "└─ ":
			next += "   "
		}
		for i, k := range kids {
			b := "├─ "
			if i == len(kids)-1 {
				b = "└─ "
			}
			walk(k, next, b)
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
	return out, indent
}

// age says how long before now t was: "12s ago", "3m ago", "5h ago",
// "2d ago"; "-" for the zero time.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	default:
		return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
	}
}

var cmdStatus = &command{
	name:    "status",
	summary: "show a job and its state transitions",
	args:    "ID [--json]",
	desc:    "Shows a job: its state and why, its error if it failed, the template and environment it runs with, its id in the batch system, the resources asked for and used, when it was created, started and finished, its exit code, parent and labels; and then every state transition it went through.",
	example: "hpcgate status 7yzixrkjsc6irydo",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, `print {"job": ..., "events": [...]}`)
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			j, err := c.Job(e.ctx, args[0])
			if err != nil {
				return err
			}
			events, err := c.Events(e.ctx, args[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, struct {
					Job    *api.Job    `json:"job"`
					Events []api.Event `json:"events"`
				}{j, nonNil(events)})
			}
			return e.showJob(j, events)
		}
	},
}

func (e *env) showJob(j *api.Job, events []api.Event) error {
	now := e.now()
	when := func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "-"
		}
		return t.Local().Format("2006-01-02 15:04:05") + " (" + age(now, *t) + ")"
	}
	tw := newTable(e.stdout)
	row := func(k, v string) { tw.row(k+":", v) }
	row("Job", j.ID)
	if j.Name != "" {
		row("Name", j.Name)
	}
	state := j.State
	if r := withoutState(j.State, j.Reason); r != "" {
		state += " (" + r + ")"
	}
	row("State", state)
	if j.Error != "" {
		row("Error", j.Error)
	}
	if j.Template == tesTemplate {
		row("Template", "none: a GA4GH TES task")
	} else {
		row("Template", fmt.Sprintf("%s@%d", j.Template, j.TemplateVersion))
	}
	row("Environment", dash(j.Environment))
	if j.Backend != nil {
		row("Backend", strings.TrimSpace(j.Backend.Scheduler+" "+j.Backend.ID))
	}
	row("Owner", dash(j.Owner))
	row("Resources", resourcesText(j.Resources))
	if j.Usage != nil {
		row("Usage", fmt.Sprintf("cpu %.1fs, wall %.1fs, max rss %s", j.Usage.CPUSeconds, j.Usage.WallSeconds, formatBytes(j.Usage.MaxRSSBytes)))
	}
	created := j.CreatedAt
	row("Created", when(&created))
	row("Started", when(j.StartedAt))
	row("Finished", when(j.FinishedAt))
	if j.ExitCode != nil {
		row("Exit code", fmt.Sprint(*j.ExitCode))
	}
	if j.ParentID != "" {
		row("Parent", fmt.Sprintf("%s (depth %d)", j.ParentID, j.Depth))
	}
	row("Labels", dash(joinMap(j.Labels)))
	if len(j.Inputs) > 0 {
		row("Inputs", joinMap(j.Inputs))
	}
	tw.Flush()
	if len(j.Steps) > 0 {
		fmt.Fprintln(e.stdout, "\nExecutors:")
		tw = newTable(e.stdout)
		tw.row("  #", "STARTED", "ENDED", "EXIT", "STDOUT", "STDERR")
		for _, st := range j.Steps {
			exit := "-"
			if st.ExitCode != nil {
				exit = fmt.Sprint(*st.ExitCode)
			}
			started := st.StartedAt
			tw.row(fmt.Sprint("  ", st.Index), when(&started), when(st.EndedAt), exit,
				byteRange(st.Stdout), byteRange(st.Stderr))
		}
		tw.Flush()
	}
	fmt.Fprintln(e.stdout, "\nEvents:")
	tw = newTable(e.stdout)
	tw.row("  TIME", "STATE", "REASON")
	for _, ev := range events {
		tw.row("  "+ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.State, dash(withoutState(ev.State, ev.Reason)))
	}
	return tw.Flush()
}

// tesTemplate is the template of the jobs that GA4GH TES tasks became.
const tesTemplate = "TES"

// byteRange is the bytes of the job's log an executor wrote, as
// "bytes FROM-TO", or "-" if none.
func byteRange(r [2]int64) string {
	if r[1] <= r[0] {
		return "-"
	}
	return fmt.Sprintf("bytes %d-%d", r[0], r[1])
}

// joinMap formats a map as k=v, k=v sorted by key.
func joinMap(m map[string]string) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ", ")
}

var cmdLogs = &command{
	name:    "logs",
	summary: "print a job's standard output or error",
	args:    "ID [-f|--follow] [--stderr] [--offset N] [--raw]",
	desc:    "Writes a job's standard output (or standard error with --stderr) to standard output, from byte --offset on. With --follow it goes on writing as the job writes, until the job has ended. To a terminal, control sequences other than colours, carriage returns and backspaces are shown escaped (\\x1b), so that a log cannot retitle, clear or script your terminal; --raw writes the bytes as they are, as does any output that is no terminal.",
	example: "hpcgate logs -f 7yzixrkjsc6irydo\nhpcgate logs 7yzixrkjsc6irydo --stderr",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		follow := fs.Bool("follow", false, "go on until the job has ended")
		stderr := fs.Bool("stderr", false, "the job's standard error instead of its output")
		offset := fs.Int64("offset", 0, "start at byte `N`")
		raw := fs.Bool("raw", false, "write the log's bytes as they are, also to a terminal")
		return func(e *env, args []string) error {
			if *offset < 0 {
				return &ExitError{Code: 2, Err: errors.New("--offset must not be negative")}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			stream := "stdout"
			if *stderr {
				stream = "stderr"
			}
			w, flush := logWriter(e.rawOut, *raw)
			defer flush()
			return copyLog(e.ctx, c, args[0], stream, *offset, *follow, w, e.stderr)
		}
	},
}

// cmdControl makes cancel, hold, release and delete.
func cmdControl(name, done, summary, desc string) *command {
	return &command{
		name:    name,
		summary: summary,
		args:    "ID...",
		desc:    desc + " It prints one line per job and fails at the end if any job could not be " + done + ".",
		example: "hpcgate " + name + " 7yzixrkjsc6irydo n3c5fgxctds6i6az",
		minArgs: 1, maxArgs: -1,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(e *env, ids []string) error {
				c, err := e.client()
				if err != nil {
					return err
				}
				op := func(id string) error {
					var err error
					switch name {
					case "cancel":
						_, err = c.Cancel(e.ctx, id)
					case "hold":
						_, err = c.Hold(e.ctx, id)
					case "release":
						_, err = c.Release(e.ctx, id)
					case "suspend":
						_, err = c.Suspend(e.ctx, id)
					case "resume":
						_, err = c.Resume(e.ctx, id)
					case "delete":
						err = c.DeleteJob(e.ctx, id)
					}
					return err
				}
				return e.forEach(ids, done, op)
			}
		},
	}
}

var cmdWait = &command{
	name:    "wait",
	summary: "wait for jobs to end",
	args:    "ID... [--timeout DURATION]",
	desc:    "Waits until every job given has ended and prints each with its final state (ID STATE). It fails with exit code 3 if a job ended without succeeding, and with exit code 1 if a job could not be read or had not ended by the --timeout.",
	example: "hpcgate wait $(cat children)\nhpcgate wait 7yzixrkjsc6irydo --timeout 10m",
	minArgs: 1, maxArgs: -1,
	setup: func(fs *flag.FlagSet) runFunc {
		var timeout durationFlag
		fs.Var(&timeout, "timeout", "give up after `DURATION`, such as 90s or 10m (default never)")
		return func(e *env, ids []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			ctx := e.ctx
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, time.Duration(timeout))
				defer cancel()
			}
			var bad []string
			// a job that ended otherwise is exit code 3 only when every
			// job ended: one not known to have ended is another failure
			code := exitNotSucceeded
			for _, id := range ids {
				j, err := c.Wait(ctx, id)
				if err != nil {
					if e.ctx.Err() != nil {
						return e.ctx.Err()
					}
					if ctx.Err() != nil {
						state := "unknown"
						if cur, err := c.Job(e.ctx, id); err == nil {
							state = cur.State
						}
						fmt.Fprintf(e.stdout, "%s %s\n", id, state)
						bad = append(bad, id+" ("+state+", timed out)")
						code = 1
						continue
					}
					fmt.Fprintf(e.stderr, "%s: %v\n", id, err)
					bad = append(bad, id+" (error)")
					code = 1
					continue
				}
				fmt.Fprintf(e.stdout, "%s %s\n", id, j.State)
				if j.State != api.StateSucceeded {
					bad = append(bad, id+" ("+j.State+")")
				}
			}
			if len(bad) > 0 {
				return &ExitError{Code: code, Err: fmt.Errorf("%d of %d jobs did not succeed: %s", len(bad), len(ids), strings.Join(bad, ", "))}
			}
			return nil
		}
	},
}

// durationFlag is a flag's duration, refused in plain words: the flag
// package's own says "parse error".
type durationFlag time.Duration

func (d *durationFlag) String() string { return time.Duration(*d).String() }

func (d *durationFlag) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return errors.New("want a duration such as 90s or 10m")
	}
	*d = durationFlag(v)
	return nil
}

var cmdOutput = &command{
	name:    "output",
	summary: "write one output file of a job to standard output",
	args:    "ID PATH",
	desc:    "Writes the output file PATH of a job to standard output. 'hpcgate download ID' fetches them all.",
	example: "hpcgate output 7yzixrkjsc6irydo greeting.txt",
	minArgs: 2, maxArgs: 2,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if err := checkRemote("output", "PATH", args[1]); err != nil {
				return err
			}
			rc, _, err := c.Output(e.ctx, args[0], args[1])
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(e.rawOut, rc)
			return err
		}
	},
}

var (
	cmdResults = cmdJSONOf("results", "print a job's results.json",
		"Prints the structured results a job wrote (its results.json), indented.",
		(*client.Client).Results)
	cmdParameters = cmdJSONOf("parameters", "print a job's validated parameters",
		"Prints the parameters of a job as the gateway validated them, defaults filled in, as indented JSON.",
		(*client.Client).Parameters)
)

// cmdJSONOf is a command that prints one JSON document of a job.
func cmdJSONOf(name, summary, desc string, get func(*client.Client, context.Context, string) (json.RawMessage, error)) *command {
	return &command{
		name:    name,
		summary: summary,
		args:    "ID",
		desc:    desc,
		example: "hpcgate " + name + " 7yzixrkjsc6irydo",
		minArgs: 1, maxArgs: 1,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(e *env, args []string) error {
				c, err := e.client()
				if err != nil {
					return err
				}
				raw, err := get(c, e.ctx, args[0])
				if err != nil {
					return err
				}
				return printRawJSON(e.stdout, raw)
			}
		},
	}
}

var cmdChildren = &command{
	name:    "children",
	summary: "list the jobs a job submitted",
	args:    "ID [--json]",
	desc:    "Lists the jobs a job created with its own token (its children), like 'hpcgate jobs'.",
	example: "hpcgate children 7yzixrkjsc6irydo",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON list")
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			jobs, err := c.Children(e.ctx, args[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, nonNil(jobs))
			}
			return e.jobTable(jobs, nil, false)
		}
	},
}

// parseAfter reads --after values: ID, ID:finished, ID:succeeded, and the
// same with sweep: in front for a whole sweep.
func parseAfter(vals []string) ([]api.Dependency, error) {
	var out []api.Dependency
	for _, v := range vals {
		var d api.Dependency
		rest, sweep := strings.CutPrefix(v, "sweep:")
		id, when, _ := strings.Cut(rest, ":")
		if id == "" || (when != "" && when != "finished" && when != "succeeded") {
			return nil, fmt.Errorf("--after %q: want ID, ID:finished, sweep:ID or sweep:ID:finished", v)
		}
		if sweep {
			d.Sweep = id
		} else {
			d.Job = id
		}
		d.When = when
		out = append(out, d)
	}
	return out, nil
}
