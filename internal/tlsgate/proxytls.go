package tlsgate

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// ProxyTLS is what a trusted proxy that terminated TLS reported in its
// PROXY protocol v2 header (PP2_TYPE_SSL and its subtypes).
type ProxyTLS struct {
	Version string // PP2_SUBTYPE_SSL_VERSION, e.g. "TLSv1.3"
	Cipher  string // PP2_SUBTYPE_SSL_CIPHER, OpenSSL or IANA name
	SNI     string // PP2_TYPE_AUTHORITY, if sent
	ALPN    string // PP2_TYPE_ALPN, if sent
}

// proxyVersions maps the version names proxies send (OpenSSL's
// SSL_get_version) to ours.
var proxyVersions = map[string]uint16{
	"TLSv1":   tls.VersionTLS10,
	"TLSv1.0": tls.VersionTLS10,
	"TLSv1.1": tls.VersionTLS11,
	"TLSv1.2": tls.VersionTLS12,
	"TLSv1.3": tls.VersionTLS13,
}

// openSSLCiphers maps OpenSSL's names of TLS 1.2 suites to IANA's (RFC 8314
// 4.3 wants the registered name in the Received field). TLS 1.3 suites
// have the same name in both.
var openSSLCiphers = map[string]uint16{
	"ECDHE-ECDSA-AES128-GCM-SHA256": tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-RSA-AES128-GCM-SHA256":   tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	"ECDHE-ECDSA-AES256-GCM-SHA384": tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-RSA-AES256-GCM-SHA384":   tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	"ECDHE-ECDSA-CHACHA20-POLY1305": tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-RSA-CHACHA20-POLY1305":   tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	"ECDHE-ECDSA-AES128-SHA256":     tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-RSA-AES128-SHA256":       tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
	"ECDHE-ECDSA-AES128-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	"ECDHE-RSA-AES128-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	"ECDHE-ECDSA-AES256-SHA":        tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	"ECDHE-RSA-AES256-SHA":          tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
	"AES128-GCM-SHA256":             tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	"AES256-GCM-SHA384":             tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	"AES128-SHA256":                 tls.TLS_RSA_WITH_AES_128_CBC_SHA256,
	"AES128-SHA":                    tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	"AES256-SHA":                    tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// proxiedSecurity fills sec from the TLS facts a trusted proxy reported.
// It refuses what the gate itself would have refused: a version below TLS
// 1.2 (RFC 8997) and an application protocol other than the listener's
// (strict ALPN). A cipher it cannot name in IANA terms is left empty
// rather than recorded under a name the Received field syntax does not
// allow.
func proxiedSecurity(sec *Security, p *ProxyTLS, alpn string) error {
	v, ok := proxyVersions[p.Version]
	if !ok {
		return fmt.Errorf("tlsgate: proxy %s reported TLS version %q, which is not one of TLSv1.2 or TLSv1.3: check the proxy's TLS settings", sec.Proxy, p.Version)
	}
	if v < tls.VersionTLS12 { // RFC 8997 3
		return fmt.Errorf("tlsgate: proxy %s accepted %s from the client, below TLS 1.2 (RFC 8997): set the proxy's minimum TLS version to 1.2", sec.Proxy, p.Version)
	}
	if alpn != "" && p.ALPN != "" && p.ALPN != alpn {
		return fmt.Errorf("tlsgate: proxy %s negotiated ALPN %q on a %q listener: route each protocol to its own listener", sec.Proxy, p.ALPN, alpn)
	}
	sec.TLS, sec.TLSAtProxy = true, true
	sec.Version = VersionName(v)
	sec.Cipher = ianaCipher(p.Cipher)
	sec.SNI = strings.ToLower(p.SNI)
	sec.ALPN = p.ALPN
	return nil
}

func ianaCipher(name string) string {
	if id, ok := openSSLCiphers[name]; ok {
		return CipherName(id)
	}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if cs.Name == name {
			return name
		}
	}
	return ""
}
