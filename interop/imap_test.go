package interop

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestIMAPImaplib(t *testing.T) {
	program(t, "python3", "python3")
	d := startDev(t)
	alice := d.alice()

	t.Run("session", func(t *testing.T) {
		const subject = "appended by imaplib"
		// Bytes APPEND must keep exactly: CRLF, a dot line, 8-bit text.
		raw := "From: alice@localhost\r\nTo: alice@localhost\r\nSubject: " + subject + "\r\nMessage-ID: <imaplib@example.org>\r\n\r\nfirst line\r\n.\r\nGr\u00fc\u00dfe\r\n"
		args := mailArgs(t, d, alice, "imap")
		args["append"] = raw
		args["subject"] = subject
		var got struct {
			TLS                string
			Caps               []string
			List               []string
			Select, Append     []any
			Body               string
			Unseen             []string
			SearchSubject      []string `json:"search_subject"`
			Meta               string
			MetaSubject        string `json:"meta_subject"`
			Store, Copy, Move  []any
			UnseenAfter        []string `json:"unseen_after"`
			Status             map[string]string
			Expunge            []any
			StatusAfterExpunge string `json:"status_after_expunge"`
			IDLE               struct {
				Continuation string
				Untagged     []string
				Done         string
			}
			Logout string
		}
		mailpy(t, args, &got)

		if got.TLS != "TLSv1.3" {
			t.Errorf("TLS version %q, want TLSv1.3", got.TLS)
		}
		// RFC 9051 and RFC 3501 both, and nothing of STARTTLS on an
		// implicit-TLS port (RFC 8314 3.2).
		for _, c := range []string{"IMAP4rev2", "IMAP4rev1", "IDLE", "MOVE", "UIDPLUS", "SPECIAL-USE"} {
			if !slices.Contains(got.Caps, c) {
				t.Errorf("CAPABILITY %q lacks %s", got.Caps, c)
			}
		}
		for _, c := range []string{"STARTTLS", "LOGINDISABLED"} {
			if slices.Contains(got.Caps, c) {
				t.Errorf("CAPABILITY %q has %s on an implicit-TLS port", got.Caps, c)
			}
		}

		// RFC 6154 special-use attributes.
		want := map[string]string{"INBOX": "", "Sent": `\Sent`, "Drafts": `\Drafts`, "Trash": `\Trash`, "Junk": `\Junk`, "Archive": `\Archive`}
		listRE := regexp.MustCompile(`^\(([^)]*)\) "/" "?([^"]+)"?$`)
		found := map[string]bool{}
		for _, l := range got.List {
			m := listRE.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("LIST line %q", l)
				continue
			}
			use, ok := want[m[2]]
			if !ok {
				continue
			}
			found[m[2]] = true
			if use != "" && !slices.Contains(strings.Fields(m[1]), use) {
				t.Errorf("LIST %q: want attribute %s", l, use)
			}
		}
		if len(found) != len(want) {
			t.Errorf("LIST %q: want %v", got.List, want)
		}

		if got.Select[0] != "OK" || got.Append[0] != "OK" {
			t.Fatalf("SELECT %v, APPEND %v", got.Select, got.Append)
		}
		if body := unb64(t, got.Body); body != raw {
			t.Errorf("BODY.PEEK[] after APPEND: %q, want %q", body, raw)
		}
		if !slices.Equal(got.Unseen, []string{"1"}) || !slices.Equal(got.SearchSubject, []string{"1"}) {
			t.Errorf("SEARCH UNSEEN %q, SEARCH SUBJECT %q: want message 1", got.Unseen, got.SearchSubject)
		}
		if !strings.Contains(got.Meta, "FLAGS ()") || !strings.Contains(got.Meta, "RFC822.SIZE "+strconv.Itoa(len(raw))) {
			t.Errorf("FETCH FLAGS RFC822.SIZE: %q, want no flags and size %d", got.Meta, len(raw))
		}
		if got.MetaSubject != "Subject: "+subject+"\r\n\r\n" {
			t.Errorf("BODY.PEEK[HEADER.FIELDS (SUBJECT)]: %q", got.MetaSubject)
		}
		if got.Store[0] != "OK" || !strings.Contains(got.Store[1].([]any)[0].(string), `\Seen`) || len(got.UnseenAfter) != 0 {
			t.Errorf("STORE +FLAGS \\Seen: %v, then SEARCH UNSEEN %q", got.Store, got.UnseenAfter)
		}
		// RFC 4315 COPYUID, RFC 6851 MOVE with its EXPUNGE.
		// COPYUID uidvalidity source-uid dest-uid.
		if got.Copy[0] != "OK" || len(strings.Fields(fmt.Sprint(got.Copy[1]))) != 3 || got.Move[0] != "OK" || !slices.Equal(got.Move[2].([]any), []any{"1"}) {
			t.Errorf("COPY %v, MOVE %v", got.Copy, got.Move)
		}
		for mb, n := range map[string]string{"INBOX": "0", "Archive": "1", "Trash": "1"} {
			if got.Status[mb] != `"`+mb+`" (MESSAGES `+n+`)` {
				t.Errorf("STATUS %s after COPY and MOVE: %q, want %s messages", mb, got.Status[mb], n)
			}
		}
		if got.Expunge[0] != "OK" || got.StatusAfterExpunge != `"Archive" (MESSAGES 0)` {
			t.Errorf("EXPUNGE %v, then STATUS %q", got.Expunge, got.StatusAfterExpunge)
		}
		// RFC 2177: another session's APPEND reaches the idling one.
		if !strings.HasPrefix(got.IDLE.Continuation, "+") || !slices.Contains(got.IDLE.Untagged, "* 1 EXISTS") || !strings.HasPrefix(got.IDLE.Done, "OK") {
			t.Errorf("IDLE: %+v", got.IDLE)
		}
		if got.Logout != "BYE" {
			t.Errorf("LOGOUT: %q", got.Logout)
		}
	})

	t.Run("starttls", func(t *testing.T) {
		var got struct {
			CapsBefore []string `json:"caps_before"`
			CapsAfter  []string `json:"caps_after"`
			TLS        string
			Login      []any
			Select     string
		}
		mailpy(t, mailArgs(t, d, alice, "imap_starttls"), &got)
		// imaplib upper-cases capabilities. RFC 9051 6.2.1 / RFC 8314 4.1.
		if !slices.Contains(got.CapsBefore, "STARTTLS") || !slices.Contains(got.CapsBefore, "LOGINDISABLED") || slices.ContainsFunc(got.CapsBefore, func(c string) bool { return strings.HasPrefix(c, "AUTH=") }) {
			t.Errorf("CAPABILITY before STARTTLS: %q", got.CapsBefore)
		}
		if slices.Contains(got.CapsAfter, "STARTTLS") || slices.Contains(got.CapsAfter, "LOGINDISABLED") || !slices.Contains(got.CapsAfter, "AUTH=PLAIN") {
			t.Errorf("CAPABILITY after STARTTLS: %q", got.CapsAfter)
		}
		if got.TLS != "TLSv1.3" || len(got.Login) == 0 || got.Login[0] != "OK" || got.Select != "OK" {
			t.Errorf("after STARTTLS: TLS %q, LOGIN %v, SELECT %q", got.TLS, got.Login, got.Select)
		}
	})

	// RFC 8314 4.1, RFC 5530 PRIVACYREQUIRED: the same refusal whatever
	// the password.
	t.Run("cleartext refused", func(t *testing.T) {
		args := mailArgs(t, d, alice, "imap_cleartext")
		args["passwords"] = []string{alice.Password, "wrong-" + alice.Password}
		var got struct{ Errors []string }
		mailpy(t, args, &got)
		if len(got.Errors) != 2 || !strings.Contains(got.Errors[0], "PRIVACYREQUIRED") {
			t.Fatalf("LOGIN without TLS: %q, want PRIVACYREQUIRED", got.Errors)
		}
		if got.Errors[0] != got.Errors[1] {
			t.Errorf("right password: %q; wrong password: %q; want the same answer", got.Errors[0], got.Errors[1])
		}
	})
}
