package sqlite

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/store/storetest"
)

func openTest(t *testing.T, dir string) *Store {
	t.Helper()
	return openTestOpts(t, dir, Options{})
}

// openTestOpts opens a store closed when the test ends, logging to the
// test's output.
func openTestOpts(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	s, err := Open(dir, &opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// syncModes are the two ways of making blobs durable; the suites run with
// both.
var syncModes = []struct {
	name string
	opts Options
}{
	{"syncfs", Options{}},
	{"eachfile", Options{SyncEachFile: true}},
}

func TestConformance(t *testing.T) {
	for _, mode := range syncModes {
		t.Run(mode.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store { return openTestOpts(t, t.TempDir(), mode.opts) })
		})
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	storetest.RunReopen(t,
		func(t *testing.T) store.Store { return openTest(t, dir) },
		func(t *testing.T, s store.Store) store.Store {
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openTest(t, dir)
		})
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if s2, err := Open(dir, nil); err == nil {
		s2.Close()
		t.Fatal("second Open of an open store succeeded")
	} else if !strings.Contains(err.Error(), "already open") {
		t.Errorf("second Open: %v; want it to say the store is already open", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	openTest(t, dir) // the lock went with Close
}

func TestSchemaTooNew(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.write(t.Context(), func(x *txn) error { return x.exec("PRAGMA user_version = 99") }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := Open(dir, nil); err == nil {
		s2.Close()
		t.Fatal("Open of a newer schema succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open: %v; want it to say the schema is newer", err)
	}
}

// blobFiles counts the files under blobs/.
func blobFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dir, "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBlobSharing(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openTest(t, dir)
	a := &store.Account{Name: "a", Address: "a@example.org"}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	var boxes []store.MailboxID
	for _, name := range []string{"INBOX", "Copies", "Moved"} {
		mb, err := s.CreateMailbox(ctx, a.ID, name, "")
		if err != nil {
			t.Fatal(err)
		}
		boxes = append(boxes, mb.ID)
	}
	msgs, err := s.Deliver(ctx, boxes[:2], store.NewMessage{Body: strings.NewReader("shared")})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		do    func() error
		files int
	}{
		{"deliver to two", func() error { return nil }, 1},
		{"copy", func() error { _, _, err := s.Copy(ctx, boxes[0], []store.UID{msgs[0].UID}, boxes[1]); return err }, 1},
		{"move", func() error { _, _, err := s.Move(ctx, boxes[0], []store.UID{msgs[0].UID}, boxes[2]); return err }, 1},
		{"expunge one copy", func() error { _, err := s.Expunge(ctx, boxes[1], []store.UID{msgs[1].UID}); return err }, 1},
		{"delete mailbox", func() error { return s.DeleteMailbox(ctx, boxes[2]) }, 1},
		{"expunge the last", func() error {
			_, err := s.Expunge(ctx, boxes[1], []store.UID{msgs[1].UID + 1})
			return err
		}, 0},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if n := blobFiles(t, dir); n != step.files {
			t.Errorf("%s: %d blob files, want %d", step.name, n, step.files)
		}
	}
}

func TestGarbageAtOpen(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openTest(t, dir)
	a := &store.Account{Name: "a", Address: "a@example.org"}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	mb, err := s.CreateMailbox(ctx, a.ID, "INBOX", "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.Append(ctx, mb.ID, store.NewMessage{Body: strings.NewReader("kept")})
	if err != nil {
		t.Fatal(err)
	}
	// A failed append removes its blob at once.
	if _, err := s.Append(ctx, mb.ID+1, store.NewMessage{Body: strings.NewReader("refused")}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Append to missing mailbox: %v", err)
	}
	if n := blobFiles(t, dir); n != 1 {
		t.Errorf("%d blob files after a refused append, want 1", n)
	}
	s.Close()

	// What a crash leaves: a half-written temporary file and a blob
	// renamed into place whose row was never committed.
	leftovers := []string{
		filepath.Join(dir, "tmp", "blob-123"),
		s.blobPath(0x1234567),
	}
	for _, p := range leftovers {
		if err := os.WriteFile(p, []byte("crash"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openTest(t, dir)
	for _, p := range leftovers {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open: %v", p, err)
		}
	}
	if n := blobFiles(t, dir); n != 1 {
		t.Errorf("%d blob files after Open, want 1", n)
	}
	r, err := s.Open(ctx, mb.ID, m.UID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if b, _ := io.ReadAll(r); string(b) != "kept" {
		t.Errorf("message after Open: %q", b)
	}
	// New blobs do not reuse the leftover's ID.
	if next := s.nextBlob.Load(); next < 0x1234567 {
		t.Errorf("next blob ID %x, below leftover %x", next, 0x1234567)
	}
}

// TestBatchIsolation runs requests in one batch, as the committer does when
// they arrive together, and checks that a failing one rolls back alone.
func TestBatchIsolation(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir())
	a := &store.Account{Name: "a", Address: "a@example.org"}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	create := func(name string, fail error) *writeReq {
		return &writeReq{ctx: ctx, done: make(chan error, 1), fn: func(x *txn) error {
			err := x.exec(`INSERT INTO mailboxes(account_id, name, special_use, subscribed, uidvalidity, uidnext, highestmodseq)
				VALUES(?, ?, '', 0, 1, 1, 1)`, a.ID, name)
			return errors.Join(err, fail)
		}}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	late := create("late", nil)
	late.ctx = canceled
	batch := []*writeReq{create("A", nil), create("B", boom), create("C", nil), create("A", nil), late}
	// The committer is idle: nothing else writes in this test.
	s.runBatch(batch)
	want := []func(error) bool{
		func(err error) bool { return err == nil },
		func(err error) bool { return errors.Is(err, boom) },
		func(err error) bool { return err == nil },
		isUniqueViolation,
		func(err error) bool { return errors.Is(err, context.Canceled) },
	}
	for i, r := range batch {
		if err := <-r.done; !want[i](err) {
			t.Errorf("request %d: unexpected result %v", i, err)
		}
	}
	var names []string
	l, err := s.ListMailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range l {
		names = append(names, mb.Name)
	}
	if want := []string{"A", "C"}; !slices.Equal(names, want) {
		t.Errorf("mailboxes after batch %q, want %q", names, want)
	}
}

func TestCloseWakesWatchers(t *testing.T) {
	s := openTest(t, t.TempDir())
	ch := s.Watch(1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Error("Close left a Watch channel open")
	}
	if _, err := s.Append(t.Context(), 1, store.NewMessage{Body: strings.NewReader("x")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v, want ErrClosed", err)
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		name  string
		have  []string
		op    store.FlagOp
		flags []string
		want  []string
	}{
		{"system flags ignore case", nil, store.FlagsAdd, []string{`\seen`, `\DELETED`}, []string{`\Deleted`, `\Seen`}},
		{"keywords ignore case", []string{"$Junk"}, store.FlagsAdd, []string{"$JUNK", "$junk"}, []string{"$Junk"}},
		{"remove ignores case", []string{"$Junk", `\Seen`}, store.FlagsRemove, []string{"$jUNK", `\SEEN`}, nil},
		{"duplicates once", nil, store.FlagsReplace, []string{"a", "b", "A", `\Draft`, `\draft`}, []string{`\Draft`, "a", "b"}},
		{"other backslash flags are kept", nil, store.FlagsAdd, []string{`\Custom`}, []string{`\Custom`}},
	}
	for _, tt := range tests {
		have, err := parseFlags(tt.have)
		if err != nil {
			t.Fatal(err)
		}
		g, err := parseFlags(tt.flags)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := have.apply(tt.op, g)
		// The stored form reads back the same.
		back := decodeFlags(got.sys, got.encodeKeywords())
		if l := back.list(); !slices.Equal(l, tt.want) && !(len(l) == 0 && len(tt.want) == 0) {
			t.Errorf("%s: %q, want %q", tt.name, l, tt.want)
		}
	}
	for _, bad := range []string{"", "two words", "tab\there", "nl\n", "\x00"} {
		if _, err := parseFlags([]string{bad}); err == nil {
			t.Errorf("parseFlags(%q) succeeded", bad)
		}
	}
}
