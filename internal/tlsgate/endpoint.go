package tlsgate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Mode says when a listener's connections start TLS.
type Mode int

// Listener modes.
const (
	// Implicit: TLS from the first byte (RFC 8314 3; ports 993, 995, 465).
	Implicit Mode = iota + 1
	// StartTLS: cleartext until the engine calls Conn.StartTLS (ports 143,
	// 110, 587).
	StartTLS
	// Plain: never TLS here; only for LMTP on loopback.
	Plain
)

// String returns the mode as written in the configuration file.
func (m Mode) String() string {
	switch m {
	case Implicit:
		return "implicit"
	case StartTLS:
		return "starttls"
	case Plain:
		return "plain"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses a mode as written in the configuration file.
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{Implicit, StartTLS, Plain} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("tlsgate: unknown listener mode %q: use \"implicit\", \"starttls\" or \"plain\"", s)
}

// DefaultHandshakeTimeout bounds a handshake when the policy sets no
// timeout.
const DefaultHandshakeTimeout = 30 * time.Second

// Policy is the TLS policy of one listener.
type Policy struct {
	// ALPN is the service's application protocol name (RFC 7301): "imap",
	// "pop3" or "smtp". It is required for TLS listeners: a client that
	// offers ALPN without it fails the handshake.
	ALPN string
	// ClientCerts makes the server ask for a client certificate. Only
	// implicit-TLS listeners may (RFC 8314 4.2).
	ClientCerts bool
	// SessionTickets enables session resumption by tickets (RFC 8446 2.2,
	// RFC 5077). Tickets issued on one listener do not resume on another.
	SessionTickets bool
	// HandshakeTimeout bounds each handshake; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
}

// Endpoint is the gate as one listener sees it: a mode and a policy. It is
// safe for concurrent use.
type Endpoint struct {
	gate   *Gate // nil for Plain endpoints
	mode   Mode
	policy Policy
	log    *slog.Logger

	// base is handed to tls.Server. It owns the session ticket keys
	// (rotated by crypto/tls) and returns a per-connection Config from
	// GetConfigForClient so that the certificate choice can be recorded.
	base *tls.Config
	// template is cloned for that per-connection Config.
	template *tls.Config
}

// Errors of NewEndpoint and Conn.StartTLS.
var (
	// ErrClientCertsNotImplicit: client certificates were asked for on a
	// listener that is not implicit TLS.
	ErrClientCertsNotImplicit = errors.New("tlsgate: client certificates are only for implicit-TLS listeners (RFC 8314 4.2): turn them off on this listener or make it implicit")
	// ErrNoStartTLS: StartTLS was called on a connection that cannot start
	// TLS (not a STARTTLS listener, or TLS is already on).
	ErrNoStartTLS = errors.New("tlsgate: STARTTLS is not available on this connection")
	// ErrPipelined: cleartext input was waiting below the engine when
	// STARTTLS began, so the client (or an attacker) sent data that would
	// otherwise be taken for TLS-protected (CVE-2011-0411).
	ErrPipelined = errors.New("tlsgate: client sent data after STARTTLS before the TLS handshake")
)

// NewEndpoint returns the endpoint for one listener. g may be nil only for
// Plain. log should identify the listener (service, address); nil means
// the gate's logger.
func NewEndpoint(g *Gate, mode Mode, p Policy, log *slog.Logger) (*Endpoint, error) {
	e := &Endpoint{gate: g, mode: mode, policy: p, log: log}
	switch mode {
	case Implicit, StartTLS:
		if g == nil {
			return nil, fmt.Errorf("tlsgate: a %s listener needs server certificates", mode)
		}
	case Plain:
		if p.ClientCerts {
			return nil, ErrClientCertsNotImplicit
		}
		if e.log == nil {
			e.log = slog.Default()
			if g != nil {
				e.log = g.log
			}
		}
		return e, nil
	default:
		return nil, fmt.Errorf("tlsgate: unknown listener mode %d", int(mode))
	}
	if e.log == nil {
		e.log = g.log
	}
	if p.ClientCerts && mode != Implicit {
		// RFC 8314 4.2: client certificate authentication is for the
		// Implicit TLS port only.
		return nil, ErrClientCertsNotImplicit
	}
	if p.ClientCerts && g.opts.Accounts == nil {
		// RFC 8314 4.2: MUST NOT request a client certificate unless the
		// server can determine an authorization identity from it.
		return nil, errors.New("tlsgate: client certificates are accepted on this listener but the gate has no account lookup to map them")
	}
	if p.ALPN == "" {
		return nil, errors.New("tlsgate: the policy names no ALPN protocol: set the service's protocol (imap, pop3 or smtp) so that strict ALPN can be enforced")
	}
	if p.HandshakeTimeout <= 0 {
		e.policy.HandshakeTimeout = DefaultHandshakeTimeout
	}

	e.template = &tls.Config{
		MinVersion:       tls.VersionTLS12, // RFC 8997 3: TLS 1.2 or later; RFC 8314 4.1: refuse at the ClientHello
		CipherSuites:     tls12Suites,
		CurvePreferences: groups,
		// Strict ALPN (RFC 7301 3.2): crypto/tls answers a ClientHello
		// that offers other protocols only with no_application_protocol.
		NextProtos:             []string{p.ALPN},
		SessionTicketsDisabled: !p.SessionTickets,
		ClientAuth:             tls.NoClientCert,
	}
	if p.ClientCerts {
		// Request, never require or verify in crypto/tls: an unknown or
		// expired certificate must not fail the handshake (RFC 8314 4.2);
		// mapCert judges it afterwards. ClientCAs stays nil on purpose:
		// naming the CA in the CertificateRequest would make clients
		// withhold self-signed certificates bound by fingerprint.
		e.template.ClientAuth = tls.RequestClientCert
	}
	e.base = e.template.Clone()
	e.base.GetConfigForClient = e.configForClient
	return e, nil
}

// Mode returns the endpoint's mode.
func (e *Endpoint) Mode() Mode { return e.mode }

// Policy returns the endpoint's policy, with defaults filled in.
func (e *Endpoint) Policy() Policy { return e.policy }
