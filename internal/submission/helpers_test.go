package submission_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/devenv"
	"github.com/latchmail/latch/internal/server"
	"github.com/latchmail/latch/internal/store"
)

// env is a running Latch (in this process) with its dev accounts.
type env struct {
	srv  *server.Server
	info *devenv.Info
	ca   *x509.CertPool
	stop func() error // shuts the server down, once
}

// start runs a server of the test's own, for tests that change accounts
// or stop the server.
func start(t testing.TB) *env {
	t.Helper()
	e, err := newEnv(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.stop() })
	return e
}

// sharedEnv serves the tests that only add mail; starting a server costs
// more than most tests (password hashing), above all with -race.
var sharedEnv struct {
	once sync.Once
	dir  string
	e    *env
	err  error
}

// shared returns the server tests share. Such tests change no account
// in a way another test could notice, and count only the messages added
// after they began (env.since).
func shared(t testing.TB) *env {
	t.Helper()
	s := &sharedEnv
	s.once.Do(func() {
		if s.dir, s.err = os.MkdirTemp("", "latch-submission-test-"); s.err == nil {
			s.e, s.err = newEnv(s.dir)
		}
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.e
}

func TestMain(m *testing.M) {
	code := m.Run()
	if s := &sharedEnv; s.dir != "" {
		if s.e != nil {
			s.e.stop()
		}
		os.RemoveAll(s.dir)
	}
	os.Exit(code)
}

func newEnv(dir string) (*env, error) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv, info, err := devenv.Start(dir, true, log)
	if err != nil {
		return nil, err
	}
	stop := sync.OnceValue(func() error { return srv.Shutdown(5 * time.Second) })
	for _, s := range []string{"submissions", "submission", "lmtp"} {
		if info.Listeners[s] == "" {
			stop()
			return nil, fmt.Errorf("devenv has no %s listener: is the engine registered in internal/server?", s)
		}
	}
	pem, err := os.ReadFile(info.CACert)
	if err != nil {
		stop()
		return nil, err
	}
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(pem)
	return &env{srv: srv, info: info, ca: ca, stop: stop}, nil
}

func (e *env) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: e.ca, ServerName: "localhost", NextProtos: []string{"smtp"}}
}

func (e *env) alice() devenv.Account { return e.info.Accounts[0] }
func (e *env) bob() devenv.Account   { return e.info.Accounts[1] }

// account returns a dev account as stored.
func (e *env) account(t testing.TB, name string) *store.Account {
	t.Helper()
	a, err := e.srv.Store().Account(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// update changes a stored account.
func (e *env) update(t testing.TB, name string, change func(a *store.Account)) {
	t.Helper()
	a := e.account(t, name)
	change(a)
	if err := e.srv.Store().UpdateAccount(context.Background(), a); err != nil {
		t.Fatal(err)
	}
}

// inbox returns the raw messages in an account's INBOX, oldest first.
func (e *env) inbox(t testing.TB, name string) []string {
	t.Helper()
	ctx := context.Background()
	st := e.srv.Store()
	mb, err := st.MailboxByName(ctx, e.account(t, name).ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for m, err := range st.List(ctx, mb.ID, 1, ^store.UID(0)) {
		if err != nil {
			t.Fatal(err)
		}
		rc, err := st.Open(ctx, mb.ID, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// since returns a function that gives the messages added to an account's
// INBOX after the call.
func (e *env) since(t testing.TB, name string) func() []string {
	t.Helper()
	n := len(e.inbox(t, name))
	return func() []string {
		t.Helper()
		return e.inbox(t, name)[n:]
	}
}

// reply is one SMTP reply.
type reply struct {
	code  int
	lines []string // text after the code and separator
}

func (r reply) String() string { return fmt.Sprintf("%d %s", r.code, strings.Join(r.lines, " | ")) }

// text is the last line's text.
func (r reply) text() string { return r.lines[len(r.lines)-1] }

// client is a line-level SMTP client for conversation tests.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (e *env) dial(t *testing.T, service string) *client {
	return e.dialTLS(t, service, e.tlsConfig())
}

func (e *env) dialTLS(t *testing.T, service string, cfg *tls.Config) *client {
	t.Helper()
	addr := e.info.Listeners[service]
	var conn net.Conn
	var err error
	if service == "submissions" {
		conn, err = tls.Dial("tcp", addr, cfg)
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	want := "localhost ESMTP Latch"
	if service == "lmtp" {
		want = "localhost LMTP Latch"
	}
	if g := c.reply(); g.code != 220 || g.text() != want {
		t.Fatalf("greeting %v, want 220 %s", g, want)
	}
	return c
}

// reply reads one (possibly multi-line) reply.
func (c *client) reply() reply {
	c.t.Helper()
	var r reply
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, l)
		}
		if !strings.HasSuffix(l, "\r\n") || len(l) < 6 {
			c.t.Fatalf("malformed reply line %q", l)
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || (r.code != 0 && code != r.code) {
			c.t.Fatalf("malformed reply line %q", l)
		}
		r.code = code
		r.lines = append(r.lines, l[4:len(l)-2])
		if l[3] == ' ' {
			return r
		}
		if l[3] != '-' {
			c.t.Fatalf("malformed reply line %q", l)
		}
	}
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, strings.Join(lines, "\r\n")+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// write sends raw bytes (BDAT chunks).
func (c *client) write(data string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, data); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a command and returns its reply.
func (c *client) cmd(line string) reply {
	c.t.Helper()
	c.send(line)
	return c.reply()
}

// expect sends a command and fails unless the reply starts with want
// (code and, when given, enhanced code and text).
func (c *client) expect(line, want string) reply {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r.String(), want) {
		c.t.Fatalf("%s: got %v, want %s", truncate(line, 40), r, want)
	}
	return r
}

// ehlo sends EHLO (or LHLO) and returns the keywords.
func (c *client) ehlo(verb string) []string {
	c.t.Helper()
	r := c.expect(verb+" client.example", "250 ")
	return r.lines[1:]
}

func (c *client) startTLS(e *env) {
	c.t.Helper()
	c.expect("STARTTLS", "220 2.0.0 Ready to start TLS")
	tc := tls.Client(c.conn, e.tlsConfig())
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func plainResponse(user, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
}

// login opens an authenticated submission session on port 465.
func (e *env) login(t *testing.T, who devenv.Account) *client {
	t.Helper()
	c := e.dial(t, "submissions")
	c.ehlo("EHLO")
	c.expect("AUTH PLAIN "+plainResponse(who.Username, who.Password), "235 2.7.0")
	return c
}

// sendData sends a message after DATA's 354, dot-stuffed, and returns
// the final reply.
func (c *client) sendData(msg string) reply {
	c.t.Helper()
	c.expect("DATA", "354 ")
	var b strings.Builder
	for l := range strings.SplitAfterSeq(msg, "\r\n") {
		if strings.HasPrefix(l, ".") {
			b.WriteByte('.')
		}
		b.WriteString(l)
	}
	if !strings.HasSuffix(msg, "\r\n") && msg != "" {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	if _, err := io.WriteString(c.conn, b.String()); err != nil {
		c.t.Fatal(err)
	}
	return c.reply()
}

func has(list []string, kw string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return s == kw || strings.HasPrefix(s, kw+" ") })
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// message builds a message with the given header fields and body.
func message(fields []string, body string) string {
	return strings.Join(fields, "\r\n") + "\r\n\r\n" + body
}

// splitReceived returns the Received field added at the top of a stored
// message (unfolded) and the rest.
func splitReceived(t *testing.T, stored string) (received, rest string) {
	t.Helper()
	if !strings.HasPrefix(stored, "Received: ") {
		t.Fatalf("stored message does not start with Received: %q", truncate(stored, 200))
	}
	end := 0
	for {
		i := strings.Index(stored[end:], "\r\n")
		if i < 0 {
			t.Fatalf("unterminated Received field")
		}
		end += i + 2
		if end >= len(stored) || (stored[end] != ' ' && stored[end] != '\t') {
			break
		}
	}
	unfolded := strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(stored[:end-2])
	return strings.TrimPrefix(unfolded, "Received: "), stored[end:]
}
