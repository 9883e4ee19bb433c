// Package client is the Go SDK of the hpcgate API. It depends on the
// standard library and package api only. The CLI and the agent are built
// on it.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// Client talks to one gateway with one token.
type Client struct {
	base  *url.URL
	shown string // the gateway's URL as given, for messages
	token string
	http  *http.Client
}

// Options configure a Client. Zero fields take the defaults.
type Options struct {
	// CACertFile is a PEM file of the CAs to trust instead of the
	// system's (like curl's --cacert).
	CACertFile string
	// HTTPClient replaces the default client (CACertFile is then ignored).
	HTTPClient *http.Client
	// Timeout bounds a whole non-streaming request (default none: use contexts).
	Timeout time.Duration
}

// New returns a client of the gateway at baseURL (https://host:port), or
// of the agent's gateway socket in a job's container (unix:///path: the
// agent adds the job's token, so token may be "").
func New(baseURL, token string, opts *Options) (*Client, error) {
	if opts == nil {
		opts = &Options{}
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err == nil && u.Scheme == "unix" && u.Path != "" && opts.HTTPClient == nil {
		sock := u.Path
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}
		hc := &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: sameHostOnce}
		return &Client{base: &url.URL{Scheme: "http", Host: "hpcgate"}, shown: u.String(), token: token, http: hc}, nil
	}
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("gateway URL %q: want https://host:port", baseURL)
	}
	hc := opts.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.WriteBufferSize, tr.ReadBufferSize = 256<<10, 256<<10
		tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerConnection: 16 << 20, MaxReceiveBufferPerStream: 8 << 20, MaxReadFrameSize: 1 << 20}
		if opts.CACertFile != "" {
			pem, err := os.ReadFile(opts.CACertFile)
			if err != nil {
				return nil, fmt.Errorf("CA certificate: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA certificate %s: no PEM certificate in it", opts.CACertFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		hc = &http.Client{Transport: tr, Timeout: opts.Timeout, CheckRedirect: sameHostOnce}
	}
	return &Client{base: u, shown: u.Redacted(), token: token, http: hc}, nil
}

// sameHostOnce follows no redirect to the gateway itself: the gateway
// sends none, and following one would carry the token to whatever route
// it names. (A redirect elsewhere, as to an object store's presigned URL,
// is followed without the token, as Go's client does.)
func sameHostOnce(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if req.URL.Host == via[0].URL.Host {
		return http.ErrUseLastResponse
	}
	return nil
}

// FromEnv returns a client configured by HPCGATE_URL, HPCGATE_TOKEN and
// HPCGATE_CACERT, as the CLI and jobs use it. When HPCGATE_TOKEN is not
// set, the token is read from the file HPCGATE_TOKEN_FILE names (jobs get
// their token so, never in their environment); surrounding white space is
// dropped.
func FromEnv() (*Client, error) {
	u := os.Getenv("HPCGATE_URL")
	if u == "" {
		return nil, errors.New("HPCGATE_URL is not set (e.g. https://127.0.0.1:8443)")
	}
	tok, err := TokenFromEnv()
	if err != nil && !strings.HasPrefix(u, "unix:") { // the agent's socket adds the token
		return nil, err
	}
	return New(u, tok, &Options{CACertFile: os.Getenv("HPCGATE_CACERT")})
}

// TokenFromEnv returns HPCGATE_TOKEN, or else the content of the file
// HPCGATE_TOKEN_FILE names, without surrounding white space.
func TokenFromEnv() (string, error) {
	if tok := strings.TrimSpace(os.Getenv("HPCGATE_TOKEN")); tok != "" {
		return tok, nil
	}
	p := os.Getenv("HPCGATE_TOKEN_FILE")
	if p == "" {
		return "", errors.New("HPCGATE_TOKEN is not set (nor HPCGATE_TOKEN_FILE, a file holding the token)")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("HPCGATE_TOKEN_FILE: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("HPCGATE_TOKEN_FILE: %s is empty", p)
	}
	return tok, nil
}

// explain turns a failed TLS handshake with the gateway, or a gateway not
// reached, into an error that says what to check or set; err stays in the
// chain.
func (c *Client) explain(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial" && !errors.Is(err, context.Canceled):
		return &UnreachableError{Err: err, Msg: fmt.Sprintf("cannot reach the gateway at %s: %v (is it running there? HPCGATE_URL names it)", c.shown, op.Err)}
	case errors.As(err, &unknown):
		return &TLSTrustError{Err: err, Msg: "the gateway's TLS certificate is not signed by an authority this client trusts: " +
			"set HPCGATE_CACERT (the CLI's --cacert; Options.CACertFile in Go) to the gateway's certificate, " +
			"e.g. DATA_DIR/tls/cert.pem of its data directory, or to the CA that signed it"}
	case errors.As(err, &host):
		return &TLSTrustError{Err: err, Msg: fmt.Sprintf("the gateway's TLS certificate is not for %q: "+
			"use a URL with one of the names it is for (%s), or give the gateway a certificate for this name",
			host.Host, strings.Join(append(host.Certificate.DNSNames, ipStrings(host.Certificate.IPAddresses)...), ", "))}
	}
	return err
}

func ipStrings[T fmt.Stringer](ips []T) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// TLSTrustError is a gateway whose certificate this client does not trust.
// Its message says what to set; Err is the TLS error.
type TLSTrustError struct {
	Msg string
	Err error
}

func (e *TLSTrustError) Error() string { return e.Msg }
func (e *TLSTrustError) Unwrap() error { return e.Err }

// UnreachableError is a gateway this client could not connect to (refused,
// no such host, no route). Its message says where it looked; Err is the
// network's error.
type UnreachableError struct {
	Msg string
	Err error
}

func (e *UnreachableError) Error() string { return e.Msg }
func (e *UnreachableError) Unwrap() error { return e.Err }

// Error is an error answer of the gateway.
type Error struct {
	api.Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, f := range e.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Message)
	}
	return b.String()
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// url is the gateway's URL of path (escaped, see pathEscape) with query
// q. A path with an empty, . or .. segment is refused here, never sent:
// on its way (a proxy that normalises URLs, a router) it would name
// another route, files/../jobs/ID being jobs/ID.
func (c *Client) url(path string, q url.Values) (string, error) {
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		if s, _ := url.PathUnescape(seg); s == "" || s == "." || s == ".." {
			return "", fmt.Errorf("the path %s has an empty, . or .. segment: a file's path or an id must have none", path)
		}
	}
	// path comes escaped (see pathEscape); Path and RawPath together make
	// the URL carry exactly those escapes, not escapes of them.
	u := *c.base
	unescaped, err := url.PathUnescape(path)
	if err != nil {
		unescaped = path
	}
	u.Path = c.base.Path + unescaped
	u.RawPath = c.base.EscapedPath() + path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// pathEscape escapes each segment of a slash-separated path.
func pathEscape(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// Do sends a request and returns the response if its status is below 300;
// otherwise it returns an *Error. The caller closes the body.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body io.Reader, hdr http.Header) (*http.Response, error) {
	u, err := c.url(path, q)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.explain(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		e := &Error{}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e.Problem) != nil || e.Status == 0 {
			e.Status, e.Title = resp.StatusCode, http.StatusText(resp.StatusCode)
			e.Detail = strings.TrimSpace(string(b))
		}
		return nil, e
	}
	return resp, nil
}

// call sends in (if not nil) as JSON and decodes the answer into out (if
// not nil).
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any, hdr http.Header) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
		if hdr == nil {
			hdr = http.Header{}
		}
		hdr.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(ctx, method, path, q, body, hdr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Transport is the client's HTTP transport (with its TLS settings), for
// callers that need requests the SDK does not make.
func (c *Client) Transport() http.RoundTripper {
	if c.http.Transport == nil {
		return http.DefaultTransport
	}
	return c.http.Transport
}

// Health checks the gateway answers (no token needed).
func (c *Client) Health(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/v1/health", nil, nil, nil, nil)
}

// Status returns whether each component answers.
func (c *Client) Status(ctx context.Context) (*api.Status, error) {
	var out api.Status
	return &out, c.call(ctx, http.MethodGet, "/v1/status", nil, nil, &out, nil)
}

// Me returns who the token is.
func (c *Client) Me(ctx context.Context) (*api.Me, error) {
	var out api.Me
	return &out, c.call(ctx, http.MethodGet, "/v1/me", nil, nil, &out, nil)
}

// CreateWebhookSecret makes the caller's webhook secret (shown once).
func (c *Client) CreateWebhookSecret(ctx context.Context) (*api.WebhookSecret, error) {
	var out api.WebhookSecret
	return &out, c.call(ctx, http.MethodPost, "/v1/webhook-secret", nil, nil, &out, nil)
}

// CreateToken makes a token; its secret is in the answer's Token only.
func (c *Client) CreateToken(ctx context.Context, req api.TokenRequest) (*api.Token, error) {
	var out api.Token
	return &out, c.call(ctx, http.MethodPost, "/v1/tokens", nil, req, &out, nil)
}

// Tokens lists the caller's tokens (an admin may name a user, or "*").
func (c *Client) Tokens(ctx context.Context, user string) ([]api.Token, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	var out api.Page[api.Token]
	return out.Items, c.call(ctx, http.MethodGet, "/v1/tokens", q, nil, &out, nil)
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	User, JobID, Action string
	Target              string // entries whose target contains this
	Since, Until        time.Time
	Limit               int
	PageToken           string
}

// Audit returns a page of the audit log, newest first (admins only).
func (c *Client) Audit(ctx context.Context, f AuditFilter) (*api.Page[api.AuditEntry], error) {
	q := url.Values{}
	for k, v := range map[string]string{"user": f.User, "job": f.JobID, "action": f.Action, "target": f.Target, "page_token": f.PageToken} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out api.Page[api.AuditEntry]
	return &out, c.call(ctx, http.MethodGet, "/v1/audit", q, nil, &out, nil)
}

// RevokeToken deletes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, nil, nil)
}

// Templates lists the templates.
func (c *Client) Templates(ctx context.Context) ([]api.Template, error) {
	var out api.Page[api.Template]
	return out.Items, c.call(ctx, http.MethodGet, "/v1/templates", nil, nil, &out, nil)
}

// Template returns one template (version 0: the newest).
func (c *Client) Template(ctx context.Context, name string, version int) (*api.Template, error) {
	q := url.Values{}
	if version > 0 {
		q.Set("version", strconv.Itoa(version))
	}
	var out api.Template
	return &out, c.call(ctx, http.MethodGet, "/v1/templates/"+url.PathEscape(name), q, nil, &out, nil)
}

// Environments lists the runtime environments.
func (c *Client) Environments(ctx context.Context) ([]api.Environment, error) {
	var out api.Page[api.Environment]
	return out.Items, c.call(ctx, http.MethodGet, "/v1/environments", nil, nil, &out, nil)
}

// Environment returns one environment with its live engine facts.
func (c *Client) Environment(ctx context.Context, name string) (*api.Environment, error) {
	var out api.Environment
	return &out, c.call(ctx, http.MethodGet, "/v1/environments/"+url.PathEscape(name), nil, nil, &out, nil)
}

// PutFile uploads r as the caller's file at path. size is the length of r
// if known (-1 otherwise).
func (c *Client) PutFile(ctx context.Context, path string, r io.Reader, size int64) (*api.FileInfo, error) {
	return c.put(ctx, "/v1/files/"+pathEscape(path), r, size)
}

// PutImage stores an image archive (OCI or Docker archive, or a SIF file)
// as name, for templates' image_archive (admins only).
func (c *Client) PutImage(ctx context.Context, name string, r io.Reader, size int64) (*api.FileInfo, error) {
	return c.put(ctx, "/v1/images/"+url.PathEscape(name), r, size)
}

// Images lists the image archives (admins only).
func (c *Client) Images(ctx context.Context) ([]api.FileInfo, error) {
	return c.allFiles(ctx, "/v1/images", url.Values{})
}

// JobImage reads the image archive of job id's template (its own token).
func (c *Client) JobImage(ctx context.Context, id string) (io.ReadCloser, int64, error) {
	return c.getRange(ctx, "/v1/jobs/"+url.PathEscape(id)+"/image", 0)
}

func (c *Client) put(ctx context.Context, p string, r io.Reader, size int64, query ...url.Values) (*api.FileInfo, error) {
	var q url.Values
	if len(query) > 0 {
		q = query[0]
	}
	u, err := c.url(p, q)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, r)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		req.ContentLength = size
		if size == 0 {
			req.Body = http.NoBody
		}
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.explain(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		e := &Error{}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &e.Problem) != nil || e.Status == 0 {
			e.Status, e.Title = resp.StatusCode, http.StatusText(resp.StatusCode)
		}
		return nil, e
	}
	var out api.FileInfo
	return &out, json.NewDecoder(resp.Body).Decode(&out)
}

// GetFile opens the caller's file at path from offset. The caller closes it.
func (c *Client) GetFile(ctx context.Context, path string, offset int64) (io.ReadCloser, int64, error) {
	return c.getRange(ctx, "/v1/files/"+pathEscape(path), offset)
}

func (c *Client) getRange(ctx context.Context, p string, offset int64) (io.ReadCloser, int64, error) {
	var hdr http.Header
	if offset > 0 {
		hdr = http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}}
	}
	resp, err := c.Do(ctx, http.MethodGet, p, nil, nil, hdr)
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// StatFile returns a file's size and checksum.
func (c *Client) StatFile(ctx context.Context, path string) (*api.FileInfo, error) {
	resp, err := c.Do(ctx, http.MethodHead, "/v1/files/"+pathEscape(path), nil, nil, nil)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	mod, _ := http.ParseTime(resp.Header.Get("Last-Modified"))
	return &api.FileInfo{Path: path, Size: resp.ContentLength, SHA256: resp.Header.Get("X-Checksum-Sha256"), Modified: mod}, nil
}

// DeleteFile removes the caller's file at path.
func (c *Client) DeleteFile(ctx context.Context, path string) error {
	return c.call(ctx, http.MethodDelete, "/v1/files/"+pathEscape(path), nil, nil, nil, nil)
}

// Files lists the caller's files under prefix, every page.
func (c *Client) Files(ctx context.Context, prefix string) ([]api.FileInfo, error) {
	return c.allFiles(ctx, "/v1/files", url.Values{"prefix": {prefix}})
}

func (c *Client) allFiles(ctx context.Context, p string, q url.Values) ([]api.FileInfo, error) {
	var all []api.FileInfo
	for {
		var page api.Page[api.FileInfo]
		if err := c.call(ctx, http.MethodGet, p, q, nil, &page, nil); err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextPageToken == "" {
			return all, nil
		}
		q.Set("page_token", page.NextPageToken)
	}
}

// CreateJob creates a job. idemKey, if not empty, makes a retried call
// answer the job the first call created.
func (c *Client) CreateJob(ctx context.Context, req api.JobRequest, idemKey string) (*api.Job, error) {
	var hdr http.Header
	if idemKey != "" {
		hdr = http.Header{"Idempotency-Key": {idemKey}}
	}
	var out api.Job
	return &out, c.call(ctx, http.MethodPost, "/v1/jobs", nil, req, &out, hdr)
}

// JobFilter selects jobs for Jobs.
type JobFilter struct {
	Owner     string // another user's jobs ("*": everyone's); admins only
	State     string // one state, or several separated by commas
	Template  string
	Label     string // key=value
	Parent    string
	Sweep     string
	Limit     int
	PageToken string
}

// Jobs returns one page of the caller's jobs, newest first.
func (c *Client) Jobs(ctx context.Context, f JobFilter) (*api.Page[api.Job], error) {
	q := url.Values{}
	for k, v := range map[string]string{"owner": f.Owner, "state": f.State, "template": f.Template, "label": f.Label, "parent": f.Parent, "sweep": f.Sweep, "page_token": f.PageToken} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out api.Page[api.Job]
	return &out, c.call(ctx, http.MethodGet, "/v1/jobs", q, nil, &out, nil)
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, id string) (*api.Job, error) {
	var out api.Job
	return &out, c.call(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, nil, &out, nil)
}

// DeleteJob cancels a job if needed and removes it with its data.
func (c *Client) DeleteJob(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, nil, nil, nil)
}

func (c *Client) control(ctx context.Context, id, op string) (*api.Job, error) {
	var out api.Job
	return &out, c.call(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/"+op, nil, nil, &out, nil)
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, id string) (*api.Job, error) {
	return c.control(ctx, id, "cancel")
}

// Hold keeps a job that has not started from starting.
func (c *Client) Hold(ctx context.Context, id string) (*api.Job, error) {
	return c.control(ctx, id, "hold")
}

// Release lets a held job go on.
func (c *Client) Release(ctx context.Context, id string) (*api.Job, error) {
	return c.control(ctx, id, "release")
}

// Suspend stops a running job in its engine.
func (c *Client) Suspend(ctx context.Context, id string) (*api.Job, error) {
	return c.control(ctx, id, "suspend")
}

// Resume continues a suspended job.
func (c *Client) Resume(ctx context.Context, id string) (*api.Job, error) {
	return c.control(ctx, id, "resume")
}

// Events returns a job's state transitions in order.
func (c *Client) Events(ctx context.Context, id string) ([]api.Event, error) {
	var out api.Page[api.Event]
	return out.Items, c.call(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/events", nil, nil, &out, nil)
}

// Children returns a job's children.
func (c *Client) Children(ctx context.Context, id string) ([]api.Job, error) {
	var out api.Page[api.Job]
	return out.Items, c.call(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/children", nil, nil, &out, nil)
}

// Log opens a job's stdout or stderr from offset; with follow the body
// goes on until the job has ended. The caller closes it.
func (c *Client) Log(ctx context.Context, id, stream string, offset int64, follow bool) (io.ReadCloser, error) {
	q := url.Values{}
	if offset > 0 {
		q.Set("offset", strconv.FormatInt(offset, 10))
	}
	if follow {
		q.Set("follow", "true")
	}
	resp, err := c.Do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/logs/"+url.PathEscape(stream), q, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Outputs lists a job's outputs.
func (c *Client) Outputs(ctx context.Context, id string) ([]api.FileInfo, error) {
	return c.allFiles(ctx, "/v1/jobs/"+url.PathEscape(id)+"/outputs", url.Values{})
}

// Output opens one output of a job. The caller closes it.
func (c *Client) Output(ctx context.Context, id, path string) (io.ReadCloser, int64, error) {
	return c.getRange(ctx, "/v1/jobs/"+url.PathEscape(id)+"/outputs/"+pathEscape(path), 0)
}

// OutputsArchive opens all outputs of a job as a tar.gz stream.
func (c *Client) OutputsArchive(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := c.Do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/outputs.tar.gz", nil, nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Parameters returns a job's validated parameters.
func (c *Client) Parameters(ctx context.Context, id string) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.call(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/parameters", nil, nil, &out, nil)
}

// Results returns a job's results.json.
func (c *Client) Results(ctx context.Context, id string) (json.RawMessage, error) {
	var out json.RawMessage
	return out, c.call(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/results", nil, nil, &out, nil)
}

// Wait polls a job until it has ended, and returns it.
func (c *Client) Wait(ctx context.Context, id string) (*api.Job, error) {
	if j, err := c.waitStream(ctx, id); !errors.Is(err, errNoStream) {
		return j, err
	}
	delay := 100 * time.Millisecond
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		switch j.State {
		case api.StateSucceeded, api.StateFailed, api.StateCanceled:
			return j, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*3/2, 2*time.Second)
	}
}

// NoChangeStream tells whether err, from OpenChanges, means that the
// caller cannot have the change stream (a job's token, an older
// gateway), so that it polls instead.
func NoChangeStream(err error) bool {
	var e *Error
	return errors.Is(err, ErrNoChangeStream) || (errors.As(err, &e) && (e.Status == http.StatusForbidden || e.Status == http.StatusNotFound))
}

// errNoStream: the change stream is not to be had (a job's token, an
// older gateway); Wait polls instead.
var errNoStream = errors.New("no change stream")

// waitStream waits for job id to end on the change stream: opened
// before the job is read, so that no change between the two is missed.
func (c *Client) waitStream(ctx context.Context, id string) (*api.Job, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.OpenChanges(sctx, FromNow)
	if NoChangeStream(err) {
		return nil, errNoStream
	}
	if err != nil {
		return nil, err
	}
	defer st.Close()
	j, err := c.Job(ctx, id)
	if err != nil || Terminal(j.State) {
		return j, err
	}
	for {
		ch, err := st.Next()
		if err != nil {
			return nil, err
		}
		if ch.JobID == id && Terminal(ch.State) {
			return c.Job(ctx, id)
		}
	}
}

// Terminal reports whether a state is final.
func Terminal(state string) bool {
	return state == api.StateSucceeded || state == api.StateFailed || state == api.StateCanceled
}

// The agent's calls, with the job's own token.

// Spec returns what the agent needs to run its job.
func (c *Client) Spec(ctx context.Context, id string) (*api.Spec, error) {
	var out api.Spec
	return &out, c.call(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id)+"/spec", nil, nil, &out, nil)
}

// Input opens one of the job's inputs.
func (c *Client) Input(ctx context.Context, id, name string, offset int64) (io.ReadCloser, int64, error) {
	return c.getRange(ctx, "/v1/jobs/"+url.PathEscape(id)+"/inputs/"+url.PathEscape(name), offset)
}

// ReportState reports the job's state.
func (c *Client) ReportState(ctx context.Context, id string, rep api.StateReport) (*api.Job, error) {
	var out api.Job
	return &out, c.call(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/state", nil, rep, &out, nil)
}

// AppendLog sends a chunk of the job's stream at offset; it returns the
// stream's size at the server.
func (c *Client) AppendLog(ctx context.Context, id, stream string, offset int64, data []byte) (*api.LogAppend, error) {
	var out api.LogAppend
	q := url.Values{"offset": {strconv.FormatInt(offset, 10)}}
	resp, err := c.Do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/logs/"+url.PathEscape(stream), q, bytes.NewReader(data), http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PutOutput uploads one output of the job.
func (c *Client) PutOutput(ctx context.Context, id, path string, r io.Reader, size int64) (*api.FileInfo, error) {
	return c.put(ctx, "/v1/jobs/"+url.PathEscape(id)+"/outputs/"+pathEscape(path), r, size)
}

// PutDelivery delivers one file of a task's outputs to the owner's file
// path; from is the container path it was at.
func (c *Client) PutDelivery(ctx context.Context, id, path, from string, r io.Reader, size int64) (*api.FileInfo, error) {
	return c.put(ctx, "/v1/jobs/"+url.PathEscape(id)+"/deliveries/"+pathEscape(path), r, size, url.Values{"from": {from}})
}

// User returns a user's state (admins only).
func (c *Client) User(ctx context.Context, name string) (*api.UserState, error) {
	var out api.UserState
	return &out, c.call(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(name), nil, nil, &out, nil)
}

// DisableUser disables a user (admins only): their tokens stop working and
// their unfinished jobs are held, or canceled with jobs "cancel".
func (c *Client) DisableUser(ctx context.Context, name, jobs string) (*api.UserState, error) {
	var out api.UserState
	return &out, c.call(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/disable", nil, api.DisableRequest{Jobs: jobs}, &out, nil)
}

// EnableUser enables a user again (admins only).
func (c *Client) EnableUser(ctx context.Context, name string) (*api.UserState, error) {
	var out api.UserState
	return &out, c.call(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/enable", nil, nil, &out, nil)
}

// Proxy is a reverse proxy to the gateway that sends every request with
// this client's token (replacing any the request has): the agent serves
// it to a job's container, which then needs neither the token nor the
// network.
func (c *Client) Proxy() http.Handler {
	tr := c.http.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(c.base)
			r.Out.Host = c.base.Host
			r.Out.Header.Del("Authorization")
			if c.token != "" {
				r.Out.Header.Set("Authorization", "Bearer "+c.token)
			}
		},
		Transport: tr,
	}
}
