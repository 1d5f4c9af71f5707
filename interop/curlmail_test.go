package interop

import (
	"fmt"
	"strings"
	"testing"
)

// More of curl's exit codes (curl(1), EXIT CODES).
const curlMailFailed = 55 // "MAIL failed": the server refused MAIL FROM

// TestSubmissionCurl sends with curl over implicit TLS and STARTTLS, and
// reads the messages back with curl over IMAP with implicit TLS.
func TestSubmissionCurl(t *testing.T) {
	curl := program(t, "curl", "curl")
	d := startDev(t)
	alice, bob := d.alice(), d.bob()

	scheme := map[string]string{"submissions": "smtps", "submission": "smtp", "imaps": "imaps", "imap": "imap"}
	// URLs name localhost, resolved to 127.0.0.1 without DNS, so that
	// curl checks the certificate's DNS name and sends SNI. The dev
	// listeners are named after their URL schemes, but for submission.
	curlRun := func(t *testing.T, stdin, listener, path string, acct devAccount, extra ...string) result {
		t.Helper()
		port := d.port(t, listener)
		args := []string{"-sS", "--max-time", "30", "--cacert", d.info.CACert,
			"--resolve", "localhost:" + port + ":127.0.0.1", "-u", acct.Username + ":" + acct.Password}
		args = append(args, extra...)
		return run(t, nil, stdin, curl, append(args, fmt.Sprintf("%s://localhost:%s/%s", scheme[listener], port, path))...)
	}
	message := func(subject string) string {
		return "From: " + alice.Address + "\r\nTo: " + bob.Address + "\r\nSubject: " + subject +
			"\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.org>\r\n\r\nsent by curl\r\n.dot line\r\n"
	}
	send := []string{"--mail-from", alice.Address, "--mail-rcpt", bob.Address, "-T", "-"}
	sent := []string{message("curl smtps"), message("curl smtp starttls")}

	t.Run("smtps", func(t *testing.T) {
		if r := curlRun(t, sent[0], "submissions", "", alice, send...); r.code != curlOK {
			t.Fatalf("smtps: %s", r)
		}
	})
	t.Run("smtp STARTTLS", func(t *testing.T) {
		if r := curlRun(t, sent[1], "submission", "", alice, append([]string{"--ssl-reqd"}, send...)...); r.code != curlOK {
			t.Fatalf("smtp --ssl-reqd: %s", r)
		}
	})
	// RFC 8314 4.1: no AUTH offered without TLS, so curl goes on without
	// logging in, and MAIL is refused with 530.
	t.Run("smtp cleartext refused", func(t *testing.T) {
		r := curlRun(t, message("never"), "submission", "", alice, send...)
		if r.code != curlMailFailed || !strings.Contains(r.stderr, "530") {
			t.Fatalf("smtp without --ssl-reqd: %s\nwant status %d and 530", r, curlMailFailed)
		}
	})

	t.Run("imaps", func(t *testing.T) {
		r := curlRun(t, "", "imaps", "", bob)
		if r.code != curlOK {
			t.Fatalf("mailbox list: %s", r)
		}
		for _, want := range []string{`"INBOX"`, `\Sent) "/" "Sent"`, `\Trash) "/" "Trash"`} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("mailbox list %q lacks %s", r.stdout, want)
			}
		}
		r = curlRun(t, "", "imaps", "INBOX", bob, "-X", "UID SEARCH ALL")
		if r.code != curlOK || strings.TrimSpace(r.stdout) != "* SEARCH 1 2" {
			t.Fatalf("UID SEARCH ALL: %s\nwant * SEARCH 1 2", r)
		}
		for i, m := range sent {
			r := curlRun(t, "", "imaps", fmt.Sprintf("INBOX;UID=%d", i+1), bob)
			if r.code != curlOK {
				t.Fatalf("UID %d: %s", i+1, r)
			}
			// Submission puts its Received field on top (RFC 5321 4.4)
			// and leaves the message as it was sent.
			if !strings.HasPrefix(r.stdout, "Received: ") || !strings.HasSuffix(r.stdout, "\r\n"+m) {
				t.Errorf("UID %d: %q, want a Received field and then %q", i+1, trunc(r.stdout), m)
			}
			if rcv := headerField(r.stdout, "Received"); !receivedTLS.MatchString(rcv) {
				t.Errorf("UID %d: Received field %q does not match %v", i+1, rcv, receivedTLS)
			}
		}
	})

	t.Run("imap STARTTLS", func(t *testing.T) {
		r := curlRun(t, "", "imap", "INBOX;UID=1", bob, "--ssl-reqd")
		if r.code != curlOK || !strings.HasSuffix(r.stdout, sent[0]) {
			t.Fatalf("imap --ssl-reqd, UID 1: %s", r)
		}
	})
	// RFC 8314 4.1: LOGINDISABLED and no AUTH= before STARTTLS, so curl
	// finds no way to log in.
	t.Run("imap cleartext refused", func(t *testing.T) {
		if r := curlRun(t, "", "imap", "INBOX;UID=1", bob); r.code != curlLoginDenied || r.stdout != "" {
			t.Fatalf("imap without --ssl-reqd: %s\nwant status %d and nothing read", r, curlLoginDenied)
		}
	})
}
