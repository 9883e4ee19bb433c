package cli

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

var cmdToken = &command{
	name:    "token",
	summary: "create, list and revoke API tokens",
	args:    "create|list|revoke ...",
	desc:    "Manages API tokens. A token acts for one user with some scopes (jobs:read, jobs:write, files:read, files:write, tasks, admin; tasks creates GA4GH TES tasks: any image and command). You may give a new token only scopes you have; an admin may make tokens for any user.",
	example: "hpcgate token create --scopes jobs:read,jobs:write,files:read,files:write --expires-in 30d --name laptop\nhpcgate token list\nhpcgate token revoke tok_47ngW5AvT1lN",
	subs:    []*command{cmdTokenCreate, cmdTokenList, cmdTokenRevoke},
}

var cmdTokenCreate = &command{
	name:    "create",
	summary: "create a token and print its secret",
	args:    "[--user U] --scopes A,B,C [--expires-in DURATION] [--name N] [--json]",
	desc:    "Creates a token and prints its secret alone on the first line: it is shown only this once, so store it now (for example in HPCGATE_TOKEN). --user defaults to you; only an admin may name another user.",
	example: "hpcgate token create --scopes jobs:read,jobs:write --expires-in 90d --name ci",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		user := fs.String("user", "", "the `USER` the token acts for (default you)")
		scopes := fs.String("scopes", "", "comma-separated `SCOPES`: jobs:read, jobs:write, files:read, files:write, tasks, admin")
		expires := fs.String("expires-in", "", "lifetime: seconds or a `DURATION` (720h, 30d); 0 or none is as long as the token that makes it (never, if that one never expires)")
		name := fs.String("name", "", "a `NAME` to recognise the token by")
		asJSON := fs.Bool("json", false, "print the token JSON (secret included)")
		return func(e *env, _ []string) error {
			req := api.TokenRequest{User: *user, Name: *name}
			for _, s := range strings.Split(*scopes, ",") {
				if s = strings.TrimSpace(s); s != "" {
					req.Scopes = append(req.Scopes, s)
				}
			}
			if len(req.Scopes) == 0 {
				return &ExitError{Code: 2, Err: errors.New("token create: --scopes is required (e.g. jobs:read,jobs:write)")}
			}
			if *expires != "" && *expires != "0" {
				s, err := parseSeconds(*expires)
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--expires-in: %w", err)}
				}
				req.ExpiresInS = s
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(e.ctx, req)
			if err != nil {
				return err
			}
			if *asJSON {
				if err := printJSON(e.stdout, t); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(e.stdout, t.Token)
			}
			exp := "never expires"
			if t.ExpiresAt != nil {
				exp = "expires " + t.ExpiresAt.Local().Format("2006-01-02 15:04:05")
			}
			fmt.Fprintf(e.stderr, "token %s for %s (%s; %s). Its secret is shown only once: store it now.\n", t.ID, t.User, strings.Join(t.Scopes, ","), exp)
			return nil
		}
	},
}

var cmdTokenList = &command{
	name:    "list",
	summary: "list tokens",
	args:    "[--user U] [--json]",
	desc:    "Lists your tokens (never their secrets). An admin may list another user's with --user, or everyone's with --user '*'.",
	example: "hpcgate token list",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		user := fs.String("user", "", "list the tokens of `USER` (admin; * for all)")
		asJSON := fs.Bool("json", false, "print the JSON list")
		return func(e *env, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			toks, err := c.Tokens(e.ctx, *user)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, nonNil(toks))
			}
			if *user == "" {
				if me, err := c.Me(e.ctx); err == nil && slices.Contains(me.Scopes, api.ScopeAdmin) {
					fmt.Fprintln(e.stderr, "These are your own tokens: --user NAME lists a user's, --user '*' everyone's.")
				}
			}
			now := e.now()
			tw := newTable(e.stdout)
			tw.row("ID", "NAME", "USER", "SCOPES", "CREATED", "EXPIRES", "JOB")
			for _, t := range toks {
				exp := "never"
				if t.ExpiresAt != nil {
					exp = t.ExpiresAt.Local().Format("2006-01-02 15:04")
				}
				tw.row(t.ID, dash(t.Name), t.User, strings.Join(t.Scopes, ","), age(now, t.CreatedAt), exp, dash(t.JobID))
			}
			return tw.Flush()
		}
	},
}

var cmdTokenRevoke = &command{
	name:    "revoke",
	summary: "revoke tokens",
	args:    "ID...",
	desc:    "Revokes each token given by its id (see 'hpcgate token list'): it no longer authenticates.",
	example: "hpcgate token revoke tok_47ngW5AvT1lN",
	minArgs: 1, maxArgs: -1,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, ids []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			return e.forEach(ids, "revoked", func(id string) error { return c.RevokeToken(e.ctx, id) })
		}
	},
}

var cmdMe = &command{
	name:    "me",
	summary: "show who your token is",
	args:    "[--json]",
	desc:    "Shows the user your token acts for, its scopes and its id; for a job's token, the job too.",
	example: "hpcgate me",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON answer")
		return func(e *env, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			me, err := c.Me(e.ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, me)
			}
			tw := newTable(e.stdout)
			tw.row("User:", me.User)
			tw.row("Scopes:", dash(strings.Join(me.Scopes, ", ")))
			tw.row("Token:", dash(me.TokenID))
			if me.JobID != "" {
				tw.row("Job:", me.JobID)
			}
			for _, name := range []string{"jobs", "cores", "bytes", "files"} {
				q, ok := me.Quotas[name]
				if !ok {
					continue
				}
				show := func(n int64) string { return fmt.Sprint(n) }
				if name == "bytes" {
					show = formatBytes // 3.4 KiB of 1.0 TiB
				}
				limit := "no limit"
				if q.Limit > 0 {
					limit = show(q.Limit)
				}
				tw.row("Quota "+name+":", show(q.Used)+" of "+limit)
			}
			for _, p := range me.Projects {
				// "" is the jobs that named no project
				key := "Project " + p.Project + ":"
				if p.Project == "" {
					key = "No project:"
				}
				tw.row(key, fmt.Sprintf("%d jobs (%d unfinished), %.0f core-seconds", p.Jobs, p.ActiveJobs, p.CoreSeconds))
			}
			return tw.Flush()
		}
	},
}

var cmdUser = &command{
	name:    "user",
	summary: "disable or enable a user (admins)",
	args:    "show|disable|enable NAME",
	desc:    "Disables a user: every token of theirs, job tokens too, stops working at once (on other gateway replicas within 2 s), their jobs not yet started are held and their started ones canceled (with --cancel, all are canceled). Enabling lets their tokens work again; held jobs stay held until released.",
	example: "hpcgate user disable alice\nhpcgate user disable --cancel alice\nhpcgate user enable alice",
	subs:    []*command{cmdUserShow, cmdUserDisable, cmdUserEnable},
}

func printUser(e *env, u *api.UserState) error {
	tw := newTable(e.stdout)
	tw.row("User:", u.Name)
	tw.row("Disabled:", fmt.Sprint(u.Disabled))
	if u.Held+u.Canceled > 0 {
		tw.row("Jobs held:", fmt.Sprint(u.Held))
		tw.row("Jobs canceled:", fmt.Sprint(u.Canceled))
	}
	return tw.Flush()
}

var cmdUserShow = &command{
	name: "show", summary: "show whether a user is disabled", args: "NAME [--json]", minArgs: 1, maxArgs: 1,
	example: "hpcgate user show alice",
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON answer")
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			u, err := c.User(e.ctx, args[0])
			if err != nil {
				return err
			}
			if *asJSON {
				return printJSON(e.stdout, u)
			}
			return printUser(e, u)
		}
	},
}

var cmdUserDisable = &command{
	name: "disable", summary: "disable a user: their tokens stop, their jobs are held", args: "[--cancel] NAME", minArgs: 1, maxArgs: 1,
	example: "hpcgate user disable --cancel alice",
	setup: func(fs *flag.FlagSet) runFunc {
		cancel := fs.Bool("cancel", false, "cancel every unfinished job of the user instead of holding those not started")
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			jobs := "hold"
			if *cancel {
				jobs = "cancel"
			}
			u, err := c.DisableUser(e.ctx, args[0], jobs)
			if err != nil {
				return err
			}
			return printUser(e, u)
		}
	},
}

var cmdUserEnable = &command{
	name: "enable", summary: "enable a user again", args: "NAME", minArgs: 1, maxArgs: 1,
	example: "hpcgate user enable alice",
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			u, err := c.EnableUser(e.ctx, args[0])
			if err != nil {
				return err
			}
			return printUser(e, u)
		}
	},
}

var cmdHealth = &command{
	name:    "health",
	summary: "show whether the gateway and its components answer",
	args:    "[--json]",
	desc:    "Shows whether each component of the gateway answers (its database, object store and batch systems) and the overall status. It fails (exit code 1) when the gateway is degraded.",
	example: "hpcgate health",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print the JSON answer")
		return func(e *env, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := c.Status(e.ctx)
			if err != nil {
				return err
			}
			if *asJSON {
				err = printJSON(e.stdout, st)
			} else {
				tw := newTable(e.stdout)
				tw.row("NAME", "KIND", "REACHABLE", "ERROR")
				for _, comp := range st.Components {
					tw.row(comp.Name, comp.Kind, yesNo(comp.Reachable), dash(comp.Error))
				}
				tw.Flush()
				version := ""
				if st.Version != "" {
					version = " (gateway " + st.Version + ")"
				}
				fmt.Fprintf(e.stdout, "\nstatus: %s%s\n", st.Status, version)
			}
			if err == nil && st.Status != "ok" {
				return &ExitError{Code: 1, Err: fmt.Errorf("the gateway is %s", dash(st.Status))}
			}
			return err
		}
	},
}

var cmdAudit = &command{
	name:    "audit",
	summary: "read the audit log (admins)",
	args:    "[--user U] [--job ID] [--action A] [--target TEXT] [--since T] [--until T] [--limit N] [--all] [--json]",
	desc:    "Lists the audit log, newest first: every request that changed something or tried to (tokens, files, jobs, controls), with its time, user, token id, job, action (the route), target (the path: the user disabled, the token revoked, the file written; or the token made), outcome (the HTTP status), client address and request id. Never a token's secret. --user is who made the request; --target finds what it was aimed at ('users/alice' finds who disabled alice). --since and --until take RFC 3339 times (2026-11-25T09:00:00Z) or a duration back from now (90m, 24h). Admins only.",
	example: "hpcgate audit --user alice --since 24h\nhpcgate audit --target users/alice\nhpcgate audit --job 7yzixrkjsc6irydo --json",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		var f client.AuditFilter
		fs.StringVar(&f.User, "user", "", "only the requests of `USER`")
		fs.StringVar(&f.JobID, "job", "", "only the requests about job `ID`")
		fs.StringVar(&f.Action, "action", "", "only the action `A` (a route, e.g. \"POST /v1/jobs\")")
		fs.StringVar(&f.Target, "target", "", "only the requests whose target holds `TEXT` (a path, e.g. users/alice)")
		since := fs.String("since", "", "from `T` on (RFC 3339, or a duration back from now)")
		until := fs.String("until", "", "up to `T` (RFC 3339, or a duration back from now)")
		fs.IntVar(&f.Limit, "limit", 100, "at most `N` entries a page")
		all := fs.Bool("all", false, "every page, not only the first")
		asJSON := fs.Bool("json", false, "print the JSON entries")
		return func(e *env, _ []string) error {
			if f.Limit < 0 {
				return &ExitError{Code: 2, Err: errors.New("audit: --limit must not be negative")}
			}
			var err error
			if f.Since, err = auditTime(e.now(), "since", *since); err != nil {
				return err
			}
			if f.Until, err = auditTime(e.now(), "until", *until); err != nil {
				return err
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			var entries []api.AuditEntry
			for {
				page, err := c.Audit(e.ctx, f)
				if err != nil {
					return err
				}
				entries = append(entries, page.Items...)
				if !*all || page.NextPageToken == "" {
					break
				}
				f.PageToken = page.NextPageToken
			}
			if *asJSON {
				return printJSON(e.stdout, nonNil(entries))
			}
			tw := newTable(e.stdout)
			tw.row("TIME", "USER", "ACTION", "TARGET", "OUTCOME", "JOB", "TOKEN", "CLIENT", "REQUEST")
			for _, a := range entries {
				tw.row(a.Time.Local().Format("2006-01-02 15:04:05"), dash(a.User), a.Action, dash(a.Target), fmt.Sprint(a.Outcome),
					dash(a.JobID), dash(a.TokenID), dash(a.Client), dash(a.RequestID))
			}
			return tw.Flush()
		}
	},
}

// auditTime reads a --since/--until value: an RFC 3339 time, or a
// duration back from now.
func auditTime(now time.Time, name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if !strings.ContainsAny(v, ":-") { // days, as --expires-in takes them (7d)
		if secs, err := parseSeconds(v); err == nil {
			return now.Add(-time.Duration(secs) * time.Second), nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: want an RFC 3339 time (2026-11-25T09:00:00Z) or a duration back from now (90m, 24h, 7d)", name, v)
}
