package interop

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveEnv is a directory with what `latch serve` needs: certificates
// from a test CA, a configuration file, and the data directory.
type serveEnv struct {
	dir    string
	config string // path of latch.toml
	data   string
	cert   string
	key    string
	caFile string // the CA that issued cert
}

// serveConfig is what a test varies in latch.toml.
type serveConfig struct {
	extra     string // top-level keys, written before any table
	cert, key string // default: the env's
	listeners []serveListener
}

type serveListener struct {
	mode, address string
	clientCerts   bool
}

// defaultListeners are POP3 with implicit TLS, asking for client
// certificates, and POP3 with STLS; the system picks the ports.
var defaultListeners = []serveListener{
	{"implicit", "127.0.0.1:0", true},
	{"starttls", "127.0.0.1:0", false},
}

func newServeEnv(t *testing.T) *serveEnv {
	t.Helper()
	dir := t.TempDir()
	e := &serveEnv{
		dir:    dir,
		config: filepath.Join(dir, "latch.toml"),
		data:   filepath.Join(dir, "data"),
		cert:   filepath.Join(dir, "server.crt"),
		key:    filepath.Join(dir, "server.key"),
		caFile: filepath.Join(dir, "ca.crt"),
	}
	ca := newCA(t, "Latch serve test CA")
	ca.writeCA(e.caFile)
	ca.writeServer(e.cert, e.key)
	e.writeConfig(t, serveConfig{listeners: defaultListeners})
	return e
}

// writeConfig writes latch.toml. Relative paths in it are taken from its
// directory, which the data directory relies on.
func (e *serveEnv) writeConfig(t testing.TB, c serveConfig) {
	t.Helper()
	if c.cert == "" {
		c.cert, c.key = e.cert, e.key
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%shostname = \"localhost\"\ndata_dir = \"data\"\ndomains = [\"example.org\"]\n\n", c.extra)
	fmt.Fprintf(&b, "[log]\nformat = \"json\"\nlevel = \"info\"\n\n")
	fmt.Fprintf(&b, "[[tls.certificate]]\ncert = %q\nkey = %q\n", c.cert, c.key)
	for _, l := range c.listeners {
		fmt.Fprintf(&b, "\n[[listener]]\nservice = \"pop3\"\naddress = %q\nmode = %q\nclient_certs = %v\n", l.address, l.mode, l.clientCerts)
	}
	if err := os.WriteFile(e.config, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serving is a running `latch serve` and its listeners' addresses.
type serving struct {
	*proc
	implicit, starttls string
}

// start starts latch serve, which belongs to t, and waits until it has
// started its listeners, whose addresses it reads from the log.
func (e *serveEnv) start(t testing.TB) *serving {
	t.Helper()
	s := &serving{proc: startProc(t, "serve", "-c", e.config)}
	s.waitLog(t, "latch started")
	for _, rec := range s.logRecords() {
		if rec["msg"] != "listening" {
			continue
		}
		addr, _ := rec["addr"].(string)
		switch rec["mode"] {
		case "implicit":
			s.implicit = addr
		case "starttls":
			s.starttls = addr
		}
	}
	if s.implicit == "" || s.starttls == "" {
		t.Fatalf("no listener addresses in the log (its output follows)")
	}
	probe(t, s.starttls)
	return s
}

// user runs `latch user` with this env's configuration; password, if not
// empty, is handed over in a file, as a script would.
func (e *serveEnv) user(t testing.TB, password string, args ...string) result {
	t.Helper()
	pre := []string{"user", "-c", e.config}
	if password != "" {
		pre = append(pre, "--password-file", writePassword(t, password))
	}
	return latch(t, append(pre, args...)...)
}

func writePassword(t testing.TB, password string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "password")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(password + "\n"); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// addUser creates an account, with the server stopped or running.
func (e *serveEnv) addUser(t testing.TB, address, password string) {
	t.Helper()
	if r := e.user(t, password, "add", address); r.code != 0 || !strings.Contains(r.stdout, "added "+address) {
		t.Fatalf("latch user add %s: %s", address, r)
	}
}

// login opens a POP3 session over implicit TLS and logs in.
func (s *serving) login(t *testing.T, cfg *tls.Config, user, password string) *pop3Conn {
	t.Helper()
	c := dialPOP3(t, s.implicit, cfg)
	if r := c.login(user, password); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("login %s: %q", user, r)
	}
	return c
}

const (
	carol   = "carol@example.org"
	carolPW = "carol's password 1"
)

// TestServeRefusesBadStart checks that what can be known wrong at start
// stops latch serve at once, with status 1 and a message that names the
// problem.
func TestServeRefusesBadStart(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the configuration and what the message must say.
		setup func(t *testing.T, e *serveEnv) (serveConfig, []string)
	}{
		{"unknown key", func(t *testing.T, e *serveEnv) (serveConfig, []string) {
			return serveConfig{extra: "colour = \"blue\"\n", listeners: defaultListeners},
				[]string{e.config, "unknown key colour"}
		}},
		{"port in use", func(t *testing.T, e *serveEnv) (serveConfig, []string) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			addr := ln.Addr().String()
			return serveConfig{listeners: []serveListener{defaultListeners[0], {"starttls", addr, false}}},
				[]string{"pop3 on " + addr, "address already in use"}
		}},
		{"missing certificate", func(t *testing.T, e *serveEnv) (serveConfig, []string) {
			path := filepath.Join(e.dir, "missing.crt")
			return serveConfig{cert: path, key: e.key, listeners: defaultListeners},
				[]string{"tls.certificate[0]", path, "no such file"}
		}},
		// Root reads any file whatever its mode, so a directory stands in
		// for an unreadable certificate file.
		{"unreadable certificate", func(t *testing.T, e *serveEnv) (serveConfig, []string) {
			path := filepath.Join(e.dir, "cert-dir")
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
			return serveConfig{cert: path, key: e.key, listeners: defaultListeners},
				[]string{"cannot read certificate file " + path, "is a directory"}
		}},
		{"certificate not PEM", func(t *testing.T, e *serveEnv) (serveConfig, []string) {
			path := filepath.Join(e.dir, "garbage.crt")
			if err := os.WriteFile(path, []byte("not a certificate\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			return serveConfig{cert: path, key: e.key, listeners: defaultListeners},
				[]string{path, "PEM"}
		}},
		// RFC 8314 4.2: no client certificate requests after STARTTLS.
		{"client certificates on a starttls listener", func(t *testing.T, e *serveEnv) (serveConfig, []string) {
			return serveConfig{listeners: []serveListener{{"starttls", "127.0.0.1:0", true}}},
				[]string{"listener[0]", `client_certs = true needs mode = "implicit"`, "RFC 8314 4.2"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newServeEnv(t)
			cfg, want := tt.setup(t, e)
			e.writeConfig(t, cfg)
			r := latch(t, "serve", "-c", e.config)
			if r.code != 1 {
				t.Fatalf("latch serve: exit status %d, want 1\n%s", r.code, r)
			}
			if testing.Verbose() {
				t.Logf("latch serve: %s", r.stderr)
			}
			for _, w := range want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("message lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
}

// TestServeReloadOnSIGHUP replaces the certificate with one from another
// CA and sends SIGHUP: new connections get the new certificate, a
// session opened before goes on, and a broken file changes nothing.
func TestServeReloadOnSIGHUP(t *testing.T) {
	e := newServeEnv(t)
	e.addUser(t, carol, carolPW)
	seed(t, e.data, carol, testMessages[0])
	s := e.start(t)

	oldCA := tlsClient(t, e.caFile)
	before := s.login(t, oldCA, carol, carolPW)
	before.ok("STAT")

	// The control for the resumption check below: before the reload, a
	// session ticket resumes, so the check can tell a resumed session.
	tickets := oldCA.Clone()
	tickets.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	dialPOP3(t, s.implicit, tickets).quit() // reading the greeting takes in the TLS 1.3 ticket
	if c, err := tryDialPOP3(s.implicit, tickets); err != nil || !c.conn.(*tls.Conn).ConnectionState().DidResume {
		t.Fatalf("no session resumption before the reload (err %v): the check after it would prove nothing", err)
	} else {
		c.conn.Close()
	}

	newCAFile := filepath.Join(t.TempDir(), "new-ca.crt")
	renewed := newCA(t, "Latch serve test CA, renewed")
	renewed.writeCA(newCAFile)
	leaf := renewed.writeServer(e.cert, e.key)
	reloads := s.countLog("TLS certificates reloaded")
	s.signal(t, syscall.SIGHUP)
	waitFor(t, startLimit, "the reload to be logged", func() bool { return s.countLog("TLS certificates reloaded") > reloads })

	c := dialPOP3(t, s.implicit, tlsClient(t, newCAFile))
	if got := c.conn.(*tls.Conn).ConnectionState().PeerCertificates[0]; !got.Equal(leaf) {
		t.Errorf("after SIGHUP the server presents %q issued by %q, want the new certificate", got.Subject, got.Issuer)
	}
	c.quit()
	var unknown x509.UnknownAuthorityError
	if _, err := tryDialPOP3(s.implicit, oldCA); !errors.As(err, &unknown) {
		t.Errorf("client trusting only the old CA: %v, want an unknown authority error", err)
	}
	// A ticket from before must not resume a session under the old
	// certificate: the full handshake shows the new one.
	if _, err := tryDialPOP3(s.implicit, tickets); !errors.As(err, &unknown) {
		t.Errorf("client resuming a session from before the reload: %v, want a full handshake and an unknown authority error", err)
	}

	// The session opened before the reload goes on, on its old TLS.
	before.ok("STAT")
	before.ok("RETR 1")
	if got := strings.Join(before.multi(), "\r\n") + "\r\n"; got != onWire(testMessages[0]) {
		t.Errorf("RETR after the reload: %q", got)
	}
	before.quit()

	// A broken file: the reload fails, and the certificate loaded before
	// stays in use.
	if err := os.WriteFile(e.cert, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	failures := s.countLog("certificate reload failed; the old certificates stay in use")
	s.signal(t, syscall.SIGHUP)
	waitFor(t, startLimit, "the failed reload to be logged", func() bool {
		return s.countLog("certificate reload failed; the old certificates stay in use") > failures
	})
	c = dialPOP3(t, s.implicit, tlsClient(t, newCAFile))
	c.quit()
	if s.exited() {
		t.Fatalf("latch exited after a failed reload")
	}
}

// TestServeStopsOnSIGTERM stops a server that has a session in the middle
// of its transaction and one waiting for STLS: it exits 0, tells the
// session, and applies none of its deletions (RFC 1939 section 6: only
// QUIT enters the UPDATE state).
func TestServeStopsOnSIGTERM(t *testing.T) {
	e := newServeEnv(t)
	e.addUser(t, carol, carolPW)
	seed(t, e.data, carol, testMessages[:2]...)
	s := e.start(t)

	waiting := dialPOP3(t, s.starttls, nil)
	c := s.login(t, tlsClient(t, e.caFile), carol, carolPW)
	c.ok("DELE 1")
	// A session between the last answer and the signal: a POP3 session
	// that has sent an answer arms its read for the next command only
	// after, and a shutdown that falls in between is not seen by that
	// read. This gives both sessions above time to be reading.
	dialPOP3(t, s.implicit, tlsClient(t, e.caFile)).quit()

	s.signal(t, syscall.SIGTERM)
	code, ok := s.wait(stopLimit)
	if !ok {
		t.Fatalf("latch serve still running %v after SIGTERM", stopLimit)
	}
	if code != 0 {
		t.Fatalf("latch serve exited with status %d after SIGTERM, want 0", code)
	}
	// RFC 2449 section 8.1.2 SYS/TEMP: the session is told, not just cut.
	if l := c.line(); l != "-ERR [SYS/TEMP] server shutting down" {
		t.Errorf("session in transaction got %q at shutdown", l)
	}
	if l := waiting.line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP]") {
		t.Errorf("session before STLS got %q at shutdown", l)
	}
	if _, err := net.DialTimeout("tcp", s.implicit, time.Second); err == nil {
		t.Errorf("%s still accepts connections after the exit", s.implicit)
	}

	s = e.start(t)
	c = s.login(t, tlsClient(t, e.caFile), carol, carolPW)
	if r := c.ok("STAT"); !strings.HasPrefix(r, "+OK 2 ") {
		t.Errorf("after a shutdown without QUIT: STAT %q, want both messages", r)
	}
	c.quit()
}
