package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	neturl "net/url"
	"os"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/netguard"
)

// permanentError is a failure that trying again cannot mend (a URL that
// answers 404, bytes that are not what their digest says): retry gives
// up at once.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// RemoteClient is the HTTP client for inputs given by URL: the system's
// roots and, when caFile is set, the CA the job was given to trust the
// gateway by (HPCGATE_CACERT), so that a centre's own https servers are
// trusted as its gateway is. It sends no token, and follows redirects to
// https:// URLs only. It connects to no link-local address (a cloud's
// metadata service), and to the node's own (loopback, its interfaces')
// only when loopback is set: the agent fetched https://127.0.0.1:PORT/ of
// any service on the node for a task that itself has no network, and it
// may run as root (found by the seventh probe). A gateway on loopback,
// one machine for everything, sets it (LoopbackGateway).
func RemoteClient(caFile string, loopback bool) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA certificate: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA certificate %s: no PEM certificate in it", caFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	g := &nodeGuard{loopback: loopback, own: nodeAddrs()}
	plain := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	checked := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: netguard.Control(g.check)}
	// Through a proxy (https_proxy), the address dialled is the proxy's,
	// which may be on loopback: the target is checked by its name's
	// addresses before the request goes to the proxy instead.
	var proxies sync.Map // the proxies' host:port
	tr.Proxy = func(req *http.Request) (*neturl.URL, error) {
		u, err := http.ProxyFromEnvironment(req)
		if err != nil || u == nil {
			return u, err
		}
		if err := g.checkHost(req.Context(), req.URL.Hostname()); err != nil {
			return nil, err
		}
		port := cmp.Or(u.Port(), map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}[u.Scheme]) // as net/http dials it
		proxies.Store(net.JoinHostPort(u.Hostname(), port), true)
		return u, nil
	}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if _, ok := proxies.Load(addr); ok {
			return plain.DialContext(ctx, network, addr)
		}
		return checked.DialContext(ctx, network, addr)
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	tr.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: tr, CheckRedirect: httpsOnly}, nil
}

// nodeGuard refuses the addresses an input may not be fetched from.
type nodeGuard struct {
	loopback bool                // the node's own addresses are allowed
	own      map[netip.Addr]bool // the node's interfaces' addresses
}

func (g *nodeGuard) check(a netip.Addr) error {
	a = a.Unmap()
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !g.loopback && (a.IsLoopback() || g.own[a]) {
		return permanentError{fmt.Errorf("%s is the node's own or link-local: inputs are not fetched from there", a)}
	}
	return nil
}

// checkHost checks each address host (a name or an address) has.
func (g *nodeGuard) checkHost(ctx context.Context, host string) error {
	if a, err := netip.ParseAddr(host); err == nil {
		return g.check(a)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil // the proxy resolves it, or says it cannot
	}
	for _, a := range addrs {
		if err := g.check(a); err != nil {
			return err
		}
	}
	return nil
}

// nodeAddrs are the addresses of the node's interfaces: a service bound
// to every address is reached at the node's own too.
func nodeAddrs() map[netip.Addr]bool {
	own := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				own[ip.Unmap()] = true
			}
		}
	}
	return own
}

// LoopbackGateway reports whether the gateway at url is on the node's
// loopback: everything runs on one machine, whose own https servers an
// input may name.
func LoopbackGateway(url string) bool {
	u, err := neturl.Parse(url)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(u.Hostname())
	return err == nil && a.Unmap().IsLoopback()
}

var errNotHTTPS = errors.New("only https:// is followed")

// httpsOnly follows up to 10 redirects, to https:// URLs only: an input
// given by an https URL is never fetched in plain text.
func httpsOnly(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("a redirect to %s: %w", req.URL.Redacted(), errNotHTTPS)
	}
	if len(via) >= 10 {
		return errors.New("more than 10 redirects")
	}
	return nil
}

// fetchRemote downloads the input in.URL into dst (from the start: a
// server need not answer ranges), at most in.MaxSize bytes, and checks
// in.SHA256 when it is set. A wrong digest, an oversized body or a 4xx
// answer is permanent; the file is removed then.
func fetchRemote(ctx context.Context, hc *http.Client, in api.SpecInput, dst string) (err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.URL, nil)
	if err != nil {
		return permanentError{err}
	}
	c := *hc
	c.CheckRedirect = httpsOnly // whatever client the agent was given
	resp, err := c.Do(req)
	if err != nil {
		if errors.Is(err, errNotHTTPS) {
			return permanentError{err}
		}
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests:
		return permanentError{fmt.Errorf("%s answered %s", in.URL, resp.Status)}
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s answered %s", in.URL, resp.Status)
	case in.MaxSize > 0 && resp.ContentLength > in.MaxSize:
		return permanentError{fmt.Errorf("%s is %d bytes, more than the input's limit of %d", in.URL, resp.ContentLength, in.MaxSize)}
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(dst)
		}
	}()
	h := sha256.New()
	body := io.Reader(resp.Body)
	if in.MaxSize > 0 {
		body = io.LimitReader(body, in.MaxSize+1)
	}
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if err != nil {
		return err
	}
	if in.MaxSize > 0 && n > in.MaxSize {
		return permanentError{fmt.Errorf("%s is more than the input's limit of %d bytes", in.URL, in.MaxSize)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); in.SHA256 != "" && got != in.SHA256 {
		return permanentError{fmt.Errorf("%s has sha256 %s, not %s as the input's URL says", in.URL, got, in.SHA256)}
	}
	return nil
}
