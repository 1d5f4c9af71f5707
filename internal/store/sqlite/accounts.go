package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// Times are stored as Unix nanoseconds, NULL for the zero time, and read
// back in UTC.

func timeValue(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func timeFrom(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.Unix(0, v.Int64).UTC()
}

func addrKey(addr string) string { return strings.ToLower(addr) }

// CreateAccount stores a new account and sets a.ID; a zero a.Created is set
// to now. It returns an error wrapping store.ErrExists when the name, an
// address or a certificate fingerprint is taken, also by a itself (an
// alias repeating the address).
func (s *Store) CreateAccount(ctx context.Context, a *store.Account) error {
	created := a.Created
	if created.IsZero() {
		created = time.Now()
	}
	var id store.AccountID
	err := s.write(ctx, func(x *txn) error {
		res, err := x.execResult(`INSERT INTO accounts(name, address, password_hash,
			scram_salt, scram_iterations, scram_stored_key, scram_server_key,
			password_changed, must_change_password, cleartext_exposed, legacy_until,
			quota_bytes, created) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			accountValues(a, created)...)
		if isUniqueViolation(err) {
			return fmt.Errorf("name %q is taken: %w", a.Name, store.ErrExists)
		}
		if err != nil {
			return err
		}
		n, err := res.LastInsertId()
		if err != nil {
			return err
		}
		id = store.AccountID(n)
		return x.insertAccountKeys(id, a)
	})
	if err != nil {
		return fmt.Errorf("store: create account %q: %w", a.Name, err)
	}
	a.ID, a.Created = id, created
	return nil
}

func accountValues(a *store.Account, created time.Time) []any {
	var salt, stored, server []byte
	var iter any
	if k := a.SCRAM; k != nil {
		// A NULL scram_iterations means "no SCRAM keys".
		salt, stored, server, iter = k.Salt, k.StoredKey, k.ServerKey, k.Iterations
	}
	return []any{a.Name, a.Address, a.PasswordHash,
		salt, iter, stored, server,
		timeValue(a.PasswordChanged), a.MustChangePassword, timeValue(a.CleartextExposed), timeValue(a.LegacyUntil),
		a.QuotaBytes, timeValue(created)}
}

// insertAccountKeys inserts the addresses and certificate bindings of a.
func (x *txn) insertAccountKeys(id store.AccountID, a *store.Account) error {
	for i, addr := range append([]string{a.Address}, a.Aliases...) {
		if addr == "" {
			return errors.New("empty address")
		}
		err := x.exec("INSERT INTO addresses(addr_key, addr, account_id, pos) VALUES(?,?,?,?)", addrKey(addr), addr, id, i)
		if isUniqueViolation(err) {
			return fmt.Errorf("address %q is taken: %w", addr, store.ErrExists)
		}
		if err != nil {
			return err
		}
	}
	for i, fp := range a.CertSPKI {
		err := x.exec("INSERT INTO certs(spki_key, spki, account_id, pos) VALUES(?,?,?,?)", strings.ToLower(fp), fp, id, i)
		if isUniqueViolation(err) {
			return fmt.Errorf("certificate %s is bound already: %w", fp, store.ErrExists)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// MarkCleartextExposed sets the account's CleartextExposed if its password
// hash is still passwordHash, touching nothing else.
func (s *Store) MarkCleartextExposed(ctx context.Context, id store.AccountID, passwordHash string, at time.Time) (bool, error) {
	var marked bool
	err := s.write(ctx, func(x *txn) error {
		res, err := x.execResult("UPDATE accounts SET cleartext_exposed = ? WHERE id = ? AND password_hash = ?", timeValue(at), id, passwordHash)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		marked = n > 0
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: mark account %d exposed: %w", id, err)
	}
	return marked, nil
}

// UpdateAccount replaces every field of the account with ID a.ID except
// Created when a.Created is zero. It returns store.ErrNotFound for an
// unknown ID and store.ErrExists as CreateAccount does.
func (s *Store) UpdateAccount(ctx context.Context, a *store.Account) error {
	err := s.write(ctx, func(x *txn) error {
		vals := accountValues(a, a.Created)
		q := `UPDATE accounts SET name=?, address=?, password_hash=?,
			scram_salt=?, scram_iterations=?, scram_stored_key=?, scram_server_key=?,
			password_changed=?, must_change_password=?, cleartext_exposed=?, legacy_until=?,
			quota_bytes=?, created=COALESCE(?, created) WHERE id=?`
		res, err := x.execResult(q, append(vals, a.ID)...)
		if isUniqueViolation(err) {
			return fmt.Errorf("name %q is taken: %w", a.Name, store.ErrExists)
		}
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotFound
		}
		if err := x.exec("DELETE FROM addresses WHERE account_id = ?", a.ID); err != nil {
			return err
		}
		if err := x.exec("DELETE FROM certs WHERE account_id = ?", a.ID); err != nil {
			return err
		}
		return x.insertAccountKeys(a.ID, a)
	})
	if err != nil {
		return fmt.Errorf("store: update account %d: %w", a.ID, err)
	}
	return nil
}

// DeleteAccount removes the account with its mailboxes, messages and
// bindings.
func (s *Store) DeleteAccount(ctx context.Context, id store.AccountID) error {
	err := s.write(ctx, func(x *txn) error {
		rows, err := x.query("SELECT id FROM mailboxes WHERE account_id = ?", id)
		if err != nil {
			return err
		}
		var boxes []store.MailboxID
		for rows.Next() {
			var b store.MailboxID
			if err := rows.Scan(&b); err != nil {
				rows.Close()
				return err
			}
			boxes = append(boxes, b)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		for _, b := range boxes {
			if err := x.deleteMailbox(b); err != nil {
				return err
			}
		}
		res, err := x.execResult("DELETE FROM accounts WHERE id = ?", id)
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
		return fmt.Errorf("store: delete account %d: %w", id, err)
	}
	return nil
}

// Account finds an account by login name, compared exactly.
func (s *Store) Account(ctx context.Context, name string) (*store.Account, error) {
	a, err := s.loadAccount(ctx, "SELECT id FROM accounts WHERE name = ?", name)
	if err != nil {
		return nil, fmt.Errorf("store: account %q: %w", name, err)
	}
	return a, nil
}

// AccountByID finds an account by ID.
func (s *Store) AccountByID(ctx context.Context, id store.AccountID) (*store.Account, error) {
	a, err := s.loadAccount(ctx, "SELECT id FROM accounts WHERE id = ?", id)
	if err != nil {
		return nil, fmt.Errorf("store: account %d: %w", id, err)
	}
	return a, nil
}

// AccountByAddress finds the account owning an address or alias, compared
// case-insensitively.
func (s *Store) AccountByAddress(ctx context.Context, addr string) (*store.Account, error) {
	a, err := s.loadAccount(ctx, "SELECT account_id FROM addresses WHERE addr_key = ?", addrKey(addr))
	if err != nil {
		return nil, fmt.Errorf("store: account with address %q: %w", addr, err)
	}
	return a, nil
}

// AccountByCert finds the account a client-certificate SPKI SHA-256
// fingerprint (hex, either case) is bound to.
func (s *Store) AccountByCert(ctx context.Context, spkiSHA256 string) (*store.Account, error) {
	a, err := s.loadAccount(ctx, "SELECT account_id FROM certs WHERE spki_key = ?", strings.ToLower(spkiSHA256))
	if err != nil {
		return nil, fmt.Errorf("store: account with certificate %s: %w", spkiSHA256, err)
	}
	return a, nil
}

// ListAccounts returns every account ordered by name.
func (s *Store) ListAccounts(ctx context.Context) ([]*store.Account, error) {
	var accts []*store.Account
	err := s.readTx(ctx, func(r *readTx) error {
		rows, err := r.query("SELECT " + accountColumns + " FROM accounts ORDER BY name")
		if err != nil {
			return err
		}
		byID := make(map[store.AccountID]*store.Account)
		for rows.Next() {
			a, err := scanAccount(rows)
			if err != nil {
				rows.Close()
				return err
			}
			accts = append(accts, a)
			byID[a.ID] = a
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		return r.loadKeys(byID, " WHERE 1")
	})
	if err != nil {
		return nil, fmt.Errorf("store: list accounts: %w", err)
	}
	return accts, nil
}

const accountColumns = `id, name, address, password_hash,
	scram_salt, scram_iterations, scram_stored_key, scram_server_key,
	password_changed, must_change_password, cleartext_exposed, legacy_until,
	quota_bytes, created`

func scanAccount(row interface{ Scan(...any) error }) (*store.Account, error) {
	var (
		a                                 store.Account
		salt, stored, server              []byte
		iter                              sql.NullInt64
		changed, exposed, legacy, created sql.NullInt64
	)
	err := row.Scan(&a.ID, &a.Name, &a.Address, &a.PasswordHash,
		&salt, &iter, &stored, &server,
		&changed, &a.MustChangePassword, &exposed, &legacy,
		&a.QuotaBytes, &created)
	if err != nil {
		return nil, err
	}
	if iter.Valid {
		a.SCRAM = &store.SCRAMKeys{Salt: salt, Iterations: int(iter.Int64), StoredKey: stored, ServerKey: server}
	}
	a.PasswordChanged, a.CleartextExposed = timeFrom(changed), timeFrom(exposed)
	a.LegacyUntil, a.Created = timeFrom(legacy), timeFrom(created)
	return &a, nil
}

// loadAccount finds the ID with idQuery and loads that account, in one
// snapshot.
func (s *Store) loadAccount(ctx context.Context, idQuery string, arg any) (*store.Account, error) {
	var a *store.Account
	err := s.readTx(ctx, func(r *readTx) error {
		var id store.AccountID
		if err := r.queryRow(idQuery, arg).Scan(&id); err != nil {
			return noRows(err)
		}
		var err error
		a, err = scanAccount(r.queryRow("SELECT "+accountColumns+" FROM accounts WHERE id = ?", id))
		if err != nil {
			return noRows(err)
		}
		return r.loadKeys(map[store.AccountID]*store.Account{id: a}, " WHERE account_id = ?", id)
	})
	return a, err
}

// loadKeys fills in the aliases and certificate bindings of the accounts in
// byID, reading the rows that where (with args) selects.
func (r *readTx) loadKeys(byID map[store.AccountID]*store.Account, where string, args ...any) error {
	// pos 0 is the primary address, in accounts.address already.
	rows, err := r.query("SELECT account_id, addr FROM addresses"+where+" AND pos > 0 ORDER BY account_id, pos", args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id store.AccountID
		var addr string
		if err := rows.Scan(&id, &addr); err != nil {
			rows.Close()
			return err
		}
		if a := byID[id]; a != nil {
			a.Aliases = append(a.Aliases, addr)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	rows, err = r.query("SELECT account_id, spki FROM certs"+where+" ORDER BY account_id, pos", args...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id store.AccountID
		var fp string
		if err := rows.Scan(&id, &fp); err != nil {
			rows.Close()
			return err
		}
		if a := byID[id]; a != nil {
			a.CertSPKI = append(a.CertSPKI, fp)
		}
	}
	return errors.Join(rows.Err(), rows.Close())
}
