package imap_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const simpleMsg = "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n" +
	"From: Terry Gray <gray@cac.washington.edu>\r\n" +
	"Subject: IMAP4rev2 WG mtg summary and minutes\r\n" +
	"To: imap@cac.washington.edu\r\n" +
	"Cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n" +
	"Message-Id: <B27397-0100000@cac.washington.edu>\r\n" +
	"\r\n" +
	"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"

const multipartMsg = "From: a@example.org\r\n" +
	"Subject: parts\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"preamble\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"first part\r\n" +
	"--b1\r\n" +
	"Content-Type: message/rfc822\r\n" +
	"\r\n" +
	"From: inner@example.org\r\n" +
	"Subject: inner\r\n" +
	"Content-Type: text/plain\r\n" +
	"\r\n" +
	"inner body\r\n" +
	"--b1\r\n" +
	"Content-Type: application/octet-stream\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"x.bin\"\r\n" +
	"\r\n" +
	"AAEC\r\n" +
	"--b1--\r\n"

func TestSelectFetchStore(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	e.deliver(t, user, "INBOX", simpleMsg, multipartMsg, "Subject: three\r\n\r\nthird\r\n")
	c := e.login(t, 1)
	u := c.ok("EXAMINE INBOX")
	want := []string{
		"* 3 EXISTS",
		"* 0 RECENT",
		"* OK [UNSEEN 1] first unseen message",
	}
	if len(u) < 3 || !slices.Equal(u[:3], want) {
		t.Fatalf("EXAMINE: %q", u)
	}
	for _, w := range []string{"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)", "* OK [PERMANENTFLAGS ()] read-only mailbox", "* OK [UIDNEXT 4] predicted next UID"} {
		if !slices.Contains(u, w) {
			t.Errorf("EXAMINE lacks %q: %q", w, u)
		}
	}
	// EXAMINE: no \Seen set, no STORE.
	c.ok("FETCH 1 BODY[TEXT]")
	if u := c.ok("FETCH 1 FLAGS"); !slices.Equal(u, []string{"* 1 FETCH (FLAGS ())"}) {
		t.Errorf("after BODY[] under EXAMINE: %q", u)
	}
	if _, r := c.do("STORE 1 +FLAGS (\\Seen)"); !strings.HasPrefix(r, "NO [READ-ONLY]") {
		t.Errorf("STORE under EXAMINE: %q", r)
	}

	u, r := c.do("SELECT INBOX")
	if u[0] != "* OK [CLOSED] previous mailbox closed" || r != "OK [READ-WRITE] SELECT completed" {
		t.Errorf("SELECT after EXAMINE: %q %q", u, r)
	}
	steps := []struct {
		cmd  string
		want []string
	}{
		{"FETCH 1 (FLAGS RFC822.SIZE INTERNALDATE UID)", []string{
			fmt.Sprintf(`* 1 FETCH (FLAGS () RFC822.SIZE %d INTERNALDATE "17-Jul-1996 09:44:25 +0000" UID 1)`, len(simpleMsg))}},
		{"FETCH 1 ENVELOPE", []string{`* 1 FETCH (ENVELOPE ("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" ` +
			`(("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ` +
			`(("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ` +
			`((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL ` +
			`"<B27397-0100000@cac.washington.edu>"))`}},
		{"FETCH 1 BODY", []string{`* 1 FETCH (BODY ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 55 1))`}},
		{"FETCH 1 BODY.PEEK[HEADER.FIELDS (From Subject)]", []string{"* 1 FETCH (BODY[HEADER.FIELDS (From Subject)] {93}\r\n" +
			"From: Terry Gray <gray@cac.washington.edu>\r\nSubject: IMAP4rev2 WG mtg summary and minutes\r\n\r\n)"}},
		{"FETCH 1 BODY.PEEK[TEXT]<6.3>", []string{"* 1 FETCH (BODY[TEXT]<6> {3}\r\nJoe)"}},
		{"FETCH 1 FLAGS", []string{"* 1 FETCH (FLAGS ())"}},
		// RFC 9051 6.4.5: BODY[...] sets \Seen, and the FLAGS come along.
		{"FETCH 1 BODY[1]", []string{"* 1 FETCH (BODY[1] {55}\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n FLAGS (\\Seen))"}},
		{"FETCH 2 BODYSTRUCTURE", []string{`* 2 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "7BIT" 10 1 NIL NIL NIL NIL)` +
			`("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 79 (NIL "inner" ((NIL NIL "inner" "example.org")) ((NIL NIL "inner" "example.org")) ((NIL NIL "inner" "example.org")) NIL NIL NIL NIL NIL) ` +
			`("TEXT" "PLAIN" NIL NIL NIL "7BIT" 10 1 NIL NIL NIL NIL) 5 NIL NIL NIL NIL)` +
			`("APPLICATION" "OCTET-STREAM" NIL NIL NIL "BASE64" 4 NIL ("ATTACHMENT" ("FILENAME" "x.bin")) NIL NIL) "MIXED" ("BOUNDARY" "b1") NIL NIL NIL))`}},
		{"FETCH 2 BODY.PEEK[2.HEADER]", []string{"* 2 FETCH (BODY[2.HEADER] {69}\r\nFrom: inner@example.org\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\n)"}},
		{"FETCH 2 BODY.PEEK[2.1]", []string{"* 2 FETCH (BODY[2.1] {10}\r\ninner body)"}},
		{"FETCH 2 BODY.PEEK[1.MIME]", []string{"* 2 FETCH (BODY[1.MIME] {43}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n)"}},
		{"FETCH 2 (BINARY.SIZE[3] BINARY.PEEK[3])", []string{"* 2 FETCH (BINARY.SIZE[3] 3 BINARY[3] ~{3}\r\n\x00\x01\x02)"}},
		{"FETCH 2 BODY.PEEK[4]", []string{"* 2 FETCH (BODY[4] NIL)"}},
		{"STORE 2:3 +FLAGS (\\Flagged work)", []string{"* 2 FETCH (FLAGS (\\Flagged work))", "* 3 FETCH (FLAGS (\\Flagged work))"}},
		{"STORE 3 -FLAGS.SILENT (work)", nil},
		{"UID STORE 3 FLAGS (\\Deleted \\Seen)", []string{"* 3 FETCH (UID 3 FLAGS (\\Deleted \\Seen))"}},
		{"FETCH 1:* FLAGS", []string{"* 1 FETCH (FLAGS (\\Seen))", "* 2 FETCH (FLAGS (\\Flagged work))", "* 3 FETCH (FLAGS (\\Deleted \\Seen))"}},
		{"UID FETCH 2:* FLAGS", []string{"* 2 FETCH (UID 2 FLAGS (\\Flagged work))", "* 3 FETCH (UID 3 FLAGS (\\Deleted \\Seen))"}},
		{"SEARCH UNSEEN", []string{"* SEARCH 2"}},
		{"SEARCH FLAGGED KEYWORD work", []string{"* SEARCH 2"}},
		{"SEARCH OR SEEN DELETED", []string{"* SEARCH 1 3"}},
		{"SEARCH NOT 1:2", []string{"* SEARCH 3"}},
		{`SEARCH SUBJECT "mtg summary"`, []string{"* SEARCH 1"}},
		{`SEARCH FROM inner`, []string{"* SEARCH"}},
		{`SEARCH BODY "inner body" SINCE 1-Jul-1996 BEFORE 1-Aug-1996`, []string{"* SEARCH 2"}},
		{`SEARCH HEADER Message-Id B27397`, []string{"* SEARCH 1"}},
		{fmt.Sprintf("SEARCH LARGER %d SMALLER %d", len(simpleMsg)-1, len(simpleMsg)+1), []string{"* SEARCH 1"}},
		{`UID SEARCH UID 2:* (TEXT third)`, []string{"* SEARCH 3"}},
		{`SEARCH RETURN (MIN MAX COUNT) ALL`, []string{`* ESEARCH (TAG "%TAG%") MIN 1 MAX 3 COUNT 3`}},
		{`SEARCH RETURN () NEW`, []string{`* ESEARCH (TAG "%TAG%")`}},
		{"COPY 1:2 Archive", nil},
		{"MOVE 1 Trash", []string{"* OK [COPYUID %TRASH% 1 1] moved", "* 1 EXPUNGE"}},
		{"EXPUNGE", []string{"* 2 EXPUNGE"}},
		{"FETCH 1 UID", []string{"* 1 FETCH (UID 2)"}},
		{"STATUS Archive (MESSAGES)", []string{`* STATUS "Archive" (MESSAGES 2)`}},
	}
	trash, err := e.store.MailboxByName(context.Background(), mustAccount(t, e, user), "Trash")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		for i := range s.want {
			s.want[i] = strings.NewReplacer("%TAG%", fmt.Sprintf("t%d", c.n+1), "%TRASH%", fmt.Sprint(trash.UIDValidity)).Replace(s.want[i])
		}
		u, r := c.do(s.cmd)
		if !slices.Equal(u, s.want) || !strings.HasPrefix(r, "OK") {
			t.Errorf("%s:\n got %q %q\nwant %q", s.cmd, u, r, s.want)
		}
	}
	if _, r := c.do("COPY 1 Nowhere"); !strings.HasPrefix(r, "NO [TRYCREATE]") {
		t.Errorf("COPY to a missing mailbox: %q", r)
	}
	if _, r := c.do("FETCH 5 FLAGS"); !strings.HasPrefix(r, "BAD") {
		t.Errorf("FETCH beyond the last message: %q", r)
	}
	if _, r := c.do("COPY 1 Archive"); !strings.HasPrefix(r, "OK [COPYUID ") {
		t.Errorf("COPY: %q", r)
	}
	c.ok("UNSELECT")
	if _, r := c.do("FETCH 1 FLAGS"); !strings.HasPrefix(r, "BAD") {
		t.Errorf("FETCH after UNSELECT: %q", r)
	}
}

func TestAppend(t *testing.T) {
	e := start(t)
	c := e.login(t, 1)
	c.ok("ENABLE IMAP4rev2")
	c.ok("SELECT INBOX")
	msg := "Subject: appended\r\n\r\nhello\r\n"
	c.send(fmt.Sprintf(`a1 APPEND INBOX (\Seen $Important) "17-Jul-1996 02:44:25 -0700" {%d}`, len(msg)))
	if l := c.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("APPEND continuation: %q", l)
	}
	c.send(msg)
	u, r := c.until("a1")
	if !slices.Equal(u, []string{"* 1 EXISTS"}) || !strings.HasPrefix(r, "OK [APPENDUID ") {
		t.Fatalf("APPEND: %q %q", u, r)
	}
	c.send(fmt.Sprintf("a2 APPEND INBOX {%d+}\r\n%s", len(msg), msg))
	if u, r := c.until("a2"); !slices.Equal(u, []string{"* 2 EXISTS"}) || !strings.HasPrefix(r, "OK [APPENDUID ") {
		t.Fatalf("APPEND with LITERAL+: %q %q", u, r)
	}
	want := []string{fmt.Sprintf(`* 1 FETCH (UID 1 FLAGS ($Important \Seen) INTERNALDATE "17-Jul-1996 09:44:25 +0000" BODY[] {%d}`+"\r\n%s)", len(msg), msg)}
	if u := c.ok("UID FETCH 1 (FLAGS INTERNALDATE BODY.PEEK[])"); !slices.Equal(u, want) {
		t.Errorf("FETCH of appended:\n got %q\nwant %q", u, want)
	}
	// IMAP4rev2 answers SEARCH with ESEARCH (RFC 9051 7.3.4).
	if u := c.ok("UID SEARCH SEEN"); !slices.Equal(u, []string{`* ESEARCH (TAG "t5") UID ALL 1`}) {
		t.Errorf("SEARCH under IMAP4rev2: %q", u)
	}
	// Too large for APPENDLIMIT: refused before the client sends it.
	c.send("a3 APPEND INBOX {999999999999}")
	if _, r := c.until("a3"); !strings.HasPrefix(r, "NO [TOOBIG]") {
		t.Errorf("APPEND over the limit: %q", r)
	}
	c.send(fmt.Sprintf("a4 APPEND Nowhere {%d+}\r\n%s", len(msg), msg))
	if _, r := c.until("a4"); !strings.HasPrefix(r, "NO [TRYCREATE]") {
		t.Errorf("APPEND to a missing mailbox: %q", r)
	}
	c.ok("NOOP")
}

// CONDSTORE (RFC 7162): MODSEQ in FETCH, CHANGEDSINCE, UNCHANGEDSINCE,
// SEARCH MODSEQ.
func TestCondstore(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	e.deliver(t, user, "INBOX", "Subject: 1\r\n\r\n1\r\n", "Subject: 2\r\n\r\n2\r\n")
	c := e.login(t, 1)
	u := c.ok("SELECT INBOX (CONDSTORE)")
	var highest uint64
	for _, l := range u {
		fmt.Sscanf(l, "* OK [HIGHESTMODSEQ %d]", &highest)
	}
	if highest == 0 {
		t.Fatalf("SELECT (CONDSTORE) without HIGHESTMODSEQ: %q", u)
	}
	u = c.ok(`STORE 2 +FLAGS (\Seen)`)
	var ms uint64
	if len(u) != 1 {
		t.Fatalf("STORE: %q", u)
	}
	if _, err := fmt.Sscanf(u[0], `* 2 FETCH (FLAGS (\Seen) MODSEQ (%d))`, &ms); err != nil || ms <= highest {
		t.Fatalf("STORE under CONDSTORE: %q", u)
	}
	steps := []struct {
		cmd    string
		want   []string
		tagged string
	}{
		{fmt.Sprintf("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", highest), []string{fmt.Sprintf(`* 2 FETCH (FLAGS (\Seen) MODSEQ (%d))`, ms)}, "OK"},
		{fmt.Sprintf("SEARCH MODSEQ %d", highest+1), []string{fmt.Sprintf("* SEARCH 2 (MODSEQ %d)", ms)}, "OK"},
		{fmt.Sprintf(`STORE 1:2 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Flagged)`, highest), nil, "OK [MODIFIED 2]"},
		{"UID STORE 1 (UNCHANGEDSINCE 0) -FLAGS.SILENT (\\Flagged)", nil, "OK [MODIFIED 1]"},
		{"FETCH 1 (FLAGS)", []string{`* 1 FETCH (FLAGS (\Flagged))`}, "OK"},
	}
	for _, s := range steps {
		u, r := c.do(s.cmd)
		if !slices.Equal(u, s.want) || !strings.HasPrefix(r, s.tagged) {
			t.Errorf("%s:\n got %q %q\nwant %q %s", s.cmd, u, r, s.want, s.tagged)
		}
	}
}

func TestSearchText(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	e.deliver(t, user, "INBOX",
		"Subject: =?utf-8?q?K=C3=A4se?= und Brot\r\n\r\nplain\r\n",
		"Subject: other\r\nX-Tag: Hello\r\n\r\nKäse im Text\r\n")
	c := e.login(t, 1)
	c.ok("SELECT INBOX")
	steps := []struct{ cmd, want string }{
		{"SEARCH CHARSET UTF-8 SUBJECT {5+}\r\nkäse", "* SEARCH 1"}, // encoded word decoded, case folded
		{"SEARCH CHARSET UTF-8 BODY {5+}\r\nKäse", "* SEARCH 2"},
		{`SEARCH HEADER X-Tag ""`, "* SEARCH 2"}, // the field exists
		{`SEARCH NOT HEADER X-Tag hello`, "* SEARCH 1"},
		{`SEARCH OR SUBJECT brot TEXT "im text"`, "* SEARCH 1 2"},
		{`SEARCH (SEEN) (UNSEEN)`, "* SEARCH"},
	}
	for _, s := range steps {
		if u := c.ok(s.cmd); !slices.Equal(u, []string{s.want}) {
			t.Errorf("%q: %q, want %q", s.cmd, u, s.want)
		}
	}
	if _, r := c.do("SEARCH CHARSET ISO-8859-1 ALL"); !strings.HasPrefix(r, "NO [BADCHARSET") {
		t.Errorf("unknown charset: %q", r)
	}
}

// SEARCHRES (RFC 5182, part of IMAP4rev2): SEARCH RETURN (SAVE) keeps the
// result as "$" for later commands, in messages, not numbers.
func TestSearchRes(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	e.deliver(t, user, "INBOX", "Subject: a\r\n\r\n1\r\n", "Subject: b\r\n\r\n2\r\n", "Subject: a\r\n\r\n3\r\n", "Subject: a\r\n\r\n4\r\n")
	c := e.login(t, 1)
	c.ok("SELECT INBOX")
	if caps := c.ok("CAPABILITY"); !strings.Contains(caps[0], " SEARCHRES") {
		t.Fatalf("CAPABILITY: %q", caps)
	}
	steps := []struct{ cmd, want string }{
		{"SEARCH RETURN (SAVE) SUBJECT a", ""}, // SAVE alone: no ESEARCH (RFC 5182 2.4)
		{"SEARCH $ 1:2", "* SEARCH 1"},
		{"UID SEARCH UID $", "* SEARCH 1 3 4"},
		{"FETCH $ (UID)", "* 1 FETCH (UID 1)|* 3 FETCH (UID 3)|* 4 FETCH (UID 4)"},
		{"SEARCH RETURN (SAVE MIN MAX) SUBJECT a", `* ESEARCH (TAG "TAG") MIN 1 MAX 4`},
		{"UID FETCH $ (UID)", "* 1 FETCH (UID 1)|* 4 FETCH (UID 4)"},
		{"STORE $ +FLAGS.SILENT (\\Deleted)", ""},
		{"EXPUNGE", "* 1 EXPUNGE|* 3 EXPUNGE"}, // messages 1 and 4, renumbered as they go
		{"SEARCH $", "* SEARCH"},               // expunged messages leave "$"
	}
	for _, s := range steps {
		u := c.ok(s.cmd)
		want := []string(nil)
		if s.want != "" {
			want = strings.Split(strings.ReplaceAll(s.want, `"TAG"`, fmt.Sprintf("%q", fmt.Sprintf("t%d", c.n))), "|")
		}
		if !slices.Equal(u, want) {
			t.Errorf("%q: %q, want %q", s.cmd, u, want)
		}
	}
}
