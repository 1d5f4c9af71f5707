package imap

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// selection is the session's view of its selected mailbox: the UIDs the
// client knows, in sequence-number order, and the MODSEQ of each as last
// reported, so that the session's own flag changes are not reported back
// to it a second time.
type selection struct {
	mb       *store.Mailbox
	readOnly bool
	uids     []store.UID
	modseqs  []uint64
	since    uint64             // every change up to this MODSEQ is in the view
	gone     map[store.UID]bool // expunged elsewhere, EXPUNGE not sent yet
	saved    []store.UID        // "$": the last SEARCH RETURN (SAVE) result, ascending (RFC 5182)
}

// index returns the position of uid in the view, or -1.
func (sel *selection) index(uid store.UID) int {
	i, ok := slices.BinarySearch(sel.uids, uid)
	if !ok {
		return -1
	}
	return i
}

func (sel *selection) remove(i int) {
	sel.uids = slices.Delete(sel.uids, i, i+1)
	sel.modseqs = slices.Delete(sel.modseqs, i, i+1)
}

const systemFlags = `\Answered \Flagged \Deleted \Seen \Draft`

func parseSelect(readOnly bool) func(*session, *parser) (action, error) {
	return func(ss *session, p *parser) (action, error) {
		if err := p.sp(); err != nil {
			return nil, err
		}
		name, err := ss.mailboxName(p)
		if err != nil {
			return nil, err
		}
		condstore := false
		if !p.atEnd() {
			// RFC 7162 3.1.8: SELECT (CONDSTORE).
			if err := p.sp(); err != nil {
				return nil, err
			}
			err := p.list(false, func() error {
				o, err := p.atom()
				if err == nil && !strings.EqualFold(o, "CONDSTORE") {
					err = badf("unknown SELECT parameter %s", sanitize(o))
				}
				condstore = true
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		if err := p.crlf(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tag string) error {
			ss.condstore = ss.condstore || condstore
			return ss.selectMailbox(ctx, tag, name, readOnly)
		}, nil
	}
}

// enableCondstore turns on CONDSTORE for the rest of the session (RFC 7162
// 3.1): MODSEQ in every FETCH response, HIGHESTMODSEQ at selection.
func (ss *session) enableCondstore() {
	if !ss.condstore && ss.sel != nil {
		ss.untagged("OK [HIGHESTMODSEQ %d] CONDSTORE enabled", ss.sel.since)
	}
	ss.condstore = true
}

// fetchFlags writes an untagged FETCH of a message's flags.
func (ss *session) fetchFlags(pos int, m store.Message, withUID bool) {
	var b strings.Builder
	if withUID {
		fmt.Fprintf(&b, "UID %d ", m.UID)
	}
	b.WriteString("FLAGS (" + strings.Join(m.Flags, " ") + ")")
	if ss.condstore {
		fmt.Fprintf(&b, " MODSEQ (%d)", m.ModSeq)
	}
	ss.untagged("%d FETCH (%s)", pos+1, b.String())
}

// selectMailbox runs SELECT or EXAMINE (RFC 9051 6.3.2, 6.3.3).
func (ss *session) selectMailbox(ctx context.Context, tag, name string, readOnly bool) error {
	cmd := "SELECT"
	if readOnly {
		cmd = "EXAMINE"
	}
	if ss.sel != nil {
		// RFC 9051 7.1: the previous mailbox is closed, silently.
		ss.sel, ss.state = nil, authenticated
		ss.untagged("OK [CLOSED] previous mailbox closed")
	}
	mb, err := ss.lookup(ctx, name)
	if err != nil {
		return ss.storeFailed(tag, cmd, err)
	}
	st, err := ss.srv.Store.MailboxStatus(ctx, mb.ID)
	if err != nil {
		return ss.storeFailed(tag, cmd, err)
	}
	sel := &selection{mb: mb, readOnly: readOnly, since: st.HighestModSeq, gone: map[store.UID]bool{}}
	firstUnseen := 0
	for m, err := range ss.srv.Store.List(ctx, mb.ID, 1, store.UID(1<<32-1)) {
		if err != nil {
			return ss.storeFailed(tag, cmd, err)
		}
		sel.uids = append(sel.uids, m.UID)
		sel.modseqs = append(sel.modseqs, m.ModSeq)
		if firstUnseen == 0 && !slices.Contains(m.Flags, `\Seen`) {
			firstUnseen = len(sel.uids)
		}
	}
	// Changes committed during the List are reported at the next sync.
	uidNext := st.UIDNext
	if n := len(sel.uids); n > 0 && sel.uids[n-1] >= uidNext {
		uidNext = sel.uids[n-1] + 1
	}
	ss.untagged("%d EXISTS", len(sel.uids))
	if !ss.rev2 {
		ss.untagged("0 RECENT") // RFC 3501 6.3.1; Latch keeps no \Recent
		if firstUnseen > 0 {
			ss.untagged("OK [UNSEEN %d] first unseen message", firstUnseen)
		}
	}
	ss.untagged("OK [UIDVALIDITY %d] UIDs valid", mb.UIDValidity)
	ss.untagged("OK [UIDNEXT %d] predicted next UID", uidNext)
	if ss.condstore {
		ss.untagged("OK [HIGHESTMODSEQ %d] highest mod-sequence", sel.since)
	}
	ss.untagged("FLAGS (%s)", systemFlags)
	if readOnly {
		ss.untagged("OK [PERMANENTFLAGS ()] read-only mailbox")
	} else {
		ss.untagged(`OK [PERMANENTFLAGS (%s \*)] flags permitted`, systemFlags)
	}
	if ss.rev2 {
		// RFC 9051 6.3.2: the name as the server spells it, with its
		// attributes.
		attrs, err := ss.mailboxAttrs(ctx, mb)
		if err != nil {
			return ss.storeFailed(tag, cmd, err)
		}
		ss.untagged("LIST (%s) \"/\" %s", attrs, ss.mbox(mb.Name))
	}
	ss.sel, ss.state = sel, selected
	mode := "READ-WRITE"
	if readOnly {
		mode = "READ-ONLY"
	}
	return ss.ok(ctx, tag, "[%s] %s completed", mode, cmd)
}

// closeMailbox runs CLOSE: expunge silently, then deselect (RFC 9051 6.4.1).
func (ss *session) closeMailbox(ctx context.Context, tag string) error {
	if !ss.sel.readOnly {
		if _, err := ss.expungeDeleted(ctx, nil, false); err != nil {
			return ss.storeFailed(tag, "CLOSE", err)
		}
	}
	ss.sel, ss.state = nil, authenticated
	ss.tagged(tag, "OK CLOSE completed")
	return nil
}

// unselect deselects without expunging (RFC 3691, RFC 9051 6.4.2).
func (ss *session) unselect(ctx context.Context, tag string) error {
	ss.sel, ss.state = nil, authenticated
	ss.tagged(tag, "OK UNSELECT completed")
	return nil
}

// sync reports the changes other sessions (or deliveries) made to the
// selected mailbox since the last report (RFC 9051 7.5.1). Without
// expunge, EXPUNGE responses wait for a later command.
func (ss *session) sync(ctx context.Context, expunge bool) error {
	sel := ss.sel
	if sel == nil {
		return nil
	}
	st, err := ss.srv.Store.MailboxStatus(ctx, sel.mb.ID)
	if errors.Is(err, store.ErrNotFound) {
		ss.untagged("BYE the selected mailbox was deleted")
		return errLogout
	}
	if err != nil {
		return fmt.Errorf("imap: sync %s: %w", sel.mb.Name, err)
	}
	if st.HighestModSeq > sel.since {
		changed, vanished, err := ss.srv.Store.Changes(ctx, sel.mb.ID, sel.since)
		if err != nil {
			return fmt.Errorf("imap: sync %s: %w", sel.mb.Name, err)
		}
		for _, uid := range vanished {
			if sel.index(uid) >= 0 {
				sel.gone[uid] = true
			}
		}
		n := len(sel.uids)
		for _, m := range changed {
			if sel.gone[m.UID] {
				continue
			}
			if len(sel.uids) == 0 || m.UID > sel.uids[len(sel.uids)-1] {
				sel.uids = append(sel.uids, m.UID)
				sel.modseqs = append(sel.modseqs, m.ModSeq)
				continue
			}
			if i := sel.index(m.UID); i >= 0 && m.ModSeq > sel.modseqs[i] {
				sel.modseqs[i] = m.ModSeq
				ss.fetchFlags(i, m, true)
			}
		}
		if len(sel.uids) != n {
			ss.untagged("%d EXISTS", len(sel.uids))
		}
		sel.since = st.HighestModSeq
	}
	if expunge && len(sel.gone) > 0 {
		for i := len(sel.uids) - 1; i >= 0; i-- {
			if sel.gone[sel.uids[i]] {
				ss.untagged("%d EXPUNGE", i+1)
				sel.remove(i)
			}
		}
		clear(sel.gone)
	}
	return nil
}

// idle runs IDLE (RFC 2177, RFC 9051 6.3.13): changes to the selected
// mailbox are reported as they happen until the client sends DONE.
func (ss *session) idle(ctx context.Context, tag string) error {
	ss.bw.WriteString("+ idling\r\n")
	if err := ss.bw.Flush(); err != nil {
		return err
	}
	done := make(chan idleResult, 1)
	_ = ss.conn.SetReadDeadline(time.Now().Add(idleTimeout))
	// The reader belongs to this goroutine until it sends on done.
	go func() {
		line, err := ss.p.rawLine(64)
		done <- idleResult{line, err}
	}()
	for {
		var wake <-chan struct{}
		if ss.sel != nil {
			wake = ss.srv.Store.Watch(ss.sel.mb.ID)
			if err := ss.sync(ctx, true); err != nil {
				ss.wakeReader(done)
				return err
			}
			if err := ss.bw.Flush(); err != nil {
				ss.wakeReader(done)
				return err
			}
		}
		select {
		case <-wake:
		case r := <-done:
			if r.err != nil {
				return r.err
			}
			if !strings.EqualFold(r.line, "DONE") {
				ss.tagged(tag, "BAD expected DONE")
				return nil
			}
			return ss.ok(ctx, tag, "IDLE terminated")
		case <-ctx.Done():
			ss.wakeReader(done)
			return ctx.Err()
		}
	}
}

// idleResult is what IDLE's reader goroutine read.
type idleResult struct {
	line string
	err  error
}

// wakeReader stops IDLE's reader goroutine and waits for it, so that the
// reader is the session goroutine's again.
func (ss *session) wakeReader(done <-chan idleResult) {
	_ = ss.conn.SetReadDeadline(time.Now())
	<-done
}

// resolve turns a sequence set into positions in the view, ascending and
// without duplicates. For sequence numbers, one beyond the view is an
// error (RFC 9051 9, seq-number); for UIDs, "*" is the highest UID and
// UIDs not in the view are ignored.
func (sel *selection) resolve(set seqSet, uid bool) ([]int, error) {
	n := len(sel.uids)
	var out []int
	if set.saved() {
		// "$" names messages, whichever the command's numbering; those
		// expunged since are no longer in it (RFC 5182 2.1).
		for _, u := range sel.saved {
			if i := sel.index(u); i >= 0 {
				out = append(out, i)
			}
		}
		return out, nil
	}
	for _, r := range set {
		if uid {
			var max store.UID
			if n > 0 {
				max = sel.uids[n-1]
			}
			lo, hi := store.UID(r.lo), store.UID(r.hi)
			if lo == 0 {
				lo = max
			}
			if hi == 0 {
				hi = max
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			i, _ := slices.BinarySearch(sel.uids, lo)
			for ; i < n && sel.uids[i] <= hi; i++ {
				out = append(out, i)
			}
			continue
		}
		lo, hi := int(r.lo), int(r.hi)
		if lo == 0 {
			lo = n
		}
		if hi == 0 {
			hi = n
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if lo < 1 || hi > n {
			return nil, badf("message sequence number out of range (the mailbox has %d messages)", n)
		}
		for i := lo - 1; i < hi; i++ {
			out = append(out, i)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
