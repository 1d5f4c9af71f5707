package interop

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// pop3Conn is a line-level POP3 client (RFC 1939) for the tests that need
// exact control of a session: where to stop, what to leave unsent. The
// third-party clients are the interop tests proper; this one drives
// `latch serve` and the crash tests.
type pop3Conn struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// sessionLimit bounds one test session on the wire.
const sessionLimit = time.Minute

// dialPOP3 connects to addr, with TLS from the first byte when cfg is not
// nil (RFC 8314 3.3), and reads the greeting.
func dialPOP3(t testing.TB, addr string, cfg *tls.Config) *pop3Conn {
	t.Helper()
	c, err := tryDialPOP3(addr, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.t = t
	t.Cleanup(func() { c.conn.Close() })
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

// probe runs a session without TLS up to the greeting and QUIT: the
// server is up as a client sees it.
func probe(t testing.TB, addr string) {
	t.Helper()
	dialPOP3(t, addr, nil).quit()
}

// tryDialPOP3 connects and completes the TLS handshake, if any, but reads
// nothing; the caller closes the connection.
func tryDialPOP3(addr string, cfg *tls.Config) (*pop3Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	var conn net.Conn
	var err error
	if cfg != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, cfg)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	_ = conn.SetDeadline(time.Now().Add(sessionLimit))
	return &pop3Conn{conn: conn, r: bufio.NewReader(conn)}, nil
}

// tlsClient is a TLS configuration that trusts only the CA in caFile and
// offers the POP3 ALPN identifier, as a client following RFC 8314 4.4 and
// RFC 7301 would.
func tlsClient(t testing.TB, caFile string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	return &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"pop3"}}
}

// line reads one response line, which must end in CRLF.
func (c *pop3Conn) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (after %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("line %q does not end with CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// cmd sends a command and returns the first line of the response.
func (c *pop3Conn) cmd(line string) string {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
	return c.line()
}

// ok sends a command whose response must be positive.
func (c *pop3Conn) ok(line string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: %q", strings.Fields(line)[0], r)
	}
	return r
}

// multi reads the rest of a multi-line response, dot-unstuffed.
func (c *pop3Conn) multi() []string {
	c.t.Helper()
	var out []string
	for {
		l := c.line()
		if l == "." {
			return out
		}
		out = append(out, strings.TrimPrefix(l, "."))
	}
}

// login authenticates with USER and PASS and returns PASS's response.
func (c *pop3Conn) login(user, password string) string {
	c.t.Helper()
	c.ok("USER " + user)
	return c.cmd("PASS " + password)
}

// quit ends the session with QUIT and closes the connection.
func (c *pop3Conn) quit() {
	c.t.Helper()
	c.ok("QUIT")
	c.conn.Close()
}

// uidl returns the unique-id listing, one "n uid" entry per message.
func (c *pop3Conn) uidl() []string {
	c.t.Helper()
	c.ok("UIDL")
	return c.multi()
}
