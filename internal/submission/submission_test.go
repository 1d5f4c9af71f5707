package submission_test

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/mail"
	"net/smtp"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/submission"
	"github.com/latchmail/latch/internal/tlsgate"
	"github.com/xdg-go/scram"
)

func TestEHLOKeywordsDependOnTLS(t *testing.T) {
	e := shared(t)
	common := []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "CHUNKING"}
	tests := []struct {
		name       string
		dial       func(t *testing.T) *client
		verb       string
		auth, stls bool
	}{
		{"submissions", func(t *testing.T) *client { return e.dial(t, "submissions") }, "EHLO", true, false},
		{"submission before STARTTLS", func(t *testing.T) *client { return e.dial(t, "submission") }, "EHLO", false, true},
		{"submission after STARTTLS", func(t *testing.T) *client {
			c := e.dial(t, "submission")
			c.startTLS(e)
			return c
		}, "EHLO", true, false},
		{"lmtp", func(t *testing.T) *client { return e.dial(t, "lmtp") }, "LHLO", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kw := tt.dial(t).ehlo(tt.verb)
			for _, k := range common {
				if !has(kw, k) {
					t.Errorf("EHLO lacks %s: %q", k, kw)
				}
			}
			if has(kw, "AUTH") != tt.auth || has(kw, "STARTTLS") != tt.stls {
				t.Errorf("EHLO = %q: want AUTH %v, STARTTLS %v (RFC 8314 4.1)", kw, tt.auth, tt.stls)
			}
			if tt.auth && !has(kw, "AUTH SCRAM-SHA-256-PLUS") {
				t.Errorf("EHLO over TLS = %q: want SCRAM-SHA-256-PLUS first", kw)
			}
			if has(kw, "AUTH") && strings.Contains(strings.Join(kw, " "), "EXTERNAL") {
				t.Errorf("EHLO = %q: EXTERNAL without a client certificate", kw)
			}
		})
	}
}

// RFC 8314 4.1 and the auth package's invariant: without TLS, AUTH and
// MAIL get the same refusal whether the credentials are right or wrong.
func TestCleartextRefusedAlike(t *testing.T) {
	e := shared(t)
	alice := e.alice()
	for _, tt := range []struct{ name, cmd string }{
		{"right password", "AUTH PLAIN " + plainResponse(alice.Username, alice.Password)},
		{"wrong password", "AUTH PLAIN " + plainResponse(alice.Username, "wrong")},
		{"unknown user", "AUTH PLAIN " + plainResponse("nobody@localhost", "wrong")},
		{"mail without auth", "MAIL FROM:<" + alice.Address + ">"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(t, "submission")
			c.ehlo("EHLO")
			if r := c.cmd(tt.cmd); r.String() != "530 5.7.0 Must issue a STARTTLS command first" {
				t.Errorf("got %v", r)
			}
		})
	}
}

// An account with a legacy allowance may still log in without TLS, and
// then submit.
func TestLegacyCleartextAllowance(t *testing.T) {
	e := start(t)
	bob := e.bob()
	e.update(t, bob.Username, func(a *store.Account) { a.LegacyUntil = time.Now().Add(time.Hour) })
	c := e.dial(t, "submission")
	c.ehlo("EHLO")
	c.expect("AUTH PLAIN "+plainResponse(bob.Username, bob.Password), "235 2.7.0")
	c.expect("MAIL FROM:<"+bob.Address+">", "250 2.1.0")
}

// CVE-2011-0411: a command pipelined after STARTTLS, in the clear, is not
// executed, and the session restarts under TLS (RFC 3207 4.2).
func TestSTARTTLSDiscardsPipelinedInput(t *testing.T) {
	e := shared(t)
	c := e.dial(t, "submission")
	c.ehlo("EHLO")
	c.send("STARTTLS", "QUIT")
	if r := c.reply(); r.String() != "220 2.0.0 Ready to start TLS" {
		t.Fatalf("STARTTLS: %v", r)
	}
	tc := tls.Client(c.conn, e.tlsConfig())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	c.expect("MAIL FROM:<"+e.alice().Address+">", "503 5.5.1") // EHLO needed again
	c.ehlo("EHLO")
	c.expect("STARTTLS", "503 5.5.1")
}

// net/smtp as an independent client: STARTTLS, AUTH PLAIN, a message
// with 8BITMIME, read back byte-exact below the Received field.
func TestNetSMTPClient(t *testing.T) {
	e := shared(t)
	alice, bob := e.alice(), e.bob()
	newForBob := e.since(t, bob.Username)
	conn, err := net.Dial("tcp", e.info.Listeners["submission"])
	if err != nil {
		t.Fatal(err)
	}
	cl, err := smtp.NewClient(conn, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.StartTLS(e.tlsConfig()); err != nil {
		t.Fatal(err)
	}
	if err := cl.Auth(smtp.PlainAuth("", alice.Username, alice.Password, "localhost")); err != nil {
		t.Fatal(err)
	}
	msg := message([]string{
		"From: Alice <" + alice.Address + ">",
		"To: " + bob.Address,
		"Subject: caf\u00e9",
		"Date: Mon, 23 Nov 2026 10:00:00 +0000",
		"Message-ID: <one@localhost>",
	}, "Hello Bob,\r\n.leading dot\r\n..two dots\r\n\u00e9t\u00e9\r\n")
	if err := cl.Mail(alice.Address); err != nil {
		t.Fatal(err)
	}
	if err := cl.Rcpt(bob.Address); err != nil {
		t.Fatal(err)
	}
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cs, _ := cl.TLSConnectionState()
	if err := cl.Quit(); err != nil {
		t.Fatal(err)
	}
	got := newForBob()
	if len(got) != 1 {
		t.Fatalf("bob has %d new messages, want 1", len(got))
	}
	received, rest := splitReceived(t, got[0])
	if rest != msg {
		t.Errorf("stored message below Received:\n%q\nwant\n%q", rest, msg)
	}
	checkReceived(t, received, "ESMTPSA", bob.Address, cs)
}

// receivedRE is RFC 5321 4.4's Stamp as this server writes it, with RFC
// 8314 4.3's tls-cipher-clause among the additional registered clauses,
// after "for" and before ";".
var receivedRE = regexp.MustCompile(`^from ([A-Za-z0-9.-]+|\[[^\]]+\]) \((\[[^\]]+\])\) by localhost \(Latch\) with ([A-Z]+) id ([A-Z2-7]{13})` +
	`(?: for <([^>]+)>)?` +
	`(?: tls ([A-Za-z][A-Za-z0-9_]*|0x[0-9A-Fa-f]{4})(?: group ([A-Za-z][A-Za-z0-9_-]*))?)?` +
	`; (.+)$`)

func checkReceived(t *testing.T, received, with, forRcpt string, cs tls.ConnectionState) {
	t.Helper()
	m := receivedRE.FindStringSubmatch(received)
	if m == nil {
		t.Fatalf("Received: %q does not match RFC 5321 4.4 / RFC 8314 4.3", received)
	}
	if m[1] != "client.example" && m[1] != "localhost" {
		t.Errorf("Received from %q: want the EHLO name", m[1])
	}
	if m[2] != "[127.0.0.1]" {
		t.Errorf("Received TCP-info %q, want [127.0.0.1]", m[2])
	}
	if m[3] != with {
		t.Errorf("Received with %q, want %q (RFC 3848)", m[3], with)
	}
	if m[5] != forRcpt {
		t.Errorf("Received for %q, want %q", m[5], forRcpt)
	}
	wantCipher, wantGroup := "", ""
	if cs.HandshakeComplete {
		wantCipher, wantGroup = tls.CipherSuiteName(cs.CipherSuite), tlsgate.GroupName(cs.CurveID)
	}
	if m[6] != wantCipher || m[7] != wantGroup {
		t.Errorf("Received tls %q group %q, want %q group %q", m[6], m[7], wantCipher, wantGroup)
	}
	if _, err := mail.ParseDate(m[8]); err != nil {
		t.Errorf("Received date %q: %v", m[8], err)
	}
}

// RFC 6409 8: Date and Message-ID are added when missing; nothing else
// of the message changes.
func TestFixups(t *testing.T) {
	e := shared(t)
	alice := e.alice()
	newForAlice := e.since(t, alice.Username)
	msg := message([]string{"From: " + alice.Address, "Subject: no date"}, "body\r\n")
	c := e.login(t, alice)
	c.expect("MAIL FROM:<"+alice.Address+">", "250 2.1.0")
	c.expect("RCPT TO:<"+alice.Address+">", "250 2.1.5")
	if r := c.sendData(msg); r.code != 250 || !strings.HasPrefix(r.text(), "2.0.0 Ok: queued as ") {
		t.Fatalf("DATA: %v", r)
	}
	got := newForAlice()
	if len(got) != 1 {
		t.Fatalf("%d new messages", len(got))
	}
	_, rest := splitReceived(t, got[0])
	m, err := mail.ReadMessage(strings.NewReader(rest))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if id := m.Header.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@localhost>") {
		t.Errorf("Message-ID %q", id)
	}
	if !strings.HasSuffix(rest, msg) {
		t.Errorf("original message altered: %q", rest)
	}
}

// RFC 6409 6.1: the envelope sender and every From: address must be the
// authenticated account's (address or alias, any case).
func TestSenderAuthorization(t *testing.T) {
	e := shared(t)
	alice, bob := e.alice(), e.bob()
	if a := e.account(t, alice.Username); !slices.Contains(a.Aliases, "al@localhost") {
		e.update(t, alice.Username, func(a *store.Account) { a.Aliases = append(a.Aliases, "al@localhost") })
	}
	newForBob := e.since(t, bob.Username)
	tests := []struct {
		name      string
		envelope  string
		from      string // "" for no From: field
		wantMail  string
		wantFinal string
	}{
		{"own address", alice.Address, alice.Address, "250 2.1.0", "250 2.0.0"},
		{"alias, other case", "AL@LOCALHOST", "Al <al@Localhost>", "250 2.1.0", "250 2.0.0"},
		{"null sender", "", alice.Address, "250 2.1.0", "250 2.0.0"},
		{"foreign envelope", bob.Address, alice.Address, "553 5.7.1", ""},
		{"foreign From", alice.Address, bob.Address, "250 2.1.0", "553 5.7.1 From: address <" + bob.Address + "> is not yours"},
		{"one foreign From of two", alice.Address, alice.Address + ", " + bob.Address, "250 2.1.0", "553 5.7.1"},
		{"no From", alice.Address, "", "250 2.1.0", "550 5.6.0"},
		{"malformed From", alice.Address, "<<<", "250 2.1.0", "550 5.6.0"},
	}
	c := e.login(t, alice)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			if r := c.cmd("MAIL FROM:<" + tt.envelope + ">"); !strings.HasPrefix(r.String(), tt.wantMail) {
				t.Fatalf("MAIL: %v, want %s", r, tt.wantMail)
			}
			if tt.wantFinal == "" {
				return
			}
			c.expect("RCPT TO:<"+bob.Address+">", "250 2.1.5")
			var fields []string
			if tt.from != "" {
				fields = append(fields, "From: "+tt.from)
			}
			fields = append(fields, "Subject: test")
			if r := c.sendData(message(fields, "x\r\n")); !strings.HasPrefix(r.String(), tt.wantFinal) {
				t.Errorf("end of data: %v, want %s", r, tt.wantFinal)
			}
		})
	}
	if n := len(newForBob()); n != 3 {
		t.Errorf("bob received %d messages, want 3", n)
	}
}

func TestRecipients(t *testing.T) {
	e := shared(t)
	alice, bob := e.alice(), e.bob()
	newForBob := e.since(t, bob.Username)
	c := e.login(t, alice)
	c.expect("MAIL FROM:<"+alice.Address+">", "250")
	for _, tt := range []struct{ rcpt, want string }{
		{"<" + bob.Address + ">", "250 2.1.5"},
		{"<BOB@LOCALHOST>", "250 2.1.5"},
		{"<nobody@localhost>", "550 5.1.1"},
		{"<someone@example.com>", "550 5.7.1 Delivery to other domains is not available yet"},
		{"<>", "501 5.5.4"},
		{"<\u00e9@localhost>", "501 5.5.4"}, // UTF-8 needs MAIL ... SMTPUTF8
		{"<" + bob.Address + "> NOTIFY=NEVER", "555 5.5.4"},
	} {
		c.expect("RCPT TO:"+tt.rcpt, tt.want)
	}
	for range 98 {
		c.expect("RCPT TO:<"+bob.Address+">", "250 2.1.5")
	}
	c.expect("RCPT TO:<"+bob.Address+">", "452 4.5.3") // the 101st
	if r := c.sendData(message([]string{"From: " + alice.Address}, "hi\r\n")); r.code != 250 {
		t.Fatalf("DATA: %v", r)
	}
	if n := len(newForBob()); n != 1 {
		t.Errorf("bob received %d copies, want 1", n)
	}
}

func TestSizeLimits(t *testing.T) {
	e := shared(t)
	alice := e.alice()
	newForAlice := e.since(t, alice.Username)
	c := e.login(t, alice)
	c.expect("MAIL FROM:<"+alice.Address+"> SIZE=999999999999", "552 5.3.4")
	c.expect("MAIL FROM:<"+alice.Address+"> SIZE=1000", "250 2.1.0")
	c.expect("RCPT TO:<"+alice.Address+">", "250")
	line := strings.Repeat("x", 998) + "\r\n"
	big := message([]string{"From: " + alice.Address}, strings.Repeat(line, 36<<10)) // 36 MiB
	if r := c.sendData(big); !strings.HasPrefix(r.String(), "552 5.3.4") {
		t.Fatalf("oversize DATA: %v", r)
	}
	c.expect("NOOP", "250 2.0.0") // still in step
	if n := len(newForAlice()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

func TestLineLimits(t *testing.T) {
	e := shared(t)
	alice := e.alice()
	newForAlice := e.since(t, alice.Username)
	c := e.login(t, alice)
	c.expect("NOOP "+strings.Repeat("a", 600), "500 5.5.2")
	c.expect("NOOP "+strings.Repeat("a", 20000), "500 5.5.2")
	c.expect("NOOP", "250 2.0.0")
	for _, tt := range []struct{ name, data, want string }{
		{"text line over 1000 octets", "From: " + alice.Address + "\r\n\r\n" + strings.Repeat("z", 999) + "\r\n", "500 5.5.2"},
		{"text line over the read buffer", "From: " + alice.Address + "\r\n\r\n" + strings.Repeat("z", 9000) + "\r\n", "500 5.5.2"},
		{"bare LF", "From: " + alice.Address + "\r\n\r\nsmuggled\n.\nMAIL FROM:<x@y>\r\n", "554 5.6.0"},
		{"bare CR", "From: " + alice.Address + "\r\n\r\na\rb\r\n", "554 5.6.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.expect("MAIL FROM:<"+alice.Address+">", "250")
			c.expect("RCPT TO:<"+alice.Address+">", "250")
			c.expect("DATA", "354")
			c.send(tt.data + ".")
			if r := c.reply(); !strings.HasPrefix(r.String(), tt.want) {
				t.Errorf("got %v, want %s", r, tt.want)
			}
			c.expect("NOOP", "250 2.0.0")
		})
	}
	if n := len(newForAlice()); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

func TestCommandErrors(t *testing.T) {
	e := shared(t)
	alice := e.alice()
	// Two sessions, each under the limit of bad commands.
	sessions := [][]struct{ cmd, want string }{{
		{"MAIL FROM:<" + alice.Address + ">", "503 5.5.1"}, // before EHLO
		{"EHLO", "501 5.5.4"},
		{"EHLO bad_name!", "501 5.5.4"},
		{"EHLO client.example", "250 "},
		{"MAIL FROM:<" + alice.Address + ">", "530 5.7.0 Authentication required"},
		{"AUTH", "501 5.5.4"},
		{"AUTH NOSUCH", "504 5.5.4"},
		{"AUTH PLAIN !!!", "501 5.5.2"},
		{"AUTH PLAIN " + plainResponse(alice.Username, "wrong"), "535 5.7.8"},
		{"AUTH PLAIN " + plainResponse(alice.Username, alice.Password), "235 2.7.0"},
		{"AUTH PLAIN " + plainResponse(alice.Username, alice.Password), "503 5.5.1"},
		{"RCPT TO:<" + alice.Address + ">", "503 5.5.1"},
		{"DATA", "503 5.5.1"},
		{"STARTTLS", "503 5.5.1"},
		{"QUIT", "221 2.0.0"},
	}, {
		{"EHLO client.example", "250 "},
		{"AUTH PLAIN " + plainResponse(alice.Username, alice.Password), "235 2.7.0"},
		{"MAIL FROM:" + alice.Address, "501 5.5.4"},
		{"MAIL FROM:<" + alice.Address, "501 5.5.4"},
		{"MAIL TO:<" + alice.Address + ">", "501 5.5.4"},
		{"MAIL FROM:<" + alice.Address + "> BODY=BINARYMIME", "555 5.5.4"},
		{"MAIL FROM:<" + alice.Address + "> FOO", "555 5.5.4"},
		{"MAIL FROM:<a\u00e9@localhost>", "501 5.5.4"},
		{"MAIL FROM:<@relay.example:" + alice.Address + "> BODY=8BITMIME SMTPUTF8", "250 2.1.0"},
		{"MAIL FROM:<" + alice.Address + ">", "503 5.5.1"},
		{"DATA x", "501 5.5.4"},
		{"DATA", "554 5.5.1"}, // no recipients: the transaction ends
		{"RCPT TO:<" + alice.Address + ">", "503 5.5.1"},
		{"BDAT", "501 5.5.4"},
		{"BDAT x LAST", "501 5.5.4"},
		{"RSET x", "501 5.5.4"},
		{"RSET", "250 2.0.0"},
		{"VRFY " + alice.Address, "252 2.5.0"},
		{"EXPN staff", "502 5.5.1"},
		{"HELP", "214 2.0.0"},
		{"NOOP", "250 2.0.0"},
		{"LHLO client.example", "500 5.5.2"},
		{"FROB", "500 5.5.2"},
		{"QUIT", "221 2.0.0"},
	}}
	for _, cmds := range sessions {
		c := e.dial(t, "submissions")
		for _, tt := range cmds {
			c.expect(tt.cmd, tt.want)
		}
	}
}

func TestTooManyErrors(t *testing.T) {
	e := shared(t)
	c := e.dial(t, "submissions")
	for range 19 {
		c.expect("FROB", "500 5.5.2")
	}
	c.expect("FROB", "421 4.7.0")
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("connection still open after 421")
	}
}

func TestTooManyMessages(t *testing.T) {
	e := shared(t)
	alice := e.alice()
	c := e.login(t, alice)
	refused := "From: " + alice.Address + "\r\n\r\nbare\nLF\r\n." // cheap: read, refused, not stored
	for range 100 {
		c.send("MAIL FROM:<"+alice.Address+">", "RCPT TO:<"+alice.Address+">", "DATA")
		for _, want := range []string{"250 2.1.0", "250 2.1.5", "354 "} {
			if r := c.reply(); !strings.HasPrefix(r.String(), want) {
				t.Fatalf("got %v, want %s", r, want)
			}
		}
		c.send(refused)
		if r := c.reply(); r.code != 554 {
			t.Fatalf("got %v", r)
		}
	}
	c.expect("MAIL FROM:<"+alice.Address+">", "421 4.7.0")
}

func TestPipelining(t *testing.T) {
	e := shared(t)
	alice, bob := e.alice(), e.bob()
	newForBob := e.since(t, bob.Username)
	c := e.login(t, alice)
	c.send("RSET", "MAIL FROM:<"+alice.Address+"> BODY=8BITMIME", "RCPT TO:<nobody@localhost>", "RCPT TO:<"+bob.Address+">", "DATA")
	for _, want := range []string{"250 2.0.0", "250 2.1.0", "550 5.1.1", "250 2.1.5", "354 "} {
		if r := c.reply(); !strings.HasPrefix(r.String(), want) {
			t.Fatalf("got %v, want %s", r, want)
		}
	}
	c.send("From: "+alice.Address+"\r\n\r\nhi\r\n.", "MAIL FROM:<"+alice.Address+">", "RCPT TO:<nobody@localhost>", "DATA", "NOOP")
	for _, want := range []string{"250 2.0.0 Ok: queued as ", "250 2.1.0", "550 5.1.1", "554 5.5.1", "250 2.0.0"} {
		if r := c.reply(); !strings.HasPrefix(r.String(), want) {
			t.Fatalf("got %v, want %s", r, want)
		}
	}
	if n := len(newForBob()); n != 1 {
		t.Errorf("bob has %d new messages, want 1", n)
	}
}

// RFC 3030: chunks are taken as they are, and always read, even when
// refused, so that their content is never taken for commands.
func TestBDAT(t *testing.T) {
	e := shared(t)
	alice, bob := e.alice(), e.bob()
	newForBob := e.since(t, bob.Username)
	c := e.login(t, alice)
	c.send("BDAT 6")
	c.write("QUIT\r\n") // a chunk, not a command
	if r := c.reply(); !strings.HasPrefix(r.String(), "503 5.5.1") {
		t.Fatalf("BDAT without MAIL: %v", r)
	}
	c.expect("NOOP", "250 2.0.0")

	msg := message([]string{"From: " + alice.Address, "Date: Mon, 23 Nov 2026 10:00:00 +0000", "Message-ID: <b@localhost>"}, ".dot stays\r\nno final CRLF")
	c.expect("MAIL FROM:<"+alice.Address+">", "250")
	c.expect("RCPT TO:<"+bob.Address+">", "250")
	c.send("BDAT 10")
	c.write(msg[:10])
	if r := c.reply(); r.String() != "250 2.0.0 10 octets received" {
		t.Fatalf("BDAT 10: %v", r)
	}
	c.expect("DATA", "503 5.5.1")
	c.send("BDAT " + strconv.Itoa(len(msg)-10) + " LAST")
	c.write(msg[10:])
	if r := c.reply(); r.code != 250 {
		t.Fatalf("BDAT LAST: %v", r)
	}
	got := newForBob()
	if len(got) != 1 {
		t.Fatalf("%d new messages", len(got))
	}
	if _, rest := splitReceived(t, got[0]); rest != msg {
		t.Errorf("stored %q, want %q", rest, msg)
	}
}

func TestSASL(t *testing.T) {
	e := start(t)
	alice := e.alice()
	t.Run("PLAIN on the next line", func(t *testing.T) {
		c := e.dial(t, "submissions")
		c.ehlo("EHLO")
		c.expect("AUTH PLAIN", "334 ")
		c.expect(plainResponse(alice.Username, alice.Password), "235 2.7.0")
	})
	t.Run("LOGIN", func(t *testing.T) {
		c := e.dial(t, "submissions")
		c.ehlo("EHLO")
		c.expect("AUTH LOGIN", "334 ")
		c.expect(base64.StdEncoding.EncodeToString([]byte(alice.Username)), "334 ")
		c.expect(base64.StdEncoding.EncodeToString([]byte(alice.Password)), "235 2.7.0")
	})
	t.Run("cancel", func(t *testing.T) {
		c := e.dial(t, "submissions")
		c.ehlo("EHLO")
		c.expect("AUTH LOGIN", "334 ")
		c.expect("*", "501 5.7.0")
		c.expect("AUTH PLAIN =", "501 5.5.2") // empty PLAIN response is malformed
	})
	t.Run("SCRAM-SHA-256 final message as a challenge", func(t *testing.T) {
		c := e.dial(t, "submissions")
		c.ehlo("EHLO")
		sc, err := scram.SHA256.NewClient(alice.Username, alice.Password, "")
		if err != nil {
			t.Fatal(err)
		}
		conv := sc.NewConversation()
		first, _ := conv.Step("")
		r := c.expect("AUTH SCRAM-SHA-256 "+base64.StdEncoding.EncodeToString([]byte(first)), "334 ")
		for r.code == 334 {
			ch, err := base64.StdEncoding.DecodeString(r.text())
			if err != nil {
				t.Fatal(err)
			}
			resp, err := conv.Step(string(ch))
			if err != nil {
				t.Fatalf("client step: %v", err)
			}
			if conv.Done() {
				resp = "" // RFC 4954 4: answer the server-final with an empty line
			}
			r = c.cmd(base64.StdEncoding.EncodeToString([]byte(resp)))
		}
		if r.code != 235 || !conv.Valid() {
			t.Fatalf("got %v, server verified %v", r, conv.Valid())
		}
	})
	t.Run("password change required", func(t *testing.T) {
		bob := e.bob()
		e.update(t, bob.Username, func(a *store.Account) { a.MustChangePassword = true })
		c := e.dial(t, "submissions")
		c.ehlo("EHLO")
		c.expect("AUTH PLAIN "+plainResponse(bob.Username, bob.Password), "535 5.7.8 The password must be changed")
	})
}

// RFC 8314 4.2: the dev client certificate maps to alice, so EXTERNAL is
// offered on 465 and logs her in.
func TestExternalWithClientCertificate(t *testing.T) {
	e := shared(t)
	pair, err := tls.LoadX509KeyPair(e.info.ClientCert, e.info.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.tlsConfig()
	cfg.Certificates = []tls.Certificate{pair}
	c := e.dialTLS(t, "submissions", cfg)
	if kw := c.ehlo("EHLO"); !has(kw, "AUTH EXTERNAL") {
		t.Fatalf("EHLO = %q: want EXTERNAL first", kw)
	}
	c.expect("AUTH EXTERNAL =", "235 2.7.0")
	c.expect("MAIL FROM:<"+e.info.ClientFor+">", "250 2.1.0")
}

// RFC 2033: LHLO, no AUTH, one reply per accepted recipient after DATA.
func TestLMTP(t *testing.T) {
	e := shared(t)
	alice, bob := e.alice(), e.bob()
	newFor := map[string]func() []string{alice.Username: e.since(t, alice.Username), bob.Username: e.since(t, bob.Username)}
	c := e.dial(t, "lmtp")
	c.expect("EHLO client.example", "500 5.5.1")
	c.expect("MAIL FROM:<x@example.com>", "503 5.5.1")
	c.ehlo("LHLO")
	c.expect("AUTH PLAIN "+plainResponse(alice.Username, alice.Password), "500 5.5.2")
	c.expect("STARTTLS", "502 5.5.1")
	c.expect("MAIL FROM:<sender@example.com>", "250 2.1.0")
	c.expect("RCPT TO:<"+alice.Address+">", "250 2.1.5")
	c.expect("RCPT TO:<nobody@localhost>", "550 5.1.1")
	c.expect("RCPT TO:<"+bob.Address+">", "250 2.1.5")
	msg := message([]string{"From: sender@example.com", "Subject: lmtp"}, "hello\r\n")
	c.expect("DATA", "354 ")
	c.send(msg + ".")
	for range 2 {
		if r := c.reply(); !strings.HasPrefix(r.String(), "250 2.0.0 Ok: queued as ") {
			t.Fatalf("per-recipient reply %v", r)
		}
	}
	c.expect("NOOP", "250 2.0.0")

	// BDAT LAST, refused for its size: one reply per recipient all the same.
	c.expect("MAIL FROM:<sender@example.com> SIZE=10", "250 2.1.0")
	c.expect("RCPT TO:<"+alice.Address+">", "250 2.1.5")
	c.expect("RCPT TO:<"+bob.Address+">", "250 2.1.5")
	chunk := strings.Repeat("z", submission.DefaultMaxMessageSize+1)
	c.send("BDAT " + strconv.Itoa(len(chunk)) + " LAST")
	c.write(chunk)
	for range 2 {
		if r := c.reply(); !strings.HasPrefix(r.String(), "552 5.3.4") {
			t.Fatalf("per-recipient reply %v", r)
		}
	}
	c.expect("NOOP", "250 2.0.0")

	for _, who := range []string{alice.Username, bob.Username} {
		got := newFor[who]()
		if len(got) != 1 {
			t.Fatalf("%s has %d new messages", who, len(got))
		}
		received, rest := splitReceived(t, got[0])
		if rest != msg {
			t.Errorf("stored %q, want %q (no fix-ups by LMTP)", rest, msg)
		}
		checkReceived(t, received, "LMTP", "", tls.ConnectionState{})
	}
}

func TestShutdown(t *testing.T) {
	e := start(t)
	c := e.dial(t, "submissions")
	c.ehlo("EHLO")
	go e.stop()
	if r := c.reply(); r.String() != "421 4.3.2 localhost Server shutting down" {
		t.Errorf("got %v", r)
	}
}
