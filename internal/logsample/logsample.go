// Package logsample keeps per-connection events from flooding the log: a
// Limiter logs at most a fixed number of events per window at their own
// level, the rest at Debug, and tells on the next prominent line how many
// it held back. Scanners and floods are summarised, not logged line by line.
package logsample

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter is safe for concurrent use.
type Limiter struct {
	now    func() time.Time
	window time.Duration
	max    int

	mu         sync.Mutex // guards the fields below
	start      time.Time
	n          int
	suppressed int
}

// New returns a Limiter that lets max events per window through.
func New(window time.Duration, max int) *Limiter {
	return &Limiter{now: time.Now, window: window, max: max}
}

// allow reports whether an event may be logged prominently and, if so, how
// many events were held back since the last one that was.
func (l *Limiter) allow() (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t := l.now(); t.Sub(l.start) >= l.window {
		l.start, l.n = t, 0
	}
	if l.n >= l.max {
		l.suppressed++
		return false, 0
	}
	l.n++
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}

// Log logs the event at level if the limiter allows, else at Debug.
func (l *Limiter) Log(log *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	ok, suppressed := l.allow()
	if !ok {
		level = slog.LevelDebug
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("not_logged_before", suppressed))
	}
	log.LogAttrs(context.Background(), level, msg, attrs...)
}
