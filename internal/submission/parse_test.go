package submission

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	utf8Param := func(p map[string]string) bool { _, ok := p["SMTPUTF8"]; return ok }
	tests := []struct {
		arg, keyword string
		addr         string
		params       map[string]string
		wantErr      bool
	}{
		{"FROM:<a@b.example>", "FROM:", "a@b.example", nil, false},
		{"from: <a@b.example>", "FROM:", "a@b.example", nil, false},
		{"FROM:<>", "FROM:", "", nil, false},
		{"FROM:<a@b> SIZE=10 body=8bitmime", "FROM:", "a@b", map[string]string{"SIZE": "10", "BODY": "8bitmime"}, false},
		{"FROM:<@x.example,@y.example:a@b>", "FROM:", "a@b", nil, false},
		{`FROM:<"odd > quote"@b>`, "FROM:", `"odd > quote"@b`, nil, false},
		{`FROM:<"a\"b"@b>`, "FROM:", `"a\"b"@b`, nil, false},
		{"FROM:<a@[192.0.2.1]>", "FROM:", "a@[192.0.2.1]", nil, false},
		{"FROM:<\u00e9@b> SMTPUTF8", "FROM:", "\u00e9@b", map[string]string{"SMTPUTF8": ""}, false},
		{"TO:<a@b>", "TO:", "a@b", nil, false},
		{"FROM:<\u00e9@b>", "FROM:", "", nil, true},
		{"FROM:a@b", "FROM:", "", nil, true},
		{"FROM:<a@b", "FROM:", "", nil, true},
		{"FROM:<a@b>x", "FROM:", "", nil, true},
		{"FROM:<ab>", "FROM:", "", nil, true},
		{"FROM:<a..b@c>", "FROM:", "", nil, true},
		{"FROM:<a b@c>", "FROM:", "", nil, true},
		{"FROM:<a@-b>", "FROM:", "", nil, true},
		{"FROM:<a@b..c>", "FROM:", "", nil, true},
		{"FROM:<a@[1 2]>", "FROM:", "", nil, true},
		{"FROM:<@x:>", "FROM:", "", nil, true},
		{"FROM:<a@b> SIZE=1 SIZE=2", "FROM:", "", nil, true},
		{"FROM:<a@b> =x", "FROM:", "", nil, true},
		{"TO:<a@b>", "FROM:", "", nil, true},
		{"FROM:<" + strings.Repeat("a", 65) + "@b>", "FROM:", "", nil, true},
		{"FROM:<a@b\x00>", "FROM:", "", nil, true},
	}
	for _, tt := range tests {
		p, err := parsePath(tt.arg, tt.keyword, utf8Param)
		if (err != nil) != tt.wantErr {
			t.Errorf("parsePath(%q) error %v, want error %v", tt.arg, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if p.addr != tt.addr || len(p.params) != len(tt.params) {
			t.Errorf("parsePath(%q) = %q %v, want %q %v", tt.arg, p.addr, p.params, tt.addr, tt.params)
		}
		for k, v := range tt.params {
			if p.params[k] != v {
				t.Errorf("parsePath(%q) param %s = %q, want %q", tt.arg, k, p.params[k], v)
			}
		}
	}
}

func TestValidHelo(t *testing.T) {
	for s, want := range map[string]bool{
		"client.example": true, "localhost": true, "[192.0.2.1]": true, "[IPv6:::1]": true,
		"": false, "a b": false, "bad_name": false, "a\r\nb": false, "[x": false, "caf\u00e9.example": false,
		"-a.example": false, "a.": false,
	} {
		if got := validHelo(s); got != want {
			t.Errorf("validHelo(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestReadDotData(t *testing.T) {
	long := strings.Repeat("x", 999)
	tests := []struct {
		name, in, stored string
		max              int64
		refused          error
		rest             string // what is left for the next command
	}{
		{"plain", "a\r\nb\r\n.\r\nNOOP\r\n", "a\r\nb\r\n", 100, nil, "NOOP\r\n"},
		{"empty", ".\r\n", "", 100, nil, ""},
		{"unstuffed", "..a\r\n.\r\n\r\n", ".a\r\n", 100, nil, "\r\n"},
		{"dot inside", "a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n", 100, nil, ""},
		{"exactly the limit", "1234\r\n.\r\n", "1234\r\n", 6, nil, ""},
		{"over the limit", "12345\r\n.\r\nNOOP\r\n", "", 6, errTooBig, "NOOP\r\n"},
		{"long line", long + "\r\n.\r\nNOOP\r\n", "", 2000, errTextLine, "NOOP\r\n"},
		{"bare LF end is no end", "a\n.\nb\r\n.\r\n", "", 100, errBareLF, ""},
		{"bare CR", "a\rb\r\n.\r\n", "", 100, errBareLF, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &Server{MaxMessageSize: tt.max, SpoolDir: t.TempDir()}
			sp, err := srv.newSpool()
			if err != nil {
				t.Fatal(err)
			}
			defer sp.discard()
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			if err := readDotData(r, sp, func() {}); err != nil {
				t.Fatal(err)
			}
			if !errors.Is(sp.refused, tt.refused) || (tt.refused == nil) != (sp.refused == nil) {
				t.Fatalf("refused %v, want %v", sp.refused, tt.refused)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != tt.rest {
				t.Errorf("left %q, want %q", rest, tt.rest)
			}
			if tt.refused != nil {
				return
			}
			sr, err := sp.finish()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(sr)
			if string(b) != tt.stored {
				t.Errorf("stored %q, want %q", b, tt.stored)
			}
		})
	}
	t.Run("no end marker", func(t *testing.T) {
		srv := &Server{SpoolDir: t.TempDir()}
		sp, err := srv.newSpool()
		if err != nil {
			t.Fatal(err)
		}
		defer sp.discard()
		if err := readDotData(bufio.NewReader(strings.NewReader("a\r\n")), sp, func() {}); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("got %v, want io.ErrUnexpectedEOF", err)
		}
		if _, err := os.Stat(sp.f.Name()); err != nil {
			t.Errorf("spool file: %v", err)
		}
	})
}

// FuzzCommand feeds arbitrary command lines to the parsers: they must not
// panic, and what they accept must be safe to put in a header field.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<a@b.example> SIZE=10 BODY=8BITMIME SMTPUTF8",
		"RCPT TO:<\"x y\"@[IPv6:::1]>",
		"MAIL FROM:<@a,@b:c@d>",
		"EHLO [192.0.2.1]",
		"BDAT 100 LAST",
		"MAIL FROM:<\"\\>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		verb, arg := parseCommand(line)
		if strings.ContainsAny(verb, " ") {
			t.Fatalf("verb %q contains a space", verb)
		}
		if validHelo(arg) && strings.ContainsAny(arg, " \r\n()") {
			t.Fatalf("HELO name %q accepted", arg)
		}
		for _, kw := range []string{"FROM:", "TO:"} {
			p, err := parsePath(arg, kw, func(map[string]string) bool { return true })
			if err != nil {
				continue
			}
			if strings.ContainsAny(p.addr, "\r\n<>") && !strings.HasPrefix(p.addr, "\"") {
				t.Fatalf("address %q accepted from %q", p.addr, arg)
			}
			if strings.ContainsAny(p.addr, "\r\n\x00") {
				t.Fatalf("address %q with control characters accepted from %q", p.addr, arg)
			}
		}
	})
}
