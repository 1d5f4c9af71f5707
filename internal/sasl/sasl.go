// Package sasl implements the server side of the SASL mechanisms every
// Latch protocol engine offers: PLAIN (RFC 4616), LOGIN
// (draft-murchison-sasl-login), SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
// (RFC 5802, RFC 7677, channel binding per RFC 5929 and RFC 9266), and
// EXTERNAL (RFC 4422 appendix A).
//
// The mechanisms only run the exchange; they know nothing of accounts,
// policy or penalties. What they need to decide is asked of a Backend,
// which the auth package implements.
//
// Invariants every mechanism keeps:
//   - No client input makes Next panic, and no response longer than
//     MaxResponse is accepted.
//   - Whether a response is malformed never depends on the account or the
//     password, so ErrMalformed, which engines do not count as a failed
//     guess, tells an attacker nothing.
//   - A SCRAM exchange for an unknown user runs to the proof on the
//     Backend's fake keys and shows the client what a wrong password shows.
//   - Identity is non-nil only after Next returned done and a nil error.
package sasl

import (
	"context"
	"errors"

	"github.com/latchmail/latch/internal/store"
)

// Mechanism names.
const (
	Plain           = "PLAIN"
	Login           = "LOGIN"
	ScramSHA256     = "SCRAM-SHA-256"
	ScramSHA256Plus = "SCRAM-SHA-256-PLUS"
	External        = "EXTERNAL"
)

// MaxResponse is the longest client response, after base64 decoding, that
// any mechanism accepts. An engine may stop reading a response line once it
// is longer than the base64 encoding of this many bytes.
const MaxResponse = 4096

// Errors a Server returns from Next, possibly wrapped. A protocol engine
// turns ErrMalformed into its "bad syntax" answer and every other error
// into its "authentication failed" answer unless the Backend returned
// something more specific, which Next passes through unwrapped-comparable
// (errors.Is).
var (
	ErrMalformed       = errors.New("sasl: malformed client response")
	ErrAuthFailed      = errors.New("sasl: authentication failed")
	ErrChannelBinding  = errors.New("sasl: channel binding mismatch")
	ErrUnsupportedMech = errors.New("sasl: mechanism not supported")
)

// Server is one exchange of one mechanism in progress.
type Server interface {
	// Next takes the client's next response and returns the next
	// challenge. On the first call, response is the initial response, or
	// nil when the client sent none (an empty initial response, "=" in
	// IMAP, is a non-nil empty slice). done is true when the exchange is
	// over: err == nil means the client is authenticated as Identity();
	// with done and err == nil, challenge may hold additional data with
	// success (SCRAM's server-final-message). With err != nil, challenge
	// may hold the mechanism's own account of the failure (a SCRAM
	// server-final-message with "e=", RFC 5802 section 7); an engine may
	// send it as one last challenge before its failure reply, or drop it.
	// Responses longer than MaxResponse are refused with ErrMalformed.
	Next(ctx context.Context, response []byte) (challenge []byte, done bool, err error)
	// Identity is the account the client authenticated as, once done.
	Identity() *store.Account
}

// ChannelBinding is what the connection offers for SCRAM-SHA-256-PLUS.
// Type is TLSExporter (TLS 1.3, RFC 9266) or TLSServerEndPoint (TLS 1.2,
// RFC 5929); Data is the binding data for that type. ChannelBindingFor
// makes one from a TLS connection.
type ChannelBinding struct {
	Type string
	Data []byte
}

// Backend answers the questions mechanisms ask. Errors it returns are
// passed to the protocol engine (wrapped so errors.Is still matches).
type Backend interface {
	// CheckPassword verifies a password for PLAIN and LOGIN; authzid is
	// empty or must name the same account.
	CheckPassword(ctx context.Context, authzid, username, password string) (*store.Account, error)
	// SCRAMKeys returns the stored SCRAM-SHA-256 keys of a user. For an
	// unknown user it must return fake but stable keys and a nil account so
	// that the exchange cannot tell unknown users from wrong passwords.
	SCRAMKeys(ctx context.Context, username string) (*store.Account, *store.SCRAMKeys, error)
	// Finish is called after a SCRAM proof verified, for the checks that
	// follow authentication (account locked, password change required).
	Finish(ctx context.Context, a *store.Account) error
	// External returns the account the connection's client certificate
	// maps to, checking the authorization identity when one is given.
	External(ctx context.Context, authzid string) (*store.Account, error)
}
