package tlsgate

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
)

// Security is what one connection has proved about its transport. It is
// built once by the gate (after the implicit-TLS handshake, after STARTTLS,
// or from a PROXY protocol header) and every policy decision reads it:
// capabilities offered, whether authentication is allowed, PREAUTH, the
// Received clause, and every log line (RFC 8314 section 4, last bullet).
// Nothing else re-derives TLS facts.
type Security struct {
	Remote netip.AddrPort // client address; from the PROXY header when ViaProxy
	Local  netip.AddrPort // address the client connected to

	TLS     bool   // the connection is protected by TLS (here or at a trusted proxy)
	Version string // "TLS1.2", "TLS1.3"; empty without TLS
	Cipher  string // IANA cipher suite name, or 0xHHHH when unnamed (RFC 8314 4.3)
	Group   string // IANA TLS Supported Groups name, e.g. "x25519"; empty when unknown
	SNI     string // server name the client asked for
	ALPN    string // negotiated application protocol
	Resumed bool   // session resumption was used

	// ClientCert describes the certificate the client presented, if any.
	// It is nil when none was presented; Account is empty when the
	// certificate could not be mapped to an account (RFC 8314 4.2).
	ClientCert *ClientCert

	// ViaProxy says the address (and, if TLS is set, the TLS facts) came
	// from a PROXY protocol v2 header sent by a configured trusted proxy.
	// TLSAtProxy tells the two cases apart: when it is false the proxy only
	// relayed TCP and the TLS facts are the gate's own.
	ViaProxy bool
	// Proxy is the trusted proxy's own address when ViaProxy is set.
	Proxy netip.AddrPort
	// TLSAtProxy says TLS was terminated at the proxy: Version and Cipher
	// are what its PROXY header reported, there is no TLS state here for
	// channel binding, and no client certificate reached this server.
	TLSAtProxy bool
}

// ClientCert is the identity a client certificate carries.
type ClientCert struct {
	SPKISHA256 string // hex SHA-256 of the SubjectPublicKeyInfo
	Subject    string // subject DN, for logs only
	Account    string // the account it maps to; empty when unmapped
	MappedBy   string // "spki" (bound fingerprint) or "ca" (client CA + email SAN)
}

// Authenticated reports whether the client proved an account by certificate.
func (s *Security) Authenticated() string {
	if s.ClientCert == nil {
		return ""
	}
	return s.ClientCert.Account
}

// ReceivedClause renders the RFC 8314 section 4.3 additional-registered
// clause for a Received header field, e.g.
// "tls TLS_AES_128_GCM_SHA256 group x25519". It is empty without TLS.
func (s *Security) ReceivedClause() string {
	if !s.TLS || s.Cipher == "" {
		return ""
	}
	if s.Group == "" {
		return "tls " + s.Cipher
	}
	return "tls " + s.Cipher + " group " + s.Group
}

// LogValue lets every slog line carry the record as one group.
func (s *Security) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("remote", s.Remote.String())}
	if s.TLS {
		attrs = append(attrs,
			slog.String("tls", s.Version),
			slog.String("cipher", s.Cipher),
			slog.String("group", s.Group))
		if s.SNI != "" {
			attrs = append(attrs, slog.String("sni", s.SNI))
		}
		if s.ALPN != "" {
			attrs = append(attrs, slog.String("alpn", s.ALPN))
		}
		if s.Resumed {
			attrs = append(attrs, slog.Bool("resumed", true))
		}
	} else {
		attrs = append(attrs, slog.String("tls", "none"))
	}
	if c := s.ClientCert; c != nil {
		attrs = append(attrs, slog.String("client_cert", c.SPKISHA256))
		if c.Account != "" {
			attrs = append(attrs, slog.String("cert_account", c.Account))
		}
	}
	if s.ViaProxy {
		attrs = append(attrs, slog.Bool("via_proxy", true), slog.String("proxy", s.Proxy.String()))
		if s.TLSAtProxy {
			attrs = append(attrs, slog.Bool("tls_at_proxy", true))
		}
	}
	return slog.GroupValue(attrs...)
}

// VersionName gives the protocol version as logged and shown to users.
func VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	}
	return fmt.Sprintf("0x%04X", v)
}

// CipherName gives the IANA registry name of a cipher suite, or its four
// hexadecimal digits when Go does not know it (RFC 8314 4.3 allows that).
func CipherName(id uint16) string {
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if cs.ID == id {
			return cs.Name
		}
	}
	return fmt.Sprintf("0x%04X", id)
}

// GroupName gives the IANA TLS Supported Groups registry name of a key
// exchange group (RFC 8422, RFC 8446, draft-ietf-tls-ecdhe-mlkem).
func GroupName(id tls.CurveID) string {
	switch id {
	case 0:
		return ""
	case tls.X25519:
		return "x25519"
	case tls.CurveP256:
		return "secp256r1"
	case tls.CurveP384:
		return "secp384r1"
	case tls.CurveP521:
		return "secp521r1"
	case tls.X25519MLKEM768:
		return "X25519MLKEM768"
	case tls.SecP256r1MLKEM768:
		return "SecP256r1MLKEM768"
	case tls.SecP384r1MLKEM1024:
		return "SecP384r1MLKEM1024"
	}
	return fmt.Sprintf("0x%04X", uint16(id))
}
