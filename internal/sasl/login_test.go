package sasl

import (
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"
)

// TestLoginClient runs LOGIN against go-sasl's client, which sends the
// user name as initial response.
func TestLoginClient(t *testing.T) {
	for _, tc := range []struct {
		name, user, password string
		wantErr              error
	}{
		{"right password", "user", "pencil", nil},
		{"wrong password", "user", "pencil2", ErrAuthFailed},
		{"unknown user", "nobody", "pencil", ErrAuthFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend(t, "user", "pencil")
			srv := NewLogin(b)
			c := gosasl.NewLoginClient(tc.user, tc.password)
			_, resp, err := c.Start()
			if err != nil {
				t.Fatal(err)
			}
			var ch []byte
			var done bool
			for range 3 {
				if ch, done, err = srv.Next(t.Context(), resp); done {
					break
				}
				if resp, err = c.Next(ch); err != nil {
					t.Fatalf("client refused challenge %q: %v", ch, err)
				}
			}
			checkOutcome(t, srv, b, done, err, tc.wantErr)
		})
	}
}

// TestLoginPrompts checks the prompts without an initial response, as
// most LOGIN clients run it.
func TestLoginPrompts(t *testing.T) {
	for _, ir := range [][]byte{nil, {}} {
		b := newFakeBackend(t, "user", "pencil")
		srv := NewLogin(b)
		for _, s := range []struct {
			resp []byte
			want string
		}{
			{ir, "Username:"},
			{[]byte("user"), "Password:"},
		} {
			ch, done, err := srv.Next(t.Context(), s.resp)
			if string(ch) != s.want || done || err != nil {
				t.Fatalf("initial response %q: Next(%q) = %q, %v, %v; want %q", ir, s.resp, ch, done, err, s.want)
			}
		}
		_, done, err := srv.Next(t.Context(), []byte("pencil"))
		checkOutcome(t, srv, b, done, err, nil)
	}
}

func TestLoginMalformed(t *testing.T) {
	long := strings.Repeat("a", maxField+1)
	for _, tc := range []struct {
		name           string
		user, password string // password "" with a bad user: never reached
	}{
		{"NUL in user name", "us\x00er", ""},
		{"invalid UTF-8 user name", "us\xffer", ""},
		{"over-long user name", long, ""},
		{"empty password", "user", ""},
		{"NUL in password", "user", "pen\x00cil"},
		{"invalid UTF-8 password", "user", "pen\xc3"},
		{"over-long password", "user", long},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend(t, "user", "pencil")
			srv := NewLogin(b)
			ch, done, err := srv.Next(t.Context(), []byte(tc.user))
			if !done {
				if string(ch) != "Password:" {
					t.Fatalf("Next(%q) = %q, %v; want Password:", tc.user, ch, err)
				}
				_, done, err = srv.Next(t.Context(), []byte(tc.password))
			}
			checkOutcome(t, srv, b, done, err, ErrMalformed)
		})
	}
	t.Run("empty user name after prompt", func(t *testing.T) {
		b := newFakeBackend(t, "user", "pencil")
		srv := NewLogin(b)
		if _, _, err := srv.Next(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
		_, done, err := srv.Next(t.Context(), []byte{})
		checkOutcome(t, srv, b, done, err, ErrMalformed)
	})
}
