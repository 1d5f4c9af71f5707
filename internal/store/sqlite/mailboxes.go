package sqlite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/latchmail/latch/internal/store"
)

func checkMailboxName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") {
		return fmt.Errorf("invalid mailbox name %q: want UTF-8 names separated by single slashes", name)
	}
	return nil
}

func checkSpecialUse(use string) error {
	switch use {
	case "", store.SpecialAll, store.SpecialArchive, store.SpecialDrafts, store.SpecialFlagged,
		store.SpecialJunk, store.SpecialSent, store.SpecialTrash:
		return nil
	}
	return fmt.Errorf("unknown special-use attribute %q", use)
}

// CreateMailbox adds a mailbox with a UIDVALIDITY no mailbox of this store
// had before. It returns store.ErrNotFound if the account does not exist and
// store.ErrExists if the name is taken.
func (s *Store) CreateMailbox(ctx context.Context, acct store.AccountID, name, specialUse string) (*store.Mailbox, error) {
	if err := errors.Join(checkMailboxName(name), checkSpecialUse(specialUse)); err != nil {
		return nil, fmt.Errorf("store: create mailbox: %w", err)
	}
	mb := &store.Mailbox{Account: acct, Name: name, SpecialUse: specialUse}
	err := s.write(ctx, func(x *txn) error {
		var one int
		if err := x.queryRow("SELECT 1 FROM accounts WHERE id = ?", acct).Scan(&one); err != nil {
			return fmt.Errorf("account %d: %w", acct, noRows(err))
		}
		var v int64
		if err := x.queryRow("SELECT value FROM meta WHERE key = 'uidvalidity'").Scan(&v); err != nil {
			return err
		}
		v++
		if v > 0xffffffff {
			v = 1 // after 2^32 mailboxes; the old values are long gone
		}
		if err := x.exec("UPDATE meta SET value = ? WHERE key = 'uidvalidity'", v); err != nil {
			return err
		}
		res, err := x.execResult(`INSERT INTO mailboxes(account_id, name, special_use, subscribed,
			uidvalidity, uidnext, highestmodseq) VALUES(?,?,?,0,?,1,1)`, acct, name, specialUse, v)
		if isUniqueViolation(err) {
			return store.ErrExists
		}
		if err != nil {
			return err
		}
		id, err := res.LastInsertId()
		mb.ID, mb.UIDValidity = store.MailboxID(id), uint32(v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: create mailbox %q: %w", name, err)
	}
	return mb, nil
}

const mailboxColumns = "id, account_id, name, special_use, subscribed, uidvalidity"

func scanMailbox(row interface{ Scan(...any) error }) (*store.Mailbox, error) {
	var mb store.Mailbox
	if err := row.Scan(&mb.ID, &mb.Account, &mb.Name, &mb.SpecialUse, &mb.Subscribed, &mb.UIDValidity); err != nil {
		return nil, err
	}
	return &mb, nil
}

// ListMailboxes returns an account's mailboxes ordered by name (bytewise);
// none for an unknown account.
func (s *Store) ListMailboxes(ctx context.Context, acct store.AccountID) ([]*store.Mailbox, error) {
	st, err := s.rstmt(ctx, "SELECT "+mailboxColumns+" FROM mailboxes WHERE account_id = ? ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("store: list mailboxes of account %d: %w", acct, err)
	}
	rows, err := st.QueryContext(ctx, acct)
	if err != nil {
		return nil, fmt.Errorf("store: list mailboxes of account %d: %w", acct, err)
	}
	var l []*store.Mailbox
	for rows.Next() {
		mb, err := scanMailbox(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: list mailboxes of account %d: %w", acct, err)
		}
		l = append(l, mb)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("store: list mailboxes of account %d: %w", acct, err)
	}
	return l, nil
}

// MailboxByName finds a mailbox by exact name.
func (s *Store) MailboxByName(ctx context.Context, acct store.AccountID, name string) (*store.Mailbox, error) {
	mb, err := scanMailbox(s.queryRow(ctx, "SELECT "+mailboxColumns+" FROM mailboxes WHERE account_id = ? AND name = ?", acct, name))
	if err != nil {
		return nil, fmt.Errorf("store: mailbox %q of account %d: %w", name, acct, noRows(err))
	}
	return mb, nil
}

// RenameMailbox renames a mailbox and every mailbox below it. Renaming a
// mailbox below itself is refused; renaming to its own name does nothing.
func (s *Store) RenameMailbox(ctx context.Context, id store.MailboxID, newName string) error {
	if err := checkMailboxName(newName); err != nil {
		return fmt.Errorf("store: rename mailbox %d: %w", id, err)
	}
	err := s.write(ctx, func(x *txn) error {
		var acct store.AccountID
		var old string
		if err := x.queryRow("SELECT account_id, name FROM mailboxes WHERE id = ?", id).Scan(&acct, &old); err != nil {
			return noRows(err)
		}
		if newName == old {
			return nil
		}
		if strings.HasPrefix(newName, old+"/") {
			return fmt.Errorf("cannot move %q below itself", old)
		}
		// The mailbox and its children: names old and old/... ("0" is the
		// byte after "/", so the range is exactly the children).
		rows, err := x.query("SELECT id, name FROM mailboxes WHERE account_id = ? AND (name = ? OR (name > ? AND name < ?))",
			acct, old, old+"/", old+"0")
		if err != nil {
			return err
		}
		type rename struct {
			id   store.MailboxID
			name string
		}
		var renames []rename
		for rows.Next() {
			var r rename
			if err := rows.Scan(&r.id, &r.name); err != nil {
				rows.Close()
				return err
			}
			r.name = newName + strings.TrimPrefix(r.name, old)
			renames = append(renames, r)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		// First out of the way (a new name may be an old one of the same
		// subtree), then into place; the unique index refuses a new name
		// taken by a mailbox outside the subtree.
		for _, r := range renames {
			if err := x.exec("UPDATE mailboxes SET name = ? WHERE id = ?", fmt.Sprintf("\x00rename\x00%d", r.id), r.id); err != nil {
				return err
			}
		}
		for _, r := range renames {
			err := x.exec("UPDATE mailboxes SET name = ? WHERE id = ?", r.name, r.id)
			if isUniqueViolation(err) {
				return fmt.Errorf("%q: %w", r.name, store.ErrExists)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: rename mailbox %d to %q: %w", id, newName, err)
	}
	return nil
}

// DeleteMailbox removes a mailbox and its messages, not its children.
func (s *Store) DeleteMailbox(ctx context.Context, id store.MailboxID) error {
	err := s.write(ctx, func(x *txn) error { return x.deleteMailbox(id) })
	if err != nil {
		return fmt.Errorf("store: delete mailbox %d: %w", id, err)
	}
	return nil
}

func (x *txn) deleteMailbox(id store.MailboxID) error {
	// The messages first, one by one through the trigger that releases
	// their blobs; the tombstones go with the mailbox.
	if err := x.exec("DELETE FROM messages WHERE mailbox_id = ?", id); err != nil {
		return err
	}
	if err := x.exec("DELETE FROM tombstones WHERE mailbox_id = ?", id); err != nil {
		return err
	}
	res, err := x.execResult("DELETE FROM mailboxes WHERE id = ?", id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return store.ErrNotFound
	}
	x.wakeAfter(id)
	return nil
}

// SetSubscribed marks a mailbox subscribed or not.
func (s *Store) SetSubscribed(ctx context.Context, id store.MailboxID, on bool) error {
	err := s.write(ctx, func(x *txn) error {
		res, err := x.execResult("UPDATE mailboxes SET subscribed = ? WHERE id = ?", on, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: subscribe mailbox %d: %w", id, err)
	}
	return nil
}

// MailboxStatus returns the mailbox's counters, read from its row: O(1) in
// the number of messages.
func (s *Store) MailboxStatus(ctx context.Context, id store.MailboxID) (store.Status, error) {
	var st store.Status
	err := s.queryRow(ctx, `SELECT messages, unseen, deleted, size, uidnext, uidvalidity, highestmodseq
		FROM mailboxes WHERE id = ?`, id).Scan(&st.Messages, &st.Unseen, &st.Deleted, &st.Size,
		&st.UIDNext, &st.UIDValidity, &st.HighestModSeq)
	if err != nil {
		return store.Status{}, fmt.Errorf("store: status of mailbox %d: %w", id, noRows(err))
	}
	return st, nil
}

// Usage returns the bytes stored in an account's mailboxes, a message
// counted once per mailbox holding it (as IMAP QUOTA counts).
func (s *Store) Usage(ctx context.Context, acct store.AccountID) (int64, error) {
	var n int64
	if err := s.queryRow(ctx, "SELECT COALESCE(SUM(size), 0) FROM mailboxes WHERE account_id = ?", acct).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: usage of account %d: %w", acct, err)
	}
	return n, nil
}
