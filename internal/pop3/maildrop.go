package pop3

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"github.com/latchmail/latch/internal/store"
)

// maildrop is the snapshot of INBOX a session works on.
type maildrop struct {
	mbox        store.MailboxID
	uidValidity uint32
	msgs        []store.Message // message n is msgs[n-1]
	deleted     []bool
	retrieved   []bool
}

func openMaildrop(ctx context.Context, st store.Store, acct store.AccountID) (*maildrop, error) {
	mb, err := st.MailboxByName(ctx, acct, "INBOX")
	if err != nil {
		return nil, fmt.Errorf("pop3: INBOX: %w", err)
	}
	d := &maildrop{mbox: mb.ID, uidValidity: mb.UIDValidity}
	for m, err := range st.List(ctx, mb.ID, 1, ^store.UID(0)) {
		if err != nil {
			return nil, fmt.Errorf("pop3: list INBOX: %w", err)
		}
		d.msgs = append(d.msgs, m)
	}
	d.deleted = make([]bool, len(d.msgs))
	d.retrieved = make([]bool, len(d.msgs))
	return d, nil
}

func (d *maildrop) count() (n int) {
	for _, del := range d.deleted {
		if !del {
			n++
		}
	}
	return n
}

func (d *maildrop) size() (n int64) {
	for i, m := range d.msgs {
		if !d.deleted[i] {
			n += m.LineSize
		}
	}
	return n
}

func (d *maildrop) deletedCount() (n int) {
	return len(d.msgs) - d.count()
}

// uidl is the unique-id of a message (RFC 1939 section 7): stable for the
// life of the message and never reused in the mailbox, because a UID is
// never reused under one UIDVALIDITY.
func (d *maildrop) uidl(i int) string {
	return fmt.Sprintf("%d.%d", d.uidValidity, d.msgs[i].UID)
}

// update applies the session's deletions and marks what was retrieved as
// \Seen, so IMAP clients see it read (RFC 1939 section 6, UPDATE state).
func (d *maildrop) update(ctx context.Context, st store.Store) error {
	var del, seen []store.UID
	for i, m := range d.msgs {
		switch {
		case d.deleted[i]:
			del = append(del, m.UID)
		case d.retrieved[i]:
			seen = append(seen, m.UID)
		}
	}
	if len(seen) > 0 {
		if _, _, err := st.StoreFlags(ctx, d.mbox, seen, store.FlagsAdd, []string{`\Seen`}, 0); err != nil {
			return fmt.Errorf("pop3: mark seen: %w", err)
		}
	}
	if len(del) > 0 {
		if _, err := st.Expunge(ctx, d.mbox, del); err != nil {
			return fmt.Errorf("pop3: expunge: %w", err)
		}
	}
	return nil
}

// transaction runs a command of the TRANSACTION state (RFC 1939 section 5).
func (ss *session) transaction(ctx context.Context, cmd, arg string) bool {
	d := ss.drop
	switch cmd {
	case "STAT":
		ss.reply("+OK %d %d", d.count(), d.size())
	case "NOOP":
		ss.reply("+OK")
	case "RSET":
		clear(d.deleted)
		ss.reply("+OK %d messages", d.count())
	case "LIST", "UIDL":
		if arg == "" {
			ss.reply("+OK")
			for i, m := range d.msgs {
				if d.deleted[i] {
					continue
				}
				if cmd == "LIST" {
					ss.reply("%d %d", i+1, m.LineSize)
				} else {
					ss.reply("%d %s", i+1, d.uidl(i))
				}
			}
			ss.reply(".")
			return true
		}
		i, ok := ss.message(arg)
		if !ok {
			return true
		}
		if cmd == "LIST" {
			ss.reply("+OK %d %d", i+1, d.msgs[i].LineSize)
		} else {
			ss.reply("+OK %d %s", i+1, d.uidl(i))
		}
	case "DELE":
		i, ok := ss.message(arg)
		if !ok {
			return true
		}
		d.deleted[i] = true
		ss.reply("+OK message %d deleted", i+1)
	case "RETR":
		i, ok := ss.message(arg)
		if !ok {
			return true
		}
		return ss.send(ctx, i, -1)
	case "TOP":
		num, lines, _ := strings.Cut(arg, " ")
		n, err := strconv.Atoi(lines)
		if err != nil || n < 0 {
			return ss.bad("-ERR usage: TOP msg lines")
		}
		i, ok := ss.message(num)
		if !ok {
			return true
		}
		return ss.send(ctx, i, n)
	case "STLS", "USER", "PASS", "AUTH", "APOP":
		return ss.bad("-ERR already logged in")
	default:
		return ss.bad("-ERR unknown command")
	}
	return true
}

// message parses a message number and answers -ERR when it is not one of
// the maildrop's undeleted messages.
func (ss *session) message(arg string) (int, bool) {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 || n > len(ss.drop.msgs) {
		ss.bad("-ERR no such message")
		return 0, false
	}
	if ss.drop.deleted[n-1] {
		ss.reply("-ERR message %d is deleted", n)
		return 0, false
	}
	return n - 1, true
}

// send writes message i as a multi-line response: all of it (bodyLines
// < 0, RETR) or its header and the first bodyLines lines of its body
// (TOP). Lines are sent with CRLF whatever the stored message uses, and
// lines starting with "." are byte-stuffed (RFC 1939 section 3).
func (ss *session) send(ctx context.Context, i, bodyLines int) bool {
	m := ss.drop.msgs[i]
	rc, err := ss.srv.Store.Open(ctx, ss.drop.mbox, m.UID)
	if err != nil {
		ss.log.Error("pop3 open message", slog.Any("uid", m.UID), slog.Any("err", err))
		ss.reply("-ERR [SYS/TEMP] cannot read message %d; try again later", i+1)
		return true
	}
	defer rc.Close()
	if bodyLines < 0 {
		ss.reply("+OK %d octets", m.LineSize)
	} else {
		ss.reply("+OK top of message follows")
	}
	if err := writeDotStuffed(ss.w, rc, bodyLines); err != nil {
		// The multi-line answer cannot be ended honestly: drop the line.
		ss.log.Error("pop3 read message", slog.Any("uid", m.UID), slog.Any("err", err))
		return false
	}
	ss.w.WriteString(".\r\n")
	if bodyLines < 0 {
		ss.drop.retrieved[i] = true
	}
	return true
}

// writeDotStuffed copies a message to w as the body of a multi-line
// response: every line ended by CRLF (also a bare LF or a missing final
// newline), a "." doubled at the start of a line. With bodyLines >= 0 it
// stops after the header, the blank line and that many body lines (TOP).
// Lines of any length stream through a fixed buffer.
func writeDotStuffed(w *bufio.Writer, src io.Reader, bodyLines int) error {
	r := bufio.NewReaderSize(src, 32<<10)
	atStart, lineLen := true, 0
	inBody, sent := false, 0
	heldCR := false // a CR at the end of a piece: part of CRLF or data?
	for {
		piece, err := r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull && err != io.EOF {
			return err
		}
		if atStart && len(piece) > 0 {
			if inBody && bodyLines >= 0 && sent >= bodyLines {
				return nil
			}
			if piece[0] == '.' {
				w.WriteByte('.')
			}
		}
		ended := len(piece) > 0 && piece[len(piece)-1] == '\n'
		content := piece
		if ended {
			content = content[:len(content)-1]
		}
		if len(content) > 0 && heldCR {
			w.WriteByte('\r')
		}
		heldCR = false
		if n := len(content); n > 0 && content[n-1] == '\r' {
			content = content[:n-1]
			heldCR = !ended // maybe the CR of a CRLF split across pieces
		}
		w.Write(content)
		lineLen += len(content)
		if ended || (err == io.EOF && (lineLen > 0 || heldCR)) {
			w.WriteString("\r\n")
			if inBody {
				sent++
			} else if lineLen == 0 {
				inBody = true
			}
			atStart, lineLen, heldCR = true, 0, false
		} else if len(piece) > 0 {
			atStart = false
		}
		if err == io.EOF {
			return nil
		}
	}
}
