package sasl

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/latchmail/latch/internal/store"
)

// testSalt and testIterations make the fake user's SCRAM keys; the server
// never runs PBKDF2, so the minimum count keeps tests fast.
var testSalt = []byte("latch test salt!")

const testIterations = 4096

var errDenied = fmt.Errorf("fake backend: denied: %w", ErrAuthFailed)

// fakeBackend knows one user. Its SCRAMKeys gives unknown users stable
// fake keys, as the Backend contract requires.
type fakeBackend struct {
	acct      *store.Account
	password  string
	keys      *store.SCRAMKeys
	cert      bool  // External: the client certificate maps to acct
	finishErr error // returned by Finish
	gotUser   string
}

func newFakeBackend(t testing.TB, name, password string) *fakeBackend {
	t.Helper()
	keys, err := DeriveSCRAMKeys(password, testSalt, testIterations)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeBackend{
		acct:     &store.Account{ID: 1, Name: name, Address: "user@example.org"},
		password: password,
		keys:     keys,
	}
}

func (b *fakeBackend) CheckPassword(_ context.Context, authzid, username, password string) (*store.Account, error) {
	b.gotUser = username
	if username != b.acct.Name || password != b.password || (authzid != "" && authzid != b.acct.Name) {
		return nil, errDenied
	}
	return b.acct, nil
}

func (b *fakeBackend) SCRAMKeys(_ context.Context, username string) (*store.Account, *store.SCRAMKeys, error) {
	b.gotUser = username
	if username == b.acct.Name {
		return b.acct, b.keys, nil
	}
	sum := sha256.Sum256([]byte(username))
	return nil, &store.SCRAMKeys{Salt: sum[:16], Iterations: testIterations, StoredKey: sum[:], ServerKey: sum[:]}, nil
}

func (b *fakeBackend) Finish(context.Context, *store.Account) error { return b.finishErr }

func (b *fakeBackend) External(_ context.Context, authzid string) (*store.Account, error) {
	if !b.cert || (authzid != "" && authzid != b.acct.Name) {
		return nil, errDenied
	}
	return b.acct, nil
}

// checkOutcome checks how an exchange ended: with wantErr (nil for
// success) and, on success, the fake user as identity.
func checkOutcome(t *testing.T, srv Server, b *fakeBackend, done bool, err, wantErr error) {
	t.Helper()
	if !done {
		t.Fatalf("exchange not done (err %v)", err)
	}
	switch {
	case wantErr == nil && err != nil:
		t.Fatalf("err = %v, want success", err)
	case wantErr != nil && !errors.Is(err, wantErr):
		t.Fatalf("err = %v, want %v", err, wantErr)
	case wantErr == nil && srv.Identity() != b.acct:
		t.Fatalf("Identity() = %v, want %v", srv.Identity(), b.acct)
	case wantErr != nil && srv.Identity() != nil:
		t.Fatalf("Identity() = %v after failure, want nil", srv.Identity())
	}
}

// TestNextAfterEnd checks that every mechanism refuses to go on once the
// exchange is over, without blaming the client.
func TestNextAfterEnd(t *testing.T) {
	b := newFakeBackend(t, "user", "pencil")
	b.cert = true
	for _, tc := range []struct {
		srv  Server
		resp []string
	}{
		{NewPlain(b), []string{"\x00user\x00pencil"}},
		{NewLogin(b), []string{"user", "pencil"}},
		{NewExternal(b), []string{""}},
		{NewSCRAM(b, nil, false, false), []string{"n,,n=user,r=abc", "x"}},
	} {
		var done bool
		for _, r := range tc.resp {
			_, done, _ = tc.srv.Next(t.Context(), []byte(r))
		}
		if !done {
			t.Fatalf("%T: not done after %q", tc.srv, tc.resp)
		}
		_, done, err := tc.srv.Next(t.Context(), []byte("more"))
		if !done || err == nil || errors.Is(err, ErrMalformed) || errors.Is(err, ErrAuthFailed) {
			t.Errorf("%T: Next after the end = done %v, err %v; want done and an engine error", tc.srv, done, err)
		}
	}
}
