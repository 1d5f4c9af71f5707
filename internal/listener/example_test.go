package listener_test

import (
	"bufio"
	"context"
	"log"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/listener"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/tlsgate"
)

// An IMAP server on 993 (implicit TLS, client certificates accepted) and
// 143 (STARTTLS), behind nothing.
func ExampleServer() {
	var accounts store.Accounts // the server's store
	gate, err := tlsgate.New(tlsgate.Options{
		Certificates: []tlsgate.KeyPair{
			{CertFile: "/etc/latch/ecdsa.crt", KeyFile: "/etc/latch/ecdsa.key"},
			{CertFile: "/etc/latch/rsa.crt", KeyFile: "/etc/latch/rsa.key"}, // for clients without ECDSA
		},
		ClientCA: "/etc/latch/client-ca.pem",
		Accounts: accounts,
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := &listener.Server{Gate: gate, Listeners: []listener.Config{
		{Service: "imap", Address: ":993", Mode: tlsgate.Implicit, Handler: imapEngine{},
			Policy: tlsgate.Policy{ALPN: "imap", ClientCerts: true, SessionTickets: true}},
		{Service: "imap", Address: ":143", Mode: tlsgate.StartTLS, Handler: imapEngine{},
			Policy: tlsgate.Policy{ALPN: "imap", SessionTickets: true}},
	}}
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	// On SIGHUP: gate.Reload(). On SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// imapEngine sketches how a protocol engine uses a tlsgate.Conn.
type imapEngine struct{}

func (imapEngine) ServeConn(ctx context.Context, c *tlsgate.Conn) {
	// Wake a Read waiting for the next command when the server shuts down.
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()

	if c.Sec.Authenticated() != "" {
		c.Write([]byte("* PREAUTH " + c.Sec.Authenticated() + "\r\n")) // RFC 8314 3.2
	} else {
		c.Write([]byte("* OK IMAP ready\r\n"))
	}
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			c.Log.Info("connection ended", "err", err)
			return
		}
		tag, cmd, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch strings.ToUpper(cmd) {
		case "STARTTLS":
			if !c.CanStartTLS() {
				c.Write([]byte(tag + " BAD STARTTLS not available\r\n"))
				continue
			}
			c.Write([]byte(tag + " OK begin TLS\r\n"))
			if err := c.StartTLS(ctx); err != nil {
				return // closed; the gate logged why
			}
			br.Reset(c) // discard cleartext read past the command (CVE-2011-0411)
		case "LOGOUT":
			c.Write([]byte("* BYE\r\n" + tag + " OK\r\n"))
			return // the listener closes c, with close_notify
		default:
			c.Write([]byte(tag + " BAD unknown command\r\n"))
		}
	}
}
