// Package admin holds the administrator's account commands behind
// `latch user`. They run inside the server when it is up (reached through
// the control socket, see ctl.go), so that nothing but the server ever
// opens its store, and directly on the store when it is not.
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/sasl"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/tlsgate"
)

// Request is one `latch user` command: its arguments after "user", and
// the password for the commands that set one (read by the caller, from a
// prompt or a file, so that it never appears in a process list).
type Request struct {
	Args     []string `json:"args"`
	Password string   `json:"password,omitempty"`
}

// NeedsPassword reports whether the command sets a password.
func NeedsPassword(args []string) bool {
	return len(args) > 0 && (args[0] == "add" || args[0] == "passwd") && !slices.Contains(args, "--no-password")
}

// Usage describes every command.
const Usage = `latch user — manage accounts

  latch user add ADDRESS [--name LOGIN] [--alias ADDR]... [--quota BYTES] [--no-password]
        create an account with INBOX, Drafts, Sent, Trash, Junk and Archive;
        the password is asked for (or read with --password-file)
  latch user passwd NAME          set a new password (clears "must change")
  latch user del NAME             delete the account and all its mail
  latch user list                 every account, with cleartext exposure and allowances
  latch user cert add NAME FILE.pem | --spki HEX
                                  bind a client certificate (SASL EXTERNAL, IMAP PREAUTH)
  latch user cert del NAME SPKI   unbind one
  latch user cert list NAME       show bound fingerprints
  latch user legacy NAME --until YYYY-MM-DD | --off
                                  allow logins without TLS until a date (RFC 8314 4.1:
                                  only for legacy clients that cannot do TLS; off by default)
  latch user require-change NAME [--off]
                                  refuse logins until the password is changed
`

// Run executes one command against the store and writes its output.
func Run(ctx context.Context, st store.Store, req Request, out io.Writer) error {
	if len(req.Args) == 0 {
		return errors.New("user: missing command; see 'latch user help'")
	}
	cmd, args := req.Args[0], req.Args[1:]
	switch cmd {
	case "add":
		return add(ctx, st, args, req.Password, out)
	case "passwd":
		return passwd(ctx, st, args, req.Password, out)
	case "del":
		return del(ctx, st, args, out)
	case "list":
		return list(ctx, st, out)
	case "cert":
		return cert(ctx, st, args, out)
	case "legacy":
		return legacy(ctx, st, args, out)
	case "require-change":
		return requireChange(ctx, st, args, out)
	case "help", "-h", "--help":
		_, err := io.WriteString(out, Usage)
		return err
	}
	return fmt.Errorf("user: unknown command %q; see 'latch user help'", cmd)
}

// DefaultMailboxes are created with every account (RFC 6154 special use).
var DefaultMailboxes = []struct{ Name, SpecialUse string }{
	{"INBOX", ""},
	{"Drafts", store.SpecialDrafts},
	{"Sent", store.SpecialSent},
	{"Trash", store.SpecialTrash},
	{"Junk", store.SpecialJunk},
	{"Archive", store.SpecialArchive},
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("latch user "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

// parse parses flags that may come before or after the positional
// arguments ("add alice@x --alias a@x" as well as "add --alias a@x alice@x")
// and wants exactly npos positional arguments.
func parse(fs *flag.FlagSet, args []string, npos int) ([]string, error) {
	return parseRange(fs, args, npos, npos)
}

// parseRange is parse for between min and max positional arguments.
func parseRange(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) < min || len(pos) > max {
		want := fmt.Sprint(min)
		if max > min {
			want = fmt.Sprintf("%d or %d", min, max)
		}
		return nil, fmt.Errorf("%s: want %s argument(s), got %d; see 'latch user help'", fs.Name(), want, len(pos))
	}
	return pos, nil
}

func checkAddress(a string) error {
	p, err := mail.ParseAddress(a)
	if err != nil || p.Address != a || p.Name != "" {
		return fmt.Errorf("%q is not a plain email address such as alice@example.org", a)
	}
	return nil
}

const minPasswordLen = 8

// SetPassword gives an account a new password: its argon2id hash for
// PLAIN and LOGIN and the SCRAM-SHA-256 keys, derived from the same text.
// It clears the marks that the old password carried.
func SetPassword(a *store.Account, password string, now time.Time) error {
	if len([]rune(password)) < minPasswordLen {
		return fmt.Errorf("password too short: use at least %d characters", minPasswordLen)
	}
	h, err := auth.HashPassword(password)
	if err != nil {
		return err
	}
	keys, err := sasl.NewSCRAMKeys(password)
	if err != nil {
		return fmt.Errorf("password: %w", err)
	}
	a.PasswordHash, a.SCRAM, a.PasswordChanged = h, keys, now
	a.MustChangePassword, a.CleartextExposed = false, time.Time{}
	return nil
}

func add(ctx context.Context, st store.Store, args []string, password string, out io.Writer) error {
	fs := newFlags("add", out)
	name := fs.String("name", "", "login name (default: the address)")
	quota := fs.Int64("quota", 0, "storage limit in bytes (0: none)")
	noPassword := fs.Bool("no-password", false, "no password: log in by client certificate only")
	var aliases listFlag
	fs.Var(&aliases, "alias", "a further address (repeatable)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	addr := strings.ToLower(pos[0])
	if err := checkAddress(addr); err != nil {
		return fmt.Errorf("user add: %w", err)
	}
	for _, al := range aliases {
		if err := checkAddress(al); err != nil {
			return fmt.Errorf("user add: alias: %w", err)
		}
	}
	now := time.Now()
	a := &store.Account{Name: addr, Address: addr, Aliases: aliases, QuotaBytes: *quota, Created: now}
	if *name != "" {
		a.Name = *name
	}
	if !*noPassword {
		if err := SetPassword(a, password, now); err != nil {
			return fmt.Errorf("user add: %w", err)
		}
	}
	if err := st.CreateAccount(ctx, a); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fmt.Errorf("user add: %s or one of its addresses is already taken", a.Name)
		}
		return fmt.Errorf("user add: %w", err)
	}
	for _, mb := range DefaultMailboxes {
		if _, err := st.CreateMailbox(ctx, a.ID, mb.Name, mb.SpecialUse); err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("user add: mailbox %s: %w", mb.Name, err)
		}
	}
	fmt.Fprintf(out, "added %s\n", a.Name)
	return nil
}

func account(ctx context.Context, st store.Store, name string) (*store.Account, error) {
	a, err := st.Account(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		a, err = st.AccountByAddress(ctx, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no account %q; 'latch user list' shows them", name)
	}
	return a, err
}

func passwd(ctx context.Context, st store.Store, args []string, password string, out io.Writer) error {
	pos, err := parse(newFlags("passwd", out), args, 1)
	if err != nil {
		return err
	}
	a, err := account(ctx, st, pos[0])
	if err != nil {
		return fmt.Errorf("user passwd: %w", err)
	}
	if err := SetPassword(a, password, time.Now()); err != nil {
		return fmt.Errorf("user passwd: %w", err)
	}
	if err := st.UpdateAccount(ctx, a); err != nil {
		return fmt.Errorf("user passwd: %w", err)
	}
	fmt.Fprintf(out, "password of %s changed\n", a.Name)
	return nil
}

func del(ctx context.Context, st store.Store, args []string, out io.Writer) error {
	pos, err := parse(newFlags("del", out), args, 1)
	if err != nil {
		return err
	}
	a, err := account(ctx, st, pos[0])
	if err != nil {
		return fmt.Errorf("user del: %w", err)
	}
	if err := st.DeleteAccount(ctx, a.ID); err != nil {
		return fmt.Errorf("user del: %w", err)
	}
	fmt.Fprintf(out, "deleted %s and its mail\n", a.Name)
	return nil
}

func date(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02")
}

func list(ctx context.Context, st store.Store, out io.Writer) error {
	accts, err := st.ListAccounts(ctx)
	if err != nil {
		return fmt.Errorf("user list: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tALIASES\tPASSWORD\tCERTS\tLEGACY-THROUGH\tCLEARTEXT-EXPOSED\tMUST-CHANGE")
	for _, a := range accts {
		pw := "set"
		if a.PasswordHash == "" {
			pw = "none"
		}
		aliases := strings.Join(a.Aliases, ",")
		if aliases == "" {
			aliases = "-"
		}
		must := "no"
		if a.MustChangePassword {
			must = "yes"
		}
		legacy := "-"
		if !a.LegacyUntil.IsZero() {
			legacy = date(a.LegacyUntil.Add(-time.Second)) // the allowance ends as that day does
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", a.Name, a.Address, aliases, pw, len(a.CertSPKI), legacy, date(a.CleartextExposed), must)
	}
	return tw.Flush()
}

func cert(ctx context.Context, st store.Store, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("user cert: say add, del or list; see 'latch user help'")
	}
	sub := args[0]
	fs := newFlags("cert "+sub, out)
	spki := fs.String("spki", "", "bind this SPKI SHA-256 fingerprint (hex) instead of reading a certificate")
	npos := map[string]int{"add": 2, "del": 2, "list": 1}[sub]
	if npos == 0 {
		return fmt.Errorf("user cert: unknown command %q; say add, del or list", sub)
	}
	min := npos
	if sub == "add" {
		min = 1 // the certificate may be given by --spki instead of a file
	}
	pos, err := parseRange(fs, args[1:], min, npos)
	if err != nil {
		return err
	}
	if sub == "add" && (len(pos) == 2) == (*spki != "") {
		return errors.New("user cert add: give either a certificate file or --spki HEX")
	}
	a, err := account(ctx, st, pos[0])
	if err != nil {
		return fmt.Errorf("user cert: %w", err)
	}
	switch sub {
	case "list":
		for _, f := range a.CertSPKI {
			fmt.Fprintln(out, f)
		}
		return nil
	case "add":
		fp := strings.ToLower(*spki)
		if len(pos) == 2 {
			if fp, err = fingerprintFile(pos[1]); err != nil {
				return fmt.Errorf("user cert add: %w", err)
			}
		} else if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("user cert add: --spki %q is not 64 hex digits", *spki)
		}
		if other, err := st.AccountByCert(ctx, fp); err == nil {
			return fmt.Errorf("user cert add: that certificate is already bound to %s", other.Name)
		}
		a.CertSPKI = append(a.CertSPKI, fp)
		if err := st.UpdateAccount(ctx, a); err != nil {
			return fmt.Errorf("user cert add: %w", err)
		}
		fmt.Fprintf(out, "bound %s to %s\n", fp, a.Name)
	case "del":
		fp := strings.ToLower(pos[1])
		i := slices.Index(a.CertSPKI, fp)
		if i < 0 {
			return fmt.Errorf("user cert del: %s is not bound to %s", fp, a.Name)
		}
		a.CertSPKI = slices.Delete(a.CertSPKI, i, i+1)
		if err := st.UpdateAccount(ctx, a); err != nil {
			return fmt.Errorf("user cert del: %w", err)
		}
		fmt.Fprintf(out, "unbound %s from %s\n", fp, a.Name)
	}
	return nil
}

func fingerprintFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s holds no PEM CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return tlsgate.SPKIFingerprint(c), nil
}

// maxLegacy bounds a legacy allowance: it is a migration aid, not a
// permanent exception.
const maxLegacy = 366 * 24 * time.Hour

func legacy(ctx context.Context, st store.Store, args []string, out io.Writer) error {
	fs := newFlags("legacy", out)
	until := fs.String("until", "", "last day (UTC) on which logins without TLS are allowed, YYYY-MM-DD")
	off := fs.Bool("off", false, "withdraw the allowance")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if (*until == "") == !*off {
		return errors.New("user legacy: give either --until YYYY-MM-DD or --off")
	}
	a, err := account(ctx, st, pos[0])
	if err != nil {
		return fmt.Errorf("user legacy: %w", err)
	}
	if *off {
		a.LegacyUntil = time.Time{}
	} else {
		day, err := time.Parse("2006-01-02", *until)
		if err != nil {
			return fmt.Errorf("user legacy: --until %q is not a date YYYY-MM-DD", *until)
		}
		end := day.Add(24 * time.Hour)
		if !end.After(time.Now()) {
			return fmt.Errorf("user legacy: %s is in the past", *until)
		}
		if time.Until(end) > maxLegacy {
			return fmt.Errorf("user legacy: an allowance may last at most a year; choose a date before %s", time.Now().Add(maxLegacy).Format("2006-01-02"))
		}
		a.LegacyUntil = end
	}
	if err := st.UpdateAccount(ctx, a); err != nil {
		return fmt.Errorf("user legacy: %w", err)
	}
	if *off {
		fmt.Fprintf(out, "%s: logins without TLS refused again\n", a.Name)
	} else {
		fmt.Fprintf(out, "%s: logins WITHOUT TLS allowed until the end of %s UTC; the password crosses the network readable by anyone on the path (RFC 8314 4.1)\n", a.Name, *until)
	}
	return nil
}

func requireChange(ctx context.Context, st store.Store, args []string, out io.Writer) error {
	fs := newFlags("require-change", out)
	off := fs.Bool("off", false, "no longer require a change")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	a, err := account(ctx, st, pos[0])
	if err != nil {
		return fmt.Errorf("user require-change: %w", err)
	}
	a.MustChangePassword = !*off
	if err := st.UpdateAccount(ctx, a); err != nil {
		return fmt.Errorf("user require-change: %w", err)
	}
	if *off {
		fmt.Fprintf(out, "%s may log in with the current password\n", a.Name)
	} else {
		fmt.Fprintf(out, "%s: logins refused until 'latch user passwd %s'\n", a.Name, a.Name)
	}
	return nil
}
