// Package webhook posts the webhook events the store queues (a job's
// Notify wants a change: store.Delivery), outside the request and
// dispatcher paths: each signed with its owner's secret, retried with
// back-off until it is taken or a day has passed, and never to loopback
// or private addresses unless the operator allows them.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/job"
	"github.com/hpcgate/hpcgate/internal/netguard"
	"github.com/hpcgate/hpcgate/internal/store"
)

// Headers of a delivery.
const (
	SignatureHeader = "X-Hpcgate-Signature" // "sha256=" + hex HMAC-SHA256 of the body
	EventIDHeader   = "X-Hpcgate-Event-Id"
)

// Sign returns the signature header's value for body under secret.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Private tells whether a is an address a gateway must not be made to
// post to: loopback, private, link-local, shared (100.64/10),
// unspecified or multicast.
func Private(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a)
}

// CheckURL checks a webhook target as a job's request gives it: an https
// URL with a host and no user name, not naming a loopback or private
// address unless allowPrivate. (Names are resolved when posting, and the
// addresses they resolve to checked then.)
func CheckURL(raw string, allowPrivate bool) error {
	if len(raw) > 2048 {
		return errors.New("is longer than 2048 bytes")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("is not a valid URL")
	case u.Scheme != "https":
		return errors.New("is not an https:// URL: events are posted over TLS only")
	case u.Host == "" || u.Opaque != "":
		return errors.New("has no host")
	case u.User != nil:
		return errors.New("has a user name or password: events are signed instead")
	case u.Fragment != "":
		return errors.New("has a fragment")
	}
	if allowPrivate {
		return nil
	}
	host := strings.ToLower(u.Hostname())
	if a, err := netip.ParseAddr(host); (err == nil && Private(a)) || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return fmt.Errorf("names %s, a loopback or private address: the gateway posts to public addresses only (an operator may allow private ones: webhooks.allow_private_networks)", host)
	}
	return nil
}

// Options configure a Deliverer.
type Options struct {
	// AllowPrivate lets events go to loopback and private addresses.
	AllowPrivate bool
	// CACertFile is a CA trusted beside the system's roots (the gateway's
	// own, say); "" for none.
	CACertFile string
	// Interval is how often due deliveries are looked for (default 1s).
	Interval time.Duration
	// GiveUpAfter is how long after its change an event is still tried
	// (default 24h).
	GiveUpAfter time.Duration
	// Timeout bounds one post (default 10s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Deliverer posts due deliveries.
type Deliverer struct {
	st store.Store
	hc *http.Client
	o  Options
}

// New returns a Deliverer of st's deliveries.
func New(st store.Store, o Options) (*Deliverer, error) {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.GiveUpAfter <= 0 {
		o.GiveUpAfter = 24 * time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if o.CACertFile != "" {
		pem, err := os.ReadFile(o.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("webhooks: CA certificate: %w", err)
		}
		pool.AppendCertsFromPEM(pem)
	}
	allow := o.AllowPrivate
	dialer := &net.Dialer{Timeout: o.Timeout, Control: netguard.Control(func(a netip.Addr) error {
		if !allow && Private(a) {
			return fmt.Errorf("%w: %s", errPrivate, a) // the address goes to the log only
		}
		return nil
	})}
	tr := &http.Transport{
		Proxy:               nil, // the address checked is the one dialled
		DialContext:         dialer.DialContext,
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: o.Timeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
	}
	hc := &http.Client{Transport: tr, Timeout: o.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is an answer, not a delivery
	}}
	return &Deliverer{st: st, hc: hc, o: o}, nil
}

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for {
		d.Pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Deliveries are read passBatch at a time, at most ownerShare of them of
// one owner's (variables for the tests).
var passBatch, ownerShare = 256, 64

// Pass posts every delivery due now: four URLs at a time, each URL's
// deliveries in order by one worker. Once a post to a URL fails, the rest
// of that URL's deliveries wait with it, together, until its back-off
// ends: a receiver that never answers costs one timeout of one worker a
// pass, not one for each of its deliveries (a sweep of 10,000 jobs with
// all four workers), and the other users' deliveries go on. Each read
// takes at most ownerShare of one owner's: a sweep's flood of events to a
// healthy receiver used to fill every read, the other owners' events
// waiting behind all of it.
func (d *Deliverer) Pass(ctx context.Context) {
	for {
		due, err := d.st.DueDeliveries(ctx, time.Now(), passBatch, ownerShare)
		if err != nil {
			if ctx.Err() == nil {
				d.o.Logger.Error("read due webhook deliveries", "err", err)
			}
			return
		}
		more := len(due) == passBatch // there may be more due
		byURL := map[string][]store.Delivery{}
		var urls []string
		owners := map[string]int{}
		for _, del := range due {
			if byURL[del.URL] == nil {
				urls = append(urls, del.URL)
			}
			byURL[del.URL] = append(byURL[del.URL], del)
			if owners[del.Change.Owner]++; owners[del.Change.Owner] == ownerShare {
				more = true
			}
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 4)
		sweeps := &sweepCounts{m: map[string]*api.Sweep{}}
		for _, u := range urls {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				for i, del := range byURL[u] {
					if next, failed := d.deliver(ctx, del, sweeps); failed {
						// those past their time are given up without
						// waiting their turn; the rest wait with this one
						for _, old := range byURL[u][i+1:] {
							if time.Since(old.Change.Time) > d.o.GiveUpAfter {
								d.giveUp(ctx, old, "its receiver failed for as long as events are tried")
							}
						}
						if _, err := d.st.PostponeDeliveries(ctx, u, next); err != nil && ctx.Err() == nil {
							d.o.Logger.Error("postpone webhook deliveries", "url", u, "err", err)
						}
						return
					}
				}
			}()
		}
		wg.Wait()
		if !more || ctx.Err() != nil {
			return
		}
	}
}

// backoff is the wait after the n-th failed attempt: 1s, 2s, 4s, ...,
// at most 5 minutes.
func backoff(n int) time.Duration {
	if n > 9 {
		return 5 * time.Minute
	}
	return min(time.Second<<n, 5*time.Minute)
}

// giveUp ends a delivery that is not posted, saying why among its job's
// events.
func (d *Deliverer) giveUp(ctx context.Context, del store.Delivery, why string) {
	claimed, err := d.st.ClaimDelivery(ctx, del, time.Now().Add(2*d.o.Timeout+30*time.Second))
	if err == nil && claimed {
		err = d.st.DeliveryDone(ctx, del, fmt.Sprintf("webhook %s given up: %s", del.Change.EventID(), why))
	}
	if err != nil && ctx.Err() == nil {
		d.o.Logger.Error("give up a webhook delivery", "job_id", del.Change.JobID, "err", err)
	}
}

// deliver posts one delivery and records how it went; failed is whether
// the post failed (the delivery is due again at next, or given up), so
// that the URL's other deliveries wait until next.
func (d *Deliverer) deliver(ctx context.Context, del store.Delivery, sweeps *sweepCounts) (next time.Time, failed bool) {
	// of several gateways, one posts it
	claimed, err := d.st.ClaimDelivery(ctx, del, time.Now().Add(2*d.o.Timeout+30*time.Second))
	if err != nil || !claimed {
		if err != nil && ctx.Err() == nil {
			d.o.Logger.Error("claim a webhook delivery", "job_id", del.Change.JobID, "err", err)
		}
		return time.Time{}, false
	}
	c := del.Change
	id := c.EventID()
	host := del.URL
	if u, err := url.Parse(del.URL); err == nil {
		host = u.Host
	}
	err = d.post(ctx, del, sweeps)
	if ctx.Err() != nil {
		return time.Time{}, false // stopping: it is due again once the claim runs out
	}
	var note string
	switch {
	case err == nil:
		note = fmt.Sprintf("webhook %s delivered to %s", id, host)
		if del.Attempts > 0 {
			note += fmt.Sprintf(" (attempt %d)", del.Attempts+1)
		}
		err = d.st.DeliveryDone(ctx, del, note)
	case time.Since(c.Time) > d.o.GiveUpAfter:
		note = fmt.Sprintf("webhook %s to %s given up after %d attempts: %s", id, host, del.Attempts+1, why(err))
		d.o.Logger.Warn("webhook given up", "job_id", c.JobID, "event", id, "url", del.URL, "err", err)
		next, failed = time.Now().Add(backoff(del.Attempts)), true
		err = d.st.DeliveryDone(ctx, del, note)
	default:
		if del.Attempts == 0 {
			note = fmt.Sprintf("webhook %s to %s failed (%s); trying again", id, host, why(err))
			d.o.Logger.Info("webhook failed; trying again", "job_id", c.JobID, "event", id, "url", del.URL, "err", err)
		}
		next, failed = time.Now().Add(backoff(del.Attempts)), true
		err = d.st.RetryDelivery(ctx, del, next, note)
	}
	if err != nil && ctx.Err() == nil {
		d.o.Logger.Error("record a webhook delivery", "job_id", c.JobID, "event", id, "err", err)
	}
	return next, failed
}

// errPrivate is a post refused because the address dialled is loopback
// or private; errAnswer a receiver's answer other than 2xx.
var errPrivate = errors.New("the receiver's address is a loopback or private one")

type answerError struct{ status string }

func (e answerError) Error() string { return "the receiver answered " + e.status }

// why says what went wrong for a note the job's owner reads: in the
// owner's terms, never the gateway's own errors, nor an address a name
// resolved to (which would make the gateway a probe of its network).
func why(err error) string {
	var ae answerError
	var ne net.Error
	var ce *tls.CertificateVerificationError
	switch {
	case errors.As(err, &ae):
		return ae.Error()
	case errors.Is(err, errPrivate):
		return "the gateway does not post to loopback or private addresses"
	case errors.Is(err, errNoSecret):
		return errNoSecret.Error()
	case errors.As(err, &ce):
		return "the receiver's TLS certificate is not trusted"
	case errors.As(err, &ne) && ne.Timeout():
		return "the receiver did not answer in time"
	case errors.As(err, &ne):
		return "no connection to the receiver"
	}
	return "an error of the gateway's (its log says which)"
}

// errNoSecret: the event's owner has no webhook secret to sign with.
var errNoSecret = errors.New("its owner has no webhook secret")

// post sends one event; nil when the receiver took it (2xx).
func (d *Deliverer) post(ctx context.Context, del store.Delivery, sweeps *sweepCounts) error {
	c := del.Change
	u, err := d.st.User(ctx, c.Owner)
	if err != nil {
		return err
	}
	if u.WebhookSecret == "" {
		return errNoSecret
	}
	ev := api.WebhookEvent{ID: c.EventID(), Type: "job.state", Time: c.Time.UTC(), JobID: c.JobID, State: string(c.State), Reason: c.Reason, SweepID: c.SweepID}
	if c.SweepID != "" {
		sw, err := sweeps.get(ctx, d.st, c.Owner, c.SweepID)
		if err != nil {
			return err
		}
		ev.Sweep = sw
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, del.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "hpcgate-webhook")
	req.Header.Set(EventIDHeader, ev.ID)
	req.Header.Set(SignatureHeader, Sign(u.WebhookSecret, body))
	resp, err := d.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the note already
		}
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return answerError{resp.Status}
	}
	return nil
}

// sweepCounts are the sweeps' counts as one pass found them: a sweep's
// jobs are counted once a pass, however many of its events go out.
type sweepCounts struct {
	mu sync.Mutex
	m  map[string]*api.Sweep
}

func (sc *sweepCounts) get(ctx context.Context, st store.Store, owner, id string) (*api.Sweep, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sw, ok := sc.m[owner+"/"+id]; ok {
		return sw, nil
	}
	sw := &api.Sweep{ID: id, Counts: map[string]int{}}
	var err error
	sw.Deleted, err = store.EachSweepJob(ctx, st, owner, id, func(j *job.Job) error {
		sw.Total++
		sw.Counts[string(j.State)]++
		sw.Template = j.Template
		return nil
	})
	if err != nil {
		return nil, err
	}
	sc.m[owner+"/"+id] = sw
	return sw, nil
}
