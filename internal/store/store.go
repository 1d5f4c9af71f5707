// Package store defines what Latch keeps: accounts, mailboxes and messages,
// behind an interface narrow enough for more than one implementation (the
// embedded SQLite default in store/sqlite; PostgreSQL for many machines).
//
// Invariants every implementation keeps, and storetest checks:
//
//   - A write that returns nil is durable: it survives kill -9 of the process
//     and power loss (data and metadata synced before the call returns).
//   - Message bytes are kept exactly as received.
//   - Within a mailbox, UIDs strictly increase in the order messages are
//     added and are never reused while UIDVALIDITY stays the same.
//   - Every change to a mailbox (new message, flag change, expunge) takes a
//     new MODSEQ, greater than every MODSEQ the mailbox handed out before
//     (RFC 7162), and wakes every channel returned by Watch for it.
//   - Lookups of one message by UID, flag changes and appends cost at most
//     logarithmic time in the size of the mailbox.
package store

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"
)

// Errors an implementation returns, possibly wrapped.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

type (
	AccountID int64
	MailboxID int64
	UID       uint32
)

// Store is the whole of what the server keeps.
type Store interface {
	Accounts
	Mailboxes
	Messages
	Close() error
}

// Account is one user of the service.
type Account struct {
	ID      AccountID
	Name    string   // login name, unique; usually the address
	Address string   // primary address, unique across addresses and aliases
	Aliases []string // further addresses the account may send from and receive at

	PasswordHash string     // PHC string (argon2id); empty: no password login
	SCRAM        *SCRAMKeys // SCRAM-SHA-256 keys derived from the same password

	PasswordChanged    time.Time
	MustChangePassword bool      // set by an administrator; login refused until changed
	CleartextExposed   time.Time // last time the password crossed a connection without TLS; zero if never
	LegacyUntil        time.Time // legacy cleartext allowance ends then; zero: none (RFC 8314 4.1)

	CertSPKI   []string // bound client-certificate SPKI SHA-256 fingerprints, hex
	QuotaBytes int64    // storage limit; 0 means unlimited
	Created    time.Time
}

// SCRAMKeys are the stored form of a SCRAM-SHA-256 secret (RFC 5802 3).
type SCRAMKeys struct {
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// Accounts keeps accounts and the client certificates bound to them.
type Accounts interface {
	// CreateAccount stores a new account and sets a.ID. It returns ErrExists
	// when the name or one of the addresses is taken.
	CreateAccount(ctx context.Context, a *Account) error
	// UpdateAccount replaces every field of the account with ID a.ID.
	UpdateAccount(ctx context.Context, a *Account) error
	// MarkCleartextExposed sets CleartextExposed to at, only if the
	// account's PasswordHash is still passwordHash (the password found
	// exposed is still the account's), and reports whether it did. It
	// changes no other field, so it cannot undo a concurrent update.
	MarkCleartextExposed(ctx context.Context, id AccountID, passwordHash string, at time.Time) (bool, error)
	// DeleteAccount removes the account with its mailboxes and messages.
	DeleteAccount(ctx context.Context, id AccountID) error
	// Account finds an account by login name.
	Account(ctx context.Context, name string) (*Account, error)
	// AccountByID finds an account by ID.
	AccountByID(ctx context.Context, id AccountID) (*Account, error)
	// AccountByAddress finds the account owning an address or alias
	// (compared case-insensitively).
	AccountByAddress(ctx context.Context, addr string) (*Account, error)
	// AccountByCert finds the account a client-certificate SPKI fingerprint
	// is bound to.
	AccountByCert(ctx context.Context, spkiSHA256 string) (*Account, error)
	// ListAccounts returns every account ordered by name.
	ListAccounts(ctx context.Context) ([]*Account, error)
}

// Special-use attributes (RFC 6154).
const (
	SpecialAll     = `\All`
	SpecialArchive = `\Archive`
	SpecialDrafts  = `\Drafts`
	SpecialFlagged = `\Flagged`
	SpecialJunk    = `\Junk`
	SpecialSent    = `\Sent`
	SpecialTrash   = `\Trash`
)

// Mailbox is a named folder of messages. Names are UTF-8 with "/" as the
// hierarchy separator; "INBOX" is always spelt so.
type Mailbox struct {
	ID          MailboxID
	Account     AccountID
	Name        string
	SpecialUse  string // one of the Special* constants, or empty
	Subscribed  bool
	UIDValidity uint32
}

// Status is a mailbox's counters at one moment.
type Status struct {
	Messages      uint32
	Unseen        uint32
	Deleted       uint32 // messages with \Deleted
	Size          int64  // sum of message sizes (RFC 8438 STATUS=SIZE)
	UIDNext       UID
	UIDValidity   uint32
	HighestModSeq uint64
}

// Mailboxes keeps the folders of each account.
type Mailboxes interface {
	// CreateMailbox adds a mailbox; ErrExists if the name is taken.
	CreateMailbox(ctx context.Context, acct AccountID, name, specialUse string) (*Mailbox, error)
	// ListMailboxes returns an account's mailboxes ordered by name.
	ListMailboxes(ctx context.Context, acct AccountID) ([]*Mailbox, error)
	// MailboxByName finds a mailbox by exact name.
	MailboxByName(ctx context.Context, acct AccountID, name string) (*Mailbox, error)
	// RenameMailbox renames a mailbox and every mailbox below it in the
	// hierarchy; ErrExists if a new name is taken.
	RenameMailbox(ctx context.Context, id MailboxID, newName string) error
	// DeleteMailbox removes a mailbox and its messages (not its children).
	DeleteMailbox(ctx context.Context, id MailboxID) error
	// SetSubscribed marks a mailbox subscribed or not.
	SetSubscribed(ctx context.Context, id MailboxID, on bool) error
	// MailboxStatus returns the mailbox's counters.
	MailboxStatus(ctx context.Context, id MailboxID) (Status, error)
	// Usage returns the bytes stored for an account, for quota.
	Usage(ctx context.Context, acct AccountID) (int64, error)
}

// Message is what is known of a stored message without reading it.
type Message struct {
	UID          UID
	ModSeq       uint64
	Flags        []string // system flags (`\Seen`, ...) and keywords, sorted
	InternalDate time.Time
	Size         int64 // octets as stored
	LineSize     int64 // octets with every line ended by CRLF (see LineCounter)
}

// NewMessage is a message to add.
type NewMessage struct {
	Flags        []string
	InternalDate time.Time // zero: now
	Body         io.Reader // raw RFC 5322 bytes, stored exactly
}

// FlagOp says how StoreFlags combines the given flags with the present ones.
type FlagOp int

const (
	FlagsReplace FlagOp = iota
	FlagsAdd
	FlagsRemove
)

// Messages keeps the messages of each mailbox.
type Messages interface {
	// Append adds one message to a mailbox and returns once it is durable.
	Append(ctx context.Context, mbox MailboxID, m NewMessage) (Message, error)
	// Deliver adds the same message to several mailboxes (possibly of
	// several accounts) at once, durably; the result is in the order of
	// boxes. Either every mailbox gets the message or none does.
	Deliver(ctx context.Context, boxes []MailboxID, m NewMessage) ([]Message, error)
	// List yields the messages whose UID lies in [first, last], ascending.
	List(ctx context.Context, mbox MailboxID, first, last UID) iter.Seq2[Message, error]
	// Open returns the raw bytes of one message.
	Open(ctx context.Context, mbox MailboxID, uid UID) (io.ReadSeekCloser, error)
	// StoreFlags changes the flags of the given messages. With
	// unchangedSince > 0, messages whose MODSEQ is greater are left alone
	// and returned in failed (RFC 7162 3.1.3). UIDs that do not exist are
	// ignored. changed holds the new state of every message changed.
	StoreFlags(ctx context.Context, mbox MailboxID, uids []UID, op FlagOp, flags []string, unchangedSince uint64) (changed []Message, failed []UID, err error)
	// Expunge removes the given messages and returns the UIDs removed.
	Expunge(ctx context.Context, mbox MailboxID, uids []UID) ([]UID, error)
	// Copy copies messages to another mailbox, keeping flags and internal
	// date; it returns the source UIDs copied and their new UIDs, pairwise.
	Copy(ctx context.Context, src MailboxID, uids []UID, dst MailboxID) (from, to []UID, err error)
	// Move is Copy and Expunge at once: no observer sees both or neither.
	Move(ctx context.Context, src MailboxID, uids []UID, dst MailboxID) (from, to []UID, err error)
	// Changes returns what happened since a MODSEQ: the current state of
	// messages changed or added after it, and the UIDs expunged after it
	// (RFC 7162 QRESYNC needs both).
	Changes(ctx context.Context, mbox MailboxID, since uint64) (changed []Message, vanished []UID, err error)
	// Watch returns a channel that is closed at the next change to the
	// mailbox after the call. Call it again for the change after that.
	Watch(mbox MailboxID) <-chan struct{}
}
