// Package storetest is the conformance suite every store.Store
// implementation must pass: it exercises each method and each invariant
// documented in package store.
//
// An implementation's tests call Run with a function that opens a fresh,
// empty store, and RunReopen with one that also reopens a store on the same
// data:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... })
//	}
//
// The suite runs its subtests in parallel, each on its own store. Beyond
// what package store documents, it expects implementations to keep times to
// the microsecond, to list mailboxes in bytewise name order, to return
// store.ErrNotFound for an unknown account or mailbox ID (UpdateAccount and
// DeleteAccount included), and to close Watch channels before the write
// that caused the change returns.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// Run runs the conformance suite. open must return a new, empty store and
// arrange for it to be closed when the test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"AccountRoundTrip", testAccountRoundTrip},
		{"AccountExists", testAccountExists},
		{"AccountByAddress", testAccountByAddress},
		{"AccountNotFound", testAccountNotFound},
		{"MarkCleartextExposed", testMarkCleartextExposed},
		{"ListAccounts", testListAccounts},
		{"DeleteAccount", testDeleteAccount},
		{"Mailboxes", testMailboxes},
		{"UIDValidity", testUIDValidity},
		{"RenameMailbox", testRenameMailbox},
		{"DeleteMailbox", testDeleteMailbox},
		{"Subscribe", testSubscribe},
		{"MailboxNotFound", testMailboxNotFound},
		{"AppendBytes", testAppendBytes},
		{"AppendBodyError", testAppendBodyError},
		{"UIDsAndModSeqs", testUIDsAndModSeqs},
		{"StatusCounters", testStatusCounters},
		{"List", testList},
		{"StoreFlags", testStoreFlags},
		{"StoreFlagsMany", testStoreFlagsMany},
		{"UnchangedSince", testUnchangedSince},
		{"Expunge", testExpunge},
		{"Copy", testCopy},
		{"Move", testMove},
		{"Changes", testChanges},
		{"Deliver", testDeliver},
		{"DeliverAllOrNothing", testDeliverAllOrNothing},
		{"Watch", testWatch},
		{"Usage", testUsage},
		{"Concurrency", testConcurrency},
		{"ConcurrentColdReads", testConcurrentColdReads},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// Fixtures and helpers. Each fails the test on error.

// date is an internal date as IMAP carries it (whole seconds).
func date(day int) time.Time { return time.Date(2024, 3, day, 12, 30, 45, 0, time.UTC) }

func newAccount(t *testing.T, s store.Store, name string) *store.Account {
	t.Helper()
	a := &store.Account{Name: name, Address: name + "@example.org", Created: date(1)}
	if err := s.CreateAccount(t.Context(), a); err != nil {
		t.Fatalf("CreateAccount(%q): %v", name, err)
	}
	return a
}

func newMailbox(t *testing.T, s store.Store, acct store.AccountID, name string) *store.Mailbox {
	t.Helper()
	mb, err := s.CreateMailbox(t.Context(), acct, name, "")
	if err != nil {
		t.Fatalf("CreateMailbox(%q): %v", name, err)
	}
	return mb
}

// inbox makes an account and its INBOX, for tests about messages.
func inbox(t *testing.T, s store.Store) *store.Mailbox {
	t.Helper()
	return newMailbox(t, s, newAccount(t, s, "user").ID, "INBOX")
}

func appendMsg(t *testing.T, s store.Store, mbox store.MailboxID, body string, flags ...string) store.Message {
	t.Helper()
	m, err := s.Append(t.Context(), mbox, store.NewMessage{Flags: flags, InternalDate: date(2), Body: onlyReader(body)})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return m
}

// onlyReader hides bytes.Reader's other methods, so that stores see the
// body as a plain stream.
func onlyReader(s string) io.Reader { return struct{ io.Reader }{bytes.NewReader([]byte(s))} }

func readMsg(t *testing.T, s store.Store, mbox store.MailboxID, uid store.UID) []byte {
	t.Helper()
	r, err := s.Open(t.Context(), mbox, uid)
	if err != nil {
		t.Fatalf("Open(%d, %d): %v", mbox, uid, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading message %d: %v", uid, err)
	}
	return b
}

func status(t *testing.T, s store.Store, mbox store.MailboxID) store.Status {
	t.Helper()
	st, err := s.MailboxStatus(t.Context(), mbox)
	if err != nil {
		t.Fatalf("MailboxStatus(%d): %v", mbox, err)
	}
	return st
}

func list(t *testing.T, s store.Store, mbox store.MailboxID, first, last store.UID) []store.Message {
	t.Helper()
	var l []store.Message
	for m, err := range s.List(t.Context(), mbox, first, last) {
		if err != nil {
			t.Fatalf("List(%d, %d:%d): %v", mbox, first, last, err)
		}
		l = append(l, m)
	}
	return l
}

func listAll(t *testing.T, s store.Store, mbox store.MailboxID) []store.Message {
	t.Helper()
	return list(t, s, mbox, 1, math.MaxUint32)
}

func uidsOf(msgs []store.Message) []store.UID {
	u := make([]store.UID, len(msgs))
	for i, m := range msgs {
		u[i] = m.UID
	}
	return u
}

// flags returns a sorted copy with nil for none, for comparing.
func flags(f ...string) []string {
	if len(f) == 0 {
		return nil
	}
	f = slices.Clone(f)
	slices.Sort(f)
	return f
}

// diffMessage describes how got differs from want, or returns "".
func diffMessage(got, want store.Message) string {
	switch {
	case got.UID != want.UID:
		return fmt.Sprintf("UID %d, want %d", got.UID, want.UID)
	case got.ModSeq != want.ModSeq:
		return fmt.Sprintf("UID %d: ModSeq %d, want %d", got.UID, got.ModSeq, want.ModSeq)
	case !slices.Equal(flags(got.Flags...), flags(want.Flags...)):
		return fmt.Sprintf("UID %d: Flags %q, want %q", got.UID, got.Flags, want.Flags)
	case !slices.IsSorted(got.Flags):
		return fmt.Sprintf("UID %d: Flags %q not sorted", got.UID, got.Flags)
	case !got.InternalDate.Equal(want.InternalDate):
		return fmt.Sprintf("UID %d: InternalDate %v, want %v", got.UID, got.InternalDate, want.InternalDate)
	case got.Size != want.Size:
		return fmt.Sprintf("UID %d: Size %d, want %d", got.UID, got.Size, want.Size)
	case got.LineSize != want.LineSize:
		return fmt.Sprintf("UID %d: LineSize %d, want %d", got.UID, got.LineSize, want.LineSize)
	}
	return ""
}

func checkMessages(t *testing.T, what string, got, want []store.Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got UIDs %v, want %v", what, uidsOf(got), uidsOf(want))
	}
	for i := range got {
		if d := diffMessage(got[i], want[i]); d != "" {
			t.Errorf("%s: %s", what, d)
		}
	}
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

// isClosed reports whether ch is closed now, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// lineSize is what Message.LineSize must be for body.
func lineSize(body []byte) int64 {
	var c store.LineCounter
	c.Write(body)
	return c.Size()
}
