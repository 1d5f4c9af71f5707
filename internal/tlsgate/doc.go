// Package tlsgate is the TLS layer every Latch protocol engine (IMAP, POP3,
// submission, LMTP) stands on: it holds the server certificates, applies the
// TLS policy of each listener, runs the server handshake (at once for
// implicit TLS, on request for STARTTLS) and describes the result in one
// Security record per connection.
//
// Invariants a contributor must keep:
//
//   - Every handshake the gate completes negotiated TLS 1.2 or later
//     (RFC 8997), TLS 1.3 whenever the client offers it, an ECDHE key
//     exchange with an AEAD cipher when TLS 1.2 is used (RFC 9325 4.2), and
//     a key-exchange group among X25519MLKEM768, SecP256r1MLKEM768, X25519
//     and P-256. Connections whose TLS was terminated at a trusted proxy are
//     refused when the proxy reports a version below TLS 1.2.
//   - ALPN is strict: a client that offers ALPN without the listener's
//     protocol fails the handshake (cross-protocol attacks; crypto/tls
//     enforces it once NextProtos is set, and the tests check it).
//   - A client certificate is requested only by an [Implicit] endpoint whose
//     [Policy] accepts them and whose gate can map them to accounts
//     (RFC 8314 4.2). NewEndpoint refuses anything else. A certificate the
//     gate cannot map never fails the handshake: it is mapped afterwards, or
//     left unmapped and the client authenticates by SASL as usual.
//   - A Conn's Security record is built once per transport (after the
//     implicit handshake, from a PROXY header, or after STARTTLS) and never
//     modified; StartTLS replaces Conn.Sec and Conn.Log whole.
//   - A loaded certificate set is never modified; Reload swaps the whole set
//     at once, so each handshake sees one consistent set and established
//     connections are untouched.
//   - A session is resumed only while the certificate of its original
//     handshake is still loaded and would be offered for the new
//     ClientHello, so [Conn.ServerLeaf] is always the certificate the
//     client validated, including on resumption (tls-server-end-point
//     channel binding depends on it).
//   - Every failed handshake is logged once, with the client's address and
//     the reason, at Info for a bounded number per minute and at Debug
//     beyond that, so that scanners cannot flood the log.
package tlsgate
