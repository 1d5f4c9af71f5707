package interop

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// binDir holds the latch binary built for this run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "latch-interop-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildErr  error
)

// latchBinary returns the path of ./cmd/latch, built on first use. It is
// built with -race when the tests are, which reuses the packages compiled
// for the test binary and makes the server report its own data races.
func latchBinary(t testing.TB) string {
	t.Helper()
	path := filepath.Join(binDir, "latch")
	buildOnce.Do(func() {
		args := []string{"build", "-o", path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/latchmail/latch/cmd/latch")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return path
}

// program returns the path of a third-party program a test drives. When
// it is missing the test fails in CI, which must have installed it (the
// Debian package pkg, see scripts/test.sh), and is skipped elsewhere.
func program(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed, and CI must run this test: scripts/test.sh installs Debian package %s", name, pkg)
	}
	t.Skipf("%s is not installed (Debian package %s; scripts/test.sh installs it): %v", name, pkg, err)
	return ""
}

// result is what a finished program left.
type result struct {
	stdout, stderr string
	code           int // exit status; -1 if killed by a signal
}

func (r result) String() string {
	return fmt.Sprintf("exit status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cmdTimeout bounds every program a test runs.
const cmdTimeout = 60 * time.Second

// run runs a program to its end with the given standard input and extra
// environment. It fails the test if the program cannot start or outlives
// cmdTimeout.
func run(t testing.TB, env []string, stdin string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("%s %s: still running after %v\n%s", name, strings.Join(args, " "), cmdTimeout, r)
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// latch runs a latch subcommand to its end.
func latch(t testing.TB, args ...string) result {
	t.Helper()
	return run(t, latchEnv(), "", latchBinary(t), args...)
}

// latchEnv is the environment latch runs in, in addition to the test's.
// A -race binary otherwise waits a second at every exit for late reports
// (GORACE atexit_sleep_ms); `latch user` exits often.
func latchEnv() []string {
	if !raceEnabled {
		return nil
	}
	return []string{"GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
}

// waitFor polls cond until it holds, failing the test after limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
