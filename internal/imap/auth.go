package imap

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"

	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/sasl"
	"github.com/latchmail/latch/internal/store"
)

// authSession describes the connection to the auth service.
func (ss *session) authSession() *auth.Session {
	as := &auth.Session{Service: "imap", Sec: ss.conn.Sec}
	if ss.conn.Sec.TLS && !ss.conn.Sec.ViaProxy {
		if cb, err := sasl.ChannelBindingFor(ss.conn.TLSState(), ss.conn.ServerLeaf()); err == nil {
			as.Binding = cb
		}
	}
	return as
}

func (ss *session) capability(ctx context.Context, tag string) error {
	ss.untagged("CAPABILITY %s", ss.capabilities())
	return ss.ok(ctx, tag, "CAPABILITY completed")
}

func (ss *session) noop(ctx context.Context, tag string) error {
	return ss.ok(ctx, tag, "NOOP completed")
}

// logout ends the session (RFC 9051 6.1.3): BYE before the tagged OK.
func (ss *session) logout(ctx context.Context, tag string) error {
	ss.untagged("BYE Latch IMAP server logging out")
	ss.tagged(tag, "OK LOGOUT completed")
	ss.log.Info("imap logout")
	return errLogout
}

// starttls upgrades the connection (RFC 9051 6.2.1).
func (ss *session) starttls(ctx context.Context, tag string) error {
	if !ss.conn.CanStartTLS() {
		ss.tagged(tag, "BAD STARTTLS is not available: this connection already has TLS")
		return nil
	}
	ss.tagged(tag, "OK Begin TLS negotiation now")
	if err := ss.bw.Flush(); err != nil {
		return err
	}
	if err := ss.conn.StartTLS(ctx); err != nil {
		ss.log.Info("imap starttls failed", slog.Any("err", err))
		return errLogout
	}
	// Whatever the client pipelined after STARTTLS was sent in the clear
	// and may have been injected: drop it with the old reader
	// (CVE-2011-0411). Capabilities are sent only when asked (RFC 9051
	// 6.2.1: the client must discard what it knew).
	ss.setReader()
	ss.log = ss.conn.Log
	ss.log.Info("imap starttls")
	return nil
}

func parseLogin(ss *session, p *parser) (action, error) {
	if err := p.sp(); err != nil {
		return nil, err
	}
	user, err := p.astring()
	if err != nil {
		return nil, err
	}
	if err := p.sp(); err != nil {
		return nil, err
	}
	pass, err := p.astring()
	if err != nil {
		return nil, err
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error {
		a, err := ss.srv.Auth.Login(ctx, ss.authSession(), user, pass)
		return ss.authDone(tag, a, err)
	}, nil
}

func parseAuthenticate(ss *session, p *parser) (action, error) {
	if err := p.sp(); err != nil {
		return nil, err
	}
	mech, err := p.atom()
	if err != nil {
		return nil, err
	}
	var initial []byte
	if !p.atEnd() {
		// RFC 4959: SASL-IR.
		if err := p.sp(); err != nil {
			return nil, err
		}
		ir, err := p.token("")
		if err != nil {
			return nil, err
		}
		if initial, err = decodeResponse(ir); err != nil {
			return nil, badf("initial response is not base64")
		}
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error {
		return ss.authenticate(ctx, tag, mech, initial)
	}, nil
}

// decodeResponse decodes a base64 SASL response; "=" is an empty one.
func decodeResponse(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// authenticate runs a SASL exchange (RFC 9051 6.2.2).
func (ss *session) authenticate(ctx context.Context, tag, mech string, resp []byte) error {
	srv, err := ss.srv.Auth.Start(ss.authSession(), mech)
	if err != nil {
		ss.tagged(tag, "NO [CANNOT] unsupported mechanism; CAPABILITY lists those offered")
		return nil
	}
	maxLine := base64.StdEncoding.EncodedLen(sasl.MaxResponse) + 2
	for {
		challenge, done, err := srv.Next(ctx, resp)
		if err != nil {
			return ss.authDone(tag, nil, err)
		}
		if done && challenge == nil {
			return ss.authDone(tag, srv.Identity(), nil)
		}
		// A challenge, or success with additional data (SCRAM's
		// server-final-message), which IMAP sends as a challenge
		// answered by an empty response.
		ss.bw.WriteString("+ " + base64.StdEncoding.EncodeToString(challenge) + "\r\n")
		if err := ss.bw.Flush(); err != nil {
			return err
		}
		line, err := ss.p.rawLine(maxLine)
		if err != nil {
			var be *badError
			if errors.As(err, &be) {
				ss.tagged(tag, "BAD %s", be.msg)
				return nil
			}
			return err
		}
		if line == "*" {
			ss.tagged(tag, "BAD authentication cancelled")
			return nil
		}
		if done {
			return ss.authDone(tag, srv.Identity(), nil)
		}
		if resp, err = decodeResponse(line); err != nil {
			ss.tagged(tag, "BAD response is not base64; authentication cancelled")
			return nil
		}
	}
}

// authDone answers the end of LOGIN or AUTHENTICATE (RFC 5530 codes).
func (ss *session) authDone(tag string, a *store.Account, err error) error {
	switch {
	case err == nil:
		ss.loggedIn(a, "password")
		ss.tagged(tag, "OK [CAPABILITY %s] logged in", ss.capabilities())
		return nil
	case errors.Is(err, auth.ErrPrivacyRequired):
		// RFC 8314 4.1: the same answer whether the credentials were right.
		ss.tagged(tag, "NO [PRIVACYREQUIRED] authentication is refused without TLS: use STARTTLS first, or port 993")
	case errors.Is(err, auth.ErrLocked):
		ss.tagged(tag, "NO [UNAVAILABLE] too many failed logins; try again later")
	case errors.Is(err, auth.ErrPasswordChange):
		ss.tagged(tag, "NO [EXPIRED] the password must be changed before logging in; ask your administrator")
	case errors.Is(err, sasl.ErrMalformed):
		ss.tagged(tag, "BAD malformed authentication data")
	case errors.Is(err, sasl.ErrAuthFailed):
		ss.tagged(tag, "NO [AUTHENTICATIONFAILED] invalid credentials")
	default:
		ss.log.Error("imap auth", slog.Any("err", err))
		ss.tagged(tag, "NO [UNAVAILABLE] authentication unavailable; try again later")
		return nil
	}
	ss.authFailures++
	if ss.authFailures >= maxAuthFailures {
		ss.untagged("BYE too many failed authentication attempts")
		return errLogout
	}
	return nil
}

// parseID reads ID's parameter list (RFC 2971 3.1).
func parseID(ss *session, p *parser) (action, error) {
	if err := p.sp(); err != nil {
		return nil, err
	}
	var params []string
	if c, _ := p.peek(); c == '(' {
		err := p.list(false, func() error {
			s, err := p.nstring()
			params = append(params, s)
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(params)%2 != 0 || len(params) > 60 {
			return nil, badf("ID takes up to 30 field-value pairs")
		}
	} else if err := p.nil(); err != nil {
		return nil, err
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error {
		attrs := []any{slog.Any("sec", ss.conn.Sec)}
		for i := 0; i+1 < len(params); i += 2 {
			attrs = append(attrs, slog.String("id_"+strings.ToLower(sanitize(params[i])), sanitize(params[i+1])))
		}
		ss.log.Info("imap client id", attrs...)
		ss.untagged(`ID ("name" "Latch" "version" "%s")`, Version)
		return ss.ok(ctx, tag, "ID completed")
	}, nil
}

// parseEnable reads ENABLE (RFC 5161, RFC 9051 6.3.1).
func parseEnable(ss *session, p *parser) (action, error) {
	var caps []string
	for !p.atEnd() {
		if err := p.sp(); err != nil {
			return nil, err
		}
		c, err := p.atom()
		if err != nil {
			return nil, err
		}
		caps = append(caps, strings.ToUpper(c))
	}
	if len(caps) == 0 {
		return nil, badf("ENABLE needs a capability")
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error {
		var enabled []string
		for _, c := range caps {
			switch {
			case c == "IMAP4REV2" && !ss.rev2:
				ss.rev2 = true
				enabled = append(enabled, "IMAP4rev2")
			case c == "CONDSTORE" && !ss.condstore:
				ss.enableCondstore()
				enabled = append(enabled, "CONDSTORE")
			}
		}
		ss.untagged("%s", strings.TrimSpace("ENABLED "+strings.Join(enabled, " ")))
		return ss.ok(ctx, tag, "ENABLE completed")
	}, nil
}

// namespace answers NAMESPACE (RFC 2342, RFC 9051 6.3.10): one personal
// namespace, no others.
func (ss *session) namespace(ctx context.Context, tag string) error {
	ss.untagged(`NAMESPACE (("" "/")) NIL NIL`)
	return ss.ok(ctx, tag, "NAMESPACE completed")
}
