package imap_test

import (
	"slices"
	"strings"
	"testing"
)

// Two sessions on one mailbox see each other's changes at their next
// command, with sequence numbers kept consistent (RFC 9051 7.5.1).
func TestTwoSessions(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	e.deliver(t, user, "INBOX", "Subject: 1\r\n\r\n1\r\n", "Subject: 2\r\n\r\n2\r\n", "Subject: 3\r\n\r\n3\r\n")
	a, b := e.login(t, 1), e.login(t, 1)
	a.ok("SELECT INBOX")
	b.ok("SELECT INBOX")

	b.ok(`STORE 2 +FLAGS.SILENT (\Flagged)`)
	if u := a.ok("NOOP"); !slices.Equal(u, []string{`* 2 FETCH (UID 2 FLAGS (\Flagged))`}) {
		t.Errorf("flag change seen by the other session: %q", u)
	}
	// The session that made the change is not told twice.
	if u := b.ok("NOOP"); len(u) != 0 {
		t.Errorf("own flag change reported back: %q", u)
	}

	b.ok(`STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.ok("EXPUNGE")
	e.deliver(t, user, "INBOX", "Subject: 4\r\n\r\n4\r\n")
	// FETCH, STORE and SEARCH must not shift sequence numbers: the
	// expunge waits, the new message may be announced.
	u, r := a.do("FETCH 1:2 UID")
	if !slices.Equal(u, []string{"* 2 FETCH (UID 2)", "* 4 EXISTS"}) || !strings.HasPrefix(r, "NO [EXPUNGEISSUED]") {
		t.Errorf("FETCH during a pending expunge: %q %q", u, r)
	}
	u = a.ok("NOOP")
	var expunged bool
	for _, l := range u {
		expunged = expunged || l == "* 1 EXPUNGE"
	}
	if !expunged {
		t.Errorf("NOOP after the other session's EXPUNGE: %q", u)
	}
	if u := a.ok("FETCH 1:* UID"); !slices.Equal(u, []string{"* 1 FETCH (UID 2)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)"}) {
		t.Errorf("view after sync: %q", u)
	}
	if u := b.ok("UID SEARCH ALL"); !slices.Equal(u, []string{"* SEARCH 2 3", "* 3 EXISTS"}) {
		t.Errorf("other session: %q", u)
	}
}

// IDLE reports another session's change without a further command.
func TestIDLE(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	a, b := e.login(t, 1), e.login(t, 1)
	a.ok("SELECT INBOX")
	a.send("i1 IDLE")
	if l := a.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	e.deliver(t, user, "INBOX", "Subject: new\r\n\r\nnew\r\n")
	if l := a.line(); l != "* 1 EXISTS" {
		t.Fatalf("during IDLE: %q", l)
	}
	b.ok("SELECT INBOX")
	b.ok(`STORE 1 +FLAGS (\Seen)`)
	if l := a.line(); l != `* 1 FETCH (UID 1 FLAGS (\Seen))` {
		t.Fatalf("during IDLE: %q", l)
	}
	a.send("DONE")
	if u, r := a.until("i1"); len(u) != 0 || r != "OK IDLE terminated" {
		t.Fatalf("DONE: %q %q", u, r)
	}
	a.ok("NOOP")
}
