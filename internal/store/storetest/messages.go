package storetest

import (
	"bytes"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
)

func testAppendBytes(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	every := make([]byte, 512)
	for i := range every {
		every[i] = byte(i)
	}
	big := make([]byte, 3<<20+17) // several MiB, not a multiple of any buffer
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	tests := []struct {
		name string
		body []byte
	}{
		{"empty", nil},
		{"no trailing CRLF", []byte("Subject: hi\r\n\r\nno line end")}, // LineSize: +2
		{"bare LF and CR", []byte("Subject: hi\n\nline\rline\n\n")},    // LineSize: +4
		{"8-bit", []byte("Subject: Gr\xfc\xdfe\r\n\r\nUTF-8: Grüße, Latin-1: \xe9\xe8\xff\r\n")},
		{"NUL and every byte", every},
		{"multi-MiB binary", big},
	}
	var size int64
	for i, tt := range tests {
		fl := []string{`\Seen`, "$Label" + strings.Repeat("x", i)}
		m, err := s.Append(ctx, mb.ID, store.NewMessage{Flags: fl, InternalDate: date(i + 1), Body: struct{ io.Reader }{bytes.NewReader(tt.body)}})
		if err != nil {
			t.Fatalf("%s: Append: %v", tt.name, err)
		}
		want := store.Message{UID: m.UID, ModSeq: m.ModSeq, Flags: fl, InternalDate: date(i + 1), Size: int64(len(tt.body)), LineSize: lineSize(tt.body)}
		if d := diffMessage(m, want); d != "" {
			t.Errorf("%s: Append returned %s", tt.name, d)
		}
		size += int64(len(tt.body))
		if got := readMsg(t, s, mb.ID, m.UID); !bytes.Equal(got, tt.body) {
			t.Errorf("%s: read back %d bytes, want %d, differing from byte %d", tt.name, len(got), len(tt.body), firstDiff(got, tt.body))
		}
		checkMessages(t, tt.name+": List", list(t, s, mb.ID, m.UID, m.UID), []store.Message{want})

		// Open is seekable.
		r, err := s.Open(ctx, mb.ID, m.UID)
		if err != nil {
			t.Fatal(err)
		}
		half := int64(len(tt.body) / 2)
		if _, err := r.Seek(half, io.SeekStart); err != nil {
			t.Errorf("%s: Seek: %v", tt.name, err)
		} else if rest, err := io.ReadAll(r); err != nil || !bytes.Equal(rest, tt.body[half:]) {
			t.Errorf("%s: after Seek(%d) read %d bytes, %v", tt.name, half, len(rest), err)
		}
		r.Close()
	}
	if st := status(t, s, mb.ID); st.Size != size || st.Messages != uint32(len(tests)) {
		t.Errorf("Status: %d messages of %d bytes, want %d of %d", st.Messages, st.Size, len(tests), size)
	}

	// A zero internal date means now.
	before := time.Now().Truncate(time.Second)
	m, err := s.Append(ctx, mb.ID, store.NewMessage{Body: onlyReader("x")})
	if err != nil {
		t.Fatal(err)
	}
	if after := time.Now(); m.InternalDate.Before(before) || m.InternalDate.After(after) {
		t.Errorf("InternalDate of append without one = %v, want between %v and %v", m.InternalDate, before, after)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// failingReader yields some bytes, then an error.
func failingReader(err error) io.Reader {
	return io.MultiReader(strings.NewReader("Subject: cut short\r\n"), &errReader{err})
}

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }

func testAppendBodyError(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	other := newMailbox(t, s, mb.Account, "Other")
	boom := errors.New("connection reset")
	_, err := s.Append(ctx, mb.ID, store.NewMessage{Body: failingReader(boom)})
	if err == nil {
		t.Error("Append with a failing body succeeded")
	}
	_, err = s.Deliver(ctx, []store.MailboxID{mb.ID, other.ID}, store.NewMessage{Body: failingReader(boom)})
	if err == nil {
		t.Error("Deliver with a failing body succeeded")
	}
	for _, id := range []store.MailboxID{mb.ID, other.ID} {
		if st := status(t, s, id); st.Messages != 0 || st.Size != 0 {
			t.Errorf("after failed appends: %d messages of %d bytes", st.Messages, st.Size)
		}
	}
	m := appendMsg(t, s, mb.ID, "fine")
	checkMessages(t, "List", listAll(t, s, mb.ID), []store.Message{m})
}

func testUIDsAndModSeqs(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	other := newMailbox(t, s, mb.Account, "Other")
	var last []store.UID // UIDs added by the latest step
	var inOther []store.UID
	add := func(m store.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		last = append(last, m.UID)
	}
	addOther := func() {
		t.Helper()
		m := appendMsg(t, s, other.ID, "other")
		inOther = append(inOther, m.UID)
	}
	newest := func() store.UID {
		l := listAll(t, s, mb.ID)
		return l[len(l)-1].UID
	}
	steps := []struct {
		name string
		do   func()
	}{
		{"append", func() { add(s.Append(ctx, mb.ID, store.NewMessage{Body: onlyReader("1")})) }},
		{"append seen", func() {
			add(s.Append(ctx, mb.ID, store.NewMessage{Flags: []string{`\Seen`}, Body: onlyReader("2")}))
		}},
		{"flag", func() {
			if _, _, err := s.StoreFlags(ctx, mb.ID, []store.UID{newest()}, store.FlagsAdd, []string{`\Flagged`}, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"expunge newest", func() {
			if _, err := s.Expunge(ctx, mb.ID, []store.UID{newest()}); err != nil {
				t.Fatal(err)
			}
		}},
		{"append after expunge", func() { add(s.Append(ctx, mb.ID, store.NewMessage{Body: onlyReader("3")})) }},
		{"copy in", func() {
			addOther()
			addOther()
			_, to, err := s.Copy(ctx, other.ID, inOther, mb.ID)
			if err != nil {
				t.Fatal(err)
			}
			last = to
		}},
		{"move in", func() {
			_, to, err := s.Move(ctx, other.ID, inOther, mb.ID)
			if err != nil {
				t.Fatal(err)
			}
			last, inOther = to, nil
		}},
		{"deliver", func() {
			msgs, err := s.Deliver(ctx, []store.MailboxID{other.ID, mb.ID}, store.NewMessage{Body: onlyReader("4")})
			if err != nil {
				t.Fatal(err)
			}
			last = []store.UID{msgs[1].UID}
		}},
		{"move newest out", func() {
			if _, _, err := s.Move(ctx, mb.ID, []store.UID{newest()}, other.ID); err != nil {
				t.Fatal(err)
			}
		}},
		{"append after move out", func() { add(s.Append(ctx, mb.ID, store.NewMessage{Body: onlyReader("5")})) }},
	}
	prev := status(t, s, mb.ID)
	if prev.UIDNext == 0 {
		t.Fatal("UIDNext of a new mailbox is 0")
	}
	maxUID := prev.UIDNext - 1 // every UID handed out so far is at most this
	for _, step := range steps {
		last = nil
		step.do()
		st := status(t, s, mb.ID)
		if st.HighestModSeq <= prev.HighestModSeq {
			t.Errorf("%s: HIGHESTMODSEQ %d, was %d", step.name, st.HighestModSeq, prev.HighestModSeq)
		}
		for _, u := range last {
			if u <= maxUID {
				t.Errorf("%s: new UID %d not above every earlier UID (%d)", step.name, u, maxUID)
			}
			maxUID = u
		}
		if st.UIDNext <= maxUID {
			t.Errorf("%s: UIDNEXT %d, but UID %d was handed out", step.name, st.UIDNext, maxUID)
		}
		for _, m := range listAll(t, s, mb.ID) {
			if m.ModSeq == 0 || m.ModSeq > st.HighestModSeq {
				t.Errorf("%s: UID %d has MODSEQ %d, HIGHESTMODSEQ %d", step.name, m.UID, m.ModSeq, st.HighestModSeq)
			}
			if slices.Contains(last, m.UID) && m.ModSeq <= prev.HighestModSeq {
				t.Errorf("%s: new UID %d has MODSEQ %d, not above earlier %d", step.name, m.UID, m.ModSeq, prev.HighestModSeq)
			}
		}
		prev = st
	}
}

func testStatusCounters(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	other := newMailbox(t, s, mb.Account, "Other")
	var uids []store.UID
	app := func(body string, fl ...string) func() error {
		return func() error {
			m, err := s.Append(ctx, mb.ID, store.NewMessage{Flags: fl, Body: onlyReader(body)})
			uids = append(uids, m.UID)
			return err
		}
	}
	flag := func(i int, op store.FlagOp, fl ...string) func() error {
		return func() error {
			_, _, err := s.StoreFlags(ctx, mb.ID, uids[i:i+1], op, fl, 0)
			return err
		}
	}
	type counts struct {
		Messages, Unseen, Deleted uint32
		Size                      int64
	}
	steps := []struct {
		name string
		do   func() error
		want counts
	}{
		{"append", app("aaaa"), counts{1, 1, 0, 4}},
		{"append seen", app("bb", `\Seen`), counts{2, 1, 0, 6}},
		{"append deleted", app("c", `\Deleted`), counts{3, 2, 1, 7}},
		{"expunge unseen deleted", func() error { _, err := s.Expunge(ctx, mb.ID, uids[2:3]); return err }, counts{2, 1, 0, 6}},
		{"seen all", func() error {
			_, _, err := s.StoreFlags(ctx, mb.ID, uids, store.FlagsAdd, []string{`\Seen`}, 0)
			return err
		}, counts{2, 0, 0, 6}},
		{"unsee first", flag(0, store.FlagsRemove, `\Seen`), counts{2, 1, 0, 6}},
		{"replace first", flag(0, store.FlagsReplace, `\Deleted`, `\Seen`), counts{2, 0, 1, 6}},
		{"keyword only", flag(1, store.FlagsAdd, "$Junk"), counts{2, 0, 1, 6}},
		{"copy second in", func() error { _, _, err := s.Copy(ctx, mb.ID, uids[1:2], mb.ID); return err }, counts{3, 0, 1, 8}},
		{"move first out", func() error { _, _, err := s.Move(ctx, mb.ID, uids[0:1], other.ID); return err }, counts{2, 0, 0, 4}},
		{"append unseen", app("eee"), counts{3, 1, 0, 7}},
		{"expunge all", func() error {
			_, err := s.Expunge(ctx, mb.ID, uidsOf(listAll(t, s, mb.ID)))
			return err
		}, counts{0, 0, 0, 0}},
	}
	for _, step := range steps {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		st := status(t, s, mb.ID)
		if got := (counts{st.Messages, st.Unseen, st.Deleted, st.Size}); got != step.want {
			t.Errorf("%s: status %+v, want %+v", step.name, got, step.want)
		}
	}
	st := status(t, s, other.ID)
	if got, want := (counts{st.Messages, st.Unseen, st.Deleted, st.Size}), (counts{1, 0, 1, 4}); got != want {
		t.Errorf("mailbox moved into: status %+v, want %+v", got, want)
	}
}

func testList(t *testing.T, s store.Store) {
	mb := inbox(t, s)
	var all []store.Message
	for i := range 10 {
		all = append(all, appendMsg(t, s, mb.ID, strings.Repeat("x", i+1), "$K"+string(rune('a'+i))))
	}
	if _, err := s.Expunge(t.Context(), mb.ID, []store.UID{all[4].UID, all[5].UID}); err != nil {
		t.Fatal(err)
	}
	u := uidsOf(all)
	kept := slices.Delete(slices.Clone(all), 4, 6)
	tests := []struct {
		name        string
		first, last store.UID
		want        []store.Message
	}{
		{"all", 1, math.MaxUint32, kept},
		{"from zero", 0, u[2], all[0:3]},
		{"inner with hole", u[2], u[6], []store.Message{all[2], all[3], all[6]}},
		{"one", u[7], u[7], all[7:8]},
		{"expunged only", u[4], u[5], nil},
		{"reversed", u[6], u[2], nil},
		{"past the end", u[9] + 1, math.MaxUint32, nil},
	}
	for _, tt := range tests {
		checkMessages(t, tt.name, list(t, s, mb.ID, tt.first, tt.last), tt.want)
	}
	// Stopping early is allowed.
	n := 0
	for _, err := range s.List(t.Context(), mb.ID, 1, math.MaxUint32) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
	checkMessages(t, "after break", listAll(t, s, mb.ID), kept)
}

func testStoreFlags(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	tests := []struct {
		name  string
		have  []string
		op    store.FlagOp
		flags []string
		want  []string
	}{
		{"add system", nil, store.FlagsAdd, []string{`\Seen`}, []string{`\Seen`}},
		{"add keyword", []string{`\Seen`}, store.FlagsAdd, []string{"$Label1"}, []string{"$Label1", `\Seen`}},
		{"add several", []string{"work"}, store.FlagsAdd, []string{`\Answered`, `\Draft`, "$Forwarded"}, []string{"$Forwarded", `\Answered`, `\Draft`, "work"}},
		{"remove system", []string{`\Seen`, `\Flagged`}, store.FlagsRemove, []string{`\Seen`}, []string{`\Flagged`}},
		{"remove keyword", []string{`\Seen`, "$Junk", "$Label2"}, store.FlagsRemove, []string{"$Junk"}, []string{"$Label2", `\Seen`}},
		{"remove absent", []string{`\Seen`, "$Junk"}, store.FlagsRemove, []string{`\Deleted`, "$Absent", "$Junk"}, []string{`\Seen`}},
		{"replace", []string{`\Seen`, "$A"}, store.FlagsReplace, []string{`\Draft`, "$B"}, []string{"$B", `\Draft`}},
		{"replace with none", []string{`\Seen`, `\Deleted`, "$A"}, store.FlagsReplace, nil, nil},
		{"every system flag", nil, store.FlagsReplace, []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`},
			[]string{`\Answered`, `\Deleted`, `\Draft`, `\Flagged`, `\Seen`}},
	}
	for _, tt := range tests {
		m := appendMsg(t, s, mb.ID, tt.name, tt.have...)
		before := status(t, s, mb.ID).HighestModSeq
		changed, failed, err := s.StoreFlags(ctx, mb.ID, []store.UID{m.UID}, tt.op, tt.flags, 0)
		if err != nil || len(failed) != 0 || len(changed) != 1 {
			t.Errorf("%s: StoreFlags = %d changed, failed %v, %v", tt.name, len(changed), failed, err)
			continue
		}
		after := status(t, s, mb.ID).HighestModSeq
		want := store.Message{UID: m.UID, ModSeq: after, Flags: tt.want, InternalDate: m.InternalDate, Size: m.Size, LineSize: m.LineSize}
		if changed[0].ModSeq <= before {
			t.Errorf("%s: MODSEQ %d not above HIGHESTMODSEQ before, %d", tt.name, changed[0].ModSeq, before)
		}
		if d := diffMessage(changed[0], want); d != "" {
			t.Errorf("%s: StoreFlags returned %s", tt.name, d)
		}
		checkMessages(t, tt.name+": List", list(t, s, mb.ID, m.UID, m.UID), []store.Message{want})
	}
}

func testStoreFlagsMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	var msgs []store.Message
	for i := range 4 {
		msgs = append(msgs, appendMsg(t, s, mb.ID, strings.Repeat("y", i)))
	}
	// Missing UIDs are ignored, duplicates count once.
	uids := []store.UID{msgs[2].UID, msgs[0].UID, msgs[3].UID + 100, msgs[2].UID}
	changed, failed, err := s.StoreFlags(ctx, mb.ID, uids, store.FlagsAdd, []string{"$Work"}, 0)
	if err != nil || len(failed) != 0 {
		t.Fatalf("StoreFlags = failed %v, %v", failed, err)
	}
	slices.SortFunc(changed, func(a, b store.Message) int { return int(a.UID) - int(b.UID) })
	if got := uidsOf(changed); !slices.Equal(got, []store.UID{msgs[0].UID, msgs[2].UID}) {
		t.Fatalf("changed UIDs %v, want %v", got, []store.UID{msgs[0].UID, msgs[2].UID})
	}
	hms := status(t, s, mb.ID).HighestModSeq
	for i := range msgs {
		if i == 0 || i == 2 {
			msgs[i].Flags = []string{"$Work"}
			msgs[i].ModSeq = changed[i/2].ModSeq
			if msgs[i].ModSeq <= msgs[3].ModSeq || msgs[i].ModSeq > hms {
				t.Errorf("UID %d: MODSEQ %d, want in (%d, %d]", msgs[i].UID, msgs[i].ModSeq, msgs[3].ModSeq, hms)
			}
		}
	}
	checkMessages(t, "List", listAll(t, s, mb.ID), msgs)

	changed, failed, err = s.StoreFlags(ctx, mb.ID, nil, store.FlagsAdd, []string{`\Seen`}, 0)
	if err != nil || len(changed)+len(failed) != 0 {
		t.Errorf("StoreFlags of no UIDs = %d changed, %v failed, %v", len(changed), failed, err)
	}
}

func testUnchangedSince(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	a := appendMsg(t, s, mb.ID, "a")
	b := appendMsg(t, s, mb.ID, "b")
	c := appendMsg(t, s, mb.ID, "c")
	changed, _, err := s.StoreFlags(ctx, mb.ID, []store.UID{b.UID}, store.FlagsAdd, []string{"$X"}, 0)
	if err != nil || len(changed) != 1 {
		t.Fatalf("StoreFlags: %d changed, %v", len(changed), err)
	}
	b = changed[0]
	// b changed after c was added, so only a and c are unchanged since c.
	changed, failed, err := s.StoreFlags(ctx, mb.ID, []store.UID{a.UID, b.UID, c.UID}, store.FlagsAdd, []string{`\Flagged`}, c.ModSeq)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(failed, []store.UID{b.UID}) {
		t.Errorf("failed = %v, want [%d]", failed, b.UID)
	}
	slices.SortFunc(changed, func(x, y store.Message) int { return int(x.UID) - int(y.UID) })
	if got := uidsOf(changed); !slices.Equal(got, []store.UID{a.UID, c.UID}) {
		t.Errorf("changed = %v, want [%d %d]", got, a.UID, c.UID)
	}
	l := listAll(t, s, mb.ID)
	if len(l) != 3 || !slices.Equal(l[1].Flags, []string{"$X"}) || l[1].ModSeq != b.ModSeq {
		t.Errorf("the failed message changed: %+v", l)
	}
	// A MODSEQ equal to unchangedSince passes (RFC 7162 3.1.3).
	changed, failed, err = s.StoreFlags(ctx, mb.ID, []store.UID{b.UID}, store.FlagsAdd, []string{`\Flagged`}, b.ModSeq)
	if err != nil || len(failed) != 0 || len(changed) != 1 {
		t.Errorf("StoreFlags with unchangedSince = its MODSEQ: %d changed, failed %v, %v", len(changed), failed, err)
	}
}

func testExpunge(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	var msgs []store.Message
	for i := range 4 {
		msgs = append(msgs, appendMsg(t, s, mb.ID, strings.Repeat("z", i+1)))
	}
	before := status(t, s, mb.ID)
	removed, err := s.Expunge(ctx, mb.ID, []store.UID{msgs[3].UID, msgs[1].UID, msgs[3].UID + 50})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	if want := []store.UID{msgs[1].UID, msgs[3].UID}; !slices.Equal(removed, want) {
		t.Errorf("Expunge removed %v, want %v", removed, want)
	}
	checkMessages(t, "List", listAll(t, s, mb.ID), []store.Message{msgs[0], msgs[2]})
	st := status(t, s, mb.ID)
	if st.Messages != 2 || st.Size != 1+3 || st.HighestModSeq <= before.HighestModSeq || st.UIDNext != before.UIDNext {
		t.Errorf("status after Expunge %+v, before %+v", st, before)
	}
	_, err = s.Open(ctx, mb.ID, msgs[1].UID)
	wantErr(t, "Open(expunged)", err, store.ErrNotFound)
	removed, err = s.Expunge(ctx, mb.ID, []store.UID{msgs[1].UID})
	if err != nil || len(removed) != 0 {
		t.Errorf("Expunge again = %v, %v; want nothing", removed, err)
	}
}

// checkCopied checks that the messages at to in dst have the bytes, flags,
// internal dates and sizes of those at from in src.
func checkCopied(t *testing.T, s store.Store, srcMsgs map[store.UID]store.Message, bodies map[store.UID]string, dst store.MailboxID, from, to []store.UID) {
	t.Helper()
	got := listAll(t, s, dst)
	byUID := map[store.UID]store.Message{}
	for _, m := range got {
		byUID[m.UID] = m
	}
	for i := range from {
		m, ok := byUID[to[i]]
		if !ok {
			t.Errorf("copy of %d: UID %d not in destination", from[i], to[i])
			continue
		}
		want := srcMsgs[from[i]]
		want.UID, want.ModSeq = m.UID, m.ModSeq
		if d := diffMessage(m, want); d != "" {
			t.Errorf("copy of %d: %s", from[i], d)
		}
		if b := readMsg(t, s, dst, to[i]); string(b) != bodies[from[i]] {
			t.Errorf("copy of %d: bytes %q, want %q", from[i], b, bodies[from[i]])
		}
	}
}

// copyFixture fills src with three messages with flags and dates, and dst
// with one.
func copyFixture(t *testing.T, s store.Store) (src, dst *store.Mailbox, msgs map[store.UID]store.Message, bodies map[store.UID]string, uids []store.UID) {
	ctx := t.Context()
	src = inbox(t, s)
	dst = newMailbox(t, s, src.Account, "Archive")
	appendMsg(t, s, dst.ID, "already there")
	msgs, bodies = map[store.UID]store.Message{}, map[store.UID]string{}
	for i, fl := range [][]string{{`\Seen`, "$Work"}, nil, {`\Flagged`, `\Deleted`}} {
		body := strings.Repeat("message body ", i+1)
		m, err := s.Append(ctx, src.ID, store.NewMessage{Flags: fl, InternalDate: date(10 + i), Body: onlyReader(body)})
		if err != nil {
			t.Fatal(err)
		}
		msgs[m.UID], bodies[m.UID] = m, body
		uids = append(uids, m.UID)
	}
	return src, dst, msgs, bodies, uids
}

// checkPairs checks Copy's or Move's result: from is the existing UIDs
// asked for, ascending, and to new UIDs above UIDNEXT before, ascending.
func checkPairs(t *testing.T, from, to, wantFrom []store.UID, uidNext store.UID) {
	t.Helper()
	if !slices.Equal(from, wantFrom) {
		t.Errorf("from = %v, want %v", from, wantFrom)
	}
	if len(to) != len(from) {
		t.Fatalf("to = %v for from = %v", to, from)
	}
	for i, u := range to {
		if u < uidNext || i > 0 && u <= to[i-1] {
			t.Errorf("to = %v: not ascending from UIDNEXT %d", to, uidNext)
			break
		}
	}
}

func testCopy(t *testing.T, s store.Store) {
	ctx := t.Context()
	src, dst, msgs, bodies, uids := copyFixture(t, s)
	srcBefore, dstBefore := status(t, s, src.ID), status(t, s, dst.ID)
	ask := []store.UID{uids[2], uids[0], uids[2] + 100}
	from, to, err := s.Copy(ctx, src.ID, ask, dst.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkPairs(t, from, to, []store.UID{uids[0], uids[2]}, dstBefore.UIDNext)
	checkCopied(t, s, msgs, bodies, dst.ID, from, to)
	if st := status(t, s, src.ID); st != srcBefore {
		t.Errorf("source status changed by Copy: %+v, was %+v", st, srcBefore)
	}
	dstAfter := status(t, s, dst.ID)
	if dstAfter.Messages != dstBefore.Messages+2 || dstAfter.HighestModSeq <= dstBefore.HighestModSeq {
		t.Errorf("destination status after Copy: %+v, was %+v", dstAfter, dstBefore)
	}

	// The copies outlive their originals.
	if _, err := s.Expunge(ctx, src.ID, uids); err != nil {
		t.Fatal(err)
	}
	checkCopied(t, s, msgs, bodies, dst.ID, from, to)

	// Copying within one mailbox makes new messages.
	from2, to2, err := s.Copy(ctx, dst.ID, to[:1], dst.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkPairs(t, from2, to2, to[:1], dstAfter.UIDNext)
	copies := map[store.UID]store.Message{}
	for _, m := range listAll(t, s, dst.ID) {
		copies[m.UID] = m
	}
	checkCopied(t, s, copies, map[store.UID]string{to[0]: bodies[from[0]]}, dst.ID, from2, to2)
}

func testMove(t *testing.T, s store.Store) {
	ctx := t.Context()
	src, dst, msgs, bodies, uids := copyFixture(t, s)
	srcBefore, dstBefore := status(t, s, src.ID), status(t, s, dst.ID)

	// A failing Move changes nothing.
	_, _, err := s.Move(ctx, src.ID, uids, dst.ID+1000)
	wantErr(t, "Move to missing mailbox", err, store.ErrNotFound)
	if st := status(t, s, src.ID); st != srcBefore {
		t.Errorf("source status changed by failed Move: %+v, was %+v", st, srcBefore)
	}

	from, to, err := s.Move(ctx, src.ID, []store.UID{uids[1], uids[0] + 100, uids[2]}, dst.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkPairs(t, from, to, []store.UID{uids[1], uids[2]}, dstBefore.UIDNext)
	checkCopied(t, s, msgs, bodies, dst.ID, from, to)
	checkMessages(t, "source after Move", listAll(t, s, src.ID), []store.Message{msgs[uids[0]]})
	st := status(t, s, src.ID)
	if st.Messages != 1 || st.HighestModSeq <= srcBefore.HighestModSeq {
		t.Errorf("source status after Move %+v, was %+v", st, srcBefore)
	}
	_, vanished, err := s.Changes(ctx, src.ID, srcBefore.HighestModSeq)
	slices.Sort(vanished)
	if err != nil || !slices.Equal(vanished, from) {
		t.Errorf("source Changes after Move: vanished %v, %v; want %v", vanished, err, from)
	}
	if st := status(t, s, dst.ID); st.Messages != dstBefore.Messages+2 || st.HighestModSeq <= dstBefore.HighestModSeq {
		t.Errorf("destination status after Move %+v, was %+v", st, dstBefore)
	}
}

func testChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	m0 := status(t, s, mb.ID).HighestModSeq
	a := appendMsg(t, s, mb.ID, "a")
	b := appendMsg(t, s, mb.ID, "b")
	c := appendMsg(t, s, mb.ID, "c")
	m1 := status(t, s, mb.ID).HighestModSeq
	changed, _, err := s.StoreFlags(ctx, mb.ID, []store.UID{b.UID}, store.FlagsAdd, []string{`\Seen`}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b = changed[0]
	m2 := status(t, s, mb.ID).HighestModSeq
	if _, err := s.Expunge(ctx, mb.ID, []store.UID{c.UID}); err != nil {
		t.Fatal(err)
	}
	m3 := status(t, s, mb.ID).HighestModSeq
	d := appendMsg(t, s, mb.ID, "d")
	m4 := status(t, s, mb.ID).HighestModSeq

	tests := []struct {
		name     string
		since    uint64
		changed  []store.Message
		vanished []store.UID
	}{
		{"from the start", 0, []store.Message{a, b, d}, []store.UID{c.UID}},
		{"before appends", m0, []store.Message{a, b, d}, []store.UID{c.UID}},
		{"after appends", m1, []store.Message{b, d}, []store.UID{c.UID}},
		{"after flag change", m2, []store.Message{d}, []store.UID{c.UID}},
		{"after expunge", m3, []store.Message{d}, nil},
		{"up to date", m4, nil, nil},
	}
	for _, tt := range tests {
		changed, vanished, err := s.Changes(ctx, mb.ID, tt.since)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		slices.SortFunc(changed, func(x, y store.Message) int { return int(x.UID) - int(y.UID) })
		slices.Sort(vanished)
		checkMessages(t, tt.name, changed, tt.changed)
		if !slices.Equal(vanished, tt.vanished) {
			t.Errorf("%s: vanished %v, want %v", tt.name, vanished, tt.vanished)
		}
	}
}

func testDeliver(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	boxes := []*store.Mailbox{
		newMailbox(t, s, alice.ID, "INBOX"),
		newMailbox(t, s, bob.ID, "INBOX"),
		newMailbox(t, s, alice.ID, "Lists"),
	}
	appendMsg(t, s, boxes[1].ID, "bob had mail")
	var ids []store.MailboxID
	var before []store.Status
	for _, mb := range boxes {
		ids = append(ids, mb.ID)
		before = append(before, status(t, s, mb.ID))
	}
	body := "From: carol@example.net\r\nSubject: to all\r\n\r\nhello\x00\xff"
	msgs, err := s.Deliver(ctx, ids, store.NewMessage{Flags: []string{"$Delivered"}, InternalDate: date(5), Body: onlyReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(boxes) {
		t.Fatalf("Deliver returned %d messages for %d mailboxes", len(msgs), len(boxes))
	}
	for i, mb := range boxes {
		m := msgs[i]
		if m.UID < before[i].UIDNext {
			t.Errorf("%s: UID %d below UIDNEXT %d", mb.Name, m.UID, before[i].UIDNext)
		}
		want := store.Message{UID: m.UID, ModSeq: m.ModSeq, Flags: []string{"$Delivered"}, InternalDate: date(5), Size: int64(len(body)), LineSize: lineSize([]byte(body))}
		l := list(t, s, mb.ID, m.UID, m.UID)
		checkMessages(t, mb.Name, l, []store.Message{want})
		if b := readMsg(t, s, mb.ID, m.UID); string(b) != body {
			t.Errorf("%s: bytes %q, want %q", mb.Name, b, body)
		}
		if st := status(t, s, mb.ID); st.Messages != before[i].Messages+1 || st.HighestModSeq < m.ModSeq || m.ModSeq <= before[i].HighestModSeq {
			t.Errorf("%s: status %+v, was %+v, message MODSEQ %d", mb.Name, st, before[i], m.ModSeq)
		}
	}
	if n, err := s.Usage(ctx, alice.ID); err != nil || n != 2*int64(len(body)) {
		t.Errorf("Usage(alice) = %d, %v; want %d", n, err, 2*len(body))
	}

	// Removing one delivered copy leaves the others.
	if _, err := s.Expunge(ctx, boxes[0].ID, []store.UID{msgs[0].UID}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(boxes); i++ {
		if b := readMsg(t, s, boxes[i].ID, msgs[i].UID); string(b) != body {
			t.Errorf("%s after expunging a sibling copy: %q", boxes[i].Name, b)
		}
	}

	if msgs, err := s.Deliver(ctx, nil, store.NewMessage{Body: onlyReader("nowhere")}); err != nil || len(msgs) != 0 {
		t.Errorf("Deliver to no mailbox = %v, %v", msgs, err)
	}
}

func testDeliverAllOrNothing(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	a := newMailbox(t, s, alice.ID, "INBOX")
	b := newMailbox(t, s, bob.ID, "INBOX")
	gone := newMailbox(t, s, bob.ID, "Gone")
	if err := s.DeleteMailbox(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	for _, boxes := range [][]store.MailboxID{
		{a.ID, b.ID, gone.ID},
		{gone.ID, a.ID},
		{a.ID, b.ID + 1000, b.ID},
	} {
		_, err := s.Deliver(ctx, boxes, store.NewMessage{Body: onlyReader("not for everyone")})
		wantErr(t, "Deliver with a missing mailbox", err, store.ErrNotFound)
		for _, mb := range []*store.Mailbox{a, b} {
			if st := status(t, s, mb.ID); st.Messages != 0 || st.Size != 0 {
				t.Errorf("%v: %s got a message: %+v", boxes, mb.Name, st)
			}
			if l := listAll(t, s, mb.ID); len(l) != 0 {
				t.Errorf("%v: %s lists %v", boxes, mb.Name, uidsOf(l))
			}
		}
	}
}

func testUsage(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	usage := func(id store.AccountID) int64 {
		t.Helper()
		n, err := s.Usage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := usage(alice.ID); n != 0 {
		t.Errorf("Usage of an account without mailboxes = %d", n)
	}
	in := newMailbox(t, s, alice.ID, "INBOX")
	arch := newMailbox(t, s, alice.ID, "Archive")
	bin := newMailbox(t, s, bob.ID, "INBOX")
	m1 := appendMsg(t, s, in.ID, strings.Repeat("1", 100))
	appendMsg(t, s, arch.ID, strings.Repeat("2", 20))
	appendMsg(t, s, bin.ID, strings.Repeat("3", 7))
	if _, _, err := s.Copy(ctx, in.ID, []store.UID{m1.UID}, arch.ID); err != nil {
		t.Fatal(err)
	}
	if n := usage(alice.ID); n != 220 {
		t.Errorf("Usage(alice) = %d, want 220", n)
	}
	if n := usage(bob.ID); n != 7 {
		t.Errorf("Usage(bob) = %d, want 7", n)
	}
	if _, err := s.Expunge(ctx, in.ID, []store.UID{m1.UID}); err != nil {
		t.Fatal(err)
	}
	if n := usage(alice.ID); n != 120 {
		t.Errorf("Usage(alice) after expunge = %d, want 120", n)
	}
}
