// Package lineio reads the command lines of line-based protocols (POP3,
// SMTP, LMTP) with a hard bound on their length, so that no client can
// make a session hold an unbounded line in memory.
package lineio

import (
	"bufio"
	"errors"
	"strings"
)

// ErrTooLong reports a line over the limit it was read with. The line has
// been consumed to its end, so the session can answer and go on.
var ErrTooLong = errors.New("line too long")

// ReadLine reads one line ended by LF (CRLF or a bare LF) of at most limit
// octets with its terminator, and returns it without the terminator. A
// longer line is read to its end, holding at most the reader's buffer,
// and reported as ErrTooLong.
func ReadLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(b)+len(frag) > limit {
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return "", err
			}
			return "", ErrTooLong
		}
		b = append(b, frag...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
