package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/pki"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/store/sqlite"
	"github.com/latchmail/latch/internal/tlsgate"
)

func open(t *testing.T) (*sqlite.Store, string) {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dir
}

// run executes one command and returns its output.
func run(t *testing.T, st store.Store, password string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Run(context.Background(), st, Request{Args: args, Password: password}, &out)
	return out.String(), err
}

func mustRun(t *testing.T, st store.Store, password string, args ...string) string {
	t.Helper()
	out, err := run(t, st, password, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

func TestAddCreatesAccountAndMailboxes(t *testing.T) {
	st, _ := open(t)
	ctx := context.Background()
	mustRun(t, st, "a long password", "add", "Alice@Example.org", "--alias", "a@example.org", "--quota", "1000")
	a, err := st.Account(ctx, "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if a.Address != "alice@example.org" || len(a.Aliases) != 1 || a.QuotaBytes != 1000 || a.SCRAM == nil {
		t.Fatalf("account = %+v", a)
	}
	if ok, _ := auth.VerifyPassword(a.PasswordHash, "a long password"); !ok {
		t.Fatal("password hash does not verify")
	}
	boxes, err := st.ListMailboxes(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	special := map[string]string{}
	for _, b := range boxes {
		special[b.Name] = b.SpecialUse
	}
	for _, want := range DefaultMailboxes {
		if got, ok := special[want.Name]; !ok || got != want.SpecialUse {
			t.Errorf("mailbox %s: present %v, special use %q; want %q", want.Name, ok, got, want.SpecialUse)
		}
	}
}

func TestRefusals(t *testing.T) {
	st, _ := open(t)
	mustRun(t, st, "a long password", "add", "alice@example.org")
	tests := []struct {
		name     string
		password string
		args     []string
		want     string
	}{
		{"no command", "", nil, "missing command"},
		{"unknown command", "", []string{"frob"}, "unknown command"},
		{"short password", "short", []string{"add", "bob@example.org"}, "too short"},
		{"not an address", "a long password", []string{"add", "bob"}, "not a plain email address"},
		{"display name", "a long password", []string{"add", "Bob <bob@example.org>"}, "not a plain email address"},
		{"taken", "a long password", []string{"add", "alice@example.org"}, "already taken"},
		{"taken alias", "a long password", []string{"add", "bob@example.org", "--alias", "alice@example.org"}, "already taken"},
		{"unknown user", "a long password", []string{"passwd", "nobody@example.org"}, "no account"},
		{"legacy without date", "", []string{"legacy", "alice@example.org"}, "either --until"},
		{"legacy in the past", "", []string{"legacy", "alice@example.org", "--until", "2001-01-01"}, "in the past"},
		{"legacy too long", "", []string{"legacy", "alice@example.org", "--until", time.Now().AddDate(2, 0, 0).Format("2006-01-02")}, "at most a year"},
		{"legacy bad date", "", []string{"legacy", "alice@example.org", "--until", "tomorrow"}, "not a date"},
		{"cert bad spki", "", []string{"cert", "add", "alice@example.org", "--spki", "abc"}, "64 hex digits"},
		{"cert no file", "", []string{"cert", "add", "alice@example.org", "/nonexistent.pem"}, "no such file"},
		{"cert add neither", "", []string{"cert", "add", "alice@example.org"}, "either a certificate file"},
		{"cert list nobody", "", []string{"cert", "list"}, "want 1 argument"},
		{"cert del unbound", "", []string{"cert", "del", "alice@example.org", "00"}, "not bound"},
		{"extra argument", "", []string{"del", "a@example.org", "b@example.org"}, "want 1 argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := run(t, st, tt.password, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v: error %v, want one saying %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestAccountLifecycle(t *testing.T) {
	st, dir := open(t)
	ctx := context.Background()
	mustRun(t, st, "a long password", "add", "alice@example.org")

	until := time.Now().AddDate(0, 1, 0).Format("2006-01-02")
	mustRun(t, st, "", "legacy", "alice@example.org", "--until", until)
	mustRun(t, st, "", "require-change", "alice@example.org")
	a, _ := st.Account(ctx, "alice@example.org")
	a.CleartextExposed = time.Now()
	if err := st.UpdateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	list := mustRun(t, st, "", "list")
	line := strings.Split(list, "\n")[1]
	for _, want := range []string{"alice@example.org", until, time.Now().UTC().Format("2006-01-02"), "yes"} {
		if !strings.Contains(line, want) {
			t.Errorf("list line %q lacks %q", line, want)
		}
	}
	// A new password clears "must change" and the exposure mark.
	mustRun(t, st, "another password", "passwd", "alice@example.org")
	a, _ = st.Account(ctx, "alice@example.org")
	if a.MustChangePassword || !a.CleartextExposed.IsZero() {
		t.Fatalf("after passwd: must change %v, exposed %v", a.MustChangePassword, a.CleartextExposed)
	}
	mustRun(t, st, "", "legacy", "alice@example.org", "--off")

	// Certificates: by file and by fingerprint, each bound once.
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(pki.Template{CommonName: "alice", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(dir, "alice.crt")
	if err := pki.WriteCert(certFile, c.Cert); err != nil {
		t.Fatal(err)
	}
	fp := tlsgate.SPKIFingerprint(c.Cert)
	mustRun(t, st, "", "cert", "add", "alice@example.org", certFile)
	mustRun(t, st, "a long password", "add", "bob@example.org")
	if _, err := run(t, st, "", "cert", "add", "bob@example.org", "--spki", fp); err == nil || !strings.Contains(err.Error(), "already bound to alice") {
		t.Fatalf("binding one certificate twice: %v", err)
	}
	if got := mustRun(t, st, "", "cert", "list", "alice@example.org"); got != fp+"\n" {
		t.Fatalf("cert list = %q, want %q", got, fp)
	}
	if a, err := st.AccountByCert(ctx, fp); err != nil || a.Name != "alice@example.org" {
		t.Fatalf("AccountByCert = %v, %v", a, err)
	}
	mustRun(t, st, "", "cert", "del", "alice@example.org", fp)
	if _, err := st.AccountByCert(ctx, fp); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after cert del: %v", err)
	}

	mustRun(t, st, "", "del", "alice@example.org")
	if _, err := st.Account(ctx, "alice@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after del: %v", err)
	}
}

func TestControlSocket(t *testing.T) {
	st, dir := open(t)
	if err := Call(dir, Request{Args: []string{"list"}}, io.Discard); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Call without server: %v, want ErrNoServer", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Serve(ctx, dir, st, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, SocketName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v, mode %v; want 0600", err, fi.Mode())
	}
	var out bytes.Buffer
	if err := Call(dir, Request{Args: []string{"add", "carol@example.org"}, Password: "a long password"}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "added carol@example.org\n" {
		t.Fatalf("output %q", out.String())
	}
	if err := Call(dir, Request{Args: []string{"passwd", "nobody@example.org"}, Password: "a long password"}, io.Discard); err == nil || !strings.Contains(err.Error(), "no account") {
		t.Fatalf("error through the socket: %v", err)
	}
	if _, err := st.Account(context.Background(), "carol@example.org"); err != nil {
		t.Fatalf("account made through the socket: %v", err)
	}
}

func TestNeedsPassword(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want bool
	}{
		{[]string{"add", "a@b.c"}, true},
		{[]string{"add", "a@b.c", "--no-password"}, false},
		{[]string{"passwd", "a@b.c"}, true},
		{[]string{"list"}, false},
		{nil, false},
	} {
		if got := NeedsPassword(tt.args); got != tt.want {
			t.Errorf("NeedsPassword(%q) = %v", tt.args, got)
		}
	}
}
