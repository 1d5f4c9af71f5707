package sasl

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/xdg-go/scram"
)

// TestEndPointHash checks the hash tls-server-end-point takes for each
// signature algorithm (RFC 5929 section 4.1).
func TestEndPointHash(t *testing.T) {
	raw := []byte("certificate bytes")
	s256, s384, s512 := sha256.Sum256(raw), sha512.Sum384(raw), sha512.Sum512(raw)
	tls12 := &tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}
	for _, tc := range []struct {
		alg  x509.SignatureAlgorithm
		want []byte // nil: undefined
	}{
		{x509.MD5WithRSA, s256[:]},
		{x509.SHA1WithRSA, s256[:]},
		{x509.ECDSAWithSHA1, s256[:]},
		{x509.DSAWithSHA1, s256[:]},
		{x509.SHA256WithRSA, s256[:]},
		{x509.SHA256WithRSAPSS, s256[:]},
		{x509.ECDSAWithSHA256, s256[:]},
		{x509.SHA384WithRSA, s384[:]},
		{x509.SHA384WithRSAPSS, s384[:]},
		{x509.ECDSAWithSHA384, s384[:]},
		{x509.SHA512WithRSA, s512[:]},
		{x509.SHA512WithRSAPSS, s512[:]},
		{x509.ECDSAWithSHA512, s512[:]},
		{x509.PureEd25519, nil},
		{x509.UnknownSignatureAlgorithm, nil},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			cb, err := ChannelBindingFor(tls12, &x509.Certificate{Raw: raw, SignatureAlgorithm: tc.alg})
			if tc.want == nil {
				if err == nil {
					t.Fatalf("got %x, want an error", cb.Data)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cb.Type != TLSServerEndPoint || !bytes.Equal(cb.Data, tc.want) {
				t.Errorf("got %s %x, want %s %x", cb.Type, cb.Data, TLSServerEndPoint, tc.want)
			}
		})
	}
}

func TestChannelBindingForErrors(t *testing.T) {
	leaf := &x509.Certificate{Raw: []byte("x"), SignatureAlgorithm: x509.ECDSAWithSHA256}
	for _, tc := range []struct {
		name string
		cs   *tls.ConnectionState
		leaf *x509.Certificate
	}{
		{"nil state", nil, leaf},
		{"handshake incomplete", &tls.ConnectionState{Version: tls.VersionTLS13}, leaf},
		{"TLS 1.1", &tls.ConnectionState{Version: tls.VersionTLS11, HandshakeComplete: true}, leaf},
		{"TLS 1.2 without certificate", &tls.ConnectionState{Version: tls.VersionTLS12, HandshakeComplete: true}, nil},
	} {
		if cb, err := ChannelBindingFor(tc.cs, tc.leaf); err == nil {
			t.Errorf("%s: got %+v, want an error", tc.name, cb)
		}
	}
}

// newCert returns a self-signed certificate for localhost on curve,
// signed with alg.
func newCert(t *testing.T, curve elliptic.Curve, alg x509.SignatureAlgorithm) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:       big.NewInt(1),
		Subject:            pkix.Name{CommonName: "localhost"},
		DNSNames:           []string{"localhost"},
		NotBefore:          time.Now().Add(-time.Hour),
		NotAfter:           time.Now().Add(time.Hour),
		KeyUsage:           x509.KeyUsageDigitalSignature,
		ExtKeyUsage:        []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		SignatureAlgorithm: alg,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// handshake makes a TLS connection of the given version over loopback TCP
// and returns both ends' connection state.
func handshake(t *testing.T, version uint16, cert tls.Certificate) (server, client tls.ConnectionState) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		cs  tls.ConnectionState
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version})
		err = tc.HandshakeContext(t.Context())
		done <- result{tc.ConnectionState(), err}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version}}
	c, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.cs, c.(*tls.Conn).ConnectionState()
}

// TestChannelBindingTLS checks over real TLS connections that server and
// client compute the same binding, that xdg-go/scram's independent code
// agrees, and that SCRAM-SHA-256-PLUS succeeds with it.
func TestChannelBindingTLS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		version  uint16
		curve    elliptic.Curve
		alg      x509.SignatureAlgorithm
		wantType string
		wantLen  int
	}{
		{"TLS 1.2 ECDSA SHA-256", tls.VersionTLS12, elliptic.P256(), x509.ECDSAWithSHA256, TLSServerEndPoint, sha256.Size},
		{"TLS 1.2 ECDSA SHA-384", tls.VersionTLS12, elliptic.P384(), x509.ECDSAWithSHA384, TLSServerEndPoint, sha512.Size384},
		{"TLS 1.3", tls.VersionTLS13, elliptic.P256(), x509.ECDSAWithSHA256, TLSExporter, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := newCert(t, tc.curve, tc.alg)
			scs, ccs := handshake(t, tc.version, cert)
			srvCB, err := ChannelBindingFor(&scs, cert.Leaf)
			if err != nil {
				t.Fatal(err)
			}
			cliCB, err := ChannelBindingFor(&ccs, ccs.PeerCertificates[0])
			if err != nil {
				t.Fatal(err)
			}
			if srvCB.Type != tc.wantType || len(srvCB.Data) != tc.wantLen {
				t.Fatalf("server binding %s of %d bytes, want %s of %d", srvCB.Type, len(srvCB.Data), tc.wantType, tc.wantLen)
			}
			if srvCB.Type != cliCB.Type || !bytes.Equal(srvCB.Data, cliCB.Data) {
				t.Fatalf("server binding %s %x, client %s %x", srvCB.Type, srvCB.Data, cliCB.Type, cliCB.Data)
			}

			var xdgCB scram.ChannelBinding
			if tc.version == tls.VersionTLS13 {
				xdgCB, err = scram.NewTLSExporterBinding(&ccs)
			} else {
				xdgCB, err = scram.NewTLSServerEndpointBinding(&ccs)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(xdgCB.Type) != srvCB.Type || !bytes.Equal(xdgCB.Data, srvCB.Data) {
				t.Fatalf("xdg-go/scram computes %s %x, server %s %x", xdgCB.Type, xdgCB.Data, srvCB.Type, srvCB.Data)
			}

			b := newFakeBackend(t, "user", "pencil")
			srv := NewSCRAM(b, srvCB, true, true)
			conv := newSCRAMClient(t, "user", "pencil", "").NewConversationWithChannelBinding(xdgCB)
			if r := runSCRAM(t, srv, conv, true); r.err != nil || r.clientErr != nil || !r.verified {
				t.Fatalf("SCRAM-SHA-256-PLUS: server err %v, client err %v, server verified %v", r.err, r.clientErr, r.verified)
			}
		})
	}
}

// TestChannelBindingUnique checks that tls-exporter differs between two
// connections, so a SCRAM-PLUS exchange relayed from one to the other
// fails.
func TestChannelBindingUnique(t *testing.T) {
	cert := newCert(t, elliptic.P256(), x509.ECDSAWithSHA256)
	scs1, _ := handshake(t, tls.VersionTLS13, cert)
	_, ccs2 := handshake(t, tls.VersionTLS13, cert)
	srvCB, err := ChannelBindingFor(&scs1, cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	relayed, err := scram.NewTLSExporterBinding(&ccs2)
	if err != nil {
		t.Fatal(err)
	}
	b := newFakeBackend(t, "user", "pencil")
	conv := newSCRAMClient(t, "user", "pencil", "").NewConversationWithChannelBinding(relayed)
	if r := runSCRAM(t, NewSCRAM(b, srvCB, true, true), conv, true); !errors.Is(r.err, ErrChannelBinding) {
		t.Fatalf("relayed exchange: err %v, want ErrChannelBinding", r.err)
	}
}
