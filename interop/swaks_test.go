package interop

import (
	"net"
	"slices"
	"strings"
	"testing"
)

// swaks's exit statuses (swaks(1), EXIT CODES).
const (
	swaksOK     = 0
	swaksNoTLS  = 29 // TLS was requested and could not be set up
	swaksNoAuth = 28 // authentication failed or was not offered
)

func TestSubmissionSwaks(t *testing.T) {
	swaks := program(t, "swaks", "swaks")
	program(t, "python3", "python3")
	d := startDev(t)
	alice, bob := d.alice(), d.bob()

	// swaksRun submits one message on a submission listener, verifying
	// the certificate against ca and sending SNI localhost.
	swaksRun := func(t *testing.T, listener, ca, subject string, extra ...string) result {
		t.Helper()
		host, port, _ := net.SplitHostPort(d.addr(t, listener))
		args := []string{"--server", host, "--port", port, "--timeout", "30",
			"--from", alice.Address, "--to", bob.Address, "--header", "Subject: " + subject,
			"--tls-verify", "--tls-ca-path", ca, "--tls-sni", "localhost",
			"--auth", "PLAIN", "--auth-user", alice.Username, "--auth-password", alice.Password,
			"--pipeline"}
		return run(t, nil, "", swaks, append(args, extra...)...)
	}
	queued := func(t *testing.T, r result) {
		t.Helper()
		if r.code != swaksOK || !strings.Contains(r.stdout, "<~  235 ") || !strings.Contains(r.stdout, "<~  250 2.0.0 Ok: queued as ") {
			t.Fatalf("want AUTH PLAIN accepted and the message queued: %s", r)
		}
	}

	t.Run("STARTTLS", func(t *testing.T) {
		r := swaksRun(t, "submission", d.info.CACert, "swaks --tls", "--tls")
		queued(t, r)
		// RFC 2920: MAIL, RCPT and DATA went out as one group, answered
		// in order.
		if !strings.Contains(r.stdout, " ~> MAIL FROM:<"+alice.Address+">\n ~> RCPT TO:<"+bob.Address+">\n ~> DATA\n<~  250 ") {
			t.Errorf("swaks did not pipeline MAIL, RCPT and DATA:\n%s", r.stdout)
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		queued(t, swaksRun(t, "submissions", d.info.CACert, "swaks --tlsc", "--tlsc"))
	})
	t.Run("untrusted CA", func(t *testing.T) {
		r := swaksRun(t, "submissions", otherCA(t), "never", "--tlsc")
		if r.code != swaksNoTLS || strings.Contains(r.stdout, "AUTH") {
			t.Fatalf("swaks trusting another CA: %s\nwant status %d before any AUTH", r, swaksNoTLS)
		}
	})
	// RFC 8314 4.1: no AUTH before STARTTLS, so swaks cannot log in.
	t.Run("cleartext refused", func(t *testing.T) {
		r := swaksRun(t, "submission", d.info.CACert, "never")
		if r.code != swaksNoAuth || strings.Contains(r.stdout, "~> AUTH") || strings.Contains(r.stdout, "-> AUTH") {
			t.Fatalf("swaks without TLS: %s\nwant status %d and no AUTH sent", r, swaksNoAuth)
		}
	})
	t.Run("STARTTLS injection", func(t *testing.T) {
		t.Skip("swaks has no way to send cleartext bytes after STARTTLS in the same write")
	})

	t.Run("delivered", func(t *testing.T) {
		var inbox struct{ Messages []string }
		mailpy(t, mailArgs(t, d, bob, "inbox"), &inbox)
		var subjects []string
		for _, m := range inbox.Messages {
			m = unb64(t, m)
			subjects = append(subjects, headerField(m, "Subject"))
			if rcv := headerField(m, "Received"); !receivedTLS.MatchString(rcv) {
				t.Errorf("Received field %q does not match %v", rcv, receivedTLS)
			}
		}
		slices.Sort(subjects)
		if want := []string{"Subject: swaks --tls", "Subject: swaks --tlsc"}; !slices.Equal(subjects, want) {
			t.Errorf("bob's INBOX: %q, want %q", subjects, want)
		}
	})
}
