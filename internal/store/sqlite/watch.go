package sqlite

import (
	"sync"

	"github.com/latchmail/latch/internal/store"
)

// watchers hands out one channel per watched mailbox and closes it at the
// mailbox's next change; the next Watch gets a fresh one.
type watchers struct {
	mu     sync.Mutex
	m      map[store.MailboxID]chan struct{}
	closed bool // the Store is closed: every channel handed out is closed
}

func (w *watchers) get(id store.MailboxID) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	ch := w.m[id]
	if ch == nil {
		ch = make(chan struct{})
		w.m[id] = ch
	}
	return ch
}

func (w *watchers) notify(id store.MailboxID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch := w.m[id]; ch != nil {
		close(ch)
		delete(w.m, id)
	}
}

func (w *watchers) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, ch := range w.m {
		close(ch)
		delete(w.m, id)
	}
	w.closed = true
}

// Watch returns a channel closed at the next change to the mailbox
// committed after the call, or when the Store closes. A change committing
// concurrently with the call may close it too; callers re-read the mailbox
// when woken, so an early wake-up costs a read, never a missed change.
func (s *Store) Watch(mbox store.MailboxID) <-chan struct{} {
	return s.watch.get(mbox)
}
