package sasl

import (
	"strings"
	"testing"

	gosasl "github.com/emersion/go-sasl"
)

func TestExternal(t *testing.T) {
	for _, tc := range []struct {
		name              string
		cert              bool
		authzid           string
		noInitialResponse bool
		wantErr           error
	}{
		{name: "certificate, no authzid", cert: true},
		{name: "certificate, authzid of the user", cert: true, authzid: "user"},
		{name: "no initial response", cert: true, noInitialResponse: true},
		{name: "certificate, other authzid", cert: true, authzid: "admin", wantErr: ErrAuthFailed},
		{name: "no certificate", wantErr: ErrAuthFailed},
		{name: "NUL in authzid", cert: true, authzid: "us\x00er", wantErr: ErrMalformed},
		{name: "invalid UTF-8 authzid", cert: true, authzid: "us\xffer", wantErr: ErrMalformed},
		{name: "over-long authzid", cert: true, authzid: strings.Repeat("a", maxField+1), wantErr: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBackend(t, "user", "pencil")
			b.cert = tc.cert
			srv := NewExternal(b)
			_, ir, err := gosasl.NewExternalClient(tc.authzid).Start()
			if err != nil {
				t.Fatal(err)
			}
			if tc.noInitialResponse {
				ch, done, err := srv.Next(t.Context(), nil)
				if ch == nil || len(ch) != 0 || done || err != nil {
					t.Fatalf("Next(nil) = %q, %v, %v; want an empty challenge", ch, done, err)
				}
			}
			_, done, err := srv.Next(t.Context(), ir)
			checkOutcome(t, srv, b, done, err, tc.wantErr)
		})
	}
}
