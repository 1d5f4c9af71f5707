package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// write puts a configuration and two placeholder PEM files in a fresh
// directory and returns the configuration's path.
func write(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"cert.pem", "key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "latch.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const base = `
data_dir = "data"
[[tls.certificate]]
cert = "cert.pem"
key = "key.pem"
`

func TestLoadGood(t *testing.T) {
	p := write(t, base+`
[[listener]]
service = "imap"
address = "127.0.0.1:993"
mode = "implicit"
client_certs = true
proxy_from = ["10.0.0.0/8", "192.0.2.1"]

[[listener]]
service = "lmtp"
address = "127.0.0.1:24"
mode = "plain"
`)
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(filepath.Dir(p), "data"); c.DataDir != want {
		t.Errorf("data_dir = %q, want %q (relative to the file)", c.DataDir, want)
	}
	if got := c.Listeners[0].ProxyPrefixes(); len(got) != 2 || got[1].Bits() != 32 {
		t.Errorf("proxy prefixes = %v", got)
	}
	if !*c.Listeners[0].SessionTickets || c.Auth.CacheSize == 0 || c.Log.Format != "text" {
		t.Errorf("defaults not filled: %+v", c)
	}
}

func TestLoadRefuses(t *testing.T) {
	listener := func(svc, addr, mode, extra string) string {
		return "\n[[listener]]\nservice = \"" + svc + "\"\naddress = \"" + addr + "\"\nmode = \"" + mode + "\"\n" + extra
	}
	tests := []struct {
		name, body, want string
	}{
		{"unknown key", "colour = \"red\"\n" + base, "unknown key colour"},
		{"unknown nested key", base + listener("imap", "127.0.0.1:993", "implicit", "tls_min = \"1.0\"\n"), "unknown key listener.tls_min"},
		{"syntax", "data_dir = \n", "line 1"},
		{"no data dir", "[log]\nformat = \"text\"\n", "data_dir is missing"},
		{"bad log format", base + "[log]\nformat = \"xml\"\n", `log.format = "xml"`},
		{"unknown service", base + listener("nntp", "127.0.0.1:119", "implicit", ""), `service = "nntp"`},
		{"bad address", base + listener("imap", "993", "implicit", ""), `address = "993"`},
		{"bad mode", base + listener("imap", "127.0.0.1:993", "tls", ""), `mode = "tls"`},
		{"plain imap", base + listener("imap", "127.0.0.1:143", "plain", ""), "only for lmtp"},
		{"plain lmtp off loopback", base + listener("lmtp", "0.0.0.0:24", "plain", ""), "loopback"},
		{"client certs on starttls", base + listener("imap", "127.0.0.1:143", "starttls", "client_certs = true\n"), "RFC 8314 4.2"},
		{"preauth off pop3", base + listener("pop3", "127.0.0.1:995", "implicit", "preauth = false\n"), "IMAP setting"},
		{"bad proxy", base + listener("imap", "127.0.0.1:993", "implicit", "proxy_from = [\"nowhere\"]\n"), "proxy_from"},
		{"same address twice", base + listener("imap", "127.0.0.1:993", "implicit", "") + listener("pop3", "127.0.0.1:993", "implicit", ""), "both use address"},
		{"no certificate", "data_dir = \"d\"\n" + listener("imap", "127.0.0.1:993", "implicit", ""), "tls.certificate is missing"},
		{"unreadable certificate", "data_dir = \"d\"\n[[tls.certificate]]\ncert = \"nope.pem\"\nkey = \"key.pem\"\n", "nope.pem"},
		{"bad duration", base + "[auth]\ncache_ttl = \"soon\"\n", "not a duration"},
		{"bad domain", "domains = [\"user@example.org\"]\n" + base, "bare domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(write(t, tt.body))
			if err == nil {
				t.Fatalf("Load accepted:\n%s", tt.body)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

// The example file documents every key: it must decode with none unknown
// and pass the checks that do not need its files to exist.
func TestExampleFile(t *testing.T) {
	var c Config
	md, err := toml.DecodeFile("../../latch.example.toml", &c)
	if err != nil {
		t.Fatal(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		t.Fatalf("example has keys Config does not know: %v", und)
	}
	FillDefaults(&c)
	for i, l := range c.Listeners {
		if err := l.check(); err != nil {
			t.Errorf("listener[%d]: %v", i, err)
		}
	}
}
