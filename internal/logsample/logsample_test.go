package logsample

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	now := time.Unix(0, 0)
	l := New(time.Minute, 3)
	l.now = func() time.Time { return now }
	steps := []struct {
		advance    time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0}, {0, true, 0}, {time.Second, true, 0},
		{0, false, 0}, {0, false, 0}, // over the limit in this window
		{time.Minute, true, 2}, // new window: reports what was held back
		{0, true, 0}, {0, true, 0}, {0, false, 0},
		{2 * time.Minute, true, 1},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		if ok, n := l.allow(); ok != st.ok || n != st.suppressed {
			t.Fatalf("step %d: allow() = %v, %d; want %v, %d", i, ok, n, st.ok, st.suppressed)
		}
	}
}

func TestLogDemotesToDebug(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := New(time.Hour, 1)
	l.Log(log, slog.LevelWarn, "first")
	l.Log(log, slog.LevelWarn, "second")
	out := buf.String()
	if !strings.Contains(out, "level=WARN msg=first") || !strings.Contains(out, "level=DEBUG msg=second") {
		t.Fatalf("log:\n%s", out)
	}
}
