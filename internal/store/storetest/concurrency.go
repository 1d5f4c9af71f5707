package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
)

func testWatch(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	other := newMailbox(t, s, mb.Account, "Other")
	var uid store.UID
	steps := []struct {
		name string
		do   func() error
		wake []store.MailboxID
	}{
		{"append", func() error {
			m, err := s.Append(ctx, mb.ID, store.NewMessage{Body: onlyReader("hello")})
			uid = m.UID
			return err
		}, []store.MailboxID{mb.ID}},
		{"flag", func() error {
			_, _, err := s.StoreFlags(ctx, mb.ID, []store.UID{uid}, store.FlagsAdd, []string{`\Seen`}, 0)
			return err
		}, []store.MailboxID{mb.ID}},
		{"copy", func() error {
			_, _, err := s.Copy(ctx, mb.ID, []store.UID{uid}, other.ID)
			return err
		}, []store.MailboxID{other.ID}},
		{"move", func() error {
			_, to, err := s.Move(ctx, mb.ID, []store.UID{uid}, other.ID)
			if len(to) == 1 {
				uid = to[0]
			}
			return err
		}, []store.MailboxID{mb.ID, other.ID}},
		{"expunge", func() error { _, err := s.Expunge(ctx, other.ID, []store.UID{uid}); return err }, []store.MailboxID{other.ID}},
		{"deliver", func() error {
			_, err := s.Deliver(ctx, []store.MailboxID{mb.ID}, store.NewMessage{Body: onlyReader("hi")})
			return err
		}, []store.MailboxID{mb.ID}},
		{"delete mailbox", func() error { return s.DeleteMailbox(ctx, other.ID) }, []store.MailboxID{other.ID}},
	}
	for _, step := range steps {
		chans := map[store.MailboxID][2]<-chan struct{}{
			mb.ID:    {s.Watch(mb.ID), s.Watch(mb.ID)},
			other.ID: {s.Watch(other.ID), s.Watch(other.ID)},
		}
		for id, chs := range chans {
			for _, ch := range chs {
				if isClosed(ch) {
					t.Fatalf("%s: channel of mailbox %d closed before the change", step.name, id)
				}
			}
		}
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for id, chs := range chans {
			want := slices.Contains(step.wake, id)
			for _, ch := range chs {
				if got := isClosed(ch); got != want {
					t.Errorf("%s: channel of mailbox %d closed = %v, want %v", step.name, id, got, want)
				}
			}
		}
	}
}

// testConcurrency appends and flags from many goroutines at once (run it
// under -race) and checks that no UID is lost or handed out twice, no
// message's bytes are mixed up and no flag change is lost.
func testConcurrency(t *testing.T, s store.Store) {
	ctx := t.Context()
	boxes := []*store.Mailbox{inbox(t, s)}
	boxes = append(boxes, newMailbox(t, s, boxes[0].Account, "Second"))
	const (
		appenders = 8
		perWriter = 25
		flaggers  = 4
		perFlag   = 20
	)
	type added struct {
		box  store.MailboxID
		m    store.Message
		body string
	}
	type flagChange struct {
		box     store.MailboxID
		keyword string
		uids    []store.UID
	}
	var (
		mu      sync.Mutex
		adds    []added
		changes []flagChange
		wg      sync.WaitGroup
	)
	for w := range appenders {
		wg.Go(func() {
			for i := range perWriter {
				box := boxes[(w+i)%len(boxes)].ID
				body := fmt.Sprintf("Subject: writer %d message %d\r\n\r\n%s", w, i, strings.Repeat("x", w*i))
				m, err := s.Append(ctx, box, store.NewMessage{Flags: []string{fmt.Sprintf("$W%d", w)}, Body: onlyReader(body)})
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				adds = append(adds, added{box, m, body})
				mu.Unlock()
			}
		})
	}
	for f := range flaggers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(f), 7))
			for i := range perFlag {
				box := boxes[rng.IntN(len(boxes))].ID
				st, err := s.MailboxStatus(ctx, box)
				if err != nil {
					t.Errorf("MailboxStatus: %v", err)
					return
				}
				var uids []store.UID
				for range 3 {
					uids = append(uids, store.UID(rng.IntN(int(st.UIDNext)+1)))
				}
				kw := fmt.Sprintf("$F%d-%d", f, i)
				changed, _, err := s.StoreFlags(ctx, box, uids, store.FlagsAdd, []string{kw, `\Seen`}, 0)
				if err != nil {
					t.Errorf("StoreFlags: %v", err)
					return
				}
				mu.Lock()
				changes = append(changes, flagChange{box, kw, uidsOf(changed)})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	for _, mb := range boxes {
		var want []added
		for _, a := range adds {
			if a.box == mb.ID {
				want = append(want, a)
			}
		}
		slices.SortFunc(want, func(x, y added) int { return int(x.m.UID) - int(y.m.UID) })
		for i := 1; i < len(want); i++ {
			if want[i].m.UID == want[i-1].m.UID {
				t.Errorf("%s: UID %d handed out twice", mb.Name, want[i].m.UID)
			}
			if want[i].m.ModSeq <= want[i-1].m.ModSeq {
				t.Errorf("%s: UID %d has MODSEQ %d, earlier UID %d has %d", mb.Name,
					want[i].m.UID, want[i].m.ModSeq, want[i-1].m.UID, want[i-1].m.ModSeq)
			}
		}
		got := listAll(t, s, mb.ID)
		var wantUIDs []store.UID
		for _, a := range want {
			wantUIDs = append(wantUIDs, a.m.UID)
		}
		if g := uidsOf(got); !slices.Equal(g, wantUIDs) {
			t.Fatalf("%s: List has UIDs %v, appends returned %v", mb.Name, g, wantUIDs)
		}
		st := status(t, s, mb.ID)
		if int(st.Messages) != len(want) || st.UIDNext <= want[len(want)-1].m.UID {
			t.Errorf("%s: status %+v after %d appends up to UID %d", mb.Name, st, len(want), want[len(want)-1].m.UID)
		}
		var unseen uint32
		for i, m := range got {
			if string(readMsg(t, s, mb.ID, m.UID)) != want[i].body {
				t.Errorf("%s: UID %d has the wrong bytes", mb.Name, m.UID)
			}
			if !slices.Contains(m.Flags, want[i].m.Flags[0]) {
				t.Errorf("%s: UID %d lost its flag %s: %q", mb.Name, m.UID, want[i].m.Flags[0], m.Flags)
			}
			if !slices.Contains(m.Flags, `\Seen`) {
				unseen++
			}
			for _, f := range changes {
				if f.box == mb.ID && slices.Contains(f.uids, m.UID) && !slices.Contains(m.Flags, f.keyword) {
					t.Errorf("%s: UID %d lost keyword %s: %q", mb.Name, m.UID, f.keyword, m.Flags)
				}
			}
		}
		if st.Unseen != unseen {
			t.Errorf("%s: status counts %d unseen, List %d", mb.Name, st.Unseen, unseen)
		}
	}
}

// testConcurrentColdReads runs many lookups at once on a store that has
// served none yet: an implementation with a bounded connection pool must
// not deadlock when every reader wants more than one connection (a
// transaction plus the preparation of its first statements, say).
func testConcurrentColdReads(t *testing.T, s store.Store) {
	ctx := t.Context()
	mb := inbox(t, s)
	a, err := s.AccountByID(ctx, mb.Account)
	if err != nil {
		t.Fatal(err)
	}
	const readers = 64
	errs := make(chan error, readers)
	for i := range readers {
		go func() {
			var err error
			switch i % 4 {
			case 0:
				_, err = s.Account(ctx, a.Name)
			case 1:
				_, err = s.AccountByAddress(ctx, a.Address)
			case 2:
				_, err = s.MailboxStatus(ctx, mb.ID)
			case 3:
				_, err = s.ListMailboxes(ctx, a.ID)
			}
			errs <- err
		}()
	}
	deadline := time.After(time.Minute) // a bound on a hang, not a speed claim
	for range readers {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("concurrent lookups on a fresh store did not finish: deadlock")
		}
	}
}
