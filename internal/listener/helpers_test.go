package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/tlsgate"
	"github.com/latchmail/latch/internal/tlsgate/tlstest"
)

// env is a CA and a gate with one ECDSA certificate for mail.example.
type env struct {
	ca   *tlstest.CA
	gate *tlsgate.Gate
	logs *logRecorder
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{ca: tlstest.NewCA(t, "Test CA"), logs: &logRecorder{}}
	cf, kf := e.ca.Issue(t, tlstest.Spec{DNSNames: []string{"mail.example"}}).WriteFiles(t, t.TempDir(), "mail")
	g, err := tlsgate.New(tlsgate.Options{Certificates: []tlsgate.KeyPair{{CertFile: cf, KeyFile: kf}}, Log: slog.New(e.logs)})
	if err != nil {
		t.Fatal(err)
	}
	e.gate = g
	return e
}

// start starts a server with the given listeners and stops it at the end
// of the test. It returns the bound addresses.
func (e *env) start(t testing.TB, cfgs ...Config) (*Server, []string) {
	t.Helper()
	for i := range cfgs {
		if cfgs[i].Address == "" {
			cfgs[i].Address = "127.0.0.1:0"
		}
		if cfgs[i].Service == "" {
			cfgs[i].Service = "imap"
		}
		if cfgs[i].Mode != tlsgate.Plain && cfgs[i].Policy.ALPN == "" {
			cfgs[i].Policy.ALPN = "imap"
		}
	}
	s := &Server{Gate: e.gate, Listeners: cfgs, Log: slog.New(e.logs)}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	var addrs []string
	for _, a := range s.Addrs() {
		addrs = append(addrs, a.String())
	}
	return s, addrs
}

func (e *env) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: e.ca.Pool(), ServerName: "mail.example"}
}

// secs collects the Security record of every connection a handler serves.
type secs struct {
	ch chan *tlsgate.Security
}

func newSecs() *secs { return &secs{ch: make(chan *tlsgate.Security, 16)} }

func (s *secs) next(t testing.TB) *tlsgate.Security {
	t.Helper()
	select {
	case sec := <-s.ch:
		return sec
	case <-time.After(30 * time.Second):
		t.Fatal("no connection reached the handler")
	}
	return nil
}

// drain forgets what was collected so far.
func (s *secs) drain() {
	for {
		select {
		case <-s.ch:
		default:
			return
		}
	}
}

// greeter reports the connection's Security record, greets, and echoes
// lines until the client leaves.
func (s *secs) greeter() Handler {
	return HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
		s.ch <- c.Sec
		c.Write([]byte("* OK hello\r\n"))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			c.Write([]byte(line))
		}
	})
}

// dialFrom connects to addr from a local address on 127.0.0.0/8 ("" for
// the default), so that tests can play trusted and untrusted sources.
func dialFrom(t testing.TB, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// readLine reads one line, or returns the error that ended the stream.
func readLine(r io.Reader) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			b.WriteByte(buf[0])
			if buf[0] == '\n' {
				return b.String(), nil
			}
		}
		if err != nil {
			return b.String(), err
		}
	}
}

// logRecorder is a slog.Handler that keeps every record's message and its
// attributes as strings.
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
	add := func(a slog.Attr) bool {
		m[a.Key] = a.Value.Resolve().String()
		return true
	}
	for _, a := range r.pre {
		add(a)
	}
	rec.Attrs(add)
	root := r
	if r.root != nil {
		root = r.root
	}
	root.mu.Lock()
	root.recs = append(root.recs, logRec{rec.Level, rec.Message, m})
	root.mu.Unlock()
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	root := r
	if r.root != nil {
		root = r.root
	}
	return &logRecorder{pre: append(append([]slog.Attr(nil), r.pre...), as...), root: root}
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// waitFor polls until a record with msg whose attributes contain every
// want substring (any attribute) exists.
func (r *logRecorder) waitFor(t testing.TB, msg string, want ...string) logRec {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		r.mu.Lock()
		for _, rec := range r.recs {
			if rec.msg == msg && hasAll(rec.attrs, want) {
				r.mu.Unlock()
				return rec
			}
		}
		r.mu.Unlock()
	}
	t.Fatalf("no log record %q with %q", msg, want)
	return logRec{}
}

func hasAll(attrs map[string]string, want []string) bool {
	for _, w := range want {
		found := false
		for _, v := range attrs {
			if strings.Contains(v, w) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
