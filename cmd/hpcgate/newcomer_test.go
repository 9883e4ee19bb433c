package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The README's tour, tried as a newcomer would: what it says a command
// prints is what it prints.
func TestNewcomerTour(t *testing.T) {
	g := startGateway(t, "")
	alice := g.userToken("alice")

	out := g.mustCLI(alice, "submit", "hello", "--param", "name=World", "--follow")
	if !strings.Contains(out, "Hello, World") {
		t.Errorf("submit hello --follow printed %q; the README says Hello, World", out)
	}

	// An admin listing tokens learns how to see other users'.
	_, errOut, err := g.cli(g.token, "token", "list")
	if err != nil || !strings.Contains(errOut, "--user") {
		t.Errorf("token list as admin: %v; stderr %q, want a hint about --user", err, errOut)
	}
	_, errOut, err = g.cli(alice, "token", "list")
	if err != nil || strings.Contains(errOut, "--user") {
		t.Errorf("token list as a user: %v; stderr %q, want no admin hint", err, errOut)
	}

	// Without the gateway's certificate, the client says what to set.
	cmd := exec.Command(filepath.Join(g.bin, "hpcgate"), "jobs")
	cmd.Env = append(g.env(), "HPCGATE_URL="+g.url, "HPCGATE_TOKEN="+alice, "HPCGATE_CACERT=")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "HPCGATE_CACERT") {
		t.Errorf("hpcgate jobs without a CA: %v\n%s\nwant a message naming HPCGATE_CACERT", err, b)
	}
}
