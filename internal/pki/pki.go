// Package pki makes the small certificate authorities Latch needs where no
// real one is at hand: `latch dev` (a local CA, a server certificate for
// localhost, a client certificate for an account) and tests.
package pki

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
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// KeyType chooses the key algorithm of a new certificate.
type KeyType int

const (
	ECDSAP256 KeyType = iota
	RSA2048
)

// CA is a certificate authority that can issue certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Issued is a certificate with its key.
type Issued struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate // Cert first, then its issuers below the root
	Key   crypto.Signer
}

// Template says what to put in a new certificate. Zero times mean "valid
// from an hour ago for a year".
type Template struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Emails     []string
	Key        KeyType
	Signer     crypto.Signer // the certificate's key; nil: a new one of type Key
	NotBefore  time.Time
	NotAfter   time.Time
	Client     bool // client authentication instead of server authentication
}

func newKey(t KeyType) (crypto.Signer, error) {
	if t == RSA2048 {
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewCA makes a self-signed ECDSA P-256 root valid for ten years.
func NewCA(name string) (*CA, error) {
	key, err := newKey(ECDSAP256)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue signs a new leaf certificate.
func (ca *CA) Issue(t Template) (*Issued, error) {
	return issue(t, ca.Cert, ca.Key)
}

// SelfSigned makes a leaf certificate signed by its own key, such as a
// client binds to an account by fingerprint.
func SelfSigned(t Template) (*Issued, error) {
	return issue(t, nil, nil)
}

// issue makes a certificate from t signed by parent's key, or by its own
// key when parent is nil.
func issue(t Template, parent *x509.Certificate, parentKey crypto.Signer) (*Issued, error) {
	key := t.Signer
	if key == nil {
		var err error
		if key, err = newKey(t.Key); err != nil {
			return nil, err
		}
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = time.Now().Add(-time.Hour)
	}
	if t.NotAfter.IsZero() {
		t.NotAfter = t.NotBefore.AddDate(1, 0, 0)
	}
	usage := x509.ExtKeyUsageServerAuth
	if t.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	ku := x509.KeyUsageDigitalSignature
	if _, isRSA := key.(*rsa.PrivateKey); isRSA {
		ku |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:   sn,
		Subject:        pkix.Name{CommonName: t.CommonName},
		DNSNames:       t.DNSNames,
		IPAddresses:    t.IPs,
		EmailAddresses: t.Emails,
		NotBefore:      t.NotBefore,
		NotAfter:       t.NotAfter,
		KeyUsage:       ku,
		ExtKeyUsage:    []x509.ExtKeyUsage{usage},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %s: %w", t.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Issued{Cert: cert, Chain: []*x509.Certificate{cert}, Key: key}, nil
}

// TLSCertificate returns the certificate in the form crypto/tls uses.
func (i *Issued) TLSCertificate() tls.Certificate {
	tc := tls.Certificate{PrivateKey: i.Key, Leaf: i.Cert}
	for _, c := range i.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

// Pool returns a pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// CertPEM encodes certificates as PEM.
func CertPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as PKCS #8 PEM.
func KeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// WriteCert writes certificates as PEM.
func WriteCert(path string, certs ...*x509.Certificate) error {
	return os.WriteFile(path, CertPEM(certs...), 0o644)
}

// WriteKey writes a private key as PKCS #8 PEM readable by its owner only.
func WriteKey(path string, key crypto.Signer) error {
	b, err := KeyPEM(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// Write writes an issued certificate chain and its key.
func (i *Issued) Write(certPath, keyPath string) error {
	if err := WriteCert(certPath, i.Chain...); err != nil {
		return err
	}
	return WriteKey(keyPath, i.Key)
}

// LoadCA reads a CA written by WriteCert and WriteKey.
func LoadCA(certPath, keyPath string) (*CA, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: load CA: %s is not a signing key", keyPath)
	}
	return &CA{Cert: pair.Leaf, Key: signer}, nil
}
