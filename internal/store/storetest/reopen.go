package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/latchmail/latch/internal/store"
)

// RunReopen checks that what a store keeps survives closing and opening it
// again, and that it goes on from where it was (UIDs, MODSEQs and
// UIDVALIDITY values are not handed out again). open returns a new, empty
// store as for Run; reopen closes s, opens the same data again and arranges
// for the new store to be closed when the test ends.
func RunReopen(t *testing.T, open func(t *testing.T) store.Store, reopen func(t *testing.T, s store.Store) store.Store) {
	s := open(t)
	ctx := t.Context()

	alice := fullAccount("alice")
	if err := s.CreateAccount(ctx, alice); err != nil {
		t.Fatal(err)
	}
	bob := newAccount(t, s, "bob")
	in := newMailbox(t, s, alice.ID, "INBOX")
	arch, err := s.CreateMailbox(ctx, alice.ID, "Archive/2024", store.SpecialArchive)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetSubscribed(ctx, arch.ID, true); err != nil {
		t.Fatal(err)
	}
	bin := newMailbox(t, s, bob.ID, "INBOX")
	var uids []store.UID
	for i, fl := range [][]string{{`\Seen`}, {"$Work", `\Flagged`}, nil} {
		m, err := s.Append(ctx, in.ID, store.NewMessage{Flags: fl, InternalDate: date(i + 1), Body: onlyReader(strings.Repeat("body\r\n\x00\xff", 1000*i))})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, m.UID)
	}
	if _, _, err := s.StoreFlags(ctx, in.ID, uids[1:], store.FlagsAdd, []string{`\Answered`}, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Copy(ctx, in.ID, uids[:2], arch.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, in.ID, uids[2:]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, []store.MailboxID{in.ID, bin.ID}, store.NewMessage{Body: onlyReader("delivered")}); err != nil {
		t.Fatal(err)
	}

	type mailboxState struct {
		mb       *store.Mailbox
		st       store.Status
		msgs     []store.Message
		bodies   [][]byte
		vanished []store.UID
	}
	snapshot := func(s store.Store) ([]*store.Account, []mailboxState, []int64) {
		t.Helper()
		accts, err := s.ListAccounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var boxes []mailboxState
		var usage []int64
		for _, a := range accts {
			n, err := s.Usage(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			usage = append(usage, n)
			l, err := s.ListMailboxes(ctx, a.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, mb := range l {
				b := mailboxState{mb: mb, st: status(t, s, mb.ID), msgs: listAll(t, s, mb.ID)}
				for _, m := range b.msgs {
					b.bodies = append(b.bodies, readMsg(t, s, mb.ID, m.UID))
				}
				changed, vanished, err := s.Changes(ctx, mb.ID, 0)
				if err != nil {
					t.Fatal(err)
				}
				slices.SortFunc(changed, func(x, y store.Message) int { return int(x.UID) - int(y.UID) })
				checkMessages(t, mb.Name+": Changes(0) against List", changed, b.msgs)
				slices.Sort(vanished)
				b.vanished = vanished
				boxes = append(boxes, b)
			}
		}
		return accts, boxes, usage
	}
	accts, boxes, usage := snapshot(s)

	s = reopen(t, s)
	accts2, boxes2, usage2 := snapshot(s)
	if len(accts2) != len(accts) || len(boxes2) != len(boxes) {
		t.Fatalf("after reopen: %d accounts, %d mailboxes; before: %d, %d", len(accts2), len(boxes2), len(accts), len(boxes))
	}
	for i := range accts {
		if d := diffAccount(accts2[i], accts[i]); d != "" {
			t.Errorf("account %s after reopen: %s", accts[i].Name, d)
		}
	}
	if !slices.Equal(usage2, usage) {
		t.Errorf("usage after reopen %v, before %v", usage2, usage)
	}
	for i, b := range boxes {
		b2 := boxes2[i]
		name := b.mb.Name
		if *b2.mb != *b.mb {
			t.Errorf("mailbox after reopen %+v, before %+v", *b2.mb, *b.mb)
		}
		if b2.st != b.st {
			t.Errorf("%s: status after reopen %+v, before %+v", name, b2.st, b.st)
		}
		checkMessages(t, name+" after reopen", b2.msgs, b.msgs)
		for j := range b.bodies {
			if j < len(b2.bodies) && string(b2.bodies[j]) != string(b.bodies[j]) {
				t.Errorf("%s: UID %d has other bytes after reopen", name, b.msgs[j].UID)
			}
		}
		if !slices.Equal(b2.vanished, b.vanished) {
			t.Errorf("%s: vanished after reopen %v, before %v", name, b2.vanished, b.vanished)
		}
	}

	// It goes on from where it was.
	before := status(t, s, in.ID)
	m := appendMsg(t, s, in.ID, "after reopen")
	if m.UID < before.UIDNext || m.UID <= uids[2] || m.ModSeq <= before.HighestModSeq {
		t.Errorf("append after reopen: UID %d MODSEQ %d; status before %+v", m.UID, m.ModSeq, before)
	}
	mb := newMailbox(t, s, alice.ID, "New")
	for _, b := range boxes {
		if b.mb.UIDValidity == mb.UIDValidity {
			t.Errorf("new mailbox after reopen has UIDVALIDITY %d of %s", mb.UIDValidity, b.mb.Name)
		}
	}
	err = s.CreateAccount(ctx, &store.Account{Name: "bob", Address: "other@example.org"})
	wantErr(t, "CreateAccount(bob) after reopen", err, store.ErrExists)
}
