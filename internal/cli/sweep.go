package cli

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

var cmdSweep = &command{
	name:    "sweep",
	summary: "run a template for many parameter variants",
	args:    "TEMPLATE --vary K=V1,V2,... [--vary K=START:STOP:STEP]... [--zip] [--param K=V]... [--input NAME=PATH]... [flags] | status|results|cancel ID",
	desc: "Creates a sweep: one job of TEMPLATE for each variant, all of them or, if any variant is invalid, none (every invalid field is reported). " +
		"Each --vary K=V1,V2,... gives the values of one parameter, read by the type the template's schema gives K as --param does; K=START:STOP:STEP is the numbers from START to STOP by STEP, both ends included (0:10:2 is 0, 2, 4, 6, 8, 10). " +
		"Values with commas go in a JSON array: --vary 'name=[\"Smith, John\", \"Doe\"]'. " +
		"The variants are every combination of the values: the gateway takes the parameters in the alphabetical order of their names, whatever the order of the --vary flags, and the last name varies fastest " +
		"(--vary points=3,4 --vary max_rounds=1,2 gives max_rounds,points = 1,3 then 1,4 then 2,3 then 2,4); with --zip the first values together, then the second ones, and so on. " +
		"--variants-file gives the variants instead, as a JSON list of parameter objects, in their own order. --param and --input give every variant the same parameter or input (an input is looked at and stored once); a parameter is either varied or given, not both. " +
		"It prints the sweep's id; --follow shows its progress until every job has ended, and then fails with exit code 3 if any did not succeed. " +
		"'hpcgate sweep status ID' shows a sweep's jobs per state, 'hpcgate sweep results ID' one row per variant (--csv, --json), 'hpcgate sweep cancel ID' cancels the jobs that have not ended.",
	example: "hpcgate sweep hello --vary name=ada,bob,cy --follow\n" +
		"hpcgate sweep wordcount --input text=texts/book.txt --vary min_length=1:10:3\n" +
		"hpcgate sweep evaluate --vary x=0:1:0.25 --follow\n" +
		"hpcgate sweep hello --vary 'name=[\"Smith, John\", \"Doe, Jane\"]'\n" +
		"hpcgate sweep results sw4kq2 --csv > results.csv",
	minArgs: 1, maxArgs: 1,
	subs: []*command{cmdSweepStatus, cmdSweepResults, cmdSweepCancel},
	setup: func(fs *flag.FlagSet) runFunc {
		var params, inputs, labels, vary multiFlag
		fs.Var(&vary, "vary", "a varied parameter `K=V1,V2,...`, K=START:STOP:STEP or K=[JSON array] (repeatable)")
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
			// the gateway would take the varied values and drop the given one
			for _, v := range vary {
				k, _, _ := strings.Cut(v, "=")
				if slices.ContainsFunc(params, func(p string) bool { return strings.HasPrefix(p, k+"=") }) {
					return &ExitError{Code: 2, Err: fmt.Errorf("sweep: parameter %s is given both by --param and by --vary: give it one way", k)}
				}
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
		// a range only where a number may be wanted: 12:30:00 may be a
		// time; where only a number is, a value with colons is a range
		// mistyped
		ranges, strict := true, false
		if s != nil {
			if p := s.prop(k); p != nil && len(p.types) > 0 {
				ranges = slices.Contains(p.types, "integer") || slices.Contains(p.types, "number")
				strict = ranges && !slices.Contains(p.types, "string")
			}
		}
		vals, err := expandValues(v, ranges, strict)
		if err != nil {
			return nil, fmt.Errorf("--vary %s: %w", k, err)
		}
		for _, x := range vals {
			raw, err := coerceParam(s, k, x)
			if err != nil {
				return nil, fmt.Errorf("--vary %s: %w", k, err)
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

// expandValues reads the values of --vary K=V as their texts: a JSON
// array of them (for values with commas), START:STOP:STEP if ranges
// (numbers, both ends included), or V1,V2,... With strict, a value with
// a colon must be a range.
func expandValues(v string, ranges, strict bool) ([]string, error) {
	if strings.HasPrefix(strings.TrimSpace(v), "[") {
		var list []json.RawMessage
		if json.Unmarshal([]byte(v), &list) == nil {
			return arrayValues(list)
		}
	}
	parts := strings.Split(v, ":")
	if !ranges || !strings.Contains(v, ":") {
		return strings.Split(v, ","), nil
	}
	notRange := fmt.Errorf("%q is not a range: a range is START:STOP:STEP, three numbers, both ends included (0:10:2 is 0, 2, 4, 6, 8, 10)", v)
	if len(parts) != 3 {
		if strict {
			return nil, notRange
		}
		return strings.Split(v, ","), nil
	}
	var n [3]float64
	for i, p := range parts {
		p = strings.TrimSpace(p)
		f, err := strconv.ParseFloat(p, 64)
		switch {
		case err == nil && decimalNumber.MatchString(p):
			n[i] = f
		case err == nil && (math.IsNaN(f) || math.IsInf(f, 0)), errors.Is(err, strconv.ErrRange):
			// nan, inf, 1e400
			return nil, fmt.Errorf("range %s: START, STOP and STEP must be finite numbers, and %s is not", v, p)
		case strict:
			return nil, notRange
		default:
			return strings.Split(v, ","), nil // not a range: a value with colons
		}
	}
	from, to, step := n[0], n[1], n[2]
	if step <= 0 {
		return nil, fmt.Errorf("range %s: the step must be more than 0", v)
	}
	if to < from {
		return nil, fmt.Errorf("range %s: it ends before it starts", v)
	}
	count := math.Floor((to-from)/step+1e-9) + 1
	if math.IsInf(count, 0) || count > maxVariants {
		return nil, fmt.Errorf("range %s: more values than a sweep may have (%d)", v, maxVariants)
	}
	// Each value is rounded to as many decimals as the numbers typed have
	// (0.1 has one, 1e-10 ten), which takes away float noise
	// (0.30000000000000004) and keeps every value apart from the next.
	prec := max(decimals(parts[0]), decimals(parts[1]), decimals(parts[2]))
	var out []string
	for i := 0; i < int(count); i++ {
		x := from + float64(i)*step
		x, _ = strconv.ParseFloat(strconv.FormatFloat(x, 'f', prec, 64), 64)
		if x > to {
			break // past STOP only by the count's tolerance
		}
		b, _ := json.Marshal(x) // as JSON writes numbers: 0.1, 1e-10, 1e+300
		out = append(out, string(b))
	}
	return out, nil
}

// maxVariants is the most variants a sweep may have (the gateway's cap).
const maxVariants = 10000

// decimalNumber is a number as people write it: 12, -0.5, .5, 1e-10.
var decimalNumber = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)

// decimals is how many digits after the point a decimal number has, its
// exponent counted: 2 for 1.25, 10 for 1e-10, 0 for 2.5e3. It is at most
// 1100, past the last digit a float64 has.
func decimals(s string) int {
	mant, exp, _ := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "e")
	d := 0
	if _, frac, ok := strings.Cut(mant, "."); ok {
		d = len(frac)
	}
	if e, err := strconv.Atoi(exp); err == nil {
		d -= max(min(e, 2000), -2000)
	}
	return min(max(d, 0), 1100)
}

// arrayValues is the texts of the values of a JSON array, each read then
// as --param reads its value: a string as what it holds, anything else
// as its JSON.
func arrayValues(list []json.RawMessage) ([]string, error) {
	if len(list) == 0 {
		return nil, errors.New("the JSON array has no values")
	}
	out := make([]string, len(list))
	for i, raw := range list {
		var str string
		if json.Unmarshal(raw, &str) == nil {
			out[i] = str
			continue
		}
		var b bytes.Buffer
		json.Compact(&b, raw)
		out[i] = b.String()
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
// it went: an *ExitError of code exitNotSucceeded if one did not succeed
// or was deleted, as a job waiting for the sweep to succeed sees it.
func sweepEnd(id string, sw *api.Sweep) (bool, error) {
	ended := sw.Counts[api.StateSucceeded] + sw.Counts[api.StateFailed] + sw.Counts[api.StateCanceled]
	switch {
	case ended != sw.Total:
		return false, nil
	case ended != sw.Counts[api.StateSucceeded]:
		return true, &ExitError{Code: exitNotSucceeded, Err: fmt.Errorf("sweep %s: %d of %d jobs did not succeed ('hpcgate sweep results %s')", id, ended-sw.Counts[api.StateSucceeded], sw.Total, id)}
	case sw.Deleted > 0:
		return true, &ExitError{Code: exitNotSucceeded, Err: fmt.Errorf("sweep %s: %d of its jobs were deleted, so they cannot be known to have succeeded", id, sw.Deleted)}
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
	desc:    "Prints one row per variant, in order: its job, state, exit code, parameters, and the members of its results.json (columns result.NAME). --csv prints CSV, exactly as the gateway wrote it into a file or a pipe, with control characters escaped (\\n, \\x1b) on a terminal; --json prints the rows as JSON.",
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
			// CSV into a file or a pipe is the gateway's bytes; on a
			// terminal its cells are escaped as a table's are, since a
			// job's results could otherwise script the terminal
			if *asCSV && !isTerminal(e.rawOut) {
				_, err := io.Copy(e.rawOut, rc)
				return err
			}
			recs, err := csv.NewReader(rc).ReadAll()
			if err != nil {
				return fmt.Errorf("the gateway's CSV: %w", err)
			}
			if *asCSV {
				return writeEscapedCSV(e.stdout, recs)
			}
			tw := newTable(e.stdout)
			for _, r := range recs {
				tw.row(r...)
			}
			return tw.Flush()
		}
	},
}

// writeEscapedCSV writes records as CSV with every cell escaped (cell).
func writeEscapedCSV(w io.Writer, recs [][]string) error {
	cw := csv.NewWriter(w)
	for _, r := range recs {
		esc := make([]string, len(r))
		for i, c := range r {
			esc[i] = cell(c)
		}
		cw.Write(esc)
	}
	cw.Flush()
	return cw.Error()
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
