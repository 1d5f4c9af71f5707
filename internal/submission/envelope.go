package submission

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/latchmail/latch/internal/store"
)

// transaction is one mail transaction (RFC 5321 3.3), from MAIL to the end
// of the data.
type transaction struct {
	from  string // "" for the null reverse-path
	utf8  bool   // MAIL had SMTPUTF8: addresses may be UTF-8 (RFC 6531 3.3)
	rcpts []recipient
	spool *spool // BDAT chunks received so far; nil before the first
	bdat  bool   // a BDAT has been received: DATA is out of sequence
}

// recipient is an accepted RCPT: the address as given and its account.
type recipient struct {
	addr    string
	account *store.Account
}

func (ss *session) resetTx() {
	if ss.tx != nil && ss.tx.spool != nil {
		ss.tx.spool.discard()
	}
	ss.tx = nil
}

// mayMail checks what must hold before MAIL; it answers and returns false
// (with the session's fate in goOn) when it does not.
func (ss *session) mayMail() (ok, goOn bool) {
	switch {
	case ss.helo == "":
		return false, ss.bad(503, "5.5.1", "Send EHLO first")
	case ss.tx != nil:
		return false, ss.bad(503, "5.5.1", "Nested MAIL command: finish or RSET the transaction first")
	case ss.srv.LMTP:
		return true, true
	case ss.account == nil && ss.conn.CanStartTLS():
		return false, ss.bad(530, "5.7.0", "Must issue a STARTTLS command first")
	case ss.account == nil:
		return false, ss.bad(530, "5.7.0", "Authentication required")
	case ss.messages >= maxMessages:
		ss.reply(421, "4.7.0", "%s Too many messages in one connection; reconnect to send more", ss.srv.Hostname)
		return false, false
	}
	return true, true
}

// mail answers MAIL FROM (RFC 5321 4.1.1.2, RFC 1870, RFC 6152, RFC 6531).
func (ss *session) mail(arg string) bool {
	if ok, goOn := ss.mayMail(); !ok {
		return goOn
	}
	p, err := parsePath(arg, "FROM:", func(params map[string]string) bool {
		_, ok := params["SMTPUTF8"]
		return ok
	})
	if err != nil {
		return ss.bad(501, "5.5.4", "Syntax: MAIL FROM:<address>: %v", err)
	}
	for k, v := range p.params {
		switch {
		case !ss.esmtp:
			return ss.bad(555, "5.5.4", "Parameters need EHLO")
		case k == "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return ss.bad(501, "5.5.4", "SIZE needs a number of octets")
			}
			if n > ss.srv.maxSize() { // RFC 1870 6.1
				ss.reply(552, "5.3.4", "Message size exceeds fixed maximum message size (%d octets)", ss.srv.maxSize())
				return true
			}
		case k == "BODY":
			if u := strings.ToUpper(v); u != "7BIT" && u != "8BITMIME" {
				return ss.bad(555, "5.5.4", "BODY must be 7BIT or 8BITMIME")
			}
		case k == "SMTPUTF8":
			if v != "" {
				return ss.bad(555, "5.5.4", "SMTPUTF8 takes no value")
			}
		case k == "AUTH" && !ss.srv.LMTP:
			// RFC 4954 5: accepted; the submitter is the authenticated
			// account whatever it says.
		default:
			return ss.bad(555, "5.5.4", "Unsupported parameter %s", k)
		}
	}
	// RFC 6409 6.1: the MSA checks the sender is the submitter's. The
	// null reverse-path (DSNs, MDNs) is let through; the From: field
	// is checked after the data all the same.
	if !ss.srv.LMTP && p.addr != "" && !owns(ss.account, p.addr) {
		ss.log.Warn("smtp sender refused", slog.String("from", p.addr))
		ss.reply(553, "5.7.1", "Sender address <%s> is not yours: use %s", p.addr, addressesOf(ss.account))
		return true
	}
	_, utf8 := p.params["SMTPUTF8"]
	ss.tx = &transaction{from: p.addr, utf8: utf8}
	ss.reply(250, "2.1.0", "Sender ok")
	return true
}

// rcpt answers RCPT TO (RFC 5321 4.1.1.3). Only local recipients are
// accepted: there is no outbound queue yet.
func (ss *session) rcpt(ctx context.Context, arg string) bool {
	if ss.tx == nil {
		return ss.bad(503, "5.5.1", "Send MAIL first")
	}
	p, err := parsePath(arg, "TO:", func(map[string]string) bool { return ss.tx.utf8 })
	if err != nil {
		return ss.bad(501, "5.5.4", "Syntax: RCPT TO:<address>: %v", err)
	}
	if p.addr == "" {
		return ss.bad(501, "5.5.4", "Syntax: RCPT TO:<address>: an address is needed")
	}
	if len(p.params) > 0 {
		return ss.bad(555, "5.5.4", "RCPT parameters are not supported")
	}
	if len(ss.tx.rcpts) >= maxRecipients {
		ss.reply(452, "4.5.3", "Too many recipients; send the rest in another message") // RFC 5321 4.5.3.1.10
		return true
	}
	a, err := ss.srv.Store.AccountByAddress(ctx, p.addr)
	switch {
	case errors.Is(err, store.ErrNotFound):
		switch {
		case ss.isLocalDomain(domainOf(p.addr)):
			ss.reply(550, "5.1.1", "No such user here: <%s>", p.addr)
		default:
			// Decision: honest and permanent until an outbound queue
			// exists; a 4xx would make clients retry for days in vain.
			ss.reply(550, "5.7.1", "Delivery to other domains is not available yet: <%s>", p.addr)
		}
		return true
	case err != nil:
		ss.log.Error("smtp rcpt", slog.Any("err", err))
		ss.reply(451, "4.3.0", "Cannot look up the recipient now; try again later")
		return true
	}
	ss.tx.rcpts = append(ss.tx.rcpts, recipient{addr: p.addr, account: a})
	ss.reply(250, "2.1.5", "Recipient ok")
	return true
}

// isLocalDomain reports whether domain is served here (the configured
// mail domains, or the host name itself), so that an unknown recipient
// there is "no such user" rather than "another domain".
func (ss *session) isLocalDomain(domain string) bool {
	return strings.EqualFold(domain, ss.srv.Hostname) ||
		slices.ContainsFunc(ss.srv.Domains, func(d string) bool { return strings.EqualFold(d, domain) })
}

// owns reports whether addr is the account's address or one of its
// aliases, compared case-insensitively.
func owns(a *store.Account, addr string) bool {
	if strings.EqualFold(a.Address, addr) {
		return true
	}
	for _, al := range a.Aliases {
		if strings.EqualFold(al, addr) {
			return true
		}
	}
	return false
}

// addressesOf lists the addresses an account may send from, for replies.
func addressesOf(a *store.Account) string {
	if len(a.Aliases) == 0 {
		return "<" + a.Address + ">"
	}
	return "<" + a.Address + "> or an alias (" + strings.Join(a.Aliases, ", ") + ")"
}
