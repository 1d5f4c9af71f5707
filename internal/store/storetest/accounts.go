package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// fullAccount sets every field of an account to something distinctive.
func fullAccount(name string) *store.Account {
	micro := func(d int) time.Time { return time.Date(2025, 1, d, 10, 20, 30, 123456000, time.UTC) }
	return &store.Account{
		Name:         name,
		Address:      name + "@example.org",
		Aliases:      []string{name + ".alias@example.org", "Postmaster+" + name + "@Example.NET"},
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
		SCRAM: &store.SCRAMKeys{
			Salt:       []byte("salt\x00\xff" + name),
			Iterations: 4096,
			StoredKey:  bytes.Repeat([]byte{0xAB, 0x00}, 16),
			ServerKey:  bytes.Repeat([]byte{0xCD, 0x01}, 16),
		},
		PasswordChanged:    micro(2),
		MustChangePassword: true,
		CleartextExposed:   micro(3),
		LegacyUntil:        micro(4),
		CertSPKI: []string{
			fmt.Sprintf("%x", sha256.Sum256([]byte(name))),
			fmt.Sprintf("%X", sha256.Sum256([]byte(name+"/2"))),
		},
		QuotaBytes: 5 << 30,
		Created:    micro(1),
	}
}

// diffAccount describes how got differs from want, or returns "".
func diffAccount(got, want *store.Account) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Name != want.Name {
		add("Name", got.Name, want.Name)
	}
	if got.Address != want.Address {
		add("Address", got.Address, want.Address)
	}
	if !slices.Equal(got.Aliases, want.Aliases) {
		add("Aliases", got.Aliases, want.Aliases)
	}
	if got.PasswordHash != want.PasswordHash {
		add("PasswordHash", got.PasswordHash, want.PasswordHash)
	}
	switch g, w := got.SCRAM, want.SCRAM; {
	case g == nil && w == nil:
	case g == nil || w == nil:
		add("SCRAM", g, w)
	case !bytes.Equal(g.Salt, w.Salt) || g.Iterations != w.Iterations ||
		!bytes.Equal(g.StoredKey, w.StoredKey) || !bytes.Equal(g.ServerKey, w.ServerKey):
		add("SCRAM", *g, *w)
	}
	for _, f := range []struct {
		name string
		g, w time.Time
	}{
		{"PasswordChanged", got.PasswordChanged, want.PasswordChanged},
		{"CleartextExposed", got.CleartextExposed, want.CleartextExposed},
		{"LegacyUntil", got.LegacyUntil, want.LegacyUntil},
		{"Created", got.Created, want.Created},
	} {
		if !f.g.Equal(f.w) {
			add(f.name, f.g, f.w)
		}
	}
	if got.MustChangePassword != want.MustChangePassword {
		add("MustChangePassword", got.MustChangePassword, want.MustChangePassword)
	}
	if !slices.Equal(got.CertSPKI, want.CertSPKI) {
		add("CertSPKI", got.CertSPKI, want.CertSPKI)
	}
	if got.QuotaBytes != want.QuotaBytes {
		add("QuotaBytes", got.QuotaBytes, want.QuotaBytes)
	}
	return strings.Join(d, "; ")
}

// checkLookups looks want up in every way and checks each finds it whole.
func checkLookups(t *testing.T, s store.Store, want *store.Account) {
	t.Helper()
	ctx := t.Context()
	type lookup struct {
		name string
		fn   func() (*store.Account, error)
	}
	lookups := []lookup{
		{"Account", func() (*store.Account, error) { return s.Account(ctx, want.Name) }},
		{"AccountByID", func() (*store.Account, error) { return s.AccountByID(ctx, want.ID) }},
		{"AccountByAddress(address)", func() (*store.Account, error) { return s.AccountByAddress(ctx, want.Address) }},
	}
	for _, a := range want.Aliases {
		lookups = append(lookups, lookup{"AccountByAddress(" + a + ")", func() (*store.Account, error) { return s.AccountByAddress(ctx, a) }})
	}
	for _, c := range want.CertSPKI {
		lookups = append(lookups, lookup{"AccountByCert(" + c + ")", func() (*store.Account, error) { return s.AccountByCert(ctx, c) }})
	}
	for _, l := range lookups {
		got, err := l.fn()
		if err != nil {
			t.Errorf("%s: %v", l.name, err)
			continue
		}
		if d := diffAccount(got, want); d != "" {
			t.Errorf("%s: %s", l.name, d)
		}
	}
}

func testAccountRoundTrip(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := fullAccount("alice")
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	if a.ID == 0 {
		t.Fatal("CreateAccount left ID zero")
	}
	want := *a
	checkLookups(t, s, &want)

	// Change every field, dropping the SCRAM keys and some bindings.
	old := *a
	b := fullAccount("alice2")
	b.ID = a.ID
	b.Aliases = []string{"other@example.com"}
	b.SCRAM = nil
	b.PasswordHash = ""
	b.MustChangePassword = false
	b.CleartextExposed = time.Time{}
	b.LegacyUntil = time.Time{}
	b.CertSPKI = b.CertSPKI[1:]
	b.QuotaBytes = 0
	b.PasswordChanged = b.PasswordChanged.Add(time.Hour)
	b.Created = b.Created.Add(-time.Hour)
	if err := s.UpdateAccount(ctx, b); err != nil {
		t.Fatalf("UpdateAccount: %v", err)
	}
	checkLookups(t, s, b)
	for _, addr := range append([]string{old.Address}, old.Aliases...) {
		_, err := s.AccountByAddress(ctx, addr)
		wantErr(t, "AccountByAddress(old "+addr+")", err, store.ErrNotFound)
	}
	_, err := s.Account(ctx, old.Name)
	wantErr(t, "Account(old name)", err, store.ErrNotFound)
	_, err = s.AccountByCert(ctx, old.CertSPKI[0])
	wantErr(t, "AccountByCert(unbound)", err, store.ErrNotFound)

	// And back: SCRAM keys and bindings can be added again.
	if err := s.UpdateAccount(ctx, &old); err != nil {
		t.Fatalf("UpdateAccount back: %v", err)
	}
	checkLookups(t, s, &old)
}

func testAccountExists(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := fullAccount("alice")
	if err := s.CreateAccount(ctx, alice); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(a *store.Account)
	}{
		{"name", func(a *store.Account) { a.Name = "alice" }},
		{"address is address", func(a *store.Account) { a.Address = alice.Address }},
		{"address is address, other case", func(a *store.Account) { a.Address = strings.ToUpper(alice.Address) }},
		{"address is alias", func(a *store.Account) { a.Address = alice.Aliases[1] }},
		{"alias is address", func(a *store.Account) { a.Aliases = append(a.Aliases, "ALICE@example.org") }},
		{"alias is alias", func(a *store.Account) { a.Aliases = append(a.Aliases, strings.ToLower(alice.Aliases[1])) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := fullAccount("bob")
			a.CertSPKI = nil
			tt.edit(a)
			err := s.CreateAccount(ctx, a)
			wantErr(t, "CreateAccount", err, store.ErrExists)
			// Nothing of the refused account is kept.
			if a.Name != alice.Name {
				_, err = s.Account(ctx, a.Name)
				wantErr(t, "Account after refused create", err, store.ErrNotFound)
			}
			if _, err := s.AccountByAddress(ctx, "bob.alias@example.org"); err == nil {
				t.Error("alias of refused account was kept")
			}
			// An existing account may not take them either.
			c := newAccount(t, s, "carol-"+strings.ReplaceAll(tt.name, " ", "-"))
			edited := *c
			tt.edit(&edited)
			err = s.UpdateAccount(ctx, &edited)
			wantErr(t, "UpdateAccount", err, store.ErrExists)
			checkLookups(t, s, c)
		})
	}
	checkLookups(t, s, alice)
}

func testAccountByAddress(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := &store.Account{Name: "dave", Address: "Dave@Example.org", Aliases: []string{"d.ave@EXAMPLE.net"}}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	newAccount(t, s, "erin")
	tests := []struct {
		addr  string
		found bool
	}{
		{"Dave@Example.org", true},
		{"dave@example.org", true},
		{"DAVE@EXAMPLE.ORG", true},
		{"d.ave@example.net", true},
		{"D.AVE@EXAMPLE.NET", true},
		{"dave@example.net", false},
		{"dave", false},
		{"", false},
	}
	for _, tt := range tests {
		got, err := s.AccountByAddress(ctx, tt.addr)
		switch {
		case tt.found && err != nil:
			t.Errorf("AccountByAddress(%q): %v", tt.addr, err)
		case tt.found && got.ID != a.ID:
			t.Errorf("AccountByAddress(%q) = account %d, want %d", tt.addr, got.ID, a.ID)
		case !tt.found:
			wantErr(t, fmt.Sprintf("AccountByAddress(%q)", tt.addr), err, store.ErrNotFound)
		}
	}
}

func testAccountNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "frank")
	missing := a.ID + 1000
	tests := []struct {
		name string
		fn   func() error
	}{
		{"Account", func() error { _, err := s.Account(ctx, "nobody"); return err }},
		{"AccountByID", func() error { _, err := s.AccountByID(ctx, missing); return err }},
		{"AccountByAddress", func() error { _, err := s.AccountByAddress(ctx, "nobody@example.org"); return err }},
		{"AccountByCert", func() error { _, err := s.AccountByCert(ctx, strings.Repeat("00", 32)); return err }},
		{"UpdateAccount", func() error {
			return s.UpdateAccount(ctx, &store.Account{ID: missing, Name: "ghost", Address: "ghost@example.org"})
		}},
		{"DeleteAccount", func() error { return s.DeleteAccount(ctx, missing) }},
	}
	for _, tt := range tests {
		wantErr(t, tt.name, tt.fn(), store.ErrNotFound)
	}
	// The failed update created nothing.
	_, err := s.Account(ctx, "ghost")
	wantErr(t, "Account(ghost)", err, store.ErrNotFound)
}

func testListAccounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	l, err := s.ListAccounts(ctx)
	if err != nil || len(l) != 0 {
		t.Fatalf("ListAccounts on empty store = %d accounts, %v", len(l), err)
	}
	var want []*store.Account
	for _, name := range []string{"carol", "alice", "bob"} {
		a := fullAccount(name)
		if err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		want = append(want, a)
	}
	slices.SortFunc(want, func(a, b *store.Account) int { return strings.Compare(a.Name, b.Name) })
	l, err = s.ListAccounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != len(want) {
		t.Fatalf("ListAccounts = %d accounts, want %d", len(l), len(want))
	}
	for i := range l {
		if d := diffAccount(l[i], want[i]); d != "" {
			t.Errorf("ListAccounts[%d]: %s", i, d)
		}
	}
}

func testDeleteAccount(t *testing.T, s store.Store) {
	ctx := t.Context()
	gone := fullAccount("gone")
	if err := s.CreateAccount(ctx, gone); err != nil {
		t.Fatal(err)
	}
	stays := newAccount(t, s, "stays")
	inbox := newMailbox(t, s, gone.ID, "INBOX")
	sub := newMailbox(t, s, gone.ID, "INBOX/sub")
	other := newMailbox(t, s, stays.ID, "INBOX")
	appendMsg(t, s, inbox.ID, "only in gone's mailbox")
	body := "shared by Deliver"
	got, err := s.Deliver(ctx, []store.MailboxID{sub.ID, other.ID}, store.NewMessage{Body: onlyReader(body)})
	if err != nil {
		t.Fatal(err)
	}

	if err := s.DeleteAccount(ctx, gone.ID); err != nil {
		t.Fatalf("DeleteAccount: %v", err)
	}
	_, err = s.AccountByID(ctx, gone.ID)
	wantErr(t, "AccountByID", err, store.ErrNotFound)
	_, err = s.AccountByCert(ctx, gone.CertSPKI[0])
	wantErr(t, "AccountByCert", err, store.ErrNotFound)
	for _, mb := range []*store.Mailbox{inbox, sub} {
		_, err := s.MailboxStatus(ctx, mb.ID)
		wantErr(t, "MailboxStatus("+mb.Name+")", err, store.ErrNotFound)
	}
	if l, err := s.ListMailboxes(ctx, gone.ID); err == nil && len(l) != 0 {
		t.Errorf("ListMailboxes of deleted account = %d mailboxes", len(l))
	}
	if n, err := s.Usage(ctx, gone.ID); err == nil && n != 0 {
		t.Errorf("Usage of deleted account = %d", n)
	}
	// The other account's copy of the shared message is intact.
	if b := readMsg(t, s, other.ID, got[1].UID); string(b) != body {
		t.Errorf("shared message after DeleteAccount = %q, want %q", b, body)
	}
	// Names and addresses are free again.
	again := fullAccount("gone")
	if err := s.CreateAccount(ctx, again); err != nil {
		t.Errorf("CreateAccount with the deleted account's name and addresses: %v", err)
	}
}

func testMarkCleartextExposed(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := newAccount(t, s, "exposed")
	a.PasswordHash, a.QuotaBytes = "hash-1", 42
	if err := s.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	// A stale password: the account has another hash now; nothing changes.
	if marked, err := s.MarkCleartextExposed(ctx, a.ID, "hash-0", date(3)); err != nil || marked {
		t.Fatalf("stale hash: marked %v, %v", marked, err)
	}
	if marked, err := s.MarkCleartextExposed(ctx, a.ID, "hash-1", date(4)); err != nil || !marked {
		t.Fatalf("current hash: marked %v, %v", marked, err)
	}
	got, err := s.AccountByID(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *a
	want.CleartextExposed = date(4)
	if !got.CleartextExposed.Equal(date(4)) || got.PasswordHash != "hash-1" || got.QuotaBytes != 42 || got.Name != want.Name {
		t.Fatalf("after marking: %+v", got)
	}
}
