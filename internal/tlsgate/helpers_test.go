package tlsgate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/tlsgate/tlstest"
)

// fixture is a CA and a gate serving a.example (ECDSA and RSA, the RSA one
// listed first) and b.example (ECDSA).
type fixture struct {
	dir    string
	ca     *tlstest.CA
	ecdsaA *tlstest.Cert
	rsaA   *tlstest.Cert
	ecdsaB *tlstest.Cert
	opts   Options
	gate   *Gate
	logs   *logRecorder
	accts  *fakeAccounts
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), ca: tlstest.NewCA(t, "Latch Test CA"), logs: &logRecorder{}, accts: newFakeAccounts()}
	f.ecdsaA = f.ca.Issue(t, tlstest.Spec{CommonName: "a.example", DNSNames: []string{"a.example", "mail.a.example"}})
	f.rsaA = f.ca.Issue(t, tlstest.Spec{CommonName: "a.example", DNSNames: []string{"a.example", "mail.a.example"}, Key: tlstest.RSA})
	f.ecdsaB = f.ca.Issue(t, tlstest.Spec{CommonName: "b.example", DNSNames: []string{"b.example"}})
	var pairs []KeyPair
	for _, c := range []struct {
		name string
		cert *tlstest.Cert
	}{{"rsa-a", f.rsaA}, {"ecdsa-a", f.ecdsaA}, {"ecdsa-b", f.ecdsaB}} {
		cf, kf := c.cert.WriteFiles(t, f.dir, c.name)
		pairs = append(pairs, KeyPair{CertFile: cf, KeyFile: kf})
	}
	f.opts = Options{
		Certificates: pairs,
		ClientCA:     f.ca.WriteCAFile(t, f.dir),
		Accounts:     f.accts,
		Log:          slog.New(f.logs),
	}
	g, err := New(f.opts)
	if err != nil {
		t.Fatal(err)
	}
	f.gate = g
	return f
}

func (f *fixture) endpoint(t *testing.T, mode Mode, p Policy) *Endpoint {
	t.Helper()
	if p.ALPN == "" && mode != Plain {
		p.ALPN = "imap"
	}
	e, err := NewEndpoint(f.gate, mode, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// clientConfig trusts the fixture's CA and asks for name.
func (f *fixture) clientConfig(name string) *tls.Config {
	return &tls.Config{RootCAs: f.ca.Pool(), ServerName: name}
}

// served is what the server side made of one connection.
type served struct {
	c   *Conn
	err error
}

// serve accepts connections on 127.0.0.1 for e, passes each to handle
// once NewConn succeeds, and reports every NewConn outcome.
func serve(t *testing.T, e *Endpoint, handle func(*Conn)) (addr string, results <-chan served) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan served, 64)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				c, err := e.NewConn(ctx, raw, Peer{})
				ch <- served{c, err}
				if err != nil {
					return
				}
				if handle != nil {
					handle(c)
				} else {
					io.Copy(io.Discard, c)
				}
				c.Close()
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), ch
}

// next waits for the server's outcome of the next connection.
func next(t *testing.T, results <-chan served) served {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("server reported no connection")
	}
	return served{}
}

// dial connects to addr and completes a TLS handshake with cfg.
func dial(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// handshake dials, and returns the server's Conn once both sides are done.
func handshake(t *testing.T, addr string, results <-chan served, cfg *tls.Config) (*tls.Conn, served) {
	t.Helper()
	c, err := dial(t, addr, cfg)
	r := next(t, results)
	if err != nil && r.err == nil {
		t.Fatalf("client failed (%v) but server succeeded", err)
	}
	return c, r
}

// fakeAccounts is an in-memory CertAccounts.
type fakeAccounts struct {
	mu     sync.Mutex
	byCert map[string]*store.Account
	byAddr map[string]*store.Account
	err    error // returned by every lookup when set
}

func newFakeAccounts() *fakeAccounts {
	return &fakeAccounts{byCert: map[string]*store.Account{}, byAddr: map[string]*store.Account{}}
}

func (a *fakeAccounts) add(id store.AccountID, name string, addrs ...string) *store.Account {
	a.mu.Lock()
	defer a.mu.Unlock()
	acct := &store.Account{ID: id, Name: name, Address: addrs[0], Aliases: addrs[1:]}
	for _, ad := range addrs {
		a.byAddr[strings.ToLower(ad)] = acct
	}
	return acct
}

func (a *fakeAccounts) bind(acct *store.Account, c *x509.Certificate) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byCert[SPKIFingerprint(c)] = acct
}

func (a *fakeAccounts) AccountByCert(_ context.Context, spki string) (*store.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	if acct, ok := a.byCert[spki]; ok {
		return acct, nil
	}
	return nil, fmt.Errorf("account for %s: %w", spki, store.ErrNotFound)
}

func (a *fakeAccounts) AccountByAddress(_ context.Context, addr string) (*store.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return nil, a.err
	}
	if acct, ok := a.byAddr[strings.ToLower(addr)]; ok {
		return acct, nil
	}
	return nil, store.ErrNotFound
}

// logRecorder is a slog.Handler that keeps every record with its attributes
// flattened to strings ("sec.remote").
type logRecorder struct {
	mu   sync.Mutex
	recs []logRec
	pre  []slog.Attr
	root *logRecorder
}

type logRec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{}
	for _, a := range r.pre {
		flatten(m, "", a)
	}
	rec.Attrs(func(a slog.Attr) bool {
		flatten(m, "", a)
		return true
	})
	root := r.rootOf()
	root.mu.Lock()
	root.recs = append(root.recs, logRec{rec.Level, rec.Message, m})
	root.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{pre: append(append([]slog.Attr(nil), r.pre...), as...), root: r.rootOf()}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

func (r *logRecorder) rootOf() *logRecorder {
	if r.root != nil {
		return r.root
	}
	return r
}

func flatten(m map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			flatten(m, prefix+a.Key+".", g)
		}
		return
	}
	m[prefix+a.Key] = v.String()
}

// find returns the records whose message is msg.
func (r *logRecorder) find(msg string) []logRec {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []logRec
	for _, rec := range r.recs {
		if rec.msg == msg {
			out = append(out, rec)
		}
	}
	return out
}

// waitFor polls until a record with msg exists; server-side logging may
// trail the client's view of the handshake.
func (r *logRecorder) waitFor(t *testing.T, msg string) []logRec {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if recs := r.find(msg); len(recs) > 0 {
			return recs
		}
	}
	t.Fatalf("no log record %q", msg)
	return nil
}

// errContains reports whether err's text contains want.
func errContains(err error, want string) bool {
	return err != nil && strings.Contains(err.Error(), want)
}

var errStoreDown = errors.New("store unavailable")
