package tlsgate

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"
)

// KeyPair names the files of one server certificate: the chain in PEM form,
// leaf first, and its private key in PEM form (PKCS #8, PKCS #1 or SEC 1).
type KeyPair struct {
	CertFile string
	KeyFile  string
}

// serverCert is one loaded certificate with what handshakes need of it.
type serverCert struct {
	tls  *tls.Certificate // Leaf is set
	hash [32]byte         // SHA-256 of the leaf; names it in session tickets
	rank int              // key type preference, lower first
	file string
}

// certSet is one generation of loaded files. It is never modified after
// load returns; Reload replaces it whole.
type certSet struct {
	byPref    []*serverCert // every certificate, preferred key type first, then in configured order
	defaults  []*serverCert // those serving the first configured certificate's name, same order
	clientCAs *x509.CertPool
}

// load reads every file named in opts. Problems that make a file unusable
// are errors; problems clients will notice but that do not stop the server
// from starting (an expired certificate, a missing DNS name) are logged as
// warnings, so that one lapsed certificate does not take every service down
// with it.
func load(opts *Options, log *slog.Logger, now time.Time) (*certSet, error) {
	if len(opts.Certificates) == 0 {
		return nil, errors.New("tlsgate: no server certificate: give at least one certificate and key file")
	}
	set := &certSet{}
	for _, kp := range opts.Certificates {
		c, err := loadPair(kp, log, now)
		if err != nil {
			return nil, err
		}
		set.byPref = append(set.byPref, c)
	}
	first := set.byPref[0]
	slices.SortStableFunc(set.byPref, func(a, b *serverCert) int { return a.rank - b.rank })
	if names := first.tls.Leaf.DNSNames; len(names) > 0 {
		set.defaults = set.covering(names[0])
	}
	if len(set.defaults) == 0 {
		set.defaults = []*serverCert{first}
	}
	if opts.ClientCA != "" {
		pool, err := loadClientCA(opts.ClientCA, log, now)
		if err != nil {
			return nil, err
		}
		set.clientCAs = pool
	}
	return set, nil
}

// covering returns the certificates valid for name, preferred first.
func (s *certSet) covering(name string) []*serverCert {
	var m []*serverCert
	for _, c := range s.byPref {
		if c.tls.Leaf.VerifyHostname(name) == nil {
			m = append(m, c)
		}
	}
	return m
}

// candidates returns the certificates the server may present for a
// ClientHello naming serverName (RFC 6066 3; RFC 8314 4.4): those valid for
// the name, or, without SNI or for a name none covers, the defaults.
func (s *certSet) candidates(serverName string) []*serverCert {
	if serverName != "" {
		if m := s.covering(serverName); len(m) > 0 {
			return m
		}
	}
	return s.defaults
}

// choose picks the first candidate the client can use (signature
// algorithms, and for TLS 1.2 the cipher suites it offers), so ECDSA is
// preferred and RSA serves clients that only accept RSA. When none fits it
// returns the first, and the client decides.
func choose(hello *tls.ClientHelloInfo, cands []*serverCert) *serverCert {
	h := hello
	if h.ServerName != "" && cands[0].tls.Leaf.VerifyHostname(h.ServerName) != nil {
		// Default certificates for an unknown name: SupportsCertificate
		// would reject them all for the name alone.
		c := *hello
		c.ServerName = ""
		h = &c
	}
	for _, c := range cands {
		if h.SupportsCertificate(c.tls) == nil {
			return c
		}
	}
	return cands[0]
}

func keyRank(c *x509.Certificate) int {
	switch c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		return 0
	case ed25519.PublicKey:
		return 1
	}
	return 2
}

func loadPair(kp KeyPair, log *slog.Logger, now time.Time) (*serverCert, error) {
	certPEM, err := readFile("certificate", kp.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile("key", kp.KeyFile)
	if err != nil {
		return nil, err
	}
	if err := checkPEM(kp.CertFile, certPEM, "certificate"); err != nil {
		return nil, err
	}
	if err := checkPEM(kp.KeyFile, keyPEM, "key"); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("tlsgate: key file %s does not hold the key of the certificate in %s: give the key that belongs to the first certificate of the chain", kp.KeyFile, kp.CertFile)
		}
		return nil, fmt.Errorf("tlsgate: certificate %s with key %s: %w", kp.CertFile, kp.KeyFile, err)
	}
	leaf := cert.Leaf // set by X509KeyPair since Go 1.23
	warnServerCert(log, kp.CertFile, leaf, now)
	return &serverCert{
		tls:  &cert,
		hash: sha256.Sum256(leaf.Raw),
		rank: keyRank(leaf),
		file: kp.CertFile,
	}, nil
}

func readFile(what, name string) ([]byte, error) {
	if name == "" {
		return nil, fmt.Errorf("tlsgate: no %s file given", what)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("tlsgate: cannot read %s file %s: %w (check the path and the file's permissions)", what, name, err)
	}
	return b, nil
}

// checkPEM says what is wrong with a file meant to hold a certificate chain
// or a private key in terms an administrator can act on.
func checkPEM(name string, data []byte, want string) error {
	var certs, keys, encrypted int
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			certs++
		case b.Type == "ENCRYPTED PRIVATE KEY" || b.Headers["Proc-Type"] == "4,ENCRYPTED":
			encrypted++
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			keys++
		}
	}
	switch want {
	case "certificate":
		if certs > 0 {
			return nil
		}
		if keys+encrypted > 0 {
			return fmt.Errorf("tlsgate: certificate file %s holds a private key, not a certificate: are the certificate and key files swapped?", name)
		}
		return fmt.Errorf("tlsgate: certificate file %s holds no PEM certificate: give the chain in PEM form (-----BEGIN CERTIFICATE-----), leaf first", name)
	default:
		if keys > 0 {
			return nil
		}
		if encrypted > 0 {
			return fmt.Errorf("tlsgate: key file %s holds an encrypted private key: give it unencrypted and protect the file by its permissions", name)
		}
		if certs > 0 {
			return fmt.Errorf("tlsgate: key file %s holds a certificate, not a private key: are the certificate and key files swapped?", name)
		}
		return fmt.Errorf("tlsgate: key file %s holds no PEM private key (-----BEGIN PRIVATE KEY-----)", name)
	}
}

// warnServerCert logs what clients will hold against a certificate that
// loads (RFC 8314 4.4: MSPs MUST maintain valid server certificates).
func warnServerCert(log *slog.Logger, file string, leaf *x509.Certificate, now time.Time) {
	switch {
	case now.After(leaf.NotAfter):
		log.Warn("server certificate has expired: clients will refuse it; renew it, then reload",
			"file", file, "not_after", leaf.NotAfter)
	case now.Before(leaf.NotBefore):
		log.Warn("server certificate is not valid yet: clients will refuse it until then",
			"file", file, "not_before", leaf.NotBefore)
	}
	if len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 {
		log.Warn("server certificate names no host in subjectAltName: clients will refuse it; reissue it with the server's DNS names",
			"file", file, "subject", leaf.Subject.String())
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		log.Warn("server certificate is not for TLS server authentication (extended key usage): clients will refuse it",
			"file", file)
	}
}

func loadClientCA(name string, log *slog.Logger, now time.Time) (*x509.CertPool, error) {
	data, err := readFile("client CA", name)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tlsgate: client CA file %s: certificate %d does not parse: %w", name, n+1, err)
		}
		if now.After(c.NotAfter) {
			log.Warn("client CA certificate has expired: certificates it issued no longer map to accounts",
				"file", name, "subject", c.Subject.String(), "not_after", c.NotAfter)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tlsgate: client CA file %s holds no PEM certificate: give the CA certificates in PEM form (-----BEGIN CERTIFICATE-----)", name)
	}
	return pool, nil
}
