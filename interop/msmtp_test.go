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

func TestSubmissionMsmtp(t *testing.T) {
	msmtp := program(t, "msmtp", "msmtp")
	program(t, "python3", "python3")
	d := startDev(t)
	alice, bob := d.alice(), d.bob()
	dir := t.TempDir()
	passFile := filepath.Join(dir, "password")
	if err := os.WriteFile(passFile, []byte(alice.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// send runs msmtp once with a configuration of its own: TLS on,
	// the given trust file, the certificate checked for the name
	// localhost, the password from passwordeval.
	send := func(t *testing.T, listener, ca, subject string) result {
		t.Helper()
		host, port, _ := net.SplitHostPort(d.addr(t, listener))
		starttls := "on"
		if listener == "submissions" {
			starttls = "off" // RFC 8314 3.3: TLS from the first byte
		}
		cfg := fmt.Sprintf(`defaults
logfile -
timeout 30
account latch
host %s
port %s
tls on
tls_starttls %s
tls_trust_file %s
tls_host_override localhost
auth plain
user %s
passwordeval "cat %s"
from %s
account default : latch
`, host, port, starttls, ca, alice.Username, passFile, alice.Address)
		cfgPath := filepath.Join(dir, "msmtprc")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil { // msmtp insists on 0600
			t.Fatal(err)
		}
		msg := "From: " + alice.Address + "\nTo: " + bob.Address + "\nSubject: " + subject + "\n\nsent by msmtp\n"
		return run(t, []string{"HOME=" + dir}, msg, msmtp, "-C", cfgPath, "--debug", bob.Address)
	}

	t.Run("STARTTLS", func(t *testing.T) {
		if r := send(t, "submission", d.info.CACert, "msmtp starttls"); r.code != 0 {
			t.Fatalf("msmtp: %s", r)
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		if r := send(t, "submissions", d.info.CACert, "msmtp implicit"); r.code != 0 {
			t.Fatalf("msmtp: %s", r)
		}
	})
	// The control: a CA that did not issue the server's certificate.
	for _, listener := range []string{"submission", "submissions"} {
		t.Run("untrusted CA "+listener, func(t *testing.T) {
			r := send(t, listener, otherCA(t), "never")
			if r.code == 0 || !strings.Contains(r.stderr, "TLS certificate verification failed") || strings.Contains(r.stdout, "AUTH PLAIN") {
				t.Fatalf("msmtp trusting another CA: %s\nwant a failure before AUTH", r)
			}
		})
	}

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
		if want := []string{"Subject: msmtp implicit", "Subject: msmtp starttls"}; !slices.Equal(subjects, want) {
			t.Errorf("bob's INBOX: %q, want %q", subjects, want)
		}
	})
}
