package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// flag reads one flag: a system flag (\Seen ...) or a keyword.
func (p *parser) flag() (string, error) {
	f, err := p.token("\\")
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(f, `\`) {
		for _, s := range strings.Fields(systemFlags) {
			if strings.EqualFold(f, s) {
				return s, nil
			}
		}
		return "", badf("unknown system flag %s", sanitize(f))
	}
	if strings.Contains(f, `\`) {
		return "", badf("bad keyword %s", sanitize(f))
	}
	return f, nil
}

func (p *parser) flagList() ([]string, error) {
	var flags []string
	err := p.list(true, func() error {
		f, err := p.flag()
		flags = append(flags, f)
		return err
	})
	return flags, err
}

func parseStore(uid bool) func(*session, *parser) (action, error) {
	return func(ss *session, p *parser) (action, error) {
		if err := p.sp(); err != nil {
			return nil, err
		}
		set, err := p.seqSet()
		if err != nil {
			return nil, err
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
		var unchangedSince uint64
		conditional := false
		if c, _ := p.peek(); c == '(' {
			conditional = true
			// RFC 7162 3.1.3: STORE modifier (UNCHANGEDSINCE modseq).
			if unchangedSince, err = p.modseqModifier("STORE", "UNCHANGEDSINCE"); err != nil {
				return nil, err
			}
			if err := p.sp(); err != nil {
				return nil, err
			}
		}
		item, err := p.atom()
		if err != nil {
			return nil, err
		}
		item = strings.ToUpper(item)
		op := store.FlagsReplace
		switch {
		case strings.HasPrefix(item, "+"):
			op = store.FlagsAdd
		case strings.HasPrefix(item, "-"):
			op = store.FlagsRemove
		}
		base, silent := strings.CutSuffix(strings.TrimLeft(item, "+-"), ".SILENT")
		if base != "FLAGS" {
			return nil, badf("expected FLAGS, +FLAGS or -FLAGS")
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
		var flags []string
		if c, _ := p.peek(); c == '(' {
			flags, err = p.flagList()
		} else {
			for err == nil {
				var f string
				if f, err = p.flag(); err == nil {
					flags = append(flags, f)
				}
				if p.atEnd() {
					break
				}
				if err == nil {
					err = p.sp()
				}
			}
		}
		if err != nil {
			return nil, err
		}
		if err := p.crlf(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tag string) error {
			if conditional {
				ss.enableCondstore()
			}
			return ss.store(ctx, tag, set, uid, op, flags, silent, conditional, unchangedSince)
		}, nil
	}
}

// store runs STORE and UID STORE (RFC 9051 6.4.6).
// With conditional, messages changed after unchangedSince are left alone
// and reported with MODIFIED (RFC 7162 3.1.3).
func (ss *session) store(ctx context.Context, tag string, set seqSet, uid bool, op store.FlagOp, flags []string, silent, conditional bool, unchangedSince uint64) error {
	sel := ss.sel
	if sel.readOnly {
		ss.tagged(tag, "NO [READ-ONLY] the mailbox was opened with EXAMINE")
		return nil
	}
	pos, err := sel.resolve(set, uid)
	if err != nil {
		return err
	}
	var modified []store.UID // sequence numbers or UIDs that failed the condition
	if len(pos) > 0 {
		uids := make([]store.UID, len(pos))
		for i, p := range pos {
			uids[i] = sel.uids[p]
		}
		var changed []store.Message
		var failed []store.UID
		if conditional && unchangedSince == 0 {
			failed = uids // no message has MODSEQ 0: the store reads 0 as "no condition"
		} else if changed, failed, err = ss.srv.Store.StoreFlags(ctx, sel.mb.ID, uids, op, flags, unchangedSince); err != nil {
			return ss.storeFailed(tag, "STORE", err)
		}
		if len(failed) > 0 {
			modified = make([]store.UID, 0, len(failed))
			for _, u := range failed {
				if uid {
					modified = append(modified, u)
				} else if i := sel.index(u); i >= 0 {
					modified = append(modified, store.UID(i+1))
				}
			}
			slices.Sort(modified)
		}
		for _, m := range changed {
			if i := sel.index(m.UID); i >= 0 {
				sel.modseqs[i] = m.ModSeq
			}
		}
		if !silent {
			// RFC 9051 6.4.6: the new flags of every message in the set,
			// changed or not, "as if a FETCH of those flags was done".
			if err := ss.echoFlags(ctx, pos, uid); err != nil {
				return ss.storeFailed(tag, "STORE", err)
			}
		}
	}
	if err := ss.sync(ctx, uid); err != nil {
		return err
	}
	if len(modified) > 0 {
		ss.tagged(tag, "OK [MODIFIED %s] conditional STORE failed for some messages", uidSet(modified))
		return nil
	}
	ss.tagged(tag, "OK STORE completed")
	return nil
}

// echoFlags sends the current flags of the messages at the given view
// positions; they count as reported, whoever changed them.
func (ss *session) echoFlags(ctx context.Context, pos []int, uid bool) error {
	for msgs, err := range ss.messages(ctx, pos) {
		if err != nil {
			return err
		}
		for _, m := range msgs {
			ss.sel.modseqs[m.pos] = max(ss.sel.modseqs[m.pos], m.ModSeq)
			ss.fetchFlags(m.pos, m.Message, uid)
		}
	}
	return nil
}

// expunge runs EXPUNGE (RFC 9051 6.4.3).
func (ss *session) expunge(ctx context.Context, tag string) error {
	if ss.sel.readOnly {
		ss.tagged(tag, "NO [READ-ONLY] the mailbox was opened with EXAMINE")
		return nil
	}
	if _, err := ss.expungeDeleted(ctx, nil, true); err != nil {
		return ss.storeFailed(tag, "EXPUNGE", err)
	}
	return ss.ok(ctx, tag, "EXPUNGE completed")
}

// parseUIDExpunge reads UID EXPUNGE (RFC 4315 2.1).
func parseUIDExpunge(ss *session, p *parser) (action, error) {
	if err := p.sp(); err != nil {
		return nil, err
	}
	set, err := p.seqSet()
	if err != nil {
		return nil, err
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error {
		if ss.sel.readOnly {
			ss.tagged(tag, "NO [READ-ONLY] the mailbox was opened with EXAMINE")
			return nil
		}
		pos, err := ss.sel.resolve(set, true)
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			if _, err := ss.expungeDeleted(ctx, pos, true); err != nil {
				return ss.storeFailed(tag, "UID EXPUNGE", err)
			}
		}
		return ss.ok(ctx, tag, "UID EXPUNGE completed")
	}, nil
}

// expungeDeleted removes the messages flagged \Deleted, among those at
// the given view positions (all when nil), and with report sends an
// EXPUNGE for each (CLOSE does not, RFC 9051 6.4.1).
func (ss *session) expungeDeleted(ctx context.Context, pos []int, report bool) ([]store.UID, error) {
	sel := ss.sel
	if pos == nil {
		pos = make([]int, len(sel.uids))
		for i := range pos {
			pos[i] = i
		}
	}
	var del []store.UID
	for msgs, err := range ss.messages(ctx, pos) {
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if slices.Contains(m.Flags, `\Deleted`) {
				del = append(del, m.UID)
			}
		}
	}
	if len(del) == 0 {
		return nil, nil
	}
	gone, err := ss.srv.Store.Expunge(ctx, sel.mb.ID, del)
	if err != nil {
		return nil, err
	}
	if report {
		ss.reportExpunged(gone)
	}
	return gone, nil
}

// reportExpunged removes UIDs from the view with an EXPUNGE each, in
// ascending order as in RFC 9051's example (6.4.3).
func (ss *session) reportExpunged(uids []store.UID) {
	sel := ss.sel
	slices.Sort(uids)
	for _, u := range uids {
		if i := sel.index(u); i >= 0 {
			ss.untagged("%d EXPUNGE", i+1)
			sel.remove(i)
			delete(sel.gone, u)
		}
	}
}

func parseCopy(uid, move bool) func(*session, *parser) (action, error) {
	return func(ss *session, p *parser) (action, error) {
		if err := p.sp(); err != nil {
			return nil, err
		}
		set, err := p.seqSet()
		if err != nil {
			return nil, err
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
		dst, err := ss.mailboxName(p)
		if err != nil {
			return nil, err
		}
		if err := p.crlf(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tag string) error { return ss.copy(ctx, tag, set, uid, move, dst) }, nil
	}
}

// copy runs COPY and MOVE (RFC 9051 6.4.7, 6.4.8; RFC 4315 COPYUID).
func (ss *session) copy(ctx context.Context, tag string, set seqSet, uid, move bool, dstName string) error {
	cmd := "COPY"
	if move {
		cmd = "MOVE"
	}
	sel := ss.sel
	if move && sel.readOnly {
		ss.tagged(tag, "NO [READ-ONLY] the mailbox was opened with EXAMINE")
		return nil
	}
	pos, err := sel.resolve(set, uid)
	if err != nil {
		return err
	}
	dst, err := ss.lookup(ctx, dstName)
	if errors.Is(err, store.ErrNotFound) {
		ss.tagged(tag, "NO [TRYCREATE] %s: no such mailbox", cmd)
		return nil
	}
	if err != nil {
		return ss.storeFailed(tag, cmd, err)
	}
	uids := make([]store.UID, len(pos))
	for i, p := range pos {
		uids[i] = sel.uids[p]
	}
	var from, to []store.UID
	if len(uids) > 0 {
		op := ss.srv.Store.Copy
		if move {
			op = ss.srv.Store.Move
		}
		if from, to, err = op(ctx, sel.mb.ID, uids, dst.ID); err != nil {
			return ss.storeFailed(tag, cmd, err)
		}
	}
	if len(from) == 0 {
		return ss.ok(ctx, tag, "%s completed: nothing to copy", cmd)
	}
	code := fmt.Sprintf("[COPYUID %d %s %s]", dst.UIDValidity, uidSet(from), uidSet(to))
	if !move {
		return ss.ok(ctx, tag, "%s %s completed", code, cmd)
	}
	// RFC 6851 4.3: COPYUID in an untagged OK before the EXPUNGEs.
	ss.untagged("OK %s moved", code)
	ss.reportExpunged(slices.Clone(from))
	return ss.ok(ctx, tag, "MOVE completed")
}

// uidSet renders UIDs, in the given order, as a sequence set with runs
// compressed (RFC 4315 uid-set).
func uidSet(uids []store.UID) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d:%d", uids[i], uids[j])
		} else {
			fmt.Fprintf(&b, "%d", uids[i])
		}
		i = j + 1
	}
	return b.String()
}

// appendCmd is an APPEND whose message is still to be read.
type appendCmd struct {
	mailbox string
	flags   []string
	date    time.Time
	size    int64
}

// parseAppend reads APPEND up to its literal's size (RFC 9051 6.3.12);
// the message itself is streamed to the store when the command runs.
func parseAppend(ss *session, p *parser) (action, error) {
	var a appendCmd
	if err := p.sp(); err != nil {
		return nil, err
	}
	name, err := ss.mailboxName(p)
	if err != nil {
		return nil, err
	}
	a.mailbox = name
	if err := p.sp(); err != nil {
		return nil, err
	}
	if c, _ := p.peek(); c == '(' {
		if a.flags, err = p.flagList(); err != nil {
			return nil, err
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
	if c, _ := p.peek(); c == '"' {
		s, err := p.quoted()
		if err != nil {
			return nil, err
		}
		if a.date, err = time.Parse(dateTimeLayout, dayPadded(s)); err != nil {
			return nil, badf("bad date-time %q", sanitize(s))
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
	if a.size, err = p.literalHeader(ss.srv.appendLimit()); err != nil {
		return nil, err
	}
	p.pending = a.size
	return func(ctx context.Context, tag string) error { return ss.appendMessage(ctx, tag, &a) }, nil
}

// appendMessage streams the literal to the store and answers with
// APPENDUID once the store returned, that is once the message is durable.
func (ss *session) appendMessage(ctx context.Context, tag string, a *appendCmd) error {
	body := &io.LimitedReader{R: ss.br, N: a.size}
	// finish consumes what the store did not read and the line's end.
	finish := func() error {
		if _, err := io.Copy(io.Discard, body); err != nil {
			return err
		}
		if err := ss.p.crlf(); err != nil {
			var be *badError
			if errors.As(err, &be) {
				return ss.p.skipLine()
			}
			return err
		}
		return nil
	}
	refuse := func(format string, args ...any) error {
		if err := finish(); err != nil {
			return err
		}
		ss.tagged(tag, format, args...)
		return nil
	}
	mb, err := ss.lookup(ctx, a.mailbox)
	if errors.Is(err, store.ErrNotFound) {
		return refuse("NO [TRYCREATE] APPEND: no such mailbox")
	}
	if err != nil {
		if err := finish(); err != nil {
			return err
		}
		return ss.storeFailed(tag, "APPEND", err)
	}
	if q := ss.account.QuotaBytes; q > 0 {
		used, err := ss.srv.Store.Usage(ctx, ss.account.ID)
		if err != nil {
			if err := finish(); err != nil {
				return err
			}
			return ss.storeFailed(tag, "APPEND", err)
		}
		if used+a.size > q {
			return refuse("NO [OVERQUOTA] the mailbox store is full; delete some messages")
		}
	}
	m, err := ss.srv.Store.Append(ctx, mb.ID, store.NewMessage{Flags: a.flags, InternalDate: a.date, Body: body})
	if ferr := finish(); ferr != nil {
		return ferr
	}
	if err != nil {
		return ss.storeFailed(tag, "APPEND", err)
	}
	return ss.ok(ctx, tag, "[APPENDUID %d %d] APPEND completed", mb.UIDValidity, m.UID)
}

// dayPadded turns date-time's space-padded day (RFC 9051 9) into two digits.
func dayPadded(s string) string {
	if strings.HasPrefix(s, " ") {
		return "0" + s[1:]
	}
	return s
}
