package sasl

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// maxField bounds each identity and password a client sends. RFC 4616
// section 2 requires accepting 255 octets; passphrases from password
// managers run longer, so allow four times that.
const maxField = 1024

// errOver answers a response that arrives after the exchange ended: an
// engine bug, not a client's, so it is neither ErrMalformed nor a failed
// authentication.
var errOver = errors.New("sasl: response after the exchange ended")

// mechError is a failure a mechanism found itself, as opposed to one the
// Backend returned. It matches its kind with errors.Is.
type mechError struct {
	mech  string // mechanism name, for the message
	kind  error  // ErrMalformed, ErrAuthFailed or ErrChannelBinding
	msg   string
	value string // SCRAM server-error-value (RFC 5802 section 7); "" elsewhere
}

func (e *mechError) Error() string { return "sasl: " + e.mech + ": " + e.msg }
func (e *mechError) Unwrap() error { return e.kind }

// failf returns a mechError of the given kind.
func failf(mech string, kind error, format string, args ...any) *mechError {
	return &mechError{mech: mech, kind: kind, msg: fmt.Sprintf(format, args...)}
}

// checkText rejects what no mechanism here accepts as text: invalid UTF-8
// and NUL (RFC 4616 section 2 SAFE, RFC 5802 section 7 value-safe-char,
// RFC 4422 appendix A.1 UTF8-char-no-nul).
func checkText(what string, b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return fmt.Errorf("%s contains NUL", what)
	}
	return nil
}

// checkField applies checkText to a non-empty identity or password and
// bounds its length.
func checkField(what string, b []byte) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("%s is empty", what)
	case len(b) > maxField:
		return fmt.Errorf("%s is longer than %d bytes", what, maxField)
	}
	return checkText(what, b)
}
