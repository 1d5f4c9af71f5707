// Package auth decides who a client is: password and SASL logins for every
// protocol engine, against the accounts in the store, under Latch's
// cleartext policy (RFC 8314 4.1) and failure penalties.
//
// Invariants:
//   - On a connection without TLS no mechanism is offered and every attempt
//     is refused with ErrPrivacyRequired, unless the account holds an
//     unexpired legacy allowance. The refusal does the same work whether
//     the credentials are right or wrong: the password is not verified on
//     the caller's path. Whether it was right (and so has now crossed the
//     network in the clear) is found out afterwards, off that path, and
//     recorded in Account.CleartextExposed.
//   - Every attempt's outcome is logged once, with the connection's
//     Security record.
//   - Passwords are never stored or logged; the credential cache keeps
//     only keyed hashes of them.
package auth

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/latchmail/latch/internal/sasl"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/tlsgate"
)

// Errors of a failed authentication. All but ErrPrivacyRequired match
// sasl.ErrAuthFailed with errors.Is, so an engine that does not care about
// the reason answers them all alike.
var (
	// ErrPrivacyRequired: the connection has no TLS (IMAP
	// [PRIVACYREQUIRED], SMTP 530 5.7.0, POP3 -ERR [AUTH]).
	ErrPrivacyRequired = errors.New("auth: authentication requires TLS on this connection")
	// ErrInvalid: wrong user name or password, or nothing to authenticate by.
	ErrInvalid = fmt.Errorf("auth: invalid credentials: %w", sasl.ErrAuthFailed)
	// ErrLocked: too many recent failures from this address or for this
	// account; try again later.
	ErrLocked = fmt.Errorf("auth: temporarily locked after repeated failures: %w", sasl.ErrAuthFailed)
	// ErrPasswordChange: the password was right, but an administrator
	// requires it to be changed first (IMAP [EXPIRED]).
	ErrPasswordChange = fmt.Errorf("auth: password must be changed before logging in: %w", sasl.ErrAuthFailed)
)

// Options tune a Service; zero values take the defaults of config.Auth.
type Options struct {
	CacheSize       int
	CacheTTL        time.Duration
	MaxFailuresIP   int
	MaxFailuresUser int
	LockFor         time.Duration
	FailureDelay    time.Duration // answer delay after a first failure; doubles with each further one
}

// Service authenticates clients. It is safe for concurrent use.
type Service struct {
	accounts store.Accounts
	log      *slog.Logger
	now      func() time.Time

	verifications atomic.Int64 // password hashes computed: cache misses

	cache     *credCache
	penalties *penalties
	verifier  *verifier
	exposure  chan exposureCheck
	checked   chan struct{} // closed when the exposure checker has stopped
	dummyHash string        // verified for unknown users, so they cost what a wrong password costs
	fakeKey   []byte        // derives stable fake SCRAM salts for unknown users
}

type exposureCheck struct {
	account  store.AccountID
	password string
}

// New returns a Service over the given accounts. Stop it with Close.
func New(accounts store.Accounts, opts Options, log *slog.Logger) (*Service, error) {
	dummy, err := HashPassword("latch dummy password")
	if err != nil {
		return nil, err
	}
	s := &Service{
		accounts:  accounts,
		log:       log,
		now:       time.Now,
		cache:     newCredCache(opts.CacheSize, opts.CacheTTL),
		penalties: newPenalties(opts.MaxFailuresIP, opts.MaxFailuresUser, opts.LockFor, cmp.Or(opts.FailureDelay, 250*time.Millisecond)),
		verifier:  newVerifier(runtime.GOMAXPROCS(0)),
		exposure:  make(chan exposureCheck, 64),
		checked:   make(chan struct{}),
		dummyHash: dummy,
		fakeKey:   []byte(dummy),
	}
	go s.checkExposures()
	return s, nil
}

// Close stops the background exposure checker once it has checked what
// is queued, so that no exposure is lost at shutdown; close the store
// only after it.
func (s *Service) Close() {
	close(s.exposure)
	<-s.checked
}

// Session is what the service knows of the connection a login arrives on.
type Session struct {
	Service string               // "imap", "pop3", "submission": for logs
	Sec     *tlsgate.Security    // the connection's Security record
	Binding *sasl.ChannelBinding // nil: SCRAM-SHA-256-PLUS is not offered
}

// Mechanisms lists the SASL mechanisms to advertise on a connection, best
// first: none without TLS (RFC 8314 4.1), EXTERNAL only when the client
// certificate maps to an account, -PLUS only with channel binding.
func (s *Service) Mechanisms(sess *Session) []string {
	if !sess.Sec.TLS {
		return nil
	}
	var m []string
	if sess.Sec.Authenticated() != "" {
		m = append(m, sasl.External)
	}
	if sess.Binding != nil {
		m = append(m, sasl.ScramSHA256Plus)
	}
	return append(m, sasl.ScramSHA256, sasl.Plain, sasl.Login)
}

// Login checks a user name and password given outside SASL (IMAP LOGIN,
// POP3 USER/PASS) and returns the account.
func (s *Service) Login(ctx context.Context, sess *Session, username, password string) (*store.Account, error) {
	b := &backend{s: s, sess: sess}
	a, err := b.CheckPassword(ctx, "", username, password)
	return a, s.finish(ctx, sess, "LOGIN", b.user, err)
}

// Start begins a SASL exchange with the named mechanism. The returned
// Server records the outcome (penalties, log) when the exchange ends.
func (s *Service) Start(sess *Session, mech string) (sasl.Server, error) {
	b := &backend{s: s, sess: sess}
	var srv sasl.Server
	switch strings.ToUpper(mech) {
	case sasl.Plain:
		srv = sasl.NewPlain(b)
	case sasl.Login:
		srv = sasl.NewLogin(b)
	case sasl.ScramSHA256:
		srv = sasl.NewSCRAM(b, sess.Binding, false, sess.Binding != nil)
	case sasl.ScramSHA256Plus:
		if sess.Binding == nil {
			return nil, sasl.ErrUnsupportedMech
		}
		srv = sasl.NewSCRAM(b, sess.Binding, true, true)
	case sasl.External:
		srv = sasl.NewExternal(b)
	default:
		return nil, sasl.ErrUnsupportedMech
	}
	return &tracked{Server: srv, s: s, b: b, mech: strings.ToUpper(mech)}, nil
}

// tracked wraps a mechanism so that the end of every exchange, whichever
// the mechanism, goes through Service.finish exactly once.
type tracked struct {
	sasl.Server
	s    *Service
	b    *backend
	mech string
	done bool
}

func (t *tracked) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	ch, done, err := t.Server.Next(ctx, resp)
	if (done || err != nil) && !t.done {
		t.done = true
		err = t.s.finish(ctx, t.b.sess, t.mech, t.b.user, err)
		done = true
	}
	return ch, done, err
}

// finish logs an attempt's outcome and applies penalties to failures.
func (s *Service) finish(ctx context.Context, sess *Session, mech, user string, err error) error {
	log := s.log.With(slog.String("service", sess.Service), slog.String("mech", mech), slog.String("user", user), slog.Any("sec", sess.Sec))
	switch {
	case err == nil:
		s.penalties.succeed(user)
		log.Info("auth ok")
		return nil
	case errors.Is(err, ErrPrivacyRequired):
		log.Warn("auth refused: no TLS")
		return err
	case errors.Is(err, sasl.ErrMalformed), errors.Is(err, context.Canceled):
		log.Info("auth aborted", slog.String("reason", err.Error()))
		return err
	}
	delay := s.penalties.fail(sess.Sec.Remote.Addr(), user, s.now())
	log.Warn("auth failed", slog.String("reason", err.Error()), slog.Duration("delay", delay))
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return err
}

// backend answers one session's mechanism; it remembers the user name
// the client gave, for the log and the penalties.
type backend struct {
	s    *Service
	sess *Session
	user string
}

// lookup finds an account by login name, or else by address, since many
// clients log in with the address.
func (b *backend) lookup(ctx context.Context, name string) (*store.Account, error) {
	a, err := b.s.accounts.Account(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		a, err = b.s.accounts.AccountByAddress(ctx, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: look up %q: %w", name, err)
	}
	return a, nil
}

// cleartextAllowed reports whether a connection without TLS may log in
// to a: only with a legacy allowance that has not expired (RFC 8314 4.1).
func (b *backend) cleartextAllowed(a *store.Account) bool {
	return b.sess.Sec.TLS || (a != nil && b.s.now().Before(a.LegacyUntil))
}

func (b *backend) CheckPassword(ctx context.Context, authzid, username, password string) (*store.Account, error) {
	b.user = username
	s := b.s
	a, err := b.lookup(ctx, username)
	if err != nil {
		return nil, err
	}
	if !b.cleartextAllowed(a) {
		if a != nil && a.PasswordHash != "" {
			select {
			case s.exposure <- exposureCheck{a.ID, password}:
			default:
				s.log.Warn("auth: cleartext exposure check dropped, queue full", slog.String("user", username))
			}
		}
		return nil, ErrPrivacyRequired
	}
	if authzid != "" && (a == nil || (authzid != a.Name && !strings.EqualFold(authzid, a.Address))) {
		return nil, ErrInvalid
	}
	now := s.now()
	addr := b.sess.Sec.Remote.Addr()
	ipLocked, userLocked := s.penalties.locked(addr, username, now)
	if ipLocked {
		return nil, ErrLocked
	}
	if a != nil && a.PasswordHash != "" && s.cache.hit(username, password, a.PasswordHash, now) {
		return b.verified(ctx, a)
	}
	if userLocked {
		return nil, ErrLocked
	}
	hash := s.dummyHash
	if a != nil && a.PasswordHash != "" {
		hash = a.PasswordHash
	}
	var ok bool
	var verr error
	if err := s.verifier.do(ctx, addr, func() {
		s.verifications.Add(1)
		ok, verr = VerifyPassword(hash, password)
	}); err != nil {
		return nil, err
	}
	if verr != nil {
		return nil, fmt.Errorf("auth: account %q: %w", username, verr)
	}
	if !ok || hash == s.dummyHash {
		return nil, ErrInvalid
	}
	s.cache.add(username, password, a.PasswordHash, now)
	return b.verified(ctx, a)
}

// verified finishes a login whose password proved right, from the cache
// or by hashing: a password that came without TLS (legacy allowance) has
// crossed the network in the clear, whichever way it was checked.
func (b *backend) verified(ctx context.Context, a *store.Account) (*store.Account, error) {
	if !b.sess.Sec.TLS {
		b.s.markExposed(ctx, a)
	}
	return b.accept(a)
}

// accept applies the checks that follow proof of the password.
func (b *backend) accept(a *store.Account) (*store.Account, error) {
	if a.MustChangePassword {
		return nil, ErrPasswordChange
	}
	return a, nil
}

func (b *backend) SCRAMKeys(ctx context.Context, username string) (*store.Account, *store.SCRAMKeys, error) {
	b.user = username
	a, err := b.lookup(ctx, username)
	if err != nil {
		return nil, nil, err
	}
	if !b.cleartextAllowed(a) {
		return nil, nil, ErrPrivacyRequired
	}
	if ipLocked, userLocked := b.s.penalties.locked(b.sess.Sec.Remote.Addr(), username, b.s.now()); ipLocked || userLocked {
		return nil, nil, ErrLocked
	}
	if a == nil || a.SCRAM == nil {
		return nil, b.s.fakeSCRAM(username), nil
	}
	return a, a.SCRAM, nil
}

// fakeSCRAM gives an unknown user keys that look like a real user's and
// stay the same from one attempt to the next, so the salt and iteration
// count sent do not reveal that the user does not exist.
func (s *Service) fakeSCRAM(username string) *store.SCRAMKeys {
	m := hmac.New(sha256.New, s.fakeKey)
	m.Write([]byte(username))
	sum := m.Sum(nil)
	return &store.SCRAMKeys{Salt: sum[:16], Iterations: sasl.SCRAMIterations, StoredKey: sum, ServerKey: sum}
}

func (b *backend) Finish(ctx context.Context, a *store.Account) error {
	_, err := b.accept(a)
	return err
}

func (b *backend) External(ctx context.Context, authzid string) (*store.Account, error) {
	name := b.sess.Sec.Authenticated()
	b.user = name
	if name == "" {
		return nil, ErrInvalid
	}
	a, err := b.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	if a == nil || (authzid != "" && authzid != a.Name && !strings.EqualFold(authzid, a.Address)) {
		return nil, ErrInvalid
	}
	return b.accept(a)
}

// checkExposures verifies, off the login path, passwords that were sent
// over a connection without TLS and refused, and marks the account when
// the password was right: it has crossed the network in the clear.
func (s *Service) checkExposures() {
	defer close(s.checked)
	for c := range s.exposure {
		ctx := context.Background()
		a, err := s.accounts.AccountByID(ctx, c.account)
		if err != nil {
			continue
		}
		if ok, _ := VerifyPassword(a.PasswordHash, c.password); ok {
			s.markExposed(ctx, a)
		}
	}
}

func (s *Service) markExposed(ctx context.Context, a *store.Account) {
	marked, err := s.accounts.MarkCleartextExposed(ctx, a.ID, a.PasswordHash, s.now())
	switch {
	case err != nil:
		s.log.Error("auth: mark password exposed", slog.String("user", a.Name), slog.Any("err", err))
	case marked:
		s.log.Warn("auth: password crossed the network without TLS; consider requiring a change", slog.String("user", a.Name))
	}
}
