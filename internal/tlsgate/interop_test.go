package tlsgate

// Interoperability with real third-party TLS stacks: OpenSSL's s_client and
// Python's ssl module (OpenSSL underneath, driven through a different API).
// They prove the policy from the outside, with clients crypto/tls did not
// write. The tests skip when the programs are missing; scripts/test.sh
// installs them.

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// tool returns the path of a program the test needs, or skips the test.
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// run runs a program with empty input and returns its combined output and
// whether it exited with status 0.
func run(t *testing.T, prog string, args ...string) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v: %v\n%s", prog, args, ctx.Err(), out)
	}
	return string(out), err == nil
}

// greet writes a line and closes, so that s_client -ign_eof ends.
func greet(c *Conn) {
	c.Write([]byte("* OK latch\r\n"))
	c.Close()
}

func TestOpenSSLInterop(t *testing.T) {
	openssl := tool(t, "openssl")
	f := newFixture(t)
	drain := func(results <-chan served) {
		go func() {
			for range results {
			}
		}()
	}
	plainAddr, results := serve(t, f.endpoint(t, Implicit, Policy{ALPN: "imap"}), greet)
	drain(results)
	certAddr, results := serve(t, f.endpoint(t, Implicit, Policy{ALPN: "imap", ClientCerts: true}), greet)
	drain(results)
	// The control for close_notify: TCP closed under TLS without the alert.
	rawCloseAddr, results := serve(t, f.endpoint(t, Implicit, Policy{ALPN: "imap"}), func(c *Conn) {
		c.Write([]byte("* OK latch\r\n"))
		c.tls.NetConn().Close()
	})
	drain(results)

	tests := []struct {
		name string
		addr string
		args []string
		ok   bool
		want []string // in the output
		not  []string // not in the output
	}{
		// RFC 8997: TLS 1.0 and 1.1 refused by the server. SECLEVEL=0 makes
		// OpenSSL 3 offer them at all, so the alert proves the server refused.
		{"TLS1.0", plainAddr, []string{"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, []string{"alert protocol version"}, nil},
		{"TLS1.1", plainAddr, []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, []string{"alert protocol version"}, nil},
		{"TLS1.2", plainAddr, []string{"-tls1_2"}, true, []string{"Protocol  : TLSv1.2", "* OK latch"}, nil},
		{"TLS1.3", plainAddr, []string{"-tls1_3"}, true, []string{"New, TLSv1.3", "* OK latch"}, nil},
		{"TLS1.3 preferred", plainAddr, nil, true, []string{"New, TLSv1.3"}, nil},

		// RFC 9325 4.2: TLS 1.2 only with ECDHE and AEAD.
		{"TLS1.2 RSA key exchange", plainAddr, []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256:AES256-GCM-SHA384"}, false, []string{"alert handshake failure"}, nil},
		{"TLS1.2 ECDHE CBC", plainAddr, []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384"}, false, []string{"alert handshake failure"}, nil},
		{"TLS1.2 DHE", plainAddr, []string{"-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"}, false, []string{"alert handshake failure"}, nil},
		{"TLS1.2 ECDHE-RSA-GCM", plainAddr, []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"}, true, []string{"Cipher is ECDHE-RSA-AES128-GCM-SHA256"}, nil},
		{"TLS1.2 ECDHE-ECDSA-CHACHA20", plainAddr, []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, true, []string{"Cipher is ECDHE-ECDSA-CHACHA20-POLY1305"}, nil},

		// Strict ALPN.
		{"ALPN pop3 on imap", plainAddr, []string{"-alpn", "pop3"}, false, []string{"alert no application protocol"}, nil},
		{"ALPN imap", plainAddr, []string{"-alpn", "imap"}, true, []string{"ALPN protocol: imap"}, nil},
		{"ALPN none", plainAddr, nil, true, []string{"No ALPN negotiated"}, nil},

		// Certificates by SNI and signature algorithms.
		{"SNI a.example ECDSA", plainAddr, []string{"-servername", "a.example"}, true, []string{"subject=CN = a.example", "Server public key is 256 bit", "Peer signature type: ECDSA"}, nil},
		{"SNI a.example RSA-only TLS1.3", plainAddr, []string{"-servername", "a.example", "-tls1_3", "-sigalgs", "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384"}, true, []string{"subject=CN = a.example", "Server public key is 2048 bit", "Peer signature type: RSA-PSS"}, nil},
		{"SNI a.example RSA-only TLS1.2", plainAddr, []string{"-servername", "a.example", "-tls1_2", "-sigalgs", "RSA+SHA256:rsa_pss_rsae_sha256"}, true, []string{"Server public key is 2048 bit"}, nil},
		{"SNI b.example", plainAddr, []string{"-servername", "b.example"}, true, []string{"subject=CN = b.example"}, nil},
		{"no SNI", plainAddr, []string{"-noservername"}, true, []string{"subject=CN = a.example", "Server public key is 256 bit"}, nil},

		// RFC 8314 4.2: a CertificateRequest only where configured.
		{"no certificate request", plainAddr, []string{"-msg", "-tls1_3"}, true, []string{"Finished"}, []string{"CertificateRequest"}},
		{"no certificate request TLS1.2", plainAddr, []string{"-msg", "-tls1_2"}, true, []string{"Finished"}, []string{"CertificateRequest", "Client Certificate Types"}},
		{"certificate request", certAddr, []string{"-msg", "-tls1_3"}, true, []string{"CertificateRequest", "* OK latch"}, nil},
		{"certificate request TLS1.2", certAddr, []string{"-msg", "-tls1_2"}, true, []string{"CertificateRequest", "Client Certificate Types"}, nil},

		// RFC 8314 3.4: close_notify before the TCP close, under TLS 1.3
		// too (where the alert is encrypted and only a client sees it).
		{"close_notify TLS1.3", plainAddr, []string{"-msg", "-tls1_3"}, true, []string{"<<< TLS 1.3, Alert [length 0002], warning close_notify"}, nil},
		{"close_notify TLS1.2", plainAddr, []string{"-msg", "-tls1_2"}, true, []string{"<<< TLS 1.2, Alert [length 0002], warning close_notify"}, nil},
		{"no close_notify (control)", rawCloseAddr, []string{"-msg", "-tls1_3"}, false, []string{"* OK latch", "unexpected eof"}, []string{"<<< TLS 1.3, Alert"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"s_client", "-connect", tt.addr, "-CAfile", f.opts.ClientCA, "-ign_eof"}, tt.args...)
			if !strings.Contains(strings.Join(tt.args, " "), "servername") {
				args = append(args, "-servername", "a.example")
			}
			out, ok := run(t, openssl, args...)
			if ok != tt.ok {
				t.Fatalf("success %v, want %v\n%s", ok, tt.ok, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q\n%s", w, out)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("output has %q\n%s", n, out)
				}
			}
			if strings.Contains(out, "New, TLS") && !strings.Contains(out, "Verify return code: 0 (ok)") {
				t.Errorf("certificate did not verify\n%s", out)
			}
		})
	}
}

// pythonClient connects with Python's ssl module, versions pinned, and
// prints "OK version cipher alpn" or "ERR reason".
const pythonClient = `
import socket, ssl, sys
host, port, lo, hi, alpn, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.set_ciphers("DEFAULT@SECLEVEL=0")
ctx.minimum_version = getattr(ssl.TLSVersion, lo)
ctx.maximum_version = getattr(ssl.TLSVersion, hi)
if alpn:
    ctx.set_alpn_protocols(alpn.split(","))
try:
    with socket.create_connection((host, port), timeout=30) as s:
        with ctx.wrap_socket(s, server_hostname="a.example") as t:
            print("OK", t.version(), t.cipher()[0], t.selected_alpn_protocol())
except ssl.SSLError as e:
    print("ERR", e)
`

func TestPythonInterop(t *testing.T) {
	python := tool(t, "python3")
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{ALPN: "pop3"}), greet)
	go func() {
		for range results {
		}
	}()
	host, port, _ := strings.Cut(addr, ":")
	tests := []struct {
		name   string
		lo, hi string
		alpn   string
		want   string // "OK ..." (a prefix of the output) or "ERR ..." (words in it)
	}{
		{"TLS1.0", "TLSv1", "TLSv1", "", "ERR tlsv1 alert protocol version"},
		{"TLS1.1", "TLSv1_1", "TLSv1_1", "", "ERR tlsv1 alert protocol version"},
		{"TLS1.2", "TLSv1_2", "TLSv1_2", "", "OK TLSv1.2 ECDHE-ECDSA-"},
		{"TLS1.3", "TLSv1_3", "TLSv1_3", "", "OK TLSv1.3 TLS_"},
		{"TLS1.0 to 1.3", "TLSv1", "TLSv1_3", "pop3", "OK TLSv1.3 TLS_"},
		{"ALPN pop3", "TLSv1_2", "TLSv1_3", "pop3", "OK TLSv1.3 TLS_"},
		{"ALPN imap on pop3", "TLSv1_2", "TLSv1_3", "imap", "ERR tlsv1 alert no application protocol"},
		{"ALPN imap on pop3 TLS1.2", "TLSv1_2", "TLSv1_2", "imap", "ERR tlsv1 alert no application protocol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alpn := tt.alpn
			out, ok := run(t, python, "-W", "ignore::DeprecationWarning", "-c", pythonClient, host, port, tt.lo, tt.hi, alpn, f.opts.ClientCA)
			status, words, _ := strings.Cut(tt.want, " ")
			if !ok || !strings.HasPrefix(out, status+" ") || !strings.Contains(out, words) {
				t.Fatalf("got %q, want %q...", out, tt.want)
			}
			if alpn != "" && strings.HasPrefix(tt.want, "OK") && !strings.HasSuffix(strings.TrimSpace(out), " "+alpn) {
				t.Errorf("ALPN not negotiated: %q", out)
			}
		})
	}
}
