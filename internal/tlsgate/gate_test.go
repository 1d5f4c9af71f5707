package tlsgate

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/tlsgate/tlstest"
)

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	good := ca.Issue(t, tlstest.Spec{DNSNames: []string{"a.example"}})
	other := ca.Issue(t, tlstest.Spec{DNSNames: []string{"b.example"}})
	cert, key := good.WriteFiles(t, dir, "good")
	_, otherKey := other.WriteFiles(t, dir, "other")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := write("garbage.pem", "hello\n")
	encKey := write("enc.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name string
		opts Options
		want []string // substrings of the error
	}{
		{"no certificates", Options{}, []string{"no server certificate"}},
		{"missing cert", Options{Certificates: []KeyPair{{missing, key}}}, []string{missing, "cannot read", "no such file"}},
		{"missing key", Options{Certificates: []KeyPair{{cert, missing}}}, []string{missing, "cannot read"}},
		{"cert not PEM", Options{Certificates: []KeyPair{{garbage, key}}}, []string{garbage, "no PEM certificate"}},
		{"key not PEM", Options{Certificates: []KeyPair{{cert, garbage}}}, []string{garbage, "no PEM private key"}},
		{"swapped", Options{Certificates: []KeyPair{{key, cert}}}, []string{key, "swapped"}},
		{"encrypted key", Options{Certificates: []KeyPair{{cert, encKey}}}, []string{encKey, "encrypted"}},
		{"key does not match", Options{Certificates: []KeyPair{{cert, otherKey}}}, []string{otherKey, cert, "does not hold the key"}},
		{"client CA not PEM", Options{Certificates: []KeyPair{{cert, key}}, ClientCA: garbage}, []string{garbage, "client CA", "no PEM certificate"}},
		{"client CA missing", Options{Certificates: []KeyPair{{cert, key}}, ClientCA: missing}, []string{missing, "client CA"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Log = slog.New(&logRecorder{})
			_, err := New(tt.opts)
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadWarnings(t *testing.T) {
	ca := tlstest.NewCA(t, "CA")
	tests := []struct {
		name string
		spec tlstest.Spec
		want string // warning message; empty: none
	}{
		{"valid", tlstest.Spec{DNSNames: []string{"a.example"}}, ""},
		{"expired", tlstest.Spec{DNSNames: []string{"a.example"}, Validity: tlstest.Expired}, "server certificate has expired"},
		{"not yet valid", tlstest.Spec{DNSNames: []string{"a.example"}, Validity: tlstest.NotYetValid}, "server certificate is not valid yet"},
		{"no names", tlstest.Spec{CommonName: "a.example"}, "server certificate names no host"},
		{"client EKU", tlstest.Spec{DNSNames: []string{"a.example"}, Client: true}, "server certificate is not for TLS server authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cf, kf := ca.Issue(t, tt.spec).WriteFiles(t, t.TempDir(), "c")
			logs := &logRecorder{}
			if _, err := New(Options{Certificates: []KeyPair{{cf, kf}}, Log: slog.New(logs)}); err != nil {
				t.Fatalf("New refused a loadable certificate: %v", err)
			}
			var warns []logRec
			for _, r := range logs.recs {
				if r.level == slog.LevelWarn {
					warns = append(warns, r)
				}
			}
			if tt.want == "" {
				if len(warns) > 0 {
					t.Fatalf("unexpected warning %q", warns[0].msg)
				}
				return
			}
			if len(warns) != 1 || !strings.HasPrefix(warns[0].msg, tt.want) {
				t.Fatalf("warnings %v, want one %q", warns, tt.want)
			}
			if warns[0].attrs["file"] != cf {
				t.Errorf("warning names file %q, want %q", warns[0].attrs["file"], cf)
			}
		})
	}
}

func TestVersions(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{}), nil)
	tests := []struct {
		version uint16
		ok      bool
	}{
		{tls.VersionTLS10, false},
		{tls.VersionTLS11, false},
		{tls.VersionTLS12, true},
		{tls.VersionTLS13, true},
	}
	for _, tt := range tests {
		t.Run(VersionName(tt.version), func(t *testing.T) {
			cfg := f.clientConfig("a.example")
			cfg.MinVersion, cfg.MaxVersion = tt.version, tt.version
			_, r := handshake(t, addr, results, cfg)
			if !tt.ok {
				if r.err == nil || !errContains(r.err, "unsupported versions") {
					t.Fatalf("server error %v, want a refusal of the version", r.err)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.c.Sec.Version != VersionName(tt.version) || !r.c.Sec.TLS {
				t.Errorf("Sec.Version = %q, TLS = %v", r.c.Sec.Version, r.c.Sec.TLS)
			}
			if st := r.c.TLSState(); st == nil || st.Version != tt.version || !st.HandshakeComplete {
				t.Errorf("TLSState = %+v", st)
			}
		})
	}
	t.Run("prefers TLS1.3", func(t *testing.T) {
		_, r := handshake(t, addr, results, f.clientConfig("a.example"))
		if r.err != nil || r.c.Sec.Version != "TLS1.3" {
			t.Fatalf("got %v %v, want TLS1.3", r.err, r.c.Sec)
		}
	})
}

func TestTLS12CipherSuites(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{}), nil)
	tests := []struct {
		suite uint16
		ok    bool
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, true}, // the RSA certificate
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, true},
		{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, true},
		{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
		{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, true},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},    // CBC, though crypto/tls enables it by default
		{tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, false},      // CBC, likewise
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false}, // CBC
		{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},         // RSA key exchange: no forward secrecy
		{tls.TLS_RSA_WITH_AES_256_CBC_SHA, false},            // neither
		{tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA, false},     // 64-bit block cipher
		{tls.TLS_ECDHE_ECDSA_WITH_RC4_128_SHA, false},        // RC4
	}
	for _, tt := range tests {
		t.Run(CipherName(tt.suite), func(t *testing.T) {
			cfg := f.clientConfig("a.example")
			cfg.MaxVersion = tls.VersionTLS12
			cfg.CipherSuites = []uint16{tt.suite}
			_, r := handshake(t, addr, results, cfg)
			if !tt.ok {
				if r.err == nil {
					t.Fatalf("server accepted %s", CipherName(tt.suite))
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.c.Sec.Cipher != CipherName(tt.suite) {
				t.Errorf("Sec.Cipher = %q", r.c.Sec.Cipher)
			}
		})
	}
}

func TestGroups(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{}), nil)
	tests := []struct {
		name    string
		version uint16
		groups  []tls.CurveID
		want    string // Sec.Group; empty: refused
	}{
		{"x25519", tls.VersionTLS13, []tls.CurveID{tls.X25519}, "x25519"},
		{"p256", tls.VersionTLS13, []tls.CurveID{tls.CurveP256}, "secp256r1"},
		{"x25519mlkem768", tls.VersionTLS13, []tls.CurveID{tls.X25519MLKEM768}, "X25519MLKEM768"},
		{"secp256r1mlkem768", tls.VersionTLS13, []tls.CurveID{tls.SecP256r1MLKEM768}, "SecP256r1MLKEM768"},
		{"hybrid preferred", tls.VersionTLS13, []tls.CurveID{tls.X25519, tls.X25519MLKEM768}, "X25519MLKEM768"},
		{"p384 refused", tls.VersionTLS13, []tls.CurveID{tls.CurveP384}, ""},
		{"p521 refused", tls.VersionTLS13, []tls.CurveID{tls.CurveP521}, ""},
		{"tls12 x25519", tls.VersionTLS12, []tls.CurveID{tls.X25519}, "x25519"},
		{"tls12 p256", tls.VersionTLS12, []tls.CurveID{tls.CurveP256}, "secp256r1"},
		{"tls12 p384 refused", tls.VersionTLS12, []tls.CurveID{tls.CurveP384}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.clientConfig("a.example")
			cfg.MinVersion, cfg.MaxVersion = tt.version, tt.version
			cfg.CurvePreferences = tt.groups
			_, r := handshake(t, addr, results, cfg)
			if tt.want == "" {
				if r.err == nil {
					t.Fatalf("server accepted group %s", r.c.Sec.Group)
				}
				return
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.c.Sec.Group != tt.want {
				t.Errorf("Sec.Group = %q, want %q", r.c.Sec.Group, tt.want)
			}
		})
	}
}

func TestALPN(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{ALPN: "imap"}), nil)
	tests := []struct {
		name   string
		offer  []string
		want   string
		refuse bool
	}{
		{"none offered", nil, "", false},
		{"imap", []string{"imap"}, "imap", false},
		{"imap among others", []string{"pop3", "imap"}, "imap", false},
		{"pop3 only", []string{"pop3"}, "", true},
		{"smtp and h2", []string{"h2", "smtp"}, "", true},
		{"http/1.1", []string{"http/1.1"}, "", true},
	}
	for _, tt := range tests {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tt.name+"/"+VersionName(v), func(t *testing.T) {
				cfg := f.clientConfig("a.example")
				cfg.MaxVersion = v
				cfg.NextProtos = tt.offer
				_, r := handshake(t, addr, results, cfg)
				if tt.refuse {
					if !errContains(r.err, "unsupported application protocols") {
						t.Fatalf("server error %v, want an ALPN refusal", r.err)
					}
					return
				}
				if r.err != nil {
					t.Fatal(r.err)
				}
				if r.c.Sec.ALPN != tt.want {
					t.Errorf("Sec.ALPN = %q, want %q", r.c.Sec.ALPN, tt.want)
				}
			})
		}
	}
}

func TestCertificateChoice(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{}), nil)
	rsaOnly12 := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	tests := []struct {
		name    string
		sni     string // "" sends none
		version uint16
		suites  []uint16
		want    *tlstest.Cert
	}{
		{"a.example prefers ECDSA", "a.example", tls.VersionTLS13, nil, f.ecdsaA},
		{"other name of a.example", "mail.a.example", tls.VersionTLS13, nil, f.ecdsaA},
		{"a.example TLS1.2", "a.example", tls.VersionTLS12, nil, f.ecdsaA},
		{"a.example RSA-only client", "a.example", tls.VersionTLS12, rsaOnly12, f.rsaA},
		{"b.example", "b.example", tls.VersionTLS13, nil, f.ecdsaB},
		{"unknown name gets the default", "c.example", tls.VersionTLS13, nil, f.ecdsaA},
		{"unknown name RSA-only client", "c.example", tls.VersionTLS12, rsaOnly12, f.rsaA},
		{"no SNI gets the default", "", tls.VersionTLS13, nil, f.ecdsaA},
		{"no SNI RSA-only client", "", tls.VersionTLS12, rsaOnly12, f.rsaA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true, MaxVersion: tt.version, CipherSuites: tt.suites}
			c, r := handshake(t, addr, results, cfg)
			if r.err != nil {
				t.Fatal(r.err)
			}
			got := c.ConnectionState().PeerCertificates[0]
			if !got.Equal(tt.want.Cert) {
				t.Errorf("client saw %v %v, want %v", got.DNSNames, got.PublicKeyAlgorithm, tt.want.Cert.PublicKeyAlgorithm)
			}
			if leaf := r.c.ServerLeaf(); leaf == nil || !leaf.Equal(got) {
				t.Error("ServerLeaf is not the certificate the client saw")
			}
			if r.c.Sec.SNI != tt.sni {
				t.Errorf("Sec.SNI = %q, want %q", r.c.Sec.SNI, tt.sni)
			}
		})
	}
}

func TestReload(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{}), echo)

	old, r := handshake(t, addr, results, f.clientConfig("b.example"))
	if r.err != nil {
		t.Fatal(r.err)
	}
	// Renew b.example: a new key and certificate in the same files.
	renewed := f.ca.Issue(t, tlstest.Spec{DNSNames: []string{"b.example"}})
	renewed.WriteFiles(t, f.dir, "ecdsa-b")
	if err := f.gate.Reload(); err != nil {
		t.Fatal(err)
	}
	c, r := handshake(t, addr, results, f.clientConfig("b.example"))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !c.ConnectionState().PeerCertificates[0].Equal(renewed.Cert) {
		t.Fatal("a handshake after Reload did not get the new certificate")
	}
	checkEcho(t, old, "still there")
	if !old.ConnectionState().PeerCertificates[0].Equal(f.ecdsaB.Cert) {
		t.Fatal("the established connection changed certificate")
	}

	// A broken file: Reload fails and the renewed certificate stays.
	if err := os.WriteFile(filepath.Join(f.dir, "ecdsa-b.key"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.gate.Reload(); !errContains(err, "ecdsa-b.key") {
		t.Fatalf("Reload with a broken key file: %v", err)
	}
	c, r = handshake(t, addr, results, f.clientConfig("b.example"))
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !c.ConnectionState().PeerCertificates[0].Equal(renewed.Cert) {
		t.Fatal("a failed Reload changed the certificates in use")
	}
}

func TestResumption(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, tickets := range []bool{true, false} {
			name := VersionName(v) + map[bool]string{true: "/tickets", false: "/no-tickets"}[tickets]
			t.Run(name, func(t *testing.T) {
				f := newFixture(t)
				addr, results := serve(t, f.endpoint(t, Implicit, Policy{SessionTickets: tickets}), echo)
				cfg := f.clientConfig("a.example")
				cfg.MaxVersion = v
				cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				connect := func() (*tls.Conn, *Conn) {
					c, r := handshake(t, addr, results, cfg)
					if r.err != nil {
						t.Fatal(r.err)
					}
					// TLS 1.3 tickets arrive after the handshake: read once.
					checkEcho(t, c, "x")
					return c, r.c
				}
				_, first := connect()
				c, second := connect()
				if second.Sec.Resumed != tickets || c.ConnectionState().DidResume != tickets {
					t.Fatalf("Resumed = %v, want %v", second.Sec.Resumed, tickets)
				}
				if !second.ServerLeaf().Equal(first.ServerLeaf()) {
					t.Fatal("ServerLeaf of the resumed session differs from the original")
				}
				if !tickets {
					return
				}
				// After a renewal the old ticket must not resume: the
				// certificate it was issued under is gone.
				renewed := f.ca.Issue(t, tlstest.Spec{DNSNames: []string{"a.example"}})
				renewed.WriteFiles(t, f.dir, "ecdsa-a")
				if err := f.gate.Reload(); err != nil {
					t.Fatal(err)
				}
				c, third := connect()
				if third.Sec.Resumed || c.ConnectionState().DidResume {
					t.Fatal("a ticket for a certificate no longer loaded resumed")
				}
				if !third.ServerLeaf().Equal(renewed.Cert) {
					t.Fatal("ServerLeaf is not the renewed certificate")
				}
			})
		}
	}
}

func TestHandshakeTimeout(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{HandshakeTimeout: 50 * time.Millisecond}), nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := next(t, results)
	if !errContains(r.err, "no complete handshake within 50ms") {
		t.Fatalf("server error %v, want a handshake timeout", r.err)
	}
	recs := f.logs.waitFor(t, "TLS handshake failed")
	if !strings.Contains(recs[0].attrs["hint"], "sent nothing") {
		t.Errorf("log %v gives no hint", recs[0].attrs)
	}
}

func TestHandshakeFailureLog(t *testing.T) {
	f := newFixture(t)
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{}), nil)

	// A TLS 1.0 client: one line at Info with the address and the reason.
	cfg := f.clientConfig("a.example")
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	cfg.NextProtos = []string{"imap"}
	c, r := handshake(t, addr, results, cfg)
	if c != nil || r.err == nil {
		t.Fatal("TLS 1.0 accepted")
	}
	recs := f.logs.waitFor(t, "TLS handshake failed")
	got := recs[0]
	if got.level != slog.LevelInfo {
		t.Errorf("level %v, want Info", got.level)
	}
	for k, want := range map[string]string{"client_max_version": "TLS1.0", "sni": "a.example", "mode": "implicit"} {
		if got.attrs[k] != want {
			t.Errorf("%s = %q, want %q", k, got.attrs[k], want)
		}
	}
	if !strings.HasPrefix(got.attrs["remote"], "127.0.0.1:") || !strings.Contains(got.attrs["reason"], "unsupported versions") {
		t.Errorf("record %v lacks remote or reason", got.attrs)
	}

	// A cleartext client on the implicit port gets a hint.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("A1 CAPABILITY\r\n"))
	next(t, results)
	raw.Close()
	recs = f.logs.waitFor(t, "TLS handshake failed")
	if len(recs) != 2 || !strings.Contains(recs[1].attrs["hint"], "does not speak TLS") {
		t.Errorf("cleartext client: records %v", recs)
	}

	// A client that connects and leaves: Debug only.
	raw, err = net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()
	next(t, results)
	closed := f.logs.waitFor(t, "connection closed before the TLS handshake")
	if closed[0].level != slog.LevelDebug {
		t.Errorf("level %v, want Debug", closed[0].level)
	}
}

// echo answers each read with the same bytes.
func echo(c *Conn) {
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

func checkEcho(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf, []byte(msg)) {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func TestCovers(t *testing.T) {
	ca := tlstest.NewCA(t, "covers CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Issue(t, tlstest.Spec{CommonName: "mail.example.org", DNSNames: []string{"mail.example.org", "*.example.net"}}).WriteFiles(t, dir, "server")
	g, err := New(Options{Certificates: []KeyPair{{CertFile: certFile, KeyFile: keyFile}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"mail.example.org": true,
		"imap.example.net": true,
		"example.org":      false,
		"a.b.example.net":  false, // a wildcard covers one label only
	} {
		if got := g.Covers(name); got != want {
			t.Errorf("Covers(%q) = %v, want %v", name, got, want)
		}
	}
}
