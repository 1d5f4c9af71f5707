package tlsgate

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/tlsgate/tlstest"
)

func TestNewEndpointErrors(t *testing.T) {
	f := newFixture(t)
	noAccounts, err := New(Options{Certificates: f.opts.Certificates, Log: f.opts.Log})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		gate *Gate
		mode Mode
		p    Policy
		want string
	}{
		{"client certs on STARTTLS", f.gate, StartTLS, Policy{ALPN: "imap", ClientCerts: true}, "only for implicit-TLS listeners"},
		{"client certs on plain", nil, Plain, Policy{ClientCerts: true}, "only for implicit-TLS listeners"},
		{"client certs without accounts", noAccounts, Implicit, Policy{ALPN: "imap", ClientCerts: true}, "no account lookup"},
		{"no ALPN", f.gate, Implicit, Policy{}, "names no ALPN protocol"},
		{"implicit without gate", nil, Implicit, Policy{ALPN: "imap"}, "needs server certificates"},
		{"unknown mode", f.gate, Mode(9), Policy{ALPN: "imap"}, "unknown listener mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewEndpoint(tt.gate, tt.mode, tt.p, nil)
			if !errContains(err, tt.want) {
				t.Fatalf("NewEndpoint: %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := NewEndpoint(f.gate, Implicit, Policy{ALPN: "imap", ClientCerts: true}, nil); err != nil {
		t.Fatalf("client certs on an implicit listener: %v", err)
	}
}

func TestClientCertRequest(t *testing.T) {
	f := newFixture(t)
	client := tlstest.SelfSigned(t, tlstest.Spec{CommonName: "client", Client: true})
	for _, accept := range []bool{true, false} {
		addr, results := serve(t, f.endpoint(t, Implicit, Policy{ClientCerts: accept}), nil)
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(VersionName(v)+map[bool]string{true: "/accepting", false: "/not-accepting"}[accept], func(t *testing.T) {
				asked := false
				cfg := f.clientConfig("a.example")
				cfg.MaxVersion = v
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					asked = true
					c := client.TLS(t)
					return &c, nil
				}
				_, r := handshake(t, addr, results, cfg)
				if r.err != nil {
					t.Fatal(r.err)
				}
				if asked != accept {
					t.Fatalf("certificate requested: %v, want %v", asked, accept)
				}
				if got := r.c.Sec.ClientCert != nil; got != accept {
					t.Fatalf("Sec.ClientCert set: %v, want %v", got, accept)
				}
			})
		}
	}
}

func TestClientCertMapping(t *testing.T) {
	f := newFixture(t)
	alice := f.accts.add(1, "alice", "alice@a.example")
	bob := f.accts.add(2, "bob", "bob@a.example", "postmaster@a.example")
	issue := func(s tlstest.Spec) *tlstest.Cert {
		s.Client = true
		return f.ca.Issue(t, s)
	}
	self := func(s tlstest.Spec) *tlstest.Cert {
		s.Client = true
		return tlstest.SelfSigned(t, s)
	}
	boundAlice := self(tlstest.Spec{CommonName: "alice's laptop"})
	f.accts.bind(alice, boundAlice.Cert)
	boundExpired := self(tlstest.Spec{CommonName: "old", Validity: tlstest.Expired})
	f.accts.bind(alice, boundExpired.Cert)
	caBoundBob := issue(tlstest.Spec{Emails: []string{"alice@a.example"}})
	f.accts.bind(bob, caBoundBob.Cert)
	otherCA := tlstest.NewCA(t, "Other CA")

	tests := []struct {
		name      string
		cert      *tlstest.Cert // nil: none
		version   uint16
		storeDown bool
		account   string
		mappedBy  string
	}{
		{"no certificate", nil, 0, false, "", ""},
		{"unknown self-signed", self(tlstest.Spec{Emails: []string{"alice@a.example"}}), 0, false, "", ""},
		{"bound fingerprint", boundAlice, 0, false, "alice", "spki"},
		{"bound fingerprint TLS1.2", boundAlice, tls.VersionTLS12, false, "alice", "spki"},
		{"bound but expired", boundExpired, 0, false, "", ""},
		{"CA-issued", issue(tlstest.Spec{Emails: []string{"alice@a.example"}}), 0, false, "alice", "ca"},
		{"CA-issued TLS1.2", issue(tlstest.Spec{Emails: []string{"alice@a.example"}}), tls.VersionTLS12, false, "alice", "ca"},
		{"CA-issued RSA", issue(tlstest.Spec{Emails: []string{"alice@a.example"}, Key: tlstest.RSA}), 0, false, "alice", "ca"},
		{"CA-issued address case", issue(tlstest.Spec{Emails: []string{"Alice@A.example"}}), 0, false, "alice", "ca"},
		{"CA-issued alias", issue(tlstest.Spec{Emails: []string{"postmaster@a.example"}}), 0, false, "bob", "ca"},
		{"binding wins over CA", caBoundBob, 0, false, "bob", "spki"},
		{"CA-issued expired", issue(tlstest.Spec{Emails: []string{"alice@a.example"}, Validity: tlstest.Expired}), 0, false, "", ""},
		{"CA-issued not yet valid", issue(tlstest.Spec{Emails: []string{"alice@a.example"}, Validity: tlstest.NotYetValid}), 0, false, "", ""},
		{"CA-issued for servers", f.ca.Issue(t, tlstest.Spec{Emails: []string{"alice@a.example"}}), 0, false, "", ""},
		{"other CA", otherCA.Issue(t, tlstest.Spec{Emails: []string{"alice@a.example"}, Client: true}), 0, false, "", ""},
		{"CA-issued unknown address", issue(tlstest.Spec{Emails: []string{"nobody@a.example"}}), 0, false, "", ""},
		{"CA-issued no address", issue(tlstest.Spec{CommonName: "alice@a.example"}), 0, false, "", ""},
		{"CA-issued two accounts", issue(tlstest.Spec{Emails: []string{"alice@a.example", "bob@a.example"}}), 0, false, "", ""},
		{"CA-issued one account twice", issue(tlstest.Spec{Emails: []string{"bob@a.example", "postmaster@a.example"}}), 0, false, "bob", "ca"},
		{"store down", boundAlice, 0, true, "", ""},
	}
	addr, results := serve(t, f.endpoint(t, Implicit, Policy{ClientCerts: true}), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.accts.mu.Lock()
			f.accts.err = nil
			if tt.storeDown {
				f.accts.err = errStoreDown
			}
			f.accts.mu.Unlock()
			cfg := f.clientConfig("a.example")
			cfg.MaxVersion = tt.version
			if tt.cert != nil {
				cfg.Certificates = []tls.Certificate{tt.cert.TLS(t)}
			}
			_, r := handshake(t, addr, results, cfg)
			if r.err != nil {
				t.Fatalf("handshake failed: %v", r.err)
			}
			cc := r.c.Sec.ClientCert
			if tt.cert == nil {
				if cc != nil {
					t.Fatalf("ClientCert = %+v without a certificate", cc)
				}
				return
			}
			if cc == nil {
				t.Fatal("ClientCert is nil")
			}
			if cc.Account != tt.account || cc.MappedBy != tt.mappedBy {
				t.Errorf("mapped to %q by %q, want %q by %q", cc.Account, cc.MappedBy, tt.account, tt.mappedBy)
			}
			if r.c.Sec.Authenticated() != tt.account {
				t.Errorf("Authenticated() = %q", r.c.Sec.Authenticated())
			}
			if cc.SPKISHA256 != SPKIFingerprint(tt.cert.Cert) || len(cc.SPKISHA256) != 64 {
				t.Errorf("SPKISHA256 = %q", cc.SPKISHA256)
			}
			if cc.Subject != tt.cert.Cert.Subject.String() {
				t.Errorf("Subject = %q", cc.Subject)
			}
		})
	}
}

func TestStartTLS(t *testing.T) {
	f := newFixture(t)
	type report struct {
		before, after *Security
		canBefore     bool
		canAfter      bool
		err, again    error
	}
	reports := make(chan report, 1)
	handle := func(c *Conn) {
		var rep report
		defer func() { reports <- rep }()
		br := bufio.NewReader(c)
		c.Write([]byte("* OK ready\r\n"))
		if _, err := br.ReadString('\n'); err != nil {
			rep.err = err
			return
		}
		rep.before, rep.canBefore = c.Sec, c.CanStartTLS()
		c.Log.Info("before STARTTLS")
		c.Write([]byte("A1 OK begin TLS\r\n"))
		rep.err = c.StartTLS(context.Background())
		br.Reset(c) // discard cleartext input
		rep.after, rep.canAfter = c.Sec, c.CanStartTLS()
		c.Log.Info("after STARTTLS")
		rep.again = c.StartTLS(context.Background())
		if rep.err == nil {
			echo(c)
		}
	}
	addr, results := serve(t, f.endpoint(t, StartTLS, Policy{ALPN: "imap"}), handle)

	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(30 * time.Second))
	r := next(t, results)
	if r.err != nil {
		t.Fatal(r.err)
	}
	br := bufio.NewReader(raw)
	if line, _ := br.ReadString('\n'); line != "* OK ready\r\n" {
		t.Fatalf("greeting %q", line)
	}
	raw.Write([]byte("A1 STARTTLS\r\n"))
	if line, _ := br.ReadString('\n'); line != "A1 OK begin TLS\r\n" {
		t.Fatalf("reply %q", line)
	}
	cfg := f.clientConfig("b.example")
	cfg.NextProtos = []string{"imap"}
	tc := tls.Client(raw, cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	checkEcho(t, tc, "A2 NOOP\r\n")
	tc.Close()
	rep := <-reports
	if rep.err != nil {
		t.Fatalf("StartTLS: %v", rep.err)
	}
	if rep.before.TLS || !rep.canBefore || !rep.before.Remote.IsValid() || !rep.before.Local.IsValid() {
		t.Errorf("before STARTTLS: %+v, CanStartTLS %v", rep.before, rep.canBefore)
	}
	want := Security{Remote: rep.before.Remote, Local: rep.before.Local, TLS: true, Version: "TLS1.3",
		Cipher: rep.after.Cipher, Group: "X25519MLKEM768", SNI: "b.example", ALPN: "imap"}
	if *rep.after != want || rep.after.Cipher == "" {
		t.Errorf("after STARTTLS: %+v\nwant %+v", rep.after, want)
	}
	if rep.canAfter || !errors.Is(rep.again, ErrNoStartTLS) {
		t.Errorf("after STARTTLS: CanStartTLS %v, second StartTLS %v", rep.canAfter, rep.again)
	}
	before, after := f.logs.find("before STARTTLS"), f.logs.find("after STARTTLS")
	if before[0].attrs["sec.tls"] != "none" || after[0].attrs["sec.tls"] != "TLS1.3" || after[0].attrs["sec.sni"] != "b.example" {
		t.Errorf("Log carries %v before and %v after STARTTLS", before[0].attrs, after[0].attrs)
	}
}

func TestStartTLSRefused(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		mode Mode
	}{
		{"implicit", Implicit},
		{"plain", Plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *Endpoint
			if tt.mode == Plain {
				var err error
				if e, err = NewEndpoint(nil, Plain, Policy{}, slog.New(f.logs)); err != nil {
					t.Fatal(err)
				}
			} else {
				e = f.endpoint(t, tt.mode, Policy{})
			}
			addr, results := serve(t, e, func(c *Conn) {
				if c.CanStartTLS() {
					t.Error("CanStartTLS on a connection that cannot")
				}
				if err := c.StartTLS(context.Background()); !errors.Is(err, ErrNoStartTLS) {
					t.Errorf("StartTLS = %v, want ErrNoStartTLS", err)
				}
				c.Write([]byte("still open\n"))
			})
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			var rd io.Reader = raw
			if tt.mode == Implicit {
				tc := tls.Client(raw, f.clientConfig("a.example"))
				rd = tc
			}
			line, err := bufio.NewReader(rd).ReadString('\n')
			if line != "still open\n" {
				t.Fatalf("read %q, %v", line, err)
			}
			r := next(t, results)
			if r.err != nil {
				t.Fatal(r.err)
			}
			if tt.mode == Plain && (r.c.Sec.TLS || r.c.TLSState() != nil || r.c.ServerLeaf() != nil || !r.c.Sec.Remote.IsValid()) {
				t.Errorf("plain connection: %+v", r.c.Sec)
			}
		})
	}
}

// bufferedConn reads through a bufio.Reader, as the listener's PROXY header
// reader does, and reports what it holds.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.br.Read(p) }
func (b *bufferedConn) Buffered() int              { return b.br.Buffered() }

func TestStartTLSPipelined(t *testing.T) {
	f := newFixture(t)
	e := f.endpoint(t, StartTLS, Policy{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	const cmd, injected = "A1 STARTTLS\r\n", "A2 DELETE INBOX\r\n"
	if _, err := client.Write([]byte(cmd + injected)); err != nil {
		t.Fatal(err)
	}
	bc := &bufferedConn{Conn: raw, br: bufio.NewReader(raw)}
	if _, err := bc.br.Peek(len(cmd + injected)); err != nil {
		t.Fatal(err)
	}
	c, err := e.NewConn(context.Background(), bc, Peer{})
	if err != nil {
		t.Fatal(err)
	}
	// An engine that reads exactly the command leaves the rest below it.
	if _, err := io.ReadFull(c, make([]byte, len(cmd))); err != nil {
		t.Fatal(err)
	}
	if err := c.StartTLS(context.Background()); !errors.Is(err, ErrPipelined) {
		t.Fatalf("StartTLS = %v, want ErrPipelined", err)
	}
	client.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("client read %v, want the connection closed", err)
	}
}

// recorder keeps every byte read through it.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got = append(r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// lastRecordType returns the content type of the last TLS record in b.
func lastRecordType(t *testing.T, b []byte) byte {
	t.Helper()
	var typ byte
	for len(b) > 0 {
		if len(b) < 5 {
			t.Fatalf("truncated record header % x", b)
		}
		n := int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			t.Fatalf("truncated record")
		}
		typ, b = b[0], b[5+n:]
	}
	return typ
}

// TestCloseNotify checks that Close sends close_notify before closing TCP
// (RFC 8314 3.4). crypto/tls clients return io.EOF on a TCP close at a
// record boundary even without the alert, so the test reads the records:
// under TLS 1.2 the content type of the encrypted alert is visible.
// (TLS 1.3 hides it; the openssl interop test covers that version.)
func TestCloseNotify(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		close    func(c *Conn)
		wantLast byte
	}{
		{"Close", func(c *Conn) { c.Close() }, 21},                             // alert
		{"TCP close (control)", func(c *Conn) { c.tls.NetConn().Close() }, 23}, // application_data
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, results := serve(t, f.endpoint(t, Implicit, Policy{}), func(c *Conn) {
				c.Write([]byte("bye\r\n"))
				tt.close(c)
			})
			raw, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			rec := &recorder{Conn: raw}
			cfg := f.clientConfig("a.example")
			cfg.MaxVersion = tls.VersionTLS12
			tc := tls.Client(rec, cfg)
			tc.SetDeadline(time.Now().Add(30 * time.Second))
			b, err := io.ReadAll(tc)
			if err != nil || string(b) != "bye\r\n" {
				t.Fatalf("read %q, %v; want the message and EOF", b, err)
			}
			if r := next(t, results); r.err != nil {
				t.Fatal(r.err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if got := lastRecordType(t, rec.got); got != tt.wantLast {
				t.Fatalf("last record type %d, want %d", got, tt.wantLast)
			}
		})
	}
}

func TestProxyTLS(t *testing.T) {
	f := newFixture(t)
	remote := netip.MustParseAddrPort("198.51.100.7:50123")
	local := netip.MustParseAddrPort("203.0.113.1:993")
	proxy := netip.MustParseAddrPort("10.0.0.2:41000")
	tests := []struct {
		name    string
		pt      ProxyTLS
		noPeer  bool // no proxy address
		version string
		cipher  string
		errMsg  string
	}{
		{"TLS1.3", ProxyTLS{Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256"}, false, "TLS1.3", "TLS_AES_128_GCM_SHA256", ""},
		{"TLS1.2 OpenSSL name", ProxyTLS{Version: "TLSv1.2", Cipher: "ECDHE-RSA-AES128-GCM-SHA256"}, false, "TLS1.2", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", ""},
		{"TLS1.2 IANA name", ProxyTLS{Version: "TLSv1.2", Cipher: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"}, false, "TLS1.2", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", ""},
		{"unknown cipher", ProxyTLS{Version: "TLSv1.2", Cipher: "GOST2012-KUZNYECHIK"}, false, "TLS1.2", "", ""},
		{"matching ALPN and SNI", ProxyTLS{Version: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", ALPN: "imap", SNI: "Mail.A.example"}, false, "TLS1.3", "TLS_AES_256_GCM_SHA384", ""},
		{"TLS1.1", ProxyTLS{Version: "TLSv1.1", Cipher: "ECDHE-RSA-AES128-SHA"}, false, "", "", "below TLS 1.2"},
		{"TLS1.0", ProxyTLS{Version: "TLSv1", Cipher: "ECDHE-RSA-AES128-SHA"}, false, "", "", "below TLS 1.2"},
		{"SSLv3", ProxyTLS{Version: "SSLv3", Cipher: "AES128-SHA"}, false, "", "", "not one of TLSv1.2 or TLSv1.3"},
		{"ALPN mismatch", ProxyTLS{Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256", ALPN: "pop3"}, false, "", "", `negotiated ALPN "pop3"`},
		{"no proxy address", ProxyTLS{Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256"}, true, "", "", "no proxy address"},
	}
	e := f.endpoint(t, StartTLS, Policy{ALPN: "imap"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := net.Pipe()
			defer client.Close()
			peer := Peer{Remote: remote, Local: local, Proxy: proxy, ProxyTLS: &tt.pt}
			if tt.noPeer {
				peer.Proxy = netip.AddrPort{}
			}
			c, err := e.NewConn(context.Background(), server, peer)
			if tt.errMsg != "" {
				if !errContains(err, tt.errMsg) {
					t.Fatalf("NewConn: %v, want %q", err, tt.errMsg)
				}
				if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
					t.Errorf("refused connection not closed: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := Security{Remote: remote, Local: local, TLS: true, Version: tt.version, Cipher: tt.cipher, SNI: strings.ToLower(tt.pt.SNI), ALPN: tt.pt.ALPN, ViaProxy: true, Proxy: proxy, TLSAtProxy: true}
			if *c.Sec != want {
				t.Errorf("Sec = %+v\nwant  %+v", c.Sec, want)
			}
			if c.CanStartTLS() || c.TLSState() != nil || c.ServerLeaf() != nil {
				t.Error("TLS at the proxy: no STARTTLS, no TLS state, no server leaf here")
			}
			if c.RemoteAddr().String() != remote.String() || c.LocalAddr().String() != local.String() {
				t.Errorf("addresses %v %v", c.RemoteAddr(), c.LocalAddr())
			}
		})
	}
}
