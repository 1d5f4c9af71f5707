package interop

import (
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
)

// endpoint says how s_client talks to one kind of dev listener.
type endpoint struct {
	plain    bool   // no TLS at all (LMTP, loopback only): only the address is checked
	starttls string // s_client -starttls dialect; empty for implicit TLS
	alpn     string // the service's ALPN identifier (RFC 7301)
	greeting string // how the greeting begins; s_client shows it for implicit TLS
	quit     string // the command that ends a session
	bye      string // how the answer to quit begins
}

// endpoints covers every listener `latch dev` may write to dev.json,
// whether or not this build serves it yet. The test fails for a listener
// missing here, so that a new one cannot go untested.
var endpoints = map[string]endpoint{
	"imaps":       {alpn: "imap", greeting: "* OK", quit: "a LOGOUT", bye: "* BYE"},
	"imap":        {starttls: "imap", alpn: "imap", quit: "a LOGOUT", bye: "* BYE"},
	"pop3s":       {alpn: "pop3", greeting: "+OK", quit: "QUIT", bye: "+OK"},
	"pop3":        {starttls: "pop3", alpn: "pop3", quit: "QUIT", bye: "+OK"},
	"submissions": {alpn: "smtp", greeting: "220", quit: "QUIT", bye: "221"},
	"submission":  {starttls: "smtp", alpn: "smtp", quit: "QUIT", bye: "221"},
	"lmtp":        {plain: true},
}

// otherALPN is an identifier of another mail service than alpn's.
func otherALPN(alpn string) string {
	if alpn == "imap" {
		return "pop3"
	}
	return "imap"
}

func TestOpenSSL(t *testing.T) {
	openssl := program(t, "openssl", "openssl")
	d := startDev(t)

	type check struct {
		name string
		args []string
		ok   bool
		want []string // in the output
		not  []string // not in the output
	}
	for _, name := range slices.Sorted(maps.Keys(d.info.Listeners)) {
		ep, known := endpoints[name]
		if !known {
			t.Errorf("dev.json lists listener %q, which this test does not know: add it to endpoints", name)
			continue
		}
		if ep.plain {
			// RFC 8314 4.1: what runs without TLS is reachable from this
			// machine only.
			if host, _, err := net.SplitHostPort(d.addr(t, name)); err != nil || !net.ParseIP(host).IsLoopback() {
				t.Errorf("%s listens on %s, want a loopback address", name, d.addr(t, name))
			}
			continue
		}
		checks := []check{
			// RFC 8997: nothing below TLS 1.2. SECLEVEL=0 makes OpenSSL 3
			// offer TLS 1.1 at all, so the alert is the server's refusal.
			{"TLS1.1 refused", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, []string{"alert protocol version"}, nil},
			{"TLS1.2", []string{"-tls1_2"}, true, []string{"Protocol  : TLSv1.2", ep.greeting, ep.bye}, nil},
			{"TLS1.3", []string{"-tls1_3"}, true, []string{"New, TLSv1.3", ep.greeting, ep.bye}, nil},
			// Strict ALPN (RFC 7301 3.2): another service's identifier
			// is refused; the service's own is confirmed.
			{"ALPN " + otherALPN(ep.alpn) + " refused", []string{"-alpn", otherALPN(ep.alpn)}, false, []string{"no application protocol"}, nil},
			{"ALPN " + ep.alpn, []string{"-alpn", ep.alpn}, true, []string{"ALPN protocol: " + ep.alpn, ep.bye}, nil},
			// RFC 8314 3.4: the server ends TLS with close_notify.
			{"close_notify", []string{"-msg"}, true, []string{"warning close_notify"}, nil},
		}
		// RFC 8314 4.2: client certificates are requested on implicit
		// TLS ports where configured (latch dev does), never after
		// STARTTLS.
		if ep.starttls == "" {
			checks = append(checks, check{"certificate request", []string{"-msg"}, true, []string{"CertificateRequest"}, nil})
		} else {
			checks = append(checks, check{"no certificate request", []string{"-msg"}, true, []string{ep.bye}, []string{"CertificateRequest"}})
		}
		for _, c := range checks {
			t.Run(name+"/"+c.name, func(t *testing.T) {
				out, ok := sClient(t, openssl, d, name, ep, ep.quit+"\r\n", c.args...)
				if ok != c.ok {
					t.Fatalf("s_client success %v, want %v\n%s", ok, c.ok, out)
				}
				for _, w := range c.want {
					if w != "" && !strings.Contains(out, w) {
						t.Errorf("output lacks %q\n%s", w, out)
					}
				}
				for _, n := range c.not {
					if strings.Contains(out, n) {
						t.Errorf("output has %q\n%s", n, out)
					}
				}
			})
		}
	}

	// RFC 8314 4.2 with POP3 SASL EXTERNAL (RFC 5034): the dev client
	// certificate, offered to the implicit TLS port, logs its account in.
	t.Run("pop3s/client certificate", func(t *testing.T) {
		in := "CAPA\r\nAUTH EXTERNAL =\r\nSTAT\r\nQUIT\r\n"
		out, ok := sClient(t, openssl, d, "pop3s", endpoints["pop3s"], in, "-cert", d.info.ClientCert, "-key", d.info.ClientKey)
		if !ok {
			t.Fatalf("s_client failed\n%s", out)
		}
		for _, w := range []string{"SASL EXTERNAL ", "+OK 0 messages", "+OK 0 0", "+OK bye"} {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q\n%s", w, out)
			}
		}
	})
}

// sClient runs openssl s_client against a dev listener with the dev CA as
// the only trust anchor, host name checking, and stdin as input. It
// returns the output and whether s_client succeeded.
func sClient(t *testing.T, openssl string, d *devServer, listener string, ep endpoint, stdin string, args ...string) (string, bool) {
	t.Helper()
	base := []string{"s_client", "-connect", d.addr(t, listener), "-servername", "localhost",
		"-CAfile", d.info.CACert, "-verify_return_error", "-verify_hostname", "localhost", "-ign_eof"}
	if ep.starttls != "" {
		base = append(base, "-starttls", ep.starttls)
	}
	r := run(t, nil, stdin, openssl, append(base, args...)...)
	return r.stdout + r.stderr, r.code == 0
}
