package interop

import (
	"fmt"
	"strings"
)

// testMessages are stored as they are written here and cover what a POP3
// server must carry unchanged (RFC 1939 section 3): lines starting with
// ".", a line that is only ".", 8-bit text, bare-LF line ends, no final
// line end, and a body larger than one TLS record.
var testMessages = []string{
	"From: a@example.org\r\nTo: alice@localhost\r\nSubject: plain\r\nMessage-ID: <1@example.org>\r\n\r\nHello, Alice.\r\nSecond line.\r\nThird line.\r\n",
	"From: b@example.org\r\nSubject: dots\r\nMessage-ID: <2@example.org>\r\n\r\n.\r\n..\r\n.leading dot\r\n\r\n.\r\nend\r\n",
	"From: c@example.org\r\nSubject: =?utf-8?q?=C3=BCmlaut?=\r\nMessage-ID: <3@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße aus Köln\r\nΚαλημέρα\r\n",
	"From: d@example.org\nSubject: bare LF\nMessage-ID: <4@example.org>\n\nstored with LF line ends\n.dot after LF\n",
	"From: e@example.org\r\nSubject: no final CRLF\r\nMessage-ID: <5@example.org>\r\n\r\nlast line without CRLF",
	bigMessage(),
}

// bigMessage is about 200 KB: many TLS records, many socket writes.
func bigMessage() string {
	var b strings.Builder
	b.WriteString("From: f@example.org\r\nSubject: big\r\nMessage-ID: <6@example.org>\r\n\r\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "%05d %s\r\n", i, strings.Repeat("abcdefghij", 6))
	}
	return b.String()
}

// onWire is a message as POP3 carries it: every line ended by CRLF,
// whatever the store holds (RFC 1939 section 3), before dot-stuffing.
func onWire(m string) string {
	m = strings.ReplaceAll(m, "\r\n", "\n")
	if !strings.HasSuffix(m, "\n") {
		m += "\n"
	}
	return strings.ReplaceAll(m, "\n", "\r\n")
}

// withLF is a message with LF line ends, as Unix mail tools hand it on.
func withLF(m string) string {
	return strings.ReplaceAll(onWire(m), "\r\n", "\n")
}

// subject returns a message's Subject field value.
func subject(m string) string {
	for _, line := range strings.Split(strings.ReplaceAll(m, "\r\n", "\n"), "\n") {
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			return v
		}
		if line == "" {
			break
		}
	}
	return ""
}

// subjects lists messages by subject, for failure messages.
func subjects(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, subject(m))
	}
	return out
}
