package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/hpcgate/hpcgate/internal/cli"
)

// Help answers on standard output however it is asked for, for a client
// command or the server: "hpcgate help jobs" printed the general list.
func TestHelpEveryWay(t *testing.T) {
	for args, want := range map[string]string{
		"help":                "Client commands",
		"--help":              "Client commands",
		"help jobs":           "usage: hpcgate jobs",
		"help token create":   "usage: hpcgate token create",
		"jobs --help":         "usage: hpcgate jobs",
		"help server":         "--data-dir",
		"server --help":       "--data-dir",
		"submit hello -h":     "usage: hpcgate submit",
		"sweep evaluate -h":   "-q, --quiet",
		"token create --help": "0 or none is as long as the token",
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), strings.Fields(args), nil, &out, &errb)
		if code := exitCode(err, nil, &errb); code != 0 {
			t.Errorf("hpcgate %s: exit code %d (%v)", args, code, err)
		}
		if !strings.Contains(out.String(), want) || errb.Len() > 0 {
			t.Errorf("hpcgate %s: stdout lacks %q, or stderr has %q:\n%s", args, want, errb.String(), out.String())
		}
	}
}

// A command a signal ended says nothing more and exits as a shell's do
// (128 + the signal); other errors are said, once.
func TestExitCodes(t *testing.T) {
	var errb bytes.Buffer
	canceled := fmt.Errorf("waiting: %w", context.Canceled)
	if code := exitCode(canceled, interrupted{syscall.SIGINT}, &errb); code != 130 || errb.Len() > 0 {
		t.Errorf("Ctrl-C: exit %d, said %q; want 130 and nothing", code, errb.String())
	}
	if code := exitCode(canceled, interrupted{syscall.SIGTERM}, &errb); code != 143 || errb.Len() > 0 {
		t.Errorf("SIGTERM: exit %d, said %q; want 143 and nothing", code, errb.String())
	}
	if code := exitCode(errors.New("boom"), interrupted{syscall.SIGINT}, &errb); code != 1 || errb.String() != "hpcgate: boom\n" {
		t.Errorf("another error after a signal: exit %d, said %q", code, errb.String())
	}
	errb.Reset()
	if code := exitCode(&cli.ExitError{Code: 1}, nil, &errb); code != 1 || errb.Len() > 0 {
		t.Errorf("an exit error with nothing to say: exit %d, said %q", code, errb.String())
	}
	// a job's own words (its error) reach the terminal escaped
	for _, err := range []error{errors.New("job x failed: \x1b]0;pwned\x07\x1b[2J"), &cli.ExitError{Code: 1, Err: errors.New("job x failed: \x1b]0;pwned\x07\x1b[2J")}} {
		errb.Reset()
		if code := exitCode(err, nil, &errb); code != 1 || errb.String() != `hpcgate: job x failed: \x1b]0;pwned\x07\x1b[2J`+"\n" {
			t.Errorf("%T with control characters: exit %d, said %q", err, code, errb.String())
		}
	}
}

// An unknown command is a usage error (2), as no command is; the help
// lists the exit codes, in one column however long a command's name
// (webhook-secret ran into its summary); the agent's flags read as the
// client's do.
func TestHelpAlignedAndUsageExits(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"help", "nosuch"}, {}} {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, nil, &out, &errb)
		if code := exitCode(err, nil, &errb); code != 2 {
			t.Errorf("hpcgate %q: exit code %d, want 2", args, code)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, nil, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Exit codes:") {
		t.Errorf("help lists no exit codes:\n%s", out.String())
	}
	col := -1
	for _, c := range append(cli.Commands(), roles...) {
		i := strings.Index(out.String(), "\n  "+c.Name+" ")
		if i < 0 {
			t.Errorf("help lacks %s:\n%s", c.Name, out.String())
			continue
		}
		line := out.String()[i+1:]
		line = line[:strings.IndexByte(line, '\n')]
		at := strings.Index(line, c.Summary)
		if col < 0 {
			col = at
		}
		if at != col || line[at-2:at] != "  " {
			t.Errorf("help: %q: summary at column %d, want %d after two spaces", line, at, col)
		}
	}
	var errb bytes.Buffer
	err := run(context.Background(), []string{"agent", "--help"}, nil, &out, &errb)
	if code := exitCode(err, nil, io.Discard); code != 0 || !strings.Contains(errb.String(), "  --job ID\n") || strings.Contains(errb.String(), "-job string") {
		t.Errorf("agent --help: exit %d:\n%s", code, errb.String())
	}
}
