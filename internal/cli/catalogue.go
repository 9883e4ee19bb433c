package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/hpcgate/hpcgate/api"
)

var cmdTemplates = &command{
	name:    "templates",
	summary: "list the job templates",
	args:    "[--json]",
	desc:    "Lists the job templates of the gateway: their name, newest version, the runtime environments they may run in and what they do. Use 'hpcgate template NAME' for the parameters of one.",
	example: "hpcgate templates",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON list")
		return func(e *env, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			ts, err := c.Templates(e.ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, nonNil(ts))
			}
			tw := newTable(e.stdout)
			tw.row("NAME", "VERSION", "ENVIRONMENTS", "DESCRIPTION")
			for _, t := range ts {
				tw.row(t.Name, fmt.Sprint(t.Version), dash(strings.Join(t.Environments, ",")), dash(firstLine(t.Description)))
			}
			return tw.Flush()
		}
	},
}

var cmdTemplate = &command{
	name:    "template",
	summary: "show a job template: parameters, inputs, outputs, resources",
	args:    "NAME [--version N] [--json]",
	desc:    "Shows one job template: what it does, its parameters with their type, whether they are required, their default and constraints (from the template's JSON Schema), the input files it takes, the outputs it writes, and its resource defaults and maxima. --json prints the template as the gateway answers it.",
	example: "hpcgate template wordcount\nhpcgate template hello --version 1 --json",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		version := fs.Int("version", 0, "version `N` of the template (default the newest)")
		asJSON := fs.Bool("json", false, "print the template JSON")
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			t, err := c.Template(e.ctx, args[0], *version)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, t)
			}
			return showTemplate(e.stdout, t)
		}
	},
}

// showTemplate prints a template for people.
func showTemplate(w io.Writer, t *api.Template) error {
	s, err := parseSchema(t.Parameters)
	if err != nil {
		return err
	}
	tw := newTable(w)
	tw.row("Template:", fmt.Sprintf("%s (version %d)", t.Name, t.Version))
	tw.row("Description:", dash(strings.Join(strings.Fields(t.Description), " ")))
	tw.row("Environments:", dash(strings.Join(t.Environments, ", ")))
	if t.Image != "" {
		tw.row("Image:", t.Image)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nParameters:")
	if len(s.props) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else {
		tw = newTable(w)
		tw.row("  NAME", "TYPE", "REQUIRED", "DEFAULT", "CONSTRAINTS", "DESCRIPTION")
		for _, p := range s.props {
			def := "-"
			if d, ok := p.kw["default"]; ok {
				def = compactJSON(d)
			}
			var desc string
			if d, ok := p.kw["description"]; ok {
				json.Unmarshal(d, &desc)
			}
			tw.row("  "+p.name, p.typeName(), yesNo(s.required[p.name]), def, dash(p.constraints()), dash(desc))
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\nInputs:")
	if len(t.Inputs) == 0 {
		fmt.Fprintln(w, "  (none)")
	} else {
		tw = newTable(w)
		tw.row("  NAME", "PATH", "REQUIRED", "MAX SIZE", "DESCRIPTION")
		for _, in := range t.Inputs {
			max := "-"
			if in.MaxSize > 0 {
				max = formatBytes(in.MaxSize)
			}
			tw.row("  "+in.Name, in.Path, yesNo(in.Required), max, dash(in.Description))
		}
		tw.Flush()
	}

	fmt.Fprintln(w, "\nOutputs:")
	if len(t.Outputs) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, o := range t.Outputs {
		fmt.Fprintf(w, "  %s\n", o)
	}

	fmt.Fprintln(w, "\nResources:")
	tw = newTable(w)
	tw.row("  ", "NODES", "CORES/NODE", "MEMORY MB", "WALLTIME")
	for _, r := range []struct {
		name string
		r    api.Resources
	}{{"default", t.Resources.Default}, {"max", t.Resources.Max}} {
		tw.row("  "+r.name, num(int64(r.r.Nodes)), num(int64(r.r.CoresPerNode)), num(r.r.MemoryMB), formatSeconds(r.r.WalltimeS))
	}
	return tw.Flush()
}

var cmdEnvironments = &command{
	name:    "environments",
	summary: "list the runtime environments",
	args:    "[--json]",
	desc:    "Lists the runtime environments of the gateway: where and how jobs run (the batch system, its partition or queue, the container runtime) and the most a job may ask there.",
	example: "hpcgate environments",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON list")
		return func(e *env, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			envs, err := c.Environments(e.ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, nonNil(envs))
			}
			tw := newTable(e.stdout)
			tw.row("NAME", "SCHEDULER", "QUEUE", "RUNTIME", "MAX", "DESCRIPTION")
			for _, v := range envs {
				tw.row(v.Name, v.Scheduler, dash(firstNonEmpty(v.Partition, v.Queue)), dash(v.ContainerRuntime), resourcesText(v.Max), dash(firstLine(v.Description)))
			}
			return tw.Flush()
		}
	},
}

var cmdEnvironment = &command{
	name:    "environment",
	summary: "show a runtime environment with its live facts",
	args:    "NAME [--json]",
	desc:    "Shows one runtime environment: its batch system, partition or queue, parallel environment, container runtime and limits, and the live facts its engine reports now (such as free nodes or queued jobs).",
	example: "hpcgate environment local",
	minArgs: 1, maxArgs: 1,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the environment JSON")
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			v, err := c.Environment(e.ctx, args[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, v)
			}
			tw := newTable(e.stdout)
			tw.row("Environment:", v.Name)
			tw.row("Description:", dash(strings.Join(strings.Fields(v.Description), " ")))
			tw.row("Scheduler:", v.Scheduler)
			for _, kv := range [][2]string{{"Partition", v.Partition}, {"Queue", v.Queue}, {"Parallel env", v.ParallelEnv}, {"Container runtime", v.ContainerRuntime}, {"Images", strings.Join(v.Images, ", ")}} {
				if kv[1] != "" {
					tw.row(kv[0]+":", kv[1])
				}
			}
			tw.row("Max:", resourcesText(v.Max))
			tw.Flush()
			fmt.Fprintln(e.stdout, "\nLive:")
			if len(v.Live) == 0 {
				fmt.Fprintln(e.stdout, "  (none reported)")
				return nil
			}
			keys := make([]string, 0, len(v.Live))
			for k := range v.Live {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			tw = newTable(e.stdout)
			for _, k := range keys {
				tw.row("  "+k+":", liveValue(v.Live[k]))
			}
			return tw.Flush()
		}
	},
}

// liveValue formats one live fact: strings as they are, the rest as JSON.
func liveValue(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func compactJSON(raw json.RawMessage) string {
	var b strings.Builder
	v, err := decodeJSON(string(raw))
	if err != nil {
		return string(raw)
	}
	out, _ := json.Marshal(v)
	b.Write(out)
	return b.String()
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i]) + " …"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func num(n int64) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// nonNil turns a nil slice into an empty one, so that JSON shows [].
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
