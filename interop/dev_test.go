package interop

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/store/sqlite"
)

// devInfo is dev.json, the file `latch dev` writes for people and tests.
type devInfo struct {
	CACert     string            `json:"ca_cert"`
	ClientCert string            `json:"client_cert"`
	ClientKey  string            `json:"client_key"`
	ClientFor  string            `json:"client_cert_account"`
	Accounts   []devAccount      `json:"accounts"`
	Listeners  map[string]string `json:"listeners"` // "pop3s", "pop3", later "imaps", ...
}

type devAccount struct {
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// devServer is `latch dev --ports auto` running in a directory of its own.
// It can be stopped and started again on the same directory: accounts,
// passwords, certificates and mail stay, the ports change. Each start
// belongs to the test that called startDev, which stops it at its end;
// the methods report failures to the (sub)test they are given.
type devServer struct {
	owner testing.TB
	dir   string
	proc  *proc
	info  devInfo
}

func startDev(t testing.TB) *devServer {
	t.Helper()
	d := &devServer{owner: t, dir: t.TempDir()}
	d.start(t)
	return d
}

// devBanner ends what latch dev prints once it is up.
const devBanner = "Stop with Ctrl-C."

// start starts latch dev and waits until it is up: dev.json names its
// listeners, the banner is out, and a POP3 session has run. latch dev
// writes dev.json before it handles signals and prints the banner just
// before it begins to, so a SIGTERM sent on dev.json alone can meet the
// signal's default action and kill it.
func (d *devServer) start(t testing.TB) {
	t.Helper()
	// A restart finds the dev.json of the run before, with that run's
	// addresses. Clear them, so that what is waited for is this run's.
	d.clearListeners(t)
	d.proc = startProc(d.owner, "dev", "--dir", d.dir, "--ports", "auto")
	deadline := time.Now().Add(startLimit)
	for {
		data, err := os.ReadFile(filepath.Join(d.dir, "dev.json"))
		if err == nil {
			var info devInfo
			if err := json.Unmarshal(data, &info); err != nil {
				t.Fatalf("dev.json: %v\n%s", err, data)
			}
			if len(info.Listeners) > 0 && strings.Contains(d.proc.out.String(), devBanner) {
				d.info = info
				probe(t, d.addr(t, "pop3"))
				return
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		if d.proc.exited() {
			t.Fatalf("latch dev exited with status %d before it was up (its output follows)", d.proc.code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("latch dev was not up within %v: no listeners in dev.json, or no banner (its output follows)", startLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clearListeners removes "listeners" from dev.json, keeping every other
// key as it is.
func (d *devServer) clearListeners(t testing.TB) {
	t.Helper()
	path := filepath.Join(d.dir, "dev.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("dev.json: %v", err)
	}
	delete(m, "listeners")
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// stop stops the server with SIGTERM and requires a clean exit.
func (d *devServer) stop(t testing.TB) { t.Helper(); d.proc.stop(t) }

// crash kills the server with SIGKILL.
func (d *devServer) crash(t testing.TB) { t.Helper(); d.proc.kill(t) }

// addr returns the address of a listener named as in dev.json.
func (d *devServer) addr(t testing.TB, name string) string {
	t.Helper()
	a, ok := d.info.Listeners[name]
	if !ok {
		t.Fatalf("dev.json has no listener %q: %v", name, d.info.Listeners)
	}
	return a
}

// port returns the port of a listener named as in dev.json.
func (d *devServer) port(t testing.TB, name string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(d.addr(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// alice and bob are the two demo accounts; alice's address is in the
// demo client certificate.
func (d *devServer) alice() devAccount { return d.info.Accounts[0] }
func (d *devServer) bob() devAccount   { return d.info.Accounts[1] }

// deliver puts messages into a demo account's INBOX exactly as given.
//
// It does not go through LMTP or submission: delivery adds a Received
// field, and SMTP's DATA cannot carry bare LF line ends or a missing
// final line end, while these tests compare bytes and need such messages.
// The running server holds the store's lock, so deliver stops the server,
// appends with the store package the server itself uses, and starts it
// again. A client sees what it would after a delivery: new messages, on a
// server that restarted, which POP3 clients survive anyway.
func (d *devServer) deliver(t testing.TB, user string, msgs ...string) {
	t.Helper()
	d.stop(t)
	seed(t, filepath.Join(d.dir, "data"), user, msgs...)
	d.start(t)
}

// seed appends messages to an account's INBOX in a store that no server
// has open.
func seed(t testing.TB, dataDir, user string, msgs ...string) {
	t.Helper()
	st, err := sqlite.Open(dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	ctx := context.Background()
	a, err := st.Account(ctx, user)
	if err != nil {
		t.Fatalf("seed: account %s: %v", user, err)
	}
	mb, err := st.MailboxByName(ctx, a.ID, "INBOX")
	if err != nil {
		t.Fatalf("seed: %s INBOX: %v", user, err)
	}
	for _, m := range msgs {
		if _, err := st.Append(ctx, mb.ID, store.NewMessage{Body: strings.NewReader(m)}); err != nil {
			t.Fatalf("seed: append: %v", err)
		}
	}
}
