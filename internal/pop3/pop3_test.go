package pop3_test

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
}

func start(t testing.TB) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	srv, info, err := devenv.Start(t.TempDir(), true, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(5 * time.Second) })
	pem, err := os.ReadFile(info.CACert)
	if err != nil {
		t.Fatal(err)
	}
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(pem)
	return &env{srv: srv, info: info, ca: ca}
}

func (e *env) tlsConfig() *tls.Config {
	return &tls.Config{RootCAs: e.ca, ServerName: "localhost", NextProtos: []string{"pop3"}}
}

// deliver puts messages straight into an account's INBOX.
func (e *env) deliver(t testing.TB, user string, bodies ...string) {
	t.Helper()
	ctx := context.Background()
	st := e.srv.Store()
	a, err := st.Account(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := st.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		if _, err := st.Append(ctx, mb.ID, store.NewMessage{Body: strings.NewReader(b)}); err != nil {
			t.Fatal(err)
		}
	}
}

// client is a line-level POP3 client for conversation tests.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func (e *env) dial(t *testing.T, service string) *client {
	t.Helper()
	addr := e.info.Listeners[service]
	var conn net.Conn
	var err error
	if service == "pop3s" {
		conn, err = tls.Dial("tcp", addr, e.tlsConfig())
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "+OK ") {
		t.Fatalf("greeting %q", g)
	}
	return c
}

func (c *client) line() string {
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

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a command and returns its first response line.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

// multi reads the body of a multi-line response, dot-unstuffed.
func (c *client) multi() []string {
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

func (c *client) capa() []string {
	c.t.Helper()
	if r := c.cmd("CAPA"); !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("CAPA: %q", r)
	}
	return c.multi()
}

func (c *client) mustOK(line string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, "+OK") {
		c.t.Fatalf("%s: %q", strings.Fields(line)[0], r)
	}
	return r
}

func (c *client) startTLS(e *env) {
	c.t.Helper()
	c.mustOK("STLS")
	tc := tls.Client(c.conn, e.tlsConfig())
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func (c *client) login(user, pw string) {
	c.t.Helper()
	c.mustOK("USER " + user)
	c.mustOK("PASS " + pw)
}

func has(list []string, item string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return s == item || strings.HasPrefix(s, item+" ") })
}

func TestCapabilitiesDependOnTLS(t *testing.T) {
	e := start(t)
	clear := e.dial(t, "pop3").capa()
	if !has(clear, "STLS") || has(clear, "USER") || has(clear, "SASL") {
		t.Errorf("CAPA without TLS = %q: want STLS and neither USER nor SASL (RFC 8314 4.1)", clear)
	}
	secure := e.dial(t, "pop3s").capa()
	if has(secure, "STLS") || !has(secure, "USER") || !has(secure, "SASL") {
		t.Errorf("CAPA with TLS = %q: want USER and SASL, no STLS", secure)
	}
	for _, want := range []string{"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION"} {
		if !has(secure, want) {
			t.Errorf("CAPA lacks %s: %q", want, secure)
		}
	}
	c := e.dial(t, "pop3")
	c.startTLS(e)
	if after := c.capa(); has(after, "STLS") || !has(after, "USER") {
		t.Errorf("CAPA after STLS = %q: want it fresh, without STLS and with USER", after)
	}
}

// Without TLS, good and bad credentials get exactly the same answers.
func TestCleartextRefusedAlike(t *testing.T) {
	e := start(t)
	alice := e.info.Accounts[0]
	transcript := func(user, pw string) []string {
		c := e.dial(t, "pop3")
		out := []string{c.cmd("USER " + user), c.cmd("PASS " + pw)}
		plain := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pw))
		return append(out, c.cmd("AUTH PLAIN "+plain))
	}
	right := transcript(alice.Username, alice.Password)
	for _, other := range [][]string{
		transcript(alice.Username, "wrong password"),
		transcript("nobody@localhost", "whatever"),
	} {
		if !slices.Equal(right, other) {
			t.Fatalf("answers differ:\nright credentials: %q\nwrong credentials: %q", right, other)
		}
	}
	if !strings.HasPrefix(right[1], "-ERR [AUTH]") || !strings.Contains(right[1], "TLS") {
		t.Fatalf("PASS without TLS answered %q", right[1])
	}
}

// Commands pipelined after STLS arrived in cleartext and must not run
// inside TLS (CVE-2011-0411).
func TestSTLSDiscardsPipelinedInput(t *testing.T) {
	e := start(t)
	c := e.dial(t, "pop3")
	c.send("STLS\r\nCAPA")
	if r := c.line(); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("STLS: %q", r)
	}
	tc := tls.Client(c.conn, e.tlsConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	if r := c.cmd("NOOP"); r != "-ERR log in first" {
		t.Fatalf("first answer inside TLS is %q: the injected CAPA was executed", r)
	}
}

func TestSessionCommands(t *testing.T) {
	e := start(t)
	alice := e.info.Accounts[0]
	msgs := []string{
		"Subject: one\r\n\r\nfirst body\r\n.leading dot\r\nsecond line\r\n",
		"Subject: two\n\nbare LF line\n..two dots\nlast line without newline",
		"Subject: three\r\nX-Long: " + strings.Repeat("x", 100_000) + "\r\n\r\nbody\r\n",
	}
	e.deliver(t, alice.Username, msgs...)

	c := e.dial(t, "pop3s")
	if r := c.cmd("STAT"); r != "-ERR log in first" {
		t.Fatalf("STAT before login: %q", r)
	}
	c.login(alice.Username, alice.Password)
	// Sizes count the octets sent: every line ended by CRLF (RFC 1939
	// 11). Message 2 has four bare LFs (one octet more each) and an
	// unended last line (two more).
	sizes := []int{len(msgs[0]), len(msgs[1]) + 4 + 2, len(msgs[2])}
	total := sizes[0] + sizes[1] + sizes[2]
	if r := c.cmd("STAT"); r != fmt.Sprintf("+OK 3 %d", total) {
		t.Fatalf("STAT = %q, want 3 messages of %d octets", r, total)
	}
	c.mustOK("LIST")
	if l := c.multi(); len(l) != 3 || l[0] != fmt.Sprintf("1 %d", sizes[0]) {
		t.Fatalf("LIST = %q", l)
	}
	if r := c.cmd("LIST 2"); r != fmt.Sprintf("+OK 2 %d", sizes[1]) {
		t.Fatalf("LIST 2 = %q", r)
	}
	c.mustOK("UIDL")
	uidls := c.multi()
	if len(uidls) != 3 {
		t.Fatalf("UIDL = %q", uidls)
	}
	for _, tt := range []struct {
		cmd  string
		want []string
	}{
		{"RETR 1", []string{"Subject: one", "", "first body", ".leading dot", "second line"}},
		{"RETR 2", []string{"Subject: two", "", "bare LF line", "..two dots", "last line without newline"}},
		{"TOP 1 1", []string{"Subject: one", "", "first body"}},
		{"TOP 2 0", []string{"Subject: two", ""}},
		{"RETR 3", []string{"Subject: three", "X-Long: " + strings.Repeat("x", 100_000), "", "body"}},
	} {
		c.mustOK(tt.cmd)
		if got := c.multi(); !slices.Equal(got, tt.want) {
			t.Errorf("%s = %.200q, want %.200q", tt.cmd, got, tt.want)
		}
	}
	for _, tt := range []struct{ cmd, want string }{
		{"RETR 4", "-ERR no such message"},
		{"RETR x", "-ERR no such message"},
		{"TOP 1", "-ERR usage: TOP msg lines"},
		{"USER bob", "-ERR already logged in"},
		{"FROB", "-ERR unknown command"},
	} {
		if r := c.cmd(tt.cmd); r != tt.want {
			t.Errorf("%s = %q, want %q", tt.cmd, r, tt.want)
		}
	}
	c.mustOK("DELE 1")
	if r := c.cmd("RETR 1"); r != "-ERR message 1 is deleted" {
		t.Fatalf("RETR of deleted: %q", r)
	}
	if r := c.cmd("STAT"); r != fmt.Sprintf("+OK 2 %d", total-sizes[0]) {
		t.Fatalf("STAT after DELE = %q", r)
	}
	c.mustOK("RSET")
	c.mustOK("DELE 2")
	c.mustOK("QUIT")

	// The deletion happened in UPDATE; the unique-ids of the rest stay.
	c = e.dial(t, "pop3s")
	c.login(alice.Username, alice.Password)
	c.mustOK("UIDL")
	if got := c.multi(); len(got) != 2 || got[0] != uidls[0] || strings.Fields(got[1])[1] != strings.Fields(uidls[2])[1] {
		t.Fatalf("UIDL after deleting message 2 = %q, before %q", got, uidls)
	}
	// A session that ends without QUIT deletes nothing. The server lets
	// go of the maildrop once it sees the connection end, which may come
	// after the client's next connection: wait for it.
	c.mustOK("DELE 1")
	c.conn.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c = e.dial(t, "pop3s")
		c.mustOK("USER " + alice.Username)
		r := c.cmd("PASS " + alice.Password)
		if strings.HasPrefix(r, "+OK") {
			break
		}
		if !strings.Contains(r, "[IN-USE]") || time.Now().After(deadline) {
			t.Fatalf("login after a dropped session: %q", r)
		}
	}
	if r := c.cmd("STAT"); !strings.HasPrefix(r, "+OK 2 ") {
		t.Fatalf("STAT after a session without QUIT = %q", r)
	}
}

func TestMaildropLock(t *testing.T) {
	e := start(t)
	alice := e.info.Accounts[0]
	first := e.dial(t, "pop3s")
	first.login(alice.Username, alice.Password)
	second := e.dial(t, "pop3s")
	second.mustOK("USER " + alice.Username)
	if r := second.cmd("PASS " + alice.Password); !strings.HasPrefix(r, "-ERR [IN-USE]") {
		t.Fatalf("second session: %q, want [IN-USE]", r)
	}
	first.mustOK("QUIT")
	third := e.dial(t, "pop3s")
	third.login(alice.Username, alice.Password)
}

func TestSASL(t *testing.T) {
	e := start(t)
	alice := e.info.Accounts[0]
	c := e.dial(t, "pop3s")
	// PLAIN with the response on the next line.
	if r := c.cmd("AUTH PLAIN"); r != "+ " {
		t.Fatalf("AUTH PLAIN: %q", r)
	}
	c.mustOK(base64.StdEncoding.EncodeToString([]byte("\x00" + alice.Username + "\x00" + alice.Password)))
	c.mustOK("QUIT")

	c = e.dial(t, "pop3s")
	if r := c.cmd("AUTH PLAIN"); r != "+ " {
		t.Fatalf("AUTH PLAIN: %q", r)
	}
	if r := c.cmd("*"); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("cancel: %q", r)
	}
	if r := c.cmd("AUTH PLAIN !!!"); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("bad base64: %q", r)
	}
	wrong := base64.StdEncoding.EncodeToString([]byte("\x00" + alice.Username + "\x00nope"))
	if r := c.cmd("AUTH PLAIN " + wrong); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Fatalf("wrong password: %q", r)
	}
	if r := c.cmd("AUTH NOSUCH"); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("unknown mechanism: %q", r)
	}
}

// RFC 8314 3.1: on 995 a client certificate does not skip AUTHORIZATION;
// it makes EXTERNAL available.
func TestExternalWithClientCertificate(t *testing.T) {
	e := start(t)
	pair, err := tls.LoadX509KeyPair(e.info.ClientCert, e.info.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.tlsConfig()
	cfg.Certificates = []tls.Certificate{pair}
	conn, err := tls.Dial("tcp", e.info.Listeners["pop3s"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.line()
	if r := c.cmd("STAT"); r != "-ERR log in first" {
		t.Fatalf("STAT with a client certificate before AUTH: %q", r)
	}
	if capa := c.capa(); !slices.ContainsFunc(capa, func(s string) bool { return strings.HasPrefix(s, "SASL EXTERNAL ") }) {
		t.Fatalf("CAPA with a mapped client certificate: %q", capa)
	}
	c.mustOK("AUTH EXTERNAL =")
	c.mustOK("STAT")
}

// Bad input gets -ERR and the session goes on; a flood of it ends the
// session instead of keeping it forever.
func TestMalformedInput(t *testing.T) {
	e := start(t)
	c := e.dial(t, "pop3s")
	if r := c.cmd(strings.Repeat("A", 20000)); r != "-ERR line too long" {
		t.Fatalf("overlong line: %q", r)
	}
	if r := c.cmd("\x00\xff\xfe"); r != "-ERR unknown command" {
		t.Fatalf("binary: %q", r)
	}
	if r := c.cmd("NOOP"); r != "-ERR log in first" {
		t.Fatalf("after bad input: %q", r)
	}
	// One write, so that it is complete before the server gives up.
	c.send(strings.Repeat("BOGUS\r\n", 19) + "BOGUS")
	var last string
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			break
		}
		last = l
	}
	if last == "" {
		t.Fatal("no answers to a flood of bad commands")
	}
}

// Many sessions at once, each for its own account or queued on the lock,
// all end cleanly (run with -race).
func TestConcurrentSessions(t *testing.T) {
	e := start(t)
	e.deliver(t, e.info.Accounts[1].Username, "Subject: x\r\n\r\ny\r\n")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			a := e.info.Accounts[i%2]
			conn, err := tls.Dial("tcp", e.info.Listeners["pop3s"], e.tlsConfig())
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			r := bufio.NewReader(conn)
			fmt.Fprintf(conn, "USER %s\r\nPASS %s\r\nSTAT\r\nQUIT\r\n", a.Username, a.Password)
			for range 5 {
				l, err := r.ReadString('\n')
				if err != nil {
					t.Errorf("session %d: %v", i, err)
					return
				}
				if strings.HasPrefix(l, "-ERR") && !strings.Contains(l, "[IN-USE]") && !strings.Contains(l, "log in first") {
					t.Errorf("session %d: %q", i, l)
				}
			}
		})
	}
	wg.Wait()
}

// POP3 and IMAP share the maildrop: what a POP3 session deletes (at QUIT)
// disappears from an IMAP session on the same INBOX, which learns of it
// at its next command.
func TestDeletionsReachIMAP(t *testing.T) {
	e := start(t)
	alice := e.info.Accounts[0]
	e.deliver(t, alice.Username, "Subject: a\r\n\r\na\r\n", "Subject: b\r\n\r\nb\r\n")

	cfg := e.tlsConfig()
	cfg.NextProtos = []string{"imap"}
	conn, err := tls.Dial("tcp", e.info.Listeners["imaps"], cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	imap := bufio.NewReader(conn)
	// command sends one IMAP command and returns every line up to its
	// tagged completion.
	command := func(tag, cmd string) []string {
		t.Helper()
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		var lines []string
		for {
			l, err := imap.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: %v", cmd, err)
			}
			l = strings.TrimSuffix(l, "\r\n")
			lines = append(lines, l)
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					t.Fatalf("%s: %q", cmd, l)
				}
				return lines
			}
		}
	}
	imap.ReadString('\n') // greeting
	command("a1", fmt.Sprintf("LOGIN %s %s", alice.Username, alice.Password))
	if sel := command("a2", "SELECT INBOX"); !slices.Contains(sel, "* 2 EXISTS") {
		t.Fatalf("SELECT: %q", sel)
	}

	c := e.dial(t, "pop3s")
	c.login(alice.Username, alice.Password)
	c.mustOK("DELE 1")
	if noop := command("a3", "NOOP"); slices.ContainsFunc(noop, func(l string) bool { return strings.HasSuffix(l, " EXPUNGE") }) {
		t.Fatalf("IMAP saw a POP3 deletion before QUIT: %q", noop)
	}
	c.mustOK("QUIT")
	if noop := command("a4", "NOOP"); !slices.Contains(noop, "* 1 EXPUNGE") {
		t.Fatalf("IMAP NOOP after the POP3 session: %q, want * 1 EXPUNGE", noop)
	}
	if s := command("a5", "UID SEARCH ALL"); !slices.Contains(s, "* SEARCH 2") {
		t.Fatalf("left in INBOX: %q, want UID 2", s)
	}
}
