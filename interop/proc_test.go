package interop

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on a latch process's life.
const (
	startLimit = 30 * time.Second // from exec to listening
	stopLimit  = 15 * time.Second // from SIGTERM to exit
)

// proc is a long-running latch process (serve or dev) started by a test.
// Its standard output and error are kept for the test to read and are
// logged when the test that started it fails. Its methods report failures
// to the test they are given, which may be a subtest of that one.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once the process has exited
	code int           // exit status once done; -1 if killed by a signal
}

// startProc starts latch with args. At cleanup a process still running is
// stopped with SIGTERM, and with SIGKILL if it does not exit in time.
func startProc(t testing.TB, args ...string) *proc {
	t.Helper()
	p := &proc{out: new(syncBuffer), done: make(chan struct{})}
	p.cmd = exec.Command(latchBinary(t), args...)
	p.cmd.Env = append(os.Environ(), latchEnv()...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start latch %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
				if p.code != 0 {
					t.Errorf("latch %s: exit status %d after SIGTERM, want 0", strings.Join(args, " "), p.code)
				}
			case <-time.After(stopLimit):
				p.cmd.Process.Kill()
				<-p.done
				t.Errorf("latch %s: still running %v after SIGTERM; killed", strings.Join(args, " "), stopLimit)
			}
		}
		p.checkRaces(t)
		if t.Failed() {
			t.Logf("output of latch %s:\n%s", strings.Join(args, " "), p.out)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to limit for the process to exit and returns its status.
func (p *proc) wait(limit time.Duration) (code int, exited bool) {
	select {
	case <-p.done:
		return p.code, true
	case <-time.After(limit):
		return 0, false
	}
}

// signal sends sig to the process.
func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) within stopLimit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	code, ok := p.wait(stopLimit)
	if !ok {
		t.Fatalf("latch still running %v after SIGTERM", stopLimit)
	}
	if code != 0 {
		t.Fatalf("latch exited with status %d after SIGTERM, want 0", code)
	}
}

// kill sends SIGKILL, as a crash would, and waits for the exit.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	if _, ok := p.wait(stopLimit); !ok {
		t.Fatalf("latch still running %v after SIGKILL", stopLimit)
	}
}

// checkRaces fails the test if a -race build reported a data race.
func (p *proc) checkRaces(t testing.TB) {
	if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
		t.Errorf("the latch process reported a data race")
	}
}

// waitLog waits until the output has a JSON log record (log.format =
// "json") with message msg. It fails the test if the process exits first
// or after startLimit.
func (p *proc) waitLog(t testing.TB, msg string) {
	t.Helper()
	deadline := time.Now().Add(startLimit)
	for p.countLog(msg) == 0 {
		if p.exited() {
			t.Fatalf("latch exited (status %d) before logging %q (its output follows)", p.code, msg)
		}
		if time.Now().After(deadline) {
			t.Fatalf("latch did not log %q within %v (its output follows)", msg, startLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logRecords parses the JSON log records in the output so far.
func (p *proc) logRecords() []map[string]any {
	var recs []map[string]any
	for _, line := range strings.Split(p.out.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil {
			recs = append(recs, rec)
		}
	}
	return recs
}

// countLog counts the JSON log records with message msg.
func (p *proc) countLog(msg string) int {
	n := 0
	for _, rec := range p.logRecords() {
		if rec["msg"] == msg {
			n++
		}
	}
	return n
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
