package sasl

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
)

// Channel binding types (RFC 5056 registry) that ChannelBindingFor gives.
const (
	TLSExporter       = "tls-exporter"         // RFC 9266, for TLS 1.3
	TLSServerEndPoint = "tls-server-end-point" // RFC 5929 section 4, for TLS 1.2
)

// ChannelBindingFor returns the channel binding of a TLS connection for
// SCRAM-SHA-256-PLUS: on TLS 1.3, "tls-exporter" (RFC 9266); on TLS 1.2,
// "tls-server-end-point" (RFC 5929), a hash of the server's certificate.
// tls-exporter is not used on TLS 1.2 because it is unique to the
// connection only with the extended master secret extension (RFC 7627),
// which RFC 9266 requires there and a TLS 1.2 peer may lack.
//
// serverLeaf is the certificate the server presented: on the server, the
// leaf of the certificate it chose for the connection; on a client,
// cs.PeerCertificates[0]. It is needed on TLS 1.2 only. Both ends of one
// connection compute the same binding.
func ChannelBindingFor(cs *tls.ConnectionState, serverLeaf *x509.Certificate) (*ChannelBinding, error) {
	if cs == nil || !cs.HandshakeComplete {
		return nil, errors.New("sasl: channel binding: TLS handshake not complete")
	}
	switch {
	case cs.Version >= tls.VersionTLS13:
		// RFC 9266 section 2: 32 bytes of exported keying material with
		// this label and no context.
		data, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
		if err != nil {
			return nil, fmt.Errorf("sasl: channel binding %s: %w", TLSExporter, err)
		}
		return &ChannelBinding{Type: TLSExporter, Data: data}, nil
	case cs.Version == tls.VersionTLS12:
		if serverLeaf == nil {
			return nil, fmt.Errorf("sasl: channel binding %s: no server certificate", TLSServerEndPoint)
		}
		h, err := endPointHash(serverLeaf.SignatureAlgorithm)
		if err != nil {
			return nil, fmt.Errorf("sasl: channel binding %s: %w", TLSServerEndPoint, err)
		}
		h.Write(serverLeaf.Raw)
		return &ChannelBinding{Type: TLSServerEndPoint, Data: h.Sum(nil)}, nil
	default:
		return nil, fmt.Errorf("sasl: channel binding: TLS version %#04x is older than 1.2 (RFC 8997)", cs.Version)
	}
}

// endPointHash returns the hash tls-server-end-point uses for a
// certificate signed with alg (RFC 5929 section 4.1): the signature's own
// hash, with MD5 and SHA-1 upgraded to SHA-256. The binding is undefined
// for signatures that use no single hash, such as Ed25519.
func endPointHash(alg x509.SignatureAlgorithm) (hash.Hash, error) {
	switch alg {
	case x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1,
		x509.SHA256WithRSA, x509.SHA256WithRSAPSS, x509.DSAWithSHA256, x509.ECDSAWithSHA256:
		return sha256.New(), nil
	case x509.SHA384WithRSA, x509.SHA384WithRSAPSS, x509.ECDSAWithSHA384:
		return sha512.New384(), nil
	case x509.SHA512WithRSA, x509.SHA512WithRSAPSS, x509.ECDSAWithSHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("undefined for certificates signed with %v", alg)
}
