package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/container"
)

// The gateway, for a job's container: the agent serves it on a Unix socket
// in the job's directory, sending every request with the job's token, so
// the container needs neither the network nor the token to submit
// children or read its inputs. What only the agent may do for the job
// (report its state, append its logs, upload its outputs, read its spec)
// is refused there: the command cannot forge its own job's end.

// socketName is the socket, in the agent's spool directory.
const socketName = "gateway.sock"

// serveGateway serves the gateway on the socket until the returned stop is
// called, which waits for the server to end.
func (a *agent) serveGateway() (sock string, stop func(), err error) {
	sock = filepath.Join(a.spool, socketName)
	if len(sock) > 107 { // sun_path
		return "", nil, fmt.Errorf("the gateway socket for the container: its path %s is longer than a socket's 107 bytes (a shorter work_root helps)", sock)
	}
	os.Remove(sock) // an earlier agent's
	l, err := net.Listen("unix", sock)
	if err != nil {
		return "", nil, fmt.Errorf("the gateway socket for the container: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return "", nil, err
	}
	mux := http.NewServeMux()
	proxy := a.c.Proxy()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Encoded dots, slashes and backslashes are never part of a
		// route: refused, so that no proxy in front of the gateway that
		// decodes them can turn a path into an agent-only route.
		if p := strings.ToLower(r.URL.EscapedPath()); strings.Contains(p, "%2e") || strings.Contains(p, "%2f") || strings.Contains(p, "%5c") {
			http.Error(w, `{"title":"encoded '.', '/' or '\' in a path","status":400}`, http.StatusBadRequest)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"title":"only the agent may do this for its job","status":403}`, http.StatusForbidden)
	})
	for _, p := range api.AgentOnly {
		mux.Handle(strings.Replace(p, "{id}", a.id, 1), refuse)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(l)
	}()
	return sock, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		srv.Close()
		<-done
		os.Remove(sock)
	}, nil
}

// gatewayForContainer serves the gateway to the container and returns its
// environment there (HPCGATE_URL, and HPCGATE_BIN when the client is
// mounted) and the client's mount, if any.
func (a *agent) gatewayForContainer(c *containerRun, workdir string) (stop func(), err error) {
	sock, stop, err := a.serveGateway()
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(a.dir, sock)
	if err != nil {
		stop()
		return nil, err
	}
	c.add("HPCGATE_URL", "unix://"+path.Join(workdir, filepath.ToSlash(rel)))
	// The client is this hpcgate, when it can run in any image: a static
	// binary (go build -tags osusergo,netgo).
	// It appears beside the socket, over an empty file the agent makes
	// (a mount point in the image itself may not be creatable: a rootless
	// container's image belongs to root).
	if bin := selfPath(); container.StaticBinary(bin) {
		spot := filepath.Join(a.spool, "hpcgate")
		if err := os.WriteFile(spot, nil, 0o700); err != nil {
			stop()
			return nil, err
		}
		target := path.Join(workdir, filepath.ToSlash(filepath.Join(filepath.Dir(rel), "hpcgate")))
		c.base.Mounts = append(c.base.Mounts, mountOf(bin, target))
		c.add("HPCGATE_BIN", target)
	} else {
		a.log.Warn("the hpcgate client is not mounted in the container: this hpcgate is not a static binary (build it with -tags osusergo,netgo)", "binary", bin)
	}
	return stop, nil
}
