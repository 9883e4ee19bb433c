// Command hpcgate is the gateway server, the in-job agent and the client,
// in one binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hpcgate/hpcgate/client"
	"github.com/hpcgate/hpcgate/internal/agent"
	"github.com/hpcgate/hpcgate/internal/cli"
	"github.com/hpcgate/hpcgate/internal/gateway"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	var ee *cli.ExitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ee):
		if ee.Err != nil {
			fmt.Fprintln(stderr, "hpcgate:", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintln(stderr, "hpcgate:", err)
	return 1
}

const help = `hpcgate: a REST gateway to HPC batch systems.

usage: hpcgate COMMAND [flags] [args]

Server and job roles:
  server        run the gateway (hpcgate server --help)
  agent         run a job's agent (started by the job script, not by hand)
  version       print the version

Client commands (they read HPCGATE_URL, HPCGATE_TOKEN and HPCGATE_CACERT):
`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printHelp(stderr)
		return &cli.ExitError{Code: 2}
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		printHelp(stdout)
		return nil
	case "version":
		fmt.Fprintln(stdout, "hpcgate", server.Version)
		return nil
	case "server":
		return gateway.Command(ctx, args[1:], stdout, stderr)
	case "agent":
		return agentCommand(ctx, args[1:], stderr)
	}
	return cli.Run(ctx, args, stdin, stdout, stderr)
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, help)
	for _, c := range cli.Commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.Name, c.Summary)
	}
	fmt.Fprintln(w, "\nEvery command answers --help.")
}

func agentCommand(ctx context.Context, args []string, stderr io.Writer) error {
	if agent.IsReaper(args) {
		return agent.Reap(args) // started by the agent itself
	}
	fl := flag.NewFlagSet("agent", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, `usage: hpcgate agent [--job ID] [--keep-workdir]

Runs one job inside its engine allocation: fetches the spec and inputs,
runs the adapters and the command, streams the logs, uploads the outputs
and reports the end. The job script starts it with HPCGATE_URL,
HPCGATE_TOKEN_FILE (a file holding the job's own token; or HPCGATE_TOKEN),
HPCGATE_JOB_ID and HPCGATE_CACERT set.

Flags:
`)
		fl.PrintDefaults()
	}
	id := fl.String("job", os.Getenv("HPCGATE_JOB_ID"), "the job's id")
	keep := fl.Bool("keep-workdir", false, "keep the working directory after the job")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("agent: no job id (--job or HPCGATE_JOB_ID)")
	}
	c, err := client.FromEnv()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	remote, err := agent.RemoteClient(os.Getenv("HPCGATE_CACERT"))
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	return agent.Run(ctx, c, *id, &agent.Options{
		Remote:        remote,
		KeepWorkDir:   *keep,
		TokenFile:     os.Getenv("HPCGATE_TOKEN_FILE"),
		EngineNotices: os.Getenv(sched.NoticesVar) == "sge",
	})
}
