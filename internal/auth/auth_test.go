package auth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/sasl"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/store/sqlite"
	"github.com/latchmail/latch/internal/tlsgate"
)

const (
	alice   = "alice@example.org"
	alicePW = "correct horse battery"
)

type fixture struct {
	st  *sqlite.Store
	svc *Service
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	opts.FailureDelay = time.Millisecond
	if opts.CacheSize == 0 {
		opts.CacheSize = 100
		opts.CacheTTL = time.Hour
	}
	if opts.LockFor == 0 {
		opts.LockFor = time.Hour
	}
	svc, err := New(st, opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	f := &fixture{st: st, svc: svc}
	f.addAccount(t, alice, alicePW)
	return f
}

func (f *fixture) addAccount(t testing.TB, addr, pw string) *store.Account {
	t.Helper()
	h, err := HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := sasl.NewSCRAMKeys(pw)
	if err != nil {
		t.Fatal(err)
	}
	a := &store.Account{Name: addr, Address: addr, PasswordHash: h, SCRAM: keys, Created: time.Now()}
	if err := f.st.CreateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return a
}

func (f *fixture) update(t *testing.T, name string, change func(*store.Account)) {
	t.Helper()
	ctx := context.Background()
	a, err := f.st.Account(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	change(a)
	if err := f.st.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
}

func session(tls bool, remote string) *Session {
	sec := &tlsgate.Security{Remote: netip.MustParseAddrPort(remote), TLS: tls}
	if tls {
		sec.Version, sec.Cipher = "TLS1.3", "TLS_AES_128_GCM_SHA256"
	}
	return &Session{Service: "test", Sec: sec}
}

func TestLoginOverTLS(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	tests := []struct {
		name, user, pw string
		want           error
	}{
		{"right", alice, alicePW, nil},
		{"wrong password", alice, "wrong password", ErrInvalid},
		{"unknown user", "nobody@example.org", alicePW, ErrInvalid},
		{"empty password", alice, "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := f.svc.Login(ctx, session(true, "192.0.2.1:1000"), tt.user, tt.pw)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Login = %v, want %v", err, tt.want)
			}
			if tt.want == nil && a.Name != alice {
				t.Fatalf("logged in as %q", a.Name)
			}
			if tt.want != nil && !errors.Is(err, sasl.ErrAuthFailed) {
				t.Fatalf("%v does not match sasl.ErrAuthFailed", err)
			}
		})
	}
}

// waitExposed polls until the background checker has marked the account,
// or fails after a generous bound (this is a wait, not a timing claim).
func waitExposed(t *testing.T, st store.Store, name string) *store.Account {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		a, err := st.Account(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if !a.CleartextExposed.IsZero() {
			return a
		}
	}
	t.Fatalf("%s never marked as exposed", name)
	return nil
}

// RFC 8314 4.1: without TLS, right and wrong credentials get the same
// answer, and the one that was right is recorded as exposed afterwards.
func TestCleartextRefusedAlike(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	bob := "bob@example.org"
	f.addAccount(t, bob, "bob's password")
	plain := session(false, "192.0.2.2:1000")

	before := f.svc.verifications.Load()
	_, errWrong := f.svc.Login(ctx, plain, alice, "wrong password")
	_, errUnknown := f.svc.Login(ctx, plain, "nobody@example.org", "whatever")
	_, errRight := f.svc.Login(ctx, plain, bob, "bob's password")
	for _, err := range []error{errWrong, errUnknown, errRight} {
		if !errors.Is(err, ErrPrivacyRequired) || errors.Is(err, sasl.ErrAuthFailed) {
			t.Fatalf("cleartext login answered %v, want exactly ErrPrivacyRequired", err)
		}
	}
	if n := f.svc.verifications.Load() - before; n != 0 {
		t.Fatalf("%d password verifications on the refusal path, want 0", n)
	}
	// The checker works in order: once bob (sent last) is marked, alice's
	// wrong password has been checked too and must not have marked her.
	waitExposed(t, f.st, bob)
	if a, _ := f.st.Account(ctx, alice); !a.CleartextExposed.IsZero() {
		t.Fatal("a wrong password marked the account as exposed")
	}
	if m := f.svc.Mechanisms(plain); len(m) != 0 {
		t.Fatalf("mechanisms offered without TLS: %v", m)
	}
}

func TestLegacyAllowance(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	plain := session(false, "192.0.2.3:1000")

	f.update(t, alice, func(a *store.Account) { a.LegacyUntil = time.Now().Add(-time.Minute) })
	if _, err := f.svc.Login(ctx, plain, alice, alicePW); !errors.Is(err, ErrPrivacyRequired) {
		t.Fatalf("expired allowance: %v, want ErrPrivacyRequired", err)
	}
	f.update(t, alice, func(a *store.Account) { a.LegacyUntil = time.Now().Add(time.Hour) })
	if _, err := f.svc.Login(ctx, plain, alice, "wrong password"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("allowance, wrong password: %v, want ErrInvalid", err)
	}
	if _, err := f.svc.Login(ctx, plain, alice, alicePW); err != nil {
		t.Fatalf("allowance, right password: %v", err)
	}
	waitExposed(t, f.st, alice)

	// Logged in over TLS first, a password is in the credential cache;
	// sent without TLS it is exposed all the same.
	carol := "carol@example.org"
	f.addAccount(t, carol, "carol's password")
	f.update(t, carol, func(a *store.Account) { a.LegacyUntil = time.Now().Add(time.Hour) })
	if _, err := f.svc.Login(ctx, session(true, "192.0.2.3:1001"), carol, "carol's password"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Login(ctx, plain, carol, "carol's password"); err != nil {
		t.Fatalf("allowance, cached password: %v", err)
	}
	if a, _ := f.st.Account(ctx, carol); a.CleartextExposed.IsZero() {
		t.Fatal("a cached password used without TLS was not marked as exposed")
	}
}

func TestMustChangePassword(t *testing.T) {
	f := newFixture(t, Options{})
	f.update(t, alice, func(a *store.Account) { a.MustChangePassword = true })
	_, err := f.svc.Login(context.Background(), session(true, "192.0.2.4:1000"), alice, alicePW)
	if !errors.Is(err, ErrPasswordChange) {
		t.Fatalf("Login = %v, want ErrPasswordChange", err)
	}
}

func TestCredentialCache(t *testing.T) {
	f := newFixture(t, Options{})
	ctx := context.Background()
	sess := session(true, "192.0.2.5:1000")
	login := func(pw string) error { _, err := f.svc.Login(ctx, sess, alice, pw); return err }

	if err := login(alicePW); err != nil {
		t.Fatal(err)
	}
	n := f.svc.verifications.Load()
	for range 3 {
		if err := login(alicePW); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.svc.verifications.Load() - n; got != 0 {
		t.Fatalf("repeated logins verified the password %d times, want 0 (cache)", got)
	}
	// A password change, even by another process, ends the cached entry.
	h, _ := HashPassword("a new password")
	f.update(t, alice, func(a *store.Account) { a.PasswordHash = h })
	if err := login(alicePW); !errors.Is(err, ErrInvalid) {
		t.Fatalf("old password after change: %v, want ErrInvalid", err)
	}
	if err := login("a new password"); err != nil {
		t.Fatalf("new password: %v", err)
	}
}

func TestPenaltiesLockAddressAndAccount(t *testing.T) {
	f := newFixture(t, Options{MaxFailuresIP: 3, MaxFailuresUser: 5})
	ctx := context.Background()
	attacker := session(true, "198.51.100.7:1000")
	for range 3 {
		if _, err := f.svc.Login(ctx, attacker, alice, "guess"); !errors.Is(err, ErrInvalid) {
			t.Fatalf("guess: %v", err)
		}
	}
	if _, err := f.svc.Login(ctx, attacker, alice, alicePW); !errors.Is(err, ErrLocked) {
		t.Fatalf("locked address, right password: %v, want ErrLocked", err)
	}
	// Another subscriber is not affected by that address's lock.
	if _, err := f.svc.Login(ctx, session(true, "203.0.113.9:1000"), alice, alicePW); err != nil {
		t.Fatalf("other address: %v", err)
	}
	// IPv6 addresses in one /64 count as one client.
	for i := range 3 {
		f.svc.Login(ctx, session(true, fmt.Sprintf("[2001:db8::%x]:1000", i+1)), "nobody@example.org", "guess")
	}
	s := session(true, "[2001:db8::ff]:1000")
	if _, err := f.svc.Login(ctx, s, alice, alicePW); !errors.Is(err, ErrLocked) {
		t.Fatalf("same /64: %v, want ErrLocked", err)
	}
}

// Failures from one address are verified one at a time, so a flood from
// it cannot take every verification slot: a login from elsewhere that
// starts during the flood is answered before the flood is.
func TestFloodDoesNotStarveOthers(t *testing.T) {
	f := newFixture(t, Options{MaxFailuresIP: 1000, MaxFailuresUser: 1000})
	ctx := context.Background()
	flooder := session(true, "198.51.100.8:1000")
	const flood = 24
	var wg sync.WaitGroup
	floodDone := make(chan struct{})
	started := make(chan struct{}, flood)
	for range flood {
		wg.Go(func() {
			started <- struct{}{}
			f.svc.Login(ctx, flooder, "nobody@example.org", "guess")
		})
	}
	go func() { wg.Wait(); close(floodDone) }()
	for range flood {
		<-started
	}
	if _, err := f.svc.Login(ctx, session(true, "203.0.113.10:1000"), alice, alicePW); err != nil {
		t.Fatal(err)
	}
	select {
	case <-floodDone:
		t.Fatal("the flood of bad logins finished before one good login from elsewhere")
	default:
	}
	<-floodDone
}

func TestMechanisms(t *testing.T) {
	f := newFixture(t, Options{})
	sess := session(true, "192.0.2.6:1000")
	if got := f.svc.Mechanisms(sess); len(got) != 3 || got[0] != sasl.ScramSHA256 {
		t.Fatalf("TLS, no binding, no cert: %v", got)
	}
	sess.Binding = &sasl.ChannelBinding{Type: "tls-exporter", Data: make([]byte, 32)}
	sess.Sec.ClientCert = &tlsgate.ClientCert{SPKISHA256: "ab", Account: alice, MappedBy: "spki"}
	got := f.svc.Mechanisms(sess)
	if len(got) != 5 || got[0] != sasl.External || got[1] != sasl.ScramSHA256Plus {
		t.Fatalf("TLS, binding, mapped cert: %v", got)
	}
}

func TestSASLExchangesRecordOutcome(t *testing.T) {
	f := newFixture(t, Options{MaxFailuresIP: 2, MaxFailuresUser: 100})
	ctx := context.Background()
	sess := session(true, "192.0.2.7:1000")

	// EXTERNAL without a mapped certificate fails, and counts.
	srv, err := f.svc.Start(sess, "external")
	if err != nil {
		t.Fatal(err)
	}
	if _, done, err := srv.Next(ctx, []byte{}); !done || !errors.Is(err, ErrInvalid) {
		t.Fatalf("EXTERNAL without certificate: done=%v err=%v", done, err)
	}
	// PLAIN with a wrong password: the second failure locks the address.
	srv, _ = f.svc.Start(sess, "PLAIN")
	if _, _, err := srv.Next(ctx, []byte("\x00"+alice+"\x00wrong")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("PLAIN wrong: %v", err)
	}
	srv, _ = f.svc.Start(sess, "PLAIN")
	if _, _, err := srv.Next(ctx, []byte("\x00"+alice+"\x00"+alicePW)); !errors.Is(err, ErrLocked) {
		t.Fatalf("PLAIN after lock: %v, want ErrLocked", err)
	}
	// EXTERNAL with a mapped certificate, from elsewhere, succeeds.
	other := session(true, "192.0.2.8:1000")
	other.Sec.ClientCert = &tlsgate.ClientCert{SPKISHA256: "ab", Account: alice, MappedBy: "spki"}
	srv, _ = f.svc.Start(other, sasl.External)
	if _, done, err := srv.Next(ctx, []byte{}); !done || err != nil || srv.Identity().Name != alice {
		t.Fatalf("EXTERNAL with certificate: done=%v err=%v", done, err)
	}
	if _, err := f.svc.Start(other, "SCRAM-SHA-256-PLUS"); !errors.Is(err, sasl.ErrUnsupportedMech) {
		t.Fatalf("-PLUS without binding: %v", err)
	}
}
