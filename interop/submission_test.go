package interop

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// receivedTLS is RFC 8314 4.3's clause in a Received field, before the
// ";" that introduces the date (RFC 5321 4.4), on the unfolded field.
var receivedTLS = regexp.MustCompile(`^Received: .* with ESMTPSA .*\btls TLS_[A-Z0-9_]+ group [A-Za-z0-9]+; [A-Z][a-z]{2}, [0-9]{1,2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} [+-][0-9]{4}$`)

// headerField returns the first field called name in a message's header,
// unfolded, or "".
func headerField(msg, name string) string {
	head, _, _ := strings.Cut(strings.ReplaceAll(msg, "\r\n", "\n"), "\n\n")
	head = strings.ReplaceAll(strings.ReplaceAll(head, "\n\t", " "), "\n ", " ")
	for _, f := range strings.Split(head, "\n") {
		if k, _, ok := strings.Cut(f, ":"); ok && strings.EqualFold(k, name) {
			return f
		}
	}
	return ""
}

func TestSubmissionSmtplib(t *testing.T) {
	program(t, "python3", "python3")
	d := startDev(t)
	alice, bob := d.alice(), d.bob()

	t.Run("submit", func(t *testing.T) {
		args := mailArgs(t, d, alice, "submit")
		args["rcpt"] = bob.Address
		var got struct {
			TLS             string
			Auth            []string
			Plain, Login    []any
			StartTLSLogin   []any          `json:"starttls_login"`
			StartTLSTLS     string         `json:"starttls_tls"`
			FeaturesBefore  []string       `json:"features_before"`
			FeaturesAfter   []string       `json:"features_after"`
			PlainRefused    map[string]any `json:"plain_refused"`
			LoginRefused    map[string]any `json:"login_refused"`
			StartTLSRefused map[string]any `json:"starttls_refused"`
			Forged          []any
		}
		mailpy(t, args, &got)
		if got.TLS != "TLSv1.3" || got.StartTLSTLS != "TLSv1.3" {
			t.Errorf("TLS versions %q (implicit), %q (STARTTLS): want TLSv1.3", got.TLS, got.StartTLSTLS)
		}
		if !slices.Contains(got.Auth, "PLAIN") || !slices.Contains(got.Auth, "LOGIN") {
			t.Errorf("AUTH offered over TLS: %q", got.Auth)
		}
		for name, r := range map[string][]any{"AUTH PLAIN": got.Plain, "AUTH LOGIN": got.Login, "STARTTLS, login()": got.StartTLSLogin} {
			if len(r) != 2 || r[0] != float64(235) {
				t.Errorf("%s: %v, want 235", name, r)
			}
		}
		// RFC 3207 4 and RFC 8314 4.1: AUTH only once TLS is on.
		if !slices.Contains(got.FeaturesBefore, "starttls") || slices.Contains(got.FeaturesBefore, "auth") {
			t.Errorf("EHLO before STARTTLS: %q", got.FeaturesBefore)
		}
		if slices.Contains(got.FeaturesAfter, "starttls") || !slices.Contains(got.FeaturesAfter, "auth") {
			t.Errorf("EHLO after STARTTLS: %q", got.FeaturesAfter)
		}
		if len(got.PlainRefused)+len(got.LoginRefused)+len(got.StartTLSRefused) != 0 {
			t.Errorf("refused recipients: %v %v %v", got.PlainRefused, got.LoginRefused, got.StartTLSRefused)
		}
		if len(got.Forged) != 2 || got.Forged[0] != float64(553) {
			t.Errorf("alice sending as bob: %v, want 553", got.Forged)
		}

		// What bob finds: the three messages, each with a Received field
		// that records the TLS of the submission (RFC 8314 4.3).
		var inbox struct{ Messages []string }
		mailpy(t, mailArgs(t, d, bob, "inbox"), &inbox)
		var subjects []string
		for _, m := range inbox.Messages {
			m = unb64(t, m)
			subjects = append(subjects, headerField(m, "Subject"))
			if rcv := headerField(m, "Received"); !receivedTLS.MatchString(rcv) {
				t.Errorf("Received field %q does not match %v", rcv, receivedTLS)
			}
			if from := headerField(m, "From"); from != "From: "+alice.Address {
				t.Errorf("delivered %q", from)
			}
		}
		slices.Sort(subjects)
		want := []string{"Subject: via submission STARTTLS", "Subject: via submissions LOGIN", "Subject: via submissions PLAIN"}
		if !slices.Equal(subjects, want) {
			t.Errorf("bob's INBOX: %q, want %q", subjects, want)
		}
	})

	// RFC 8314 4.1 and RFC 3207 4: AUTH before STARTTLS is refused with
	// 530, the same for the right and a wrong password.
	t.Run("cleartext refused", func(t *testing.T) {
		args := mailArgs(t, d, alice, "smtp_cleartext")
		args["passwords"] = []string{alice.Password, "wrong-" + alice.Password}
		var got struct{ Answers [][]any }
		mailpy(t, args, &got)
		if len(got.Answers) != 2 || len(got.Answers[0]) != 2 || got.Answers[0][0] != float64(530) {
			t.Fatalf("AUTH without TLS: %v, want 530", got.Answers)
		}
		if got.Answers[0][0] != got.Answers[1][0] || got.Answers[0][1] != got.Answers[1][1] {
			t.Errorf("right password: %v; wrong password: %v; want the same answer", got.Answers[0], got.Answers[1])
		}
	})
}
