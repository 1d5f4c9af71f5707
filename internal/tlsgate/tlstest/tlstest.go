// Package tlstest makes certificates for tests, with internal/pki: a CA, server certificates
// with ECDSA P-256 or RSA-2048 keys, client certificates, self-signed ones,
// and expired or not-yet-valid variants, and writes them to PEM files.
//
// RSA keys are costly to generate, so a few are made once per process and
// reused; every certificate still gets its own serial number.
package tlstest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/pki"
)

// KeyType chooses a certificate's key.
type KeyType int

// Key types.
const (
	ECDSA KeyType = iota // P-256
	RSA                  // 2048 bits
)

// Validity chooses a certificate's validity period relative to now.
type Validity int

// Validity periods.
const (
	Valid       Validity = iota // from an hour ago for a day
	Expired                     // ended an hour ago
	NotYetValid                 // starts in an hour
)

// Spec says what to put in a certificate.
type Spec struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Emails     []string
	Key        KeyType
	Validity   Validity
	// Client makes a client-authentication certificate instead of a
	// server-authentication one.
	Client bool
}

// Cert is a certificate and its key.
type Cert struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte // PKCS #8
}

// TLS returns the certificate for a tls.Config.
func (c *Cert) TLS(t testing.TB) tls.Certificate {
	t.Helper()
	tc, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

// WriteFiles writes the certificate and key to dir as name.crt and
// name.key and returns their paths.
func (c *Cert) WriteFiles(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, c.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// CA is a certificate authority for tests.
type CA struct {
	Cert
	ca *pki.CA
}

// NewCA makes a self-signed ECDSA root.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: *encode(t, &pki.Issued{Cert: ca.Cert, Key: ca.Key}), ca: ca}
}

// WriteCAFile writes the CA certificate to dir/ca.pem and returns the path.
func (ca *CA) WriteCAFile(t testing.TB, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(name, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// Pool returns a pool holding the CA certificate.
func (ca *CA) Pool() *x509.CertPool { return ca.ca.Pool() }

// Issue makes a certificate signed by the CA.
func (ca *CA) Issue(t testing.TB, s Spec) *Cert {
	t.Helper()
	c, err := ca.ca.Issue(template(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return encode(t, c)
}

// SelfSigned makes a certificate signed by its own key, as a client that
// binds its key to an account by fingerprint would use.
func SelfSigned(t testing.TB, s Spec) *Cert {
	t.Helper()
	c, err := pki.SelfSigned(template(t, s))
	if err != nil {
		t.Fatal(err)
	}
	return encode(t, c)
}

func template(t testing.TB, s Spec) pki.Template {
	nb, na := time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	switch s.Validity {
	case Expired:
		nb, na = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	case NotYetValid:
		nb, na = time.Now().Add(time.Hour), time.Now().Add(48*time.Hour)
	}
	tmpl := pki.Template{
		CommonName: s.CommonName, DNSNames: s.DNSNames, IPs: s.IPs, Emails: s.Emails,
		NotBefore: nb, NotAfter: na, Client: s.Client,
	}
	if s.Key == RSA {
		tmpl.Signer = rsaKey(t)
	}
	return tmpl
}

func encode(t testing.TB, c *pki.Issued) *Cert {
	t.Helper()
	keyPEM, err := pki.KeyPEM(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{Cert: c.Cert, Key: c.Key, CertPEM: pki.CertPEM(c.Cert), KeyPEM: keyPEM}
}

var (
	rsaMu  sync.Mutex
	rsaN   int
	rsaSet [4]*rsa.PrivateKey
)

// rsaKey returns one of a few RSA keys made once per process.
func rsaKey(t testing.TB) crypto.Signer {
	t.Helper()
	rsaMu.Lock()
	defer rsaMu.Unlock()
	i := rsaN % len(rsaSet)
	rsaN++
	if rsaSet[i] == nil {
		rk, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaSet[i] = rk
	}
	return rsaSet[i]
}
