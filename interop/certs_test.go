package interop

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/latchmail/latch/internal/pki"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	t  testing.TB
	ca *pki.CA
}

func newCA(t testing.TB, name string) *testCA {
	t.Helper()
	ca, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{t: t, ca: ca}
}

func (c *testCA) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.ca.Cert.Raw})
}

// writeCA writes the CA certificate to path.
func (c *testCA) writeCA(path string) {
	c.t.Helper()
	if err := pki.WriteCert(path, c.ca.Cert); err != nil {
		c.t.Fatal(err)
	}
}

// writeServer issues a server certificate for localhost and 127.0.0.1
// and writes it and its key. Each file is renamed into place, as a
// certificate renewal should do it, so a reader never sees half a file.
func (c *testCA) writeServer(certPath, keyPath string) *x509.Certificate {
	c.t.Helper()
	iss, err := c.ca.Issue(pki.Template{
		CommonName: "localhost",
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1)},
	})
	if err != nil {
		c.t.Fatal(err)
	}
	tmpCert, tmpKey := certPath+".new", keyPath+".new"
	if err := iss.Write(tmpCert, tmpKey); err != nil {
		c.t.Fatal(err)
	}
	for _, mv := range [][2]string{{tmpKey, keyPath}, {tmpCert, certPath}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			c.t.Fatal(err)
		}
	}
	return iss.Cert
}

// writeClient issues a client certificate for an address and writes it
// and its key into dir; it returns the paths and the certificate's SPKI
// SHA-256 fingerprint, computed here independently of Latch.
func (c *testCA) writeClient(dir, address string) (certPath, keyPath, spki string) {
	c.t.Helper()
	iss, err := c.ca.Issue(pki.Template{CommonName: address, Emails: []string{address}, Client: true})
	if err != nil {
		c.t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if err := iss.Write(certPath, keyPath); err != nil {
		c.t.Fatal(err)
	}
	sum := sha256.Sum256(iss.Cert.RawSubjectPublicKeyInfo)
	return certPath, keyPath, hex.EncodeToString(sum[:])
}
