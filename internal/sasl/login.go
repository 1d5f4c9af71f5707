package sasl

import (
	"context"
	"fmt"

	"github.com/latchmail/latch/internal/store"
)

// The LOGIN prompts. The draft names them "User Name" and "Password" but
// notes that deployed clients require these, and some compare them byte
// for byte.
const (
	loginUsername = "Username:"
	loginPassword = "Password:"
)

// loginStep is where a LOGIN exchange stands.
type loginStep int

const (
	loginStart    loginStep = iota
	loginWantUser           // "Username:" sent
	loginWantPass           // "Password:" sent
	loginOver
)

type loginServer struct {
	b    Backend
	step loginStep
	user string
	acct *store.Account
}

// NewLogin returns a Server for LOGIN (draft-murchison-sasl-login). It
// prompts "Username:" then "Password:"; a non-empty initial response is
// taken as the user name and skips the first prompt, as Dovecot and
// Postfix do and as clients that send one expect. The user name and
// password go to Backend.CheckPassword as sent, with no authorization
// identity.
func NewLogin(b Backend) Server { return &loginServer{b: b} }

func (s *loginServer) Identity() *store.Account { return s.acct }

func (s *loginServer) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	switch s.step {
	case loginStart:
		if len(resp) == 0 {
			s.step = loginWantUser
			return []byte(loginUsername), false, nil
		}
		return s.username(resp)
	case loginWantUser:
		return s.username(resp)
	case loginWantPass:
		s.step = loginOver
		if err := checkField("password", resp); err != nil {
			return nil, true, failf(Login, ErrMalformed, "%v", err)
		}
		a, err := s.b.CheckPassword(ctx, "", s.user, string(resp))
		if err != nil {
			return nil, true, fmt.Errorf("sasl: %s: %w", Login, err)
		}
		if a == nil {
			return nil, true, failf(Login, ErrAuthFailed, "backend accepted %q without an account", s.user)
		}
		s.acct = a
		return nil, true, nil
	default:
		return nil, true, errOver
	}
}

func (s *loginServer) username(resp []byte) ([]byte, bool, error) {
	if err := checkField("user name", resp); err != nil {
		s.step = loginOver
		return nil, true, failf(Login, ErrMalformed, "%v", err)
	}
	s.user = string(resp)
	s.step = loginWantPass
	return []byte(loginPassword), false, nil
}
