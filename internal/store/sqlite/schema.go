package sqlite

import (
	"context"
	"fmt"
	"time"
)

// migrations[i] brings the schema from user_version i to i+1. Append to it;
// never change a step that has shipped.
var migrations = []string{
	// 0 -> 1: the first schema.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE accounts (
	id                   INTEGER PRIMARY KEY AUTOINCREMENT,
	name                 TEXT NOT NULL UNIQUE,
	address              TEXT NOT NULL,
	password_hash        TEXT NOT NULL,
	scram_salt           BLOB,    -- NULL: no SCRAM keys
	scram_iterations     INTEGER,
	scram_stored_key     BLOB,
	scram_server_key     BLOB,
	password_changed     INTEGER, -- times: Unix nanoseconds, NULL for zero
	must_change_password INTEGER NOT NULL,
	cleartext_exposed    INTEGER,
	legacy_until         INTEGER,
	quota_bytes          INTEGER NOT NULL,
	created              INTEGER
);

-- Every address of an account: the primary one at pos 0, aliases after it.
-- addr_key is the lower-cased address, so that the primary key makes
-- addresses unique and lookups case-insensitive.
CREATE TABLE addresses (
	addr_key   TEXT PRIMARY KEY,
	addr       TEXT NOT NULL,
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	pos        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX addresses_account ON addresses(account_id, pos);

CREATE TABLE certs (
	spki_key   TEXT PRIMARY KEY, -- lower-case hex
	spki       TEXT NOT NULL,
	account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	pos        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX certs_account ON certs(account_id, pos);

-- messages, unseen, deleted and size are kept by the triggers below.
CREATE TABLE mailboxes (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id    INTEGER NOT NULL REFERENCES accounts(id),
	name          TEXT NOT NULL,
	special_use   TEXT NOT NULL,
	subscribed    INTEGER NOT NULL,
	uidvalidity   INTEGER NOT NULL,
	uidnext       INTEGER NOT NULL,
	highestmodseq INTEGER NOT NULL,
	messages      INTEGER NOT NULL DEFAULT 0,
	unseen        INTEGER NOT NULL DEFAULT 0,
	deleted       INTEGER NOT NULL DEFAULT 0,
	size          INTEGER NOT NULL DEFAULT 0,
	UNIQUE (account_id, name)
);

-- refs counts the messages referencing the blob file; kept by triggers.
CREATE TABLE blobs (
	id   INTEGER PRIMARY KEY,
	refs      INTEGER NOT NULL,
	size      INTEGER NOT NULL,
	line_size INTEGER NOT NULL
);
CREATE INDEX blobs_unreferenced ON blobs(id) WHERE refs <= 0;

-- sysflags: bit 0 \Seen, 1 \Answered, 2 \Flagged, 3 \Deleted, 4 \Draft.
-- keywords: sorted, separated by single spaces.
-- blob_id has no foreign key: enforcing one would scan messages on every
-- blob deletion; blobs.refs does the job.
CREATE TABLE messages (
	mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id),
	uid           INTEGER NOT NULL,
	modseq        INTEGER NOT NULL,
	sysflags      INTEGER NOT NULL,
	keywords      TEXT NOT NULL,
	internal_date INTEGER NOT NULL,
	size          INTEGER NOT NULL,
	line_size     INTEGER NOT NULL,
	blob_id       INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);

-- Expunged UIDs with the MODSEQ of their expunge, for QRESYNC.
CREATE TABLE tombstones (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id),
	uid        INTEGER NOT NULL,
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX tombstones_modseq ON tombstones(mailbox_id, modseq);

CREATE TRIGGER messages_insert AFTER INSERT ON messages BEGIN
	UPDATE mailboxes SET
		messages = messages + 1,
		unseen   = unseen + ((NEW.sysflags & 1) = 0),
		deleted  = deleted + ((NEW.sysflags & 8) != 0),
		size     = size + NEW.size
	WHERE id = NEW.mailbox_id;
	UPDATE blobs SET refs = refs + 1 WHERE id = NEW.blob_id;
END;

CREATE TRIGGER messages_delete AFTER DELETE ON messages BEGIN
	UPDATE mailboxes SET
		messages = messages - 1,
		unseen   = unseen - ((OLD.sysflags & 1) = 0),
		deleted  = deleted - ((OLD.sysflags & 8) != 0),
		size     = size - OLD.size
	WHERE id = OLD.mailbox_id;
	UPDATE blobs SET refs = refs - 1 WHERE id = OLD.blob_id;
END;

CREATE TRIGGER messages_flags AFTER UPDATE OF sysflags ON messages
WHEN OLD.sysflags != NEW.sysflags BEGIN
	UPDATE mailboxes SET
		unseen  = unseen + ((NEW.sysflags & 1) = 0) - ((OLD.sysflags & 1) = 0),
		deleted = deleted + ((NEW.sysflags & 8) != 0) - ((OLD.sysflags & 8) != 0)
	WHERE id = NEW.mailbox_id;
END;
`,
}

// migrate brings the database to the schema this code knows, one
// transaction per step.
func (s *Store) migrate(ctx context.Context) error {
	var v int
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this program knows (%d): run a newer latch", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		if err := s.migrateStep(ctx, v); err != nil {
			return fmt.Errorf("migrate schema from version %d: %w", v, err)
		}
	}
	return nil
}

func (s *Store) migrateStep(ctx context.Context, v int) (err error) {
	if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.wconn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	if _, err := s.wconn.ExecContext(ctx, migrations[v]); err != nil {
		return err
	}
	if v == 0 {
		// UIDVALIDITY values count up from the creation time, so that a
		// store recreated from scratch does not repeat those of the old one.
		_, err := s.wconn.ExecContext(ctx, "INSERT INTO meta(key, value) VALUES('uidvalidity', ?)", time.Now().Unix()&0xffffffff)
		if err != nil {
			return err
		}
	}
	// PRAGMA takes no parameters; v+1 is our own integer.
	if _, err := s.wconn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
		return err
	}
	_, err = s.wconn.ExecContext(ctx, "COMMIT")
	return err
}
