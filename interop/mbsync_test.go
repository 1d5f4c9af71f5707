package interop

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mbsyncClient runs mbsync (isync) with a configuration and a HOME of its
// own: a channel between bob's INBOX and Archive on the server, over
// implicit TLS checked against ca, and a Maildir in a test directory.
type mbsyncClient struct {
	t       *testing.T
	mbsync  string
	home    string
	maildir string
}

func newMbsync(t *testing.T, d *devServer, acct devAccount, authMechs string) *mbsyncClient {
	t.Helper()
	c := &mbsyncClient{t: t, mbsync: program(t, "mbsync", "isync"), home: t.TempDir()}
	c.maildir = filepath.Join(c.home, "mail")
	if err := os.Mkdir(c.maildir, 0o700); err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(c.home, "password")
	if err := os.WriteFile(passFile, []byte(acct.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// mbsync checks the certificate for the name it connects to, and the
	// dev certificate's DNS name is localhost, which /etc/hosts gives
	// as 127.0.0.1, where latch listens.
	_, port, _ := net.SplitHostPort(d.addr(t, "imaps"))
	cfg := fmt.Sprintf(`IMAPAccount latch
Host localhost
Port %s
User %s
PassCmd "cat %s"
AuthMechs %s
SSLType IMAPS
SSLVersions TLSv1.2 TLSv1.3
CertificateFile %s
SystemCertificates no
Timeout 20

IMAPStore remote
Account latch

MaildirStore local
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel latch
Far :remote:
Near :local:
Patterns INBOX Archive
Create Near
Sync All
Expunge None
SyncState *
`, port, acct.Username, passFile, authMechs, d.info.CACert, c.maildir, c.maildir)
	if err := os.WriteFile(filepath.Join(c.home, "mbsyncrc"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return c
}

// sync runs mbsync on the channel once.
func (c *mbsyncClient) sync() result {
	c.t.Helper()
	return run(c.t, []string{"HOME=" + c.home}, "", c.mbsync, "-c", filepath.Join(c.home, "mbsyncrc"), "-V", "latch")
}

// local returns the messages of a local mailbox: their Subject fields,
// each with its Maildir flags after ":2,", sorted.
func (c *mbsyncClient) local(mailbox string) []string {
	c.t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		dir := filepath.Join(c.maildir, mailbox, sub)
		entries, err := os.ReadDir(dir)
		if err != nil {
			c.t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				c.t.Fatal(err)
			}
			_, flags, _ := strings.Cut(e.Name(), ":2,")
			out = append(out, headerField(string(data), "Subject")+" ["+flags+"]")
		}
	}
	slices.Sort(out)
	return out
}

// serverView asks imaplib for the messages of the server's mailboxes in
// the form local gives: Subject field and the flags as Maildir letters.
func serverView(t *testing.T, d *devServer, acct devAccount, mailboxes ...string) map[string][]string {
	t.Helper()
	var ops [][]string
	for _, mb := range mailboxes {
		ops = append(ops, []string{"dump", mb})
	}
	args := mailArgs(t, d, acct, "imap_ops")
	args["ops"] = ops
	var got struct{ Results [][][2]string }
	mailpy(t, args, &got)
	letters := strings.NewReplacer(`\Draft`, "D", `\Flagged`, "F", `\Answered`, "R", `\Seen`, "S", `\Deleted`, "T", " ", "")
	view := map[string][]string{}
	for i, mb := range mailboxes {
		for _, m := range got.Results[i] {
			f := []byte(letters.Replace(m[0]))
			slices.Sort(f)
			view[mb] = append(view[mb], m[1]+" ["+string(f)+"]")
		}
		slices.Sort(view[mb])
	}
	return view
}

// imapOps runs imap_ops operations and requires each to succeed.
func imapOps(t *testing.T, d *devServer, acct devAccount, ops ...[]string) {
	t.Helper()
	args := mailArgs(t, d, acct, "imap_ops")
	args["ops"] = ops
	var got struct{ Results []any }
	mailpy(t, args, &got)
	for i, r := range got.Results {
		if fmt.Sprint(r) != "OK" && fmt.Sprint(r) != "[OK 1]" {
			t.Fatalf("%q: %v", ops[i], r)
		}
	}
}

func TestIMAPMbsync(t *testing.T) {
	program(t, "mbsync", "isync")
	program(t, "python3", "python3")
	d := startDev(t)
	bob := d.bob()
	msg := func(subject string) string {
		return "From: alice@localhost\r\nTo: bob@localhost\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\n" + subject + "\r\n"
	}
	imapOps(t, d, bob,
		[]string{"append", "INBOX", msg("server one")},
		[]string{"append", "INBOX", msg("server two")},
		[]string{"append", "Archive", msg("archived")})

	t.Run("two-way", func(t *testing.T) {
		// LOGIN: Cyrus SASL's SCRAM refuses Latch's count, see below.
		c := newMbsync(t, d, bob, "LOGIN")
		same := func(when string) {
			t.Helper()
			server := serverView(t, d, bob, "INBOX", "Archive")
			for _, mb := range []string{"INBOX", "Archive"} {
				if local := c.local(mb); !slices.Equal(local, server[mb]) {
					t.Errorf("%s, %s: Maildir %q, server %q", when, mb, local, server[mb])
				}
			}
		}

		if r := c.sync(); r.code != 0 {
			t.Fatalf("first sync: %s", r)
		}
		if got, want := c.local("INBOX"), []string{"Subject: server one []", "Subject: server two []"}; !slices.Equal(got, want) {
			t.Fatalf("after the first sync, Maildir INBOX %q, want %q", got, want)
		}
		same("after the first sync")

		// Changes on both sides: a new local message, a flag on the server.
		local := filepath.Join(c.maildir, "INBOX", "new", "1.local.test")
		if err := os.WriteFile(local, []byte(msg("written locally")), 0o600); err != nil {
			t.Fatal(err)
		}
		imapOps(t, d, bob, []string{"flag", "INBOX", "server two", `\Flagged`})

		if r := c.sync(); r.code != 0 {
			t.Fatalf("second sync: %s", r)
		}
		want := []string{"Subject: server one []", "Subject: server two [F]", "Subject: written locally []"}
		if got := c.local("INBOX"); !slices.Equal(got, want) {
			t.Errorf("after the second sync, Maildir INBOX %q, want %q", got, want)
		}
		same("after the second sync")
	})

	// Cyrus SASL (libsasl2, which mbsync uses) refuses SCRAM iteration
	// counts above 65536; Latch's must stay below.
	t.Run("SCRAM-SHA-256", func(t *testing.T) {
		c := newMbsync(t, d, bob, "SCRAM-SHA-256")
		if r := c.sync(); r.code != 0 {
			t.Fatalf("sync with SCRAM-SHA-256: %s", r)
		}
	})
}
