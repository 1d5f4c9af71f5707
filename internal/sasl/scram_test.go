package sasl

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/xdg-go/scram"
)

// scramResult is how an exchange between a Server and an xdg-go/scram
// client ended.
type scramResult struct {
	last      []byte // the server's last challenge
	done      bool
	err       error // the server's error
	clientErr error // why the client gave up, if it did
	verified  bool  // the client verified the server's signature
}

// runSCRAM drives srv with conv, an independent client implementation,
// sending the client-first-message as initial response when ir is set.
func runSCRAM(t *testing.T, srv Server, conv *scram.ClientConversation, ir bool) scramResult {
	t.Helper()
	var challenge string
	if !ir {
		ch, done, err := srv.Next(t.Context(), nil)
		if ch == nil || len(ch) != 0 || done || err != nil {
			t.Fatalf("Next(nil) = %q, %v, %v; want an empty challenge", ch, done, err)
		}
	}
	for range 3 {
		resp, err := conv.Step(challenge)
		if err != nil {
			return scramResult{clientErr: err}
		}
		ch, done, err := srv.Next(t.Context(), []byte(resp))
		if done {
			r := scramResult{last: ch, done: true, err: err}
			if err == nil {
				_, r.clientErr = conv.Step(string(ch))
				r.verified = conv.Valid()
			}
			return r
		}
		if err != nil {
			t.Fatalf("Next returned %v without ending the exchange", err)
		}
		challenge = string(ch)
	}
	t.Fatal("exchange did not end")
	return scramResult{}
}

func newSCRAMClient(t *testing.T, user, password, authzid string) *scram.Client {
	t.Helper()
	c, err := scram.SHA256.NewClient(user, password, authzid)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSCRAM(t *testing.T) {
	exporter := &ChannelBinding{Type: TLSExporter, Data: bytes.Repeat([]byte{7}, 32)}
	rightCB := scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: exporter.Data}
	finishErr := errors.New("password must be changed")
	for _, tc := range []struct {
		name        string
		backendUser string // default "user"
		user        string
		password    string // default "pencil"
		authzid     string
		unprepped   bool   // the client skips SASLprep
		flag        string // "n" (default), "y" or "p"
		clientCB    scram.ChannelBinding
		plus        bool
		plusOffered bool
		finishErr   error
		noIR        bool
		wantErr     error  // nil: success
		wantE       string // server-error value on failure
	}{
		{name: "right password", user: "user"},
		{name: "no initial response", user: "user", noIR: true},
		{name: "wrong password", user: "user", password: "pencil2", wantErr: ErrAuthFailed, wantE: "invalid-proof"},
		{name: "unknown user", user: "nobody", wantErr: ErrAuthFailed, wantE: "invalid-proof"},
		{name: "authzid of the user", user: "user", authzid: "user"},
		{name: "authzid of the address", user: "user", authzid: "User@Example.ORG"},
		{name: "other authzid", user: "user", authzid: "admin", wantErr: ErrAuthFailed, wantE: "other-error"},
		{name: "escaped user name", backendUser: "a,b=c", user: "a,b=c"},
		{name: "user name prepared by the server", user: "us\u00ader", unprepped: true},
		{name: "Finish refuses", user: "user", finishErr: finishErr, wantErr: finishErr, wantE: "other-error"},

		{name: "plus", user: "user", flag: "p", clientCB: rightCB, plus: true, plusOffered: true},
		{name: "plus, wrong binding data", user: "user", flag: "p", plus: true, plusOffered: true,
			clientCB: scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: bytes.Repeat([]byte{8}, 32)},
			wantErr:  ErrChannelBinding, wantE: "channel-bindings-dont-match"},
		{name: "plus, unknown user, wrong binding data", user: "nobody", flag: "p", plus: true, plusOffered: true,
			clientCB: scram.ChannelBinding{Type: scram.ChannelBindingTLSExporter, Data: bytes.Repeat([]byte{8}, 32)},
			wantErr:  ErrChannelBinding, wantE: "channel-bindings-dont-match"},
		{name: "plus, wrong binding type", user: "user", flag: "p", plus: true, plusOffered: true,
			clientCB: scram.ChannelBinding{Type: scram.ChannelBindingTLSServerEndpoint, Data: exporter.Data},
			wantErr:  ErrChannelBinding, wantE: "unsupported-channel-binding-type"},
		{name: "plus, client without binding", user: "user", flag: "n", plus: true, plusOffered: true,
			wantErr: ErrChannelBinding, wantE: "channel-bindings-dont-match"},
		{name: "plus, client claims no plus offered", user: "user", flag: "y", plus: true, plusOffered: true,
			wantErr: ErrChannelBinding, wantE: "channel-bindings-dont-match"},
		{name: "plus, wrong password", user: "user", password: "pencil2", flag: "p", clientCB: rightCB, plus: true, plusOffered: true,
			wantErr: ErrAuthFailed, wantE: "invalid-proof"},

		{name: "y, plus not offered", user: "user", flag: "y"},
		{name: "y, plus offered: downgrade", user: "user", flag: "y", plusOffered: true,
			wantErr: ErrChannelBinding, wantE: "server-does-support-channel-binding"},
		{name: "n, plus offered", user: "user", plusOffered: true},
		{name: "binding without plus", user: "user", flag: "p", clientCB: rightCB, plusOffered: true,
			wantErr: ErrChannelBinding, wantE: "channel-binding-not-supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backendUser, password := cmp.Or(tc.backendUser, "user"), cmp.Or(tc.password, "pencil")
			b := newFakeBackend(t, backendUser, "pencil")
			b.finishErr = tc.finishErr
			var cb *ChannelBinding
			if tc.plusOffered {
				cb = exporter
			}
			srv := NewSCRAM(b, cb, tc.plus, tc.plusOffered)

			newClient := scram.SHA256.NewClient
			if tc.unprepped {
				newClient = scram.SHA256.NewClientUnprepped
			}
			c, err := newClient(tc.user, password, tc.authzid)
			if err != nil {
				t.Fatal(err)
			}
			var conv *scram.ClientConversation
			switch cmp.Or(tc.flag, "n") {
			case "n":
				conv = c.NewConversation()
			case "y":
				conv = c.NewConversationAdvertisingChannelBinding()
			case "p":
				conv = c.NewConversationWithChannelBinding(tc.clientCB)
			}

			r := runSCRAM(t, srv, conv, !tc.noIR)
			if tc.wantErr == nil {
				if r.err != nil || r.clientErr != nil || !r.verified {
					t.Fatalf("server err %v, client err %v, server verified %v; want success", r.err, r.clientErr, r.verified)
				}
				if srv.Identity() != b.acct {
					t.Fatalf("Identity() = %v, want %v", srv.Identity(), b.acct)
				}
				if b.gotUser != backendUser {
					t.Errorf("backend asked about %q, want %q", b.gotUser, backendUser)
				}
				return
			}
			if r.clientErr != nil {
				t.Fatalf("client gave up: %v", r.clientErr)
			}
			if !errors.Is(r.err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", r.err, tc.wantErr)
			}
			if want := "e=" + tc.wantE; string(r.last) != want {
				t.Errorf("server-final-message %q, want %q", r.last, want)
			}
			if srv.Identity() != nil {
				t.Errorf("Identity() = %v after failure", srv.Identity())
			}
		})
	}
}

// TestSCRAMUnknownUserLikeWrongPassword checks that nothing the client
// sees tells an unknown user from a wrong password: server-first-message
// shape and the failure.
func TestSCRAMUnknownUserLikeWrongPassword(t *testing.T) {
	type seen struct {
		saltLen int
		iters   string
		e       string
	}
	look := func(user, password string) seen {
		b := newFakeBackend(t, "user", "pencil")
		srv := NewSCRAM(b, nil, false, false)
		ch, _, err := srv.Next(t.Context(), []byte("n,,n="+user+",r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Split(string(ch), ",")
		if len(f) != 3 {
			t.Fatalf("server-first-message %q", ch)
		}
		s := seen{saltLen: len(f[1]), iters: f[2]}
		c := newSCRAMClient(t, user, password, "")
		r := runSCRAM(t, NewSCRAM(b, nil, false, false), c.NewConversation(), true)
		if !errors.Is(r.err, ErrAuthFailed) {
			t.Fatalf("%s: err = %v, want ErrAuthFailed", user, r.err)
		}
		s.e = string(r.last)
		return s
	}
	if wrong, unknown := look("user", "wrong"), look("nobody", "wrong"); wrong != unknown {
		t.Errorf("wrong password shows %+v, unknown user %+v", wrong, unknown)
	}
}

// TestSCRAMNonce checks that the server's nonce extends the client's and
// differs between exchanges.
func TestSCRAMNonce(t *testing.T) {
	b := newFakeBackend(t, "user", "pencil")
	seen := map[string]bool{}
	for range 3 {
		ch, _, err := NewSCRAM(b, nil, false, false).Next(t.Context(), []byte("n,,n=user,r=abc"))
		if err != nil {
			t.Fatal(err)
		}
		nonce, _, _ := strings.Cut(string(ch), ",")
		if !strings.HasPrefix(nonce, "r=abc") || len(nonce) < len("r=abc")+16 {
			t.Fatalf("server nonce %q does not extend the client's with 16+ characters", nonce)
		}
		if seen[nonce] {
			t.Fatalf("server nonce %q repeated", nonce)
		}
		seen[nonce] = true
	}
}

// The RFC 7677 section 3 example exchange.
const (
	rfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
	rfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
	rfcNonce       = "rOprNGfwEbeRWgbNEkqO" + rfcServerNonce
	rfcSalt        = "W22ZaJ0SNY7soEsUEjb6gQ=="
	rfcServerFirst = "r=" + rfcNonce + ",s=" + rfcSalt + ",i=4096"
	rfcProof       = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
	rfcClientFinal = "c=biws,r=" + rfcNonce + ",p=" + rfcProof
	rfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
)

// newRFCBackend returns a backend whose user has the keys of the RFC 7677
// example: user "user", password "pencil".
func newRFCBackend(t testing.TB) *fakeBackend {
	t.Helper()
	b := newFakeBackend(t, "user", "pencil")
	salt, _ := base64.StdEncoding.DecodeString(rfcSalt)
	keys, err := DeriveSCRAMKeys("pencil", salt, 4096)
	if err != nil {
		t.Fatal(err)
	}
	b.keys = keys
	return b
}

// newRFCServer returns a SCRAM-SHA-256 server that replays the server's
// side of the RFC 7677 example.
func newRFCServer(b *fakeBackend, cb *ChannelBinding, plus, plusOffered bool) *scramServer {
	srv := NewSCRAM(b, cb, plus, plusOffered).(*scramServer)
	srv.newNonce = func() string { return rfcServerNonce }
	return srv
}

// TestSCRAMRFC7677 replays the example of RFC 7677 section 3, checking
// DeriveSCRAMKeys, the AuthMessage and both signatures against published
// values.
func TestSCRAMRFC7677(t *testing.T) {
	b := newRFCBackend(t)
	srv := newRFCServer(b, nil, false, false)
	ch, done, err := srv.Next(t.Context(), []byte(rfcClientFirst))
	if string(ch) != rfcServerFirst || done || err != nil {
		t.Fatalf("server-first-message = %q, %v, %v; want %q", ch, done, err, rfcServerFirst)
	}
	ch, done, err = srv.Next(t.Context(), []byte(rfcClientFinal))
	if string(ch) != rfcServerFinal {
		t.Errorf("server-final-message = %q, want %q", ch, rfcServerFinal)
	}
	checkOutcome(t, srv, b, done, err, nil)
}

func TestSCRAMMalformedClientFirst(t *testing.T) {
	for _, tc := range []struct {
		name, msg, wantE string
	}{
		{"empty", "", "invalid-encoding"},
		{"no gs2-header", "n=user,r=abc", "invalid-encoding"},
		{"gs2-header only", "n,,", "invalid-encoding"},
		{"unknown cbind flag", "x,,n=user,r=abc", "invalid-encoding"},
		{"empty cb-name", "p=,,n=user,r=abc", "invalid-encoding"},
		{"bad cb-name", "p=tls exporter,,n=user,r=abc", "invalid-encoding"},
		{"gs2 nonstd flag", "F,n,,n=user,r=abc", "invalid-encoding"},
		{"not an authzid", "n,b=user,n=user,r=abc", "invalid-encoding"},
		{"empty authzid", "n,a=,n=user,r=abc", "invalid-encoding"},
		{"bad authzid escape", "n,a=us=er,n=user,r=abc", "invalid-encoding"},
		{"authzid fails SASLprep", "n,a=us\u0007er,n=user,r=abc", "invalid-encoding"},
		{"reserved-mext", "n,,m=ext,n=user,r=abc", "extensions-not-supported"},
		{"m extension after nonce", "n,,n=user,r=abc,m=ext", "extensions-not-supported"},
		{"no nonce", "n,,n=user", "invalid-encoding"},
		{"nonce first", "n,,r=abc,n=user", "invalid-encoding"},
		{"empty nonce", "n,,n=user,r=", "invalid-encoding"},
		{"nonce with space", "n,,n=user,r=a c", "invalid-encoding"},
		{"bad extension", "n,,n=user,r=abc,1=x", "invalid-encoding"},
		{"empty extension value", "n,,n=user,r=abc,x=", "invalid-encoding"},
		{"bad user name escape", "n,,n=us=2Xer,r=abc", "invalid-username-encoding"},
		{"lower-case escape", "n,,n=us=2cer,r=abc", "invalid-username-encoding"},
		{"trailing =", "n,,n=user=,r=abc", "invalid-username-encoding"},
		{"empty user name", "n,,n=,r=abc", "invalid-username-encoding"},
		{"user name fails SASLprep", "n,,n=us\u0007er,r=abc", "invalid-username-encoding"},
		{"user name empty after SASLprep", "n,,n=\u00ad,r=abc", "invalid-username-encoding"},
		{"NUL", "n,,n=us\x00er,r=abc", "invalid-encoding"},
		{"invalid UTF-8", "n,,n=us\xffer,r=abc", "invalid-encoding"},
		{"over MaxResponse", "n,,n=user,r=" + strings.Repeat("a", MaxResponse), "invalid-encoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend(t, "user", "pencil")
			srv := NewSCRAM(b, nil, false, false)
			ch, done, err := srv.Next(t.Context(), []byte(tc.msg))
			checkOutcome(t, srv, b, done, err, ErrMalformed)
			if want := "e=" + tc.wantE; string(ch) != want {
				t.Errorf("server-final-message %q, want %q", ch, want)
			}
			if b.gotUser != "" {
				t.Errorf("backend asked about %q for a malformed message", b.gotUser)
			}
		})
	}
}

// TestSCRAMClientFinal feeds client-final-messages, malformed or wrong, to
// the RFC 7677 exchange.
func TestSCRAMClientFinal(t *testing.T) {
	const rest = ",r=" + rfcNonce + ",p=" + rfcProof
	for _, tc := range []struct {
		name, msg string
		wantErr   error
		wantE     string
	}{
		{"empty", "", ErrMalformed, "invalid-encoding"},
		{"no proof", "c=biws,r=" + rfcNonce, ErrMalformed, "invalid-encoding"},
		{"proof not base64", "c=biws,r=" + rfcNonce + ",p=!!!!", ErrMalformed, "invalid-encoding"},
		{"proof without padding", "c=biws" + strings.TrimSuffix(rest, "="), ErrMalformed, "invalid-encoding"},
		{"attribute after proof", "c=biws" + rest + ",x=1", ErrMalformed, "invalid-encoding"},
		{"nonce first", "r=" + rfcNonce + ",c=biws,p=" + rfcProof, ErrMalformed, "invalid-encoding"},
		{"no nonce", "c=biws,p=" + rfcProof, ErrMalformed, "invalid-encoding"},
		{"channel binding not base64", "c=bi*s" + rest, ErrMalformed, "invalid-encoding"},
		{"m extension", "c=biws,r=" + rfcNonce + ",m=x,p=" + rfcProof, ErrMalformed, "extensions-not-supported"},
		{"NUL", "c=biws\x00" + rest, ErrMalformed, "invalid-encoding"},
		{"over MaxResponse", "c=biws,r=" + rfcNonce + ",x=" + strings.Repeat("a", MaxResponse) + ",p=" + rfcProof, ErrMalformed, "invalid-encoding"},
		{"other nonce", "c=biws,r=" + rfcNonce + "x,p=" + rfcProof, ErrAuthFailed, "other-error"},
		{"client nonce only", "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=" + rfcProof, ErrAuthFailed, "other-error"},
		{"other gs2-header in c=", "c=eSws" + rest, ErrChannelBinding, "channel-bindings-dont-match"},
		{"short proof", "c=biws,r=" + rfcNonce + ",p=AAAA", ErrAuthFailed, "invalid-proof"},
		{"zero proof", "c=biws,r=" + rfcNonce + ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", ErrAuthFailed, "invalid-proof"},
		// An extension is accepted, but it is part of AuthMessage, which
		// the RFC's proof did not cover.
		{"extension", "c=biws,r=" + rfcNonce + ",x=1,p=" + rfcProof, ErrAuthFailed, "invalid-proof"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRFCBackend(t)
			srv := newRFCServer(b, nil, false, false)
			if _, _, err := srv.Next(t.Context(), []byte(rfcClientFirst)); err != nil {
				t.Fatal(err)
			}
			ch, done, err := srv.Next(t.Context(), []byte(tc.msg))
			checkOutcome(t, srv, b, done, err, tc.wantErr)
			if want := "e=" + tc.wantE; string(ch) != want {
				t.Errorf("server-final-message %q, want %q", ch, want)
			}
		})
	}
}

// TestSCRAMPlusWithoutBinding checks the engine error for -PLUS on a
// connection that has no channel binding.
func TestSCRAMPlusWithoutBinding(t *testing.T) {
	b := newFakeBackend(t, "user", "pencil")
	_, done, err := NewSCRAM(b, nil, true, false).Next(t.Context(), []byte("p=tls-exporter,,n=user,r=abc"))
	if !done || !errors.Is(err, ErrUnsupportedMech) {
		t.Fatalf("done %v, err %v; want ErrUnsupportedMech", done, err)
	}
}

// BenchmarkSCRAM measures a full SCRAM-SHA-256 exchange, both sides; the
// client caches its salted password, so PBKDF2 runs once, as a server
// never runs it.
func BenchmarkSCRAM(b *testing.B) {
	be := newFakeBackend(b, "user", "pencil")
	c, err := scram.SHA256.NewClient("user", "pencil", "")
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		conv := c.NewConversation()
		srv := NewSCRAM(be, nil, false, false)
		var challenge []byte
		for range 2 {
			resp, err := conv.Step(string(challenge))
			if err != nil {
				b.Fatal(err)
			}
			if challenge, _, err = srv.Next(ctx, []byte(resp)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := conv.Step(string(challenge)); err != nil || !conv.Valid() {
			b.Fatalf("client refused the server: %v", err)
		}
	}
}
