package submission

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// errHeaderTooBig reports a header section over maxHeaderBytes.
var errHeaderTooBig = errors.New("header section too large")

// endOfData ends a transaction whose data has been received: it checks
// the message, adds the trace and fix-up fields, delivers it and answers.
func (ss *session) endOfData(ctx context.Context) bool {
	tx := ss.tx
	defer ss.resetTx()
	ss.messages++
	sp := tx.spool
	if sp.refused != nil {
		ss.final(tx, func() { ss.replyRefused(sp.refused) })
		return true
	}
	body, err := sp.finish()
	if err != nil {
		ss.log.Error("smtp spool", slog.Any("err", err))
		ss.final(tx, func() { ss.reply(451, "4.3.0", "Cannot receive the message now; try again later") })
		return true
	}
	hdr, herr := readHeader(body)
	if !ss.srv.LMTP {
		if code, enh, text := ss.checkFrom(hdr, herr); code != 0 {
			ss.log.Warn("smtp message refused", slog.String("from", tx.from), slog.String("reason", text))
			ss.reply(code, enh, "%s", text)
			return true
		}
	}
	now := time.Now()
	qid := newQueueID()
	var prefix strings.Builder
	prefix.WriteString(ss.received(tx, qid, now))
	if !ss.srv.LMTP && herr == nil {
		// RFC 6409 8.2, 8.3: the only fix-ups made; nothing else changes.
		if hdr.Get("Date") == "" {
			fmt.Fprintf(&prefix, "Date: %s\r\n", now.Format(time.RFC1123Z))
		}
		if hdr.Get("Message-Id") == "" {
			fmt.Fprintf(&prefix, "Message-ID: <%s.%s@%s>\r\n", qid, strings.ToLower(newQueueID()), ss.srv.Hostname)
		}
	}
	boxes, err := ss.inboxes(ctx, tx.rcpts)
	if err == nil {
		msg := store.NewMessage{InternalDate: now, Body: io.MultiReader(strings.NewReader(prefix.String()), body)}
		_, err = ss.srv.Store.Deliver(ctx, boxes, msg)
	}
	rcpts := make([]string, len(tx.rcpts))
	for i, r := range tx.rcpts {
		rcpts[i] = r.addr
	}
	if err != nil {
		ss.log.Error("smtp deliver", slog.String("queue_id", qid), slog.Any("err", err))
		ss.final(tx, func() { ss.reply(451, "4.3.0", "Message not stored; try again later") })
		return true
	}
	ss.log.Info("smtp message accepted", slog.String("queue_id", qid), slog.String("from", tx.from),
		slog.Any("rcpts", rcpts), slog.Int64("size", sp.size), slog.String("auth", ss.authMech))
	ss.final(tx, func() { ss.reply(250, "2.0.0", "Ok: queued as %s", qid) })
	return true
}

// final gives the reply to the end of the data: once for SMTP, and once
// per accepted recipient, in RCPT order, for LMTP (RFC 2033 4.2). Delivery
// is all-or-nothing, so every recipient gets the same answer.
func (ss *session) final(tx *transaction, reply func()) {
	if !ss.srv.LMTP {
		reply()
		return
	}
	for range tx.rcpts {
		reply()
	}
}

// inboxes returns the INBOX of each recipient's account, each once.
func (ss *session) inboxes(ctx context.Context, rcpts []recipient) ([]store.MailboxID, error) {
	seen := map[store.AccountID]bool{}
	var boxes []store.MailboxID
	for _, r := range rcpts {
		if seen[r.account.ID] {
			continue
		}
		seen[r.account.ID] = true
		mb, err := ss.srv.Store.MailboxByName(ctx, r.account.ID, "INBOX")
		if err != nil {
			return nil, fmt.Errorf("submission: INBOX of %s: %w", r.account.Name, err)
		}
		boxes = append(boxes, mb.ID)
	}
	return boxes, nil
}

// checkFrom applies RFC 6409 6.1 to the message: every From: address must
// be the authenticated account's. It returns code 0 when the message may
// go on.
func (ss *session) checkFrom(hdr mail.Header, herr error) (code int, enhanced, text string) {
	if errors.Is(herr, errHeaderTooBig) {
		return 552, "5.3.4", fmt.Sprintf("Header section larger than %d octets", maxHeaderBytes)
	}
	if herr != nil {
		return 550, "5.6.0", "Malformed header section: " + herr.Error()
	}
	from, err := hdr.AddressList("From")
	switch {
	case errors.Is(err, mail.ErrHeaderNotPresent) || err == nil && len(from) == 0:
		return 550, "5.6.0", "The message has no From: field; add one with your address"
	case err != nil:
		return 550, "5.6.0", "Malformed From: field: " + err.Error()
	}
	for _, a := range from {
		if !owns(ss.account, a.Address) {
			return 553, "5.7.1", fmt.Sprintf("From: address <%s> is not yours: use %s", a.Address, addressesOf(ss.account))
		}
	}
	return 0, "", ""
}

// readHeader parses the message's header section, up to maxHeaderBytes.
func readHeader(r io.ReadSeeker) (mail.Header, error) {
	defer r.Seek(0, io.SeekStart)
	br := bufio.NewReader(io.LimitReader(r, maxHeaderBytes+1))
	var b bytes.Buffer
	for {
		line, err := br.ReadSlice('\n')
		b.Write(line)
		if b.Len() > maxHeaderBytes {
			return nil, errHeaderTooBig
		}
		if string(line) == "\r\n" || string(line) == "\n" || errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n\r\n")) {
		b.WriteString("\r\n\r\n") // a message that is all header
	}
	m, err := mail.ReadMessage(&b)
	if err != nil {
		return nil, err
	}
	return m.Header, nil
}

// received renders the trace field added at the top of every message
// (RFC 5321 4.4):
//
//	Stamp = From-domain By-domain Opt-info [CFWS] ";" FWS date-time
//	Opt-info = [Via] [With] [ID] [For] [Additional-Registered-Clauses]
//
// so the RFC 8314 4.3 "tls" clause, an additional registered clause,
// comes after "for" and before the ";". The protocol is RFC 3848's.
func (ss *session) received(tx *transaction, qid string, now time.Time) string {
	sec := ss.conn.Sec
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s (%s)\r\n", ss.helo, addressLiteral(sec.Remote.Addr().String()))
	fmt.Fprintf(&b, "\tby %s (Latch) with %s id %s", ss.srv.Hostname, ss.protocol(), qid)
	if len(tx.rcpts) == 1 { // RFC 5321 4.4: not more, for privacy
		fmt.Fprintf(&b, "\r\n\tfor <%s>", tx.rcpts[0].addr)
	}
	if c := sec.ReceivedClause(); c != "" {
		fmt.Fprintf(&b, "\r\n\t%s", c)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return b.String()
}

// addressLiteral renders an IP address as RFC 5321 4.1.3 does.
func addressLiteral(ip string) string {
	if strings.Contains(ip, ":") {
		return "[IPv6:" + ip + "]"
	}
	return "[" + ip + "]"
}

// protocol names the "with" protocol (RFC 3848; RFC 5321 4.4).
func (ss *session) protocol() string {
	p := "ESMTP"
	switch {
	case ss.srv.LMTP:
		p = "LMTP"
	case !ss.esmtp:
		return "SMTP" // HELO: RFC 3848 registers no variants
	}
	if ss.conn.Sec.TLS {
		p += "S"
	}
	if ss.account != nil {
		p += "A"
	}
	return p
}

// newQueueID returns a random identifier for one message: 13 characters
// of base32.
func newQueueID() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}
