package sqlite

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// crashDirEnv, when set, makes TestCrashChild the writer that TestCrash
// kills: it appends to the store in that directory and reports each
// acknowledged append on stdout.
const crashDirEnv = "LATCH_STORE_CRASH_DIR"

// crashEachFileEnv, when set too, makes the child use Options.SyncEachFile.
const crashEachFileEnv = "LATCH_STORE_CRASH_EACHFILE"

const (
	crashMaxAppends = 2000
	crashMaxTime    = 20 * time.Second
	crashWriters    = 8
)

// TestCrash kills a writing process at a random moment and checks that
// every append it acknowledged is in the reopened store, byte for byte, and
// that no UID is there twice.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 3 {
		killAfter := 50 + rng.IntN(251)
		mode := syncModes[round%len(syncModes)]
		t.Run(fmt.Sprintf("round%d-%s-kill-after-%d", round, mode.name, killAfter), func(t *testing.T) {
			crashRound(t, killAfter, mode.opts.SyncEachFile)
		})
	}
}

type ack struct {
	box store.MailboxID
	uid store.UID
	sum string
}

func crashRound(t *testing.T, killAfter int, eachFile bool) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openTest(t, dir)
	a := &store.Account{Name: "crash", Address: "crash@example.org"}
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"INBOX", "A", "B"} {
		if _, err := s.CreateMailbox(ctx, a.ID, name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	if eachFile {
		cmd.Env = append(cmd.Env, crashEachFileEnv+"=1")
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acks []ack
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var k ack
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %d %s", &k.box, &k.uid, &k.sum); err != nil {
			continue // the test framework's own lines
		}
		acks = append(acks, k)
		if len(acks) == 1 {
			// The child holds the store: another process may not open it.
			if s2, err := Open(dir, nil); err == nil {
				s2.Close()
				t.Error("Open succeeded while another process had the store open")
			}
		}
		if len(acks) == killAfter && !killed {
			// Lines already written are acknowledged appends too: keep
			// reading until the pipe closes.
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if !killed && err != nil {
		t.Fatalf("child failed before it was killed: %v\n%s", err, stderr.Bytes())
	}
	if strings.Contains(stderr.String(), "append failed") {
		t.Fatalf("child reported errors:\n%s", stderr.Bytes())
	}
	t.Logf("%d appends acknowledged, killed: %v", len(acks), killed)

	s = openTest(t, dir)
	seen := map[ack]bool{}
	for _, k := range acks {
		key := ack{box: k.box, uid: k.uid}
		if seen[key] {
			t.Errorf("mailbox %d UID %d acknowledged twice", k.box, k.uid)
		}
		seen[key] = true
		r, err := s.Open(ctx, k.box, k.uid)
		if err != nil {
			t.Errorf("acknowledged message lost: %v", err)
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		if got := fmt.Sprintf("%x", h.Sum(nil)); err != nil || got != k.sum {
			t.Errorf("mailbox %d UID %d: SHA-256 %s, %v; acknowledged %s", k.box, k.uid, got, err, k.sum)
		}
	}
	// Every message in the store, acknowledged or not, is whole and has
	// its UID once.
	boxes, err := s.ListMailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, mb := range boxes {
		var last store.UID
		var n uint32
		for m, err := range s.List(ctx, mb.ID, 1, math.MaxUint32) {
			if err != nil {
				t.Fatal(err)
			}
			if m.UID <= last {
				t.Errorf("%s: UID %d after %d", mb.Name, m.UID, last)
			}
			last = m.UID
			n++
			r, err := s.Open(ctx, mb.ID, m.UID)
			if err != nil {
				t.Errorf("%s: UID %d: %v", mb.Name, m.UID, err)
				continue
			}
			size, err := io.Copy(io.Discard, r)
			r.Close()
			if err != nil || size != m.Size {
				t.Errorf("%s: UID %d: read %d bytes (%v), size %d", mb.Name, m.UID, size, err, m.Size)
			}
		}
		st, err := s.MailboxStatus(ctx, mb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Messages != n || st.UIDNext <= last {
			t.Errorf("%s: status %+v, but %d messages up to UID %d", mb.Name, st, n, last)
		}
	}
	// Open removed whatever the crash left unreferenced.
	var rows int
	if err := s.queryRow(ctx, "SELECT COUNT(*) FROM blobs").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if files := blobFiles(t, dir); files != rows {
		t.Errorf("%d blob files for %d blob rows", files, rows)
	}
}

// TestCrashChild is the process TestCrash kills; it does nothing unless
// started by TestCrash.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrash")
	}
	ctx := t.Context()
	s, err := Open(dir, &Options{SyncEachFile: os.Getenv(crashEachFileEnv) != ""})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acct, err := s.Account(ctx, "crash")
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.ListMailboxes(ctx, acct.ID)
	if err != nil {
		t.Fatal(err)
	}
	var boxes []store.MailboxID
	for _, mb := range l {
		boxes = append(boxes, mb.ID)
	}

	deadline := time.Now().Add(crashMaxTime)
	var (
		n   atomic.Int64
		mu  sync.Mutex // one line at a time on stdout
		wg  sync.WaitGroup
		seq atomic.Uint64
	)
	report := func(box store.MailboxID, uid store.UID, sum [32]byte) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, "ack %d %d %x\n", box, uid, sum)
	}
	for w := range crashWriters {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for n.Add(1) <= crashMaxAppends && time.Now().Before(deadline) {
				body := make([]byte, 1+rng.IntN(30000))
				for i := range body {
					body[i] = byte(rng.Uint32())
				}
				copy(body, fmt.Sprintf("Message-Id: <%d@crash>\r\n", seq.Add(1)))
				sum := sha256.Sum256(body)
				if rng.IntN(4) == 0 {
					// Deliver to two mailboxes: one blob, two rows.
					to := []store.MailboxID{boxes[rng.IntN(len(boxes))], boxes[rng.IntN(len(boxes))]}
					msgs, err := s.Deliver(ctx, to, store.NewMessage{Body: bytes.NewReader(body)})
					if err != nil {
						fmt.Fprintf(os.Stderr, "append failed: %v\n", err)
						return
					}
					for i, m := range msgs {
						report(to[i], m.UID, sum)
					}
					continue
				}
				box := boxes[rng.IntN(len(boxes))]
				m, err := s.Append(ctx, box, store.NewMessage{Flags: []string{`\Seen`}, Body: bytes.NewReader(body)})
				if err != nil {
					fmt.Fprintf(os.Stderr, "append failed: %v\n", err)
					return
				}
				report(box, m.UID, sum)
			}
		})
	}
	wg.Wait()
}
