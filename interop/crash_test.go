package interop

import (
	"slices"
	"strings"
	"testing"
)

// TestKill9 kills the server with SIGKILL during a POP3 session and right
// after one, and starts it again on the same store. RFC 1939 section 6:
// deletions take effect in the UPDATE state, entered by QUIT, so once
// QUIT is answered +OK they must survive a crash; a session that ends any
// other way, a crash included, deletes nothing.
func TestKill9(t *testing.T) {
	d := startDev(t)
	alice := d.alice()
	d.deliver(t, alice.Username, testMessages[:4]...)

	session := func(t *testing.T) *pop3Conn {
		t.Helper()
		c := dialPOP3(t, d.addr(t, "pop3s"), tlsClient(t, d.info.CACert))
		if r := c.login(alice.Username, alice.Password); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("login: %q", r)
		}
		return c
	}
	c := session(t)
	all := c.uidl()
	c.quit()
	if len(all) != 4 {
		t.Fatalf("UIDL %q: want 4 messages", all)
	}
	uids := func(entries []string) []string {
		var out []string
		for _, e := range entries {
			_, uid, _ := strings.Cut(e, " ")
			out = append(out, uid)
		}
		return out
	}

	// Each case starts from the maildrop the one before left.
	tests := []struct {
		name string
		dele []string
		quit bool
		want []string // unique-ids left after the crash and restart
	}{
		{"DELE without QUIT", []string{"1", "2", "3"}, false, uids(all)},
		{"DELE and QUIT", []string{"1", "3"}, true, []string{uids(all)[1], uids(all)[3]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := session(t)
			c.ok("RETR 1")
			c.multi()
			for _, n := range tt.dele {
				c.ok("DELE " + n)
			}
			if tt.quit {
				c.ok("QUIT")
			} else {
				c.ok("NOOP") // every DELE answered, the session still open
			}
			d.crash(t)
			d.start(t)

			c = session(t)
			if got := uids(c.uidl()); !slices.Equal(got, tt.want) {
				t.Errorf("after kill -9 and restart: unique-ids %q, want %q", got, tt.want)
			}
			c.quit()
		})
	}
}
