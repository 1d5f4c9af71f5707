package pop3_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/latchmail/latch/internal/admin"
)

// BenchmarkRetrieveAndDelete: 10 accounts with 100 messages of 10 KiB
// each; 10 clients at once, one per account, log in over implicit TLS,
// RETR and DELE every message, and QUIT (the deletions are durable when
// QUIT is answered). One iteration moves 1,000 messages.
func BenchmarkRetrieveAndDelete(b *testing.B) {
	const accounts, perAccount = 10, 100
	e := start(b)
	ctx := context.Background()
	users := make([]string, accounts)
	for i := range users {
		users[i] = fmt.Sprintf("bench%d@localhost", i)
		if err := admin.Run(ctx, e.srv.Store(), admin.Request{Args: []string{"add", users[i]}, Password: "bench password"}, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	body := "Subject: bench\r\n\r\n" + strings.Repeat(strings.Repeat("x", 78)+"\r\n", 128)
	bodies := make([]string, perAccount)
	for i := range bodies {
		bodies[i] = body
	}
	var moved int
	for b.Loop() {
		b.StopTimer()
		for _, u := range users {
			e.deliver(b, u, bodies...)
		}
		b.StartTimer()
		var wg sync.WaitGroup
		for _, u := range users {
			wg.Go(func() {
				if err := drain(e, u, "bench password", perAccount); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		moved += accounts * perAccount
	}
	b.ReportMetric(float64(moved)/b.Elapsed().Seconds(), "msgs/s")
}

// drain retrieves and deletes n messages in one pipelined session.
func drain(e *env, user, pw string, n int) error {
	conn, err := tls.Dial("tcp", e.info.Listeners["pop3s"], e.tlsConfig())
	if err != nil {
		return err
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	fmt.Fprintf(w, "USER %s\r\nPASS %s\r\n", user, pw)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(w, "RETR %d\r\nDELE %d\r\n", i, i)
	}
	fmt.Fprintf(w, "QUIT\r\n")
	if err := w.Flush(); err != nil {
		return err
	}
	var last string
	for {
		l, err := r.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if strings.HasPrefix(l, "-ERR") {
			return fmt.Errorf("%s: %s", user, l)
		}
		last = l
	}
	if last != "+OK bye\r\n" {
		return fmt.Errorf("%s: session ended with %q", user, last)
	}
	return nil
}
