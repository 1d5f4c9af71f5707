package interop

import (
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"
)

// userStep is one `latch user` command and what must follow from it.
type userStep struct {
	name     string
	args     []string
	password string // handed over with --password-file
	code     int
	want     string            // in standard output, or in standard error when code != 0
	row      map[string]string // "list": columns of dave's row (by header prefix) and their values
	check    func(t *testing.T, s *serving)
}

const (
	dave    = "dave@example.org"
	davePW  = "dave's first password"
	davePW2 = "dave's second password"
)

// userSteps walks one account through every `latch user` command. The
// checks prove each command's effect on a running server by logging in.
func userSteps(t *testing.T, e *serveEnv) []userStep {
	certFile, keyFile, spki := newCA(t, "Client CA unknown to Latch").writeClient(t.TempDir(), dave)
	clientCert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	withCert := tlsClient(t, e.caFile)
	withCert.Certificates = []tls.Certificate{clientCert}
	legacyDay := time.Now().UTC().AddDate(0, 0, 30).Format(time.DateOnly)
	today := time.Now().UTC().Format(time.DateOnly)

	loginTLS := func(password, want string) func(t *testing.T, s *serving) {
		return func(t *testing.T, s *serving) {
			c := dialPOP3(t, s.implicit, tlsClient(t, e.caFile))
			if r := c.login(dave, password); !strings.HasPrefix(r, want) {
				t.Errorf("PASS: %q, want %q", r, want)
			}
			c.quit()
		}
	}
	// RFC 8314 4.1: a legacy allowance lets USER/PASS through without
	// TLS, on the STLS port, until it ends.
	loginCleartext := func(want string) func(t *testing.T, s *serving) {
		return func(t *testing.T, s *serving) {
			c := dialPOP3(t, s.starttls, nil)
			if r := c.login(dave, davePW); !strings.HasPrefix(r, want) {
				t.Errorf("PASS without TLS: %q, want %q", r, want)
			}
			c.quit()
		}
	}
	// RFC 8314 4.2, RFC 5034: a bound certificate logs in by EXTERNAL.
	external := func(bound bool) func(t *testing.T, s *serving) {
		return func(t *testing.T, s *serving) {
			c := dialPOP3(t, s.implicit, withCert)
			c.ok("CAPA")
			offered := slices.ContainsFunc(c.multi(), func(l string) bool {
				return strings.HasPrefix(l, "SASL ") && slices.Contains(strings.Fields(l), "EXTERNAL")
			})
			r := c.cmd("AUTH EXTERNAL =")
			if offered != bound || strings.HasPrefix(r, "+OK") != bound {
				t.Errorf("certificate bound %v: EXTERNAL offered %v, AUTH EXTERNAL %q", bound, offered, r)
			}
			c.quit()
		}
	}

	return []userStep{
		{name: "add", args: []string{"add", dave}, password: davePW, want: "added " + dave, check: loginTLS(davePW, "+OK")},
		{name: "list", args: []string{"list"}, row: map[string]string{"PASSWORD": "set", "CERTS": "0", "LEGACY": "-", "CLEARTEXT-EXPOSED": "-", "MUST-CHANGE": "no"}},
		{name: "add again", args: []string{"add", dave}, password: davePW, code: 1, want: "already taken"},
		{name: "legacy", args: []string{"legacy", dave, "--until", legacyDay}, want: "allowed until the end of " + legacyDay, check: loginCleartext("+OK")},
		// The login without TLS sent the password in the clear, and the
		// account says so, however the server checked the password (here,
		// after the "add" check, from its credential cache).
		{name: "list legacy", args: []string{"list"}, row: map[string]string{"LEGACY": legacyDay, "CLEARTEXT-EXPOSED": today}},
		{name: "legacy off", args: []string{"legacy", dave, "--off"}, want: "refused again", check: loginCleartext("-ERR [AUTH]")},
		{name: "require-change", args: []string{"require-change", dave}, want: "logins refused", check: loginTLS(davePW, "-ERR [AUTH] the password must be changed")},
		{name: "list require-change", args: []string{"list"}, row: map[string]string{"MUST-CHANGE": "yes"}},
		{name: "passwd", args: []string{"passwd", dave}, password: davePW2, want: "password of " + dave + " changed", check: func(t *testing.T, s *serving) {
			loginTLS(davePW2, "+OK")(t, s)
			loginTLS(davePW, "-ERR [AUTH] invalid user name or password")(t, s)
		}},
		// A new password has crossed no network, and needs no change.
		{name: "list passwd", args: []string{"list"}, row: map[string]string{"MUST-CHANGE": "no", "CLEARTEXT-EXPOSED": "-"}},
		{name: "cert add", args: []string{"cert", "add", dave, certFile}, want: "bound " + spki + " to " + dave, check: external(true)},
		{name: "cert list", args: []string{"cert", "list", dave}, want: spki + "\n"},
		{name: "list cert", args: []string{"list"}, row: map[string]string{"CERTS": "1"}},
		{name: "cert del", args: []string{"cert", "del", dave, spki}, want: "unbound " + spki + " from " + dave, check: external(false)},
		{name: "cert list empty", args: []string{"cert", "list", dave}},
	}
}

// runUserStep runs a step's command with the given leading arguments and
// checks its output.
func runUserStep(t *testing.T, e *serveEnv, pre []string, st userStep) {
	t.Helper()
	args := pre
	if st.password != "" {
		args = append(args, "--password-file", writePassword(t, st.password))
	}
	r := latch(t, append(append([]string{"user"}, args...), st.args...)...)
	if r.code != st.code {
		t.Fatalf("latch user %s: exit status %d, want %d\n%s", strings.Join(st.args, " "), r.code, st.code, r)
	}
	out := r.stdout
	if st.code != 0 {
		out = r.stderr
	}
	if st.want == "" && st.row == nil && out != "" {
		t.Errorf("output %q, want none", out)
	}
	if !strings.Contains(out, st.want) {
		t.Errorf("output %q lacks %q", out, st.want)
	}
	if st.row != nil {
		row := listRow(t, r.stdout, dave)
		for col, want := range st.row {
			if got := row[col]; got != want {
				t.Errorf("list: %s = %q, want %q\n%s", col, got, want, r.stdout)
			}
		}
	}
}

// listRow parses `latch user list` and returns an account's row by
// column; a column is also found by the first word of its header
// ("LEGACY" for "LEGACY-THROUGH"), so wording can change.
func listRow(t *testing.T, out, name string) map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	header := strings.Fields(lines[0])
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != len(header) {
			t.Fatalf("list: row %q does not match header %q", line, lines[0])
		}
		if f[0] != name {
			continue
		}
		row := map[string]string{}
		for i, h := range header {
			row[h] = f[i]
			first, _, _ := strings.Cut(h, "-")
			row[first] = f[i]
		}
		return row
	}
	t.Fatalf("list has no row for %s:\n%s", name, out)
	return nil
}

// TestUserRunningServer runs `latch user` while latch serve runs: the
// commands go through the control socket (the store is locked by the
// server) and take effect at once.
func TestUserRunningServer(t *testing.T) {
	e := newServeEnv(t)
	s := e.start(t)
	for _, st := range userSteps(t, e) {
		t.Run(st.name, func(t *testing.T) {
			n := s.countLog("admin command")
			runUserStep(t, e, []string{"-c", e.config}, st)
			// The server logs each command it runs for the control socket.
			waitFor(t, startLimit, "the server to log the command", func() bool { return s.countLog("admin command") > n })
			if st.check != nil {
				st.check(t, s)
			}
		})
	}
}

// TestUserStoppedServer runs the same commands with no server running:
// they work on the store directly, and a server started afterwards sees
// what they did.
func TestUserStoppedServer(t *testing.T) {
	e := newServeEnv(t)
	for _, st := range userSteps(t, e) {
		t.Run(st.name, func(t *testing.T) {
			runUserStep(t, e, []string{"--data-dir", e.data}, st)
			if st.check != nil {
				s := e.start(t)
				st.check(t, s)
				s.stop(t)
			}
		})
	}
}
