package imap

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what one command may hold. RFC 9051 section 4 sets no line
// length; RFC 7162 section 4 asks servers to accept at least 8192 octets.
const (
	maxLine        = 64 << 10 // octets of one command line outside literals
	maxLiteral     = 64 << 10 // one literal, except APPEND's message
	maxCmdLiterals = 1 << 20  // all literals of one command, except APPEND's message
	maxDepth       = 8        // nesting of parenthesized lists
	maxArgs        = 1000     // tokens in one command
	maxDiscard     = 1 << 20  // octets skipped after a bad command before giving up
)

// badError is malformed input: the command is answered BAD and the rest of
// its line is skipped, and the session goes on.
type badError struct{ msg string }

func (e *badError) Error() string { return e.msg }

func badf(format string, args ...any) error { return &badError{fmt.Sprintf(format, args...)} }

// errTooBig ends the session: the client announced a non-synchronizing
// literal too large to skip, so the command stream cannot be resynchronized.
var errTooBig = errors.New("imap: non-synchronizing literal over the limit")

// parser reads commands from the client. Parsing is driven by each
// command's own grammar (the arguments of IMAP commands cannot be
// tokenized without knowing the command: section specs, sequence sets,
// and APPEND's streamed message).
type parser struct {
	r *bufio.Reader
	// cont sends a continuation request for a synchronizing literal
	// (RFC 9051 section 7.5) and flushes it.
	cont func() error

	// pending is the size of a literal the parser announced but left
	// for the command to read (APPEND's message).
	pending int64

	line     int   // octets of the current line outside literals
	literals int64 // octets of literals in the current command
	args     int
	depth    int
}

func newParser(r *bufio.Reader, cont func() error) *parser {
	return &parser{r: r, cont: cont}
}

// begin starts a new command.
func (p *parser) begin() { p.line, p.literals, p.args, p.depth, p.pending = 0, 0, 0, 0, 0 }

func (p *parser) peek() (byte, error) {
	b, err := p.r.Peek(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (p *parser) next() (byte, error) {
	c, err := p.r.ReadByte()
	if err != nil {
		return 0, err
	}
	p.line++
	if p.line > maxLine {
		return 0, badf("command line longer than %d octets", maxLine)
	}
	return c, nil
}

func (p *parser) expect(c byte, what string) error {
	b, err := p.peek()
	if err != nil {
		return err
	}
	if b != c {
		return badf("expected %s", what)
	}
	_, err = p.next()
	return err
}

func (p *parser) sp() error { return p.expect(' ', "a space") }

// crlf ends a command line; a bare LF is accepted too.
func (p *parser) crlf() error {
	b, err := p.peek()
	if err != nil {
		return err
	}
	if b == '\r' {
		p.next()
		if b, err = p.peek(); err != nil {
			return err
		}
	}
	if b != '\n' {
		return badf("unexpected characters at end of command")
	}
	p.next()
	p.line = 0
	return nil
}

// atEnd reports whether the line ends here.
func (p *parser) atEnd() bool {
	b, err := p.peek()
	return err == nil && (b == '\r' || b == '\n')
}

func (p *parser) count() error {
	p.args++
	if p.args > maxArgs {
		return badf("more than %d arguments", maxArgs)
	}
	return nil
}

// isAtomChar reports ATOM-CHAR (RFC 9051 section 9): any CHAR except
// atom-specials. ']' is a resp-special, allowed in ASTRING-CHAR.
func isAtomChar(c byte, extra string) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return strings.IndexByte(extra, c) >= 0
	}
	return true
}

// token reads a run of ATOM-CHARs plus extra.
func (p *parser) token(extra string) (string, error) {
	var b strings.Builder
	for {
		c, err := p.peek()
		if err != nil {
			return "", err
		}
		if !isAtomChar(c, extra) {
			break
		}
		p.next()
		b.WriteByte(c)
	}
	if b.Len() == 0 {
		return "", badf("expected an atom")
	}
	return b.String(), p.count()
}

func (p *parser) atom() (string, error) { return p.token("") }

// tag reads a command tag: ASTRING-CHAR except "+" (RFC 9051 section 9).
func (p *parser) tag() (string, error) {
	t, err := p.token("]")
	if err != nil {
		return "", badf("expected a tag")
	}
	if strings.ContainsRune(t, '+') {
		return "", badf("tag contains +")
	}
	return t, nil
}

// quoted reads a quoted string; the opening quote is next.
func (p *parser) quoted() (string, error) {
	p.next()
	var b strings.Builder
	for {
		c, err := p.peek()
		if err != nil {
			return "", err
		}
		if c == '\r' || c == '\n' || c == 0 {
			return "", badf("quoted string not closed")
		}
		p.next()
		switch c {
		case '"':
			return b.String(), p.count()
		case '\\':
			if c, err = p.peek(); err != nil {
				return "", err
			}
			if c != '"' && c != '\\' {
				return "", badf("bad escape in quoted string")
			}
			p.next()
		}
		b.WriteByte(c)
	}
}

// literalHeader reads "{n}" or "{n+}" CRLF and, for a synchronizing
// literal within limit, sends the continuation request. A literal over
// limit is refused: a synchronizing one before the client sends it
// (errLiteral, answered NO/BAD), a non-synchronizing one by ending the
// session (RFC 7888 section 4), unless it is small enough to skip.
func (p *parser) literalHeader(limit int64) (n int64, err error) {
	if b, _ := p.peek(); b == '~' { // literal8 (RFC 3516)
		p.next()
	}
	if err := p.expect('{', "a literal"); err != nil {
		return 0, err
	}
	var digits strings.Builder
	for {
		c, err := p.peek()
		if err != nil {
			return 0, err
		}
		if c < '0' || c > '9' {
			break
		}
		p.next()
		digits.WriteByte(c)
		if digits.Len() > 19 {
			return 0, badf("literal size too long")
		}
	}
	n, err = strconv.ParseInt(digits.String(), 10, 64)
	if err != nil {
		return 0, badf("bad literal size")
	}
	sync := true
	if b, _ := p.peek(); b == '+' {
		p.next()
		sync = false
	}
	if err := p.expect('}', "}"); err != nil {
		return 0, err
	}
	if err := p.crlf(); err != nil {
		return 0, err
	}
	if n > limit {
		if !sync {
			if n > maxDiscard {
				return 0, errTooBig
			}
			if _, err := p.r.Discard(int(n)); err != nil {
				return 0, err
			}
		}
		return n, &literalError{n: n, limit: limit, sync: sync}
	}
	if sync {
		if err := p.cont(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// literalError is a literal over its limit. The rest of the command line
// (after a synchronizing literal's size, the client sends nothing more)
// has been dealt with.
type literalError struct {
	n, limit int64
	sync     bool
}

func (e *literalError) Error() string {
	return fmt.Sprintf("literal of %d octets is over the limit of %d", e.n, e.limit)
}

// literal reads a whole literal held in memory.
// Its limit is checked before the continuation request, so that a
// refused literal is never sent.
func (p *parser) literal() (string, error) {
	n, err := p.literalHeader(min(maxLiteral, maxCmdLiterals-p.literals))
	if err != nil {
		return "", err
	}
	p.literals += n
	buf := make([]byte, n)
	if _, err := io.ReadFull(p.r, buf); err != nil {
		return "", err
	}
	return string(buf), p.count()
}

// astring reads an atom (with ']'), quoted string or literal.
func (p *parser) astring() (string, error) {
	c, err := p.peek()
	if err != nil {
		return "", err
	}
	switch c {
	case '"':
		return p.quoted()
	case '{', '~':
		return p.literal()
	}
	return p.token("]")
}

// str reads a quoted string or literal.
func (p *parser) str() (string, error) {
	c, err := p.peek()
	if err != nil {
		return "", err
	}
	switch c {
	case '"':
		return p.quoted()
	case '{':
		return p.literal()
	}
	return "", badf("expected a string")
}

// listMailbox reads a LIST pattern: astring chars plus the wildcards.
func (p *parser) listMailbox() (string, error) {
	c, err := p.peek()
	if err != nil {
		return "", err
	}
	if c == '"' || c == '{' {
		return p.str()
	}
	return p.token("]%*")
}

// list reads "(" elem *(SP elem) ")"; with empty, "()" is allowed.
func (p *parser) list(empty bool, elem func() error) error {
	if err := p.expect('(', "("); err != nil {
		return err
	}
	p.depth++
	if p.depth > maxDepth {
		return badf("lists nested deeper than %d", maxDepth)
	}
	defer func() { p.depth-- }()
	if c, _ := p.peek(); c == ')' {
		if !empty {
			return badf("empty list")
		}
		p.next()
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		c, err := p.peek()
		if err != nil {
			return err
		}
		if c == ')' {
			p.next()
			return nil
		}
		if err := p.sp(); err != nil {
			return err
		}
	}
}

// number reads a number (RFC 9051: 32-bit unsigned).
func (p *parser) number() (uint32, error) {
	n, err := p.number64()
	if err != nil {
		return 0, err
	}
	if n > 1<<32-1 {
		return 0, badf("number too large")
	}
	return uint32(n), nil
}

func (p *parser) number64() (uint64, error) {
	var n uint64
	digits := 0
	for {
		c, err := p.peek()
		if err != nil {
			return 0, err
		}
		if c < '0' || c > '9' {
			break
		}
		p.next()
		digits++
		if digits > 19 {
			return 0, badf("number too large")
		}
		n = n*10 + uint64(c-'0')
	}
	if digits == 0 {
		return 0, badf("expected a number")
	}
	return n, p.count()
}

// nzNumber reads a number greater than zero.
func (p *parser) nzNumber() (uint32, error) {
	n, err := p.number()
	if err == nil && n == 0 {
		err = badf("zero is not allowed here")
	}
	return n, err
}

// seqRange is one element of a sequence set; 0 stands for "*". A range
// with saved set stands for "$" (see savedRange).
type seqRange struct {
	lo, hi uint32
	saved  bool
}

// seqSet is a sequence set (RFC 9051 section 9 sequence-set).
type seqSet []seqRange

func (p *parser) seqNumber() (uint32, error) {
	if c, _ := p.peek(); c == '*' {
		p.next()
		return 0, nil
	}
	return p.nzNumber()
}

// savedRange stands, alone in a seqSet, for "$": the result saved by the
// last SEARCH RETURN (SAVE) (RFC 5182 2.1).
var savedRange = seqRange{saved: true}

// saved reports whether the set is "$".
func (s seqSet) saved() bool { return len(s) == 1 && s[0] == savedRange }

// seqSet reads a sequence set, or "$" (RFC 5182 SEARCHRES), which stands
// alone.
func (p *parser) seqSet() (seqSet, error) {
	if c, _ := p.peek(); c == '$' {
		p.next()
		return seqSet{savedRange}, nil
	}
	var s seqSet
	for {
		lo, err := p.seqNumber()
		if err != nil {
			return nil, err
		}
		hi := lo
		if c, _ := p.peek(); c == ':' {
			p.next()
			if hi, err = p.seqNumber(); err != nil {
				return nil, err
			}
		}
		s = append(s, seqRange{lo: lo, hi: hi})
		if c, _ := p.peek(); c != ',' {
			return s, nil
		}
		p.next()
		if err := p.count(); err != nil {
			return nil, err
		}
	}
}

// skipLine discards the rest of a bad command, including the data of any
// non-synchronizing literal it announces, and at most maxDiscard octets.
func (p *parser) skipLine() error {
	var tail []byte // the last few octets, to spot "{n+}" before CRLF
	total := 0
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			return err
		}
		if total++; total > maxDiscard {
			return errTooBig
		}
		if c != '\n' {
			tail = append(tail, c)
			if len(tail) > 32 {
				tail = tail[len(tail)-32:]
			}
			continue
		}
		s := strings.TrimSuffix(string(tail), "\r")
		tail = tail[:0]
		i := strings.LastIndexByte(s, '{')
		if i < 0 || !strings.HasSuffix(s, "+}") {
			p.begin()
			return nil
		}
		n, err := strconv.Atoi(s[i+1 : len(s)-2])
		if err != nil || n < 0 {
			p.begin()
			return nil
		}
		if total += n; total > maxDiscard {
			return errTooBig
		}
		if _, err := p.r.Discard(n); err != nil {
			return err
		}
	}
}

// nil reads the atom NIL.
func (p *parser) nil() error {
	a, err := p.atom()
	if err != nil || !strings.EqualFold(a, "NIL") {
		return badf("expected NIL")
	}
	return nil
}

// nstring reads a string or NIL (as "").
func (p *parser) nstring() (string, error) {
	if c, _ := p.peek(); c == 'N' || c == 'n' {
		return "", p.nil()
	}
	return p.str()
}

// rawLine reads one line that is not a command (a SASL response, IDLE's
// DONE) of at most limit octets, without its line ending.
func (p *parser) rawLine(limit int) (string, error) {
	var b []byte
	for {
		c, err := p.r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			p.begin()
			return strings.TrimSuffix(string(b), "\r"), nil
		}
		b = append(b, c)
		if len(b) > limit {
			if err := p.skipLine(); err != nil {
				return "", err
			}
			return "", badf("line longer than %d octets", limit)
		}
	}
}

// modseqModifier reads a one-modifier list "(NAME mod-sequence)", the form
// of RFC 7162's FETCH CHANGEDSINCE and STORE UNCHANGEDSINCE.
func (p *parser) modseqModifier(command, name string) (uint64, error) {
	var v uint64
	err := p.list(false, func() error {
		m, err := p.atom()
		if err != nil || !strings.EqualFold(m, name) {
			return badf("unknown %s modifier", command)
		}
		if err := p.sp(); err != nil {
			return err
		}
		v, err = p.number64()
		return err
	})
	return v, err
}
