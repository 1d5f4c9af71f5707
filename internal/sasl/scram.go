package sasl

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xdg-go/stringprep"

	"github.com/latchmail/latch/internal/store"
)

// Server-error values (RFC 5802 section 7) this server sends. It never
// sends "unknown-user": an unknown user fails at the proof, like a wrong
// password.
const (
	eInvalidEncoding          = "invalid-encoding"
	eExtensionsNotSupported   = "extensions-not-supported"
	eInvalidProof             = "invalid-proof"
	eChannelBindingsDontMatch = "channel-bindings-dont-match"
	eServerDoesSupportCB      = "server-does-support-channel-binding"
	eCBNotSupported           = "channel-binding-not-supported"
	eUnsupportedCBType        = "unsupported-channel-binding-type"
	eInvalidUsernameEncoding  = "invalid-username-encoding"
	eOtherError               = "other-error"
)

// scramStep is where a SCRAM exchange stands.
type scramStep int

const (
	scramStart     scramStep = iota
	scramWantFirst           // empty challenge sent, client-first-message due
	scramWantFinal           // server-first-message sent, client-final-message due
	scramOver
)

type scramServer struct {
	b           Backend
	cb          *ChannelBinding
	plus        bool
	plusOffered bool
	newNonce    func() string // the server's nonce part; tests replay RFC 7677

	step     scramStep
	first    *clientFirstMsg
	nonce    string // client nonce + server nonce
	sfirst   string // server-first-message
	acct     *store.Account
	keys     *store.SCRAMKeys
	identity *store.Account
}

// NewSCRAM returns a Server for SCRAM-SHA-256 (RFC 5802, RFC 7677), or for
// SCRAM-SHA-256-PLUS when plus is true. cb is the connection's channel
// binding, nil when it has none; -PLUS requires it, and accepts only
// cb.Type. plusOffered says whether SCRAM-SHA-256-PLUS was advertised on
// this connection: if it was, a client of SCRAM-SHA-256 that claims channel
// binding support ("y") has seen a doctored mechanism list and is refused
// (RFC 5802 section 6).
//
// The salt, iteration count and keys come from Backend.SCRAMKeys; an
// unknown user runs the whole exchange on the Backend's fake keys and
// fails at the proof, exactly like a wrong password. Latch has no proxy
// authorization, so a non-empty authzid must name the authenticated
// account: its Name, or its Address compared case-insensitively. After the
// proof verifies, Backend.Finish has the last word.
func NewSCRAM(b Backend, cb *ChannelBinding, plus, plusOffered bool) Server {
	return &scramServer{b: b, cb: cb, plus: plus, plusOffered: plusOffered, newNonce: rand.Text}
}

func (s *scramServer) Identity() *store.Account { return s.identity }

func (s *scramServer) mech() string {
	if s.plus {
		return ScramSHA256Plus
	}
	return ScramSHA256
}

func (s *scramServer) Next(ctx context.Context, resp []byte) ([]byte, bool, error) {
	switch s.step {
	case scramStart:
		if s.plus && s.cb == nil {
			s.step = scramOver
			return nil, true, fmt.Errorf("%w: %s on a connection without channel binding", ErrUnsupportedMech, s.mech())
		}
		if resp == nil {
			// RFC 4422 section 5 item 2a: SCRAM is client-first.
			s.step = scramWantFirst
			return []byte{}, false, nil
		}
		return s.clientFirst(ctx, resp)
	case scramWantFirst:
		return s.clientFirst(ctx, resp)
	case scramWantFinal:
		return s.clientFinal(ctx, resp)
	default:
		return nil, true, errOver
	}
}

// fail ends the exchange with err and, as server-final-message, the
// server-error value a mechError carries, or "other-error" for errors
// from elsewhere.
func (s *scramServer) fail(err error) ([]byte, bool, error) {
	s.step = scramOver
	s.keys = nil
	value := eOtherError
	var me *mechError
	if errors.As(err, &me) {
		me.mech = s.mech()
		value = me.value
	}
	return []byte("e=" + value), true, err
}

// failure returns a mechError for fail.
func failure(value string, kind error, format string, args ...any) *mechError {
	return &mechError{kind: kind, value: value, msg: fmt.Sprintf(format, args...)}
}

func (s *scramServer) clientFirst(ctx context.Context, msg []byte) ([]byte, bool, error) {
	cf, err := parseClientFirst(msg)
	if err != nil {
		return s.fail(err)
	}
	if err := s.checkBindingFlag(cf); err != nil {
		return s.fail(err)
	}
	// Clients SHOULD prepare the user name with SASLprep (RFC 5802 section
	// 5.1); preparing it again here makes the lookup independent of
	// whether this one did, and a name SASLprep refuses is
	// invalid-username-encoding (section 7). The authzid, compared after
	// the proof, is prepared alike.
	user, err := stringprep.SASLprep.Prepare(cf.user)
	if err != nil || user == "" {
		return s.fail(failure(eInvalidUsernameEncoding, ErrMalformed, "user name fails SASLprep (RFC 4013)"))
	}
	if cf.authzid != "" {
		if cf.authzid, err = stringprep.SASLprep.Prepare(cf.authzid); err != nil || cf.authzid == "" {
			return s.fail(failure(eInvalidEncoding, ErrMalformed, "authzid fails SASLprep (RFC 4013)"))
		}
	}
	a, keys, err := s.b.SCRAMKeys(ctx, user)
	if err != nil {
		return s.fail(fmt.Errorf("sasl: %s: %w", s.mech(), err))
	}
	if err := checkKeys(keys); err != nil {
		return s.fail(fmt.Errorf("sasl: %s: keys of %q: %w", s.mech(), user, err))
	}
	s.first, s.acct, s.keys = cf, a, keys
	// RFC 5802 section 5.1 (r): the server appends its own nonce.
	s.nonce = cf.nonce + s.newNonce()
	s.sfirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(keys.Salt) + ",i=" + strconv.Itoa(keys.Iterations)
	s.step = scramWantFinal
	return []byte(s.sfirst), false, nil
}

// checkBindingFlag applies RFC 5802 section 6 to the gs2-cbind-flag.
func (s *scramServer) checkBindingFlag(cf *clientFirstMsg) error {
	if s.plus {
		if cf.cbFlag != 'p' {
			return failure(eChannelBindingsDontMatch, ErrChannelBinding, "client chose %s but sent gs2-cbind-flag %q", s.mech(), cf.cbFlag)
		}
		// The one type this connection offers is the only one accepted.
		if cf.cbName != s.cb.Type {
			return failure(eUnsupportedCBType, ErrChannelBinding, "channel binding type %q requested, connection offers %q", cf.cbName, s.cb.Type)
		}
		return nil
	}
	switch {
	case cf.cbFlag == 'p':
		return failure(eCBNotSupported, ErrChannelBinding, "channel binding requested with %s; use %s", ScramSHA256, ScramSHA256Plus)
	case cf.cbFlag == 'y' && s.plusOffered:
		// "y": the client supports channel binding but saw no -PLUS
		// mechanism, yet one was offered: a downgrade attack.
		return failure(eServerDoesSupportCB, ErrChannelBinding, "client saw no %s, which was offered: possible downgrade attack", ScramSHA256Plus)
	}
	return nil
}

func checkKeys(k *store.SCRAMKeys) error {
	switch {
	case k == nil:
		return errors.New("backend returned no keys")
	case len(k.Salt) == 0 || k.Iterations < 1:
		return errors.New("stored keys lack salt or iteration count")
	case len(k.StoredKey) != sha256.Size || len(k.ServerKey) != sha256.Size:
		return errors.New("stored keys are not SHA-256 sized")
	}
	return nil
}

func (s *scramServer) clientFinal(ctx context.Context, msg []byte) ([]byte, bool, error) {
	cf, err := parseClientFinal(msg)
	if err != nil {
		return s.fail(err)
	}
	// RFC 5802 section 5.1 (r): the nonce must be the one the server sent.
	if cf.nonce != s.nonce {
		return s.fail(failure(eOtherError, ErrAuthFailed, "nonce in client-final-message differs from the server's"))
	}
	// RFC 5802 section 6: the server always validates c=, the gs2-header
	// followed, with "p", by the connection's channel binding data.
	want := []byte(s.first.gs2)
	if s.first.cbFlag == 'p' {
		want = append(want, s.cb.Data...)
	}
	if !hmac.Equal(cf.cbind, want) {
		return s.fail(failure(eChannelBindingsDontMatch, ErrChannelBinding, "channel binding data differs from the connection's"))
	}
	// RFC 5802 section 3: AuthMessage, ClientSignature, and the proof
	// holds if H(ClientProof XOR ClientSignature) is StoredKey. The same
	// work is done for the fake keys of an unknown user.
	authMsg := []byte(s.first.bare + "," + s.sfirst + "," + cf.withoutProof)
	clientSig := hmacSHA256(s.keys.StoredKey, authMsg)
	ok := len(cf.proof) == len(clientSig)
	if ok {
		for i := range clientSig {
			clientSig[i] ^= cf.proof[i]
		}
		stored := sha256.Sum256(clientSig)
		ok = hmac.Equal(stored[:], s.keys.StoredKey)
	}
	if !ok || s.acct == nil {
		return s.fail(failure(eInvalidProof, ErrAuthFailed, "invalid proof"))
	}
	if authz := s.first.authzid; authz != "" && authz != s.acct.Name && !strings.EqualFold(authz, s.acct.Address) {
		return s.fail(failure(eOtherError, ErrAuthFailed, "authzid %q does not name the authenticated account", authz))
	}
	if err := s.b.Finish(ctx, s.acct); err != nil {
		return s.fail(fmt.Errorf("sasl: %s: %w", s.mech(), err))
	}
	serverSig := hmacSHA256(s.keys.ServerKey, authMsg)
	s.step, s.keys, s.identity = scramOver, nil, s.acct
	return []byte("v=" + base64.StdEncoding.EncodeToString(serverSig)), true, nil
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// clientFirstMsg is a parsed client-first-message.
type clientFirstMsg struct {
	gs2     string // gs2-header as sent, final comma included
	cbFlag  byte   // 'n', 'y' or 'p'
	cbName  string // channel binding type, with 'p'
	authzid string // decoded; "" if absent
	bare    string // client-first-message-bare
	user    string // decoded, not yet prepared
	nonce   string // c-nonce
}

// parseClientFirst parses a client-first-message (RFC 5802 section 7):
//
//	client-first-message = gs2-header client-first-message-bare
//	gs2-header = gs2-cbind-flag "," [ authzid ] ","
//	client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
func parseClientFirst(msg []byte) (*clientFirstMsg, error) {
	if err := checkMessage(msg); err != nil {
		return nil, err
	}
	m := string(msg)
	flag, rest, ok1 := strings.Cut(m, ",")
	authz, bare, ok2 := strings.Cut(rest, ",")
	if !ok1 || !ok2 {
		return nil, failure(eInvalidEncoding, ErrMalformed, "client-first-message lacks a gs2-header")
	}
	cf := &clientFirstMsg{gs2: m[:len(m)-len(bare)], bare: bare}
	switch {
	case flag == "n" || flag == "y":
		cf.cbFlag = flag[0]
	case strings.HasPrefix(flag, "p=") && validCBName(flag[2:]):
		cf.cbFlag, cf.cbName = 'p', flag[2:]
	default:
		return nil, failure(eInvalidEncoding, ErrMalformed, "bad gs2-cbind-flag %q", flag)
	}
	if authz != "" {
		v, ok := strings.CutPrefix(authz, "a=")
		if ok {
			cf.authzid, ok = decodeName(v)
		}
		if !ok {
			return nil, failure(eInvalidEncoding, ErrMalformed, "bad authzid in gs2-header")
		}
	}
	f := strings.Split(bare, ",")
	// RFC 5802 section 5.1 (m): its presence must fail the exchange.
	if strings.HasPrefix(f[0], "m=") {
		return nil, failure(eExtensionsNotSupported, ErrMalformed, "mandatory extension (m=) not supported")
	}
	if len(f) < 2 {
		return nil, failure(eInvalidEncoding, ErrMalformed, "client-first-message-bare lacks username or nonce")
	}
	u, ok := strings.CutPrefix(f[0], "n=")
	if !ok {
		return nil, failure(eInvalidEncoding, ErrMalformed, "client-first-message-bare does not start with n=")
	}
	// RFC 5802 section 5.1 (n): "=" not followed by "2C" or "3D" must
	// fail the exchange.
	if cf.user, ok = decodeName(u); !ok {
		return nil, failure(eInvalidUsernameEncoding, ErrMalformed, "bad user name encoding")
	}
	if cf.nonce, ok = strings.CutPrefix(f[1], "r="); !ok || !printable(cf.nonce) {
		return nil, failure(eInvalidEncoding, ErrMalformed, "missing or bad client nonce")
	}
	if err := checkExtensions(f[2:]); err != nil {
		return nil, err
	}
	return cf, nil
}

// clientFinalMsg is a parsed client-final-message.
type clientFinalMsg struct {
	withoutProof string // client-final-message-without-proof, for AuthMessage
	cbind        []byte // decoded c=
	nonce        string
	proof        []byte // decoded p=
}

// parseClientFinal parses a client-final-message (RFC 5802 section 7):
//
//	client-final-message-without-proof = channel-binding "," nonce ["," extensions]
//	client-final-message = client-final-message-without-proof "," proof
func parseClientFinal(msg []byte) (*clientFinalMsg, error) {
	if err := checkMessage(msg); err != nil {
		return nil, err
	}
	m := string(msg)
	i := strings.LastIndex(m, ",p=")
	if i < 0 {
		return nil, failure(eInvalidEncoding, ErrMalformed, "client-final-message lacks a proof")
	}
	cf := &clientFinalMsg{withoutProof: m[:i]}
	var err error
	if cf.proof, err = base64.StdEncoding.Strict().DecodeString(m[i+len(",p="):]); err != nil {
		return nil, failure(eInvalidEncoding, ErrMalformed, "proof is not base64")
	}
	f := strings.Split(cf.withoutProof, ",")
	if len(f) < 2 {
		return nil, failure(eInvalidEncoding, ErrMalformed, "client-final-message lacks channel binding or nonce")
	}
	c, ok := strings.CutPrefix(f[0], "c=")
	if !ok {
		return nil, failure(eInvalidEncoding, ErrMalformed, "client-final-message does not start with c=")
	}
	if cf.cbind, err = base64.StdEncoding.Strict().DecodeString(c); err != nil {
		return nil, failure(eInvalidEncoding, ErrMalformed, "channel binding is not base64")
	}
	if cf.nonce, ok = strings.CutPrefix(f[1], "r="); !ok || !printable(cf.nonce) {
		return nil, failure(eInvalidEncoding, ErrMalformed, "missing or bad nonce")
	}
	if err := checkExtensions(f[2:]); err != nil {
		return nil, err
	}
	return cf, nil
}

// checkMessage bounds a SCRAM message and checks it is text.
func checkMessage(msg []byte) error {
	if len(msg) > MaxResponse {
		return failure(eInvalidEncoding, ErrMalformed, "message is longer than %d bytes", MaxResponse)
	}
	if err := checkText("message", msg); err != nil {
		return failure(eInvalidEncoding, ErrMalformed, "%v", err)
	}
	return nil
}

// checkExtensions checks optional extensions (attr-val, RFC 5802 section
// 7). Unknown ones are ignored, but "m" is reserved and must fail the
// exchange (section 5.1).
func checkExtensions(exts []string) error {
	for _, e := range exts {
		if len(e) < 3 || !isAlpha(e[0]) || e[1] != '=' {
			return failure(eInvalidEncoding, ErrMalformed, "bad extension %q", e)
		}
		if e[0] == 'm' {
			return failure(eExtensionsNotSupported, ErrMalformed, "mandatory extension (m=) not supported")
		}
	}
	return nil
}

// decodeName decodes a saslname (RFC 5802 section 7): 1*(value-safe-char /
// "=2C" / "=3D"). The caller has already split on "," and refused NUL and
// invalid UTF-8, so only "=" escapes remain to check.
func decodeName(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	if !strings.Contains(s, "=") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '=' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(s[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", false
		}
		i += 2
	}
	return b.String(), true
}

// printable is RFC 5802's 1*printable: %x21-2B / %x2D-7E.
func printable(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == ',' {
			return false
		}
	}
	return true
}

// validCBName is RFC 5802's cb-name: 1*(ALPHA / DIGIT / "." / "-").
func validCBName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && (c < '0' || c > '9') && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
