package store

import "testing"

func TestLineCounter(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"a\r\n", 3},
		{"a\n", 3},
		{"a\nb\n", 6},
		{"a\r\nb", 6},
		{"a\r", 3},
		{"\n\n", 4},
		{"a\rb\r\n", 5},
	}
	for _, tt := range tests {
		// Every split point, so that CR and LF may fall in different writes.
		for cut := 0; cut <= len(tt.in); cut++ {
			var c LineCounter
			c.Write([]byte(tt.in[:cut]))
			c.Write([]byte(tt.in[cut:]))
			if got := c.Size(); got != tt.want {
				t.Errorf("%q split at %d: size %d, want %d", tt.in, cut, got, tt.want)
			}
		}
	}
}
