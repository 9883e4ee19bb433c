package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/client"
)

// shipper is one output stream: the command writes to a spool file, and
// the shipper sends what the gateway does not have yet, by offset.
type shipper struct {
	name string
	f    *os.File
	base int64 // the gateway's offset of the spool's first byte

	mu      sync.Mutex
	written int64
	sent    int64 // shipped, or dropped once the stream is full
	acked   int64 // what the gateway took: the heartbeat's measure
	tail    []byte
	full    bool // the gateway keeps no more of this stream
}

// offset is the gateway's offset of the stream's end: the bytes written
// so far, shipped or not.
func (s *shipper) offset() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.base + s.written
}

func (s *shipper) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.f.Write(p)
	s.written += int64(n)
	s.tail = append(s.tail, p[:n]...)
	if len(s.tail) > 4096 {
		s.tail = s.tail[len(s.tail)-4096:]
	}
	return n, err
}

// lastLine is the last non-empty line written, for error messages.
func (s *shipper) lastLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	lines := bytes.Split(bytes.TrimSpace(s.tail), []byte("\n"))
	l := bytes.TrimSpace(lines[len(lines)-1])
	if len(l) > 300 {
		l = l[:300]
	}
	return string(l)
}

func (s *shipper) pending() (int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.written
}

// flush sends up to 1 MiB of what is pending. Once the gateway says the
// stream is full, the rest is dropped: it is still in the spool file, and
// in the job's work directory, for as long as those are kept.
func (s *shipper) flush(ctx context.Context, c *client.Client, id string) (more bool, err error) {
	s.mu.Lock()
	if s.full {
		s.sent = s.written
	}
	sent, written := s.sent, s.written
	s.mu.Unlock()
	if sent >= written {
		return false, nil
	}
	n := min(written-sent, 1<<20)
	buf := make([]byte, n)
	if _, err := s.f.ReadAt(buf, sent); err != nil {
		return false, err
	}
	a, err := c.AppendLog(ctx, id, s.name, s.base+sent, buf)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	s.sent, s.acked = sent+n, s.acked+n
	if a.Full {
		s.full, s.sent = true, s.written
	}
	more = s.sent < s.written
	s.mu.Unlock()
	return more, nil
}

type shippers struct {
	a              *agent
	stdout, stderr *shipper
	gone           chan struct{} // closed when the gateway refuses the job
	goneOnce       sync.Once
	stop, done     chan struct{}
	stopOnce       sync.Once
}

func newShippers(a *agent, offsets map[string]int64) *shippers {
	ss := &shippers{a: a, gone: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	open := func(name string) *shipper {
		f, err := os.OpenFile(filepath.Join(a.spool, name+".log"), os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
		if err != nil {
			// Fall back to a file we can always make; output must not be lost silently.
			f, _ = os.CreateTemp("", "hpcgate-"+name+"-*.log")
		}
		return &shipper{name: name, f: f, base: offsets[name]}
	}
	ss.stdout, ss.stderr = open("stdout"), open("stderr")
	return ss
}

func (ss *shippers) flushAll(ctx context.Context) error {
	for _, s := range []*shipper{ss.stdout, ss.stderr} {
		for {
			more, err := s.flush(ctx, ss.a.c, ss.a.id)
			if err != nil {
				if st := client.StatusOf(err); st == 401 || st == 404 {
					ss.goneOnce.Do(func() { close(ss.gone) })
					return errJobGone
				}
				return err
			}
			if !more {
				break
			}
		}
	}
	return nil
}

// heartbeat is how often a job that writes nothing asks whether it is
// still wanted: a cancel through any gateway replica reaches it so.
const heartbeat = 2 * time.Second

// run ships logs every FlushInterval until close, and checks on the job
// when nothing else has reached the gateway for a while.
func (ss *shippers) run(ctx context.Context) {
	defer close(ss.done)
	t := time.NewTicker(ss.a.opts.FlushInterval)
	defer t.Stop()
	last := time.Now()
	// after a failure the next tries wait, doubling (a gateway away used
	// to be asked, and the failure logged, ten times a second)
	var fails int
	var next, down time.Time
	for {
		select {
		case <-ss.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			if time.Now().Before(next) {
				continue
			}
			before := ss.sentTotal()
			err := ss.flushAll(ctx)
			switch {
			case err != nil && !errors.Is(err, errJobGone):
				if fails++; fails == 1 {
					down = time.Now()
				}
				wait := min(ss.a.opts.FlushInterval<<min(fails, 10), retryDelayCap(time.Since(down)))
				next = time.Now().Add(wait)
				if fails&(fails-1) == 0 {
					ss.a.log.Warn("shipping logs failed; will retry", "err", err, "in", wait, "tries", fails)
				}
			case err == nil:
				fails = 0
			}
			if ss.sentTotal() != before {
				last = time.Now()
			} else if time.Since(last) > heartbeat {
				last = time.Now()
				j, err := ss.a.c.Job(ctx, ss.a.id)
				if st := client.StatusOf(err); st == 401 || st == 404 || (err == nil && client.Terminal(j.State)) {
					ss.goneOnce.Do(func() { close(ss.gone) })
				}
			}
		}
	}
}

// sentTotal is what the gateway has taken of both streams: while it grows,
// the gateway hears from the job; bytes dropped from a full stream do not
// count, so that a job printing into one is still asked after.
func (ss *shippers) sentTotal() int64 {
	total := int64(0)
	for _, s := range []*shipper{ss.stdout, ss.stderr} {
		s.mu.Lock()
		total += s.acked
		s.mu.Unlock()
	}
	return total
}

// halt stops the background shipping and waits for it to end. It may be
// called more than once, and on nil.
func (ss *shippers) halt() {
	if ss == nil {
		return
	}
	ss.stopOnce.Do(func() { close(ss.stop) })
	<-ss.done
}

// close stops the background shipping and sends everything left, retrying
// while the gateway is away.
func (ss *shippers) close(ctx context.Context) error {
	ss.halt()
	err := ss.a.retry(ctx, "ship logs", func(ctx context.Context) error {
		err := ss.flushAll(ctx)
		if errors.Is(err, errJobGone) {
			return &client.Error{Problem: api.Problem{Status: 404, Title: "job gone"}}
		}
		return err
	})
	for _, s := range []*shipper{ss.stdout, ss.stderr} {
		if sent, written := s.pending(); sent < written && err == nil {
			err = fmt.Errorf("%s: %d bytes not shipped", s.name, written-sent)
		}
		s.f.Close()
	}
	return err
}
