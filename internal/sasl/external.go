package sasl

import (
	"context"
	"fmt"

	"github.com/latchmail/latch/internal/store"
)

type externalServer struct {
	b     Backend
	asked bool // the empty challenge was sent
	over  bool
	acct  *store.Account
}

// NewExternal returns a Server for EXTERNAL (RFC 4422 appendix A): the
// client's only message is an optional authorization identity, and the
// Backend decides from the connection's client certificate.
func NewExternal(b Backend) Server { return &externalServer{b: b} }

func (s *externalServer) Identity() *store.Account { return s.acct }

func (s *externalServer) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	if s.over {
		return nil, true, errOver
	}
	if resp == nil && !s.asked {
		// RFC 4422 section 5 item 2a: EXTERNAL is client-first, so without
		// an initial response the server's first challenge is empty.
		s.asked = true
		return []byte{}, false, nil
	}
	s.over = true
	// RFC 4422 appendix A.1: extern-resp = *( UTF8-char-no-nul ).
	if len(resp) > maxField {
		return nil, true, failf(External, ErrMalformed, "authzid is longer than %d bytes", maxField)
	}
	if err := checkText("authzid", resp); err != nil {
		return nil, true, failf(External, ErrMalformed, "%v", err)
	}
	a, err := s.b.External(ctx, string(resp))
	if err != nil {
		return nil, true, fmt.Errorf("sasl: %s: %w", External, err)
	}
	if a == nil {
		return nil, true, failf(External, ErrAuthFailed, "backend accepted the client certificate without an account")
	}
	s.acct = a
	return nil, true, nil
}
