// Package server is hpcgate's HTTP API: one route table, handlers that
// return errors, one mapping from errors to problem documents, and the
// middleware that authenticates every request and limits every body.
package server

import (
	"bytes"
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/account"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/blob"
	"github.com/hpcgate/hpcgate/internal/catalog"
	"github.com/hpcgate/hpcgate/internal/ctlchar"
	"github.com/hpcgate/hpcgate/internal/dispatch"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/sched"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/webui"
)

//go:embed openapi.json
var openAPI []byte

// queryParams are the query parameters each route takes, as openapi.json
// documents them ("GET /v1/jobs" → name → its schema's type): one home
// for them, and a parameter a route does not take is refused. An admin's
// ?user=alice on GET /v1/jobs, which takes owner=, listed the admin's own
// jobs without a word.
var queryParams = func() map[string]map[string]string {
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Parameters map[string]openAPIParam `json:"parameters"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		panic("openapi.json: " + err.Error())
	}
	names := func(ps []openAPIParam, into map[string]string) {
		for _, p := range ps {
			if p.Ref != "" {
				p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
			}
			if p.In == "query" {
				into[p.Name] = cmp.Or(p.Schema.Type, "string")
			}
		}
	}
	out := map[string]map[string]string{}
	for path, ops := range doc.Paths {
		var common []openAPIParam
		json.Unmarshal(ops["parameters"], &common)
		for method, raw := range ops {
			var op struct {
				Parameters []openAPIParam `json:"parameters"`
			}
			if method == "parameters" || json.Unmarshal(raw, &op) != nil {
				continue
			}
			set := map[string]string{}
			names(common, set)
			names(op.Parameters, set)
			out[strings.ToUpper(method)+" "+path] = set
		}
	}
	return out
}()

type openAPIParam struct {
	Ref    string `json:"$ref"`
	Name   string `json:"name"`
	In     string `json:"in"`
	Schema struct {
		Type string `json:"type"`
	} `json:"schema"`
}

// checkQuery refuses a query parameter rt does not take (400, naming it
// and those it takes), one given twice that is no list (the first was
// used, without a word), and a boolean that is neither true nor false
// (follow=yes was false). A route openapi.json does not document is not
// checked.
func checkQuery(rt route, r *http.Request) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	takes, ok := queryParams[strings.ReplaceAll(rt.pattern, "{path...}", "{path}")]
	if !ok {
		return nil
	}
	for k, vs := range r.URL.Query() {
		if typ := takes[k]; typ != "" {
			var msg string
			switch {
			case len(vs) > 1 && typ != "array":
				msg = fmt.Sprintf("%q is given %d times: give it once", k, len(vs))
			case typ == "boolean" && !queryTrue(r, k) && vs[0] != "false" && vs[0] != "0":
				msg = fmt.Sprintf("%q is %q: want true or false", k, vs[0])
			default:
				continue
			}
			return badField(k, msg, msg)
		}
		known := slices.Sorted(maps.Keys(takes))
		msg := fmt.Sprintf("%q is no parameter of this route; it takes %s", k, strings.Join(known, ", "))
		if len(known) == 0 {
			msg = fmt.Sprintf("%q is no parameter of this route, which takes none", k)
		}
		return badField(k, msg, msg)
	}
	return nil
}

// checkEncoding refuses a body with a Content-Encoding (415): the gateway
// decodes none, and stored a gzip body's bytes as the file's (found by the
// seventh probe).
func checkEncoding(r *http.Request) error {
	for _, ce := range r.Header.Values("Content-Encoding") {
		if !strings.EqualFold(strings.TrimSpace(ce), "identity") {
			return errorf(http.StatusUnsupportedMediaType, api.CodeMediaType, "the body is encoded (Content-Encoding: %s), which the gateway does not decode: send it as it is", ce)
		}
	}
	return nil
}

// queryTrue reports whether r's boolean query parameter name is true
// ("true" or "1"; checkQuery refuses any but those and "false", "0").
func queryTrue(r *http.Request, name string) bool {
	v := r.URL.Query().Get(name)
	return v == "true" || v == "1"
}

// Version is the gateway's version, shown by /v1/status.
var Version = "dev"

// Options are the server's limits. Zero fields take the defaults.
type Options struct {
	MaxJSONBytes   int64 // request bodies of JSON (default 1 MiB)
	MaxUploadBytes int64 // one uploaded file or output (default 10 GiB)
	MaxLogChunk    int64 // one log append (default 4 MiB)
	MaxLogBytes    int64 // one stream of one job, stdout or stderr (default 1 GiB)
	MaxChildren    int   // children per job (default 100)
	MaxDepth       int   // generations of children below a person's job (default 3)
	// BodyIdle is the longest a request's body may send nothing while it
	// is read (default 1 minute); after half of it spent waiting, a body
	// must come at 1 KiB a second on average.
	BodyIdle time.Duration
	// StreamWait is the longest a stream's write (an event stream's, a
	// followed log's) may wait for its client to read (default 30 s): a
	// client that never read kept its stream, one of the few a person
	// may hold, for as long as it held the connection.
	StreamWait time.Duration
	// Quota returns a user's limits (nil: no limits).
	Quota func(user string) Quota
	// RateLimit bounds each person's token's requests, JobRateLimit each
	// job token's (zero: no limit).
	RateLimit, JobRateLimit RateLimit
	// Projects: user (or "*") → the projects they may charge; the first
	// is the default (nil: jobs name no project).
	Projects map[string][]string
	// Metrics receives the server's counts; MetricsHandler serves GET
	// /metrics to admins (nil: no metrics, /metrics answers 404).
	Metrics        Metrics
	MetricsHandler http.Handler
	// Accounts resolve the OS account a user's jobs run as, when a job is
	// submitted (nil: every job runs as the gateway's own account).
	Accounts *account.Resolver
	// AllowPrivateWebhooks lets jobs' notify URLs name loopback and
	// private addresses (the config's webhooks.allow_private_networks).
	AllowPrivateWebhooks bool
	// TES configures the GA4GH TES API.
	TES TESOptions
	// Leases, when replicas share the store, are where uploads through
	// any of them take turns of a path and hold their users' room (nil:
	// in this process's memory, as for a store one process owns).
	Leases store.Leases
}

func (o *Options) defaults() {
	if o.BodyIdle <= 0 {
		o.BodyIdle = time.Minute
	}
	if o.StreamWait <= 0 {
		o.StreamWait = 30 * time.Second
	}
	if o.MaxJSONBytes <= 0 {
		o.MaxJSONBytes = 1 << 20
	}
	if o.MaxUploadBytes <= 0 {
		o.MaxUploadBytes = 10 << 30
	}
	if o.MaxLogChunk <= 0 {
		o.MaxLogChunk = 4 << 20
	}
	if o.MaxLogBytes <= 0 {
		o.MaxLogBytes = 1 << 30
	}
	if o.MaxChildren <= 0 {
		o.MaxChildren = 100
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = 3
	}
}

// Server serves the API. Create it with New; it is an http.Handler.
type Server struct {
	store    store.Store
	bucket   blob.Bucket
	catalog  atomic.Pointer[catalog.Catalog] // swapped by SetCatalog
	auth     *auth.Authenticator
	disp     *dispatch.Dispatcher
	scheds   map[string]sched.Scheduler
	logs     *Hub
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	routes   []route
	reqCount atomic.Uint64
	limits   limiter
	streams  streams
	rooms    rooms // uploads' turns and holds
	// ridPrefix makes request ids unique across restarts and replicas
	// (the audit log keeps them).
	ridPrefix string
	// streamsClosed ends the event streams (CloseStreams).
	streamsClosed chan struct{}
	closeStreams  sync.Once
	// tokensMu makes a check of tokens and the change it allows one step:
	// a user's room for a token and its making; the last admin's token
	// or user and its revoking or disabling. Two at once each passed the
	// check (found by the eighth probe). Replicas may still race: should
	// no admin be left, a start without DATA/admin.token makes one.
	tokensMu sync.Mutex
}

// New returns a server over its parts. It starts nothing.
func New(st store.Store, b blob.Bucket, cat *catalog.Catalog, a *auth.Authenticator, d *dispatch.Dispatcher, scheds map[string]sched.Scheduler, hub *Hub, log *slog.Logger, opts *Options) *Server {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	o.defaults()
	s := &Server{store: st, bucket: b, auth: a, disp: d, scheds: scheds, logs: hub, opts: o, log: log, mux: http.NewServeMux(), ridPrefix: newRIDPrefix(),
		streamsClosed: make(chan struct{})}
	s.catalog.Store(cat)
	if o.Leases != nil {
		s.rooms = newSharedRooms(o.Leases, log)
	} else {
		s.rooms = &memRooms{st: st, log: log}
	}
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(muxPattern(rt.pattern), s.wrap(rt))
	}
	// The web interface and the API reference: pages over this API, not
	// part of it (webui).
	ui := webui.Handler(uploadOrigins(b)...)
	for _, p := range []string{"GET /{$}", "GET /docs", "GET /ui/"} {
		s.mux.Handle(p, ui)
	}
	none := s.wrap(route{pattern: "/", public: true, h: s.noRoute})
	s.mux.Handle("/", none)
	// A route that ends in a path (/v1/files/{path...}) would make
	// http.ServeMux redirect its base (/v1/files) there, with no body: the
	// base is no route of its methods.
	bases := map[string]bool{}
	for _, rt := range s.routes {
		if _, p, _ := strings.Cut(muxPattern(rt.pattern), " "); strings.HasSuffix(p, "...}") {
			if base := p[:strings.LastIndex(p, "/{")]; !bases[base] {
				bases[base] = true
				s.mux.Handle(base, none)
			}
		}
	}
	return s
}

// noRoute answers a request no route takes: 405 with the methods its
// path takes (Allow), or 404.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) error {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); strings.Contains(pattern, " ") { // a route's, with its method: not "/" nor a base
			allow = append(allow, m)
		}
	}
	if len(allow) == 0 {
		return errorf(http.StatusNotFound, api.CodeNotFound, "no route %s %s", r.Method, r.URL.Path)
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	return errorf(http.StatusMethodNotAllowed, api.CodeMethodNotAllowed, "%s %s: the path takes %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
}

// uploadOrigins is the object store's origin, where the web interface
// sends large files' parts straight (presigned), if the store signs URLs.
func uploadOrigins(b blob.Bucket) []string {
	sg, ok := b.(blob.Signer)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := sg.SignPut(ctx, "users/csp-probe", 1, time.Minute) // local: no request made
	if err != nil {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil || p.Scheme == "" || p.Host == "" {
		return nil
	}
	return []string{p.Scheme + "://" + p.Host}
}

// SetCatalog replaces the templates and environments new requests see (a
// reload). Jobs already accepted keep the template they were accepted with.
func (s *Server) SetCatalog(c *catalog.Catalog) { s.catalog.Store(c) }

// access says who may call a route.
type access int

const (
	userOnly access = iota // person tokens with the route's scope
	jobToo                 // person tokens with the scope, and job tokens (checked per job by the handler)
	jobOnly                // the job's own token (agent routes)
)

type route struct {
	pattern string
	scope   string
	access  access
	public  bool
	// noAudit leaves a route that changes something out of the audit
	// log (see audited).
	noAudit bool
	h       func(http.ResponseWriter, *http.Request) error
}

// Routes returns the route patterns, for the OpenAPI test.
func (s *Server) Routes() []string {
	var out []string
	for _, rt := range s.routes {
		out = append(out, rt.pattern)
	}
	return out
}

func (s *Server) routeTable() []route {
	R, W := api.ScopeJobsRead, api.ScopeJobsWrite
	FR, FW := api.ScopeFilesRead, api.ScopeFilesWrite
	return []route{
		{pattern: "GET /v1/health", public: true, h: s.health},
		{pattern: "GET /openapi.json", public: true, h: s.openapi},
		{pattern: "GET /v1/status", access: jobToo, h: s.status},
		{pattern: "GET /v1/me", access: jobToo, h: s.me},
		{pattern: "GET /v1/usage", h: s.usage},
		{pattern: "GET /v1/users/{name}", h: s.getUser},
		{pattern: "POST /v1/users/{name}/disable", h: s.disableUser},
		{pattern: "POST /v1/users/{name}/enable", h: s.enableUser},

		{pattern: "POST /v1/sessions", h: s.createSession},
		{pattern: "DELETE /v1/sessions/current", h: s.deleteSession},
		{pattern: "POST /v1/tokens", h: s.createToken},
		{pattern: "GET /v1/tokens", h: s.listTokens},
		{pattern: "DELETE /v1/tokens/{id}", h: s.deleteToken},
		{pattern: "GET /v1/audit", h: s.listAudit},
		{pattern: "POST /v1/webhook-secret", scope: W, h: s.createWebhookSecret},
		{pattern: "GET /v1/events", scope: R, h: s.events},
		{pattern: "GET /metrics", h: s.metrics},

		{pattern: "PUT /v1/images/{name}", h: s.putImage},
		{pattern: "GET /v1/images", h: s.listImages},

		{pattern: "GET /v1/templates", access: jobToo, h: s.listTemplates},
		{pattern: "GET /v1/templates/{name}", access: jobToo, h: s.getTemplate},
		{pattern: "GET /v1/environments", access: jobToo, h: s.listEnvironments},
		{pattern: "GET /v1/environments/{name}", access: jobToo, h: s.getEnvironment},

		{pattern: "GET /v1/files", scope: FR, access: jobToo, h: s.listFiles},
		{pattern: "PUT /v1/files/{path...}", scope: FW, access: jobToo, h: s.putFile},
		{pattern: "GET /v1/files/{path...}", scope: FR, access: jobToo, h: s.getFile},
		{pattern: "HEAD /v1/files/{path...}", scope: FR, access: jobToo, h: s.getFile},
		{pattern: "DELETE /v1/files/{path...}", scope: FW, access: jobToo, h: s.deleteFile},
		{pattern: "POST /v1/uploads", scope: FW, access: jobToo, h: s.startUpload},
		{pattern: "POST /v1/uploads/{id}/complete", scope: FW, access: jobToo, h: s.completeUpload},
		{pattern: "DELETE /v1/uploads/{id}", scope: FW, access: jobToo, h: s.abortUpload},

		{pattern: "POST /v1/jobs", scope: W, access: jobToo, h: s.createJob},
		{pattern: "GET /v1/jobs", scope: R, access: jobToo, h: s.listJobs},
		{pattern: "GET /v1/jobs/{id}", scope: R, access: jobToo, h: s.getJob},
		{pattern: "DELETE /v1/jobs/{id}", scope: W, h: s.deleteJob},
		{pattern: "POST /v1/jobs/{id}/cancel", scope: W, access: jobToo, h: s.control(controlCancel)},
		{pattern: "POST /v1/jobs/{id}/hold", scope: W, h: s.control(controlHold)},
		{pattern: "POST /v1/jobs/{id}/release", scope: W, h: s.control(controlRelease)},
		{pattern: "POST /v1/jobs/{id}/suspend", scope: W, h: s.control(controlSuspend)},
		{pattern: "POST /v1/jobs/{id}/resume", scope: W, h: s.control(controlResume)},
		{pattern: "GET /v1/jobs/{id}/events", scope: R, access: jobToo, h: s.jobEvents},
		{pattern: "GET /v1/jobs/{id}/children", scope: R, access: jobToo, h: s.jobChildren},
		{pattern: "GET /v1/jobs/{id}/logs/{stream}", scope: R, access: jobToo, h: s.getLog},
		{pattern: "GET /v1/jobs/{id}/outputs", scope: R, access: jobToo, h: s.listOutputs},
		{pattern: "GET /v1/jobs/{id}/outputs/{path...}", scope: R, access: jobToo, h: s.getOutput},
		{pattern: "GET /v1/jobs/{id}/outputs.tar.gz", scope: R, access: jobToo, h: s.outputsArchive},
		{pattern: "GET /v1/jobs/{id}/parameters", scope: R, access: jobToo, h: s.jobParameters},
		{pattern: "GET /v1/jobs/{id}/results", scope: R, access: jobToo, h: s.jobResults},
		{pattern: "GET /ga4gh/tes/v1/service-info", public: true, h: s.tesServiceInfo},
		{pattern: "GET /ga4gh/tes/v1/tasks", scope: R, h: tes400(s.tesList)},
		{pattern: "POST /ga4gh/tes/v1/tasks", scope: api.ScopeTasks, h: tes400(s.tesCreate)},
		{pattern: "GET /ga4gh/tes/v1/tasks/{id}", scope: R, h: tes400(s.tesGet)},
		{pattern: "POST /ga4gh/tes/v1/tasks/{id}:cancel", scope: W, h: s.tesCancel},
		// TES before 1.0 (Funnel's client, py-tes): the same, without the
		// prefix.
		{pattern: "GET /v1/service-info", public: true, h: s.tesServiceInfo},
		{pattern: "GET /v1/tasks/service-info", public: true, h: s.tesServiceInfo}, // TES 0.3, py-tes
		{pattern: "GET /v1/tasks", scope: R, h: tes400(s.tesList)},
		{pattern: "POST /v1/tasks", scope: api.ScopeTasks, h: tes400(s.tesCreate)},
		{pattern: "GET /v1/tasks/{id}", scope: R, h: tes400(s.tesGet)},
		{pattern: "POST /v1/tasks/{id}:cancel", scope: W, h: s.tesCancel},

		{pattern: "POST /v1/sweeps", scope: W, access: jobToo, h: s.createSweep},
		{pattern: "GET /v1/sweeps/{id}", scope: R, access: jobToo, h: s.getSweep},
		{pattern: "POST /v1/sweeps/{id}/cancel", scope: W, access: jobToo, h: s.cancelSweep},
		{pattern: "GET /v1/sweeps/{id}/results", scope: R, access: jobToo, h: s.sweepResults},

		{pattern: "PUT /v1/jobs/{id}/deliveries/{path...}", access: jobOnly, h: s.agentDeliver},
		{pattern: "GET /v1/jobs/{id}/spec", access: jobOnly, h: s.agentSpec},
		{pattern: "GET /v1/jobs/{id}/inputs/{name}", access: jobOnly, h: s.agentInput},
		{pattern: "GET /v1/jobs/{id}/image", access: jobOnly, h: s.agentImage},
		{pattern: "POST /v1/jobs/{id}/state", access: jobOnly, h: s.agentState},
		{pattern: "POST /v1/jobs/{id}/logs/{stream}", access: jobOnly, h: s.agentLog},
		{pattern: "PUT /v1/jobs/{id}/outputs/{path...}", access: jobOnly, h: s.agentOutput},
		{pattern: "POST /v1/jobs/{id}/output-urls", access: jobOnly, h: s.agentOutputURL},
	}
}

// muxPattern is a route's pattern for http.ServeMux, whose wildcards are
// whole segments: a custom method (/tasks/{id}:cancel, as in Google's API
// style that TES follows) becomes the wildcard alone (/tasks/{id}), and
// the route's handler is wrapped by withSuffix.
func muxPattern(p string) string {
	if i := strings.LastIndex(p, "}:"); i >= 0 && !strings.Contains(p[i:], "/") {
		return p[:i+1]
	}
	return p
}

// withSuffix serves a route whose last segment is a wildcard with a
// suffix ({id}:cancel): a request without it is not this route (404); the
// wildcard's value is the segment without it.
func withSuffix(pattern string, h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	mp := muxPattern(pattern)
	if mp == pattern {
		return h
	}
	suffix := pattern[len(mp):]
	name := mp[strings.LastIndex(mp, "{")+1 : len(mp)-1]
	return func(w http.ResponseWriter, r *http.Request) error {
		v, ok := strings.CutSuffix(r.PathValue(name), suffix)
		if !ok || v == "" {
			return errorf(http.StatusNotFound, api.CodeNotFound, "no route %s %s", r.Method, r.URL.Path)
		}
		r.SetPathValue(name, v)
		return h(w, r)
	}
}

// newRequestID names a request in answers and the log.
func (s *Server) newRequestID() string { return fmt.Sprintf("%s%x", s.ridPrefix, s.reqCount.Add(1)) }

// ServeHTTP implements http.Handler. A path with ., .. or empty segments,
// as sent or once decoded (%2E, %2F), is refused: http.ServeMux would
// redirect it to its clean form, which is another route (a client that
// sent DELETE /v1/files/../jobs/ID followed that to delete the job), and
// a proxy that normalises URLs would send it on as that other route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// (the decoded path differs only when the request escaped a character
	// it need not have, which leaves RawPath set)
	if p := r.URL.EscapedPath(); r.Method != http.MethodConnect && (p != cleanPath(p) || r.URL.RawPath != "" && r.URL.Path != cleanPath(r.URL.Path)) {
		rid := s.newRequestID() // as every other answer has
		w.Header().Set("X-Request-Id", rid)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey, rid))
		s.writeError(w, r, errorf(http.StatusBadRequest, api.CodeBadRequest, "the URL path %q has ., .. or empty segments: send it in its clean form (and a file's path must have none)", p))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is p as http.ServeMux cleans it: no ., .. or empty segments,
// rooted, its trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p) // no allocation when p is clean
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

type ctxKey int

const (
	principalKey ctxKey = iota
	requestIDKey
	reqInfoKey
)

func principal(r *http.Request) *auth.Principal {
	p, _ := r.Context().Value(principalKey).(*auth.Principal)
	return p
}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey).(string)
	return id
}

// wrap turns a route into a handler: request id, authentication, access
// check, then the handler, whose error becomes a problem document.
func (s *Server) wrap(rt route) http.Handler {
	rt.h = withSuffix(rt.pattern, rt.h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := s.newRequestID()
		ri := &reqInfo{id: rid, log: s.log.With("request_id", rid), route: rt, start: start}
		ctx := context.WithValue(context.WithValue(r.Context(), requestIDKey, rid), reqInfoKey, ri)
		if strings.Contains(rt.pattern, "/jobs/{id}") {
			ri.log = ri.log.With("job_id", r.PathValue("id"))
		}
		r = r.WithContext(ctx)
		w.Header().Set("X-Request-Id", rid)
		// every answer is one user's, some carry secrets (a new token's):
		// none is kept by a browser or a proxy
		w.Header().Set("Cache-Control", "no-store")
		sw := &statusWriter{ResponseWriter: w}
		body := &guardedBody{ReadCloser: r.Body, idle: s.opts.BodyIdle}
		if r.Body != http.NoBody {
			// (a read deadline without a body to read would end the
			// server's own watch for the client's leaving)
			body.rc = http.NewResponseController(w)
		}
		r.Body = body
		p, err := s.authorize(w, r, rt)
		if p != nil {
			r = r.WithContext(context.WithValue(ctx, principalKey, p))
		}
		if err == nil {
			err = checkQuery(rt, r)
		}
		if err == nil {
			err = checkEncoding(r)
		}
		if err == nil {
			err = rt.h(sw, r)
		}
		if body.err != nil && err != nil {
			err = body.err // whatever the handler made of it: the client's doing
		}
		broken := false
		if err != nil {
			if sw.wrote {
				// The answer is under way: nothing more can be said to the
				// client, but that it is broken (below, once it is counted
				// and audited): ended in order, a short body read as whole
				// (outputs.tar.gz without an output, found by the eighth
				// probe).
				s.logFor(r).Warn("request failed after the answer began", "path", r.URL.Path, "err", err)
				broken = true
			} else {
				s.writeError(sw, r, err)
			}
		}
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		if s.opts.Metrics != nil {
			s.opts.Metrics.Request(rt.pattern, status, time.Since(start), body.n, sw.n)
		}
		if rt.audited() && !ri.audited && (principal(r) != nil || s.auditAnonymous(start)) {
			s.audit(r, rt, start, status)
		}
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			// The access log, at debug level.
			l := ri.log
			if ri.jobID != "" && !strings.Contains(rt.pattern, "/jobs/{id}") {
				l = l.With("job_id", ri.jobID)
			}
			l.Debug("request", "method", r.Method, "path", r.URL.Path, "status", status, "took", time.Since(start))
		}
		if broken {
			panic(http.ErrAbortHandler)
		}
	})
}

// statusWriter notes whether the answer has begun, its status and the
// bytes of its body.
type statusWriter struct {
	http.ResponseWriter
	wrote  bool
	status int
	n      int64
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status = code
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps sendfile for file bodies.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	w.wrote = true
	n, err := io.Copy(w.ResponseWriter, r)
	w.n += n
	return n, err
}

// bodyRate is the least a request's body must send, on average, once it
// has been waited for for half of Options.BodyIdle, which is the longest
// it may send nothing: a client that stalled or trickled its body held a
// connection, a goroutine, a temporary file and its upload's hold on the
// quota for as long as it liked (found by the seventh probe). Time the
// server spends not reading (waiting for a path's turn) is not held
// against the client.
const bodyRate = 1 << 10 // bytes a second

// guardedBody counts a request's body and enforces BodyIdle and bodyRate.
// A failure to read it (the client sent too slowly, malformed chunks, or
// went away) is the client's: it is kept in err, and the request answers
// for it, whatever the handler made of it.
type guardedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	idle     time.Duration
	deadline time.Time // the read deadline set
	eof      bool
	n        int64
	waited   time.Duration // time spent in Read
	err      *bodyError
}

// bodyError is a request body that could not be read.
type bodyError struct {
	timeout bool
	cause   error
}

func (e *bodyError) Error() string { return "reading the request body: " + e.cause.Error() }
func (e *bodyError) Unwrap() error { return e.cause }

func (b *guardedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.rc == nil || b.eof { // no body, or read whole
		return b.ReadCloser.Read(p)
	}
	t0 := time.Now()
	if b.deadline.Sub(t0) < b.idle*3/4 { // set again only now and then: a read of a short body is one call
		b.deadline = t0.Add(b.idle)
		b.rc.SetReadDeadline(b.deadline) // not every writer supports it: then only the rate holds
	}
	n, err := b.ReadCloser.Read(p)
	b.waited += time.Since(t0)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		b.rc.SetReadDeadline(time.Time{})
		b.eof = true
		return n, err
	case err != nil:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return n, err
		}
		b.err = &bodyError{timeout: errors.Is(err, os.ErrDeadlineExceeded), cause: err}
		return n, b.err
	case b.waited > b.idle/2 && b.n < int64((b.waited-b.idle/2).Seconds()*bodyRate):
		b.err = &bodyError{timeout: true, cause: fmt.Errorf("%d bytes in %v: slower than %d bytes a second", b.n, b.waited.Round(time.Second), bodyRate)}
		return n, b.err
	}
	return n, nil
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// credentials are what r authenticates with: the Authorization header's
// scheme and secret, or without that header a web session's cookie
// (sessions.go; cookie is then true). RFC 6750 (and RFC 9110 §11.1): the
// scheme name is case-insensitive, which the caller checks. ok is false
// when there are none.
func credentials(r *http.Request) (scheme, secret string, cookie, ok bool) {
	if len(r.Header.Values("Authorization")) > 1 {
		return "", "", false, false // two readings: a proxy may act on the other
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, ok = strings.Cut(h, " ")
		return scheme, strings.TrimSpace(secret), false, ok
	}
	if secret = sessionSecret(r); secret != "" {
		return "Bearer", strings.TrimSpace(secret), true, true
	}
	return "", "", false, false
}

// stillAuthorized tells whether the credentials r came with still hold:
// a long answer (an event stream, a followed log) asks it as it goes, so
// that a token revoked, a session signed out or a user disabled ends it
// (within the authenticator's cache time on other replicas). A failure
// to look (the database away a moment) is no reason to end it.
func (s *Server) stillAuthorized(r *http.Request) bool {
	_, secret, _, _ := credentials(r)
	p, err := s.auth.Authenticate(r.Context(), secret)
	if errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrUserDisabled) {
		return false
	}
	if err != nil || !p.IsJob() {
		return true
	}
	// a job's token ends with its job
	j, err := s.store.GetJob(r.Context(), p.JobID)
	return !errors.Is(err, store.ErrNotFound) && (err != nil || !j.State.Terminal())
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request, rt route) (*auth.Principal, error) {
	if rt.public {
		return nil, nil
	}
	scheme, secret, cookie, ok := credentials(r)
	if cookie {
		if err := checkCookieRequest(r, rt); err != nil {
			return nil, err
		}
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, errorf(http.StatusUnauthorized, api.CodeUnauthenticated, "send a token, once: Authorization: Bearer TOKEN")
	}
	p, err := s.auth.Authenticate(r.Context(), secret)
	if err != nil {
		return nil, err
	}
	if cookie && !strings.HasPrefix(p.TokenName, sessionName) {
		// a token in the session's cookie would be a session that may
		// make tokens: the cookie holds sessions only
		return nil, errorf(http.StatusUnauthorized, api.CodeUnauthenticated, "the session cookie holds no web session: sign in again")
	}
	if err := s.rateLimit(w, p); err != nil {
		return nil, err // not attributed: a refusal the audit keeps within a bucket
	}
	// Past the rate limit, a refusal comes with its principal: the audit
	// names who was refused.
	if err := checkSession(r, p, rt); err != nil {
		return p, err
	}
	if p.IsJob() {
		if rt.access == userOnly {
			return p, errorf(http.StatusForbidden, api.CodeForbidden, "a job token may not call %s", rt.pattern)
		}
		j, err := s.store.GetJob(r.Context(), p.JobID)
		if err != nil || j.State.Terminal() {
			return p, errorf(http.StatusUnauthorized, api.CodeUnauthenticated, "this job token has expired: its job has ended")
		}
	} else {
		if rt.access == jobOnly {
			return p, errorf(http.StatusForbidden, api.CodeForbidden, "only the job's own token may call %s", rt.pattern)
		}
		if rt.scope != "" && !p.Has(rt.scope) {
			return p, errorf(http.StatusForbidden, api.CodeForbidden, "this token lacks the scope %s", rt.scope)
		}
	}
	return p, nil
}

// httpError is an error with its answer: a status, a code and a message
// written for the client (detail, fields), and optionally the internal
// cause, which goes only to the server log with the request id, never to
// the client (as tailscale's tsweb.HTTPError).
type httpError struct {
	status int
	code   string
	detail string
	fields []api.FieldError
	cause  error
}

func (e *httpError) Error() string {
	if e.cause != nil {
		return e.detail + ": " + e.cause.Error()
	}
	return e.detail
}

func (e *httpError) Unwrap() error { return e.cause }

func errorf(status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, detail: fmt.Sprintf(format, args...)}
}

// wrapf is errorf keeping cause for the log.
func wrapf(cause error, status int, code, format string, args ...any) error {
	return &httpError{status: status, code: code, detail: fmt.Sprintf(format, args...), cause: cause}
}

func fieldError(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &httpError{status: http.StatusUnprocessableEntity, code: api.CodeValidation, detail: field + ": " + msg,
		fields: []api.FieldError{{Field: field, Message: msg}}}
}

// badField is a 400 that names field: detail for the answer, msg for
// the field.
func badField(field, detail, msg string) error {
	return &httpError{status: http.StatusBadRequest, code: api.CodeBadRequest, detail: detail, fields: []api.FieldError{{Field: field, Message: msg}}}
}

// checkNewPath is checkPath for a path about to be written: it may not
// begin with job:, which names another job's data in inputs. (A file
// stored under such a name before stays readable and deletable.)
func checkNewPath(field, p string) error {
	if err := checkPath(field, p); err != nil {
		return err
	}
	msg := ""
	switch {
	case ctlchar.In(p): // a C1 control, or a format character: a listing on a terminal would show another name
		msg = ctlchar.Refusal
	case strings.HasPrefix(p, refPrefix):
		msg = "must not begin with job: (which names another job's data)"
	default:
		return nil
	}
	return badField(field, fmt.Sprintf("%s %q: %s", field, p, msg), msg)
}

// problemFor maps an error to its answer. Only messages written for
// clients reach them: an httpError's, a validation error's (field by
// field), a transition's (job.TransitionError), and a fixed one for each
// sentinel. The text of any other error, wrapped or not, is never sent.
func problemFor(err error) *httpError {
	var he *httpError
	var verr *catalog.ValidationError
	var mbe *http.MaxBytesError
	var te *job.TransitionError
	var qe *store.QuotaError
	var be *bodyError
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &verr):
		e := &httpError{status: http.StatusUnprocessableEntity, code: api.CodeValidation, detail: verr.Error()}
		for _, f := range verr.Fields {
			e.fields = append(e.fields, api.FieldError{Field: f.Field, Message: f.Message})
		}
		return e
	case errors.As(err, &mbe):
		return &httpError{status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge, detail: fmt.Sprintf("the body is larger than the limit of %d bytes", mbe.Limit)}
	case errors.As(err, &be) && be.timeout:
		return &httpError{status: http.StatusRequestTimeout, code: api.CodeBadRequest, detail: fmt.Sprintf("the request's body came too slowly: it must come at %d bytes a second at least, and never stop for long", bodyRate)}
	case errors.As(err, &be):
		return &httpError{status: http.StatusBadRequest, code: api.CodeBadRequest, detail: "the request's body could not be read: it ended early or was malformed"}
	case errors.As(err, &qe):
		return &httpError{status: http.StatusConflict, code: api.CodeQuotaExceeded, detail: quotaMessage(qe)}
	case errors.Is(err, auth.ErrUserDisabled):
		return &httpError{status: http.StatusUnauthorized, code: api.CodeUnauthenticated, detail: "this token's user is disabled"}
	case errors.Is(err, auth.ErrUnauthenticated):
		return &httpError{status: http.StatusUnauthorized, code: api.CodeUnauthenticated, detail: "the token is missing, unknown, revoked or expired"}
	case errors.Is(err, blob.ErrNotFound):
		return &httpError{status: http.StatusNotFound, code: api.CodeNotFound, detail: "no such file"}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, catalog.ErrNotFound), errors.Is(err, sched.ErrNotFound):
		return &httpError{status: http.StatusNotFound, code: api.CodeNotFound, detail: "not found"}
	case errors.Is(err, blob.ErrInvalidKey):
		return &httpError{status: http.StatusBadRequest, code: api.CodeBadRequest, detail: "invalid path"}
	case errors.As(err, &te):
		return &httpError{status: http.StatusConflict, code: api.CodeInvalidState, detail: te.Error()}
	case errors.Is(err, job.ErrInvalidTransition):
		return &httpError{status: http.StatusConflict, code: api.CodeInvalidState, detail: "the job's state does not allow this now"}
	case errors.Is(err, sched.ErrUnsupported):
		return &httpError{status: http.StatusConflict, code: api.CodeUnsupported, detail: "the job's engine cannot do this, or not in the job's current state"}
	case errors.Is(err, context.Canceled):
		return &httpError{status: http.StatusServiceUnavailable, code: api.CodeUnavailable, detail: "the request ended before it was done"}
	case errors.Is(err, store.ErrBadPageToken):
		return fieldError("page_token", "malformed: pass the next_page_token of an earlier answer as it is").(*httpError)
	case errors.Is(err, blob.ErrKeyConflict):
		return &httpError{status: http.StatusConflict, code: api.CodeConflict, detail: "a file already has a part of this path as its name, or files are stored below this path: choose another path, or delete that file first"}
	case errors.Is(err, store.ErrLimit):
		return &httpError{status: http.StatusConflict, code: api.CodeConflict, detail: "a limit was reached"}
	case errors.Is(err, store.ErrConflict):
		return &httpError{status: http.StatusConflict, code: api.CodeConflict, detail: "the request conflicts with the current state; read it again and retry"}
	}
	return &httpError{status: http.StatusInternalServerError, code: api.CodeInternal, detail: "internal error; the server log has the details under this request id"}
}

// maxFieldErrors is the most field errors one answer lists, maxDetail
// the most bytes of its detail and of each field error's name and message
// (a message may quote what the request sent).
const (
	maxFieldErrors = 100
	maxDetail      = 1024
)

// clip is s cut to at most n bytes, at a rune's start, marked with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - len("…")
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	pe := problemFor(err)
	// The request's logger carries its request id and job id.
	var logged any = err // ours, whole
	if pe.status < 500 {
		logged = clip(err.Error(), maxDetail) // a refusal may quote the request
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", pe.status, "err", logged}
	switch {
	case errors.Is(err, context.Canceled): // the client left, or the server stops
		s.logFor(r).Info("request canceled", attrs...)
	case errors.As(err, new(*bodyError)): // the client's doing
		s.logFor(r).Info("request body unreadable", attrs...)
	case pe.status >= 500:
		s.logFor(r).Error("request failed", attrs...)
	case errors.Unwrap(err) != nil || pe.detail != err.Error():
		// A refusal with an internal cause: the client saw only pe.detail.
		s.logFor(r).Info("request refused", attrs...)
	}
	p := api.Problem{Title: http.StatusText(pe.status), Status: pe.status, Detail: clip(pe.detail, maxDetail), Code: pe.code, RequestID: requestID(r)}
	// a body of 1 MiB can hold 100,000 faults, or a value of 1 MiB that a
	// message quotes: the answer lists the first, each message clipped
	for _, f := range pe.fields[:min(len(pe.fields), maxFieldErrors)] {
		p.Errors = append(p.Errors, api.FieldError{Field: clip(f.Field, maxDetail), Message: clip(f.Message, maxDetail)})
	}
	if n := len(pe.fields); n > maxFieldErrors {
		p.Detail += fmt.Sprintf(" (errors lists the first %d of %d)", maxFieldErrors, n)
	}
	h := w.Header()
	if pe.status == http.StatusUnauthorized { // RFC 9110 §11.6.1, RFC 6750 §3
		h.Set("WWW-Authenticate", `Bearer realm="hpcgate"`)
	}
	h.Del("Content-Length")
	if pe.status != http.StatusRequestedRangeNotSatisfiable { // whose Content-Range says the size
		h.Del("Content-Range")
	}
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(pe.status)
	if r.Method != http.MethodHead {
		json.NewEncoder(w).Encode(p)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
	return nil
}

// readJSON decodes a size-limited JSON body into v, refusing unknown
// fields, a Content-Type other than JSON (a missing one is taken as JSON)
// and text that is not UTF-8, which the decoder would silently replace.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return s.decodeJSON(w, r, v, true)
}

// readJSONLenient is readJSON but for members v does not have, which it
// ignores: TES clients send what other TES versions define.
func (s *Server) readJSONLenient(w http.ResponseWriter, r *http.Request, v any) error {
	return s.decodeJSON(w, r, v, false)
}

func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, strict bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, params, err := mime.ParseMediaType(ct)
		if cs := params["charset"]; err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) || cs != "" && !strings.EqualFold(cs, "utf-8") {
			return errorf(http.StatusUnsupportedMediaType, api.CodeMediaType, "the body must be JSON in UTF-8 (Content-Type: application/json), not %q", ct)
		}
	}
	if r.ContentLength > s.opts.MaxJSONBytes { // said at once, not after the body came
		return &http.MaxBytesError{Limit: s.opts.MaxJSONBytes}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxJSONBytes))
	if err != nil {
		return err
	}
	if !utf8.Valid(body) {
		field := invalidUTF8Field(body)
		if field == "" {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "the body is not valid UTF-8")
		}
		return fieldError(field, "is not valid UTF-8")
	}
	if err := checkReading(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			path, once := keyPath(body, strings.Trim(f, `"`))
			// the members a place takes only where it is known (a key
			// in two places would name the top level's)
			if names := fieldNames(reflect.TypeOf(v), stripIndexes(path)); once && len(names) > 0 {
				return fieldError(path, "unknown field; the fields here: %s", strings.Join(names, ", "))
			}
			return fieldError(path, "unknown field")
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fieldError(typeErrorField(body, te), "must be %s, not %s", jsonKind(te.Type), te.Value)
		}
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return errorf(http.StatusBadRequest, api.CodeBadRequest, "the body is not valid JSON: %v (at byte %d)", se, se.Offset)
		}
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "the body is not valid JSON")
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, api.CodeBadRequest, "the body holds more than one JSON value")
	}
	return nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, api.Health{Status: "ok"})
}

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
	return nil
}

// status reports whether each component answers. Why one does not is
// the server log's business, under the request id.
func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	st := api.Status{Status: "ok", Version: Version}
	add := func(name, kind string, err error) {
		c := api.ComponentStatus{Name: name, Kind: kind, Reachable: err == nil}
		if err != nil {
			s.logFor(r).Warn("component unreachable", "component", name, "err", err)
			c.Error = "unreachable; the server log says why under request id " + requestID(r)
			st.Status = "degraded"
		}
		st.Components = append(st.Components, c)
	}
	add("database", "database", s.store.Ping(ctx))
	_, err := s.bucket.Stat(ctx, "health/probe")
	if errors.Is(err, blob.ErrNotFound) {
		err = nil
	}
	add("objects", "objects", err)
	for _, e := range s.catalog.Load().Environments() {
		if sc, ok := s.scheds[e.Name]; ok {
			add(e.Name+" ("+sc.Name()+")", "scheduler", sc.Ping(ctx))
		}
	}
	return writeJSON(w, http.StatusOK, st)
}

// checkPath validates a user-supplied path of the files or outputs API.
func checkPath(field, p string) error {
	if err := blob.CheckPath(p); err != nil {
		return badField(field, fmt.Sprintf("%s %q: %v", field, p, err), err.Error())
	}
	return nil
}
