package storetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/latchmail/latch/internal/store"
)

func mailboxNames(t *testing.T, s store.Store, acct store.AccountID) []string {
	t.Helper()
	l, err := s.ListMailboxes(t.Context(), acct)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	var names []string
	for _, mb := range l {
		names = append(names, mb.Name)
	}
	return names
}

func testMailboxes(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "alice")
	b := newAccount(t, s, "bob")
	var want []*store.Mailbox
	for _, c := range []struct{ name, use string }{
		{"INBOX", ""},
		{"Sent", store.SpecialSent},
		{"Archive/2024", store.SpecialArchive},
		{"Entwürfe", store.SpecialDrafts},
		{"Archive", ""},
	} {
		mb, err := s.CreateMailbox(ctx, a.ID, c.name, c.use)
		if err != nil {
			t.Fatalf("CreateMailbox(%q): %v", c.name, err)
		}
		if mb.ID == 0 || mb.Account != a.ID || mb.Name != c.name || mb.SpecialUse != c.use || mb.Subscribed || mb.UIDValidity == 0 {
			t.Errorf("CreateMailbox(%q) = %+v", c.name, *mb)
		}
		want = append(want, mb)
	}
	slices.SortFunc(want, func(x, y *store.Mailbox) int {
		if x.Name < y.Name {
			return -1
		}
		return 1
	})

	got, err := s.ListMailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListMailboxes = %d mailboxes, want %d", len(got), len(want))
	}
	for i := range got {
		if *got[i] != *want[i] {
			t.Errorf("ListMailboxes[%d] = %+v, want %+v", i, *got[i], *want[i])
		}
		mb, err := s.MailboxByName(ctx, a.ID, want[i].Name)
		if err != nil || *mb != *want[i] {
			t.Errorf("MailboxByName(%q) = %v, %v; want %+v", want[i].Name, mb, err, *want[i])
		}
	}

	_, err = s.CreateMailbox(ctx, a.ID, "Sent", "")
	wantErr(t, "CreateMailbox(existing)", err, store.ErrExists)
	_, err = s.MailboxByName(ctx, a.ID, "sent")
	wantErr(t, "MailboxByName(other case)", err, store.ErrNotFound)
	_, err = s.MailboxByName(ctx, b.ID, "Sent")
	wantErr(t, "MailboxByName(other account's)", err, store.ErrNotFound)
	// Names are per account.
	bi := newMailbox(t, s, b.ID, "INBOX")
	if got := mailboxNames(t, s, b.ID); !slices.Equal(got, []string{"INBOX"}) {
		t.Errorf("ListMailboxes(bob) = %q", got)
	}
	if bi.UIDValidity == 0 {
		t.Error("UIDValidity 0")
	}
}

func testUIDValidity(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "alice")
	seen := map[uint32]string{}
	check := func(mb *store.Mailbox) {
		t.Helper()
		if mb.UIDValidity == 0 {
			t.Errorf("%s: UIDValidity 0", mb.Name)
		}
		if prev, ok := seen[mb.UIDValidity]; ok {
			t.Errorf("%s: UIDValidity %d already given to %s", mb.Name, mb.UIDValidity, prev)
		}
		seen[mb.UIDValidity] = mb.Name
		if st := status(t, s, mb.ID); st.UIDValidity != mb.UIDValidity {
			t.Errorf("%s: status UIDValidity %d, mailbox %d", mb.Name, st.UIDValidity, mb.UIDValidity)
		}
	}
	for _, name := range []string{"a", "b", "c"} {
		check(newMailbox(t, s, a.ID, name))
	}
	// A name deleted and created again is a new mailbox (RFC 9051 2.3.1.1).
	mb, err := s.MailboxByName(ctx, a.ID, "b")
	if err != nil {
		t.Fatal(err)
	}
	appendMsg(t, s, mb.ID, "old")
	if err := s.DeleteMailbox(ctx, mb.ID); err != nil {
		t.Fatal(err)
	}
	again := newMailbox(t, s, a.ID, "b")
	again.Name = "b again"
	check(again)
	if st := status(t, s, again.ID); st.Messages != 0 {
		t.Errorf("recreated mailbox has %d messages", st.Messages)
	}
}

func testRenameMailbox(t *testing.T, s store.Store) {
	tests := []struct {
		name      string
		have      []string
		from, to  string
		err       error
		wantNames []string
	}{
		{"leaf", []string{"a", "b"}, "a", "c", nil, []string{"b", "c"}},
		{"with children", []string{"a", "a/x", "a/x/y", "ab", "a.b"}, "a", "n/m",
			nil, []string{"a.b", "ab", "n/m", "n/m/x", "n/m/x/y"}},
		{"child only", []string{"a", "a/x", "a/x/y"}, "a/x", "z",
			nil, []string{"a", "z", "z/y"}},
		{"up into parent's name space", []string{"p/q", "p/q/q", "p/q/q/r"}, "p/q", "p",
			nil, []string{"p", "p/q", "p/q/r"}},
		{"target taken", []string{"a", "b"}, "a", "b", store.ErrExists, []string{"a", "b"}},
		{"child target taken", []string{"a", "a/x", "b/x"}, "a", "b", store.ErrExists, []string{"a", "a/x", "b/x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acct := newAccount(t, s, "u"+tt.name)
			ids := map[string]*store.Mailbox{}
			for _, n := range tt.have {
				ids[n] = newMailbox(t, s, acct.ID, n)
			}
			// A message in every mailbox, to see that it moves along.
			for _, n := range tt.have {
				appendMsg(t, s, ids[n].ID, n)
			}
			err := s.RenameMailbox(t.Context(), ids[tt.from].ID, tt.to)
			if !errors.Is(err, tt.err) {
				t.Fatalf("RenameMailbox(%q, %q) = %v, want %v", tt.from, tt.to, err, tt.err)
			}
			if got := mailboxNames(t, s, acct.ID); !slices.Equal(got, tt.wantNames) {
				t.Errorf("after rename: %q, want %q", got, tt.wantNames)
			}
			for _, mb := range ids {
				l := listAll(t, s, mb.ID)
				if len(l) != 1 || string(readMsg(t, s, mb.ID, l[0].UID)) != mb.Name {
					t.Errorf("mailbox first named %q lost its message", mb.Name)
				}
			}
		})
	}
}

func testDeleteMailbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "alice")
	parent := newMailbox(t, s, a.ID, "p")
	child := newMailbox(t, s, a.ID, "p/c")
	m := appendMsg(t, s, parent.ID, "in parent")
	appendMsg(t, s, child.ID, "in child")
	if err := s.DeleteMailbox(ctx, parent.ID); err != nil {
		t.Fatal(err)
	}
	if got := mailboxNames(t, s, a.ID); !slices.Equal(got, []string{"p/c"}) {
		t.Errorf("after delete: %q, want [p/c]", got)
	}
	if n := len(listAll(t, s, child.ID)); n != 1 {
		t.Errorf("child has %d messages, want 1", n)
	}
	_, err := s.Open(ctx, parent.ID, m.UID)
	wantErr(t, "Open in deleted mailbox", err, store.ErrNotFound)
	wantErr(t, "DeleteMailbox again", s.DeleteMailbox(ctx, parent.ID), store.ErrNotFound)
	if n, err := s.Usage(ctx, a.ID); err != nil || n != int64(len("in child")) {
		t.Errorf("Usage = %d, %v; want %d", n, err, len("in child"))
	}
}

func testSubscribe(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	for _, on := range []bool{true, true, false, true} {
		if err := s.SetSubscribed(ctx, mb.ID, on); err != nil {
			t.Fatal(err)
		}
		got, err := s.MailboxByName(ctx, mb.Account, mb.Name)
		if err != nil || got.Subscribed != on {
			t.Errorf("after SetSubscribed(%v): %v, %v", on, got, err)
		}
	}
}

// testMailboxNotFound calls every method taking a mailbox ID with one that
// does not exist.
func testMailboxNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	m := appendMsg(t, s, mb.ID, "x")
	missing := mb.ID + 1000
	tests := []struct {
		name string
		fn   func() error
	}{
		{"RenameMailbox", func() error { return s.RenameMailbox(ctx, missing, "new") }},
		{"DeleteMailbox", func() error { return s.DeleteMailbox(ctx, missing) }},
		{"SetSubscribed", func() error { return s.SetSubscribed(ctx, missing, true) }},
		{"MailboxStatus", func() error { _, err := s.MailboxStatus(ctx, missing); return err }},
		{"Append", func() error {
			_, err := s.Append(ctx, missing, store.NewMessage{Body: onlyReader("x")})
			return err
		}},
		{"Deliver", func() error {
			_, err := s.Deliver(ctx, []store.MailboxID{missing}, store.NewMessage{Body: onlyReader("x")})
			return err
		}},
		{"List", func() error {
			for _, err := range s.List(ctx, missing, 1, 10) {
				return err
			}
			return nil
		}},
		{"Open", func() error { _, err := s.Open(ctx, missing, m.UID); return err }},
		{"Open unknown UID", func() error { _, err := s.Open(ctx, mb.ID, m.UID+1); return err }},
		{"StoreFlags", func() error {
			_, _, err := s.StoreFlags(ctx, missing, []store.UID{m.UID}, store.FlagsAdd, []string{`\Seen`}, 0)
			return err
		}},
		{"Expunge", func() error { _, err := s.Expunge(ctx, missing, []store.UID{m.UID}); return err }},
		{"Copy from", func() error { _, _, err := s.Copy(ctx, missing, []store.UID{m.UID}, mb.ID); return err }},
		{"Copy to", func() error { _, _, err := s.Copy(ctx, mb.ID, []store.UID{m.UID}, missing); return err }},
		{"Move from", func() error { _, _, err := s.Move(ctx, missing, []store.UID{m.UID}, mb.ID); return err }},
		{"Move to", func() error { _, _, err := s.Move(ctx, mb.ID, []store.UID{m.UID}, missing); return err }},
		{"Changes", func() error { _, _, err := s.Changes(ctx, missing, 0); return err }},
	}
	for _, tt := range tests {
		wantErr(t, tt.name, tt.fn(), store.ErrNotFound)
	}
	// None of that touched the mailbox that exists.
	checkMessages(t, "INBOX", listAll(t, s, mb.ID), []store.Message{m})
}
