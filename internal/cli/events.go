package cli

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

var cmdEvents = &command{
	name:    "events",
	summary: "show your jobs' state changes as they happen",
	args:    "[--after N] [--job ID] [--sweep ID] [--json]",
	desc: "Prints each state change of your jobs as it happens (SEQ TIME JOB STATE REASON), until interrupted. Each change has a number, 1, 2, ... in the order they happened: --after N starts after change N (0: every change the gateway still keeps, 7 days by default), and a broken connection resumes after the last one shown, so none is missed. " +
		"--job and --sweep show only that job's or sweep's. It needs your own token, not a job's.",
	example: "hpcgate events\nhpcgate events --sweep sw4kq2 --json",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		after := fs.Int64("after", client.FromNow, "start after change `N` (default: from now on)")
		jobID := fs.String("job", "", "only job `ID`'s changes")
		sweep := fs.String("sweep", "", "only sweep `ID`'s changes")
		asJSON := fs.Bool("json", false, "print each change as a JSON line")
		return func(e *env, _ []string) error {
			if *after < client.FromNow {
				return &ExitError{Code: 2, Err: errors.New("events: --after must be 0 or more")}
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			st, err := c.OpenChanges(e.ctx, *after)
			if err != nil {
				return err
			}
			defer st.Close()
			for {
				ch, err := st.Next()
				if err != nil {
					if e.ctx.Err() != nil {
						return nil // interrupted
					}
					return err
				}
				if (*jobID != "" && ch.JobID != *jobID) || (*sweep != "" && ch.SweepID != *sweep) {
					continue
				}
				if *asJSON {
					if err := printJSONLine(e.stdout, ch); err != nil {
						return err
					}
					continue
				}
				fmt.Fprintf(e.stdout, "%d %s %s %s %s\n", ch.Seq, ch.Time.Local().Format(time.DateTime), ch.JobID, ch.State, dash(ch.Reason))
			}
		}
	},
}

var cmdWebhookSecret = &command{
	name:    "webhook-secret",
	summary: "make the key your webhooks are signed with",
	args:    "",
	desc: "Makes your webhook secret, replacing any before it, and prints it: this is the only time it is shown. Jobs and sweeps submitted with a notify URL need one. " +
		"Each event the gateway posts carries X-Hpcgate-Signature: sha256=HEX, the HMAC-SHA256 of the body under this key, and X-Hpcgate-Event-Id, the same on every delivery of one event: check the first, and drop an event id you have seen.",
	example: "hpcgate webhook-secret > ~/.hpcgate-webhook-secret",
	maxArgs: 0,
	setup: func(fs *flag.FlagSet) runFunc {
		return func(e *env, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			sec, err := c.CreateWebhookSecret(e.ctx)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, sec.Secret)
			return nil
		}
	},
}

// watchSweep calls show with the sweep's state each time one of its jobs
// changes (and at once), until show returns true; from a job's token,
// which has no change stream, it looks every second instead.
func (e *env) watchSweep(c *client.Client, id string, show func(*api.Sweep) (bool, error)) error {
	st, err := c.OpenChanges(e.ctx, client.FromNow)
	polling := client.NoChangeStream(err)
	if err != nil && !polling {
		return err
	}
	if st != nil {
		defer st.Close()
	}
	for {
		sw, err := c.Sweep(e.ctx, id)
		if err != nil {
			return err
		}
		if done, err := show(sw); done || err != nil {
			return err
		}
		if polling {
			select {
			case <-e.ctx.Done():
				return e.ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		for {
			ch, err := st.Next()
			if err != nil {
				return err
			}
			if ch.SweepID == id {
				break
			}
		}
	}
}
