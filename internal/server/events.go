package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/auth"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/webhook"
)

// eventsPoll is how often a stream of GET /v1/events looks for changes;
// eventsKeepAlive how often an idle stream sends a comment, so that
// proxies and clients see it alive.
const (
	eventsPoll      = time.Second
	eventsKeepAlive = 20 * time.Second
	eventsPage      = 500
)

// events streams the caller's job state changes as server-sent events:
// "id: SEQ", "event: job", "data: " an api.Change. It starts after
// Last-Event-ID (or ?after=N; 0 for every change the gateway keeps),
// else with what happens from now on.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	owner := principal(r).User
	ctx := r.Context()
	release, err := s.streams.open(w, owner)
	if err != nil {
		return err
	}
	defer release()
	var cursor int64
	from, field := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if from == "" {
		from, field = r.URL.Query().Get("after"), "after"
	}
	last, err := s.store.LastChange(ctx, owner)
	if err != nil {
		return err
	}
	cursor = last
	if from != "" {
		n, err := strconv.ParseInt(from, 10, 64)
		if err != nil || n < 0 {
			return fieldError(field, "must be a whole number ≥ 0, an event's id")
		}
		// past the newest (a database restored from a backup): from the
		// newest, where it said nothing, for good (found by the seventh
		// probe); a refusal would end a browser's EventSource silently
		cursor = min(n, last)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	rc := streamDeadlines(w, r, s.opts.StreamWait)
	w.WriteHeader(http.StatusOK)
	// a client that lost the stream tries again after 2 s, from its last id
	fmt.Fprintf(w, "retry: 2000\n: changes after %d\n\n", cursor)
	rc.Flush()
	quiet, checked := time.Now(), time.Now()
	for {
		rc.SetWriteDeadline(time.Now().Add(s.opts.StreamWait)) // a client that does not read is let go
		if time.Since(checked) >= time.Second {
			if !s.stillAuthorized(r) {
				return nil // revoked, signed out or disabled: no more
			}
			checked = time.Now()
		}
		cs, err := s.store.Changes(ctx, owner, cursor, eventsPage)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("read changes", "user", owner, "err", err)
			}
			return nil // the stream has begun: the client resumes
		}
		for _, c := range cs {
			b, _ := json.Marshal(api.Change{Seq: c.Seq, JobID: c.JobID, SweepID: c.SweepID, State: string(c.State), Reason: c.Reason, Time: c.Time.UTC()})
			if _, err := fmt.Fprintf(w, "id: %d\nevent: job\ndata: %s\n\n", c.Seq, b); err != nil {
				return nil // the client went away
			}
			cursor = c.Seq
		}
		if len(cs) > 0 {
			rc.Flush()
			quiet = time.Now()
			if len(cs) == eventsPage {
				continue
			}
		} else if time.Since(quiet) >= eventsKeepAlive {
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			rc.Flush()
			quiet = time.Now()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.streamsClosed:
			return nil // the gateway stops: the client resumes elsewhere, or later
		case <-time.After(eventsPoll):
		}
	}
}

// streamDeadlines readies w, a stream's answer, for write deadlines (a
// write may wait wait, set before each): over HTTP/1 its connection
// closes after it, so that no deadline is left to the connection's next
// request, and the answer's end, which net/http writes once the handler
// returns, waits wait at most. Call it before the answer's header.
func streamDeadlines(w http.ResponseWriter, r *http.Request, wait time.Duration) *http.ResponseController {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	rc := http.NewResponseController(w)
	rc.SetWriteDeadline(time.Now().Add(wait))
	return rc
}

// maxStreams is the most streams one user may hold open at once, event
// streams and followed logs together: each is a goroutine, a connection,
// and a read of the store every second.
const maxStreams = 32

// streams counts each user's open streams.
type streams struct {
	mu sync.Mutex
	n  map[string]int
}

// open counts a stream of user's, or refuses it with 429 when user holds
// maxStreams; release ends it.
func (st *streams) open(w http.ResponseWriter, user string) (release func(), err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.n[user] >= maxStreams {
		w.Header().Set("Retry-After", "10")
		return nil, errorf(http.StatusTooManyRequests, api.CodeRateLimited, "you hold %d streams open (event streams and followed logs), the most one user may: close one first", maxStreams)
	}
	if st.n == nil {
		st.n = map[string]int{}
	}
	st.n[user]++
	return sync.OnceFunc(func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.n[user]--; st.n[user] == 0 {
			delete(st.n, user)
		}
	}), nil
}

// CloseStreams ends the event streams (GET /v1/events) and breaks off
// the followed logs: the gateway stops. Their clients reconnect with
// their last event's id, or their log's offset.
func (s *Server) CloseStreams() { s.closeStreams.Do(func() { close(s.streamsClosed) }) }

// createWebhookSecret makes the caller's webhook secret, replacing any
// before it, and shows it once: what the gateway posts to the caller's
// jobs' notify URLs is signed with it.
func (s *Server) createWebhookSecret(w http.ResponseWriter, r *http.Request) error {
	secret, _ := auth.NewSecret()
	if err := s.store.SetWebhookSecret(r.Context(), principal(r).User, secret); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, api.WebhookSecret{Secret: secret})
}

// checkNotify checks a job request's notify for a job of owner's: an
// https URL the gateway may post to, state names or "terminal" (the
// default), and a webhook secret to sign with.
func (s *Server) checkNotify(ctx context.Context, owner string, n *api.Notify) (*job.Notify, error) {
	if n == nil {
		return nil, nil
	}
	if err := webhook.CheckURL(n.URL, s.opts.AllowPrivateWebhooks); err != nil {
		return nil, fieldError("notify.url", "%q %v", n.URL, err)
	}
	events := n.Events
	if len(events) == 0 {
		events = []string{job.NotifyTerminal}
	}
	if len(events) > 16 {
		return nil, fieldError("notify.events", "at most 16")
	}
	for i, e := range events {
		if e != job.NotifyTerminal && !slices.Contains(job.States, job.State(e)) {
			return nil, fieldError(fmt.Sprintf("notify.events[%d]", i), "%q is neither a state (%v) nor %q", e, job.States, job.NotifyTerminal)
		}
	}
	u, err := s.store.User(ctx, owner)
	if err != nil {
		return nil, err
	}
	if u.WebhookSecret == "" {
		return nil, errorf(http.StatusConflict, api.CodeConflict, "make a webhook secret first (POST /v1/webhook-secret, or 'hpcgate webhook-secret'): what the gateway posts is signed with it")
	}
	return &job.Notify{URL: n.URL, Events: slices.Clone(events)}, nil
}
