package pop3

import (
	"bufio"
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
	as := &auth.Session{Service: "pop3", Sec: ss.conn.Sec}
	if ss.conn.Sec.TLS && !ss.conn.Sec.ViaProxy {
		if cb, err := sasl.ChannelBindingFor(ss.conn.TLSState(), ss.conn.ServerLeaf()); err == nil {
			as.Binding = cb
		}
	}
	return as
}

// stls upgrades the connection (RFC 2595 section 4).
func (ss *session) stls(ctx context.Context) bool {
	if !ss.conn.CanStartTLS() {
		return ss.bad("-ERR STLS not available: this connection already has TLS")
	}
	ss.reply("+OK begin TLS negotiation")
	if err := ss.w.Flush(); err != nil {
		return false
	}
	if err := ss.conn.StartTLS(ctx); err != nil {
		ss.log.Info("pop3 stls failed", slog.Any("err", err))
		return false
	}
	// Whatever the client pipelined after STLS was sent in the clear and
	// may have been injected: drop it with the old reader (CVE-2011-0411).
	ss.r = bufio.NewReaderSize(ss.conn, 4096)
	ss.w = bufio.NewWriter(ss.conn)
	ss.user = ""
	ss.log = ss.conn.Log
	ss.log.Info("pop3 stls")
	return true
}

func (ss *session) userCmd(arg string) bool {
	if arg == "" {
		return ss.bad("-ERR USER needs a name")
	}
	// The answer is the same for every name: whether it exists, or may
	// log in here, is told only after PASS.
	ss.user = arg
	ss.reply("+OK send PASS")
	return true
}

func (ss *session) pass(ctx context.Context, arg string) bool {
	if ss.user == "" {
		return ss.bad("-ERR send USER first")
	}
	user := ss.user
	ss.user = ""
	a, err := ss.srv.Auth.Login(ctx, ss.authSession(), user, arg)
	return ss.loggedIn(ctx, a, err)
}

// authCmd runs AUTH (RFC 5034): without an argument it lists the
// mechanisms (as many clients expect), else it runs the exchange.
func (ss *session) authCmd(ctx context.Context, arg string) bool {
	as := ss.authSession()
	if arg == "" {
		ss.reply("+OK")
		for _, m := range ss.srv.Auth.Mechanisms(as) {
			ss.reply("%s", m)
		}
		ss.reply(".")
		return true
	}
	mech, initial, hasInitial := strings.Cut(arg, " ")
	srv, err := ss.srv.Auth.Start(as, mech)
	if err != nil {
		return ss.bad("-ERR unsupported mechanism; CAPA lists those offered")
	}
	var resp []byte
	if hasInitial {
		if resp, err = decodeResponse(initial); err != nil {
			return ss.bad("-ERR initial response is not base64")
		}
	}
	for {
		challenge, done, err := srv.Next(ctx, resp)
		if err != nil {
			return ss.loggedIn(ctx, nil, err)
		}
		if done && challenge == nil {
			return ss.loggedIn(ctx, srv.Identity(), nil)
		}
		// A challenge, or success with additional data, which POP3 can
		// only send as a challenge answered by an empty response (RFC
		// 5034 section 4).
		ss.reply("+ %s", base64.StdEncoding.EncodeToString(challenge))
		if err := ss.w.Flush(); err != nil {
			return false
		}
		line, err := ss.readLine()
		if err != nil {
			return false
		}
		if line == "*" {
			ss.reply("-ERR authentication cancelled")
			return true
		}
		if done {
			return ss.loggedIn(ctx, srv.Identity(), nil)
		}
		if resp, err = decodeResponse(line); err != nil {
			ss.reply("-ERR response is not base64; authentication cancelled")
			return true
		}
	}
}

// decodeResponse decodes a base64 SASL response; "=" is an empty one.
func decodeResponse(s string) ([]byte, error) {
	if s == "=" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// loggedIn answers the end of an authentication and, on success, locks
// and opens the maildrop.
func (ss *session) loggedIn(ctx context.Context, a *store.Account, err error) bool {
	switch {
	case errors.Is(err, auth.ErrPrivacyRequired):
		ss.reply("-ERR [AUTH] authentication is refused without TLS: use STLS first, or port 995")
		return ss.countFailure()
	case errors.Is(err, auth.ErrLocked):
		ss.reply("-ERR [SYS/TEMP] too many failed logins; try again later")
		return false
	case errors.Is(err, auth.ErrPasswordChange):
		ss.reply("-ERR [AUTH] the password must be changed before logging in; ask your administrator")
		return ss.countFailure()
	case errors.Is(err, sasl.ErrMalformed):
		ss.reply("-ERR malformed authentication data")
		return ss.countFailure()
	case err != nil && errors.Is(err, sasl.ErrAuthFailed):
		ss.reply("-ERR [AUTH] invalid user name or password")
		return ss.countFailure()
	case err != nil:
		ss.log.Error("pop3 auth", slog.Any("err", err))
		ss.reply("-ERR [SYS/TEMP] authentication unavailable; try again later")
		return false
	}
	if !ss.srv.locks.lock(a.ID) {
		ss.reply("-ERR [IN-USE] another POP3 session holds this maildrop")
		return false
	}
	drop, err := openMaildrop(ctx, ss.srv.Store, a.ID)
	if err != nil {
		ss.srv.locks.unlock(a.ID)
		ss.log.Error("pop3 open maildrop", slog.String("user", a.Name), slog.Any("err", err))
		ss.reply("-ERR [SYS/TEMP] cannot open the maildrop; try again later")
		return false
	}
	ss.account, ss.drop = a, drop
	ss.log = ss.log.With(slog.String("user", a.Name))
	ss.reply("+OK %d messages (%d octets)", drop.count(), drop.size())
	return true
}

func (ss *session) countFailure() bool {
	ss.authFailures++
	return ss.authFailures < maxAuthFailures
}
