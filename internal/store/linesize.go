package store

import "bytes"

// LineCounter measures, as a message passes through Write, the size it has
// when every line ends in CRLF and the last line is ended too: the octets
// POP3 sends for it (RFC 1939 section 11: sizes count CRLF line endings,
// not the byte-stuffing). Implementations keep it as Message.LineSize.
type LineCounter struct {
	n       int64
	partial bool // the last byte written was not LF
	lastCR  bool // the last byte written was CR
}

// Write counts p; it never fails.
func (c *LineCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	rest := p
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		crBefore := c.lastCR // the CR may end the previous Write
		if i > 0 {
			crBefore = rest[i-1] == '\r'
		}
		if !crBefore {
			c.n++ // a bare LF goes out as CRLF
		}
		c.lastCR = false
		rest = rest[i+1:]
	}
	if len(p) > 0 {
		c.partial = p[len(p)-1] != '\n'
		c.lastCR = p[len(p)-1] == '\r'
	}
	return len(p), nil
}

// Size is the CRLF size of what was written.
func (c *LineCounter) Size() int64 {
	switch {
	case !c.partial:
		return c.n
	case c.lastCR:
		return c.n + 1 // "...\r" at the end goes out as "...\r\n"
	}
	return c.n + 2
}
