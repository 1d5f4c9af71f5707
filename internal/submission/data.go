package submission

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"
)

// Why a message's data was refused; the data has been read to its end.
var (
	errTooBig   = errors.New("message too big")
	errTextLine = errors.New("text line too long")
	errBareLF   = errors.New("bare CR or LF")
)

// spool holds one message's data in a temporary file while it arrives.
type spool struct {
	f       *os.File
	w       *bufio.Writer
	size    int64
	max     int64
	refused error // first reason to refuse the message, if any
}

func (s *Server) newSpool() (*spool, error) {
	f, err := os.CreateTemp(s.SpoolDir, "latch-smtp-*")
	if err != nil {
		return nil, fmt.Errorf("submission: spool: %w", err)
	}
	return &spool{f: f, w: bufio.NewWriterSize(f, 32<<10), max: s.maxSize()}, nil
}

// write adds data unless the message is over the limit already.
func (sp *spool) write(p []byte) error {
	sp.size += int64(len(p))
	if sp.refused != nil {
		return nil
	}
	if sp.size > sp.max {
		sp.refused = errTooBig
		return nil
	}
	if _, err := sp.w.Write(p); err != nil {
		return fmt.Errorf("submission: spool: %w", err)
	}
	return nil
}

func (sp *spool) refuse(err error) {
	if sp.refused == nil {
		sp.refused = err
	}
}

// finish flushes the data and returns a reader of it.
func (sp *spool) finish() (*io.SectionReader, error) {
	if err := sp.w.Flush(); err != nil {
		return nil, fmt.Errorf("submission: spool: %w", err)
	}
	return io.NewSectionReader(sp.f, 0, sp.size), nil
}

func (sp *spool) discard() {
	sp.f.Close()
	os.Remove(sp.f.Name())
}

// readDotData copies a DATA block into sp, dot-unstuffed, up to and
// without the end marker CRLF "." CRLF (RFC 5321 4.1.1.4, 4.5.2). It
// reads to the end marker whatever it finds on the way; what makes the
// message unacceptable is recorded in sp.refused. Only "." CRLF after a
// CRLF ends the data: a bare LF or CR line ending is refused rather than
// guessed at (RFC 5321 2.3.8; SMTP smuggling).
func readDotData(r *bufio.Reader, sp *spool, deadline func()) error {
	for {
		deadline()
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// Longer than the reader's buffer, so over the limit: skip it.
			sp.refuse(errTextLine)
			for errors.Is(err, bufio.ErrBufferFull) {
				deadline()
				_, err = r.ReadSlice('\n')
			}
			if err != nil {
				return unexpected(err)
			}
			continue
		}
		if err != nil {
			return unexpected(err)
		}
		if len(line) < 2 || line[len(line)-2] != '\r' || bytes.IndexByte(line[:len(line)-2], '\r') >= 0 {
			sp.refuse(errBareLF)
		}
		if len(line) > maxTextLine {
			sp.refuse(errTextLine)
		}
		if line[0] == '.' {
			if string(line) == ".\r\n" {
				return nil
			}
			line = line[1:] // RFC 5321 4.5.2
		}
		if err := sp.write(line); err != nil {
			return err
		}
	}
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// mayData checks the transaction before DATA or BDAT's data; it answers
// and returns false when there is nothing to receive a message for.
func (ss *session) mayData() (ok bool, goOn bool) {
	switch {
	case ss.tx == nil:
		return false, ss.bad(503, "5.5.1", "Send MAIL and RCPT first")
	case len(ss.tx.rcpts) == 0:
		// RFC 2920 3.1: every RCPT of the pipeline may have failed.
		ss.resetTx()
		ss.reply(554, "5.5.1", "No valid recipients")
		return false, true
	}
	return true, true
}

// data answers DATA (RFC 5321 4.1.1.4).
func (ss *session) data(ctx context.Context, arg string) bool {
	if arg != "" {
		return ss.bad(501, "5.5.4", "DATA takes no argument")
	}
	if ss.tx != nil && ss.tx.bdat {
		return ss.bad(503, "5.5.1", "DATA after BDAT; finish with BDAT LAST or RSET") // RFC 3030 3
	}
	if ok, goOn := ss.mayData(); !ok {
		return goOn
	}
	sp, err := ss.srv.newSpool()
	if err != nil {
		ss.log.Error("smtp data", slog.Any("err", err))
		ss.reply(451, "4.3.0", "Cannot receive the message now; try again later")
		return true
	}
	ss.tx.spool = sp
	ss.reply(354, "", "Send the message, end with <CRLF>.<CRLF>")
	if !ss.flush() {
		return false
	}
	err = readDotData(ss.r, sp, func() { _ = ss.conn.SetReadDeadline(time.Now().Add(dataTimeout)) })
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			ss.log.Info("smtp data read", slog.Any("err", err))
		}
		return false
	}
	return ss.endOfData(ctx)
}

// bdat answers BDAT size [LAST] (RFC 3030 2). The chunk is always read,
// even when refused, so that the session stays in step.
func (ss *session) bdat(ctx context.Context, arg string) bool {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		return ss.bad(501, "5.5.4", "Syntax: BDAT size [LAST]")
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return ss.bad(501, "5.5.4", "Syntax: BDAT size [LAST]: size must be a number")
	}
	last := len(f) == 2
	deadline := func() { _ = ss.conn.SetReadDeadline(time.Now().Add(dataTimeout)) }
	ok, goOn := ss.mayData()
	if !ok {
		if err := skipChunk(ss.r, n, deadline); err != nil {
			return false
		}
		return goOn
	}
	tx := ss.tx
	tx.bdat = true
	if tx.spool == nil {
		if tx.spool, err = ss.srv.newSpool(); err != nil {
			ss.log.Error("smtp bdat", slog.Any("err", err))
			ss.resetTx()
			if skipChunk(ss.r, n, deadline) != nil {
				return false
			}
			ss.reply(451, "4.3.0", "Cannot receive the message now; try again later")
			return true
		}
	}
	if err := copyChunk(ss.r, tx.spool, n, deadline); err != nil {
		if ctx.Err() == nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			ss.log.Info("smtp bdat read", slog.Any("err", err))
		}
		return false
	}
	if tx.spool.refused != nil && !last {
		// RFC 3030 2: the transaction fails at the first refused chunk;
		// at the last one, endOfData answers (per recipient for LMTP).
		ss.replyRefused(tx.spool.refused)
		ss.resetTx()
		return true
	}
	if !last {
		ss.reply(250, "2.0.0", "%d octets received", n)
		return true
	}
	return ss.endOfData(ctx)
}

// copyChunk reads n octets of BDAT data into sp.
func copyChunk(r *bufio.Reader, sp *spool, n int64, deadline func()) error {
	for n > 0 {
		deadline()
		b, err := r.Peek(int(min(n, int64(r.Size()))))
		if werr := sp.write(b); werr != nil {
			return werr
		}
		_, _ = r.Discard(len(b))
		n -= int64(len(b))
		if err != nil {
			return unexpected(err)
		}
	}
	return nil
}

// skipChunk reads and drops n octets of BDAT data.
func skipChunk(r *bufio.Reader, n int64, deadline func()) error {
	for n > 0 {
		deadline()
		d, err := r.Discard(int(min(n, 1<<20)))
		n -= int64(d)
		if err != nil {
			return unexpected(err)
		}
	}
	return nil
}

// replyRefused answers data that was read but cannot be accepted.
func (ss *session) replyRefused(err error) {
	switch {
	case errors.Is(err, errTooBig):
		ss.reply(552, "5.3.4", "Message size exceeds fixed maximum message size (%d octets)", ss.srv.maxSize())
	case errors.Is(err, errTextLine):
		ss.reply(500, "5.5.2", "Line too long: text lines are limited to %d octets with CRLF (RFC 5321 4.5.3.1.6); encode the message (e.g. quoted-printable)", maxTextLine)
	case errors.Is(err, errBareLF):
		ss.reply(554, "5.6.0", "Message contains a bare CR or LF: lines must end with CRLF (RFC 5321 2.3.8)")
	default:
		ss.reply(451, "4.3.0", "Message not accepted; try again later")
	}
}
