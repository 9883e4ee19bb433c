package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
	"github.com/hpcgate/hpcgate/internal/webhook"
)

// hookReceiver is a webhook endpoint: it checks every post's signature,
// refuses posts (503) while down, and keeps what it took.
type hookReceiver struct {
	t      *testing.T
	mu     sync.Mutex
	secret string
	down   bool
	took   []api.WebhookEvent
	ids    map[string]int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Header.Get(webhook.SignatureHeader) != webhook.Sign(h.secret, body) {
		h.t.Errorf("a post whose signature does not match: %s", body)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if h.down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var ev api.WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get(webhook.EventIDHeader) {
		h.t.Errorf("body %s (%v), id header %q", body, err, r.Header.Get(webhook.EventIDHeader))
	}
	h.took = append(h.took, ev)
	h.ids[ev.ID]++
}

// running returns the jobs whose running event was taken.
func (h *hookReceiver) running() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]bool{}
	for _, ev := range h.took {
		if ev.State == api.StateRunning {
			out[ev.JobID] = true
		}
	}
	return out
}

// ended returns the jobs whose terminal event was taken, by id.
func (h *hookReceiver) ended() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]string{}
	for _, ev := range h.took {
		if client.Terminal(ev.State) {
			out[ev.JobID] = ev.State
		}
	}
	return out
}

// Webhooks and the change stream, through a receiver that is down for a
// while and a gateway that crashes: every terminal event arrives, signed,
// none twice; a stream client that reconnects with its last event id
// misses no change and sees none twice.
func TestNotificationsEndToEnd(t *testing.T) {
	g := startGateway(t, "poll_interval: 500ms\nwebhooks: {allow_private_networks: true}\n")
	tok := g.userToken("nina")
	c := g.client(tok)
	ctx := context.Background()
	secret := strings.TrimSpace(g.mustCLI(tok, "webhook-secret"))
	rcv := &hookReceiver{t: t, secret: secret, ids: map[string]int{}}
	srv := g.tlsServer(rcv)

	// a stream client from the start, as 'hpcgate events' is
	var smu sync.Mutex
	var seen []api.Change
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	st, err := c.OpenChanges(sctx, client.FromNow)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			ch, err := st.Next()
			if err != nil {
				return
			}
			smu.Lock()
			seen = append(seen, ch)
			smu.Unlock()
		}
	}()

	notify := &api.Notify{URL: srv.URL + "/hook", Events: []string{"running", "terminal"}}
	submit := func(name string) string {
		t.Helper()
		j, err := c.CreateJob(ctx, api.JobRequest{Template: "hello", Parameters: json.RawMessage(`{"name":"` + name + `"}`), Notify: notify}, "")
		if err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	until := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, d)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	a := submit("a")
	until("a's end posted", 30*time.Second, func() bool { return rcv.ended()[a] == api.StateSucceeded })

	rcv.mu.Lock()
	rcv.down = true
	rcv.mu.Unlock()
	b := submit("b")
	waitJob(t, c, b, 30*time.Second)
	until("a post of b's refused", 30*time.Second, func() bool {
		evs, err := c.Events(ctx, b)
		return err == nil && slices.ContainsFunc(evs, func(e api.Event) bool { return strings.Contains(e.Reason, "trying again") })
	})
	g.kill()
	time.Sleep(time.Second)
	g.start()
	rcv.mu.Lock()
	rcv.down = false
	rcv.mu.Unlock()
	cj := submit("c")
	// every event wanted, each job's running one too: a post that failed
	// (a connection that broke, say) is retried after a second or more,
	// so a job's end may arrive before its start
	until("every start and end posted", 60*time.Second, func() bool {
		e := rcv.ended()
		r := rcv.running()
		return e[a] == api.StateSucceeded && e[b] == api.StateSucceeded && e[cj] == api.StateSucceeded && r[a] && r[b] && r[cj]
	})
	rcv.mu.Lock()
	for id, n := range rcv.ids {
		if n != 1 {
			t.Errorf("event %s taken %d times", id, n)
		}
	}
	var running []string
	for _, ev := range rcv.took {
		if ev.State == api.StateRunning {
			running = append(running, ev.JobID)
		}
	}
	rcv.mu.Unlock()
	slices.Sort(running)
	want := []string{a, b, cj}
	slices.Sort(want)
	if !slices.Equal(running, want) {
		t.Errorf("running events for %v, want one for each job", running)
	}
	evs, err := c.Events(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, e := range evs {
		if strings.HasPrefix(e.Reason, "webhook ") {
			notes = append(notes, e.Reason)
		}
	}
	if joined := strings.Join(notes, "\n"); !strings.Contains(joined, "trying again") || !strings.Contains(joined, "delivered") {
		t.Errorf("b's events say of its webhooks:\n%s", joined)
	}

	// the stream: every change of the three, in order, none twice
	until("the stream has c's end", 30*time.Second, func() bool {
		smu.Lock()
		defer smu.Unlock()
		return slices.ContainsFunc(seen, func(ch api.Change) bool { return ch.JobID == cj && ch.State == api.StateSucceeded })
	})
	smu.Lock()
	defer smu.Unlock()
	per := map[string][]string{}
	for i, ch := range seen {
		if i > 0 && ch.Seq != seen[i-1].Seq+1 {
			t.Fatalf("the stream went from change %d to %d", seen[i-1].Seq, ch.Seq)
		}
		per[ch.JobID] = append(per[ch.JobID], ch.State)
	}
	for _, id := range []string{a, b, cj} {
		if got := strings.Join(per[id], " "); !strings.HasPrefix(got, "pending") || !strings.HasSuffix(got, "running finishing succeeded") {
			t.Errorf("job %s in the stream: %s", id, got)
		}
	}
	if len(per) != 3 {
		t.Errorf("the stream had %d jobs: %v", len(per), per)
	}
}
