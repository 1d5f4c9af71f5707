package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fetchmail's exit statuses (fetchmail(1), EXIT CODES).
const (
	fetchmailGot    = 0 // messages retrieved
	fetchmailNoMail = 1 // nothing (new) to retrieve
	fetchmailSocket = 2 // connection or TLS failure, certificate included
)

// fetchmailClient runs fetchmail once per call, as a non-daemon, with an
// rc file of its own, delivering each message through an MDA into a
// directory. Everything it keeps, its UIDL memory above all, is in a test
// directory, which is also its HOME: from one run to the next, and apart
// from every other fetchmail.
type fetchmailClient struct {
	t         *testing.T
	fetchmail string
	home      string
	maildir   string
	mda       string
}

func newFetchmail(t *testing.T) *fetchmailClient {
	t.Helper()
	f := &fetchmailClient{t: t, fetchmail: program(t, "fetchmail", "fetchmail"), home: t.TempDir()}
	f.maildir = filepath.Join(f.home, "mail")
	f.mda = filepath.Join(f.home, "mda")
	if err := os.Mkdir(f.maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	// One file per message; mktemp keeps names unique without a clock.
	if err := os.WriteFile(f.mda, []byte("#!/bin/sh\nexec cat > \"$(mktemp \"$1/msg.XXXXXX\")\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return f
}

// fetchOpts vary a fetchmail run.
type fetchOpts struct {
	keep bool   // leave retrieved messages on the server
	ca   string // the only trust anchor; default the dev CA
}

// fetch runs fetchmail against a dev listener: with implicit TLS for
// "pop3s", with a required STLS upgrade for "pop3"; the certificate is
// checked in both. It returns the exit status and the messages delivered
// by this run, sorted.
func (f *fetchmailClient) fetch(d *devServer, listener string, acct devAccount, o fetchOpts) (int, []string) {
	f.t.Helper()
	if o.ca == "" {
		o.ca = d.info.CACert
	}
	tlsOpts := "ssl sslproto 'TLS1.2+'"
	if listener == "pop3" {
		// Without "ssl", sslproto makes fetchmail upgrade with STLS and
		// refuse to go on without it (fetchmail(1), --sslproto).
		tlsOpts = "sslproto 'TLS1.2+'"
	}
	keepOpt := "nokeep"
	if o.keep {
		keepOpt = "keep"
	}
	// fetchmail checks the certificate against the name it connects to;
	// it connects to 127.0.0.1, where latch listens, and is told to
	// expect "localhost", the name the dev certificate is for.
	rc := fmt.Sprintf(`set no syslog
set invisible
set no bouncemail
poll localhost via 127.0.0.1 port %s protocol pop3 uidl
    user '%s' there with password '%s'
    %s sslcertck sslcertfile '%s' sslcommonname 'localhost'
    %s no rewrite
    mda '%s %s'
`, d.port(f.t, listener), acct.Username, acct.Password, tlsOpts, o.ca, keepOpt, f.mda, f.maildir)
	rcPath := filepath.Join(f.home, "fetchmailrc")
	if err := os.WriteFile(rcPath, []byte(rc), 0o600); err != nil { // fetchmail refuses any other mode
		f.t.Fatal(err)
	}
	// As root fetchmail locks /var/run/fetchmail.pid, whatever its
	// HOME: a lock of its own lets other fetchmails run meanwhile.
	r := run(f.t, []string{"HOME=" + f.home, "FETCHMAILHOME=" + f.home}, "", f.fetchmail,
		"-v", "-f", rcPath, "--pidfile", filepath.Join(f.home, "fetchmail.pid"), "--idfile", f.idfile())
	if (r.code != fetchmailGot && r.code != fetchmailNoMail) || testing.Verbose() {
		f.t.Logf("fetchmail: %s", r)
	}
	entries, err := os.ReadDir(f.maildir)
	if err != nil {
		f.t.Fatal(err)
	}
	var msgs []string
	for _, e := range entries {
		path := filepath.Join(f.maildir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			f.t.Fatal(err)
		}
		msgs = append(msgs, string(data))
		os.Remove(path)
	}
	slices.Sort(msgs)
	return r.code, msgs
}

// idfile is where fetchmail remembers the UIDs it has seen.
func (f *fetchmailClient) idfile() string { return filepath.Join(f.home, "fetchids") }

// sortedLF is messages as an MDA gets them from fetchmail, which strips
// carriage returns for MDAs (fetchmail(1), stripcr), sorted.
func sortedLF(msgs ...string) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, withLF(m))
	}
	slices.Sort(out)
	return out
}

// stat returns the number of messages in an account's maildrop.
func stat(t *testing.T, d *devServer, acct devAccount) string {
	t.Helper()
	c := dialPOP3(t, d.addr(t, "pop3s"), tlsClient(t, d.info.CACert))
	if r := c.login(acct.Username, acct.Password); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login: %q", r)
	}
	s := c.ok("STAT")
	c.quit()
	return s
}

func TestFetchmail(t *testing.T) {
	program(t, "fetchmail", "fetchmail")
	for _, listener := range []string{"pop3s", "pop3"} {
		t.Run(listener, func(t *testing.T) {
			f := newFetchmail(t)
			d := startDev(t)
			alice := d.alice()
			first, second := testMessages[:3], testMessages[3:]
			d.deliver(t, alice.Username, first...)

			// The control: with a CA that did not issue the server's
			// certificate fetchmail must refuse to go on.
			code, got := f.fetch(d, listener, alice, fetchOpts{ca: otherCA(t)})
			if code != fetchmailSocket || len(got) != 0 {
				t.Fatalf("fetchmail trusting another CA: status %d, messages %q; want status %d and none", code, subjects(got), fetchmailSocket)
			}

			// keep + uidl: everything once, then nothing new, and the
			// server still has it all.
			code, got = f.fetch(d, listener, alice, fetchOpts{keep: true})
			if code != fetchmailGot || !slices.Equal(got, sortedLF(first...)) {
				t.Fatalf("first run, keep: status %d, messages %q; want %q", code, subjects(got), subjects(first))
			}
			code, got = f.fetch(d, listener, alice, fetchOpts{keep: true})
			if code != fetchmailNoMail || len(got) != 0 {
				t.Fatalf("second run, keep: status %d, messages %q; want no new mail (UIDL, RFC 1939 section 7)", code, subjects(got))
			}
			if s := stat(t, d, alice); !strings.HasPrefix(s, fmt.Sprintf("+OK %d ", len(first))) {
				t.Fatalf("after keep runs: STAT %q, want %d messages", s, len(first))
			}

			// New mail between runs: only it is fetched, by UIDL.
			d.deliver(t, alice.Username, second...)
			code, got = f.fetch(d, listener, alice, fetchOpts{keep: true})
			if code != fetchmailGot || !slices.Equal(got, sortedLF(second...)) {
				t.Fatalf("run after new mail: status %d, messages %q; want only the new ones, %q", code, subjects(got), subjects(second))
			}

			if _, err := os.Stat(f.idfile()); err != nil {
				t.Fatalf("fetchmail kept no UIDL memory: %v", err)
			}

			// Without keep, a fetchmail that has seen nothing yet takes
			// everything, deletes it, and leaves the server empty.
			code, got = newFetchmail(t).fetch(d, listener, alice, fetchOpts{})
			if code != fetchmailGot || !slices.Equal(got, sortedLF(testMessages...)) {
				t.Fatalf("run without keep: status %d, messages %q; want all %d", code, subjects(got), len(testMessages))
			}
			if s := stat(t, d, alice); s != "+OK 0 0" {
				t.Fatalf("after a run without keep: STAT %q, want +OK 0 0", s)
			}
		})
	}
}
