package imap

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// mutf7 is the base64 of modified UTF-7: "," for "/", no padding
// (RFC 3501 5.1.3).
var mutf7 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// encodeMUTF7 encodes a UTF-8 mailbox name for an IMAP4rev1 client.
func encodeMUTF7(s string) string {
	var b strings.Builder
	var run []rune
	flush := func() {
		if len(run) == 0 {
			return
		}
		u := utf16.Encode(run)
		raw := make([]byte, 0, 2*len(u))
		for _, c := range u {
			raw = append(raw, byte(c>>8), byte(c))
		}
		b.WriteByte('&')
		b.WriteString(mutf7.EncodeToString(raw))
		b.WriteByte('-')
		run = run[:0]
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = append(run, r)
	}
	flush()
	return b.String()
}

// decodeMUTF7 decodes a modified UTF-7 mailbox name; ok is false when it
// is not valid modified UTF-7.
func decodeMUTF7(s string) (string, bool) {
	if !strings.ContainsRune(s, '&') {
		for i := 0; i < len(s); i++ {
			if s[i] < 0x20 || s[i] > 0x7e {
				return "", false
			}
		}
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return "", false
		}
		if c != '&' {
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(s[i+1:], '-')
		if end < 0 {
			return "", false
		}
		enc := s[i+1 : i+1+end]
		i += end + 1
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := mutf7.DecodeString(enc)
		if err != nil || len(raw)%2 != 0 {
			return "", false
		}
		u := make([]uint16, len(raw)/2)
		for j := range u {
			u[j] = uint16(raw[2*j])<<8 | uint16(raw[2*j+1])
		}
		for _, r := range utf16.Decode(u) {
			if r == utf8.RuneError || (r >= 0x20 && r <= 0x7e) {
				return "", false // printable ASCII must not be encoded
			}
			b.WriteRune(r)
		}
	}
	return b.String(), true
}

// mailboxName reads a mailbox name and converts it to the store's form:
// UTF-8 (modified UTF-7 decoded for IMAP4rev1 clients, RFC 9051 appendix
// A), INBOX in upper case whatever its spelling (RFC 9051 5.1).
func (ss *session) mailboxName(p *parser) (string, error) {
	name, err := p.astring()
	if err != nil {
		return "", err
	}
	return ss.internalName(name)
}

func (ss *session) internalName(name string) (string, error) {
	if ss.rev2 {
		if !utf8.ValidString(name) {
			return "", badf("mailbox name is not UTF-8")
		}
	} else {
		n, ok := decodeMUTF7(name)
		if !ok {
			return "", badf("mailbox name is not modified UTF-7")
		}
		name = n
	}
	if strings.EqualFold(name, "INBOX") {
		return "INBOX", nil
	}
	if len(name) > 5 && strings.EqualFold(name[:6], "INBOX/") {
		return "INBOX" + name[5:], nil
	}
	return name, nil
}

// mbox renders a mailbox name for this client.
func (ss *session) mbox(name string) string {
	if !ss.rev2 {
		return quote(encodeMUTF7(name), false)
	}
	return quote(name, true)
}

// quote renders s as a quoted string or, when it cannot be one, a literal.
// UTF-8 may be quoted for IMAP4rev2 clients (RFC 9051 9, quoted-char).
func quote(s string, utf8ok bool) string {
	ok := len(s) < 1024 && (!utf8ok || utf8.ValidString(s))
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c != 0 && c != '\r' && c != '\n' && (c < 0x80 || utf8ok)
	}
	if !ok {
		return "{" + strconv.Itoa(len(s)) + "}\r\n" + s
	}
	if !strings.ContainsAny(s, `"\`) {
		return `"` + s + `"`
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// nstr renders an nstring: NIL for "".
func nstr(s string) string {
	if s == "" {
		return "NIL"
	}
	return quote(s, false)
}

// astring renders s as an atom when it is one, else quoted.
func astring(s string) string {
	for i := 0; i < len(s); i++ {
		if !isAtomChar(s[i], "]") {
			return quote(s, false)
		}
	}
	if s == "" || strings.EqualFold(s, "NIL") {
		return quote(s, false)
	}
	return s
}
