package imap_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/admin"
	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/config"
	"github.com/latchmail/latch/internal/devenv"
	"github.com/latchmail/latch/internal/imap"
	"github.com/latchmail/latch/internal/listener"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/store/sqlite"
	"github.com/latchmail/latch/internal/tlsgate"
)

// env is an IMAP server in this process on 127.0.0.1: an implicit-TLS
// listener that asks for client certificates and a STARTTLS one, over a
// fresh store holding the dev accounts.
type env struct {
	srv   *imap.Server
	store store.Store
	info  *devenv.Info
	ca    *x509.CertPool
	addrs map[string]string // "imaps", "imap"
}

// fixture is what every test's server shares: the dev certificates and
// accounts, their password hashes computed once (argon2id and SCRAM cost
// most of a start, more so under -race).
var fixture struct {
	once     sync.Once
	dir      string
	cfg      *config.Config
	info     *devenv.Info
	accounts []store.Account
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture.dir != "" {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

func loadFixture() error {
	fixture.once.Do(func() {
		f := &fixture
		if f.dir, f.err = os.MkdirTemp("", "latch-imap-test"); f.err != nil {
			return
		}
		// pop3 only so that the configuration checks; its listeners are
		// not run.
		if f.cfg, f.info, f.err = devenv.Prepare(f.dir, func(s string) bool { return s == "pop3" }, true); f.err != nil {
			return
		}
		for _, a := range f.info.Accounts {
			acct := store.Account{Name: a.Username, Address: a.Address, Created: time.Now()}
			if f.err = admin.SetPassword(&acct, a.Password, time.Now()); f.err != nil {
				return
			}
			f.accounts = append(f.accounts, acct)
		}
	})
	return fixture.err
}

func start(t *testing.T, configure ...func(*imap.Server)) *env {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if err := loadFixture(); err != nil {
		t.Fatal(err)
	}
	cfg, info := fixture.cfg, fixture.info
	st, err := sqlite.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, tmpl := range fixture.accounts {
		a := tmpl
		if err := st.CreateAccount(ctx, &a); err != nil {
			t.Fatal(err)
		}
		for _, mb := range admin.DefaultMailboxes {
			if _, err := st.CreateMailbox(ctx, a.ID, mb.Name, mb.SpecialUse); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := admin.Run(ctx, st, admin.Request{Args: []string{"cert", "add", info.ClientFor, info.ClientCert}}, io.Discard); err != nil {
		t.Fatal(err)
	}
	au, err := auth.New(st, auth.Options{FailureDelay: time.Millisecond, MaxFailuresUser: 4, LockFor: time.Minute}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(au.Close)
	c := cfg.TLS.Certificates[0]
	gate, err := tlsgate.New(tlsgate.Options{
		Certificates: []tlsgate.KeyPair{{CertFile: c.Cert, KeyFile: c.Key}},
		ClientCA:     info.CACert, Accounts: st, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &imap.Server{Hostname: "localhost", Store: st, Auth: au, PreauthByCert: true}
	for _, f := range configure {
		f(srv)
	}
	ls := &listener.Server{Gate: gate, Log: log, Listeners: []listener.Config{
		{Service: "imap", Address: "127.0.0.1:0", Mode: tlsgate.Implicit, Handler: srv,
			Policy: tlsgate.Policy{ALPN: "imap", ClientCerts: true}},
		{Service: "imap", Address: "127.0.0.1:0", Mode: tlsgate.StartTLS, Handler: srv,
			Policy: tlsgate.Policy{ALPN: "imap"}},
	}}
	if err := ls.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ls.Shutdown(ctx)
	})
	pem, err := os.ReadFile(info.CACert)
	if err != nil {
		t.Fatal(err)
	}
	ca := x509.NewCertPool()
	ca.AppendCertsFromPEM(pem)
	a := ls.Addrs()
	return &env{srv: srv, store: st, info: info, ca: ca,
		addrs: map[string]string{"imaps": a[0].String(), "imap": a[1].String()}}
}

func (e *env) tlsConfig(withCert bool) *tls.Config {
	cfg := &tls.Config{RootCAs: e.ca, ServerName: "localhost", NextProtos: []string{"imap"}}
	if withCert {
		cert, err := tls.LoadX509KeyPair(e.info.ClientCert, e.info.ClientKey)
		if err != nil {
			panic(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// user returns the login name and password of dev account i (0: alice,
// who holds the client certificate).
func (e *env) user(i int) (string, string) {
	return e.info.Accounts[i].Username, e.info.Accounts[i].Password
}

// deliver appends messages to a mailbox of an account, as delivery would.
func (e *env) deliver(t *testing.T, user, mailbox string, bodies ...string) {
	t.Helper()
	ctx := context.Background()
	a, err := e.store.Account(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	mb, err := e.store.MailboxByName(ctx, a.ID, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bodies {
		m := store.NewMessage{Body: strings.NewReader(b), InternalDate: time.Date(1996, 7, 17, 2, 44, 25, 0, time.FixedZone("", -7*3600))}
		if _, err := e.store.Append(ctx, mb.ID, m); err != nil {
			t.Fatal(err)
		}
	}
}

// client is a line-level IMAP client for conversation tests.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int // tag counter
}

// dial connects to "imaps" (TLS; with the client certificate if cert) or
// "imap" (cleartext) and returns the client and the greeting.
func (e *env) dial(t *testing.T, service string, cert bool) (*client, string) {
	t.Helper()
	var conn net.Conn
	var err error
	if service == "imaps" {
		conn, err = tls.Dial("tcp", e.addrs[service], e.tlsConfig(cert))
	} else {
		conn, err = net.Dial("tcp", e.addrs[service])
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	return c, c.line()
}

// login dials imaps and logs in as dev account i.
func (e *env) login(t *testing.T, i int) *client {
	t.Helper()
	c, _ := e.dial(t, "imaps", false)
	user, pass := e.user(i)
	c.ok("LOGIN " + quoteArg(user) + " " + quoteArg(pass))
	return c
}

func quoteArg(s string) string { return strconv.Quote(s) }

// line reads one response line; a literal it announces is read into it.
func (c *client) line() string {
	c.t.Helper()
	var out strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (after %q)", err, out.String()+l)
		}
		if !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("line %q does not end with CRLF", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		out.WriteString(l)
		i := strings.LastIndexByte(l, '{')
		if i < 0 || !strings.HasSuffix(l, "}") {
			return out.String()
		}
		n, err := strconv.Atoi(l[i+1 : len(l)-1])
		if err != nil {
			return out.String()
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.t.Fatal(err)
		}
		out.WriteString("\r\n")
		out.Write(buf)
	}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// do sends a command with a fresh tag and returns the untagged responses
// and the tagged one.
func (c *client) do(cmd string) (untagged []string, tagged string) {
	c.t.Helper()
	c.n++
	tag := fmt.Sprintf("t%d", c.n)
	c.send(tag + " " + cmd)
	return c.until(tag)
}

// until reads responses up to the one tagged tag.
func (c *client) until(tag string) (untagged []string, tagged string) {
	c.t.Helper()
	for {
		l := c.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// ok runs a command that must succeed and returns its untagged responses.
func (c *client) ok(cmd string) []string {
	c.t.Helper()
	u, tagged := c.do(cmd)
	if !strings.HasPrefix(tagged, "OK") {
		c.t.Fatalf("%s: %q (untagged %q)", cmd, tagged, u)
	}
	return u
}

// startTLS runs STARTTLS and the handshake.
func (c *client) startTLS(e *env) {
	c.t.Helper()
	c.ok("STARTTLS")
	tc := tls.Client(c.conn, e.tlsConfig(false))
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
}

func capsOf(line string) []string {
	if i := strings.Index(line, "CAPABILITY "); i >= 0 {
		s := line[i+len("CAPABILITY "):]
		if j := strings.IndexByte(s, ']'); j >= 0 {
			s = s[:j]
		}
		return strings.Fields(s)
	}
	return nil
}

func hasCap(caps []string, prefix string) bool {
	for _, c := range caps {
		if c == prefix || strings.HasSuffix(prefix, "=") && strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

func mustAccount(t *testing.T, e *env, user string) store.AccountID {
	t.Helper()
	a, err := e.store.Account(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}
