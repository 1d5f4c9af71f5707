package auth

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// penalties counts recent authentication failures per client address and
// per account. Each failure makes the next failure answer slower (a
// growing delay, served in the failing connection's own goroutine, so
// nobody else waits), and enough failures within the lock period lock the
// address or the account out for that period. Counts reset when a period
// passes without failures; a success resets the account's count only, so
// that one known password does not let an address try others for free.
//
// Memory is bounded: at most maxTracked records per kind; when full, stale
// records are swept first and, failing that, the table starts afresh.
type penalties struct {
	maxIP, maxUser int
	period         time.Duration
	baseDelay      time.Duration // after the first failure; doubles up to 32 times it

	mu    sync.Mutex // guards ip and user
	ip    map[netip.Prefix]*failures
	user  map[string]*failures
	limit int // maxTracked
}

type failures struct {
	n           int
	last        time.Time
	lockedUntil time.Time
}

const maxTracked = 100_000

func newPenalties(maxIP, maxUser int, period, baseDelay time.Duration) *penalties {
	return &penalties{
		maxIP: maxIP, maxUser: maxUser, period: period, baseDelay: baseDelay,
		ip: make(map[netip.Prefix]*failures), user: make(map[string]*failures),
		limit: maxTracked,
	}
}

// clientKey groups IPv6 clients by /64, the smallest block a single
// subscriber usually holds, so that rotating addresses inside it does not
// escape the count.
func clientKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// locked reports whether the address or the account is locked out now.
func (p *penalties) locked(addr netip.Addr, user string, now time.Time) (ipLocked, userLocked bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f := p.ip[clientKey(addr)]; f != nil && now.Before(f.lockedUntil) {
		ipLocked = true
	}
	if f := p.user[user]; user != "" && f != nil && now.Before(f.lockedUntil) {
		userLocked = true
	}
	return
}

// fail records a failure and returns how long to wait before answering.
func (p *penalties) fail(addr netip.Addr, user string, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := bump(p.ip, clientKey(addr), p.maxIP, p.period, p.limit, now)
	if user != "" {
		n = max(n, bump(p.user, user, p.maxUser, p.period, p.limit, now))
	}
	return failureDelay(p.baseDelay, n)
}

// succeed forgets the account's failures.
func (p *penalties) succeed(user string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.user, user)
}

func bump[K comparable](m map[K]*failures, k K, limit int, period time.Duration, maxLen int, now time.Time) int {
	f := m[k]
	if f == nil {
		if len(m) >= maxLen {
			sweep(m, now, period)
		}
		f = &failures{}
		m[k] = f
	}
	if now.Sub(f.last) > period {
		f.n = 0
	}
	f.n++
	f.last = now
	if limit > 0 && f.n >= limit {
		f.lockedUntil = now.Add(period)
	}
	return f.n
}

func sweep[K comparable](m map[K]*failures, now time.Time, period time.Duration) {
	for k, f := range m {
		if now.Sub(f.last) > period && now.After(f.lockedUntil) {
			delete(m, k)
		}
	}
	if len(m) >= maxTracked {
		clear(m)
	}
}

// failureDelay grows from base after the first failure to 32 times base.
func failureDelay(base time.Duration, n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return base << min(n-1, 5)
}

// verifier bounds the CPU that password verification may take: at most
// one verification per client address at a time, and at most a fixed
// number overall. A flood from one address queues behind itself; other
// clients wait at most for a free slot.
type verifier struct {
	global chan struct{}

	mu    sync.Mutex // guards perIP
	perIP map[netip.Prefix]*ipSlot
}

type ipSlot struct {
	ch   chan struct{}
	refs int
}

func newVerifier(slots int) *verifier {
	return &verifier{global: make(chan struct{}, max(slots, 1)), perIP: make(map[netip.Prefix]*ipSlot)}
}

// do runs fn when both the address's and a global slot are free.
func (v *verifier) do(ctx context.Context, addr netip.Addr, fn func()) error {
	key := clientKey(addr)
	v.mu.Lock()
	s := v.perIP[key]
	if s == nil {
		s = &ipSlot{ch: make(chan struct{}, 1)}
		v.perIP[key] = s
	}
	s.refs++
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		if s.refs--; s.refs == 0 {
			delete(v.perIP, key)
		}
		v.mu.Unlock()
	}()

	select {
	case s.ch <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.ch }()
	select {
	case v.global <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-v.global }()
	fn()
	return nil
}
