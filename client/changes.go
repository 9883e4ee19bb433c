package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hpcgate/hpcgate/api"
)

// ErrNoChangeStream: the gateway answered GET /v1/events with no event
// stream (it is older than the stream).
var ErrNoChangeStream = errors.New("the gateway has no change stream")

// FromNow, as OpenChanges' after, starts with the changes that happen
// next.
const FromNow = -1

// ChangeStream is the caller's job state changes as they happen (GET
// /v1/events). Not for concurrent use.
type ChangeStream struct {
	c     *Client
	ctx   context.Context
	after int64 // the last change seen
	resp  *http.Response
	sc    *bufio.Scanner
}

// OpenChanges opens the stream of the caller's job state changes after
// the one numbered after (FromNow: from now on). It returns once the
// gateway has answered: a change after that is not missed. It needs a
// person's token (a job's gets a 403 *Error).
func (c *Client) OpenChanges(ctx context.Context, after int64) (*ChangeStream, error) {
	s := &ChangeStream{c: c, ctx: ctx, after: after}
	if err := s.connect(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *ChangeStream) connect() error {
	hdr := http.Header{}
	if s.after >= 0 {
		hdr.Set("Last-Event-ID", strconv.FormatInt(s.after, 10))
	}
	resp, err := s.c.Do(s.ctx, http.MethodGet, "/v1/events", nil, nil, hdr)
	if err != nil {
		return err
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		return fmt.Errorf("%w: GET /v1/events answered %s", ErrNoChangeStream, ct)
	}
	s.resp = resp
	s.sc = bufio.NewScanner(resp.Body)
	s.sc.Buffer(make([]byte, 64<<10), 1<<20)
	// the first lines say where the stream starts
	for s.sc.Scan() {
		line := s.sc.Text()
		if n, ok := strings.CutPrefix(line, ": changes after "); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				s.after = v
			}
			return nil
		}
	}
	resp.Body.Close()
	return errors.New("the gateway's event stream did not start")
}

// Next returns the next change. A lost connection is made again after
// the last change seen, so that none is missed; it returns an error only
// when ctx ends or the gateway refuses the stream.
func (s *ChangeStream) Next() (api.Change, error) {
	delay := 500 * time.Millisecond
	for {
		if s.resp != nil {
			ch, err := s.read()
			if err == nil {
				return ch, nil
			}
			s.resp.Body.Close()
			s.resp = nil
		}
		if err := s.ctx.Err(); err != nil {
			return api.Change{}, err
		}
		err := s.connect()
		var e *Error
		if (errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != 429) || errors.Is(err, ErrNoChangeStream) {
			return api.Change{}, err
		}
		if err == nil {
			delay = 500 * time.Millisecond
			continue
		}
		select {
		case <-s.ctx.Done():
			return api.Change{}, s.ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 10*time.Second)
	}
}

// read reads the next event of the open connection.
func (s *ChangeStream) read() (api.Change, error) {
	var id int64
	var data string
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && data != "":
			var ch api.Change
			if err := json.Unmarshal([]byte(data), &ch); err != nil {
				return ch, err
			}
			s.after = id
			return ch, nil
		}
	}
	return api.Change{}, errors.New("the event stream broke off")
}

// Close ends the stream.
func (s *ChangeStream) Close() {
	if s.resp != nil {
		s.resp.Body.Close()
		s.resp = nil
	}
}
