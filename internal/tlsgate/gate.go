package tlsgate

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/latchmail/latch/internal/logsample"
	"github.com/latchmail/latch/internal/store"
)

// CertAccounts finds the account a client certificate belongs to. Both
// methods return an error matching store.ErrNotFound when there is none;
// store.Accounts satisfies the interface.
type CertAccounts interface {
	// AccountByCert finds the account a SubjectPublicKeyInfo SHA-256
	// fingerprint (lower-case hex) is bound to.
	AccountByCert(ctx context.Context, spkiSHA256 string) (*store.Account, error)
	// AccountByAddress finds the account owning an address or alias.
	AccountByAddress(ctx context.Context, addr string) (*store.Account, error)
}

// Options configure a Gate.
type Options struct {
	// Certificates are the server's certificates. Each handshake gets one
	// valid for the name the client asked for (SNI), and of those the
	// first whose key type the client supports, ECDSA before RSA: list an
	// ECDSA and an RSA certificate for the same names to serve old clients
	// too. Without SNI, or for a name no certificate covers, the server
	// presents a certificate for the first DNS name of the first one listed.
	Certificates []KeyPair
	// ClientCA, if set, is a PEM file of CA certificates: a client
	// certificate that chains to one of them, is meant for client
	// authentication, and carries an account's address as an rfc822Name
	// maps to that account (RFC 8314 4.2).
	ClientCA string
	// Accounts maps client certificates to accounts. Without it no
	// endpoint may accept client certificates.
	Accounts CertAccounts
	// Log receives certificate warnings and handshake failures; nil means
	// slog.Default().
	Log *slog.Logger
}

// Gate holds the server certificates and the client-certificate trust for
// every listener. It is safe for concurrent use.
type Gate struct {
	opts     Options
	log      *slog.Logger
	set      atomic.Pointer[certSet]
	reloadMu sync.Mutex
	failures *logsample.Limiter
}

// New loads the files named in opts. The error says which file is wrong and
// how. A certificate that has expired, is not valid yet, or names no host
// is loaded anyway with a warning in the log: refusing it would stop every
// service for the sake of one name, and the clients refuse it regardless.
func New(opts Options) (*Gate, error) {
	g := &Gate{opts: opts, log: opts.Log}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.opts.Certificates = append([]KeyPair(nil), opts.Certificates...)
	set, err := load(&g.opts, g.log, time.Now())
	if err != nil {
		return nil, err
	}
	g.set.Store(set)
	g.failures = logsample.New(time.Minute, 30)
	return g, nil
}

// Reload reads the certificate and client CA files again, as for SIGHUP
// after a renewal. Handshakes that start afterwards use the new files;
// established connections keep theirs, and sessions resumed from tickets
// issued under a certificate no longer loaded fall back to a full
// handshake. On error nothing changes and the files loaded before stay in
// use.
func (g *Gate) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	set, err := load(&g.opts, g.log, time.Now())
	if err != nil {
		return err
	}
	g.set.Store(set)
	g.log.Info("TLS certificates reloaded", "certificates", len(set.byPref))
	return nil
}

// Covers reports whether a loaded certificate is valid for name, as a
// client checking the server's identity per RFC 7817 requires for the
// mail domains and host names it is configured with (RFC 8314 4.4).
func (g *Gate) Covers(name string) bool {
	return len(g.set.Load().covering(name)) > 0
}

// groups are the key exchange groups the gate offers: the hybrid
// post-quantum groups, X25519 and P-256 (RFC 8446 4.2.7;
// draft-ietf-tls-ecdhe-mlkem). crypto/tls applies its own preference order
// among them, hybrids first.
var groups = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.SecP256r1MLKEM768,
	tls.X25519,
	tls.CurveP256,
}

// tls12Suites are the TLS 1.2 cipher suites the gate accepts: ECDHE key
// exchange with an AEAD cipher only (RFC 9325 4.2). TLS 1.3 suites are all
// AEAD and crypto/tls does not let them be configured.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// logLimited logs a per-connection event at level while the failure
// sampler allows, and at Debug beyond, so that no client can flood the log.
// g may be nil (Plain endpoints): the event is then logged as is.
func (g *Gate) logLimited(log *slog.Logger, level slog.Level, msg string, attrs ...slog.Attr) {
	if g == nil {
		log.LogAttrs(context.Background(), level, msg, attrs...)
		return
	}
	g.failures.Log(log, level, msg, attrs...)
}
