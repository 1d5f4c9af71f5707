// Package pop3 is Latch's POP3 engine (RFC 1939, RFC 2449 CAPA, RFC 5034
// SASL, RFC 2595 STLS) under RFC 8314: TLS from the first byte on 995,
// STLS on 110, and no authentication without TLS.
//
// Invariants:
//   - One session per connection, run by ServeConn in the connection's own
//     goroutine; the only state shared between sessions is the maildrop
//     lock table (one POP3 session per account, RFC 1939 section 8).
//   - The maildrop is a snapshot taken at login: message numbers and sizes
//     do not change during the session. Deletions are applied to the store
//     only in the UPDATE state, after QUIT (RFC 1939 section 6); the store
//     then tells IMAP sessions, as for any expunge.
//   - After STLS, nothing the client sent before the TLS handshake is read:
//     the session's reader is replaced, never drained (the CVE-2011-0411
//     class of command injection).
package pop3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/lineio"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/tlsgate"
)

// Limits of one session. RFC 2449 section 4 allows 255 octets for a
// command line; SASL responses (RFC 5034) may be longer, so the read limit
// is larger and applies to both.
const (
	maxLine         = 8 << 10
	idleTimeout     = 10 * time.Minute // RFC 1939 section 3: at least 10 minutes
	maxAuthFailures = 3                // then the connection is closed
	maxBadCommands  = 10
)

// Server serves POP3 on the connections a listener hands it.
type Server struct {
	Hostname string
	Store    store.Store
	Auth     *auth.Service

	locks lockTable
}

// lockTable holds the maildrops that have a session (RFC 1939 section 8).
type lockTable struct {
	mu   sync.Mutex
	held map[store.AccountID]bool
}

func (t *lockTable) lock(id store.AccountID) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held[id] {
		return false
	}
	if t.held == nil {
		t.held = make(map[store.AccountID]bool)
	}
	t.held[id] = true
	return true
}

func (t *lockTable) unlock(id store.AccountID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.held, id)
}

// session is one connection's state.
type session struct {
	srv  *Server
	conn *tlsgate.Conn
	log  *slog.Logger
	r    *bufio.Reader
	w    *bufio.Writer

	user         string         // from USER, waiting for PASS
	account      *store.Account // set once authenticated (TRANSACTION state)
	drop         *maildrop
	authFailures int
	badCommands  int
}

// ServeConn runs one POP3 session until QUIT, an error, or ctx ends.
func (s *Server) ServeConn(ctx context.Context, c *tlsgate.Conn) {
	ss := &session{srv: s, conn: c, log: c.Log}
	ss.r = bufio.NewReaderSize(c, 4096)
	ss.w = bufio.NewWriter(c)
	defer func() {
		ss.release()
		c.Close() // sends TLS close_notify first (RFC 8314 3.4)
	}()
	// Wake a blocked read when the server shuts down.
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()

	ss.log.Info("pop3 connect")
	ss.reply("+OK %s POP3 service ready (Latch)", s.Hostname)
	for ctx.Err() == nil {
		if err := ss.w.Flush(); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(idleTimeout))
		if ctx.Err() != nil {
			// Shutdown began after the loop's check: the AfterFunc's
			// deadline was just overwritten, so set it again.
			_ = c.SetReadDeadline(time.Now())
		}
		line, err := ss.readLine()
		if errors.Is(err, lineio.ErrTooLong) {
			if !ss.bad("-ERR line too long") {
				return
			}
			continue
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				ss.log.Info("pop3 read", slog.Any("err", err))
			}
			if ctx.Err() != nil {
				ss.reply("-ERR [SYS/TEMP] server shutting down")
				_ = ss.w.Flush()
			}
			return
		}
		cmd, arg, _ := strings.Cut(line, " ")
		if !ss.dispatch(ctx, strings.ToUpper(cmd), arg) {
			_ = ss.w.Flush()
			return
		}
	}
}

// readLine reads a command line or SASL response (lineio.ErrTooLong
// when over maxLine).
func (ss *session) readLine() (string, error) { return lineio.ReadLine(ss.r, maxLine) }

func (ss *session) reply(format string, args ...any) {
	fmt.Fprintf(ss.w, format+"\r\n", args...)
}

// bad answers a malformed or unknown command; it returns false when the
// client has sent too many to be worth serving.
func (ss *session) bad(msg string) bool {
	ss.badCommands++
	ss.reply("%s", msg)
	return ss.badCommands < maxBadCommands
}

// dispatch runs one command; it returns false when the session is over.
func (ss *session) dispatch(ctx context.Context, cmd, arg string) bool {
	if cmd == "QUIT" {
		return ss.quit(ctx)
	}
	if cmd == "CAPA" {
		ss.capa()
		return true
	}
	if ss.account == nil {
		switch cmd {
		case "STLS":
			return ss.stls(ctx)
		case "USER":
			return ss.userCmd(arg)
		case "PASS":
			return ss.pass(ctx, arg)
		case "AUTH":
			return ss.authCmd(ctx, arg)
		case "APOP":
			// APOP needs the cleartext password on the server; not offered.
			return ss.bad("-ERR APOP is not supported; use USER/PASS or AUTH over TLS")
		case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL":
			return ss.bad("-ERR log in first")
		}
		return ss.bad("-ERR unknown command")
	}
	return ss.transaction(ctx, cmd, arg)
}

// capa answers CAPA (RFC 2449 section 5); what is listed depends on the
// state and on the connection's TLS.
func (ss *session) capa() {
	ss.reply("+OK capability list follows")
	for _, c := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION Latch"} {
		ss.reply("%s", c)
	}
	if ss.account == nil {
		if ss.conn.CanStartTLS() {
			ss.reply("STLS")
		}
		// RFC 8314 4.1: nothing to authenticate with is offered without TLS.
		if mechs := ss.srv.Auth.Mechanisms(ss.authSession()); len(mechs) > 0 {
			ss.reply("USER")
			ss.reply("SASL %s", strings.Join(mechs, " "))
		}
	}
	ss.reply(".")
}

// quit ends the session; in TRANSACTION state it first enters UPDATE and
// applies the deletions (RFC 1939 section 6).
func (ss *session) quit(ctx context.Context) bool {
	if ss.drop == nil {
		ss.reply("+OK bye")
		return false
	}
	if err := ss.drop.update(ctx, ss.srv.Store); err != nil {
		ss.log.Error("pop3 update", slog.Any("err", err))
		ss.reply("-ERR [SYS/TEMP] some deleted messages were not removed; try again")
		return false
	}
	ss.log.Info("pop3 logout", slog.Int("deleted", ss.drop.deletedCount()))
	// Let go of the maildrop before saying so: a client that reconnects
	// as soon as it reads the answer must find it free.
	ss.release()
	ss.reply("+OK bye")
	return false
}

// release gives up the maildrop lock, once.
func (ss *session) release() {
	if ss.drop != nil {
		ss.srv.locks.unlock(ss.account.ID)
		ss.drop = nil
	}
}
