package submission

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// parseCommand splits a command line into its verb, upper-cased, and the
// rest (RFC 5321 4.1.1: verbs are case-insensitive).
func parseCommand(line string) (verb, arg string) {
	verb, arg, _ = strings.Cut(line, " ")
	return strings.ToUpper(verb), arg
}

// path is a parsed MAIL FROM or RCPT TO argument.
type path struct {
	addr   string            // mailbox, "" for the null reverse-path "<>"
	params map[string]string // upper-cased keywords; "" value when none given
}

// parsePath parses "FROM:<addr> params" or "TO:<addr> params" (RFC 5321
// 4.1.2), keyword being "FROM:" or "TO:". A space after the colon is
// tolerated, as most servers do. utf8OK allows non-ASCII in the mailbox
// (RFC 6531 3.3), which MAIL decides from its own SMTPUTF8 parameter.
func parsePath(arg, keyword string, utf8OK func(params map[string]string) bool) (path, error) {
	var p path
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return p, fmt.Errorf("expected %s<address>", keyword)
	}
	rest := strings.TrimLeft(arg[len(keyword):], " ")
	if !strings.HasPrefix(rest, "<") {
		return p, errors.New("the address must be in angle brackets")
	}
	end := closingBracket(rest)
	if end < 0 {
		return p, errors.New("missing > after the address")
	}
	inner, tail := rest[1:end], rest[end+1:]
	if tail != "" && tail[0] != ' ' {
		return p, errors.New("expected a space after the address")
	}
	params, err := parseParams(strings.TrimLeft(tail, " "))
	if err != nil {
		return p, err
	}
	p.params = params
	if inner == "" {
		return p, nil
	}
	// RFC 5321 4.1.2, C: a source route (A-d-l) is accepted and ignored.
	if strings.HasPrefix(inner, "@") {
		_, after, ok := strings.Cut(inner, ":")
		if !ok {
			return p, errors.New("malformed source route")
		}
		inner = after
	}
	allowUTF8 := utf8OK != nil && utf8OK(params)
	if err := checkMailbox(inner, allowUTF8); err != nil {
		return p, err
	}
	p.addr = inner
	return p, nil
}

// closingBracket returns the index of the ">" that closes the path
// opened at s[0], skipping quoted strings, or -1.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		}
	}
	return -1
}

// parseParams parses esmtp-params (RFC 5321 4.1.2): space-separated
// keyword[=value].
func parseParams(s string) (map[string]string, error) {
	params := map[string]string{}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		k = strings.ToUpper(k)
		if k == "" || !isKeyword(k) {
			return nil, fmt.Errorf("malformed parameter %q", truncate(f, 32))
		}
		if _, dup := params[k]; dup {
			return nil, fmt.Errorf("parameter %s given twice", k)
		}
		params[k] = v
	}
	return params, nil
}

func isKeyword(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

// checkMailbox checks Mailbox = Local-part "@" ( Domain / address-literal )
// (RFC 5321 4.1.2), with UTF-8 where RFC 6531 3.3 allows it.
func checkMailbox(s string, allowUTF8 bool) error {
	if !utf8.ValidString(s) {
		return errors.New("the address is not valid UTF-8")
	}
	if !allowUTF8 {
		for i := 0; i < len(s); i++ {
			if s[i] >= 0x80 {
				return errors.New("non-ASCII address without the SMTPUTF8 parameter")
			}
		}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return errors.New("the address has no @domain")
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > 64 || len(domain) > 255 { // RFC 5321 4.5.3.1.1, 4.5.3.1.2
		return errors.New("the address is too long")
	}
	if err := checkLocalPart(local); err != nil {
		return err
	}
	if strings.HasPrefix(domain, "[") {
		if !validAddressLiteral(domain) {
			return errors.New("malformed address literal")
		}
		return nil
	}
	if !validDomain(domain) {
		return fmt.Errorf("malformed domain %q", truncate(domain, 64))
	}
	return nil
}

// checkLocalPart checks Local-part = Dot-string / Quoted-string.
func checkLocalPart(l string) error {
	if l == "" {
		return errors.New("the address has an empty local part")
	}
	if l[0] == '"' {
		if len(l) < 2 || l[len(l)-1] != '"' {
			return errors.New("malformed quoted local part")
		}
		for i := 1; i < len(l)-1; i++ {
			c := l[i]
			switch {
			case c == '\\':
				i++
				if i >= len(l)-1 || l[i] < 32 || l[i] == 127 {
					return errors.New("malformed quoted local part")
				}
			case c == '"' || c < 32 || c == 127:
				return errors.New("malformed quoted local part")
			}
		}
		return nil
	}
	for _, atom := range strings.Split(l, ".") {
		if atom == "" {
			return errors.New("malformed local part: empty atom")
		}
		for i := 0; i < len(atom); i++ {
			if c := atom[i]; c < 0x80 && !isAtext(c) {
				return fmt.Errorf("character %q not allowed in the local part", c)
			}
		}
	}
	return nil
}

func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// validDomain checks Domain = sub-domain *("." sub-domain), sub-domains
// being letters, digits and inner hyphens (or U-labels, RFC 6531).
func validDomain(d string) bool {
	if d == "" {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 0x80 || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validAddressLiteral checks "[" IPv4 "]" or "[IPv6:" IPv6 "]" (RFC 5321
// 4.1.3). General address literals (a registered tag and free text) are
// not accepted: no tag is in use, and their text could carry comment
// syntax into Received fields.
func validAddressLiteral(s string) bool {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	inner := s[1 : len(s)-1]
	if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(inner)
	return err == nil && a.Is4()
}

// validHelo checks the EHLO/HELO/LHLO argument: a domain or an address
// literal (RFC 5321 4.1.1.1). It goes into Received fields, so nothing
// else is let through.
func validHelo(s string) bool {
	if strings.HasPrefix(s, "[") {
		return validAddressLiteral(s)
	}
	if len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return validDomain(s)
}

// domainOf returns the lower-cased domain of an address.
func domainOf(addr string) string {
	return strings.ToLower(addr[strings.LastIndexByte(addr, '@')+1:])
}
