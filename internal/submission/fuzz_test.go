package submission_test

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary client input to real sessions on the
// STARTTLS submission port and on LMTP, and requires that the server
// greets, answers and ends the session (the client half-closes) without
// crashing or hanging. Credentials sent here are refused for lack of
// TLS, so no failure delay slows it down.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO a\r\nMAIL FROM:<a@localhost>\r\nQUIT\r\n",
		"EHLO a\r\nAUTH PLAIN AGFsaWNlAHg=\r\nAUTH LOGIN\r\n*\r\n",
		"LHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<alice@localhost>\r\nDATA\r\nFrom: x\r\n\r\n..x\r\n.\r\n",
		"LHLO a\r\nMAIL FROM:<>\r\nRCPT TO:<bob@localhost>\r\nBDAT 3 LAST\r\nabc",
		"BDAT 99999999999999999999\r\nBDAT -1\r\nRSET\r\n",
		"STARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"\x00\xff\r\n\n\n\r\r",
	} {
		f.Add([]byte(seed))
	}
	e := start(f)
	f.Fuzz(func(t *testing.T, input []byte) {
		for _, service := range []string{"submission", "lmtp"} {
			conn, err := net.Dial("tcp", e.info.Listeners[service])
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			go func() {
				conn.Write(input)
				conn.(*net.TCPConn).CloseWrite()
			}()
			out, err := io.ReadAll(conn)
			conn.Close()
			if err != nil {
				t.Fatalf("%s: session did not end: %v (input %q, output so far %q)", service, err, input, out)
			}
			if !strings.HasPrefix(string(out), "220 localhost ") {
				t.Fatalf("%s: no greeting: %q", service, out)
			}
		}
	})
}
