package imap_test

import (
	"slices"
	"strings"
	"testing"
)

func TestMailboxCommands(t *testing.T) {
	e := start(t)
	c := e.login(t, 1)
	steps := []struct {
		cmd      string
		untagged []string
		tagged   string // prefix
	}{
		{`LIST "" ""`, []string{`* LIST (\Noselect) "/" ""`}, "OK"},
		{`LIST "" %`, []string{
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
			`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren) "/" "INBOX"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
		}, "OK"},
		{`CREATE Work/Projects/`, nil, "OK"},
		{`CREATE Work`, nil, "NO [ALREADYEXISTS]"},
		{`CREATE INBOX`, nil, "NO [CANNOT]"},
		{`CREATE Later (USE (\Flagged))`, nil, "OK"},
		{`CREATE Bad (USE (\Nope))`, nil, "NO [USEATTR]"},
		{`LIST "" Work*`, []string{
			`* LIST (\HasChildren) "/" "Work"`,
			`* LIST (\HasNoChildren) "/" "Work/Projects"`,
		}, "OK"},
		{`LIST "Work/" %`, []string{`* LIST (\HasNoChildren) "/" "Work/Projects"`}, "OK"},
		{`LIST (SPECIAL-USE) "" *`, []string{
			`* LIST (\HasNoChildren \Archive) "/" "Archive"`,
			`* LIST (\HasNoChildren \Drafts) "/" "Drafts"`,
			`* LIST (\HasNoChildren \Junk) "/" "Junk"`,
			`* LIST (\HasNoChildren \Flagged) "/" "Later"`,
			`* LIST (\HasNoChildren \Sent) "/" "Sent"`,
			`* LIST (\HasNoChildren \Trash) "/" "Trash"`,
		}, "OK"},
		{`SUBSCRIBE Work/Projects`, nil, "OK"},
		{`LSUB "" *`, []string{`* LSUB () "/" "Work/Projects"`}, "OK"},
		{`LIST (SUBSCRIBED) "" "Work*" RETURN (CHILDREN)`, []string{
			`* LIST (\Subscribed \HasNoChildren) "/" "Work/Projects"`,
		}, "OK"},
		{`UNSUBSCRIBE Work/Projects`, nil, "OK"},
		{`LSUB "" *`, nil, "OK"},
		{`SUBSCRIBE Nowhere`, nil, "NO [NONEXISTENT]"},
		{`RENAME Work Job`, nil, "OK"},
		{`LIST "" "Job/*"`, []string{`* LIST (\HasNoChildren) "/" "Job/Projects"`}, "OK"},
		{`RENAME Nowhere Else`, nil, "NO [NONEXISTENT]"},
		{`RENAME Job Later`, nil, "NO [ALREADYEXISTS]"},
		{`DELETE Job`, nil, "OK"},
		// The child stays; its parent is shown as not existing.
		{`LIST "" Job*`, []string{
			`* LIST (\Noselect \HasChildren) "/" "Job"`,
			`* LIST (\HasNoChildren) "/" "Job/Projects"`,
		}, "OK"},
		{`DELETE INBOX`, nil, "NO [CANNOT]"},
		{`DELETE Job`, nil, "NO [NONEXISTENT]"},
		{`STATUS INBOX (MESSAGES UIDNEXT UNSEEN DELETED SIZE RECENT)`, []string{
			`* STATUS "INBOX" (MESSAGES 0 UIDNEXT 1 UNSEEN 0 DELETED 0 SIZE 0 RECENT 0)`,
		}, "OK"},
		{`STATUS Nowhere (MESSAGES)`, nil, "NO [NONEXISTENT]"},
		// Modified UTF-7 for IMAP4rev1 clients (RFC 3501 5.1.3).
		{`CREATE "&ZeVnLIqe-"`, nil, "OK"},
		{`LIST "" "&ZeVnLIqe-"`, []string{`* LIST (\HasNoChildren) "/" "&ZeVnLIqe-"`}, "OK"},
		{`CREATE "&Jjo"`, nil, "BAD"},
		{`ENABLE IMAP4rev2`, []string{`* ENABLED IMAP4rev2`}, "OK"},
		// IMAP4rev2: UTF-8 names, \NonExistent.
		{`LIST "" "日本*"`, []string{`* LIST (\HasNoChildren) "/" "日本語"`}, "OK"},
		{`LIST "" "Job"`, []string{`* LIST (\NonExistent \HasChildren) "/" "Job"`}, "OK"},
		{`RENAME INBOX "Old mail"`, nil, "OK"},
		{`LIST "" "Old mail"`, []string{`* LIST (\HasNoChildren) "/" "Old mail"`}, "OK"},
		{`LIST "" inbox`, []string{`* LIST (\HasNoChildren) "/" "INBOX"`}, "OK"},
	}
	for _, s := range steps {
		u, tagged := c.do(s.cmd)
		if !slices.Equal(u, s.untagged) || !strings.HasPrefix(tagged, s.tagged) {
			t.Errorf("%s:\n got %q %q\nwant %q %s...", s.cmd, u, tagged, s.untagged, s.tagged)
		}
	}
}

func TestRenameINBOXMovesMessages(t *testing.T) {
	e := start(t)
	user, _ := e.user(1)
	e.deliver(t, user, "INBOX", "Subject: a\r\n\r\nA\r\n", "Subject: b\r\n\r\nB\r\n")
	c := e.login(t, 1)
	c.ok("RENAME INBOX Saved")
	u := c.ok("STATUS INBOX (MESSAGES)")
	u = append(u, c.ok("STATUS Saved (MESSAGES)")...)
	want := []string{`* STATUS "INBOX" (MESSAGES 0)`, `* STATUS "Saved" (MESSAGES 2)`}
	if !slices.Equal(u, want) {
		t.Errorf("after RENAME INBOX: %q, want %q", u, want)
	}
}
