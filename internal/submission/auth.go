package submission

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"

	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/lineio"
	"github.com/latchmail/latch/internal/sasl"
	"github.com/latchmail/latch/internal/store"
)

// authSession describes the connection to the auth service.
func (ss *session) authSession() *auth.Session {
	as := &auth.Session{Service: "submission", Sec: ss.conn.Sec}
	if ss.conn.Sec.TLS && !ss.conn.Sec.ViaProxy {
		if cb, err := sasl.ChannelBindingFor(ss.conn.TLSState(), ss.conn.ServerLeaf()); err == nil {
			as.Binding = cb
		}
	}
	return as
}

// startTLS upgrades the connection (RFC 3207 4).
func (ss *session) startTLS(ctx context.Context, arg string) bool {
	if arg != "" {
		return ss.bad(501, "5.5.4", "STARTTLS takes no argument")
	}
	if !ss.conn.CanStartTLS() {
		if ss.conn.Sec.TLS {
			return ss.bad(503, "5.5.1", "TLS is already active")
		}
		return ss.bad(502, "5.5.1", "STARTTLS is not available on this port")
	}
	ss.reply(220, "2.0.0", "Ready to start TLS")
	if !ss.flush() {
		return false
	}
	if n := ss.r.Buffered(); n > 0 {
		ss.log.Warn("smtp: cleartext pipelined after STARTTLS discarded", slog.Int("bytes", n))
	}
	if err := ss.conn.StartTLS(ctx); err != nil {
		ss.log.Info("smtp starttls failed", slog.Any("err", err))
		return false
	}
	// Whatever the client pipelined after STARTTLS was sent in the clear
	// and may have been injected: drop it with the old reader
	// (CVE-2011-0411), and forget everything said before (RFC 3207 4.2).
	ss.r = bufio.NewReaderSize(ss.conn, 4096)
	ss.w = bufio.NewWriter(ss.conn)
	ss.resetTx()
	ss.helo, ss.esmtp, ss.account, ss.authMech = "", false, nil, ""
	ss.log = ss.conn.Log
	ss.log.Info("smtp starttls")
	return true
}

// authCmd runs AUTH (RFC 4954 4).
func (ss *session) authCmd(ctx context.Context, arg string) bool {
	switch {
	case !ss.esmtp:
		return ss.bad(503, "5.5.1", "Send EHLO first")
	case ss.account != nil:
		return ss.bad(503, "5.5.1", "Already authenticated") // RFC 4954 4
	case ss.tx != nil:
		return ss.bad(503, "5.5.1", "AUTH is not allowed during a mail transaction")
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	if mech == "" {
		return ss.bad(501, "5.5.4", "AUTH needs a mechanism name")
	}
	srv, err := ss.srv.Auth.Start(ss.authSession(), mech)
	if err != nil {
		return ss.bad(504, "5.5.4", "Unrecognized authentication type; EHLO lists those offered")
	}
	var resp []byte
	if hasInitial {
		if resp, err = decodeResponse(initial); err != nil {
			return ss.bad(501, "5.5.2", "Initial response is not base64")
		}
	}
	for {
		challenge, done, err := srv.Next(ctx, resp)
		if err != nil {
			return ss.authFailed(err)
		}
		if done && challenge == nil {
			return ss.authenticated(srv.Identity(), strings.ToUpper(mech))
		}
		// A challenge, or success with additional data, which SMTP sends
		// as a challenge answered by an empty response (RFC 4954 4).
		ss.reply(334, "", "%s", base64.StdEncoding.EncodeToString(challenge))
		if !ss.flush() {
			return false
		}
		line, err := ss.readLine(maxAuthLine)
		if errors.Is(err, lineio.ErrTooLong) {
			return ss.bad(500, "5.5.6", "Authentication exchange line too long")
		}
		if err != nil {
			return false
		}
		if line == "*" {
			ss.reply(501, "5.7.0", "Authentication cancelled")
			return true
		}
		if done {
			if line != "" {
				return ss.bad(501, "5.5.2", "Expected an empty response to the server's final message")
			}
			return ss.authenticated(srv.Identity(), strings.ToUpper(mech))
		}
		if resp, err = decodeResponse(line); err != nil {
			return ss.bad(501, "5.5.2", "Response is not base64; authentication cancelled")
		}
	}
}

// decodeResponse decodes a base64 SASL response; "=" is an empty one
// (RFC 4954 4).
func decodeResponse(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

func (ss *session) authenticated(a *store.Account, mech string) bool {
	ss.account, ss.authMech = a, mech
	ss.log = ss.log.With(slog.String("user", a.Name))
	ss.reply(235, "2.7.0", "Authentication successful")
	return true
}

// authFailed answers a failed exchange (RFC 4954 6) and says whether the
// session goes on.
func (ss *session) authFailed(err error) bool {
	code, enhanced, text := 535, "5.7.8", "Authentication credentials invalid"
	switch {
	case errors.Is(err, auth.ErrPrivacyRequired):
		// The same answer for right and wrong credentials (RFC 8314 4.1).
		code, enhanced, text = 530, "5.7.0", "Must issue a STARTTLS command first"
	case errors.Is(err, auth.ErrLocked):
		code, enhanced, text = 454, "4.7.0", "Too many failed logins; try again later"
	case errors.Is(err, auth.ErrPasswordChange):
		text = "The password must be changed before logging in; ask your administrator"
	case errors.Is(err, sasl.ErrMalformed):
		code, enhanced, text = 501, "5.5.2", "Malformed authentication data"
	case errors.Is(err, sasl.ErrAuthFailed):
	default:
		ss.log.Error("smtp auth", slog.Any("err", err))
		ss.reply(454, "4.7.0", "Temporary authentication failure; try again later")
		return false
	}
	ss.authFailures++
	if ss.authFailures >= maxAuthFailures {
		ss.reply(421, "4.7.0", "%s Too many failed authentications, closing connection", ss.srv.Hostname)
		return false
	}
	ss.reply(code, enhanced, "%s", text)
	return true
}
