package imap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// searchKey is one search criterion (RFC 9051 6.4.4); and/or/not hold
// their operands in sub.
type searchKey struct {
	op    string
	flag  string
	set   seqSet
	n     int64
	date  time.Time
	field string
	value string
	sub   []searchKey
}

// flagKeys maps flag criteria to the flag and whether it must be present.
var flagKeys = map[string]struct {
	flag string
	on   bool
}{
	"ANSWERED": {`\Answered`, true}, "DELETED": {`\Deleted`, true}, "DRAFT": {`\Draft`, true},
	"FLAGGED": {`\Flagged`, true}, "SEEN": {`\Seen`, true},
	"UNANSWERED": {`\Answered`, false}, "UNDELETED": {`\Deleted`, false}, "UNDRAFT": {`\Draft`, false},
	"UNFLAGGED": {`\Flagged`, false}, "UNSEEN": {`\Seen`, false},
}

func (p *parser) searchDate() (time.Time, error) {
	s, err := p.astring()
	if err != nil {
		return time.Time{}, err
	}
	t, err := time.Parse("2-Jan-2006", s)
	if err != nil {
		return time.Time{}, badf("bad date %q: use d-Mon-yyyy", sanitize(s))
	}
	return t, nil
}

func (p *parser) searchKey() (searchKey, error) {
	c, err := p.peek()
	if err != nil {
		return searchKey{}, err
	}
	if c == '(' {
		k := searchKey{op: "AND"}
		err := p.list(false, func() error {
			sub, err := p.searchKey()
			k.sub = append(k.sub, sub)
			return err
		})
		return k, err
	}
	if c == '*' || c == '$' || c >= '0' && c <= '9' {
		set, err := p.seqSet()
		return searchKey{op: "SET", set: set}, err
	}
	name, err := p.atom()
	if err != nil {
		return searchKey{}, err
	}
	k := searchKey{op: strings.ToUpper(name)}
	arg := func() error { return p.sp() }
	switch k.op {
	case "ALL", "NEW", "OLD", "RECENT", "UNRECENT":
	case "KEYWORD", "UNKEYWORD":
		if err := arg(); err != nil {
			return k, err
		}
		k.flag, err = p.flag()
	case "UID":
		if err := arg(); err != nil {
			return k, err
		}
		k.set, err = p.seqSet()
	case "LARGER", "SMALLER":
		if err := arg(); err != nil {
			return k, err
		}
		var n uint64
		n, err = p.number64()
		k.n = int64(min(n, 1<<62))
	case "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE":
		if err := arg(); err != nil {
			return k, err
		}
		k.date, err = p.searchDate()
	case "FROM", "TO", "CC", "BCC", "SUBJECT":
		if err := arg(); err != nil {
			return k, err
		}
		k.field = k.op
		k.op = "HEADER"
		k.value, err = p.astring()
	case "HEADER":
		if err := arg(); err != nil {
			return k, err
		}
		if k.field, err = p.astring(); err != nil {
			return k, err
		}
		if err := arg(); err != nil {
			return k, err
		}
		k.value, err = p.astring()
	case "BODY", "TEXT":
		if err := arg(); err != nil {
			return k, err
		}
		k.value, err = p.astring()
	case "NOT":
		if err := arg(); err != nil {
			return k, err
		}
		if p.depth++; p.depth > maxDepth {
			return k, badf("search keys nested deeper than %d", maxDepth)
		}
		sub, err := p.searchKey()
		p.depth--
		k.sub = []searchKey{sub}
		return k, err
	case "OR":
		if p.depth++; p.depth > maxDepth {
			return k, badf("search keys nested deeper than %d", maxDepth)
		}
		defer func() { p.depth-- }()
		for range 2 {
			if err := arg(); err != nil {
				return k, err
			}
			sub, err := p.searchKey()
			k.sub = append(k.sub, sub)
			if err != nil {
				return k, err
			}
		}
	case "MODSEQ":
		// RFC 7162 3.1.5; the metadata item, if given, is not told apart.
		if err := arg(); err != nil {
			return k, err
		}
		if c, _ := p.peek(); c == '"' {
			if _, err := p.quoted(); err != nil {
				return k, err
			}
			if err := arg(); err != nil {
				return k, err
			}
			if _, err := p.atom(); err != nil {
				return k, err
			}
			if err := arg(); err != nil {
				return k, err
			}
		}
		var n uint64
		n, err = p.number64()
		k.n = int64(min(n, 1<<62))
	case "RETURN", "CHARSET":
		// Not criteria: parseSearch takes them in first place only.
	default:
		f, ok := flagKeys[k.op]
		if !ok {
			return k, badf("unknown search key %s", sanitize(name))
		}
		k.flag = f.flag
	}
	return k, err
}

// usesModSeq reports whether a MODSEQ criterion appears in k.
func (k *searchKey) usesModSeq() bool {
	return k.op == "MODSEQ" || slices.ContainsFunc(k.sub, func(s searchKey) bool { return s.usesModSeq() })
}

// searchCmd is a parsed SEARCH.
type searchCmd struct {
	key     searchKey // an AND of the criteria
	esearch bool      // RETURN was given (RFC 4731)
	ret     []string
}

func parseSearch(uid bool) func(*session, *parser) (action, error) {
	return func(ss *session, p *parser) (action, error) {
		var s searchCmd
		s.key.op = "AND"
		if err := p.sp(); err != nil {
			return nil, err
		}
		first := true
		for first || !p.atEnd() {
			if !first {
				if err := p.sp(); err != nil {
					return nil, err
				}
			}
			k, err := p.searchKey()
			if err != nil {
				return nil, err
			}
			switch {
			case first && k.op == "RETURN" && !s.esearch:
				// RFC 4731 3: RETURN (MIN MAX COUNT ALL); RFC 5182: SAVE.
				s.esearch = true
				if err := p.sp(); err != nil {
					return nil, err
				}
				err := p.list(true, func() error {
					o, err := p.atom()
					o = strings.ToUpper(o)
					if err == nil && !slices.Contains([]string{"MIN", "MAX", "COUNT", "ALL", "SAVE"}, o) {
						err = badf("unknown RETURN option %s", sanitize(o))
					}
					s.ret = append(s.ret, o)
					return err
				})
				if err != nil {
					return nil, err
				}
				if err := p.sp(); err != nil {
					return nil, err
				}
				continue
			case first && k.op == "CHARSET":
				if err := p.sp(); err != nil {
					return nil, err
				}
				cs, err := p.astring()
				if err != nil {
					return nil, err
				}
				if !strings.EqualFold(cs, "UTF-8") && !strings.EqualFold(cs, "US-ASCII") {
					return func(ctx context.Context, tag string) error {
						ss.tagged(tag, "NO [BADCHARSET (UTF-8)] only UTF-8 is supported")
						return nil
					}, p.skipLine()
				}
				first = false
				continue
			}
			if k.op == "RETURN" || k.op == "CHARSET" {
				return nil, badf("%s must come first", k.op)
			}
			first = false
			s.key.sub = append(s.key.sub, k)
		}
		if err := p.crlf(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tag string) error { return ss.search(ctx, tag, uid, &s) }, nil
	}
}

// search runs SEARCH and UID SEARCH, answering with ESEARCH for
// IMAP4rev2 clients and when RETURN was given (RFC 9051 7.3.4).
func (ss *session) search(ctx context.Context, tag string, uid bool, s *searchCmd) error {
	sel := ss.sel
	all := make([]int, len(sel.uids))
	for i := range all {
		all[i] = i
	}
	modseq := s.key.usesModSeq()
	if modseq {
		ss.enableCondstore() // RFC 7162 3.1
	}
	save := slices.Contains(s.ret, "SAVE")
	var hits []uint32
	var found []store.UID // the UIDs of hits, for SAVE
	var highest uint64    // of the messages found, for MODSEQ searches
	var maxUID store.UID
	if len(sel.uids) > 0 {
		maxUID = sel.uids[len(sel.uids)-1]
	}
	for msgs, err := range ss.messages(ctx, all) {
		if err != nil {
			if save {
				sel.saved = nil // RFC 5182 2.1: a failed SAVE leaves $ empty
			}
			return ss.storeFailed(tag, "SEARCH", err)
		}
		for _, m := range msgs {
			mc := &matchCtx{ss: ss, ctx: ctx, m: m, n: len(sel.uids), maxUID: maxUID}
			ok, err := mc.match(&s.key)
			if err != nil {
				return ss.storeFailed(tag, "SEARCH", err)
			}
			if ok {
				highest = max(highest, m.ModSeq)
				found = append(found, m.UID)
				if uid {
					hits = append(hits, uint32(m.UID))
				} else {
					hits = append(hits, uint32(m.pos+1))
				}
			}
		}
	}
	if save {
		sel.saved = savedResult(found, s.ret)
	}
	if !s.esearch && !ss.rev2 {
		var b strings.Builder
		b.WriteString("SEARCH")
		for _, h := range hits {
			b.WriteString(" " + strconv.FormatUint(uint64(h), 10))
		}
		if modseq && len(hits) > 0 {
			fmt.Fprintf(&b, " (MODSEQ %d)", highest)
		}
		ss.untagged("%s", b.String())
	} else {
		ret := slices.DeleteFunc(slices.Clone(s.ret), func(r string) bool { return r == "SAVE" })
		if len(ret) == 0 && len(s.ret) == 0 {
			ret = []string{"ALL"}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "ESEARCH (TAG %s)", quote(tag, false))
		if uid {
			b.WriteString(" UID")
		}
		for _, r := range ret {
			switch {
			case r == "COUNT":
				fmt.Fprintf(&b, " COUNT %d", len(hits))
			case len(hits) == 0:
			case r == "MIN":
				fmt.Fprintf(&b, " MIN %d", hits[0])
			case r == "MAX":
				fmt.Fprintf(&b, " MAX %d", hits[len(hits)-1])
			case r == "ALL":
				u := make([]store.UID, len(hits))
				for i, h := range hits {
					u[i] = store.UID(h)
				}
				b.WriteString(" ALL " + uidSet(u))
			}
		}
		if modseq && len(hits) > 0 {
			fmt.Fprintf(&b, " MODSEQ %d", highest)
		}
		// RFC 5182 2.4: with SAVE alone there is no ESEARCH response.
		if len(ret) > 0 {
			ss.untagged("%s", b.String())
		}
	}
	if err := ss.sync(ctx, uid); err != nil {
		return err
	}
	ss.tagged(tag, "OK SEARCH completed")
	return nil
}

// matchCtx evaluates criteria against one message, reading its bytes only
// if a criterion needs them.
type matchCtx struct {
	ss     *session
	ctx    context.Context
	m      viewMsg
	n      int
	maxUID store.UID
	data   []byte
	root   *part
	loaded bool
}

func (mc *matchCtx) load() error {
	if mc.loaded {
		return nil
	}
	mc.loaded = true
	rc, err := mc.ss.srv.Store.Open(mc.ctx, mc.ss.sel.mb.ID, mc.m.UID)
	if errors.Is(err, store.ErrNotFound) {
		mc.data = nil
	} else if err != nil {
		return err
	} else {
		mc.data, err = io.ReadAll(io.LimitReader(rc, mc.m.Size+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("imap: search read %d: %w", mc.m.UID, err)
		}
	}
	mc.root = parsePart(mc.data, 0, len(mc.data), "text/plain", 0)
	return nil
}

func inSet(set seqSet, n, max uint32) bool {
	for _, r := range set {
		lo, hi := r.lo, r.hi
		if lo == 0 {
			lo = max
		}
		if hi == 0 {
			hi = max
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

func sameOrAfter(t, day time.Time) bool {
	y, m, d := t.Date()
	return !time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Before(day)
}

func sameDay(t, day time.Time) bool {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Equal(day)
}

var wordDecoder = mime.WordDecoder{}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func (mc *matchCtx) match(k *searchKey) (bool, error) {
	m := mc.m
	switch k.op {
	case "AND":
		for i := range k.sub {
			if ok, err := mc.match(&k.sub[i]); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	case "OR":
		for i := range k.sub {
			if ok, err := mc.match(&k.sub[i]); ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	case "NOT":
		ok, err := mc.match(&k.sub[0])
		return !ok, err
	case "ALL", "OLD":
		return true, nil
	case "NEW", "RECENT":
		return false, nil // Latch keeps no \Recent
	case "UNRECENT":
		return true, nil
	case "KEYWORD":
		return slices.Contains(m.Flags, k.flag), nil
	case "UNKEYWORD":
		return !slices.Contains(m.Flags, k.flag), nil
	case "SET", "UID":
		if k.set.saved() {
			_, ok := slices.BinarySearch(mc.ss.sel.saved, m.UID)
			return ok, nil
		}
		if k.op == "SET" {
			return inSet(k.set, uint32(m.pos+1), uint32(mc.n)), nil
		}
		return inSet(k.set, uint32(m.UID), uint32(mc.maxUID)), nil
	case "MODSEQ":
		return m.ModSeq >= uint64(k.n), nil
	case "LARGER":
		return m.Size > k.n, nil
	case "SMALLER":
		return m.Size < k.n, nil
	case "BEFORE":
		return !sameOrAfter(m.InternalDate, k.date), nil
	case "ON":
		return sameDay(m.InternalDate, k.date), nil
	case "SINCE":
		return sameOrAfter(m.InternalDate, k.date), nil
	}
	if err := mc.load(); err != nil {
		return false, err
	}
	h := &mc.root.header
	switch k.op {
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		t, err := mail.ParseDate(h.Get("Date"))
		if err != nil {
			return false, nil
		}
		switch k.op {
		case "SENTBEFORE":
			return !sameOrAfter(t, k.date), nil
		case "SENTON":
			return sameDay(t, k.date), nil
		}
		return sameOrAfter(t, k.date), nil
	case "HEADER":
		for _, v := range h.Values(k.field) {
			if dec, err := wordDecoder.DecodeHeader(v); err == nil {
				v = dec
			}
			if containsFold(v, k.value) {
				return true, nil
			}
		}
		return false, nil
	case "BODY":
		return bytes.Contains(bytes.ToLower(mc.data[mc.root.bodyStart:]), []byte(strings.ToLower(k.value))), nil
	case "TEXT":
		return bytes.Contains(bytes.ToLower(mc.data), []byte(strings.ToLower(k.value))), nil
	}
	f := flagKeys[k.op]
	return slices.Contains(m.Flags, f.flag) == f.on, nil
}

// savedResult is what SEARCH RETURN (SAVE ...) keeps as "$" (RFC 5182
// 2.4): every match, unless MIN and/or MAX come without ALL or COUNT, when
// only those are kept. found is ascending.
func savedResult(found []store.UID, ret []string) []store.UID {
	hasRet := func(r string) bool { return slices.Contains(ret, r) }
	if len(found) == 0 || hasRet("ALL") || hasRet("COUNT") || !(hasRet("MIN") || hasRet("MAX")) {
		return found
	}
	var out []store.UID
	if hasRet("MIN") {
		out = append(out, found[0])
	}
	if hasRet("MAX") && (len(out) == 0 || out[0] != found[len(found)-1]) {
		out = append(out, found[len(found)-1])
	}
	return out
}
