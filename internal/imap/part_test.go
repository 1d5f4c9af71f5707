package imap

import "testing"

func TestParsePart(t *testing.T) {
	tests := []struct {
		name string
		msg  string
		body string // BODY of the message
		text string // the body bytes of the root
	}{
		{"crlf", "Subject: x\r\n\r\nhi\r\n", `("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 4 1)`, "hi\r\n"},
		{"lf only", "Subject: x\n\nhi\nthere", `("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 8 2)`, "hi\nthere"},
		{"header only", "Subject: x\r\nContent-Type: text/html", `("TEXT" "HTML" NIL NIL NIL "7BIT" 0 0)`, ""},
		{"empty header", "\r\nbody", `("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 4 1)`, "body"},
		{"empty", "", `("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)`, ""},
		{"multipart without parts", "Content-Type: multipart/mixed; boundary=z\r\n\r\nno parts here\r\n",
			`("TEXT" "PLAIN" ("BOUNDARY" "z") NIL NIL "7BIT" 15 1)`, "no parts here\r\n"},
		{"digest", "Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: in\r\n\r\nx\r\n--d--\r\n",
			`(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 16 (NIL "in" NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 1 1) 3) "DIGEST")`,
			"--d\r\n\r\nSubject: in\r\n\r\nx\r\n--d--\r\n"},
		{"no closing delimiter", "Content-Type: multipart/alternative; boundary=q\r\n\r\n--q\r\n\r\na\r\n--q\r\n\r\nb",
			`(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 1 1)("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 1 1) "ALTERNATIVE")`,
			"--q\r\n\r\na\r\n--q\r\n\r\nb"},
	}
	for _, tt := range tests {
		data := []byte(tt.msg)
		p := parsePart(data, 0, len(data), "text/plain; charset=us-ascii", 0)
		if got := p.bodyStructure(data, false); got != tt.body {
			t.Errorf("%s: BODY\n got %s\nwant %s", tt.name, got, tt.body)
		}
		if got := string(data[p.bodyStart:p.bodyEnd]); got != tt.text {
			t.Errorf("%s: text %q, want %q", tt.name, got, tt.text)
		}
	}
}

// Deep nesting is bounded, not followed.
func TestParsePartDepth(t *testing.T) {
	var msg string
	for range 1000 {
		msg = "Content-Type: message/rfc822\r\n\r\n" + msg
	}
	data := []byte(msg)
	p := parsePart(data, 0, len(data), "text/plain", 0)
	depth := 0
	for ; p.msg != nil; p = p.msg {
		depth++
	}
	if depth != maxPartDepth {
		t.Errorf("followed %d levels, want %d", depth, maxPartDepth)
	}
}
