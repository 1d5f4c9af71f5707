package tlsgate

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// SPKIFingerprint returns the identifier an account binds a client
// certificate by: the lower-case hex SHA-256 of its SubjectPublicKeyInfo,
// which stays the same when the certificate is renewed with the same key.
func SPKIFingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// mapCert decides which account, if any, a client certificate proves
// (RFC 8314 4.2). The handshake already proved the client holds the key.
// Nothing here fails the connection: an unknown, expired, unverifiable or
// unmappable certificate yields an unmapped ClientCert, and the client
// authenticates by SASL as usual.
//
// A certificate outside its validity period maps to nothing, even when its
// key is bound: the certificate states its own lifetime, and honouring it
// is the conservative reading.
func (g *Gate) mapCert(ctx context.Context, chain []*x509.Certificate, log *slog.Logger) *ClientCert {
	leaf := chain[0]
	cc := &ClientCert{SPKISHA256: SPKIFingerprint(leaf), Subject: leaf.Subject.String()}
	now := time.Now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		g.logLimited(log, slog.LevelInfo, "client certificate outside its validity period: not mapped to an account",
			slog.String("client_cert", cc.SPKISHA256), slog.String("subject", cc.Subject),
			slog.Time("not_before", leaf.NotBefore), slog.Time("not_after", leaf.NotAfter))
		return cc
	}
	accts := g.opts.Accounts
	if accts == nil {
		return cc
	}

	// (1) A fingerprint bound to an account.
	a, err := accts.AccountByCert(ctx, cc.SPKISHA256)
	switch {
	case err == nil && a != nil:
		cc.Account, cc.MappedBy = a.Name, "spki"
		return cc
	case err != nil && !errors.Is(err, store.ErrNotFound):
		g.logLimited(log, slog.LevelWarn, "client certificate lookup failed: not mapped",
			slog.String("client_cert", cc.SPKISHA256), slog.String("err", err.Error()))
		return cc
	}

	// (2) Issued by the client CA for client authentication, naming an
	// account's address.
	set := g.set.Load()
	if set.clientCAs == nil || len(leaf.EmailAddresses) == 0 {
		return cc
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         set.clientCAs,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime:   now,
	})
	if err != nil {
		g.logLimited(log, slog.LevelInfo, "client certificate does not verify against the client CA: not mapped",
			slog.String("client_cert", cc.SPKISHA256), slog.String("subject", cc.Subject), slog.String("reason", err.Error()))
		return cc
	}
	var found *store.Account
	for _, addr := range leaf.EmailAddresses {
		a, err := accts.AccountByAddress(ctx, addr)
		if errors.Is(err, store.ErrNotFound) || (err == nil && a == nil) {
			continue
		}
		if err != nil {
			g.logLimited(log, slog.LevelWarn, "client certificate lookup failed: not mapped",
				slog.String("client_cert", cc.SPKISHA256), slog.String("err", err.Error()))
			return cc
		}
		if found != nil && found.ID != a.ID {
			// The CA vouched for two accounts at once: trust neither.
			g.logLimited(log, slog.LevelWarn, "client certificate names addresses of different accounts: not mapped",
				slog.String("client_cert", cc.SPKISHA256), slog.String("subject", cc.Subject), slog.Any("emails", leaf.EmailAddresses))
			return cc
		}
		found = a
	}
	if found != nil {
		cc.Account, cc.MappedBy = found.Name, "ca"
	}
	return cc
}
