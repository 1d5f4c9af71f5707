package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/tlsgate"
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// proxyHeader builds a PROXY v2 header for a TCP connection from src to
// dst with the given TLVs.
func proxyHeader(t testing.TB, src, dst string, tlvs ...proxyproto.TLV) []byte {
	t.Helper()
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	proto := proxyproto.TCPv4
	if s.Addr().Is6() {
		proto = proxyproto.TCPv6
	}
	h := &proxyproto.Header{
		Version:           2,
		Command:           proxyproto.PROXY,
		TransportProtocol: proto,
		SourceAddr:        net.TCPAddrFromAddrPort(s),
		DestinationAddr:   net.TCPAddrFromAddrPort(d),
	}
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sslTLV is the PP2_TYPE_SSL a proxy that terminated TLS sends.
func sslTLV(t testing.TB, version, cipher string) proxyproto.TLV {
	t.Helper()
	tlv, err := tlvparse.PP2SSL{
		Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
		TLV: []proxyproto.TLV{
			{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(version)},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(cipher)},
		},
	}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return tlv
}

func TestProxy(t *testing.T) {
	e := newEnv(t)
	got := newSecs()
	// 127.0.0.2 plays the trusted proxy, 127.0.0.1 an untrusted client.
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	_, addrs := e.start(t,
		Config{Service: "imap", Mode: tlsgate.Implicit, Handler: got.greeter(), ProxyFrom: trusted},
		Config{Service: "imap", Mode: tlsgate.StartTLS, Handler: got.greeter(), ProxyFrom: trusted},
		Config{Service: "imap", Mode: tlsgate.Implicit, Handler: got.greeter(), ProxyFrom: trusted, ProxyHeaderTimeout: 50 * time.Millisecond},
	)
	implicit, startTLS, shortTimeout := addrs[0], addrs[1], addrs[2]
	const client, front = "198.51.100.7:50123", "203.0.113.1:993"
	ssl13 := sslTLV(t, "TLSv1.3", "TLS_AES_256_GCM_SHA384")
	alpn := proxyproto.TLV{Type: proxyproto.PP2_TYPE_ALPN, Value: []byte("imap")}
	authority := proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("mail.example")}

	tests := []struct {
		name   string
		from   string // source address of the connection
		addr   string
		header []byte // sent first; nil: none
		tls    bool   // the client then does a TLS handshake
		want   *tlsgate.Security
		logs   string // for refusals: a word of the logged reason
	}{
		{
			name: "trusted, TCP only", from: "127.0.0.2", addr: implicit,
			header: proxyHeader(t, client, front), tls: true,
			want: &tlsgate.Security{Remote: netip.MustParseAddrPort(client), Local: netip.MustParseAddrPort(front), TLS: true, Version: "TLS1.3", SNI: "mail.example", ViaProxy: true},
		},
		{
			name: "trusted, TLS at the proxy", from: "127.0.0.2", addr: implicit,
			header: proxyHeader(t, client, front, ssl13, alpn, authority),
			want: &tlsgate.Security{Remote: netip.MustParseAddrPort(client), Local: netip.MustParseAddrPort(front), TLS: true, Version: "TLS1.3",
				Cipher: "TLS_AES_256_GCM_SHA384", SNI: "mail.example", ALPN: "imap", ViaProxy: true, TLSAtProxy: true},
		},
		{
			name: "trusted, TLS 1.2 at the proxy, OpenSSL cipher name", from: "127.0.0.2", addr: startTLS,
			header: proxyHeader(t, "[2001:db8::7]:40000", "[2001:db8::1]:143", sslTLV(t, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")),
			want: &tlsgate.Security{Remote: netip.MustParseAddrPort("[2001:db8::7]:40000"), Local: netip.MustParseAddrPort("[2001:db8::1]:143"), TLS: true, Version: "TLS1.2",
				Cipher: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", ViaProxy: true, TLSAtProxy: true},
		},
		{
			name: "trusted, STARTTLS listener, TCP only", from: "127.0.0.2", addr: startTLS,
			header: proxyHeader(t, client, front),
			want:   &tlsgate.Security{Remote: netip.MustParseAddrPort(client), Local: netip.MustParseAddrPort(front), ViaProxy: true},
		},
		{
			name: "trusted, TLS 1.1 at the proxy", from: "127.0.0.2", addr: implicit,
			header: proxyHeader(t, client, front, sslTLV(t, "TLSv1.1", "ECDHE-RSA-AES128-SHA")), logs: "below TLS 1.2",
		},
		{
			name: "trusted, no header", from: "127.0.0.2", addr: implicit, tls: true, logs: "sent no PROXY header",
		},
		{
			name: "trusted, v1 header", from: "127.0.0.2", addr: implicit,
			header: []byte("PROXY TCP4 198.51.100.7 203.0.113.1 50123 993\r\n"), logs: "v1 header",
		},
		{
			name: "trusted, header too slow", from: "127.0.0.2", addr: shortTimeout, logs: "no PROXY header from trusted proxy",
		},
		{
			name: "untrusted, header on implicit TLS", from: "127.0.0.1", addr: implicit,
			header: proxyHeader(t, client, front), logs: "not a trusted proxy",
		},
		{
			name: "untrusted, header on STARTTLS", from: "127.0.0.1", addr: startTLS,
			header: proxyHeader(t, client, front), logs: "not a trusted proxy",
		},
		{
			name: "untrusted, v1 header on STARTTLS", from: "127.0.0.1", addr: startTLS,
			header: []byte("PROXY TCP4 198.51.100.7 203.0.113.1 50123 993\r\n"), logs: "not a trusted proxy",
		},
		{
			name: "untrusted, direct TLS", from: "127.0.0.1", addr: implicit, tls: true,
			want: &tlsgate.Security{TLS: true, Version: "TLS1.3", SNI: "mail.example"},
		},
		{
			name: "untrusted, direct cleartext", from: "127.0.0.1", addr: startTLS,
			want: &tlsgate.Security{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got.drain() // left by refused STARTTLS connections, which were greeted
			raw := dialFrom(t, tt.from, tt.addr)
			if tt.header != nil {
				if _, err := raw.Write(tt.header); err != nil {
					t.Fatal(err)
				}
			}
			var rd io.ReadWriter = raw
			if tt.tls {
				rd = tls.Client(raw, e.clientConfig())
			}
			if tt.addr == startTLS && tt.header != nil && tt.want == nil {
				// The server speaks first on STARTTLS listeners; the
				// header is caught when the engine reads a command.
				readLine(rd)
				rd.Write([]byte("A1 NOOP\r\n"))
			}
			line, err := readLine(rd)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("served: %q", line)
				}
				e.logs.waitFor(t, "connection refused", tt.logs)
				return
			}
			if line != "* OK hello\r\n" {
				t.Fatalf("greeting %q, %v", line, err)
			}
			sec := got.next(t)
			want := *tt.want
			if !want.Remote.IsValid() {
				want.Remote = netip.MustParseAddrPort(raw.LocalAddr().String())
				want.Local = netip.MustParseAddrPort(raw.RemoteAddr().String())
			}
			if want.ViaProxy {
				want.Proxy = netip.MustParseAddrPort(raw.LocalAddr().String())
			}
			if tt.tls {
				want.Cipher, want.Group = sec.Cipher, sec.Group // the gate's choice
			}
			if *sec != want {
				t.Errorf("Sec = %+v\nwant  %+v", sec, want)
			}
			// The connection works after the header.
			rd.Write([]byte("A2 NOOP\r\n"))
			if line, _ := readLine(rd); line != "A2 NOOP\r\n" {
				t.Errorf("echo %q", line)
			}
		})
	}
}

// TestProxyStartTLSPipelined: bytes that arrived with the PROXY header and
// the STARTTLS command, but that the engine did not read, are refused
// rather than taken into the TLS session.
func TestProxyStartTLSPipelined(t *testing.T) {
	e := newEnv(t)
	result := make(chan error, 1)
	_, addrs := e.start(t, Config{Service: "imap", Mode: tlsgate.StartTLS, ProxyFrom: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Handler: HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
			// An engine that reads exactly the command and nothing more.
			if _, err := io.ReadFull(c, make([]byte, len("A1 STARTTLS\r\n"))); err != nil {
				result <- err
				return
			}
			result <- c.StartTLS(ctx)
		})})
	raw := dialFrom(t, "127.0.0.2", addrs[0])
	msg := append(proxyHeader(t, "198.51.100.7:1", "203.0.113.1:143"), "A1 STARTTLS\r\nA2 LOGIN alice secret\r\n"...)
	if _, err := raw.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := <-result; !errors.Is(err, tlsgate.ErrPipelined) {
		t.Fatalf("StartTLS = %v, want ErrPipelined", err)
	}
	if _, err := bufio.NewReader(raw).ReadByte(); err == nil {
		t.Fatal("connection left open")
	}
}

func TestParseSSLTLV(t *testing.T) {
	full := sslTLV(t, "TLSv1.3", "TLS_AES_128_GCM_SHA256").Value
	noClient := append([]byte{0}, full[1:]...)
	tests := []struct {
		name    string
		value   []byte
		want    *tlsgate.ProxyTLS
		wantErr bool
	}{
		{"TLS at the proxy", full, &tlsgate.ProxyTLS{Version: "TLSv1.3", Cipher: "TLS_AES_128_GCM_SHA256"}, false},
		{"client did not use TLS", noClient, nil, false},
		{"too short", full[:4], nil, true},
		{"sub-TLV cut short", full[:len(full)-3], nil, true},
		{"TLS without a version", []byte{pp2ClientSSL, 0, 0, 0, 0}, nil, true},
		{"version not text", append([]byte{pp2ClientSSL, 0, 0, 0, 0}, byte(proxyproto.PP2_SUBTYPE_SSL_VERSION), 0, 1, 0x07), nil, true},
	}
	for _, tt := range tests {
		got, err := parseSSLTLV(tt.value)
		if (err != nil) != tt.wantErr || (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
			t.Errorf("%s: parseSSLTLV = %+v, %v; want %+v, error %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}
