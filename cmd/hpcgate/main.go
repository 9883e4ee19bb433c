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
	"github.com/hpcgate/hpcgate/internal/ctlchar"
	"github.com/hpcgate/hpcgate/internal/gateway"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/server"
)

func main() { os.Exit(runMain()) }

// runMain runs the command os.Args names until it ends, or a signal
// (SIGINT, SIGTERM) ends its context, and returns the exit code.
func runMain() int {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { cancel(interrupted{<-sigs}) }()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	signal.Stop(sigs)
	return exitCode(err, context.Cause(ctx), os.Stderr)
}

// interrupted is the cause of the end of main's context: a signal.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// exitCode is the process's exit code for what run returned, and says on
// stderr what went wrong. A command a signal ended (Ctrl-C) exits with
// 128 plus the signal's number, as a shell's do, and says nothing more:
// its "context canceled" is no news to whoever pressed Ctrl-C.
func exitCode(err, cause error, stderr io.Writer) int {
	var ee *cli.ExitError
	var in interrupted
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(cause, &in) && errors.Is(err, context.Canceled):
		if s, ok := in.sig.(syscall.Signal); ok {
			return 128 + int(s)
		}
		return 130
	case errors.As(err, &ee):
		if ee.Err != nil {
			fmt.Fprintln(stderr, "hpcgate:", ctlchar.Quote(ee.Err.Error()))
		}
		return ee.Code
	}
	// the error may carry a job's own words (its error): no control
	// sequence reaches the terminal
	fmt.Fprintln(stderr, "hpcgate:", ctlchar.Quote(err.Error()))
	return 1
}

// roles are the commands that are not the client's.
var roles = []cli.Command{
	{Name: "server", Summary: "run the gateway (hpcgate server --help)"},
	{Name: "agent", Summary: "run a job's agent (started by the job script, not by hand)"},
	{Name: "version", Summary: "print the version"},
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printHelp(stderr)
		return &cli.ExitError{Code: 2}
	}
	switch args[0] {
	case "help", "-h", "--help", "-help":
		switch {
		case len(args) == 1 || args[0] != "help":
			printHelp(stdout)
			return nil
		case args[1] == "server":
			return gateway.Command(ctx, []string{"--help"}, stdout, stderr)
		case args[1] == "agent" || args[1] == "version":
			printHelp(stdout) // no flags of their own: the list says what they do
			return nil
		}
		return cli.Run(ctx, args, stdin, stdout, stderr) // hpcgate help COMMAND
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
	// one column for both lists, as wide as the longest name
	width := 0
	for _, c := range append(cli.Commands(), roles...) {
		width = max(width, len(c.Name))
	}
	list := func(cmds []cli.Command) {
		for _, c := range cmds {
			fmt.Fprintf(w, "  %-*s  %s\n", width, c.Name, c.Summary)
		}
	}
	fmt.Fprint(w, "hpcgate: a REST gateway to HPC batch systems.\n\nusage: hpcgate COMMAND [flags] [args]\n\nServer and job roles:\n")
	list(roles)
	fmt.Fprint(w, `
Client commands (they read HPCGATE_URL, HPCGATE_TOKEN or HPCGATE_TOKEN_FILE,
and HPCGATE_CACERT; 'hpcgate help COMMAND' or 'hpcgate COMMAND --help' for one):
`)
	list(cli.Commands())
	fmt.Fprint(w, "\nEvery command answers --help.\n\n"+cli.ExitCodes)
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
		fmt.Fprint(stderr, cli.FlagUsage(fl))
	}
	id := fl.String("job", os.Getenv("HPCGATE_JOB_ID"), "the job's `ID` (default $HPCGATE_JOB_ID)")
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
	remote, err := agent.RemoteClient(os.Getenv("HPCGATE_CACERT"), agent.LoopbackGateway(os.Getenv("HPCGATE_URL")))
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
