package imap

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"slices"
	"strconv"
	"strings"

	"github.com/latchmail/latch/internal/store"
)

// fetchAtt is one requested FETCH data item (RFC 9051 6.4.5).
type fetchAtt struct {
	name    string // FLAGS, UID, ..., BODY[] for any section, BINARY[], BINARY.SIZE[]
	peek    bool
	parts   []int
	text    string   // HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME or ""
	fields  []string // for HEADER.FIELDS(.NOT)
	partial bool
	offset  uint32
	count   uint32
}

// needsBody reports whether the item needs the message's bytes.
func (a *fetchAtt) needsBody() bool {
	switch a.name {
	case "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "MODSEQ":
		return false
	}
	return true
}

// setsSeen reports whether fetching the item sets \Seen (RFC 9051 6.4.5).
func (a *fetchAtt) setsSeen() bool {
	switch a.name {
	case "BODY[]", "BINARY[]":
		return !a.peek
	case "RFC822", "RFC822.TEXT":
		return true
	}
	return false
}

// fetchName reads a FETCH item name: letters, digits, dots.
func (p *parser) fetchName() (string, error) {
	var b strings.Builder
	for {
		c, err := p.peek()
		if err != nil {
			return "", err
		}
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			break
		}
		p.next()
		b.WriteByte(c)
	}
	if b.Len() == 0 {
		return "", badf("expected a FETCH item")
	}
	return strings.ToUpper(b.String()), p.count()
}

func parseFetchAtt(p *parser) (fetchAtt, error) {
	name, err := p.fetchName()
	if err != nil {
		return fetchAtt{}, err
	}
	a := fetchAtt{name: name}
	switch name {
	case "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT",
		"ALL", "FAST", "FULL", "MODSEQ":
		return a, nil
	case "BODY":
		if c, _ := p.peek(); c != '[' {
			return a, nil
		}
	case "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE":
	default:
		return a, badf("unknown FETCH item %s", sanitize(name))
	}
	a.peek = strings.HasSuffix(name, ".PEEK")
	binary := strings.HasPrefix(name, "BINARY")
	switch {
	case name == "BINARY.SIZE":
		a.name = "BINARY.SIZE[]"
	case binary:
		a.name = "BINARY[]"
	default:
		a.name = "BODY[]"
	}
	if err := p.expect('[', "["); err != nil {
		return a, err
	}
	for {
		c, err := p.peek()
		if err != nil {
			return a, err
		}
		if c < '0' || c > '9' {
			break
		}
		n, err := p.nzNumber()
		if err != nil {
			return a, err
		}
		a.parts = append(a.parts, int(n))
		if c, _ := p.peek(); c != '.' {
			break
		}
		p.next()
	}
	if c, _ := p.peek(); c != ']' {
		if binary {
			return a, badf("BINARY takes part numbers only")
		}
		if a.text, err = p.fetchName(); err != nil {
			return a, err
		}
		switch a.text {
		case "HEADER", "TEXT":
		case "MIME":
			if len(a.parts) == 0 {
				return a, badf("MIME needs a part number")
			}
		case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
			if err := p.sp(); err != nil {
				return a, err
			}
			err := p.list(false, func() error {
				f, err := p.astring()
				a.fields = append(a.fields, f)
				return err
			})
			if err != nil {
				return a, err
			}
		default:
			return a, badf("unknown section %s", sanitize(a.text))
		}
	}
	if err := p.expect(']', "]"); err != nil {
		return a, err
	}
	if c, _ := p.peek(); c == '<' && a.name != "BINARY.SIZE[]" {
		p.next()
		if a.offset, err = p.number(); err != nil {
			return a, err
		}
		if err := p.expect('.', "."); err != nil {
			return a, err
		}
		if a.count, err = p.nzNumber(); err != nil {
			return a, err
		}
		if err := p.expect('>', ">"); err != nil {
			return a, err
		}
		a.partial = true
	}
	return a, nil
}

// macros are the FETCH shorthands (RFC 9051 6.4.5).
var macros = map[string][]fetchAtt{
	"ALL":  {{name: "FLAGS"}, {name: "INTERNALDATE"}, {name: "RFC822.SIZE"}, {name: "ENVELOPE"}},
	"FAST": {{name: "FLAGS"}, {name: "INTERNALDATE"}, {name: "RFC822.SIZE"}},
	"FULL": {{name: "FLAGS"}, {name: "INTERNALDATE"}, {name: "RFC822.SIZE"}, {name: "ENVELOPE"}, {name: "BODY"}},
}

func parseFetch(uid bool) func(*session, *parser) (action, error) {
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
		var atts []fetchAtt
		add := func() error {
			a, err := parseFetchAtt(p)
			atts = append(atts, a)
			return err
		}
		if c, _ := p.peek(); c == '(' {
			err = p.list(false, add)
			for _, a := range atts {
				if macros[a.name] != nil {
					err = badf("%s is not allowed in a list", a.name)
				}
			}
		} else if err = add(); err == nil && macros[atts[0].name] != nil {
			atts = slices.Clone(macros[atts[0].name])
		}
		if err != nil {
			return nil, err
		}
		var changedSince uint64
		if !p.atEnd() {
			// RFC 7162 3.1.4: FETCH modifier (CHANGEDSINCE modseq).
			if err := p.sp(); err != nil {
				return nil, err
			}
			if changedSince, err = p.modseqModifier("FETCH", "CHANGEDSINCE"); err != nil {
				return nil, err
			}
			if !slices.ContainsFunc(atts, func(a fetchAtt) bool { return a.name == "MODSEQ" }) {
				atts = append(atts, fetchAtt{name: "MODSEQ"})
			}
		}
		if err := p.crlf(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tag string) error {
			if slices.ContainsFunc(atts, func(a fetchAtt) bool { return a.name == "MODSEQ" }) {
				ss.enableCondstore() // RFC 7162 3.1
			}
			return ss.fetch(ctx, tag, set, uid, atts, changedSince)
		}, nil
	}
}

// fetch runs FETCH and UID FETCH.
func (ss *session) fetch(ctx context.Context, tag string, set seqSet, uid bool, atts []fetchAtt, changedSince uint64) error {
	sel := ss.sel
	pos, err := sel.resolve(set, uid)
	if err != nil {
		return err
	}
	if uid && !slices.ContainsFunc(atts, func(a fetchAtt) bool { return a.name == "UID" }) {
		// RFC 9051 6.4.9: UID FETCH always returns the UID.
		atts = append([]fetchAtt{{name: "UID"}}, atts...)
	}
	body := slices.ContainsFunc(atts, func(a fetchAtt) bool { return a.needsBody() })
	seen := !sel.readOnly && slices.ContainsFunc(atts, func(a fetchAtt) bool { return a.setsSeen() })
	found := 0
	for msgs, err := range ss.messages(ctx, pos) {
		if err != nil {
			return ss.storeFailed(tag, "FETCH", err)
		}
		found += len(msgs)
		for _, m := range msgs {
			if m.ModSeq <= changedSince {
				continue
			}
			if err := ss.fetchOne(ctx, m, atts, body, seen); err != nil {
				var fe *fetchError
				if errors.As(err, &fe) {
					ss.tagged(tag, "NO %s", fe.msg)
					return nil
				}
				return ss.storeFailed(tag, "FETCH", err)
			}
		}
	}
	if err := ss.sync(ctx, uid); err != nil {
		return err
	}
	if found < len(pos) && !uid {
		// RFC 9051 7.1: the client learns of the expunge at its next
		// command that allows EXPUNGE responses.
		ss.tagged(tag, "NO [EXPUNGEISSUED] some of the requested messages no longer exist")
		return nil
	}
	ss.tagged(tag, "OK FETCH completed")
	return nil
}

// fetchError is a FETCH that cannot be answered for this message.
type fetchError struct{ msg string }

func (e *fetchError) Error() string { return e.msg }

// viewMsg is a message of the view with what the store knows of it.
type viewMsg struct {
	pos int // in the view
	store.Message
}

// messages yields the stored state of the messages at the given view
// positions, in chunks, skipping those already expunged.
func (ss *session) messages(ctx context.Context, pos []int) func(yield func([]viewMsg, error) bool) {
	return func(yield func([]viewMsg, error) bool) {
		sel := ss.sel
		const chunk = 256
		for len(pos) > 0 {
			n := min(chunk, len(pos))
			part := pos[:n]
			pos = pos[n:]
			first, last := sel.uids[part[0]], sel.uids[part[n-1]]
			want := map[store.UID]int{}
			for _, i := range part {
				want[sel.uids[i]] = i
			}
			var out []viewMsg
			for m, err := range ss.srv.Store.List(ctx, sel.mb.ID, first, last) {
				if err != nil {
					yield(nil, err)
					return
				}
				if i, ok := want[m.UID]; ok {
					out = append(out, viewMsg{i, m})
				}
			}
			if !yield(out, nil) {
				return
			}
		}
	}
}

// fetchOne writes one FETCH response.
func (ss *session) fetchOne(ctx context.Context, m viewMsg, atts []fetchAtt, needBody, setSeen bool) error {
	sel := ss.sel
	var data []byte
	var root *part
	if needBody {
		rc, err := ss.srv.Store.Open(ctx, sel.mb.ID, m.UID)
		if errors.Is(err, store.ErrNotFound) {
			return nil // expunged meanwhile; reported later
		}
		if err != nil {
			return err
		}
		data, err = io.ReadAll(io.LimitReader(rc, m.Size+1))
		rc.Close()
		if err != nil {
			return fmt.Errorf("imap: read message %d: %w", m.UID, err)
		}
		root = parsePart(data, 0, len(data), "text/plain; charset=us-ascii", 0)
	}
	flagsChanged := false
	if setSeen && !slices.Contains(m.Flags, `\Seen`) {
		changed, _, err := ss.srv.Store.StoreFlags(ctx, sel.mb.ID, []store.UID{m.UID}, store.FlagsAdd, []string{`\Seen`}, 0)
		if err != nil {
			return err
		}
		for _, c := range changed {
			m.Message = c
			sel.modseqs[m.pos] = c.ModSeq
			flagsChanged = true
		}
	}
	var items []string
	for _, a := range atts {
		it, err := fetchItem(&a, m, data, root)
		if err != nil {
			return err
		}
		items = append(items, it)
	}
	if flagsChanged && !slices.ContainsFunc(atts, func(a fetchAtt) bool { return a.name == "FLAGS" }) {
		items = append(items, "FLAGS ("+strings.Join(m.Flags, " ")+")")
	}
	if flagsChanged && ss.condstore && !slices.ContainsFunc(atts, func(a fetchAtt) bool { return a.name == "MODSEQ" }) {
		items = append(items, fmt.Sprintf("MODSEQ (%d)", m.ModSeq))
	}
	ss.untagged("%d FETCH (%s)", m.pos+1, strings.Join(items, " "))
	return ss.flushIfLarge()
}

// flushIfLarge keeps the writer from buffering a large FETCH answer.
func (ss *session) flushIfLarge() error {
	if ss.bw.Buffered() > 64<<10 {
		return ss.bw.Flush()
	}
	return nil
}

const dateTimeLayout = "02-Jan-2006 15:04:05 -0700"

func fetchItem(a *fetchAtt, m viewMsg, data []byte, root *part) (string, error) {
	switch a.name {
	case "FLAGS":
		return "FLAGS (" + strings.Join(m.Flags, " ") + ")", nil
	case "UID":
		return fmt.Sprintf("UID %d", m.UID), nil
	case "INTERNALDATE":
		return `INTERNALDATE "` + m.InternalDate.Format(dateTimeLayout) + `"`, nil
	case "RFC822.SIZE":
		return fmt.Sprintf("RFC822.SIZE %d", m.Size), nil
	case "MODSEQ":
		return fmt.Sprintf("MODSEQ (%d)", m.ModSeq), nil
	case "ENVELOPE":
		return "ENVELOPE " + envelope(&root.header), nil
	case "BODYSTRUCTURE":
		return "BODYSTRUCTURE " + root.bodyStructure(data, true), nil
	case "BODY":
		return "BODY " + root.bodyStructure(data, false), nil
	case "RFC822":
		return "RFC822 " + literal(data), nil
	case "RFC822.HEADER":
		return "RFC822.HEADER " + literal(data[:root.bodyStart]), nil
	case "RFC822.TEXT":
		return "RFC822.TEXT " + literal(data[root.bodyStart:]), nil
	}
	label := a.label()
	target := root
	isMsg := true
	for _, n := range a.parts {
		c, ok := target.child(n, isMsg)
		if !ok {
			return label + " NIL", nil
		}
		target, isMsg = c, false
	}
	if a.name != "BODY[]" {
		// RFC 3516 4.2: BINARY[] is the whole message as it is; a part
		// is decoded, which only a leaf can be.
		dec := data
		if len(a.parts) > 0 {
			if target.isMultipart() || target.msg != nil {
				return "", &fetchError{"[CANNOT] BINARY needs a single-part section"}
			}
			var err error
			if dec, err = decodeBody(target, data); err != nil {
				return "", err
			}
		}
		if a.name == "BINARY.SIZE[]" {
			return fmt.Sprintf("%s %d", label, len(dec)), nil
		}
		dec = partial(a, dec)
		if bytes.IndexByte(dec, 0) >= 0 {
			return label + " ~" + literal(dec), nil // RFC 3516 literal8
		}
		return label + " " + literal(dec), nil
	}
	var out []byte
	msg := target
	if len(a.parts) > 0 && a.text != "MIME" && a.text != "" {
		if msg = target.msg; msg == nil {
			return label + " NIL", nil
		}
	}
	switch a.text {
	case "":
		if len(a.parts) == 0 {
			out = data
		} else {
			out = data[target.bodyStart:target.bodyEnd]
		}
	case "MIME":
		out = data[target.hdrStart:target.bodyStart]
	case "HEADER":
		out = data[msg.hdrStart:msg.bodyStart]
	case "TEXT":
		out = data[msg.bodyStart:msg.bodyEnd]
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		not := a.text == "HEADER.FIELDS.NOT"
		var b bytes.Buffer
		for f := msg.header.Fields(); f.Next(); {
			in := slices.ContainsFunc(a.fields, func(s string) bool { return strings.EqualFold(s, f.Key()) })
			if in != not {
				raw, err := f.Raw()
				if err == nil {
					b.Write(raw)
				}
			}
		}
		b.WriteString("\r\n")
		out = b.Bytes()
	}
	return label + " " + literal(partial(a, out)), nil
}

// label renders the item's name in the response (RFC 9051 7.5.2): no
// PEEK, and of a partial range only its origin.
func (a *fetchAtt) label() string {
	var b strings.Builder
	b.WriteString(strings.TrimSuffix(a.name, "[]"))
	b.WriteByte('[')
	for i, n := range a.parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.Itoa(n))
	}
	if a.text != "" {
		if len(a.parts) > 0 {
			b.WriteByte('.')
		}
		b.WriteString(a.text)
	}
	if a.fields != nil {
		b.WriteString(" (")
		for i, f := range a.fields {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(astring(f))
		}
		b.WriteByte(')')
	}
	b.WriteByte(']')
	if a.partial {
		fmt.Fprintf(&b, "<%d>", a.offset)
	}
	return b.String()
}

func partial(a *fetchAtt, b []byte) []byte {
	if !a.partial {
		return b
	}
	start := min(int64(a.offset), int64(len(b)))
	end := min(start+int64(a.count), int64(len(b)))
	return b[start:end]
}

func literal(b []byte) string {
	return "{" + strconv.Itoa(len(b)) + "}\r\n" + string(b)
}

// decodeBody undoes a part's Content-Transfer-Encoding for BINARY (RFC
// 3516 4.2).
func decodeBody(p *part, data []byte) ([]byte, error) {
	body := data[p.bodyStart:p.bodyEnd]
	switch strings.ToLower(strings.TrimSpace(p.header.Get("Content-Transfer-Encoding"))) {
	case "", "7bit", "8bit", "binary":
		return body, nil
	case "base64":
		out, err := io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(body)))
		if err != nil {
			return nil, &fetchError{"[PARSE] the part's base64 is broken"}
		}
		return out, nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, &fetchError{"[PARSE] the part's quoted-printable is broken"}
		}
		return out, nil
	}
	return nil, &fetchError{"[UNKNOWN-CTE] unknown Content-Transfer-Encoding"}
}
