package imap_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/devenv"
	"github.com/latchmail/latch/internal/imap"
)

func TestGreetingAndCapabilities(t *testing.T) {
	e := start(t)
	tests := []struct {
		name          string
		service       string
		want, notWant []string
	}{
		{"implicit TLS", "imaps", []string{"IMAP4rev2", "IMAP4rev1", "AUTH=PLAIN", "AUTH=SCRAM-SHA-256", "AUTH=SCRAM-SHA-256-PLUS", "SASL-IR", "LITERAL+", "ID", "ENABLE"},
			[]string{"STARTTLS", "LOGINDISABLED", "AUTH=EXTERNAL"}},
		// RFC 8314 4.1, RFC 9051 6.2.3: nothing to log in with before TLS.
		{"cleartext", "imap", []string{"IMAP4rev2", "IMAP4rev1", "STARTTLS", "LOGINDISABLED"}, []string{"AUTH="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, greeting := e.dial(t, tt.service, false)
			if !strings.HasPrefix(greeting, "* OK [CAPABILITY ") {
				t.Fatalf("greeting %q", greeting)
			}
			u := c.ok("CAPABILITY")
			if len(u) != 1 || !strings.HasPrefix(u[0], "* CAPABILITY ") {
				t.Fatalf("CAPABILITY answered %q", u)
			}
			for _, caps := range [][]string{capsOf(greeting), capsOf(u[0])} {
				for _, w := range tt.want {
					if !hasCap(caps, w) {
						t.Errorf("capabilities %q lack %s", caps, w)
					}
				}
				for _, nw := range tt.notWant {
					if hasCap(caps, nw) {
						t.Errorf("capabilities %q offer %s", caps, nw)
					}
				}
			}
		})
	}
}

func TestAfterSTARTTLS(t *testing.T) {
	e := start(t)
	c, _ := e.dial(t, "imap", false)
	c.startTLS(e)
	caps := capsOf(c.ok("CAPABILITY")[0])
	if hasCap(caps, "STARTTLS") || hasCap(caps, "LOGINDISABLED") || !hasCap(caps, "AUTH=PLAIN") {
		t.Fatalf("capabilities after STARTTLS %q: want AUTH= and neither STARTTLS nor LOGINDISABLED", caps)
	}
	if _, tagged := c.do("STARTTLS"); !strings.HasPrefix(tagged, "BAD") {
		t.Errorf("second STARTTLS: %q", tagged)
	}
	user, pass := e.user(0)
	if u := c.ok("LOGIN " + quoteArg(user) + " " + quoteArg(pass)); len(u) != 0 {
		t.Errorf("LOGIN sent untagged %q", u)
	}
}

// Commands pipelined after STARTTLS arrived in cleartext and must not run
// inside TLS (CVE-2011-0411).
func TestSTARTTLSDiscardsPipelinedInput(t *testing.T) {
	e := start(t)
	c, _ := e.dial(t, "imap", false)
	c.send("a STARTTLS\r\nb CAPABILITY")
	if l := c.line(); l != "a OK Begin TLS negotiation now" {
		t.Fatalf("STARTTLS: %q", l)
	}
	tc := tls.Client(c.conn, e.tlsConfig(false))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.send("c NOOP")
	if l := c.line(); l != "c OK NOOP completed" {
		t.Fatalf("first response inside TLS is %q: the injected command ran or capabilities were sent unasked", l)
	}
}

// Without TLS, good and bad credentials get exactly the same answers.
func TestCleartextRefusedAlike(t *testing.T) {
	e := start(t)
	user, pass := e.user(0)
	transcript := func(user, pass string) []string {
		c, _ := e.dial(t, "imap", false)
		_, login := c.do("LOGIN " + quoteArg(user) + " " + quoteArg(pass))
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
		_, authn := c.do("AUTHENTICATE PLAIN " + ir)
		return []string{login, authn}
	}
	right := transcript(user, pass)
	for _, other := range [][]string{transcript(user, "wrong password"), transcript("nobody@localhost", "x")} {
		if !slices.Equal(right, other) {
			t.Fatalf("answers differ:\nright: %q\nwrong: %q", right, other)
		}
	}
	for _, r := range right {
		if !strings.HasPrefix(r, "NO [PRIVACYREQUIRED] ") {
			t.Errorf("cleartext login answered %q", r)
		}
	}
}

func TestLoginFailures(t *testing.T) {
	e := start(t)
	user, pass := e.user(1)
	c, _ := e.dial(t, "imaps", false)
	if _, r := c.do("LOGIN " + quoteArg(user) + " wrong"); !strings.HasPrefix(r, "NO [AUTHENTICATIONFAILED]") {
		t.Errorf("wrong password: %q", r)
	}
	if _, r := c.do("AUTHENTICATE NOPE"); !strings.HasPrefix(r, "NO") {
		t.Errorf("unknown mechanism: %q", r)
	}
	// AUTHENTICATE without SASL-IR, then a cancel (RFC 9051 6.2.2).
	c.n++
	c.send("t99 AUTHENTICATE PLAIN")
	if l := c.line(); l != "+ " {
		t.Fatalf("continuation %q", l)
	}
	c.send("*")
	if _, r := c.until("t99"); !strings.HasPrefix(r, "BAD") {
		t.Errorf("cancelled AUTHENTICATE: %q", r)
	}
	c.send("t100 AUTHENTICATE PLAIN")
	c.line()
	c.send(base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass)))
	if _, r := c.until("t100"); !strings.HasPrefix(r, "OK [CAPABILITY IMAP4rev2") {
		t.Errorf("AUTHENTICATE PLAIN: %q", r)
	}
}

func TestPreauthByClientCertificate(t *testing.T) {
	e := start(t)
	c, greeting := e.dial(t, "imaps", true)
	if !strings.HasPrefix(greeting, "* PREAUTH [CAPABILITY IMAP4rev2") || !strings.Contains(greeting, e.info.ClientFor) {
		t.Fatalf("greeting %q: want PREAUTH for %s (RFC 8314 3.2)", greeting, e.info.ClientFor)
	}
	if _, r := c.do("LOGIN a b"); !strings.HasPrefix(r, "BAD") {
		t.Errorf("LOGIN after PREAUTH: %q", r)
	}
	c.ok("SELECT INBOX")
}

func TestAuthenticateExternal(t *testing.T) {
	e := start(t, func(s *imap.Server) { s.PreauthByCert = false })
	c, greeting := e.dial(t, "imaps", true)
	if !strings.HasPrefix(greeting, "* OK ") || !hasCap(capsOf(greeting), "AUTH=EXTERNAL") {
		t.Fatalf("greeting %q: want OK offering AUTH=EXTERNAL", greeting)
	}
	if _, r := c.do("AUTHENTICATE EXTERNAL ="); !strings.HasPrefix(r, "OK ") {
		t.Fatalf("AUTHENTICATE EXTERNAL: %q", r)
	}
	c.ok("SELECT INBOX")
}

// Malformed input is answered BAD and the session goes on.
func TestMalformedInput(t *testing.T) {
	e := start(t)
	c := e.login(t, 1)
	for _, in := range []string{
		"a1 FOO",
		"a2 SELECT",
		"a3 SELECT \"INBOX",
		"a4 FETCH 1 (FLAGS",
		"a5 LIST \"\" (((((((((((((((x)))))))))))))))",
		"a6 STATUS INBOX (NOPE)",
		"a7 LOGIN x y",
		"a8 FETCH 1 BODY[1.2.NOPE]",
		"a9 APPEND INBOX {99999999999}",
		"a10 UID",
		"a11 CREATE {3+}\r\nabc extra",
		"a12 SEARCH CHARSET",
		"a13 SELECT \"a\\b\"",
		"+ NOOP",
		"a14 ENABLE",
		"a15 STORE 1 FLAGS \\Bogus",
	} {
		c.send(in)
		l := c.line()
		if !strings.Contains(l, " BAD ") && !strings.Contains(l, " NO [TOOBIG]") {
			t.Errorf("%q answered %q; want BAD", in, l)
		}
		if _, r := c.do("NOOP"); !strings.HasPrefix(r, "OK") {
			t.Fatalf("after %q the session answers NOOP with %q", in, r)
		}
	}
	// A literal within the limit is read after the continuation request.
	c.send("b1 CREATE {5}")
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("no continuation for a synchronizing literal: %q", l)
	}
	c.send("lit/1")
	if _, r := c.until("b1"); !strings.HasPrefix(r, "OK") {
		t.Fatalf("CREATE with literal: %q", r)
	}
	c.send("b2 CREATE {5+}\r\nlit/2")
	if _, r := c.until("b2"); !strings.HasPrefix(r, "OK") {
		t.Fatalf("CREATE with LITERAL+: %q", r)
	}
	u := c.ok(`LIST "" lit/*`)
	if !slices.Equal(u, []string{`* LIST (\HasNoChildren) "/" "lit/1"`, `* LIST (\HasNoChildren) "/" "lit/2"`}) {
		t.Errorf("LIST: %q", u)
	}
}

func TestLogout(t *testing.T) {
	e := start(t)
	c, _ := e.dial(t, "imaps", false)
	u, r := c.do("LOGOUT")
	if len(u) != 1 || !strings.HasPrefix(u[0], "* BYE ") || r != "OK LOGOUT completed" {
		t.Fatalf("LOGOUT: %q %q", u, r)
	}
}

func TestIDAndNamespace(t *testing.T) {
	e := start(t)
	c, _ := e.dial(t, "imaps", false)
	u := c.ok(`ID ("name" "test client" "version" "1.0")`)
	if !slices.Equal(u, []string{`* ID ("name" "Latch" "version" "` + imap.Version + `")`}) {
		t.Errorf("ID: %q", u)
	}
	c.ok(`ID NIL`)
	if _, r := c.do("NAMESPACE"); !strings.HasPrefix(r, "BAD") {
		t.Errorf("NAMESPACE before login: %q", r)
	}
	c = e.login(t, 0)
	if u := c.ok("NAMESPACE"); !slices.Equal(u, []string{`* NAMESPACE (("" "/")) NIL NIL`}) {
		t.Errorf("NAMESPACE: %q", u)
	}
	if u := c.ok("ENABLE IMAP4rev2"); !slices.Equal(u, []string{"* ENABLED IMAP4rev2"}) {
		t.Errorf("ENABLE: %q", u)
	}
}

// The engine is in the server's registry, with PREAUTH by certificate on.
func TestRegisteredEngine(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, info, err := devenv.Start(t.TempDir(), true, log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(5 * time.Second)
	e := &env{info: info, ca: x509.NewCertPool(), addrs: info.Listeners}
	pem, err := os.ReadFile(info.CACert)
	if err != nil {
		t.Fatal(err)
	}
	e.ca.AppendCertsFromPEM(pem)
	for _, tt := range []struct {
		service  string
		cert     bool
		greeting string
	}{
		{"imaps", true, "* PREAUTH "},
		{"imap", false, "* OK [CAPABILITY IMAP4rev2 IMAP4rev1 LITERAL+ ID ENABLE SASL-IR STARTTLS LOGINDISABLED]"},
	} {
		c, greeting := e.dial(t, tt.service, tt.cert)
		if !strings.HasPrefix(greeting, tt.greeting) {
			t.Errorf("%s greeting: %q, want %s...", tt.service, greeting, tt.greeting)
		}
		c.ok("LOGOUT") // so that Shutdown need not wait
	}
}

// Shutting the server down ends sessions with BYE, also in IDLE.
func TestShutdownSendsBYE(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, info, err := devenv.Start(t.TempDir(), true, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{info: info, ca: x509.NewCertPool(), addrs: info.Listeners}
	pem, err := os.ReadFile(info.CACert)
	if err != nil {
		t.Fatal(err)
	}
	e.ca.AppendCertsFromPEM(pem)
	plain, _ := e.dial(t, "imaps", false)
	idling, _ := e.dial(t, "imaps", true)
	idling.ok("SELECT INBOX")
	idling.send("i IDLE")
	if l := idling.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	plain.ok("NOOP") // the session is waiting for its next command
	srv.Shutdown(5 * time.Second)
	for _, c := range []*client{plain, idling} {
		if l := c.line(); !strings.HasPrefix(l, "* BYE ") {
			t.Errorf("at shutdown: %q", l)
		}
	}
}

func TestCloseExpungesSilently(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	e.deliver(t, user, "INBOX", "Subject: 1\r\n\r\n1\r\n", "Subject: 2\r\n\r\n2\r\n")
	c := e.login(t, 1)
	c.ok("SELECT INBOX")
	c.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	if u := c.ok("CLOSE"); len(u) != 0 {
		t.Errorf("CLOSE sent %q", u)
	}
	u := c.ok(`LIST "" INBOX RETURN (STATUS (MESSAGES DELETED))`)
	want := []string{`* LIST (\HasNoChildren) "/" "INBOX"`, `* STATUS "INBOX" (MESSAGES 1 DELETED 0)`}
	if !slices.Equal(u, want) {
		t.Errorf("LIST-STATUS after CLOSE: %q, want %q", u, want)
	}
	c.ok("EXAMINE INBOX")
	c.ok("CLOSE") // no expunge under EXAMINE, and no error
}

// RFC 5530 response codes for the outcomes of a login.
func TestLoginResponseCodes(t *testing.T) {
	e := start(t)
	alice, _ := e.user(0)
	bob, bobPass := e.user(1)
	ctx := context.Background()
	a, err := e.store.Account(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	a.MustChangePassword = true
	if err := e.store.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	c, _ := e.dial(t, "imaps", false)
	if _, r := c.do("LOGIN " + quoteArg(bob) + " " + quoteArg(bobPass)); !strings.HasPrefix(r, "NO [EXPIRED] ") {
		t.Errorf("password change required: %q", r)
	}
	// The harness locks an account after 4 failures.
	var last string
	for i := range 5 {
		if i%2 == 0 {
			c, _ = e.dial(t, "imaps", false)
		}
		_, last = c.do("LOGIN " + quoteArg(alice) + " wrong")
	}
	if !strings.HasPrefix(last, "NO [UNAVAILABLE] ") {
		t.Errorf("locked account: %q", last)
	}
	// Three failures end the session.
	c, _ = e.dial(t, "imaps", false)
	for range 3 {
		c.do("LOGIN nobody wrong")
	}
	if l := c.line(); !strings.HasPrefix(l, "* BYE ") {
		t.Errorf("after three failures: %q", l)
	}
}
