package server

import "sync"

// Hub wakes log followers in this process when a log grows. Followers also
// poll the store now and then, which covers appends through other replicas.
type Hub struct {
	mu    sync.Mutex
	chans map[string]*waiters
}

// waiters are the followers of one key: the channel the next Notify
// closes, and how many hold it.
type waiters struct {
	c chan struct{}
	n int
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{chans: map[string]*waiters{}} }

// Wait returns a channel that is closed at the next Notify of key, and a
// func to call once the channel is no longer watched: the key is
// forgotten when no one waits for it (a job that has ended is never
// notified again).
func (h *Hub) Wait(key string) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w, ok := h.chans[key]
	if !ok {
		w = &waiters{c: make(chan struct{})}
		h.chans[key] = w
	}
	w.n++
	return w.c, sync.OnceFunc(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if w.n--; w.n == 0 && h.chans[key] == w {
			delete(h.chans, key)
		}
	})
}

// Notify wakes every waiter of key.
func (h *Hub) Notify(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w, ok := h.chans[key]; ok {
		close(w.c)
		delete(h.chans, key)
	}
}

// keys is how many keys are waited for (for tests).
func (h *Hub) keys() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.chans)
}
