package listener

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/tlsgate"
)

func TestStartErrors(t *testing.T) {
	e := newEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// A port that is free now, to check that Start releases it on failure.
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	freeAddr := free.Addr().String()
	free.Close()

	h := newSecs().greeter()
	tests := []struct {
		name string
		cfgs []Config
		want []string
	}{
		{"address in use", []Config{
			{Service: "pop3", Address: freeAddr, Mode: tlsgate.Implicit, Policy: tlsgate.Policy{ALPN: "pop3"}, Handler: h},
			{Service: "imap", Address: busy.Addr().String(), Mode: tlsgate.Implicit, Policy: tlsgate.Policy{ALPN: "imap"}, Handler: h},
		}, []string{"imap on " + busy.Addr().String(), "already in use"}},
		{"plain on a public address", []Config{
			{Service: "lmtp", Address: "0.0.0.0:0", Mode: tlsgate.Plain, Handler: h},
		}, []string{"lmtp on 0.0.0.0:0", "loopback"}},
		{"client certificates on STARTTLS", []Config{
			{Service: "imap", Address: "127.0.0.1:0", Mode: tlsgate.StartTLS, Policy: tlsgate.Policy{ALPN: "imap", ClientCerts: true}, Handler: h},
		}, []string{"imap on 127.0.0.1:0", "RFC 8314 4.2"}},
		{"no handler", []Config{
			{Service: "imap", Address: "127.0.0.1:0", Mode: tlsgate.Implicit, Policy: tlsgate.Policy{ALPN: "imap"}},
		}, []string{"needs a service name and a handler"}},
		{"unparsable address", []Config{
			{Service: "imap", Address: "127.0.0.1", Mode: tlsgate.Implicit, Policy: tlsgate.Policy{ALPN: "imap"}, Handler: h},
		}, []string{"imap on 127.0.0.1", "missing port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Gate: e.gate, Listeners: tt.cfgs, Log: slog.New(&logRecorder{})}
			err := s.Start()
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatal("Start succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if s.Addrs() != nil {
				t.Error("listeners left bound")
			}
		})
	}
	// The listener bound before the failure was released.
	ln, err := net.Listen("tcp", freeAddr)
	if err != nil {
		t.Fatalf("Start left %s bound: %v", freeAddr, err)
	}
	ln.Close()
}

func TestModes(t *testing.T) {
	e := newEnv(t)
	got := newSecs()
	startTLS := HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
		c.Write([]byte("* OK STARTTLS\r\n"))
		br := bufio.NewReader(c)
		if line, _ := br.ReadString('\n'); line != "A1 STARTTLS\r\n" {
			return
		}
		c.Write([]byte("A1 OK begin\r\n"))
		if err := c.StartTLS(ctx); err != nil {
			return
		}
		got.greeter().ServeConn(ctx, c)
	})
	_, addrs := e.start(t,
		Config{Service: "imap", Mode: tlsgate.Implicit, Handler: got.greeter()},
		Config{Service: "imap", Mode: tlsgate.StartTLS, Handler: startTLS},
		Config{Service: "lmtp", Mode: tlsgate.Plain, Handler: got.greeter()},
	)

	t.Run("implicit", func(t *testing.T) {
		raw := dialFrom(t, "", addrs[0])
		c := tls.Client(raw, e.clientConfig())
		if line, err := readLine(c); line != "* OK hello\r\n" {
			t.Fatalf("greeting %q, %v", line, err)
		}
		sec := got.next(t)
		if !sec.TLS || sec.Version != "TLS1.3" || sec.Remote.String() != raw.LocalAddr().String() || sec.ViaProxy {
			t.Errorf("Sec = %+v", sec)
		}
	})
	t.Run("starttls", func(t *testing.T) {
		raw := dialFrom(t, "", addrs[1])
		if line, _ := readLine(raw); line != "* OK STARTTLS\r\n" {
			t.Fatalf("greeting %q", line)
		}
		raw.Write([]byte("A1 STARTTLS\r\n"))
		if line, _ := readLine(raw); line != "A1 OK begin\r\n" {
			t.Fatalf("reply %q", line)
		}
		c := tls.Client(raw, e.clientConfig())
		if line, err := readLine(c); line != "* OK hello\r\n" {
			t.Fatalf("greeting under TLS %q, %v", line, err)
		}
		if sec := got.next(t); !sec.TLS || sec.Remote.String() != raw.LocalAddr().String() {
			t.Errorf("Sec = %+v", sec)
		}
	})
	t.Run("plain", func(t *testing.T) {
		raw := dialFrom(t, "", addrs[2])
		if line, _ := readLine(raw); line != "* OK hello\r\n" {
			t.Fatalf("greeting %q", line)
		}
		if sec := got.next(t); sec.TLS || sec.Remote.String() != raw.LocalAddr().String() {
			t.Errorf("Sec = %+v", sec)
		}
	})
}

func TestLimits(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	hold := HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
		c.Write([]byte("* OK hello\r\n"))
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
	})
	refuser := struct {
		Handler
		Refuser
	}{hold, refuseFunc(func(ctx context.Context, c *tlsgate.Conn, reason error) {
		c.Write([]byte("* BYE " + reason.Error() + "\r\n"))
	})}
	_, addrs := e.start(t,
		Config{Service: "lmtp", Mode: tlsgate.Plain, Handler: hold, MaxConns: 2},
		Config{Service: "lmtp", Mode: tlsgate.Plain, Handler: refuser, MaxConns: 2},
		Config{Service: "lmtp", Mode: tlsgate.Plain, Handler: refuser, MaxConnsPerIP: 1},
		Config{Service: "imap", Mode: tlsgate.Implicit, Handler: refuser, MaxConns: 1},
	)
	// open connects and waits until the handler holds the connection.
	open := func(from, addr string) net.Conn {
		c := dialFrom(t, from, addr)
		if line, err := readLine(c); line != "* OK hello\r\n" {
			t.Fatalf("greeting %q, %v", line, err)
		}
		<-started
		return c
	}
	refused := func(c io.Reader, want string) {
		t.Helper()
		line, err := readLine(c)
		if want == "" {
			if line != "" || err == nil {
				t.Fatalf("read %q, %v; want the connection closed at once", line, err)
			}
			return
		}
		if line != want {
			t.Fatalf("read %q, %v; want %q", line, err, want)
		}
	}

	t.Run("total, closed", func(t *testing.T) {
		open("", addrs[0])
		open("127.0.0.2", addrs[0])
		refused(dialFrom(t, "127.0.0.3", addrs[0]), "")
	})
	t.Run("total, refuser", func(t *testing.T) {
		open("", addrs[1])
		open("", addrs[1])
		refused(dialFrom(t, "", addrs[1]), "* BYE listener: too many connections\r\n")
	})
	t.Run("per address", func(t *testing.T) {
		open("", addrs[2])
		refused(dialFrom(t, "", addrs[2]), "* BYE listener: too many connections from this address\r\n")
		open("127.0.0.2", addrs[2])
	})
	t.Run("total, refuser, implicit TLS", func(t *testing.T) {
		c := tls.Client(dialFrom(t, "", addrs[3]), e.clientConfig())
		if line, err := readLine(c); line != "* OK hello\r\n" {
			t.Fatalf("greeting %q, %v", line, err)
		}
		<-started
		refused(tls.Client(dialFrom(t, "", addrs[3]), e.clientConfig()), "* BYE listener: too many connections\r\n")
	})
	e.logs.waitFor(t, "connection refused", "too many connections from this address")

	// Released connections make room again.
	close(release)
	for deadline := time.Now().Add(30 * time.Second); ; {
		c := dialFrom(t, "", addrs[0])
		if line, _ := readLine(c); line == "* OK hello\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no room after the held connections ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type refuseFunc func(ctx context.Context, c *tlsgate.Conn, reason error)

func (f refuseFunc) RefuseConn(ctx context.Context, c *tlsgate.Conn, reason error) { f(ctx, c, reason) }

func TestShutdown(t *testing.T) {
	e := newEnv(t)
	started := make(chan string, 4)
	var mu sync.Mutex
	var stuckErr error
	handler := HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
		c.Write([]byte("* OK hello\r\n"))
		br := bufio.NewReader(c)
		line, _ := br.ReadString('\n')
		switch line {
		case "POLITE\r\n":
			// Finishes the command, then notices shutdown and says bye.
			c.Write([]byte("A1 OK done\r\n"))
			started <- "polite"
			<-ctx.Done()
			c.Write([]byte("* BYE shutting down\r\n"))
		case "STUCK\r\n":
			// Ignores ctx and blocks in Read: only closing ends it.
			started <- "stuck"
			_, err := br.ReadString('\n')
			mu.Lock()
			stuckErr = err
			mu.Unlock()
		}
	})
	s, addrs := e.start(t,
		Config{Service: "lmtp", Mode: tlsgate.Plain, Handler: handler},
		Config{Service: "imap", Mode: tlsgate.Implicit, Handler: handler, Policy: tlsgate.Policy{HandshakeTimeout: time.Hour}},
	)
	polite := dialFrom(t, "", addrs[0])
	stuck := dialFrom(t, "", addrs[0])
	for _, c := range []struct {
		conn net.Conn
		cmd  string
	}{{polite, "POLITE\r\n"}, {stuck, "STUCK\r\n"}} {
		readLine(c.conn)
		c.conn.Write([]byte(c.cmd))
		<-started
	}
	readLine(polite) // A1 OK done
	// A client stuck in the TLS handshake: Shutdown must not wait an hour.
	silent := dialFrom(t, "", addrs[1])
	silent.Write([]byte{0x16}) // a record header begun

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after its context ended")
	}
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "closed ") {
		t.Fatalf("Shutdown = %v, want one connection closed after the deadline", err)
	}
	if line, _ := readLine(polite); line != "* BYE shutting down\r\n" {
		t.Errorf("polite handler said %q", line)
	}
	if _, err := readLine(stuck); err == nil {
		t.Error("stuck connection still open")
	}
	if _, err := readLine(silent); err == nil {
		t.Error("handshaking connection still open")
	}
	if c, err := net.Dial("tcp", addrs[0]); err == nil {
		c.Close()
		t.Error("still accepting after Shutdown")
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		err := stuckErr
		mu.Unlock()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stuck handler's Read was not ended")
		}
	}
}

func TestShutdownCooperative(t *testing.T) {
	e := newEnv(t)
	started := make(chan struct{}, 1)
	s, addrs := e.start(t, Config{Service: "lmtp", Mode: tlsgate.Plain, Handler: HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
		c.Write([]byte("* OK hello\r\n"))
		started <- struct{}{}
		<-ctx.Done()
	})})
	c := dialFrom(t, "", addrs[0])
	readLine(c)
	<-started
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if _, err := readLine(c); !errors.Is(err, io.EOF) {
		t.Fatalf("read %v, want EOF after the handler returned", err)
	}
}
