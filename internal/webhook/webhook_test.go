package webhook

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/store"
	"github.com/hpcgate/hpcgate/internal/store/sqlitestore"
)

func TestCheckURL(t *testing.T) {
	for _, tt := range []struct {
		url, err string
		private  bool
	}{
		{url: "https://hooks.example.org/hpc?x=1"},
		{url: "http://hooks.example.org/", err: "not an https://"},
		{url: "https://u:p@hooks.example.org/", err: "user name or password"},
		{url: "https:///x", err: "no host"},
		{url: "https://127.0.0.1:9000/", err: "loopback or private"},
		{url: "https://[::1]/", err: "loopback or private"},
		{url: "https://10.1.2.3/", err: "loopback or private"},
		{url: "https://169.254.169.254/latest/meta-data", err: "loopback or private"},
		{url: "https://localhost:8443/", err: "loopback or private"},
		{url: "https://100.64.0.1/", err: "loopback or private"},
		{url: "https://127.0.0.1:9000/", private: true},
	} {
		err := CheckURL(tt.url, tt.private)
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("CheckURL(%q, %v) = %v, want %q", tt.url, tt.private, err, tt.err)
		}
	}
	for _, a := range []string{"8.8.8.8", "2001:4860:4860::8888"} {
		if Private(netip.MustParseAddr(a)) {
			t.Errorf("%s is public", a)
		}
	}
	if !Private(netip.MustParseAddr("::ffff:192.168.1.1")) {
		t.Error("a v4-mapped private address passed")
	}
}

// receiver is a webhook endpoint in the test: it checks each post's
// signature, and answers fail times 503 before it takes posts.
type receiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	fail   int
	got    []api.WebhookEvent
	ids    map[string]int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if sig := req.Header.Get(SignatureHeader); sig != Sign(r.secret, body) {
		r.t.Errorf("signature %q does not match the body", sig)
	}
	if r.fail > 0 {
		r.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var ev api.WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != req.Header.Get(EventIDHeader) {
		r.t.Errorf("body %s (%v), event id header %q", body, err, req.Header.Get(EventIDHeader))
	}
	r.got = append(r.got, ev)
	r.ids[ev.ID]++
}

func setup(t *testing.T, allowPrivate bool) (store.Store, *receiver, *httptest.Server, *Deliverer) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.SetWebhookSecret(ctx, "ann", "the-secret"); err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, secret: "the-secret", ids: map[string]int{}}
	srv := httptest.NewTLSServer(rc)
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, certPEM(srv), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := New(st, Options{AllowPrivate: allowPrivate, CACertFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	return st, rc, srv, d
}

func runJob(t *testing.T, st store.Store, url, sweep string, states ...job.State) *job.Job {
	t.Helper()
	ctx := context.Background()
	j := &job.Job{ID: "j" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", ""), Owner: "ann", Template: "hello", State: job.Pending,
		SweepID: sweep, CreatedAt: time.Now(), Notify: &job.Notify{URL: url, Events: []string{"running", job.NotifyTerminal}}}
	if _, err := st.CreateJob(ctx, j, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if _, err := st.UpdateJob(ctx, j.ID, func(j *job.Job) error { return j.SetState(s, "to "+string(s), time.Now()) }); err != nil {
			t.Fatal(err)
		}
	}
	return j
}

// Every change a job's notify wants arrives once, signed, in order, with
// its sweep's counts; a receiver that fails for a while gets it later
// (the rest of its events wait with the one that failed, and keep their
// order); the deliveries are noted among the job's events.
func TestDelivers(t *testing.T) {
	st, rc, srv, d := setup(t, true)
	ctx := context.Background()
	a := runJob(t, st, srv.URL+"/hook", "sw1", job.Queued, job.Running, job.Succeeded)
	b := runJob(t, st, srv.URL+"/hook", "sw1", job.Canceled)
	rc.fail = 1 // the first post fails
	d.Pass(ctx)
	d.Pass(ctx) // nothing is due again yet: the back-off
	rc.mu.Lock()
	if len(rc.got) != 0 {
		t.Fatalf("first pass took %d events, want none (one failed, the others wait with it)", len(rc.got))
	}
	rc.mu.Unlock()
	time.Sleep(1100 * time.Millisecond)
	d.Pass(ctx)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var got []string
	for _, ev := range rc.got {
		got = append(got, ev.JobID+" "+ev.State)
		if ev.Sweep == nil || ev.Sweep.ID != "sw1" || ev.Sweep.Total != 2 {
			t.Errorf("event %+v: want its sweep's counts", ev)
		}
	}
	if want := []string{a.ID + " running", a.ID + " succeeded", b.ID + " canceled"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %q, want %q, in that order", got, want)
	}
	for id, n := range rc.ids {
		if n != 1 {
			t.Errorf("event %s arrived %d times", id, n)
		}
	}
	if ds, _ := st.DueDeliveries(ctx, time.Now().Add(time.Hour), 10, 0); len(ds) != 0 {
		t.Fatalf("deliveries left: %+v", ds)
	}
	// every delivery is noted on its job; the one that failed first says
	// so, and says on which attempt it went
	var delivered, failed, second int
	for _, id := range []string{a.ID, b.ID} {
		evs, _ := st.Events(ctx, id)
		for _, e := range evs {
			switch {
			case strings.Contains(e.Reason, "trying again"):
				failed++
			case strings.Contains(e.Reason, "delivered") && strings.Contains(e.Reason, "(attempt 2)"):
				second++
				delivered++
			case strings.Contains(e.Reason, "delivered"):
				delivered++
			}
		}
	}
	if delivered != 3 || failed != 1 || second != 1 {
		t.Fatalf("notes: %d delivered, %d failed, %d on a second attempt; want 3, 1, 1", delivered, failed, second)
	}
}

// A receiver that never answers costs one timeout of one worker a pass:
// each of its deliveries used to take a worker for a timeout in turn, and
// a sweep notifying one held all four, every user's deliveries waiting.
func TestDeadReceiverDoesNotHoldTheOthers(t *testing.T) {
	st, rc, srv, d := setup(t, true)
	ctx := context.Background()
	var hits atomic.Int32
	stop := make(chan struct{})
	dead := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-stop
	})) // httptest's servers share one certificate: the deliverer trusts it
	defer dead.Close()
	defer close(stop)
	d.hc.Timeout = 200 * time.Millisecond
	for range 10 {
		runJob(t, st, dead.URL+"/hook", "", job.Canceled)
	}
	for range 3 {
		runJob(t, st, srv.URL+"/hook", "", job.Canceled)
	}
	d.Pass(ctx)
	rc.mu.Lock()
	got := len(rc.got)
	rc.mu.Unlock()
	if n := hits.Load(); n != 1 || got != 3 {
		t.Fatalf("%d posts to the receiver that never answers (want 1), %d of the other's 3 events delivered", n, got)
	}
	if ds, _ := st.DueDeliveries(ctx, time.Now(), 100, 0); len(ds) != 0 {
		t.Fatalf("%d deliveries due right after the pass: want the dead receiver's all waiting", len(ds))
	}
	if ds, _ := st.DueDeliveries(ctx, time.Now().Add(time.Hour), 100, 0); len(ds) != 10 {
		t.Fatalf("%d deliveries left, want the dead receiver's 10", len(ds))
	}
	// past the time events are tried, one more post fails and all ten are
	// given up at once, not one a turn
	d.o.GiveUpAfter = time.Millisecond
	time.Sleep(1100 * time.Millisecond) // the back-off
	d.Pass(ctx)
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d posts to the receiver that never answers, want 2", n)
	}
	if ds, _ := st.DueDeliveries(ctx, time.Now().Add(time.Hour), 100, 0); len(ds) != 0 {
		t.Fatalf("%d deliveries left after their time, want none", len(ds))
	}
}

// One owner's flood of events to a healthy receiver does not hold another
// owner's back: each read used to take the longest due whoever they were
// for, so the others' waited behind all of it.
func TestFloodDoesNotHoldOthersBack(t *testing.T) {
	defer func(b, s int) { passBatch, ownerShare = b, s }(passBatch, ownerShare)
	passBatch, ownerShare = 32, 8
	st, rc, srv, d := setup(t, true)
	ctx := context.Background()
	for range 20 {
		runJob(t, st, srv.URL+"/flood", "", job.Running, job.Succeeded)
	}
	if err := st.SetWebhookSecret(ctx, "bo", rc.secret); err != nil {
		t.Fatal(err)
	}
	bo := &job.Job{ID: "jbo", Owner: "bo", Template: "hello", State: job.Pending, CreatedAt: time.Now(),
		Notify: &job.Notify{URL: srv.URL + "/calm", Events: []string{job.NotifyTerminal}}}
	if _, err := st.CreateJob(ctx, bo, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateJob(ctx, bo.ID, func(j *job.Job) error { return j.SetState(job.Canceled, "to canceled", time.Now()) }); err != nil {
		t.Fatal(err)
	}
	d.Pass(ctx)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	at := slices.IndexFunc(rc.got, func(e api.WebhookEvent) bool { return e.JobID == bo.ID })
	if len(rc.got) != 41 || at < 0 || at > ownerShare {
		t.Fatalf("of %d events posted, the other owner's came %d-th; want it among the first %d", len(rc.got), at+1, ownerShare+1)
	}
}

// Posts to loopback addresses are refused where the connection is made
// (a name may resolve to one), unless allowed; an event that cannot be
// delivered for a day is given up, saying why.
func TestRefusesPrivateAndGivesUp(t *testing.T) {
	st, rc, srv, d := setup(t, false)
	ctx := context.Background()
	d.o.GiveUpAfter = time.Millisecond
	j := runJob(t, st, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)+"/hook", "", job.Canceled)
	time.Sleep(5 * time.Millisecond)
	d.Pass(ctx)
	rc.mu.Lock()
	n := len(rc.got)
	rc.mu.Unlock()
	if n != 0 {
		t.Fatal("an event was posted to a loopback address")
	}
	evs, _ := st.Events(ctx, j.ID)
	last := evs[len(evs)-1].Reason
	if !strings.Contains(last, "given up") || !strings.Contains(last, "loopback or private") || strings.Contains(last, "127.0.0.1") {
		t.Fatalf("last event %q", last)
	}
	if ds, _ := st.DueDeliveries(ctx, time.Now().Add(time.Hour), 10, 0); len(ds) != 0 {
		t.Fatalf("a given-up delivery is left: %+v", ds)
	}
}

func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// A sweep's summary in an event says how many of its jobs were deleted
// since it was made, as GET /v1/sweeps/{id} does.
func TestSweepSummarySaysDeleted(t *testing.T) {
	st, _, _, _ := setup(t, true)
	ctx := context.Background()
	for range 2 {
		j := runJob(t, st, "http://127.0.0.1:1/hook", "sw3")
		if _, err := st.UpdateJob(ctx, j.ID, func(j *job.Job) error { j.SweepSize = 3; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	sc := &sweepCounts{m: map[string]*api.Sweep{}}
	sw, err := sc.get(ctx, st, "ann", "sw3")
	if err != nil || sw.Total != 2 || sw.Deleted != 1 {
		t.Fatalf("summary %+v, %v; want 2 jobs and 1 deleted", sw, err)
	}
}
