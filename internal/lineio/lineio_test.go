package lineio

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", 100)
	in := "short\r\n" + long + "\r\nbare\nnext\r\n" + strings.Repeat("y", 60) + "\r\nlast"
	// A 16-octet buffer makes long lines span many ReadSlice calls.
	r := bufio.NewReaderSize(strings.NewReader(in), 16)
	want := []struct {
		line string
		err  error
	}{
		{"short", nil},
		{"", ErrTooLong},
		{"bare", nil},
		{"next", nil},
		{strings.Repeat("y", 60), nil}, // 62 octets with CRLF: within 64
		{"", io.EOF},                   // "last" never ended
	}
	for i, w := range want {
		got, err := ReadLine(r, 64)
		if got != w.line || !errors.Is(err, w.err) {
			t.Fatalf("line %d: %q, %v; want %q, %v", i, got, err, w.line, w.err)
		}
	}
}
