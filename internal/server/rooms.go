package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hpcgate/hpcgate/api"
	"github.com/hpcgate/hpcgate/internal/store"
)

// rooms are where writes of an object's key take turns, and where uploads
// hold their users' room (bytes, and a new file's place) until what they
// store is counted: in this process's memory when one process owns the
// store (memRooms, SQLite), in the store when replicas share it
// (sharedRooms, PostgreSQL's store.Leases). Without turns an upload and a
// deletion of one key each counted what they saw first, one object twice
// or not at all (a PUT racing a DELETE left its bytes uncounted: a way
// past the quota); without holds uploads at once each checked the same
// room and together passed the quota.
type rooms interface {
	// turn waits until no other write of key runs, and returns the
	// function that ends this one's turn; after writeWait (or when ctx
	// ends) it gives up: a 409 to retry.
	turn(ctx context.Context, key string) (end func(), err error)
	// hold begins an upload's hold of user's room.
	hold(user string) roomHold
}

// roomHold is one upload's hold of its user's room. It is used by one
// goroutine at a time.
type roomHold interface {
	// take holds want more bytes of the room within limit (> 0), or
	// (partial) what is left of it if less, and returns how many; when
	// nothing can be held, it answers the *store.QuotaError.
	take(ctx context.Context, want, limit int64, partial bool) (int64, error)
	// takeFile holds the place of one more file within limit (> 0), or
	// answers the *store.QuotaError.
	takeFile(ctx context.Context, limit int64) error
	// end adds delta to what the user stores and lets go of what the hold
	// took, at once; only its first call does anything. A failure to
	// count is logged, not answered: the object is stored (or removed).
	end(ctx context.Context, delta store.Stored)
}

// writeWait is the longest a write waits for another of its key.
var writeWait = 30 * time.Second

// busyKey is the answer to a write that waited writeWait for its turn.
func busyKey() error {
	return errorf(http.StatusConflict, api.CodeConflict, "another write of this path has run for over %s; retry when it ends", writeWait)
}

// ---- one process

// memRooms keep turns and holds in this process's memory; a crash drops
// the holds with the uploads they were for, and nothing stays counted
// that is not stored.
type memRooms struct {
	st   store.Store
	log  *slog.Logger
	keys keyLocks
	mu   sync.Mutex
	held map[string]store.Stored // by user
}

func (m *memRooms) turn(ctx context.Context, key string) (func(), error) {
	return m.keys.lock(ctx, key)
}

func (m *memRooms) hold(user string) roomHold { return &memHold{m: m, user: user} }

// add adds d to user's holds (under mu).
func (m *memRooms) add(user string, d store.Stored) {
	if m.held == nil {
		m.held = map[string]store.Stored{}
	}
	n := m.held[user]
	n.Bytes += d.Bytes
	n.Files += d.Files
	if n.Bytes <= 0 && n.Files <= 0 {
		delete(m.held, user)
		return
	}
	m.held[user] = n
}

type memHold struct {
	m     *memRooms
	user  string
	held  store.Stored
	ended bool
}

// take reads the use under the lock: an upload that stores, counts, and
// then lets go of its hold is seen in one or the other.
func (h *memHold) take(ctx context.Context, want, limit int64, partial bool) (int64, error) {
	if want <= 0 {
		return 0, nil // nothing more stored: even a user over the quota may shrink a file
	}
	return h.takeOf(ctx, store.Stored{Bytes: want}, limit, partial)
}

func (h *memHold) takeFile(ctx context.Context, limit int64) error {
	_, err := h.takeOf(ctx, store.Stored{Files: 1}, limit, false)
	return err
}

// takeOf takes want's one part (bytes or files).
func (h *memHold) takeOf(ctx context.Context, want store.Stored, limit int64, partial bool) (int64, error) {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	st, err := stored(ctx, h.m.st, h.user)
	if err != nil {
		return 0, err
	}
	held := h.m.held[h.user]
	var n int64
	if want.Files > 0 {
		n, err = store.Fit("files", want.Files, st.Files+held.Files, limit, false)
		want.Files = n
	} else {
		n, err = store.Fit("bytes", want.Bytes, st.Bytes+held.Bytes, limit, partial)
		want.Bytes = n
	}
	if err != nil {
		return 0, err
	}
	h.m.add(h.user, want)
	h.held.Bytes += want.Bytes
	h.held.Files += want.Files
	return n, nil
}

func (h *memHold) end(ctx context.Context, delta store.Stored) {
	if h.ended {
		return
	}
	h.ended = true
	countStored(ctx, h.m.st, h.m.log, h.user, delta)
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	h.m.add(h.user, store.Stored{Bytes: -h.held.Bytes, Files: -h.held.Files})
}

// ---- replicas

// leaseTTL is how long a lease of sharedRooms lasts unless kept: what
// a replica that dies leaves held, at most. Leases are kept every third
// of it.
var leaseTTL = time.Minute

// sharedRooms keep turns and holds in a store replicas share. A write
// takes its key's turn in this process first (keyLocks: waiters here
// queue without asking the store), then the key's lease.
type sharedRooms struct {
	l      store.Leases
	log    *slog.Logger
	holder string // this process, in its leases
	keys   keyLocks
	seq    atomic.Uint64
}

func newSharedRooms(l store.Leases, log *slog.Logger) *sharedRooms {
	b := make([]byte, 12)
	rand.Read(b)
	return &sharedRooms{l: l, log: log, holder: hex.EncodeToString(b)}
}

func (r *sharedRooms) turn(ctx context.Context, key string) (func(), error) {
	deadline := time.Now().Add(writeWait)
	unlock, err := r.keys.lock(ctx, key)
	if err != nil {
		return nil, err
	}
	lease := func(ctx context.Context) (bool, error) { return r.l.LeaseKey(ctx, key, r.holder, leaseTTL) }
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		ok, err := lease(ctx)
		if err != nil {
			unlock()
			return nil, err
		}
		if ok {
			break
		}
		if time.Until(deadline) < wait {
			unlock()
			return nil, busyKey()
		}
		select {
		case <-ctx.Done():
			unlock()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	stop := r.keep("lease of "+key, func(ctx context.Context) error {
		ok, err := lease(ctx)
		if err == nil && !ok {
			return errLapsed
		}
		return err
	})
	return sync.OnceFunc(func() {
		stop()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := r.l.ReleaseKey(ctx, key, r.holder); err != nil {
			r.log.Error("release a lease; it lapses by itself", "key", key, "err", err)
		}
		unlock()
	}), nil
}

// errLapsed is a lease's that lapsed before it was kept and was taken
// by another.
var errLapsed = errors.New("the lease lapsed and was taken by another replica")

// keep runs renew every third of leaseTTL until the function it returns
// is called, which waits for it to end.
func (r *sharedRooms) keep(what string, renew func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := renew(ctx); err != nil && ctx.Err() == nil {
					r.log.Error("keep a "+what, "err", err)
				}
			}
		}
	}()
	return sync.OnceFunc(func() { cancel(); <-done })
}

func (r *sharedRooms) hold(user string) roomHold {
	return &sharedHold{r: r, user: user, id: r.holder + "-" + strconv.FormatUint(r.seq.Add(1), 10)}
}

type sharedHold struct {
	r        *sharedRooms
	id, user string
	stop     func() // keeps the hold, once it holds anything
	ended    bool
}

func (h *sharedHold) take(ctx context.Context, want, limit int64, partial bool) (int64, error) {
	if want <= 0 {
		return 0, nil
	}
	got, err := h.takeOf(ctx, store.Stored{Bytes: want}, store.Stored{Bytes: limit}, partial)
	return got.Bytes, err
}

func (h *sharedHold) takeFile(ctx context.Context, limit int64) error {
	_, err := h.takeOf(ctx, store.Stored{Files: 1}, store.Stored{Files: limit}, false)
	return err
}

func (h *sharedHold) takeOf(ctx context.Context, want, limit store.Stored, partial bool) (store.Stored, error) {
	got, err := h.r.l.Hold(ctx, h.id, h.user, want, limit, partial, leaseTTL)
	if err == nil && h.stop == nil {
		h.stop = h.r.keep("hold of "+h.user+"'s room", func(ctx context.Context) error {
			_, err := h.r.l.Hold(ctx, h.id, h.user, store.Stored{}, store.Stored{}, false, leaseTTL)
			return err
		})
	}
	return got, err
}

func (h *sharedHold) end(ctx context.Context, delta store.Stored) {
	if h.ended {
		return
	}
	h.ended = true
	if h.stop == nil && delta == (store.Stored{}) {
		return // nothing held, nothing to count
	}
	if h.stop != nil {
		h.stop()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := h.r.l.Settle(ctx, h.id, h.user, delta); err != nil {
		h.r.log.Error("count stored bytes and files; the hold lapses by itself", "user", h.user, "bytes", delta.Bytes, "files", delta.Files, "err", err)
	}
}

// ---- an upload's hold

// An upload of no known size takes its user's room as it reads: first
// holdFirst, then twice as much each time, up to holdStep. Each took 64
// MiB at once, and a few small uploads of unknown length filled a quota
// of 50 MiB that held nothing (found by the eighth probe).
const (
	holdFirst = 1 << 20
	holdStep  = 64 << 20
)

// quotaReader reads an upload's body within what it holds, taking more
// (when it may) as it goes past it.
type quotaReader struct {
	r    io.Reader
	room int64                 // what may still be read
	more func() (int64, error) // more room, or the QuotaError
}

func (q *quotaReader) Read(b []byte) (int, error) {
	if q.room <= 0 {
		n, err := q.more()
		if err != nil {
			return 0, err
		}
		q.room += n
	}
	b = b[:min(int64(len(b)), q.room)]
	n, err := q.r.Read(b)
	q.room -= int64(n)
	return n, err
}

// keyLocks let one write of an object's key run at a time in this
// process.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	held    chan struct{} // capacity 1: full while held
	waiters int           // guarded by keyLocks.mu, the holder too
}

// lock waits until no other write of key runs here, and returns the
// function that ends this one's turn; after writeWait (or when ctx ends)
// it gives up: a 409 to retry.
func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{held: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.waiters++
	l.mu.Unlock()
	leave := func() {
		l.mu.Lock()
		if kl.waiters--; kl.waiters == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	t := time.NewTimer(writeWait)
	defer t.Stop()
	select {
	case kl.held <- struct{}{}:
		return sync.OnceFunc(func() { <-kl.held; leave() }), nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	case <-t.C:
		leave()
		return nil, busyKey()
	}
}

// What settle (of holdRoom) is told stands at the key in the end, but an
// object's size.
const (
	keptOld = -1 // the object that was there before, or none: nothing stored
	removed = -2 // nothing: the object that was there is gone too
)

// holdRoom holds, before anything is read, the room an upload of size
// bytes (-1: not known) to key needs in user's bytes quota, and in the
// files quota if there is no object at key yet: what does not fit is
// refused at once, and uploads at once cannot pass the quota together
// (each used to check the same room). An upload of no known size holds
// its room up to 64 MiB at a time as it reads, and is stopped where the
// room ends. Other writes of key wait from here until settle, which
// counts what stands at key in the end (an object's size, keptOld or
// removed) and lets the hold go. Only its first call counts: a caller
// defers settle(keptOld) at once (for every way out that stores nothing,
// a panic too) and settles what it stored.
func (s *Server) holdRoom(ctx context.Context, user, key string, body io.Reader, size int64) (io.Reader, func(stored int64), error) {
	endTurn, err := s.rooms.turn(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	old, existed, err := s.objectSize(ctx, key)
	if err != nil {
		endTurn()
		return nil, nil, err
	}
	h, q := s.rooms.hold(user), s.quotaOf(user)
	if !existed && q.Files > 0 {
		if err := h.takeFile(ctx, q.Files); err != nil {
			h.end(ctx, store.Stored{})
			endTurn()
			return nil, nil, err
		}
	}
	var before store.Stored // what key held
	if existed {
		before = store.Stored{Bytes: old, Files: 1}
	}
	settled := false
	settle := func(stored int64) {
		if settled {
			return
		}
		settled = true
		var delta store.Stored
		switch {
		case stored >= 0:
			delta = store.Stored{Bytes: stored - before.Bytes, Files: 1 - before.Files}
		case stored == removed:
			delta = store.Stored{Bytes: -before.Bytes, Files: -before.Files}
		}
		h.end(ctx, delta)
		endTurn()
	}
	switch limit := q.Bytes; {
	case limit <= 0:
	case size >= 0: // the body is no longer than it says
		if _, err := h.take(ctx, max(size-old, 0), limit, false); err != nil {
			settle(keptOld)
			return nil, nil, err
		}
	default: // the old object's bytes first, then what it holds
		step := int64(holdFirst)
		body = &quotaReader{r: body, room: old, more: func() (int64, error) {
			n, err := h.take(ctx, step, limit, true)
			step = min(2*step, holdStep)
			return n, err
		}}
	}
	return body, settle, nil
}
