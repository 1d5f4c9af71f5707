// Package imap is Latch's IMAP engine: IMAP4rev2 (RFC 9051) and IMAP4rev1
// (RFC 3501), both advertised, under RFC 8314: TLS from the first byte on
// 993, STARTTLS on 143, no authentication without TLS, and PREAUTH for a
// client certificate that maps to an account.
//
// Invariants:
//   - One session per connection, run by ServeConn in the connection's own
//     goroutine, which owns the session: its reader, writer, state and
//     selected-mailbox view. The one exception is IDLE, which hands the
//     reader to a helper goroutine until the client's DONE line arrives;
//     the session goroutine does not touch the reader meanwhile and keeps
//     the writer.
//   - Sessions share nothing but the store. Another session's changes to
//     the selected mailbox reach this one through the store: Watch wakes
//     IDLE, and before each tagged reply the session asks Changes for
//     everything after the highest MODSEQ it has seen and reports it
//     (EXISTS, EXPUNGE, FETCH FLAGS). EXPUNGE is held back while FETCH,
//     STORE or SEARCH (by sequence number) answers, so that sequence
//     numbers do not shift under the client (RFC 9051 section 7.5.1).
//   - After STARTTLS, nothing the client sent before the TLS handshake is
//     read: the session's reader is replaced, never drained (the
//     CVE-2011-0411 class of command injection).
//   - A malformed command is answered BAD and the session goes on; no
//     input makes the parser allocate more than its limits (parse.go).
//   - A tagged OK for a change (APPEND's APPENDUID, COPYUID, STORE) is sent
//     only after the store returned, that is once the change is durable.
//
// Extensions served: LITERAL+, SASL-IR, ID, ENABLE, IDLE, NAMESPACE,
// UIDPLUS, MOVE, UNSELECT, CHILDREN, LIST-EXTENDED, LIST-STATUS,
// SPECIAL-USE, CREATE-SPECIAL-USE, ESEARCH, SEARCHRES, CONDSTORE, STATUS=SIZE,
// APPENDLIMIT, and BINARY as IMAP4rev2 includes it. Not yet: QRESYNC,
// UTF8=ACCEPT, MULTIAPPEND, QUOTA.
//
// Files: parse.go reads commands, command.go is the command table,
// auth.go the not-authenticated state, mailbox.go the mailbox commands,
// selected.go the selected-mailbox view, its sync and IDLE, fetch.go and
// part.go FETCH and MIME structure, messages.go STORE, EXPUNGE, COPY,
// MOVE and APPEND, search.go SEARCH.
package imap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/tlsgate"
)

// Version is reported in the ID response (RFC 2971).
const Version = "0.1"

const (
	// idleTimeout: RFC 9051 section 5.4 asks for at least 30 minutes.
	idleTimeout       = 31 * time.Minute
	maxAuthFailures   = 3
	maxBadCommands    = 20
	defaultAppendSize = 64 << 20
)

// Server serves IMAP on the connections a listener hands it.
type Server struct {
	Hostname string
	Store    store.Store
	Auth     *auth.Service

	// PreauthByCert greets a client whose TLS client certificate maps to
	// an account with PREAUTH (RFC 8314 sections 3.2 and 4.2). When false,
	// such a client logs in with AUTHENTICATE EXTERNAL instead.
	PreauthByCert bool

	// AppendLimit is the largest message APPEND accepts (RFC 7889);
	// zero means 64 MiB.
	AppendLimit int64
}

func (s *Server) appendLimit() int64 {
	if s.AppendLimit > 0 {
		return s.AppendLimit
	}
	return defaultAppendSize
}

type state int

const (
	notAuthenticated state = 1 << iota
	authenticated
	selected
)

// session is one connection's state, owned by its goroutine.
type session struct {
	srv  *Server
	conn *tlsgate.Conn
	log  *slog.Logger
	br   *bufio.Reader
	bw   *bufio.Writer
	p    *parser

	state        state
	account      *store.Account
	rev2         bool // the client sent ENABLE IMAP4rev2
	condstore    bool // CONDSTORE is enabled (RFC 7162 3.1)
	sel          *selection
	authFailures int
	badCommands  int
}

// errLogout ends the session after the reply has been written.
var errLogout = errors.New("imap: session over")

// ServeConn runs one IMAP session until LOGOUT, an error, or ctx ends.
func (s *Server) ServeConn(ctx context.Context, c *tlsgate.Conn) {
	ss := &session{srv: s, conn: c, log: c.Log, state: notAuthenticated}
	ss.setReader()
	defer c.Close() // sends TLS close_notify first (RFC 8314 3.4)
	// Wake a blocked read when the server shuts down.
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()

	ss.log.Info("imap connect")
	if err := ss.greet(ctx); err != nil {
		ss.log.Info("imap greeting", slog.Any("err", err))
		return
	}
	for {
		if err := ss.bw.Flush(); err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(idleTimeout))
		if ctx.Err() != nil {
			// Shutdown began before the deadline above replaced the one
			// the AfterFunc set: set it again so the read ends now.
			_ = c.SetReadDeadline(time.Now())
		}
		err := ss.command(ctx)
		if err == nil {
			continue
		}
		switch {
		case errors.Is(err, errLogout):
		case ctx.Err() != nil:
			ss.untagged("BYE [UNAVAILABLE] server shutting down")
		case isTimeout(err):
			ss.untagged("BYE idle for too long; log in again")
		case errors.Is(err, errTooBig):
			ss.untagged("BYE [TOOBIG] literal too large; closing the connection")
		case errors.Is(err, io.EOF):
		default:
			ss.log.Info("imap session ended", slog.Any("err", err))
		}
		_ = ss.bw.Flush()
		return
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// setReader (re)creates the reader and writer over the connection's
// current transport, dropping whatever the old reader had buffered.
func (ss *session) setReader() {
	ss.br = bufio.NewReaderSize(ss.conn, 8192)
	ss.bw = bufio.NewWriterSize(ss.conn, 8192)
	ss.p = newParser(ss.br, func() error {
		ss.bw.WriteString("+ Ready for literal data\r\n")
		return ss.bw.Flush()
	})
}

// greet sends the greeting: PREAUTH for a client certificate that maps to
// an account (RFC 8314 3.2, 4.2; RFC 9051 7.1.4), else OK.
func (ss *session) greet(ctx context.Context) error {
	if name := ss.conn.Sec.Authenticated(); name != "" && ss.srv.PreauthByCert {
		a, err := ss.srv.Store.Account(ctx, name)
		switch {
		case err == nil:
			ss.loggedIn(a, "certificate")
			ss.untagged("PREAUTH [CAPABILITY %s] %s logged in by client certificate", ss.capabilities(), a.Name)
			return nil
		case !errors.Is(err, store.ErrNotFound):
			ss.untagged("BYE [UNAVAILABLE] cannot look up the account; try again later")
			_ = ss.bw.Flush()
			return fmt.Errorf("imap: preauth account %q: %w", name, err)
		}
		// Deleted since the handshake mapped it: greet as for anyone.
	}
	ss.untagged("OK [CAPABILITY %s] %s Latch IMAP4rev2 ready", ss.capabilities(), ss.srv.Hostname)
	return nil
}

func (ss *session) loggedIn(a *store.Account, how string) {
	ss.account = a
	ss.state = authenticated
	ss.log = ss.log.With(slog.String("user", a.Name))
	ss.log.Info("imap login", slog.String("by", how), slog.Any("sec", ss.conn.Sec))
}

// command reads and runs one command. Errors it returns end the session.
func (ss *session) command(ctx context.Context) error {
	p := ss.p
	p.begin()
	tag, cmd, err := ss.readCommand()
	if err != nil {
		return ss.parseFailed(tag, err)
	}
	ss.badCommands = 0 // only a run of bad commands ends the session
	ss.log.Debug("imap command", slog.String("tag", tag), slog.String("cmd", cmd.name))
	if err := cmd.run(ctx, tag); err != nil {
		// The line has been read: a BAD found now needs no skipping.
		var be *badError
		if errors.As(err, &be) {
			ss.tagged(tag, "BAD %s", be.msg)
			return nil
		}
		return err
	}
	return nil
}

// parseFailed answers malformed input; it returns an error when the
// session cannot go on.
func (ss *session) parseFailed(tag string, err error) error {
	var be *badError
	var le *literalError
	switch {
	case errors.As(err, &le):
		// RFC 7889 3: NO [TOOBIG]. A synchronizing literal was refused before the client sent
		// it, so the command is over; a non-synchronizing one has been
		// skipped and the rest of its line follows.
		if !le.sync {
			if err := ss.p.skipLine(); err != nil {
				return err
			}
		}
		ss.tagged(orStar(tag), "NO [TOOBIG] %v", err)
	case errors.As(err, &be):
		if err := ss.p.skipLine(); err != nil {
			return err
		}
		ss.tagged(orStar(tag), "BAD %s", be.msg)
	default:
		return err
	}
	ss.badCommands++
	if ss.badCommands >= maxBadCommands {
		ss.untagged("BYE too many bad commands")
		return errLogout
	}
	return nil
}

func orStar(tag string) string {
	if tag == "" {
		return "*"
	}
	return tag
}

// untagged writes "* " and a response line.
func (ss *session) untagged(format string, args ...any) {
	ss.bw.WriteString("* ")
	fmt.Fprintf(ss.bw, format, args...)
	ss.bw.WriteString("\r\n")
}

// tagged writes a tagged status response.
func (ss *session) tagged(tag, format string, args ...any) {
	ss.bw.WriteString(tag)
	ss.bw.WriteByte(' ')
	fmt.Fprintf(ss.bw, format, args...)
	ss.bw.WriteString("\r\n")
}

// ok reports pending mailbox changes and then completes a command.
func (ss *session) ok(ctx context.Context, tag, format string, args ...any) error {
	if err := ss.sync(ctx, true); err != nil {
		return err
	}
	ss.tagged(tag, "OK "+format, args...)
	return nil
}

// capabilities lists what the session offers now (RFC 9051 7.2.2); it
// depends on the state and on the connection's TLS.
func (ss *session) capabilities() string {
	caps := []string{"IMAP4rev2", "IMAP4rev1", "LITERAL+", "ID", "ENABLE", "SASL-IR"}
	if ss.state == notAuthenticated {
		if ss.conn.CanStartTLS() {
			caps = append(caps, "STARTTLS")
		}
		mechs := ss.srv.Auth.Mechanisms(ss.authSession())
		if len(mechs) == 0 {
			// RFC 9051 6.2.3, RFC 8314 4.1: nothing to log in with.
			caps = append(caps, "LOGINDISABLED")
		}
		for _, m := range mechs {
			caps = append(caps, "AUTH="+m)
		}
		return strings.Join(caps, " ")
	}
	caps = append(caps, "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN",
		"LIST-EXTENDED", "LIST-STATUS", "SPECIAL-USE", "CREATE-SPECIAL-USE", "ESEARCH", "SEARCHRES", "CONDSTORE",
		"STATUS=SIZE", fmt.Sprintf("APPENDLIMIT=%d", ss.srv.appendLimit()))
	return strings.Join(caps, " ")
}
