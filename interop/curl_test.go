package interop

import (
	"fmt"
	"strings"
	"testing"
)

// curl's exit codes the tests expect (curl(1), EXIT CODES).
const (
	curlOK          = 0
	curlSSLConnect  = 35 // the TLS handshake failed
	curlPeerFailed  = 60 // the server's certificate did not verify
	curlLoginDenied = 67
)

func TestCurl(t *testing.T) {
	curl := program(t, "curl", "curl")
	d := startDev(t)
	alice := d.alice()
	d.deliver(t, alice.Username, testMessages...)
	other := otherCA(t)

	// Every URL names localhost, resolved to 127.0.0.1 without DNS, so
	// that curl checks the certificate's DNS name and sends SNI. The dev
	// listeners are named after their URL schemes.
	port := map[string]string{"pop3s": d.port(t, "pop3s"), "pop3": d.port(t, "pop3")}
	url := func(listener, path string) string {
		return fmt.Sprintf("%s://localhost:%s/%s", listener, port[listener], path)
	}
	resolve := func(listener string) string { return "localhost:" + port[listener] + ":127.0.0.1" }
	var list strings.Builder
	for i := range testMessages {
		fmt.Fprintf(&list, "%d ", i+1)
	}

	tests := []struct {
		name     string
		listener string
		path     string
		args     []string
		code     int
		want     string // stdout; "" when not checked
	}{
		// RFC 8314 3.3: TLS from the first byte.
		{"pop3s list", "pop3s", "", nil, curlOK, ""},
		{"pop3s retrieve", "pop3s", "2", nil, curlOK, onWire(testMessages[1])},
		{"pop3s retrieve large", "pop3s", "6", nil, curlOK, onWire(testMessages[5])},
		// RFC 2595 section 4: STLS, then the login.
		{"stls list", "pop3", "", []string{"--ssl-reqd"}, curlOK, ""},
		{"stls retrieve", "pop3", "1", []string{"--ssl-reqd"}, curlOK, onWire(testMessages[0])},
		// RFC 8314 4.1: without TLS nothing to log in with is offered, so
		// curl never sends the password and reports the login denied.
		{"cleartext refused", "pop3", "", nil, curlLoginDenied, ""},
		{"SASL PLAIN", "pop3s", "", []string{"--login-options", "AUTH=PLAIN"}, curlOK, ""},
		{"SASL LOGIN", "pop3s", "", []string{"--login-options", "AUTH=LOGIN"}, curlOK, ""},
		// APOP would need the password stored in the clear: not offered.
		{"APOP refused", "pop3s", "", []string{"--login-options", "AUTH=+APOP"}, curlLoginDenied, ""},
		// RFC 8314 4.2: the dev client certificate logs alice in. curl
		// chooses EXTERNAL only when given no password.
		{"SASL EXTERNAL", "pop3s", "", []string{"-u", alice.Username + ":", "--login-options", "AUTH=EXTERNAL", "--cert", d.info.ClientCert, "--key", d.info.ClientKey}, curlOK, ""},
		{"SASL EXTERNAL without certificate", "pop3s", "", []string{"-u", alice.Username + ":", "--login-options", "AUTH=EXTERNAL"}, curlLoginDenied, ""},
		{"wrong password", "pop3s", "", []string{"-u", alice.Username + ":wrong-password"}, curlLoginDenied, ""},
		// Controls: certificate verification is on, and TLS below 1.2 is
		// refused by the server (RFC 8997).
		{"untrusted CA", "pop3s", "", []string{"--cacert", other}, curlPeerFailed, ""},
		{"TLS 1.1", "pop3s", "", []string{"--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0"}, curlSSLConnect, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-sS", "--max-time", "30", "--cacert", d.info.CACert, "--resolve", resolve(tt.listener), "-u", alice.Username + ":" + alice.Password}
			args = append(args, tt.args...) // later -u and --cacert win
			r := run(t, nil, "", curl, append(args, url(tt.listener, tt.path))...)
			if r.code != tt.code {
				t.Fatalf("exit status %d, want %d\n%s", r.code, tt.code, r)
			}
			if tt.code != curlOK {
				return
			}
			if tt.want != "" && r.stdout != tt.want {
				t.Errorf("got %q, want %q", trunc(r.stdout), trunc(tt.want))
			}
			if tt.path == "" {
				var got strings.Builder
				for _, line := range strings.SplitAfter(r.stdout, "\r\n") {
					if n, _, ok := strings.Cut(line, " "); ok {
						got.WriteString(n + " ")
					}
				}
				if got.String() != list.String() || strings.Count(r.stdout, "\r\n") != len(testMessages) {
					t.Errorf("listing %q: want messages %s", r.stdout, list.String())
				}
			}
		})
	}
}
