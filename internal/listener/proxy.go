package listener

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/latchmail/latch/internal/tlsgate"
	"github.com/pires/go-proxyproto"
)

// readProxy applies the listener's PROXY protocol rules to a new
// connection (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
// It returns the connection to read from from now on and what the header
// said.
func (l *listener) readProxy(raw net.Conn) (net.Conn, tlsgate.Peer, error) {
	if len(l.cfg.ProxyFrom) == 0 {
		return raw, tlsgate.Peer{}, nil
	}
	// Shutdown ends the wait for a header as it ends a handshake.
	stop := context.AfterFunc(l.srv.ctx, func() { raw.SetReadDeadline(time.Now()) })
	defer stop()
	src := addrPort(raw.RemoteAddr())
	if !l.trusted(src.Addr()) {
		sc := &sniffConn{Conn: raw, src: src}
		if l.cfg.Mode == tlsgate.Implicit {
			// A TLS client speaks first, so look now: the refusal is then
			// not reported as a TLS failure. A STARTTLS or plain client
			// waits for the greeting, so its first Read looks instead.
			raw.SetReadDeadline(time.Now().Add(l.ep.Policy().HandshakeTimeout))
			if err := sc.check(); err != nil {
				return nil, tlsgate.Peer{}, err
			}
			raw.SetReadDeadline(time.Time{})
		} else {
			sc.refused = func(err error) {
				l.sampled(slog.LevelWarn, "connection refused", slog.String("remote", src.String()), slog.String("err", err.Error()))
			}
		}
		return sc, tlsgate.Peer{}, nil
	}

	raw.SetReadDeadline(time.Now().Add(l.cfg.ProxyHeaderTimeout))
	br := bufio.NewReader(raw)
	hdr, err := proxyproto.Read(br)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, tlsgate.Peer{}, fmt.Errorf("listener: no PROXY header from trusted proxy %s within %v", src, l.cfg.ProxyHeaderTimeout)
	case errors.Is(err, proxyproto.ErrNoProxyProtocol):
		return nil, tlsgate.Peer{}, fmt.Errorf("listener: trusted proxy %s sent no PROXY header: connections from trusted proxies must open with a PROXY v2 header (send-proxy-v2)", src)
	case err != nil:
		return nil, tlsgate.Peer{}, fmt.Errorf("listener: invalid PROXY header from %s: %w", src, err)
	case hdr.Version != 2:
		return nil, tlsgate.Peer{}, fmt.Errorf("listener: PROXY protocol v%d header from %s: configure the proxy to send v2 (send-proxy-v2)", hdr.Version, src)
	}
	raw.SetReadDeadline(time.Time{})
	conn := &bufferedConn{Conn: raw, br: br}
	if hdr.Command.IsLocal() {
		// The proxy's own connection (a health check): served as such.
		return conn, tlsgate.Peer{}, nil
	}
	from, fok := hdr.SourceAddr.(*net.TCPAddr)
	to, tok := hdr.DestinationAddr.(*net.TCPAddr)
	if !hdr.TransportProtocol.IsStream() || !fok || !tok {
		return nil, tlsgate.Peer{}, fmt.Errorf("listener: PROXY header from %s is for a %v connection, not TCP", src, hdr.TransportProtocol)
	}
	peer := tlsgate.Peer{Remote: unmap(from.AddrPort()), Local: unmap(to.AddrPort()), Proxy: src}
	tlvs, err := hdr.TLVs()
	if err != nil {
		return nil, tlsgate.Peer{}, fmt.Errorf("listener: PROXY header from %s: %w", src, err)
	}
	var pt *tlsgate.ProxyTLS
	var alpn, authority string
	for _, t := range tlvs {
		switch t.Type {
		case proxyproto.PP2_TYPE_SSL:
			p, err := parseSSLTLV(t.Value)
			if err != nil {
				return nil, tlsgate.Peer{}, fmt.Errorf("listener: PROXY header from %s: malformed PP2_TYPE_SSL: %w", src, err)
			}
			pt = p
		case proxyproto.PP2_TYPE_ALPN:
			alpn = string(t.Value)
		case proxyproto.PP2_TYPE_AUTHORITY:
			authority = string(t.Value)
		}
	}
	if pt != nil {
		pt.ALPN, pt.SNI = alpn, authority
		peer.ProxyTLS = pt
	}
	return conn, peer, nil
}

func (l *listener) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.cfg.ProxyFrom {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// bufferedConn reads what the PROXY header reader buffered past the header
// first, then the connection itself.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader // nil once drained
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if b.br != nil {
		if b.br.Buffered() > 0 {
			return b.br.Read(p)
		}
		b.br = nil // free the buffer for the connection's lifetime
	}
	return b.Conn.Read(p)
}

// Buffered reports the bytes read from the client but not yet consumed;
// tlsgate.Conn.StartTLS refuses to start while there are any.
func (b *bufferedConn) Buffered() int {
	if b.br == nil {
		return 0
	}
	return b.br.Buffered()
}

var (
	sigV2 = []byte("\r\n\r\n\x00\r\nQUIT\n")
	sigV1 = []byte("PROXY ")
)

// sniffConn refuses a PROXY header from a source not trusted to send one.
// It reads the first bytes the client sends, on the first Read (or on
// check), and hands them on unchanged when they are not a PROXY signature.
// A client that sends only a proper prefix of a signature, such as an
// empty line, and then waits for an answer, waits until its deadline.
type sniffConn struct {
	net.Conn
	src     netip.AddrPort
	refused func(error) // logs the refusal; nil when the caller does
	head    [12]byte
	n, off  int // bytes in head, and handed on
	checked bool
	err     error
}

func (s *sniffConn) check() error {
	for !s.checked {
		m, err := s.Conn.Read(s.head[s.n:])
		s.n += m
		b := s.head[:s.n]
		switch {
		case bytes.HasPrefix(b, sigV2) || bytes.HasPrefix(b, sigV1):
			s.checked = true
			s.err = fmt.Errorf("listener: PROXY header from %s, which is not a trusted proxy: refused (if it is your proxy, add its address to the listener's trusted proxies)", s.src)
			if s.refused != nil {
				s.refused(s.err)
			}
		case !bytes.HasPrefix(sigV2, b) && !bytes.HasPrefix(sigV1, b):
			s.checked = true
		case err != nil && s.n > 0:
			s.checked = true // hand on what came; the error recurs on the next Read
		}
		if err != nil && !s.checked {
			return err
		}
	}
	return s.err
}

func (s *sniffConn) Read(p []byte) (int, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if s.off < s.n {
		k := copy(p, s.head[s.off:s.n])
		s.off += k
		return k, nil
	}
	return s.Conn.Read(p)
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return unmap(t.AddrPort())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return unmap(ap)
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// pp2ClientSSL is the PP2_CLIENT_SSL bit of the SSL TLV's client field.
const pp2ClientSSL = 0x01

// parseSSLTLV reads the value of a PP2_TYPE_SSL TLV (PROXY protocol v2,
// section 2.2.5): a client bit field, a 32-bit verify result, then
// sub-TLVs. It returns the TLS facts when the client connected to the
// proxy over TLS (the version is then required), and nil otherwise.
// Parsed here rather than with go-proxyproto's tlvparse, whose package
// drags the testing package into the binary.
func parseSSLTLV(v []byte) (*tlsgate.ProxyTLS, error) {
	if len(v) < 5 {
		return nil, proxyproto.ErrMalformedTLV
	}
	subs, err := proxyproto.SplitTLVs(v[5:])
	if err != nil {
		return nil, err
	}
	if v[0]&pp2ClientSSL == 0 {
		return nil, nil
	}
	var pt tlsgate.ProxyTLS
	for _, s := range subs {
		switch s.Type {
		case proxyproto.PP2_SUBTYPE_SSL_VERSION:
			pt.Version = string(s.Value)
		case proxyproto.PP2_SUBTYPE_SSL_CIPHER:
			pt.Cipher = string(s.Value)
		}
	}
	if pt.Version == "" || !printableASCII(pt.Version) || !printableASCII(pt.Cipher) {
		return nil, proxyproto.ErrMalformedTLV
	}
	return &pt, nil
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
