// Package submission is Latch's SMTP engine: message submission (RFC 6409)
// on implicit TLS (port 465, RFC 8314 3.3) and STARTTLS (port 587,
// RFC 3207), and local delivery by LMTP (RFC 2033) on loopback. Both
// deliver only to local mailboxes: until there is an outbound queue,
// recipients in other domains are refused at RCPT with a permanent
// "550 5.7.1 Delivery to other domains is not available yet", which is
// true, and spares clients days of retrying a 4xx that cannot succeed.
//
// Invariants:
//   - One session per connection, run by ServeConn in the connection's own
//     goroutine; sessions share nothing but the store and the auth service.
//   - Submission requires authentication before MAIL, and authentication
//     requires TLS (RFC 8314 4.1) unless the auth service grants an
//     account's legacy allowance. Without TLS, AUTH and MAIL are refused
//     with the same 530 reply whether the credentials are right or wrong.
//   - After STARTTLS the session starts afresh and nothing the client sent
//     before the handshake is read: the reader is replaced, never drained
//     (CVE-2011-0411; RFC 3207 4.2).
//   - Every read is bounded in length and time, and every oversize command
//     line, text line or message is read to its end, so that the session
//     stays in step with the client (RFC 5321 4.5.3.1).
//   - A message is accepted (250) only after store.Deliver returned: it is
//     then durable in every recipient's INBOX. Its bytes are stored exactly
//     as received, below the fields this server adds at the top (Received;
//     for submission also Date and Message-ID when missing, RFC 6409 8).
//   - Message data is spooled to a temporary file, never held in memory.
package submission

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/lineio"
	"github.com/latchmail/latch/internal/listener"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/tlsgate"
)

// Limits of one session.
const (
	// DefaultMaxMessageSize is the SIZE limit (RFC 1870) unless
	// Server.MaxMessageSize says otherwise.
	DefaultMaxMessageSize = 35 << 20

	maxCommandLine  = 512              // RFC 5321 4.5.3.1.4, with CRLF
	maxAuthLine     = 12288            // RFC 4954 4: AUTH lines and SASL responses
	maxTextLine     = 1000             // RFC 5321 4.5.3.1.6, with CRLF
	maxHeaderBytes  = 256 << 10        // header section parsed for the From check
	maxRecipients   = 100              // RFC 5321 4.5.3.1.8 asks for at least 100
	maxMessages     = 100              // per connection
	maxBadCommands  = 20               // then 421 and close
	maxAuthFailures = 3                // then 421 and close
	commandTimeout  = 5 * time.Minute  // RFC 5321 4.5.3.2.7
	dataTimeout     = 10 * time.Minute // per read of message data; RFC 5321 4.5.3.2.6
	writeTimeout    = time.Minute
)

// Server serves SMTP submission, or LMTP when LMTP is set, on the
// connections a listener hands it.
type Server struct {
	Hostname string
	// Domains are the mail domains served: an unknown recipient in one of
	// them (or at Hostname) is "no such user", elsewhere "other domain".
	Domains []string
	Store   store.Store
	// Auth authenticates submission clients; LMTP does not use it.
	Auth *auth.Service
	// LMTP makes the server speak LMTP (RFC 2033): LHLO, no AUTH, one
	// reply per recipient after the data. Its clients are trusted by being
	// on loopback (config allows mode "plain" nowhere else).
	LMTP bool
	// MaxMessageSize is the largest message accepted, in octets;
	// 0 means DefaultMaxMessageSize.
	MaxMessageSize int64
	// SpoolDir holds messages while they are received; "" means
	// os.TempDir().
	SpoolDir string
}

func (s *Server) maxSize() int64 {
	if s.MaxMessageSize > 0 {
		return s.MaxMessageSize
	}
	return DefaultMaxMessageSize
}

// session is one connection's state.
type session struct {
	srv  *Server
	conn *tlsgate.Conn
	log  *slog.Logger
	r    *bufio.Reader
	w    *bufio.Writer

	helo     string // EHLO/HELO/LHLO argument; "" until one is received
	esmtp    bool   // EHLO or LHLO, not HELO
	account  *store.Account
	authMech string
	tx       *transaction // nil outside a mail transaction

	messages     int
	badCommands  int
	authFailures int
}

// ServeConn runs one session until QUIT, an error, or ctx ends.
func (s *Server) ServeConn(ctx context.Context, c *tlsgate.Conn) {
	ss := &session{srv: s, conn: c, log: c.Log} // c.Log names the service
	ss.r = bufio.NewReaderSize(c, 4096)
	ss.w = bufio.NewWriter(c)
	defer func() {
		ss.resetTx()
		c.Close() // sends TLS close_notify first (RFC 8314 3.4)
	}()
	// Wake a blocked read when the server shuts down.
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()

	ss.log.Info("smtp connect")
	proto := "ESMTP"
	if s.LMTP {
		proto = "LMTP"
	}
	ss.reply(220, "", "%s %s Latch", s.Hostname, proto) // RFC 5321 4.3.1
	for {
		// Replies to pipelined commands go out together (RFC 2920 3.1).
		if ss.r.Buffered() == 0 && !ss.flush() {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(commandTimeout))
		if ctx.Err() != nil { // checked after the deadline is set: see stop
			ss.reply(421, "4.3.2", "%s Server shutting down", s.Hostname)
			ss.flush()
			return
		}
		line, err := ss.readLine(maxAuthLine)
		if errors.Is(err, lineio.ErrTooLong) {
			if !ss.bad(500, "5.5.2", "Line too long (at most %d octets)", maxCommandLine) {
				return
			}
			continue
		}
		if err != nil {
			switch {
			case ctx.Err() != nil:
				continue // says 421 above
			case errors.Is(err, os.ErrDeadlineExceeded):
				ss.reply(421, "4.4.2", "%s Idle for too long, closing connection", s.Hostname)
				ss.flush()
			case !errors.Is(err, io.EOF):
				ss.log.Info("smtp read", slog.Any("err", err))
			}
			return
		}
		// Pipelined replies may fill the writer before the next flush.
		_ = c.SetWriteDeadline(time.Now().Add(writeTimeout))
		verb, arg := parseCommand(line)
		if len(line)+2 > maxCommandLine && verb != "AUTH" {
			if !ss.bad(500, "5.5.2", "Line too long (at most %d octets)", maxCommandLine) {
				return
			}
			continue
		}
		if !ss.dispatch(ctx, verb, arg) {
			ss.flush()
			return
		}
	}
}

// RefuseConn tells a client turned away by a connection limit why
// (RFC 5321 3.1: 421 instead of the greeting).
func (s *Server) RefuseConn(ctx context.Context, c *tlsgate.Conn, reason error) {
	text := "Too many connections, try again later"
	if errors.Is(reason, listener.ErrTooManyFromAddr) {
		text = "Too many connections from your address, try again later"
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(d)
	}
	fmt.Fprintf(c, "421 4.7.0 %s %s\r\n", s.Hostname, text)
}

// dispatch runs one command; it returns false when the session is over.
func (ss *session) dispatch(ctx context.Context, verb, arg string) bool {
	lmtp := ss.srv.LMTP
	switch verb {
	case "LHLO":
		if !lmtp {
			break
		}
		return ss.hello(arg, true)
	case "EHLO", "HELO":
		if lmtp {
			// RFC 2033 4.1: an LMTP server must not accept them.
			return ss.bad(500, "5.5.1", "This is LMTP: use LHLO")
		}
		return ss.hello(arg, verb == "EHLO")
	case "STARTTLS":
		return ss.startTLS(ctx, arg)
	case "AUTH":
		if lmtp {
			break
		}
		return ss.authCmd(ctx, arg)
	case "MAIL":
		return ss.mail(arg)
	case "RCPT":
		return ss.rcpt(ctx, arg)
	case "DATA":
		return ss.data(ctx, arg)
	case "BDAT":
		return ss.bdat(ctx, arg)
	case "RSET":
		if arg != "" {
			return ss.bad(501, "5.5.4", "RSET takes no argument")
		}
		ss.resetTx()
		ss.reply(250, "2.0.0", "Ok")
		return true
	case "NOOP":
		ss.reply(250, "2.0.0", "Ok")
		return true
	case "QUIT":
		ss.reply(221, "2.0.0", "%s Bye", ss.srv.Hostname)
		return false
	case "VRFY":
		// RFC 5321 3.5.3: 252 neither confirms nor denies.
		ss.reply(252, "2.5.0", "Cannot verify addresses; send the message and delivery will be attempted")
		return true
	case "EXPN":
		ss.reply(502, "5.5.1", "EXPN is not implemented") // RFC 5321 3.5.3
		return true
	case "HELP":
		ss.reply(214, "2.0.0", "See RFC 5321 and RFC 6409; this server speaks ESMTP with the extensions EHLO lists")
		return true
	}
	return ss.bad(500, "5.5.2", "Unknown command %q", truncate(verb, 16))
}

// readLine reads a line of at most limit octets with its terminator
// (lineio.ErrTooLong when longer, consumed to its end).
func (ss *session) readLine(limit int) (string, error) { return lineio.ReadLine(ss.r, limit) }

// reply writes one reply line; enhanced is the RFC 3463 status code, or
// "" for the greeting.
func (ss *session) reply(code int, enhanced, format string, args ...any) {
	ss.replyLines(code, enhanced, []string{fmt.Sprintf(format, args...)})
}

// replyLines writes a multi-line reply (RFC 5321 4.2.1).
func (ss *session) replyLines(code int, enhanced string, lines []string) {
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		if enhanced != "" {
			fmt.Fprintf(ss.w, "%d%s%s %s\r\n", code, sep, enhanced, l)
		} else {
			fmt.Fprintf(ss.w, "%d%s%s\r\n", code, sep, l)
		}
	}
}

func (ss *session) flush() bool {
	_ = ss.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return ss.w.Flush() == nil
}

// bad answers a malformed, unknown or misplaced command; it returns false
// when the client has sent too many to be worth serving.
func (ss *session) bad(code int, enhanced, format string, args ...any) bool {
	ss.badCommands++
	if ss.badCommands >= maxBadCommands {
		ss.reply(421, "4.7.0", "%s Too many errors, closing connection", ss.srv.Hostname)
		return false
	}
	ss.reply(code, enhanced, format, args...)
	return true
}

// hello answers EHLO, HELO (RFC 5321 4.1.1.1) and LHLO (RFC 2033 4.1).
func (ss *session) hello(arg string, esmtp bool) bool {
	if !validHelo(arg) {
		return ss.bad(501, "5.5.4", "Give your host name or address literal, e.g. EHLO client.example.org")
	}
	ss.resetTx() // RFC 5321 4.1.4: EHLO/HELO act as RSET
	ss.helo, ss.esmtp = arg, esmtp
	greet := fmt.Sprintf("%s Hello %s", ss.srv.Hostname, arg)
	if !esmtp {
		ss.reply(250, "", "%s", greet)
		return true
	}
	lines := []string{greet, "PIPELINING", "8BITMIME", "SMTPUTF8",
		fmt.Sprintf("SIZE %d", ss.srv.maxSize()), "ENHANCEDSTATUSCODES", "CHUNKING"}
	if ss.conn.CanStartTLS() {
		lines = append(lines, "STARTTLS")
	}
	if !ss.srv.LMTP {
		// RFC 8314 4.1: none are offered without TLS.
		if mechs := ss.srv.Auth.Mechanisms(ss.authSession()); len(mechs) > 0 {
			lines = append(lines, "AUTH "+strings.Join(mechs, " "))
		}
	}
	ss.replyLines(250, "", lines)
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
