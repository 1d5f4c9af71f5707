package interop

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// poplibDriver runs one scenario with Python's poplib, the client of the
// Python standard library (OpenSSL underneath), and prints its findings
// as JSON. Its argument is a JSON object: scenario, host, port, ca, user,
// password, and the scenario's own keys.
const poplibDriver = `
import base64, json, poplib, ssl, sys

a = json.loads(sys.argv[1])

def context(ca):
    # Certificate and host name verification against the dev CA only.
    return ssl.create_default_context(cafile=ca)

def implicit():
    return poplib.POP3_SSL(a["host"], a["port"], context=context(a["ca"]), timeout=30)

def b64(b):
    return base64.b64encode(b).decode()

def read():
    p = implicit()
    out = {"greeting": p.getwelcome().decode(), "tls": p.sock.version()}
    p.user(a["user"])
    p.pass_(a["password"])
    out["stat"] = list(p.stat())
    out["list"] = [l.decode() for l in p.list()[1]]
    out["uidl"] = [l.decode() for l in p.uidl()[1]]
    out["retr"] = []
    for n in range(1, out["stat"][0] + 1):
        _, lines, octets = p.retr(n)
        out["retr"].append({"octets": octets, "body": b64(b"".join(l + b"\r\n" for l in lines))})
    _, lines, _ = p.top(1, a["top"])
    out["top"] = b64(b"".join(l + b"\r\n" for l in lines))
    out["quit"] = p.quit().decode()
    return out

def dele():
    p = implicit()
    p.user(a["user"])
    p.pass_(a["password"])
    before = [l.decode() for l in p.uidl()[1]]
    for n in a["dele"]:
        p.dele(n)
    out = {"before": before, "quit": p.quit().decode()}
    p = implicit()
    p.user(a["user"])
    p.pass_(a["password"])
    out["stat"] = list(p.stat())
    out["after"] = [l.decode() for l in p.uidl()[1]]
    p.quit()
    return out

def stls():
    p = poplib.POP3(a["host"], a["port"], timeout=30)
    out = {"capa_before": sorted(p.capa())}
    p.stls(context(a["ca"]))
    out["tls"] = p.sock.version()
    out["capa_after"] = sorted(p.capa())
    p.user(a["user"])
    p.pass_(a["password"])
    out["stat"] = list(p.stat())
    out["quit"] = p.quit().decode()
    return out

def cleartext():
    # What a client gets that logs in where it should have used STLS.
    p = poplib.POP3(a["host"], a["port"], timeout=30)
    out = {"user": p.user(a["user"]).decode()}
    try:
        p.pass_(a["password"])
        out["error"] = None
    except poplib.error_proto as e:
        out["error"] = e.args[0].decode()
    p.close()
    return out

def untrusted():
    # The control: a CA that did not issue the server's certificate.
    try:
        p = poplib.POP3_SSL(a["host"], a["port"], context=context(a["other_ca"]), timeout=30)
        p.quit()
        return {"error": None}
    except ssl.SSLCertVerificationError as e:
        return {"error": "verify: " + e.verify_message}

print(json.dumps(globals()[a["scenario"]]()))
`

// poplib runs a driver scenario and decodes its JSON answer into out.
func poplib(t *testing.T, args map[string]any, out any) {
	t.Helper()
	python := program(t, "python3", "python3")
	enc, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, "", python, "-c", poplibDriver, string(enc))
	if r.code != 0 {
		t.Fatalf("python3 %s: %s", args["scenario"], r)
	}
	if err := json.Unmarshal([]byte(r.stdout), out); err != nil {
		t.Fatalf("python3 %s: %v\n%s", args["scenario"], err, r)
	}
}

// pyArgs are the driver arguments for an account on a dev listener. The
// host is the listener's IP address, which the dev certificate names too,
// so Python checks it against the certificate's IP address entry.
func pyArgs(t *testing.T, d *devServer, listener string, acct devAccount, scenario string) map[string]any {
	host, port, _ := net.SplitHostPort(d.addr(t, listener))
	p, _ := strconv.Atoi(port)
	return map[string]any{
		"scenario": scenario, "host": host, "port": p, "ca": d.info.CACert,
		"user": acct.Username, "password": acct.Password,
	}
}

func unb64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPoplib(t *testing.T) {
	program(t, "python3", "python3")
	d := startDev(t)
	d.deliver(t, d.alice().Username, testMessages...)

	t.Run("read", func(t *testing.T) {
		args := pyArgs(t, d, "pop3s", d.alice(), "read")
		args["top"] = 1
		var got struct {
			Greeting string
			TLS      string
			Top      string
			Quit     string
			Stat     []int64
			List     []string
			UIDL     []string
			Retr     []struct {
				Octets int64
				Body   string
			}
		}
		poplib(t, args, &got)
		if !strings.HasPrefix(got.Greeting, "+OK") {
			t.Errorf("greeting %q", got.Greeting)
		}
		if got.TLS != "TLSv1.3" {
			t.Errorf("TLS version %q: want TLSv1.3, which both ends prefer (RFC 8997)", got.TLS)
		}
		var total int64
		for _, m := range testMessages {
			total += int64(len(m))
		}
		if len(got.Stat) != 2 || got.Stat[0] != int64(len(testMessages)) {
			t.Fatalf("STAT %v: want %d messages", got.Stat, len(testMessages))
		}
		if len(got.Retr) != len(testMessages) || len(got.List) != len(testMessages) || len(got.UIDL) != len(testMessages) {
			t.Fatalf("LIST %q, UIDL %q, %d RETR: want %d each", got.List, got.UIDL, len(got.Retr), len(testMessages))
		}
		seen := map[string]bool{}
		for i, m := range testMessages {
			n := strconv.Itoa(i + 1)
			if body := unb64(t, got.Retr[i].Body); body != onWire(m) {
				t.Errorf("RETR %d (%s): got %q, want %q", i+1, subject(m), trunc(body), trunc(onWire(m)))
			}
			num, uid, _ := strings.Cut(got.UIDL[i], " ")
			// RFC 1939 section 7: 1 to 70 characters from 0x21 to 0x7E,
			// unique in the maildrop.
			if num != n || uid == "" || len(uid) > 70 || strings.ContainsFunc(uid, func(r rune) bool { return r < 0x21 || r > 0x7e }) || seen[uid] {
				t.Errorf("UIDL entry %q: want %s and a unique id of 1 to 70 printable characters", got.UIDL[i], n)
			}
			seen[uid] = true
			num, _, _ = strings.Cut(got.List[i], " ")
			if num != n {
				t.Errorf("LIST entry %q: want message %s", got.List[i], n)
			}
		}
		wantTop := "From: a@example.org\r\nTo: alice@localhost\r\nSubject: plain\r\nMessage-ID: <1@example.org>\r\n\r\nHello, Alice.\r\n"
		if top := unb64(t, got.Top); top != wantTop {
			t.Errorf("TOP 1 1 = %q, want %q", top, wantTop)
		}
		if !strings.HasPrefix(got.Quit, "+OK") {
			t.Errorf("QUIT: %q", got.Quit)
		}

		// RFC 1939 section 11: sizes count each line end as the two
		// octets CRLF, as the message is sent, whatever the store keeps;
		// clients use them to check that a message arrived whole.
		t.Run("sizes count CRLF", func(t *testing.T) {
			var wire int64
			for i, m := range testMessages {
				wire += int64(len(onWire(m)))
				want := strconv.Itoa(i+1) + " " + strconv.Itoa(len(onWire(m)))
				if got.List[i] != want || got.Retr[i].Octets != int64(len(onWire(m))) {
					t.Errorf("message %d (%s): LIST %q, RETR %d octets; want %q (stored: %d octets)", i+1, subject(m), got.List[i], got.Retr[i].Octets, want, len(m))
				}
			}
			if got.Stat[1] != wire {
				t.Errorf("STAT size %d, want %d (stored: %d)", got.Stat[1], wire, total)
			}
		})
	})

	t.Run("dele", func(t *testing.T) {
		dele := []int{1, 3}
		args := pyArgs(t, d, "pop3s", d.alice(), "dele")
		args["dele"] = dele
		var got struct {
			Quit          string
			Stat          []int64
			Before, After []string
		}
		poplib(t, args, &got)
		if !strings.HasPrefix(got.Quit, "+OK") {
			t.Fatalf("QUIT: %q", got.Quit)
		}
		// The new session numbers the messages afresh (RFC 1939 section
		// 5), but each keeps its unique-id (section 7).
		var want []string
		for i, e := range got.Before {
			if slices.Contains(dele, i+1) {
				continue
			}
			_, uid, _ := strings.Cut(e, " ")
			want = append(want, strconv.Itoa(len(want)+1)+" "+uid)
		}
		if !slices.Equal(got.After, want) || got.Stat[0] != int64(len(want)) {
			t.Errorf("after DELE %v and QUIT: STAT %v, UIDL %q; want UIDL %q", dele, got.Stat, got.After, want)
		}
	})

	t.Run("stls", func(t *testing.T) {
		var got struct {
			CapaBefore []string `json:"capa_before"`
			CapaAfter  []string `json:"capa_after"`
			TLS        string
			Quit       string
			Stat       []int64
		}
		poplib(t, pyArgs(t, d, "pop3", d.bob(), "stls"), &got)
		// RFC 2595 section 4 and RFC 8314 4.1: before STLS, nothing to
		// log in with is offered; after it, STLS is gone and USER is there.
		if !slices.Contains(got.CapaBefore, "STLS") || slices.Contains(got.CapaBefore, "USER") || slices.Contains(got.CapaBefore, "SASL") {
			t.Errorf("CAPA before STLS: %q", got.CapaBefore)
		}
		if slices.Contains(got.CapaAfter, "STLS") || !slices.Contains(got.CapaAfter, "USER") {
			t.Errorf("CAPA after STLS: %q", got.CapaAfter)
		}
		if got.TLS != "TLSv1.3" || got.Stat[0] != 0 || !strings.HasPrefix(got.Quit, "+OK") {
			t.Errorf("after STLS: TLS %q, STAT %v, QUIT %q", got.TLS, got.Stat, got.Quit)
		}
	})

	// RFC 8314 4.1: on the STLS port without STLS the login is refused
	// with the AUTH response code (RFC 3206), and the answer does not
	// depend on the password, so it tells an eavesdropper nothing.
	t.Run("cleartext refused", func(t *testing.T) {
		attempts := []struct {
			acct     devAccount
			password string
		}{
			{d.bob(), "wrong-" + d.bob().Password},
			{d.alice(), d.alice().Password},
			{d.alice(), "wrong-" + d.alice().Password},
		}
		var answers []string
		for _, a := range attempts {
			args := pyArgs(t, d, "pop3", a.acct, "cleartext")
			args["password"] = a.password
			var got struct{ User, Error string }
			poplib(t, args, &got)
			if !strings.HasPrefix(got.User, "+OK") {
				t.Errorf("USER: %q", got.User)
			}
			if !strings.HasPrefix(got.Error, "-ERR [AUTH] ") {
				t.Errorf("PASS without TLS: error %q, want -ERR [AUTH] ...", got.Error)
			}
			answers = append(answers, got.Error)
		}
		if answers[1] != answers[2] {
			t.Errorf("right password: %q; wrong password: %q; want the same answer", answers[1], answers[2])
		}

		// The right password crossed the network in the clear all the
		// same: the account records it, found out after the answer. Bob's
		// wrong password, checked before, exposed nothing.
		list := func() string {
			r := latch(t, "user", "--data-dir", filepath.Join(d.dir, "data"), "list")
			if r.code != 0 {
				t.Fatalf("latch user list: %s", r)
			}
			return r.stdout
		}
		var out string
		waitFor(t, startLimit, "alice's password to be marked exposed", func() bool {
			out = list()
			return listRow(t, out, d.alice().Username)["CLEARTEXT-EXPOSED"] != "-"
		})
		if got := listRow(t, out, d.bob().Username)["CLEARTEXT-EXPOSED"]; got != "-" {
			t.Errorf("bob sent a wrong password without TLS, and his account says it was exposed on %s", got)
		}
	})

	t.Run("untrusted CA", func(t *testing.T) {
		args := pyArgs(t, d, "pop3s", d.alice(), "untrusted")
		args["other_ca"] = otherCA(t)
		var got struct{ Error string }
		poplib(t, args, &got)
		if !strings.Contains(got.Error, "unable to get local issuer certificate") {
			t.Errorf("poplib trusting another CA: %q, want a verification failure", got.Error)
		}
	})
}

// otherCA writes the certificate of a CA that issued nothing Latch uses.
func otherCA(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "other-ca.crt")
	ca := newCA(t, "Unrelated CA")
	if err := os.WriteFile(path, ca.certPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// trunc shortens long strings in failure messages.
func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
