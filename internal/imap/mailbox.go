package imap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"github.com/latchmail/latch/internal/store"
)

// storeFailed answers a command the store could not carry out, with the
// response code of RFC 5530 that fits.
func (ss *session) storeFailed(tag, what string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		ss.tagged(tag, "NO [NONEXISTENT] %s: no such mailbox", what)
	case errors.Is(err, store.ErrExists):
		ss.tagged(tag, "NO [ALREADYEXISTS] %s: the mailbox already exists", what)
	case errors.Is(err, context.Canceled):
		return err
	default:
		ss.log.Error("imap store", slog.String("op", what), slog.Any("err", err))
		ss.tagged(tag, "NO [SERVERBUG] %s failed; try again later", what)
	}
	return nil
}

func (ss *session) lookup(ctx context.Context, name string) (*store.Mailbox, error) {
	mb, err := ss.srv.Store.MailboxByName(ctx, ss.account.ID, name)
	if err != nil {
		return nil, fmt.Errorf("imap: mailbox %q: %w", name, err)
	}
	return mb, nil
}

// validName rejects names the hierarchy cannot hold.
func validName(name string) bool {
	return name != "" && !strings.HasPrefix(name, "/") && !strings.Contains(name, "//") &&
		!strings.ContainsAny(name, "*%\r\n\x00") && len(name) <= 1000
}

// parseCreate reads CREATE with the RFC 6154 USE option.
func parseCreate(ss *session, p *parser) (action, error) {
	if err := p.sp(); err != nil {
		return nil, err
	}
	name, err := ss.mailboxName(p)
	if err != nil {
		return nil, err
	}
	var uses []string
	if !p.atEnd() {
		if err := p.sp(); err != nil {
			return nil, err
		}
		err := p.list(false, func() error {
			opt, err := p.atom()
			if err != nil {
				return err
			}
			if !strings.EqualFold(opt, "USE") {
				return badf("unknown CREATE option %s", sanitize(opt))
			}
			if err := p.sp(); err != nil {
				return err
			}
			return p.list(true, func() error {
				u, err := p.token("\\")
				uses = append(uses, u)
				return err
			})
		})
		if err != nil {
			return nil, err
		}
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error { return ss.create(ctx, tag, name, uses) }, nil
}

var specialUses = []string{store.SpecialAll, store.SpecialArchive, store.SpecialDrafts,
	store.SpecialFlagged, store.SpecialJunk, store.SpecialSent, store.SpecialTrash}

// create makes a mailbox and any missing parent (RFC 9051 6.3.4).
func (ss *session) create(ctx context.Context, tag, name string, uses []string) error {
	name = strings.TrimSuffix(name, "/")
	if name == "INBOX" || !validName(name) {
		ss.tagged(tag, "NO [CANNOT] cannot create a mailbox of that name")
		return nil
	}
	special := ""
	if len(uses) > 1 {
		ss.tagged(tag, "NO [USEATTR] a mailbox takes one special-use attribute here")
		return nil
	}
	if len(uses) == 1 {
		i := slices.IndexFunc(specialUses, func(s string) bool { return strings.EqualFold(s, uses[0]) })
		if i < 0 {
			ss.tagged(tag, "NO [USEATTR] unknown special-use attribute")
			return nil
		}
		special = specialUses[i]
	}
	for i := range len(name) {
		if name[i] == '/' {
			if _, err := ss.srv.Store.CreateMailbox(ctx, ss.account.ID, name[:i], ""); err != nil && !errors.Is(err, store.ErrExists) {
				return ss.storeFailed(tag, "CREATE", err)
			}
		}
	}
	if _, err := ss.srv.Store.CreateMailbox(ctx, ss.account.ID, name, special); err != nil {
		return ss.storeFailed(tag, "CREATE", err)
	}
	return ss.ok(ctx, tag, "CREATE completed")
}

// deleteMailbox removes a mailbox (RFC 9051 6.3.5); its children stay.
func (ss *session) deleteMailbox(ctx context.Context, tag, name string) error {
	if name == "INBOX" {
		ss.tagged(tag, "NO [CANNOT] INBOX cannot be deleted")
		return nil
	}
	mb, err := ss.lookup(ctx, name)
	if err != nil {
		return ss.storeFailed(tag, "DELETE", err)
	}
	if ss.sel != nil && ss.sel.mb.ID == mb.ID {
		ss.tagged(tag, "NO [INUSE] the mailbox is selected here; UNSELECT it first")
		return nil
	}
	if err := ss.srv.Store.DeleteMailbox(ctx, mb.ID); err != nil {
		return ss.storeFailed(tag, "DELETE", err)
	}
	return ss.ok(ctx, tag, "DELETE completed")
}

func parseRename(ss *session, p *parser) (action, error) {
	if err := p.sp(); err != nil {
		return nil, err
	}
	from, err := ss.mailboxName(p)
	if err != nil {
		return nil, err
	}
	if err := p.sp(); err != nil {
		return nil, err
	}
	to, err := ss.mailboxName(p)
	if err != nil {
		return nil, err
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error { return ss.rename(ctx, tag, from, to) }, nil
}

// rename renames a mailbox with its children (RFC 9051 6.3.6). Renaming
// INBOX moves its messages to a new mailbox and leaves INBOX empty.
func (ss *session) rename(ctx context.Context, tag, from, to string) error {
	to = strings.TrimSuffix(to, "/")
	if to == "INBOX" || !validName(to) {
		ss.tagged(tag, "NO [CANNOT] cannot rename to that name")
		return nil
	}
	src, err := ss.lookup(ctx, from)
	if err != nil {
		return ss.storeFailed(tag, "RENAME", err)
	}
	if from != "INBOX" {
		if err := ss.srv.Store.RenameMailbox(ctx, src.ID, to); err != nil {
			return ss.storeFailed(tag, "RENAME", err)
		}
		return ss.ok(ctx, tag, "RENAME completed")
	}
	dst, err := ss.srv.Store.CreateMailbox(ctx, ss.account.ID, to, "")
	if err != nil {
		return ss.storeFailed(tag, "RENAME", err)
	}
	var uids []store.UID
	for m, err := range ss.srv.Store.List(ctx, src.ID, 1, store.UID(1<<32-1)) {
		if err != nil {
			return ss.storeFailed(tag, "RENAME", err)
		}
		uids = append(uids, m.UID)
	}
	if len(uids) > 0 {
		if _, _, err := ss.srv.Store.Move(ctx, src.ID, uids, dst.ID); err != nil {
			return ss.storeFailed(tag, "RENAME", err)
		}
	}
	return ss.ok(ctx, tag, "RENAME completed")
}

func subscribe(on bool) func(ss *session, ctx context.Context, tag, name string) error {
	return func(ss *session, ctx context.Context, tag, name string) error {
		what := "SUBSCRIBE"
		if !on {
			what = "UNSUBSCRIBE"
		}
		mb, err := ss.lookup(ctx, name)
		if err != nil {
			return ss.storeFailed(tag, what, err)
		}
		if err := ss.srv.Store.SetSubscribed(ctx, mb.ID, on); err != nil {
			return ss.storeFailed(tag, what, err)
		}
		return ss.ok(ctx, tag, "%s completed", what)
	}
}

// listCmd is a LIST command (RFC 9051 6.3.9, RFC 5258 LIST-EXTENDED,
// RFC 5819 LIST-STATUS, RFC 6154 SPECIAL-USE).
type listCmd struct {
	ref        string
	patterns   []string
	subscribed bool // select subscribed mailboxes
	specialUse bool // select special-use mailboxes
	retSubs    bool
	status     []string
	lsub       bool
}

func parseList(ss *session, p *parser) (action, error) {
	var l listCmd
	if err := p.sp(); err != nil {
		return nil, err
	}
	if c, _ := p.peek(); c == '(' {
		err := p.list(true, func() error {
			o, err := p.atom()
			switch strings.ToUpper(o) {
			case "SUBSCRIBED":
				l.subscribed = true
			case "SPECIAL-USE":
				l.specialUse = true
			case "REMOTE", "RECURSIVEMATCH":
			default:
				return badf("unknown LIST selection option %s", sanitize(o))
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
	}
	ref, err := p.astring()
	if err != nil {
		return nil, err
	}
	if l.ref, err = ss.listName(ref); err != nil {
		return nil, err
	}
	if err := p.sp(); err != nil {
		return nil, err
	}
	pattern := func() error {
		pat, err := p.listMailbox()
		if err != nil {
			return err
		}
		if pat, err = ss.listName(pat); err != nil {
			return err
		}
		l.patterns = append(l.patterns, pat)
		return nil
	}
	if c, _ := p.peek(); c == '(' {
		err = p.list(false, pattern)
	} else {
		err = pattern()
	}
	if err != nil {
		return nil, err
	}
	if !p.atEnd() {
		if err := p.sp(); err != nil {
			return nil, err
		}
		if kw, err := p.atom(); err != nil || !strings.EqualFold(kw, "RETURN") {
			return nil, badf("expected RETURN")
		}
		if err := p.sp(); err != nil {
			return nil, err
		}
		err := p.list(true, func() error {
			o, err := p.atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(o) {
			case "SUBSCRIBED":
				l.retSubs = true
			case "CHILDREN", "SPECIAL-USE":
				// Always returned.
			case "STATUS":
				if err := p.sp(); err != nil {
					return err
				}
				l.status, err = parseStatusItems(p)
				return err
			default:
				return badf("unknown LIST return option %s", sanitize(o))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error { return ss.list(ctx, tag, &l) }, nil
}

func parseLsub(ss *session, p *parser) (action, error) {
	l := listCmd{lsub: true, subscribed: true}
	if err := p.sp(); err != nil {
		return nil, err
	}
	ref, err := p.astring()
	if err != nil {
		return nil, err
	}
	if l.ref, err = ss.listName(ref); err != nil {
		return nil, err
	}
	if err := p.sp(); err != nil {
		return nil, err
	}
	pat, err := p.listMailbox()
	if err != nil {
		return nil, err
	}
	if pat, err = ss.listName(pat); err != nil {
		return nil, err
	}
	l.patterns = []string{pat}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error { return ss.list(ctx, tag, &l) }, nil
}

// listName decodes a reference or pattern without INBOX folding.
func (ss *session) listName(s string) (string, error) {
	if ss.rev2 {
		return s, nil
	}
	n, ok := decodeMUTF7(s)
	if !ok {
		return "", badf("name is not modified UTF-7")
	}
	return n, nil
}

// patternRE turns a LIST pattern into a regular expression: "*" matches
// anything, "%" anything but the separator (RFC 9051 6.3.9). INBOX is
// matched case-insensitively.
func patternRE(pat string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	if len(pat) >= 5 && strings.EqualFold(pat[:5], "INBOX") {
		pat = "INBOX" + pat[5:]
	}
	for _, r := range pat {
		switch r {
		case '*':
			b.WriteString(".*")
		case '%':
			b.WriteString("[^/]*")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func (ss *session) list(ctx context.Context, tag string, l *listCmd) error {
	cmd := "LIST"
	if l.lsub {
		cmd = "LSUB"
	}
	if len(l.patterns) == 1 && l.patterns[0] == "" && !l.lsub {
		// RFC 9051 6.3.9: the hierarchy delimiter.
		ss.untagged(`LIST (\Noselect) "/" ""`)
		return ss.ok(ctx, tag, "LIST completed")
	}
	boxes, err := ss.srv.Store.ListMailboxes(ctx, ss.account.ID)
	if err != nil {
		return ss.storeFailed(tag, cmd, err)
	}
	byName := map[string]*store.Mailbox{}
	var names []string
	for _, mb := range boxes {
		byName[mb.Name] = mb
		names = append(names, mb.Name)
		for i := range len(mb.Name) {
			if mb.Name[i] == '/' {
				names = append(names, mb.Name[:i])
			}
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	var res []*regexp.Regexp
	for _, pat := range l.patterns {
		res = append(res, patternRE(l.ref+pat))
	}
	for i, name := range names {
		if !slices.ContainsFunc(res, func(re *regexp.Regexp) bool { return re.MatchString(name) }) {
			continue
		}
		mb := byName[name]
		var attrs []string
		switch {
		case mb == nil && (l.subscribed || l.specialUse):
			continue
		case mb == nil && ss.rev2:
			attrs = append(attrs, `\NonExistent`)
		case mb == nil:
			attrs = append(attrs, `\Noselect`)
		case l.subscribed && !mb.Subscribed, l.specialUse && mb.SpecialUse == "":
			continue
		}
		if l.lsub {
			ss.untagged("LSUB () \"/\" %s", ss.mbox(name))
			continue
		}
		if mb != nil && mb.Subscribed && (l.subscribed || l.retSubs) {
			attrs = append(attrs, `\Subscribed`)
		}
		// names is sorted, so any child directly follows.
		if i+1 < len(names) && strings.HasPrefix(names[i+1], name+"/") {
			attrs = append(attrs, `\HasChildren`)
		} else {
			attrs = append(attrs, `\HasNoChildren`)
		}
		if mb != nil && mb.SpecialUse != "" {
			attrs = append(attrs, mb.SpecialUse)
		}
		ss.untagged("LIST (%s) \"/\" %s", strings.Join(attrs, " "), ss.mbox(name))
		if mb != nil && l.status != nil {
			if err := ss.statusLine(ctx, mb, l.status); err != nil {
				return ss.storeFailed(tag, cmd, err)
			}
		}
	}
	return ss.ok(ctx, tag, "%s completed", cmd)
}

func parseStatusItems(p *parser) ([]string, error) {
	var items []string
	err := p.list(false, func() error {
		it, err := p.atom()
		it = strings.ToUpper(it)
		switch it {
		case "MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "DELETED", "SIZE", "RECENT", "HIGHESTMODSEQ", "APPENDLIMIT":
		default:
			if err == nil {
				err = badf("unknown STATUS item %s", sanitize(it))
			}
		}
		items = append(items, it)
		return err
	})
	return items, err
}

func parseStatus(ss *session, p *parser) (action, error) {
	if err := p.sp(); err != nil {
		return nil, err
	}
	name, err := ss.mailboxName(p)
	if err != nil {
		return nil, err
	}
	if err := p.sp(); err != nil {
		return nil, err
	}
	items, err := parseStatusItems(p)
	if err != nil {
		return nil, err
	}
	if err := p.crlf(); err != nil {
		return nil, err
	}
	return func(ctx context.Context, tag string) error {
		mb, err := ss.lookup(ctx, name)
		if err != nil {
			return ss.storeFailed(tag, "STATUS", err)
		}
		if err := ss.statusLine(ctx, mb, items); err != nil {
			return ss.storeFailed(tag, "STATUS", err)
		}
		return ss.ok(ctx, tag, "STATUS completed")
	}, nil
}

// statusLine writes "* STATUS" for a mailbox (RFC 9051 7.3.2).
func (ss *session) statusLine(ctx context.Context, mb *store.Mailbox, items []string) error {
	st, err := ss.srv.Store.MailboxStatus(ctx, mb.ID)
	if err != nil {
		return err
	}
	var out []string
	for _, it := range items {
		var v any
		switch it {
		case "MESSAGES":
			v = st.Messages
		case "UIDNEXT":
			v = st.UIDNext
		case "UIDVALIDITY":
			v = st.UIDValidity
		case "UNSEEN":
			v = st.Unseen
		case "DELETED":
			v = st.Deleted
		case "SIZE":
			v = st.Size
		case "RECENT":
			v = 0
		case "HIGHESTMODSEQ":
			v = st.HighestModSeq
		case "APPENDLIMIT":
			v = ss.srv.appendLimit()
		}
		out = append(out, fmt.Sprintf("%s %v", it, v))
	}
	ss.untagged("STATUS %s (%s)", ss.mbox(mb.Name), strings.Join(out, " "))
	return nil
}

// mailboxAttrs returns the LIST attributes of one existing mailbox.
func (ss *session) mailboxAttrs(ctx context.Context, mb *store.Mailbox) (string, error) {
	boxes, err := ss.srv.Store.ListMailboxes(ctx, ss.account.ID)
	if err != nil {
		return "", err
	}
	attrs := `\HasNoChildren`
	if slices.ContainsFunc(boxes, func(b *store.Mailbox) bool { return strings.HasPrefix(b.Name, mb.Name+"/") }) {
		attrs = `\HasChildren`
	}
	if mb.SpecialUse != "" {
		attrs += " " + mb.SpecialUse
	}
	return attrs, nil
}
