package sqlite

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
)

var benchMessages = flag.Int("store.messages", 100_000, "messages in the large mailbox of BenchmarkLargeMailbox")

// benchStore opens a store in a temporary directory with one account and
// one mailbox.
func benchStore(b *testing.B, opts *Options) (*Store, store.MailboxID) {
	b.Helper()
	s, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	a := &store.Account{Name: "bench", Address: "bench@example.org"}
	if err := s.CreateAccount(b.Context(), a); err != nil {
		b.Fatal(err)
	}
	mb, err := s.CreateMailbox(b.Context(), a.ID, "INBOX", "")
	if err != nil {
		b.Fatal(err)
	}
	return s, mb.ID
}

// BenchmarkAppend measures durable appends of 10 KiB messages from 1, 8 and
// 64 writers at once, with either way of syncing blobs; group commit should
// make the rate grow with the writers.
func BenchmarkAppend(b *testing.B) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 10<<10/16)
	for _, sync := range []struct {
		name string
		opts Options
	}{{"syncfs", Options{}}, {"eachfile", Options{SyncEachFile: true}}} {
		for _, writers := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("sync=%s/writers=%d", sync.name, writers), func(b *testing.B) {
				benchAppend(b, &sync.opts, writers, body)
			})
		}
	}
}

func benchAppend(b *testing.B, opts *Options, writers int, body []byte) {
	s, mbox := benchStore(b, opts)
	b.SetBytes(int64(len(body)))
	var n atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for n.Add(1) <= int64(b.N) {
				if _, err := s.Append(b.Context(), mbox, store.NewMessage{Body: bytes.NewReader(body)}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// populate adds n messages to mbox, all sharing one small blob, in large
// transactions: test-only, to build a big mailbox quickly.
func populate(b *testing.B, s *Store, mbox store.MailboxID, n int) {
	b.Helper()
	blob, size, lineSize, err := s.writeBlob(bytes.NewReader([]byte("Subject: filler\r\n\r\nfiller\r\n")))
	if err != nil {
		b.Fatal(err)
	}
	seen, unseen := flagSet{sys: flagSeen}, flagSet{keywords: []string{"$Filler"}}
	date := time.Now()
	const batch = 20_000
	for done := 0; done < n; done += batch {
		nms := make([]newMessage, min(batch, n-done))
		for i := range nms {
			nms[i] = newMessage{blob: blob, size: size, lineSize: lineSize, flags: seen, date: date}
			if i%3 == 0 {
				nms[i].flags = unseen
			}
		}
		first := done == 0
		err := s.submit(&writeReq{ctx: b.Context(), blobDir: s.blobDir(blob), fn: func(x *txn) error {
			if first {
				// With its first references: a blob without any is removed.
				if err := x.exec("INSERT INTO blobs(id, refs, size, line_size) VALUES(?, 0, ?, ?)", blob, size, lineSize); err != nil {
					return err
				}
			}
			_, err := x.insertMessages(mbox, nms)
			return err
		}})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLargeMailbox measures single-message operations on a mailbox of
// -store.messages messages, next to a mailbox of 1,000: the cost should
// grow with the logarithm of the size at most.
func BenchmarkLargeMailbox(b *testing.B) {
	for _, size := range []int{1000, *benchMessages} {
		b.Run(fmt.Sprintf("messages=%d", size), func(b *testing.B) {
			s, mbox := benchStore(b, nil)
			start := time.Now()
			populate(b, s, mbox, size)
			b.Logf("populated %d messages in %v", size, time.Since(start).Round(time.Millisecond))
			st, err := s.MailboxStatus(b.Context(), mbox)
			if err != nil || int(st.Messages) != size {
				b.Fatalf("status after populating: %+v, %v", st, err)
			}
			// UIDs from populate are 1..size.
			rng := rand.New(rand.NewPCG(1, 2))
			randomUID := func() store.UID { return store.UID(1 + rng.IntN(size)) }
			b.Run("List1", func(b *testing.B) {
				for b.Loop() {
					uid := randomUID()
					for m, err := range s.List(b.Context(), mbox, uid, uid) {
						if err != nil || m.UID != uid {
							b.Fatal(m.UID, err)
						}
					}
				}
			})
			b.Run("Open", func(b *testing.B) {
				for b.Loop() {
					r, err := s.Open(b.Context(), mbox, randomUID())
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, r)
					r.Close()
				}
			})
			b.Run("Status", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.MailboxStatus(b.Context(), mbox); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("StoreFlags", func(b *testing.B) {
				op := store.FlagsAdd
				for b.Loop() {
					op = store.FlagsAdd + store.FlagsRemove - op // alternate
					_, _, err := s.StoreFlags(b.Context(), mbox, []store.UID{randomUID()}, op, []string{`\Flagged`}, 0)
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("Append", func(b *testing.B) {
				body := bytes.Repeat([]byte("x"), 10<<10)
				for b.Loop() {
					if _, err := s.Append(b.Context(), mbox, store.NewMessage{Body: bytes.NewReader(body)}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
