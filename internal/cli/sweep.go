package cli

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

var cmdSweep = &command{
	name:    "sweep",
	summary: "run a template for many parameter variants",
	args:    "TEMPLATE --vary K=V1,V2,... [--vary K=FROM:TO:STEP]... [--zip] [--param K=V]... [--input NAME=PATH]... [flags] | status|results|cancel ID",
	desc: "Creates a sweep: one job of TEMPLATE for each variant, all of them or, if any variant is invalid, none (every invalid field is reported). " +
		"Each --vary K=V1,V2,... gives the values of one parameter, read by the type the template's schema gives K as --param does; K=FROM:TO:STEP is the numbers from FROM to TO by STEP, both ends included (0:10:2 is 0, 2, 4, 6, 8, 10). " +
		"The variants are every combination of the values (the last --vary varies fastest), or with --zip the first values together, then the second ones, and so on. " +
		"--variants-file gives the variants instead, as a JSON list of parameter objects. --param and --input give every variant the same parameter or input (an input is looked at and stored once). " +
		"It prints the sweep's id; --follow shows its progress until every job has ended, and then fails (exit code 1) if any did not succeed. " +
		"'hpcgate sweep status ID' shows a sweep's jobs per state, 'hpcgate sweep results ID' one row per variant (--csv, --json), 'hpcgate sweep cancel ID' cancels the jobs that have not ended.",
	example: "hpcgate sweep hello --vary name=ada,bob,cy --follow\n" +
		"hpcgate sweep solver --input mesh=meshes/wing.msh --vary re=100,200,400 --vary angle=0:10:2\n" +
		"hpcgate sweep results sw4kq2 --csv > results.csv",
	minArgs: 1, maxArgs: 1,
	subs: []*command{cmdSweepStatus, cmdSweepResults, cmdSweepCancel},
	setup: func(fs *flag.FlagSet) runFunc {
		var params, inputs, labels, vary multiFlag
		fs.Var(&vary, "vary", "a varied parameter `K=V1,V2,...` or K=FROM:TO:STEP (repeatable)")
		zip := fs.Bool("zip", false, "pair the --vary lists value by value instead of combining them")
		variantsFile := fs.String("variants-file", "", "a `FILE` with the variants as a JSON list of parameter objects (- for standard input)")
		fs.Var(&params, "param", "a parameter `K=V` every variant has (repeatable)")
		fs.Var(&inputs, "input", "an input `NAME=PATH` every variant has (repeatable)")
		envName := fs.String("env", "", "runtime `ENVIRONMENT` (default the template's first)")
		name := fs.String("name", "", "a `NAME` for every job (default TEMPLATE-INDEX)")
		fs.Var(&labels, "label", "a label `K=V` of every job (repeatable)")
		cores := fs.Int("cores", 0, "`N` cores per node (default the template's)")
		walltime := fs.String("walltime", "", "most run time of each job: seconds, a `DURATION` or [D-]HH:MM:SS")
		hold := fs.Bool("hold", false, "create every job held")
		maxRunning := fs.Int("max-running", 0, "at most `N` of the jobs in the engine at once (default no cap)")
		project := fs.String("project", "", "the `PROJECT` the jobs are charged to")
		idem := fs.String("idempotency-key", "", "a `KEY` that makes a retried sweep answer the sweep the first created")
		follow := fs.Bool("follow", false, "show the sweep's progress until every job has ended")
		quiet := fs.Bool("quiet", false, "print only the sweep's id")
		asJSON := fs.Bool("json", false, "print the sweep JSON")
		return func(e *env, args []string) error {
			req := api.SweepRequest{Template: args[0], Name: *name, Environment: *envName, Hold: *hold, Project: *project, MaxRunning: *maxRunning}
			if *cores < 0 {
				return &ExitError{Code: 2, Err: errors.New("sweep: --cores must not be negative")}
			}
			if *cores > 0 || *walltime != "" {
				req.Resources = &api.Resources{CoresPerNode: *cores}
				if *walltime != "" {
					s, err := parseSeconds(*walltime)
					if err != nil {
						return &ExitError{Code: 2, Err: fmt.Errorf("--walltime: %w", err)}
					}
					req.Resources.WalltimeS = s
				}
			}
			var err error
			if req.Inputs, err = kvMap("input", inputs); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if req.Labels, err = kvMap("label", labels); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if (len(vary) > 0) == (*variantsFile != "") {
				return &ExitError{Code: 2, Err: errors.New("sweep: give the variants with --vary or with --variants-file (one of them)")}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var s *schema
			if len(params) > 0 || len(vary) > 0 {
				t, err := c.Template(e.ctx, req.Template, 0)
				if err != nil {
					return err
				}
				if s, err = parseSchema(t.Parameters); err != nil {
					return err
				}
			}
			if req.Parameters, err = buildParams(s, nil, params); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			if *variantsFile != "" {
				var b []byte
				if *variantsFile == "-" {
					b, err = io.ReadAll(e.stdin)
				} else {
					b, err = os.ReadFile(*variantsFile)
				}
				if err != nil {
					return fmt.Errorf("--variants-file: %w", err)
				}
				req.Variants = b
			} else if req.Variants, err = varyLists(s, vary, *zip); err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			sw, err := c.CreateSweep(e.ctx, req, *idem)
			if err != nil {
				return err
			}
			switch {
			case *asJSON && !*follow:
				return printJSON(e.stdout, sw)
			case *quiet:
				fmt.Fprintln(e.stdout, sw.ID)
			default:
				fmt.Fprintf(e.stdout, "created sweep %s: %s jobs of template %s\n", sw.ID, strconv.Itoa(sw.Total), sw.Template)
			}
			if !*follow {
				return nil
			}
			return e.followSweep(sw.ID, *asJSON)
		}
	},
}

// varyLists turns --vary flags into the variants of a sweep request.
func varyLists(s *schema, vary []string, zip bool) (json.RawMessage, error) {
	lists := map[string][]json.RawMessage{}
	for _, kv := range vary {
		k, v, err := keyValue("vary", kv)
		if err != nil {
			return nil, err
		}
		if _, dup := lists[k]; dup {
			return nil, fmt.Errorf("--vary %s: given twice", k)
		}
		// a range only where a number is wanted: 12:30:00 may be a time
		numeric := true
		if s != nil {
			if p := s.prop(k); p != nil && len(p.types) > 0 {
				numeric = slices.Contains(p.types, "integer") || slices.Contains(p.types, "number")
			}
		}
		vals, err := expandValues(v, numeric)
		if err != nil {
			return nil, fmt.Errorf("--vary %s: %w", k, err)
		}
		for _, x := range vals {
			raw, err := coerceParam(s, k, x)
			if err != nil {
				return nil, err
			}
			lists[k] = append(lists[k], raw)
		}
	}
	mode := "product"
	if zip {
		mode = "zip"
	}
	return json.Marshal(map[string]any{"mode": mode, "parameters": lists})
}

// expandValues reads V1,V2,... or, if numeric, FROM:TO:STEP (numbers,
// both ends included) as the values' texts.
func expandValues(v string, numeric bool) ([]string, error) {
	parts := strings.Split(v, ":")
	if len(parts) != 3 || !numeric {
		return strings.Split(v, ","), nil
	}
	var n [3]float64
	for i, p := range parts {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil {
			return strings.Split(v, ","), nil // not a range: a value with colons
		}
		n[i] = f
	}
	from, to, step := n[0], n[1], n[2]
	if step <= 0 || math.IsInf(step, 0) || math.IsNaN(step) {
		return nil, fmt.Errorf("range %s: the step must be more than 0", v)
	}
	if to < from {
		return nil, fmt.Errorf("range %s: it ends before it starts", v)
	}
	count := math.Floor((to-from)/step+1e-9) + 1
	if count > 10000 {
		return nil, fmt.Errorf("range %s: %v values, more than a sweep may have (10000)", v, count)
	}
	var out []string
	for i := 0; i < int(count); i++ {
		x := from + float64(i)*step
		// as few digits as tell the value apart from its neighbours
		out = append(out, strconv.FormatFloat(math.Round(x*1e9)/1e9, 'f', -1, 64))
	}
	return out, nil
}

// followSweep shows a sweep's progress until all its jobs have ended, and
// fails if one did not succeed.
func (e *env) followSweep(id string, asJSON bool) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	last := ""
	return e.watchSweep(c, id, func(sw *api.Sweep) (bool, error) {
		line := sweepProgress(sw)
		if line != last {
			fmt.Fprintf(e.stderr, "%s  %s\n", e.now().Format("15:04:05"), line)
			last = line
		}
		ended, outcome := sweepEnd(id, sw)
		if ended && asJSON {
			if err := printJSON(e.stdout, sw); err != nil {
				return true, err
			}
		}
		return ended, outcome
	})
}

// sweepEnd tells whether every job of sweep sw has ended and, if so, how
// it went: an *ExitError of code 1 if one did not succeed or was
// deleted, as a job waiting for the sweep to succeed sees it.
func sweepEnd(id string, sw *api.Sweep) (bool, error) {
	ended := sw.Counts[api.StateSucceeded] + sw.Counts[api.StateFailed] + sw.Counts[api.StateCanceled]
	switch {
	case ended != sw.Total:
		return false, nil
	case ended != sw.Counts[api.StateSucceeded]:
		return true, &ExitError{Code: 1, Err: fmt.Errorf("sweep %s: %d of %d jobs did not succeed ('hpcgate sweep results %s')", id, ended-sw.Counts[api.StateSucceeded], sw.Total, id)}
	case sw.Deleted > 0:
		return true, &ExitError{Code: 1, Err: fmt.Errorf("sweep %s: %d of its jobs were deleted, so they cannot be known to have succeeded", id, sw.Deleted)}
	}
	return true, nil
}

// sweepProgress is one line: how many of the jobs are in each state, in
// the order a job goes through them.
func sweepProgress(sw *api.Sweep) string {
	var parts []string
	for _, st := range []string{api.StateHeld, api.StatePending, api.StateQueued, api.StateStarting, api.StateRunning, api.StateSuspended, api.StateFinishing, api.StateSucceeded, api.StateFailed, api.StateCanceled} {
		if n := sw.Counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	done := sw.Counts[api.StateSucceeded] + sw.Counts[api.StateFailed] + sw.Counts[api.StateCanceled]
	line := fmt.Sprintf("%d/%d ended: %s", done, sw.Total, strings.Join(parts, ", "))
	if sw.Deleted > 0 {
		line += fmt.Sprintf(" (%d deleted)", sw.Deleted)
	}
	return line
}

var cmdSweepStatus = &command{
	name:    "status",
	summary: "show a sweep's jobs per state",
	args:    "ID [--json]",
	desc:    "Shows how many of the sweep's jobs are in each state. The jobs themselves: 'hpcgate jobs --sweep ID'.",
	example: "hpcgate sweep status sw4kq2",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the sweep JSON")
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			sw, err := c.Sweep(e.ctx, args[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, sw)
			}
			fmt.Fprintf(e.stdout, "sweep %s (template %s, created %s): %s\n", sw.ID, sw.Template, sw.CreatedAt.Local().Format(time.DateTime), sweepProgress(sw))
			return nil
		}
	},
}

var cmdSweepResults = &command{
	name:    "results",
	summary: "show one row per variant of a sweep",
	args:    "ID [--csv | --json]",
	desc:    "Prints one row per variant, in order: its job, state, exit code, parameters, and the members of its results.json (columns result.NAME). --csv prints CSV, --json the rows as JSON.",
	example: "hpcgate sweep results sw4kq2 --csv > results.csv",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		asCSV := fs.Bool("csv", false, "print CSV")
		asJSON := fs.Bool("json", false, "print JSON")
		return func(e *env, args []string) error {
			if *asCSV && *asJSON {
				return &ExitError{Code: 2, Err: errors.New("sweep results: --csv or --json, not both")}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			if *asJSON {
				rows, err := c.SweepResults(e.ctx, args[0])
				if err != nil {
					return err
				}
				return printJSON(e.stdout, rows)
			}
			rc, err := c.SweepResultsCSV(e.ctx, args[0])
			if err != nil {
				return err
			}
			defer rc.Close()
			if *asCSV {
				_, err := io.Copy(e.rawOut, rc)
				return err
			}
			recs, err := csv.NewReader(rc).ReadAll()
			if err != nil {
				return fmt.Errorf("the gateway's CSV: %w", err)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
			for _, r := range recs {
				fmt.Fprintln(tw, strings.Join(r, "\t"))
			}
			return tw.Flush()
		}
	},
}

var cmdSweepCancel = &command{
	name:    "cancel",
	summary: "cancel a sweep's jobs that have not ended",
	args:    "ID",
	desc:    "Cancels every job of the sweep that has not ended; those that ended stay as they are.",
	example: "hpcgate sweep cancel sw4kq2",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			sw, err := c.CancelSweep(e.ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "canceled sweep %s: %s\n", sw.ID, sweepProgress(sw))
			return nil
		}
	},
}
