package imap

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"slices"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// maxPartDepth bounds the MIME nesting looked into; deeper entities are
// treated as opaque leaves.
const maxPartDepth = 20

// part is one MIME entity of a message, by offsets into the raw bytes, so
// that BODY[section] returns exactly what was received.
type part struct {
	hdrStart, bodyStart, bodyEnd int // the header is [hdrStart, bodyStart)
	header                       textproto.Header
	typ, subtype                 string // lower case
	params                       map[string]string
	children                     []*part // multipart
	msg                          *part   // message/rfc822: the encapsulated message
}

// parsePart parses the entity in data[start:end]. defType is the media
// type when there is no Content-Type (message/rfc822 in multipart/digest).
func parsePart(data []byte, start, end int, defType string, depth int) *part {
	p := &part{hdrStart: start, bodyStart: end, bodyEnd: end}
	raw := data[start:end]
	switch {
	case bytes.HasPrefix(raw, []byte("\r\n")):
		p.bodyStart = start + 2
	case bytes.HasPrefix(raw, []byte("\n")):
		p.bodyStart = start + 1
	default:
		// The first blank line, whichever line ending it uses.
		crlf, lf := bytes.Index(raw, []byte("\r\n\r\n")), bytes.Index(raw, []byte("\n\n"))
		switch {
		case lf >= 0 && (crlf < 0 || lf < crlf):
			p.bodyStart = start + lf + 2
		case crlf >= 0:
			p.bodyStart = start + crlf + 4
		}
	}
	// A header without a blank line after it (no body) still parses.
	hdr := io.MultiReader(bytes.NewReader(data[start:p.bodyStart]), strings.NewReader("\r\n\r\n"))
	if h, err := textproto.ReadHeader(bufio.NewReader(hdr)); err == nil {
		p.header = h
	}
	ct := p.header.Get("Content-Type")
	if ct == "" {
		ct = defType
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		mt, params = "text/plain", map[string]string{"charset": "us-ascii"}
	}
	p.typ, p.subtype, _ = strings.Cut(mt, "/")
	p.params = params
	if depth >= maxPartDepth {
		return p
	}
	switch {
	case p.typ == "multipart" && params["boundary"] != "":
		childType := "text/plain; charset=us-ascii"
		if p.subtype == "digest" {
			childType = "message/rfc822"
		}
		for _, r := range splitMultipart(data, p.bodyStart, p.bodyEnd, params["boundary"]) {
			p.children = append(p.children, parsePart(data, r[0], r[1], childType, depth+1))
		}
		if len(p.children) == 0 {
			p.typ, p.subtype = "text", "plain"
		}
	case p.typ == "message" && (p.subtype == "rfc822" || p.subtype == "global"):
		p.msg = parsePart(data, p.bodyStart, p.bodyEnd, "text/plain; charset=us-ascii", depth+1)
	}
	return p
}

// splitMultipart finds the body parts between boundary delimiter lines
// (RFC 2046 5.1.1); the line break before a delimiter belongs to it.
func splitMultipart(data []byte, start, end int, boundary string) [][2]int {
	delim := []byte("--" + boundary)
	var parts [][2]int
	partStart := -1
	for i := start; i < end; {
		lineEnd := bytes.IndexByte(data[i:end], '\n')
		next := end
		if lineEnd >= 0 {
			next = i + lineEnd + 1
		}
		line := data[i:next]
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t\r\n")
			closing := bytes.Equal(rest, []byte("--"))
			if closing || len(rest) == 0 {
				if partStart >= 0 {
					pe := i
					if pe > partStart && data[pe-1] == '\n' {
						pe--
						if pe > partStart && data[pe-1] == '\r' {
							pe--
						}
					}
					parts = append(parts, [2]int{partStart, pe})
				}
				if closing {
					return parts
				}
				partStart = next
			}
		}
		i = next
	}
	if partStart >= 0 && partStart < end {
		parts = append(parts, [2]int{partStart, end}) // no closing delimiter
	}
	return parts
}

// isMultipart reports whether the entity has body parts.
func (p *part) isMultipart() bool { return len(p.children) > 0 }

// child resolves one step of a section part number (RFC 9051 6.4.5):
// into a multipart's parts, through an encapsulated message, and "1" of a
// non-multipart message is its body.
func (p *part) child(n int, isMessage bool) (*part, bool) {
	switch {
	case p.isMultipart():
		if n < 1 || n > len(p.children) {
			return nil, false
		}
		return p.children[n-1], true
	case p.msg != nil:
		return p.msg.child(n, true)
	case isMessage && n == 1:
		return p, true
	}
	return nil, false
}

// lines counts the body's lines, for BODYSTRUCTURE.
// A last line without a line break counts too.
func (p *part) lines(data []byte) int {
	body := data[p.bodyStart:p.bodyEnd]
	n := bytes.Count(body, []byte("\n"))
	if len(body) > 0 && body[len(body)-1] != '\n' {
		n++
	}
	return n
}

// bodyStructure renders BODY or, with ext, BODYSTRUCTURE (RFC 9051 7.5.2).
func (p *part) bodyStructure(data []byte, ext bool) string {
	var b strings.Builder
	p.writeStructure(&b, data, ext)
	return b.String()
}

func (p *part) writeStructure(b *strings.Builder, data []byte, ext bool) {
	b.WriteByte('(')
	if p.isMultipart() {
		for _, c := range p.children {
			c.writeStructure(b, data, ext)
		}
		b.WriteString(" " + quote(strings.ToUpper(p.subtype), false))
		if ext {
			fmt.Fprintf(b, " %s %s %s %s", paramList(p.params), p.disposition(),
				nstr(p.header.Get("Content-Language")), nstr(p.header.Get("Content-Location")))
		}
		b.WriteByte(')')
		return
	}
	enc := strings.ToUpper(strings.TrimSpace(p.header.Get("Content-Transfer-Encoding")))
	if enc == "" {
		enc = "7BIT"
	}
	fmt.Fprintf(b, "%s %s %s %s %s %s %d",
		quote(strings.ToUpper(p.typ), false), quote(strings.ToUpper(p.subtype), false), paramList(p.params),
		nstr(p.header.Get("Content-Id")), nstr(p.header.Get("Content-Description")), quote(enc, false),
		p.bodyEnd-p.bodyStart)
	switch {
	case p.msg != nil:
		b.WriteString(" " + envelope(&p.msg.header) + " ")
		p.msg.writeStructure(b, data, ext)
		fmt.Fprintf(b, " %d", p.lines(data))
	case p.typ == "text":
		fmt.Fprintf(b, " %d", p.lines(data))
	}
	if ext {
		fmt.Fprintf(b, " %s %s %s %s", nstr(p.header.Get("Content-Md5")), p.disposition(),
			nstr(p.header.Get("Content-Language")), nstr(p.header.Get("Content-Location")))
	}
	b.WriteByte(')')
}

// paramList renders body-fld-param: NIL or ("NAME" "value" ...), sorted.
func paramList(params map[string]string) string {
	if len(params) == 0 {
		return "NIL"
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		out = append(out, quote(strings.ToUpper(k), false), quote(params[k], false))
	}
	return "(" + strings.Join(out, " ") + ")"
}

func (p *part) disposition() string {
	d := p.header.Get("Content-Disposition")
	if d == "" {
		return "NIL"
	}
	typ, params, err := mime.ParseMediaType(d)
	if err != nil {
		return "NIL"
	}
	return "(" + quote(strings.ToUpper(typ), false) + " " + paramList(params) + ")"
}

// envelope renders a message's ENVELOPE (RFC 9051 7.5.2): the header
// fields as they are, addresses parsed.
func envelope(h *textproto.Header) string {
	mh := mail.Header{Header: message.Header{Header: *h}}
	from := addresses(mh, "From")
	sender, replyTo := addresses(mh, "Sender"), addresses(mh, "Reply-To")
	if sender == "NIL" {
		sender = from
	}
	if replyTo == "NIL" {
		replyTo = from
	}
	return fmt.Sprintf("(%s %s %s %s %s %s %s %s %s %s)",
		nstr(h.Get("Date")), nstr(h.Get("Subject")), from, sender, replyTo,
		addresses(mh, "To"), addresses(mh, "Cc"), addresses(mh, "Bcc"),
		nstr(h.Get("In-Reply-To")), nstr(h.Get("Message-Id")))
}

func addresses(h mail.Header, key string) string {
	list, err := h.AddressList(key)
	if err != nil || len(list) == 0 {
		return "NIL"
	}
	var b strings.Builder
	b.WriteByte('(')
	for _, a := range list {
		name := a.Name
		if !isASCII(name) {
			name = mime.QEncoding.Encode("utf-8", name)
		}
		local, host := a.Address, ""
		if i := strings.LastIndexByte(local, '@'); i >= 0 {
			local, host = local[:i], local[i+1:]
		}
		fmt.Fprintf(&b, "(%s NIL %s %s)", nstr(name), nstr(local), nstr(host))
	}
	b.WriteByte(')')
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
