package listener

// Benchmarks of the server side of implicit TLS.
//
// Method. The server (Server, gate, handler) runs in the benchmark process;
// the TLS clients run in a child process: the test binary started again
// with LATCH_BENCH_CHILD set, which TestMain turns into a load generator.
// The client's CPU time therefore never lands on the server's account: the
// server's CPU time is the getrusage(RUSAGE_SELF) user+system time of the
// benchmark process over the child's whole run (the process does nothing
// else meanwhile), divided by the number of handshakes. Throughput is the
// handshakes the child completed divided by the wall time of its dialing
// loop; client and server share the machine's cores, so it is a floor of
// what the server alone sustains (cores / CPU per handshake is the
// ceiling). Each handshake is a full one (no session cache on the client),
// TLS 1.3, the group pinned by the client, and ends when the client has
// read the server's first byte, so the server has finished too.
//
// Memory per idle connection: the child opens N connections, completes
// each handshake and reads a greeting byte, then holds them open while
// every handler blocks in Read. The server's live heap after GC, its
// goroutine stacks and its resident set size are read before and after;
// the growth divided by N is reported. Handlers here read into a small
// buffer; an engine's own buffers (a bufio.Reader, say) come on top. RSS
// also counts memory the runtime has not yet returned after the
// handshakes, so it overstates the steady state.
//
// Run: go test -run '^$' -bench . -benchtime=2000x ./internal/listener/
// (BenchmarkIdleConnMemory measures once, whatever b.N.)

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/tlsgate"
	"github.com/latchmail/latch/internal/tlsgate/tlstest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("LATCH_BENCH_CHILD"); mode != "" {
		if err := benchChild(mode); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchServer starts an implicit-TLS server with one certificate of the
// given key type and returns its address and the CA file clients trust.
func benchServer(b *testing.B, key tlstest.KeyType, handler Handler) (addr, caFile string) {
	b.Helper()
	dir := b.TempDir()
	ca := tlstest.NewCA(b, "Bench CA")
	cf, kf := ca.Issue(b, tlstest.Spec{DNSNames: []string{"mail.example"}, Key: key}).WriteFiles(b, dir, "server")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g, err := tlsgate.New(tlsgate.Options{Certificates: []tlsgate.KeyPair{{CertFile: cf, KeyFile: kf}}, Log: quiet})
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{Gate: g, Log: quiet, Listeners: []Config{{
		Service: "imap", Address: "127.0.0.1:0", Mode: tlsgate.Implicit,
		Policy:  tlsgate.Policy{ALPN: "imap", SessionTickets: true},
		Handler: handler,
	}}}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s.Addrs()[0].String(), ca.WriteCAFile(b, dir)
}

// child starts the load generator.
func child(b *testing.B, mode, addr, caFile string, n int, group string) *exec.Cmd {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"LATCH_BENCH_CHILD="+mode, "LATCH_BENCH_ADDR="+addr, "LATCH_BENCH_CA="+caFile,
		"LATCH_BENCH_N="+strconv.Itoa(n), "LATCH_BENCH_GROUP="+group)
	cmd.Stderr = os.Stderr
	return cmd
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

func BenchmarkImplicitHandshake(b *testing.B) {
	greet := HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
		c.Write([]byte{'*'})
		io.Copy(io.Discard, c)
	})
	for _, key := range []struct {
		name string
		key  tlstest.KeyType
	}{{"ECDSA-P256", tlstest.ECDSA}, {"RSA-2048", tlstest.RSA}} {
		for _, group := range []string{"x25519", "X25519MLKEM768"} {
			b.Run(key.name+"/"+group, func(b *testing.B) {
				addr, caFile := benchServer(b, key.key, greet)
				cmd := child(b, "handshakes", addr, caFile, b.N, group)
				user0, sys0 := cpuTime()
				out, err := cmd.Output()
				user1, sys1 := cpuTime()
				user, sys := user1-user0, sys1-sys0
				if err != nil {
					b.Fatalf("client process: %v", err)
				}
				elapsed, err := time.ParseDuration(strings.TrimSpace(string(out)))
				if err != nil {
					b.Fatalf("client process said %q", out)
				}
				b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N), "ns/op")
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "handshakes/s")
				b.ReportMetric(float64((user+sys).Microseconds())/float64(b.N), "server-cpu-µs/handshake")
				// The kernel's share (TCP on loopback, accept, close) apart.
				b.ReportMetric(float64(sys.Microseconds())/float64(b.N), "server-sys-µs/handshake")
			})
		}
	}
}

func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 1000
	var idle atomic.Int64
	handler := HandlerFunc(func(ctx context.Context, c *tlsgate.Conn) {
		c.Write([]byte{'*'})
		var buf [64]byte
		idle.Add(1)
		c.Read(buf[:])
		idle.Add(-1)
	})
	addr, caFile := benchServer(b, tlstest.ECDSA, handler)
	// One measurement however large b.N: it is a size, not a speed.
	{
		before := memNow()
		cmd := child(b, "idle", addr, caFile, n, "x25519")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
			b.Fatalf("client process said %q, %v", line, err)
		}
		for idle.Load() < n {
			time.Sleep(10 * time.Millisecond)
		}
		after := memNow()
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
		for idle.Load() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/conn")
		b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/conn")
		b.ReportMetric(float64(after.rss-before.rss)/n, "rss-B/conn")
	}
}

type memSample struct{ heap, stack, rss int64 }

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSample{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse)}
	if statm, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(statm)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			s.rss = pages * int64(os.Getpagesize())
		}
	}
	return s
}

// benchChild is the client side, in its own process.
func benchChild(mode string) error {
	addr := os.Getenv("LATCH_BENCH_ADDR")
	n, err := strconv.Atoi(os.Getenv("LATCH_BENCH_N"))
	if err != nil {
		return err
	}
	pem, err := os.ReadFile(os.Getenv("LATCH_BENCH_CA"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	group := tls.X25519
	if os.Getenv("LATCH_BENCH_GROUP") == "X25519MLKEM768" {
		group = tls.X25519MLKEM768
	}
	cfg := &tls.Config{RootCAs: roots, ServerName: "mail.example", MinVersion: tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{group}, NextProtos: []string{"imap"}}
	connect := func() (*tls.Conn, error) {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			return nil, err
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}

	// Enough workers to keep both sides busy, few enough not to overflow
	// the listen backlog.
	workers := min(n, 4*runtime.GOMAXPROCS(0))
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var held []*tls.Conn
	var wg sync.WaitGroup
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				c, err := connect()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if c != nil && mode == "idle" {
					held = append(held, c)
				}
				mu.Unlock()
				if c != nil && mode != "idle" {
					c.Close()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return firstErr
	}
	switch mode {
	case "handshakes":
		fmt.Println(elapsed)
	case "idle":
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin) // hold the connections until told
		for _, c := range held {
			c.Close()
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	return nil
}
