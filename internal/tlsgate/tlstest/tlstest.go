// Package tlstest makes certificates for tests: a CA, server certificates
// with ECDSA P-256 or RSA-2048 keys, client certificates, self-signed ones,
// and expired or not-yet-valid variants, and writes them to PEM files.
//
// RSA keys are costly to generate, so a few are made once per process and
// reused; every certificate still gets its own serial number.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
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
}

// NewCA makes a self-signed ECDSA root.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t, ECDSA)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	return &CA{Cert: *create(t, tmpl, tmpl, key, key)}
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
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert.Cert)
	return p
}

// Issue makes a certificate signed by the CA.
func (ca *CA) Issue(t testing.TB, s Spec) *Cert {
	t.Helper()
	key := newKey(t, s.Key)
	return create(t, template(t, s), ca.Cert.Cert, key, ca.Key)
}

// SelfSigned makes a certificate signed by its own key, as a client that
// binds its key to an account by fingerprint would use.
func SelfSigned(t testing.TB, s Spec) *Cert {
	t.Helper()
	key := newKey(t, s.Key)
	tmpl := template(t, s)
	return create(t, tmpl, tmpl, key, key)
}

func template(t testing.TB, s Spec) *x509.Certificate {
	nb, na := time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	switch s.Validity {
	case Expired:
		nb, na = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
	case NotYetValid:
		nb, na = time.Now().Add(time.Hour), time.Now().Add(48*time.Hour)
	}
	eku := x509.ExtKeyUsageServerAuth
	if s.Client {
		eku = x509.ExtKeyUsageClientAuth
	}
	ku := x509.KeyUsageDigitalSignature
	if s.Key == RSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	return &x509.Certificate{
		SerialNumber:   serial(t),
		Subject:        pkix.Name{CommonName: s.CommonName},
		DNSNames:       s.DNSNames,
		IPAddresses:    s.IPs,
		EmailAddresses: s.Emails,
		NotBefore:      nb,
		NotAfter:       na,
		KeyUsage:       ku,
		ExtKeyUsage:    []x509.ExtKeyUsage{eku},
	}
}

// create makes a certificate for key from tmpl, signed by signer.
func create(t testing.TB, tmpl, parent *x509.Certificate, key, signer crypto.Signer) *Cert {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}
}

var (
	rsaMu  sync.Mutex
	rsaN   int
	rsaSet [4]*rsa.PrivateKey
)

// newKey returns a fresh ECDSA key, or one of a few RSA keys made once.
func newKey(t testing.TB, k KeyType) crypto.Signer {
	t.Helper()
	var key crypto.Signer
	if k == RSA {
		rsaMu.Lock()
		i := rsaN % len(rsaSet)
		rsaN++
		if rsaSet[i] == nil {
			rk, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				rsaMu.Unlock()
				t.Fatal(err)
			}
			rsaSet[i] = rk
		}
		key = rsaSet[i]
		rsaMu.Unlock()
	} else {
		ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		key = ek
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
