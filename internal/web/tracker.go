package web

import "sync"

// Tracker remembers long-lived connections that http.Server.Shutdown does
// not see: a hijacked connection (every websocket) is invisible to it, so
// without tracking a shutdown would wait for nothing and cut them mid-frame.
type Tracker struct {
	mu     sync.Mutex
	next   uint64
	conns  map[uint64]func()
	closed bool
}

// Track registers close, to be called once by CloseAll. It returns a
// function that unregisters it when the connection ends by itself, and false
// if the tracker is already closed (the caller must close the connection).
func (t *Tracker) Track(close func()) (untrack func(), ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return func() {}, false
	}
	if t.conns == nil {
		t.conns = make(map[uint64]func())
	}
	id := t.next
	t.next++
	t.conns[id] = close
	return func() {
		t.mu.Lock()
		delete(t.conns, id)
		t.mu.Unlock()
	}, true
}

// Len reports how many connections are tracked.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// CloseAll closes every tracked connection concurrently and refuses new
// ones. It returns when every close function has returned.
func (t *Tracker) CloseAll() {
	t.mu.Lock()
	t.closed = true
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); c() }()
	}
	wg.Wait()
}
