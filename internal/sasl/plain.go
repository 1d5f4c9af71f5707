package sasl

import (
	"bytes"
	"context"
	"fmt"

	"github.com/latchmail/latch/internal/store"
)

type plainServer struct {
	b     Backend
	asked bool // the empty challenge was sent
	over  bool
	acct  *store.Account
}

// NewPlain returns a Server for PLAIN (RFC 4616). The authorization
// identity, user name and password go to Backend.CheckPassword as the
// client sent them: preparing them (RFC 4616 section 2 recommends
// SASLprep) is the Backend's business, since it must match how the stored
// password hash was made.
func NewPlain(b Backend) Server { return &plainServer{b: b} }

func (s *plainServer) Identity() *store.Account { return s.acct }

func (s *plainServer) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if s.over {
		return nil, true, errOver
	}
	if resp == nil && !s.asked {
		// RFC 4422 section 5 item 2a: a client-first mechanism without an
		// initial response starts with an empty challenge.
		s.asked = true
		return []byte{}, false, nil
	}
	s.over = true
	authzid, user, pass, err := parsePlain(resp)
	if err != nil {
		return nil, true, failf(Plain, ErrMalformed, "%v", err)
	}
	a, err := s.b.CheckPassword(ctx, authzid, user, pass)
	if err != nil {
		return nil, true, fmt.Errorf("sasl: %s: %w", Plain, err)
	}
	if a == nil {
		return nil, true, failf(Plain, ErrAuthFailed, "backend accepted %q without an account", user)
	}
	s.acct = a
	return nil, true, nil
}

// parsePlain splits a PLAIN message (RFC 4616 section 2):
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
func parsePlain(msg []byte) (authzid, authcid, passwd string, err error) {
	if len(msg) > MaxResponse {
		return "", "", "", fmt.Errorf("message is longer than %d bytes", MaxResponse)
	}
	f := bytes.Split(msg, []byte{0})
	if len(f) != 3 {
		return "", "", "", fmt.Errorf("message has %d NUL separators, want 2", len(f)-1)
	}
	// authzid is optional; authcid and passwd are 1*SAFE.
	if len(f[0]) > 0 {
		if err := checkField("authzid", f[0]); err != nil {
			return "", "", "", err
		}
	}
	if err := checkField("authcid", f[1]); err != nil {
		return "", "", "", err
	}
	if err := checkField("passwd", f[2]); err != nil {
		return "", "", "", err
	}
	return string(f[0]), string(f[1]), string(f[2]), nil
}
