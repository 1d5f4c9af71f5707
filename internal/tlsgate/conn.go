package tlsgate

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Peer is what the listener learned about a connection before any TLS.
type Peer struct {
	// Remote and Local are the client's address and the address it
	// connected to; zero values are taken from the connection.
	Remote, Local netip.AddrPort
	// Proxy is the trusted proxy whose PROXY header gave Remote and Local;
	// zero when the client connected directly.
	Proxy netip.AddrPort
	// ProxyTLS is set when that proxy terminated TLS.
	ProxyTLS *ProxyTLS
}

// Conn is one client connection as protocol engines see it: a net.Conn
// whose transport is the TCP connection before TLS and the TLS connection
// after, with the Security record of what it has proved.
//
// Read, Write and Close may be called concurrently with each other, as on
// any net.Conn, but nothing may run concurrently with StartTLS.
type Conn struct {
	// Sec is the connection's Security record. It is set by NewConn and
	// replaced (never modified) by StartTLS: read it again after STARTTLS.
	Sec *Security
	// Log carries Sec as the "sec" group on every line; StartTLS replaces
	// it along with Sec.
	Log *slog.Logger

	ep   *Endpoint
	conn net.Conn    // current transport
	tls  *tls.Conn   // nil until TLS runs here
	leaf *serverCert // the certificate this handshake presented
}

// NewConn takes over a connection accepted by a listener of this endpoint.
// On an Implicit endpoint it first completes the TLS handshake, bounded by
// the policy's timeout and by ctx; a connection whose TLS was terminated by
// a trusted proxy (peer.ProxyTLS) needs no handshake. On error the
// connection has been closed and the failure logged.
//
// If raw has a Buffered() int method (a reader that consumed a PROXY
// header), StartTLS consults it to refuse pipelined cleartext.
func (e *Endpoint) NewConn(ctx context.Context, raw net.Conn, peer Peer) (*Conn, error) {
	c := &Conn{ep: e, conn: raw}
	sec := &Security{
		Remote:   peer.Remote,
		Local:    peer.Local,
		Proxy:    peer.Proxy,
		ViaProxy: peer.Proxy.IsValid(),
	}
	if !sec.Remote.IsValid() {
		sec.Remote = addrPort(raw.RemoteAddr())
	}
	if !sec.Local.IsValid() {
		sec.Local = addrPort(raw.LocalAddr())
	}
	if peer.ProxyTLS != nil {
		err := errors.New("tlsgate: TLS facts from a proxy but no proxy address")
		if sec.ViaProxy {
			err = proxiedSecurity(sec, peer.ProxyTLS, e.policy.ALPN)
		}
		if err != nil {
			e.gate.logLimited(e.log, slog.LevelWarn, "connection refused", slog.String("remote", sec.Remote.String()), slog.String("err", err.Error()))
			raw.Close()
			return nil, err
		}
		if sec.Cipher == "" {
			e.gate.logLimited(e.log, slog.LevelInfo, "proxy reported a cipher without an IANA name; it is left out of the Security record",
				slog.String("remote", sec.Remote.String()), slog.String("proxy_cipher", peer.ProxyTLS.Cipher))
		}
		c.setSec(sec)
		return c, nil
	}
	if e.mode == Implicit {
		if err := c.handshake(ctx, sec); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
	c.setSec(sec)
	return c, nil
}

// CanStartTLS reports whether StartTLS may be called: the connection came
// in on a STARTTLS listener and has no TLS yet. Engines offer STARTTLS (or
// STLS) only when it is true (RFC 8314 4).
func (c *Conn) CanStartTLS() bool {
	return c.ep.mode == StartTLS && !c.Sec.TLS
}

// StartTLS runs the TLS server handshake on a connection that asked for it
// with STARTTLS (IMAP, SMTP) or STLS (POP3), and on success switches Read
// and Write to TLS and replaces Sec and Log. Call it right after sending
// the positive reply to the command.
//
// THE CALLER MUST DISCARD EVERY BYTE IT HAS BUFFERED BEYOND THE STARTTLS
// COMMAND LINE AND NEVER READ FROM THAT BUFFER AGAIN. Those bytes arrived
// in cleartext; treating them as sent under TLS lets an attacker inject
// commands into the protected session (CVE-2011-0411, CERT VU#555316; RFC
// 8314 Appendix A). With a bufio.Reader br over c, call br.Reset(c) as soon
// as StartTLS returns. A client that sent anything after the command is
// misbehaving, so closing the connection when br.Buffered() > 0 is also
// fine. Forget what the client said before STARTTLS too, such as the EHLO
// name (RFC 3207 4.2). StartTLS itself refuses with ErrPipelined when
// cleartext is still waiting in the transport below the engine.
//
// It returns ErrNoStartTLS, leaving the connection as it was, when
// CanStartTLS is false. Any other error (ErrPipelined, a failed or timed
// out handshake) leaves the connection closed: the caller just ends the
// session.
func (c *Conn) StartTLS(ctx context.Context) error {
	if !c.CanStartTLS() {
		return ErrNoStartTLS
	}
	if b, ok := c.conn.(interface{ Buffered() int }); ok && b.Buffered() > 0 {
		c.ep.gate.logLimited(c.Log, slog.LevelWarn, "cleartext sent after STARTTLS before the handshake: connection closed", slog.Int("bytes", b.Buffered()))
		c.conn.Close()
		return ErrPipelined
	}
	sec := &Security{Remote: c.Sec.Remote, Local: c.Sec.Local, ViaProxy: c.Sec.ViaProxy, Proxy: c.Sec.Proxy}
	if err := c.handshake(ctx, sec); err != nil {
		c.conn.Close()
		return err
	}
	return nil
}

// TLSState returns the state of the TLS connection, or nil when TLS does not
// run here (none yet, or terminated at a proxy).
func (c *Conn) TLSState() *tls.ConnectionState {
	if c.tls == nil {
		return nil
	}
	cs := c.tls.ConnectionState()
	return &cs
}

// ServerLeaf returns the certificate the server presented in this
// connection's handshake (for a resumed session, in the original
// handshake), as tls-server-end-point channel binding needs (RFC 5929 4).
// It is nil when TLS does not run here.
func (c *Conn) ServerLeaf() *x509.Certificate {
	if c.leaf == nil {
		return nil
	}
	return c.leaf.tls.Leaf
}

// Read reads from the current transport.
func (c *Conn) Read(p []byte) (int, error) { return c.conn.Read(p) }

// Write writes to the current transport.
func (c *Conn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// Close closes the connection. Under TLS it first sends a close_notify
// alert (RFC 8314 3.4; crypto/tls bounds that write by 5 seconds), then
// closes TCP without waiting for the client's alert, as RFC 8314 3.4
// allows.
func (c *Conn) Close() error { return c.conn.Close() }

// LocalAddr returns the address the client connected to (from the PROXY
// header when there was one).
func (c *Conn) LocalAddr() net.Addr { return tcpAddr(c.Sec.Local, c.conn.LocalAddr()) }

// RemoteAddr returns the client's address (from the PROXY header when
// there was one).
func (c *Conn) RemoteAddr() net.Addr { return tcpAddr(c.Sec.Remote, c.conn.RemoteAddr()) }

// SetDeadline sets the read and write deadlines of the transport.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the read deadline of the transport.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline of the transport.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

func (c *Conn) setSec(sec *Security) {
	c.Sec = sec
	c.Log = c.ep.log.With(slog.Any("sec", sec))
}

// hsConn is the transport crypto/tls is given. GetConfigForClient finds the
// connection's handshake state through ClientHelloInfo.Conn. The fields
// other than nread are used during the handshake only, by its goroutine.
type hsConn struct {
	net.Conn
	nread   int64
	hello   *tls.ClientHelloInfo
	chosen  *serverCert // picked by GetCertificate in a full handshake
	resumed *serverCert // named by the ticket of a resumed session
}

func (h *hsConn) Read(p []byte) (int, error) {
	n, err := h.Conn.Read(p)
	h.nread += int64(n)
	return n, err
}

// handshake runs the server handshake on c.conn and, on success, makes TLS
// the transport and sets sec, completed with the TLS facts, as c.Sec.
func (c *Conn) handshake(ctx context.Context, sec *Security) error {
	e := c.ep
	h := &hsConn{Conn: c.conn}
	tc := tls.Server(h, e.base)
	hctx, cancel := context.WithTimeout(ctx, e.policy.HandshakeTimeout)
	defer cancel() // bounds the client certificate lookups too
	if err := tc.HandshakeContext(hctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no complete handshake within %v: %w", e.policy.HandshakeTimeout, err)
		}
		e.handshakeFailed(h, sec, err)
		return fmt.Errorf("tlsgate: TLS handshake with %s: %w", sec.Remote, err)
	}
	h.hello = nil // not kept for the connection's lifetime
	cs := tc.ConnectionState()
	c.leaf = h.chosen
	if cs.DidResume {
		c.leaf = h.resumed
	}
	sec.TLS = true
	sec.Version = VersionName(cs.Version)
	sec.Cipher = CipherName(cs.CipherSuite)
	sec.Group = GroupName(cs.CurveID)
	sec.SNI = strings.ToLower(cs.ServerName)
	sec.ALPN = cs.NegotiatedProtocol
	sec.Resumed = cs.DidResume
	if len(cs.PeerCertificates) > 0 {
		// Only requested on Implicit endpoints (RFC 8314 4.2); mapped
		// now, never judged during the handshake.
		sec.ClientCert = e.gate.mapCert(hctx, cs.PeerCertificates, e.log.With("remote", sec.Remote.String()))
	}
	c.conn, c.tls = tc, tc
	c.setSec(sec)
	return nil
}

// ticketLeafTag marks the SessionState.Extra entry naming the certificate of
// the handshake a ticket was issued in.
var ticketLeafTag = []byte("latch-leaf:")

// configForClient is the base Config's GetConfigForClient. It returns a
// Config for this one handshake whose callbacks record which certificate
// the client is shown, so that ServerLeaf can report it.
func (e *Endpoint) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	h, ok := hello.Conn.(*hsConn)
	if !ok {
		return nil, errors.New("tlsgate: handshake not started by the gate")
	}
	h.hello = hello
	cands := e.gate.set.Load().candidates(hello.ServerName)
	cfg := e.template.Clone()
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		h.chosen = choose(hello, cands)
		return h.chosen.tls, nil
	}
	if cfg.SessionTicketsDisabled {
		return cfg, nil
	}
	// Tickets are sealed with the base Config's keys, which crypto/tls
	// rotates, and name the certificate presented; a ticket whose
	// certificate would not be presented today is ignored (full handshake).
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		leaf := h.chosen
		if cs.DidResume {
			leaf = h.resumed
		}
		if leaf != nil {
			ss.Extra = append(ss.Extra, slices.Concat(ticketLeafTag, leaf.hash[:]))
		}
		return e.base.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := e.base.DecryptTicket(identity, cs)
		if ss == nil || err != nil {
			return nil, err
		}
		for _, x := range ss.Extra {
			hash, ok := bytes.CutPrefix(x, ticketLeafTag)
			if !ok {
				continue
			}
			for _, c := range cands {
				if bytes.Equal(c.hash[:], hash) {
					h.resumed = c
					return ss, nil
				}
			}
		}
		return nil, nil
	}
	return cfg, nil
}

// handshakeFailed logs a failed handshake once, with what the client
// offered and a hint where one is likely to help.
func (e *Endpoint) handshakeFailed(h *hsConn, sec *Security, err error) {
	attrs := []slog.Attr{
		slog.String("remote", sec.Remote.String()),
		slog.String("mode", e.mode.String()),
		slog.String("reason", err.Error()),
	}
	if errors.Is(err, context.Canceled) {
		// The server is shutting down: not the client's failure.
		e.log.LogAttrs(context.Background(), slog.LevelDebug, "TLS handshake abandoned", attrs...)
		return
	}
	if h.nread == 0 {
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			// Health checks and port scanners: not worth a line at Info.
			e.log.LogAttrs(context.Background(), slog.LevelDebug, "connection closed before the TLS handshake", attrs...)
			return
		case e.mode == Implicit && errors.Is(err, context.DeadlineExceeded):
			attrs = append(attrs, slog.String("hint", "the client sent nothing: it may expect cleartext or STARTTLS on this implicit-TLS port"))
		}
	}
	if rh := (tls.RecordHeaderError{}); errors.As(err, &rh) {
		attrs = append(attrs, slog.String("hint", "the client does not speak TLS here: it may expect cleartext or STARTTLS on this port"))
	}
	if hi := h.hello; hi != nil {
		if hi.ServerName != "" {
			attrs = append(attrs, slog.String("sni", hi.ServerName))
		}
		var best uint16
		for _, v := range hi.SupportedVersions {
			if v > best && v <= tls.VersionTLS13 { // GREASE values (RFC 8701) are all above
				best = v
			}
		}
		attrs = append(attrs, slog.String("client_max_version", VersionName(best)))
		if len(hi.SupportedProtos) > 0 {
			attrs = append(attrs, slog.Any("client_alpn", hi.SupportedProtos))
		}
	}
	e.gate.logLimited(e.log, slog.LevelInfo, "TLS handshake failed", attrs...)
}

// addrPort converts a socket address, unmapping IPv4-in-IPv6; it is zero
// for addresses that are not IP (net.Pipe, Unix sockets).
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case nil:
		return ap
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func tcpAddr(ap netip.AddrPort, fallback net.Addr) net.Addr {
	if !ap.IsValid() {
		return fallback
	}
	return net.TCPAddrFromAddrPort(ap)
}
