package server

import "sync"

// Hub wakes log followers in this process when a log grows. Followers also
// poll the store now and then, which covers appends through other replicas.
type Hub struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub { return &Hub{chans: map[string]chan struct{}{}} }

// Wait returns a channel that is closed at the next Notify of key.
func (h *Hub) Wait(key string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.chans[key]
	if !ok {
		c = make(chan struct{})
		h.chans[key] = c
	}
	return c
}

// Notify wakes every waiter of key.
func (h *Hub) Notify(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.chans[key]; ok {
		close(c)
		delete(h.chans, key)
	}
}
