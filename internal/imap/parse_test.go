package imap

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/latchmail/latch/internal/store"
)

func newTestParser(in string) (*parser, *int) {
	conts := 0
	return newParser(bufio.NewReader(strings.NewReader(in)), func() error { conts++; return nil }), &conts
}

func TestParserStrings(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		conts   int
		wantErr bool
	}{
		{"atom ", "atom", 0, false},
		{"INBOX] ", "INBOX]", 0, false},
		{`"quoted \"x\" \\ y" `, `quoted "x" \ y`, 0, false},
		{"{5}\r\nhello ", "hello", 1, false},
		{"{5+}\r\nhello ", "hello", 0, false},
		{"{0}\r\n ", "", 1, false},
		{`"unterminated`, "", 0, true},
		{"\"bad\\q\" ", "", 0, true},
		{"\"two\r\nlines\" ", "", 0, true},
		{"{99999999}\r\n", "", 0, true},
		{"{5\r\nhello", "", 0, true},
		{"(list) ", "", 0, true},
		{"{12345678901234567890}\r\n", "", 0, true},
	}
	for _, tt := range tests {
		p, conts := newTestParser(tt.in)
		got, err := p.astring()
		if (err != nil) != tt.wantErr || got != tt.want || *conts != tt.conts {
			t.Errorf("astring(%q) = %q, %v (%d continuations); want %q, error %v (%d)", tt.in, got, err, *conts, tt.want, tt.wantErr, tt.conts)
		}
	}
}

func TestParserSeqSet(t *testing.T) {
	tests := []struct {
		in   string
		want seqSet
		err  bool
	}{
		{"1 ", seqSet{{lo: 1, hi: 1}}, false},
		{"1:* ", seqSet{{lo: 1, hi: 0}}, false},
		{"*:4,7,9:8 ", seqSet{{lo: 0, hi: 4}, {lo: 7, hi: 7}, {lo: 9, hi: 8}}, false},
		{"4294967295 ", seqSet{{lo: 4294967295, hi: 4294967295}}, false},
		{"0 ", nil, true},
		{"4294967296 ", nil, true},
		{"1, ", nil, true},
		{"$ ", seqSet{savedRange}, false},
		{"$,1 ", seqSet{savedRange}, false}, // "$" stands alone: the rest is left to the caller, which wants SP
		{"1:: ", nil, true},
	}
	for _, tt := range tests {
		p, _ := newTestParser(tt.in)
		got, err := p.seqSet()
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("seqSet(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestResolve(t *testing.T) {
	sel := &selection{uids: []store.UID{2, 4, 6, 8}, saved: []store.UID{4, 5, 8}}
	tests := []struct {
		set  seqSet
		uid  bool
		want []int
		err  bool
	}{
		{seqSet{{lo: 1, hi: 0}}, false, []int{0, 1, 2, 3}, false},
		{seqSet{{lo: 0, hi: 0}}, false, []int{3}, false},
		{seqSet{{lo: 3, hi: 2}, {lo: 2, hi: 2}}, false, []int{1, 2}, false},
		{seqSet{{lo: 5, hi: 5}}, false, nil, true},
		{seqSet{{lo: 3, hi: 6}}, true, []int{1, 2}, false},
		{seqSet{{lo: 9, hi: 0}}, true, []int{3}, false}, // n:* includes the highest UID
		{seqSet{{lo: 100, hi: 200}}, true, nil, false},
		{seqSet{savedRange}, false, []int{1, 3}, false}, // "$": saved UIDs 4, 8 and the expunged 5
	}
	for _, tt := range tests {
		got, err := sel.resolve(tt.set, tt.uid)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("resolve(%v, uid=%v) = %v, %v; want %v, error %v", tt.set, tt.uid, got, err, tt.want, tt.err)
		}
	}
}

func TestParserLimits(t *testing.T) {
	deep := strings.Repeat("(", maxDepth+1) + strings.Repeat(")", maxDepth+1)
	tests := []struct {
		name string
		in   string
	}{
		{"nesting", "a LIST " + deep + " \"\" *\r\n"},
		{"line length", "a NOOP" + strings.Repeat(" ", maxLine) + "\r\n"},
		{"arguments", "a SEARCH" + strings.Repeat(" ALL", maxArgs+1) + "\r\n"},
		{"literal", "a LOGIN {99999999+}\r\n"},
	}
	for _, tt := range tests {
		ss := fuzzSession(tt.in)
		ss.state = authenticated
		_, _, err := ss.readCommand()
		var be *badError
		var le *literalError
		if !errors.As(err, &be) && !errors.As(err, &le) && !errors.Is(err, errTooBig) {
			t.Errorf("%s: error %v, want a BAD", tt.name, err)
		}
	}
}

func TestModifiedUTF7(t *testing.T) {
	tests := []struct{ utf8, mutf7 string }{
		{"INBOX", "INBOX"},
		{"~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"},
		{"a&b", "a&-b"},
		{"Entwürfe", "Entw&APw-rfe"},
	}
	for _, tt := range tests {
		if got := encodeMUTF7(tt.utf8); got != tt.mutf7 {
			t.Errorf("encode(%q) = %q, want %q", tt.utf8, got, tt.mutf7)
		}
		if got, ok := decodeMUTF7(tt.mutf7); !ok || got != tt.utf8 {
			t.Errorf("decode(%q) = %q, %v; want %q", tt.mutf7, got, ok, tt.utf8)
		}
	}
	for _, bad := range []string{"&", "&Jjo", "&AGE-", "x\x80", "&Jjo!-"} {
		if got, ok := decodeMUTF7(bad); ok {
			t.Errorf("decode(%q) = %q, want failure", bad, got)
		}
	}
}

// fuzzSession is a session over in with no connection: enough to parse.
func fuzzSession(in string) *session {
	ss := &session{srv: &Server{}, state: notAuthenticated | authenticated | selected}
	ss.br = bufio.NewReader(strings.NewReader(in))
	ss.bw = bufio.NewWriter(io.Discard)
	ss.p = newParser(ss.br, func() error { return nil })
	return ss
}

// FuzzParseCommands feeds arbitrary input to the command reader: it must
// neither panic nor stop making progress, and must recover from every
// malformed command the way the session does.
func FuzzParseCommands(f *testing.F) {
	for _, s := range []string{
		"a1 LOGIN {5}\r\nalice \"pass\"\r\n",
		"a2 FETCH 1:*,3 (FLAGS BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BINARY[1.2])\r\n",
		"a3 UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (SEEN FROM x) NOT 1:5 HEADER Subject {3+}\r\nabc\r\n",
		"a4 APPEND INBOX (\\Seen) \" 1-Jan-2020 00:00:00 +0000\" {5+}\r\nhello\r\n",
		"a5 LIST (SUBSCRIBED) \"\" (INBOX* %) RETURN (CHILDREN STATUS (MESSAGES SIZE))\r\n",
		"a6 STORE 1 +FLAGS.SILENT (\\Deleted kw)\r\n",
		"a7 CREATE x (USE (\\Drafts))\r\na8 ID (\"name\" NIL)\r\n",
		"a9 SELECT \"&ZeVnLIqe-\"\r\n",
		"+bad\r\n\r\n{3+}\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ss := fuzzSession(string(in))
		for n := 0; ; n++ {
			if n > len(in)+1 {
				t.Fatalf("no progress after %d commands", n)
			}
			ss.p.begin()
			_, _, err := ss.readCommand()
			if err == nil && ss.p.pending > 0 {
				// APPEND: the session streams the message; skip it.
				if _, err = ss.br.Discard(int(ss.p.pending)); err == nil {
					err = ss.p.crlf()
				}
			}
			if err != nil {
				if err = ss.parseFailed("*", err); err != nil {
					return // end of input, or the session would end
				}
			}
		}
	})
}
