package pop3_test

import (
	"io"
	"net"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary client input to a real session on the
// STLS port and requires that the server answers and ends the session
// (the client half-closes) without crashing or hanging. Credentials sent
// here are refused for lack of TLS, so no failure delay slows it down.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"CAPA\r\nQUIT\r\n",
		"USER a\r\nPASS b\r\nSTAT\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH\r\n",
		"AUTH PLAIN AGFsaWNlAHg=\r\nAUTH LOGIN\r\n=\r\n",
		"TOP 1 -1\r\nRETR 99999999999999999999\r\nLIST 0\r\nDELE\r\n",
		"STLS\r\n\x16\x03\x01\x00\x05hello",
		"\x00\xff\r\n\n\n\r\r",
	} {
		f.Add([]byte(seed))
	}
	e := start(f)
	addr := e.info.Listeners["pop3"]
	f.Fuzz(func(t *testing.T, input []byte) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		go func() {
			conn.Write(input)
			conn.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("session did not end: %v (input %q, output so far %q)", err, input, out)
		}
		if len(out) < 4 || string(out[:4]) != "+OK " {
			t.Fatalf("no greeting: %q", out)
		}
	})
}
