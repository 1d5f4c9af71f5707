package sqlite

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"os"
	"slices"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// A request that touches messages reads the mailbox row once (uidnext,
// highestmodseq), takes one new MODSEQ for all the messages it changes,
// and writes the row back: every step is a primary-key lookup.

// newMessage is a message ready to be inserted: its blob is on disk.
type newMessage struct {
	blob     int64
	size     int64
	lineSize int64
	flags    flagSet
	date     time.Time
}

func prepare(m store.NewMessage) (flagSet, time.Time, error) {
	fs, err := parseFlags(m.Flags)
	if err != nil {
		return flagSet{}, time.Time{}, err
	}
	date := m.InternalDate
	if date.IsZero() {
		date = time.Now()
	}
	return fs, date, nil
}

// Append adds one message to a mailbox. The body is streamed to its blob
// file; it is never held in memory whole.
func (s *Store) Append(ctx context.Context, mbox store.MailboxID, m store.NewMessage) (store.Message, error) {
	msgs, err := s.add(ctx, []store.MailboxID{mbox}, m)
	if err != nil {
		return store.Message{}, fmt.Errorf("store: append to mailbox %d: %w", mbox, err)
	}
	return msgs[0], nil
}

// Deliver adds the same message to several mailboxes in one transaction,
// sharing one blob file.
func (s *Store) Deliver(ctx context.Context, boxes []store.MailboxID, m store.NewMessage) ([]store.Message, error) {
	if len(boxes) == 0 {
		return nil, nil
	}
	msgs, err := s.add(ctx, boxes, m)
	if err != nil {
		return nil, fmt.Errorf("store: deliver to mailboxes %v: %w", boxes, err)
	}
	return msgs, nil
}

func (s *Store) add(ctx context.Context, boxes []store.MailboxID, m store.NewMessage) ([]store.Message, error) {
	fs, date, err := prepare(m)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	blob, size, lineSize, err := s.writeBlob(m.Body)
	if err != nil {
		return nil, err
	}
	nm := newMessage{blob: blob, size: size, lineSize: lineSize, flags: fs, date: date}
	msgs := make([]store.Message, len(boxes))
	err = s.submit(&writeReq{ctx: ctx, blobDir: s.blobDir(blob), fn: func(x *txn) error {
		if err := x.exec("INSERT INTO blobs(id, refs, size, line_size) VALUES(?, 0, ?, ?)", blob, size, lineSize); err != nil {
			return err
		}
		for i, mbox := range boxes {
			msg, err := x.insertMessages(mbox, []newMessage{nm})
			if err != nil {
				return fmt.Errorf("mailbox %d: %w", mbox, err)
			}
			msgs[i] = msg[0]
		}
		return nil
	}})
	if err != nil {
		// After a failed commit the row may or may not be on disk; Open
		// will tell. Otherwise no row references the file.
		if !errors.As(err, new(*commitError)) {
			s.removeBlob(blob)
		}
		return nil, err
	}
	return msgs, nil
}

// insertMessages adds messages to a mailbox under one new MODSEQ, with
// consecutive new UIDs.
func (x *txn) insertMessages(mbox store.MailboxID, nms []newMessage) ([]store.Message, error) {
	var uidnext, modseq int64
	if err := x.queryRow("SELECT uidnext, highestmodseq FROM mailboxes WHERE id = ?", mbox).Scan(&uidnext, &modseq); err != nil {
		return nil, noRows(err)
	}
	if uidnext+int64(len(nms))-1 > math.MaxUint32 {
		return nil, errors.New("mailbox has used up its UIDs: recreate it (new UIDVALIDITY)")
	}
	modseq++
	msgs := make([]store.Message, len(nms))
	for i, nm := range nms {
		err := x.exec(`INSERT INTO messages(mailbox_id, uid, modseq, sysflags, keywords, internal_date, size, line_size, blob_id)
			VALUES(?,?,?,?,?,?,?,?,?)`, mbox, uidnext, modseq, nm.flags.sys, nm.flags.encodeKeywords(), nm.date.UnixNano(), nm.size, nm.lineSize, nm.blob)
		if err != nil {
			return nil, err
		}
		msgs[i] = store.Message{UID: store.UID(uidnext), ModSeq: uint64(modseq), Flags: nm.flags.list(),
			InternalDate: time.Unix(0, nm.date.UnixNano()).UTC(), Size: nm.size, LineSize: nm.lineSize}
		uidnext++
	}
	if err := x.exec("UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?", uidnext, modseq, mbox); err != nil {
		return nil, err
	}
	x.wakeAfter(mbox)
	return msgs, nil
}

const messageColumns = "uid, modseq, sysflags, keywords, internal_date, size, line_size"

func scanMessage(row interface{ Scan(...any) error }) (store.Message, error) {
	var (
		m        store.Message
		sys      int64
		keywords string
		date     int64
	)
	if err := row.Scan(&m.UID, &m.ModSeq, &sys, &keywords, &date, &m.Size, &m.LineSize); err != nil {
		return store.Message{}, err
	}
	m.Flags = decodeFlags(sys, keywords).list()
	m.InternalDate = time.Unix(0, date).UTC()
	return m, nil
}

// listChunk is how many messages List reads per query. List holds no
// transaction while the caller consumes them, so a slow consumer does not
// pin a read connection or the WAL.
const listChunk = 256

// List yields the messages whose UID lies in [first, last], ascending. Each
// chunk of messages is read in its own snapshot: a change committed while
// the caller iterates may or may not show. It yields store.ErrNotFound for
// an unknown mailbox.
func (s *Store) List(ctx context.Context, mbox store.MailboxID, first, last store.UID) iter.Seq2[store.Message, error] {
	return func(yield func(store.Message, error) bool) {
		fail := func(err error) { yield(store.Message{}, fmt.Errorf("store: list mailbox %d: %w", mbox, err)) }
		var one int
		if err := s.queryRow(ctx, "SELECT 1 FROM mailboxes WHERE id = ?", mbox).Scan(&one); err != nil {
			fail(noRows(err))
			return
		}
		st, err := s.rstmt(ctx, "SELECT "+messageColumns+" FROM messages WHERE mailbox_id = ? AND uid >= ? AND uid <= ? ORDER BY uid LIMIT ?")
		if err != nil {
			fail(err)
			return
		}
		for next := int64(first); next <= int64(last); {
			chunk, err := readMessages(st.QueryContext(ctx, mbox, next, last, listChunk))
			if err != nil {
				fail(err)
				return
			}
			for _, m := range chunk {
				if !yield(m, nil) {
					return
				}
			}
			if len(chunk) < listChunk {
				return
			}
			next = int64(chunk[len(chunk)-1].UID) + 1
		}
	}
}

func readMessages(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
	Close() error
}, err error) ([]store.Message, error) {
	if err != nil {
		return nil, err
	}
	var l []store.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		l = append(l, m)
	}
	return l, errors.Join(rows.Err(), rows.Close())
}

// Open returns the bytes of one message, an *os.File.
func (s *Store) Open(ctx context.Context, mbox store.MailboxID, uid store.UID) (io.ReadSeekCloser, error) {
	var blob int64
	if err := s.queryRow(ctx, "SELECT blob_id FROM messages WHERE mailbox_id = ? AND uid = ?", mbox, uid).Scan(&blob); err != nil {
		return nil, fmt.Errorf("store: open message %d in mailbox %d: %w", uid, mbox, noRows(err))
	}
	f, err := os.Open(s.blobPath(blob))
	if errors.Is(err, os.ErrNotExist) {
		// Expunged and its blob removed between the two steps.
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store: open message %d in mailbox %d: %w", uid, mbox, err)
	}
	return f, nil
}

// sortedUIDs returns the UIDs ascending, without duplicates or zero.
func sortedUIDs(uids []store.UID) []store.UID {
	u := slices.Clone(uids)
	slices.Sort(u)
	u = slices.Compact(u)
	if len(u) > 0 && u[0] == 0 {
		u = u[1:]
	}
	return u
}

// StoreFlags changes the flags of the given messages under one new MODSEQ.
// A message whose flags would not change keeps its MODSEQ and is not in
// changed.
func (s *Store) StoreFlags(ctx context.Context, mbox store.MailboxID, uids []store.UID, op store.FlagOp, flags []string, unchangedSince uint64) (changed []store.Message, failed []store.UID, err error) {
	fs, err := parseFlags(flags)
	if err != nil {
		return nil, nil, fmt.Errorf("store: store flags in mailbox %d: %w", mbox, err)
	}
	if op != store.FlagsReplace && op != store.FlagsAdd && op != store.FlagsRemove {
		return nil, nil, fmt.Errorf("store: store flags in mailbox %d: unknown operation %d", mbox, op)
	}
	uids = sortedUIDs(uids)
	err = s.write(ctx, func(x *txn) error {
		changed, failed = nil, nil
		var modseq int64
		if err := x.queryRow("SELECT highestmodseq FROM mailboxes WHERE id = ?", mbox).Scan(&modseq); err != nil {
			return noRows(err)
		}
		modseq++
		for _, uid := range uids {
			m, old, err := x.message(mbox, uid)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if unchangedSince > 0 && m.ModSeq > unchangedSince {
				failed = append(failed, uid)
				continue
			}
			nw := old.apply(op, fs)
			if nw.equal(old) {
				continue
			}
			err = x.exec("UPDATE messages SET sysflags = ?, keywords = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
				nw.sys, nw.encodeKeywords(), modseq, mbox, uid)
			if err != nil {
				return err
			}
			m.ModSeq, m.Flags = uint64(modseq), nw.list()
			changed = append(changed, m)
		}
		if len(changed) == 0 {
			return nil
		}
		x.wakeAfter(mbox)
		return x.exec("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", modseq, mbox)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: store flags in mailbox %d: %w", mbox, err)
	}
	return changed, failed, nil
}

// message reads one message with its stored flags.
func (x *txn) message(mbox store.MailboxID, uid store.UID) (store.Message, flagSet, error) {
	var (
		m        store.Message
		sys      int64
		keywords string
		date     int64
	)
	err := x.queryRow("SELECT "+messageColumns+" FROM messages WHERE mailbox_id = ? AND uid = ?", mbox, uid).
		Scan(&m.UID, &m.ModSeq, &sys, &keywords, &date, &m.Size, &m.LineSize)
	if err != nil {
		return store.Message{}, flagSet{}, noRows(err)
	}
	fs := decodeFlags(sys, keywords)
	m.Flags, m.InternalDate = fs.list(), time.Unix(0, date).UTC()
	return m, fs, nil
}

// Expunge removes the given messages, whatever their flags, leaving a
// tombstone for each, and returns the UIDs removed, ascending.
func (s *Store) Expunge(ctx context.Context, mbox store.MailboxID, uids []store.UID) ([]store.UID, error) {
	uids = sortedUIDs(uids)
	var removed []store.UID
	err := s.write(ctx, func(x *txn) (err error) {
		removed, err = x.expunge(mbox, uids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: expunge in mailbox %d: %w", mbox, err)
	}
	return removed, nil
}

func (x *txn) expunge(mbox store.MailboxID, uids []store.UID) ([]store.UID, error) {
	var modseq int64
	if err := x.queryRow("SELECT highestmodseq FROM mailboxes WHERE id = ?", mbox).Scan(&modseq); err != nil {
		return nil, noRows(err)
	}
	modseq++
	var removed []store.UID
	for _, uid := range uids {
		res, err := x.execResult("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", mbox, uid)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 0 {
			continue
		}
		if err := x.exec("INSERT INTO tombstones(mailbox_id, uid, modseq) VALUES(?,?,?)", mbox, uid, modseq); err != nil {
			return nil, err
		}
		removed = append(removed, uid)
	}
	if len(removed) == 0 {
		return nil, nil
	}
	x.wakeAfter(mbox)
	return removed, x.exec("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", modseq, mbox)
}

// Copy copies messages, sharing their blobs, and keeps their flags and
// internal dates. UIDs that do not exist are skipped.
func (s *Store) Copy(ctx context.Context, src store.MailboxID, uids []store.UID, dst store.MailboxID) (from, to []store.UID, err error) {
	from, to, err = s.copy(ctx, src, uids, dst, false)
	if err != nil {
		return nil, nil, fmt.Errorf("store: copy from mailbox %d to %d: %w", src, dst, err)
	}
	return from, to, nil
}

// Move is Copy and Expunge in one transaction.
func (s *Store) Move(ctx context.Context, src store.MailboxID, uids []store.UID, dst store.MailboxID) (from, to []store.UID, err error) {
	from, to, err = s.copy(ctx, src, uids, dst, true)
	if err != nil {
		return nil, nil, fmt.Errorf("store: move from mailbox %d to %d: %w", src, dst, err)
	}
	return from, to, nil
}

func (s *Store) copy(ctx context.Context, src store.MailboxID, uids []store.UID, dst store.MailboxID, move bool) (from, to []store.UID, err error) {
	uids = sortedUIDs(uids)
	err = s.write(ctx, func(x *txn) error {
		from, to = nil, nil
		var one int
		if err := x.queryRow("SELECT 1 FROM mailboxes WHERE id = ?", src).Scan(&one); err != nil {
			return fmt.Errorf("source: %w", noRows(err))
		}
		var nms []newMessage
		for _, uid := range uids {
			var sys, date, size, lineSize, blob int64
			var keywords string
			err := x.queryRow("SELECT sysflags, keywords, internal_date, size, line_size, blob_id FROM messages WHERE mailbox_id = ? AND uid = ?", src, uid).
				Scan(&sys, &keywords, &date, &size, &lineSize, &blob)
			if err != nil {
				if err = noRows(err); errors.Is(err, store.ErrNotFound) {
					continue
				}
				return err
			}
			nms = append(nms, newMessage{blob: blob, size: size, lineSize: lineSize, flags: decodeFlags(sys, keywords), date: time.Unix(0, date)})
			from = append(from, uid)
		}
		if len(nms) == 0 {
			var one int
			if err := x.queryRow("SELECT 1 FROM mailboxes WHERE id = ?", dst).Scan(&one); err != nil {
				return fmt.Errorf("destination: %w", noRows(err))
			}
			return nil
		}
		msgs, err := x.insertMessages(dst, nms)
		if err != nil {
			return fmt.Errorf("destination: %w", err)
		}
		for _, m := range msgs {
			to = append(to, m.UID)
		}
		if move {
			_, err := x.expunge(src, from)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return from, to, nil
}

// Changes returns, in one snapshot, the messages whose MODSEQ is above
// since (ascending by UID) and the UIDs expunged above it (ascending).
func (s *Store) Changes(ctx context.Context, mbox store.MailboxID, since uint64) (changed []store.Message, vanished []store.UID, err error) {
	if since > math.MaxInt64 {
		since = math.MaxInt64
	}
	err = s.readTx(ctx, func(r *readTx) error {
		var one int
		if err := r.queryRow("SELECT 1 FROM mailboxes WHERE id = ?", mbox).Scan(&one); err != nil {
			return noRows(err)
		}
		changed, err = readMessages(r.query("SELECT "+messageColumns+" FROM messages WHERE mailbox_id = ? AND modseq > ?", mbox, int64(since)))
		if err != nil {
			return err
		}
		slices.SortFunc(changed, func(a, b store.Message) int { return cmp.Compare(a.UID, b.UID) })
		rows, err := r.query("SELECT uid FROM tombstones WHERE mailbox_id = ? AND modseq > ? ORDER BY uid", mbox, int64(since))
		if err != nil {
			return err
		}
		for rows.Next() {
			var uid store.UID
			if err := rows.Scan(&uid); err != nil {
				rows.Close()
				return err
			}
			vanished = append(vanished, uid)
		}
		return errors.Join(rows.Err(), rows.Close())
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: changes in mailbox %d since %d: %w", mbox, since, err)
	}
	return changed, vanished, nil
}
