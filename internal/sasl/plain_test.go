package sasl

import (
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"
)

func TestPlain(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		authzid, user, password string
		noInitialResponse       bool
		wantErr                 error
	}{
		{name: "right password", user: "user", password: "pencil"},
		{name: "no initial response", user: "user", password: "pencil", noInitialResponse: true},
		{name: "authzid of the user", authzid: "user", user: "user", password: "pencil"},
		{name: "other authzid", authzid: "admin", user: "user", password: "pencil", wantErr: ErrAuthFailed},
		{name: "wrong password", user: "user", password: "pencil2", wantErr: ErrAuthFailed},
		{name: "unknown user", user: "nobody", password: "pencil", wantErr: ErrAuthFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend(t, "user", "pencil")
			srv := NewPlain(b)
			mech, ir, err := gosasl.NewPlainClient(tc.authzid, tc.user, tc.password).Start()
			if err != nil || mech != Plain {
				t.Fatalf("client Start = %q, %v", mech, err)
			}
			if tc.noInitialResponse {
				ch, done, err := srv.Next(t.Context(), nil)
				if ch == nil || len(ch) != 0 || done || err != nil {
					t.Fatalf("Next(nil) = %q, %v, %v; want an empty challenge", ch, done, err)
				}
			}
			ch, done, err := srv.Next(t.Context(), ir)
			if len(ch) != 0 {
				t.Errorf("final challenge %q, want none", ch)
			}
			checkOutcome(t, srv, b, done, err, tc.wantErr)
		})
	}
}

func TestPlainMalformed(t *testing.T) {
	long := strings.Repeat("a", maxField+1)
	for _, tc := range []struct {
		name, msg string
	}{
		{"empty", ""},
		{"no NUL", "userpencil"},
		{"one NUL", "user\x00pencil"},
		{"three NULs", "\x00user\x00pen\x00cil"},
		{"empty authcid", "\x00\x00pencil"},
		{"empty passwd", "\x00user\x00"},
		{"invalid UTF-8 authcid", "\x00us\xffer\x00pencil"},
		{"invalid UTF-8 passwd", "\x00user\x00pen\xc3"},
		{"invalid UTF-8 authzid", "\xfe\x00user\x00pencil"},
		{"over-long authcid", "\x00" + long + "\x00pencil"},
		{"over-long passwd", "\x00user\x00" + long},
		{"over-long authzid", long + "\x00user\x00pencil"},
		{"over MaxResponse", strings.Repeat("a", MaxResponse) + "\x00user\x00pencil"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend(t, "user", "pencil")
			srv := NewPlain(b)
			_, done, err := srv.Next(t.Context(), []byte(tc.msg))
			checkOutcome(t, srv, b, done, err, ErrMalformed)
			if b.gotUser != "" {
				t.Errorf("backend asked about %q for a malformed message", b.gotUser)
			}
		})
	}
}
