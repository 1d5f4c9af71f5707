// Package interop holds Latch's interoperability tests: the real `latch`
// binary, built once per test run, driven by real third-party programs
// over real TLS on loopback (Python's poplib, imaplib and smtplib, curl,
// fetchmail, mbsync, msmtp, swaks, OpenSSL's s_client), and `latch serve`, `latch dev` and `latch user` checked end
// to end as an administrator would run them.
//
// It is the only place for tests that need programs outside Go. They are
// installed by scripts/test.sh (Debian packages). A test whose program is
// missing fails when CI=true is set, so that CI cannot pass by skipping,
// and is skipped otherwise.
//
// Every server a test starts listens on 127.0.0.1 with a port chosen by
// the system, and every wait is bounded. When the tests run with -race,
// the latch binary is built with -race too, so data races in the server
// under real clients fail the test that met them.
//
// The package has no code outside its tests.
package interop
