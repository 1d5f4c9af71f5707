// Package config reads and checks latch.toml, the server's configuration.
//
// Everything that can be known wrong before the first connection is refused
// by Load with an error that names the key and says what to fix: unknown
// keys, bad values, missing or unreadable files, and combinations that
// contradict RFC 8314 (client certificates on a STARTTLS listener,
// cleartext listeners for anything but LMTP on loopback). What only the
// running system can tell (a port in use, a certificate that does not
// parse) is refused at start by the packages that own it.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole of latch.toml.
type Config struct {
	// Hostname is the server's name in greetings and Received fields.
	Hostname string `toml:"hostname"`
	// DataDir holds the embedded store; relative paths in the file are
	// taken from the directory of the configuration file.
	DataDir string `toml:"data_dir"`
	// Domains are the mail domains served; accounts live in them.
	Domains []string `toml:"domains"`
	// MaxMessageSize is the largest message accepted, in octets
	// (submission SIZE, RFC 1870; IMAP APPENDLIMIT, RFC 7889).
	MaxMessageSize int64 `toml:"max_message_size"`

	Log       Log        `toml:"log"`
	TLS       TLS        `toml:"tls"`
	Auth      Auth       `toml:"auth"`
	Listeners []Listener `toml:"listener"`
}

// Log says how and what to log.
type Log struct {
	Format string `toml:"format"` // "text" or "json"
	Level  string `toml:"level"`  // "debug", "info", "warn", "error"
}

// TLS is the server's certificates and client-certificate trust.
type TLS struct {
	Certificates []Certificate `toml:"certificate"`
	// ClientCA, when set, lets certificates it issued map to the account
	// whose address is in their rfc822Name (RFC 8314 4.2).
	ClientCA string `toml:"client_ca"`
}

// Certificate is one certificate chain and its key, chosen by SNI.
type Certificate struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// Auth tunes authentication.
type Auth struct {
	CacheSize       int      `toml:"cache_size"`        // credentials remembered after a verification
	CacheTTL        Duration `toml:"cache_ttl"`         // how long a remembered credential stays valid
	MaxFailuresIP   int      `toml:"max_failures_ip"`   // failures from one address before it is locked out
	MaxFailuresUser int      `toml:"max_failures_user"` // failures for one account before it is locked out
	LockFor         Duration `toml:"lock_for"`          // how long a lock-out lasts
}

// Listener is one listening socket.
type Listener struct {
	Service        string   `toml:"service"` // imap, pop3, submission, lmtp
	Address        string   `toml:"address"` // host:port
	Mode           string   `toml:"mode"`    // implicit, starttls, plain
	ClientCerts    bool     `toml:"client_certs"`
	Preauth        *bool    `toml:"preauth"` // IMAP: greet a mapped client certificate with PREAUTH (else offer EXTERNAL)
	SessionTickets *bool    `toml:"session_tickets"`
	ProxyFrom      []string `toml:"proxy_from"` // trusted PROXY v2 senders (CIDR)
	MaxConns       int      `toml:"max_connections"`
	MaxConnsPerIP  int      `toml:"max_connections_per_ip"`
}

// Listener modes.
const (
	ModeImplicit = "implicit" // TLS from the first byte (RFC 8314 3)
	ModeStartTLS = "starttls" // cleartext until STARTTLS/STLS
	ModePlain    = "plain"    // no TLS at all: LMTP on loopback only
)

// Services Latch knows.
var Services = []string{"imap", "pop3", "submission", "lmtp"}

// ALPN is the protocol identifier each service requires (strict ALPN).
var ALPN = map[string]string{"imap": "imap", "pop3": "pop3", "submission": "smtp", "lmtp": "lmtp"}

// Duration is a time.Duration written as "30s", "15m", "1h".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"90s\", \"15m\" or \"1h\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Load reads, completes and checks a configuration file.
func Load(path string) (*Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("config %s: %s", path, perr.ErrorWithPosition())
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("config %s: unknown key %s: remove it or check its spelling against latch.example.toml", path, strings.Join(keys, ", "))
	}
	c.resolvePaths(filepath.Dir(path))
	FillDefaults(&c)
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) resolvePaths(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	c.DataDir = abs(c.DataDir)
	c.TLS.ClientCA = abs(c.TLS.ClientCA)
	for i := range c.TLS.Certificates {
		c.TLS.Certificates[i].Cert = abs(c.TLS.Certificates[i].Cert)
		c.TLS.Certificates[i].Key = abs(c.TLS.Certificates[i].Key)
	}
}

// FillDefaults sets every key left out to its default.
func FillDefaults(c *Config) {
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 35 << 20
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	a := &c.Auth
	if a.CacheSize == 0 {
		a.CacheSize = 10000
	}
	if a.CacheTTL.Duration == 0 {
		a.CacheTTL.Duration = time.Hour
	}
	if a.MaxFailuresIP == 0 {
		a.MaxFailuresIP = 20
	}
	if a.MaxFailuresUser == 0 {
		a.MaxFailuresUser = 50
	}
	if a.LockFor.Duration == 0 {
		a.LockFor.Duration = 15 * time.Minute
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.SessionTickets == nil {
			on := true
			l.SessionTickets = &on
		}
		if l.Preauth == nil {
			on := true
			l.Preauth = &on
		}
		if l.MaxConns == 0 {
			l.MaxConns = 10000
		}
		if l.MaxConnsPerIP == 0 {
			l.MaxConnsPerIP = 50
		}
	}
}

// Check reports the first thing wrong with a completed configuration.
func (c *Config) Check() error {
	if c.DataDir == "" {
		return errors.New(`data_dir is missing: set it to the directory for the mail store, e.g. data_dir = "/var/lib/latch"`)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		return fmt.Errorf("log.format = %q: use \"text\" or \"json\"", c.Log.Format)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return fmt.Errorf("log.level = %q: use \"debug\", \"info\", \"warn\" or \"error\"", c.Log.Level)
	}
	for i, d := range c.Domains {
		if d == "" || strings.ContainsAny(d, "@ ") {
			return fmt.Errorf("domains[%d] = %q: give a bare domain name such as \"example.org\"", i, d)
		}
	}
	if c.MaxMessageSize < 1024 {
		return fmt.Errorf("max_message_size = %d: give the limit in octets, at least 1024 (default 36700160, 35 MiB)", c.MaxMessageSize)
	}
	needTLS := false
	for i, l := range c.Listeners {
		if err := l.check(); err != nil {
			return fmt.Errorf("listener[%d] (%s %s): %w", i, l.Service, l.Address, err)
		}
		needTLS = needTLS || l.Mode != ModePlain
		for j := range i {
			if c.Listeners[j].Address == l.Address && !strings.HasSuffix(l.Address, ":0") {
				return fmt.Errorf("listener[%d] and listener[%d] both use address %s: give each its own", j, i, l.Address)
			}
		}
	}
	if needTLS && len(c.TLS.Certificates) == 0 {
		return errors.New("tls.certificate is missing: a TLS listener needs at least one [[tls.certificate]] with cert and key")
	}
	for i, cert := range c.TLS.Certificates {
		if cert.Cert == "" || cert.Key == "" {
			return fmt.Errorf("tls.certificate[%d]: give both cert and key", i)
		}
		for _, f := range []string{cert.Cert, cert.Key} {
			if err := readable(f); err != nil {
				return fmt.Errorf("tls.certificate[%d]: %w", i, err)
			}
		}
	}
	if c.TLS.ClientCA != "" {
		if err := readable(c.TLS.ClientCA); err != nil {
			return fmt.Errorf("tls.client_ca: %w", err)
		}
	}
	a := c.Auth
	if a.CacheSize < 0 || a.MaxFailuresIP < 0 || a.MaxFailuresUser < 0 || a.CacheTTL.Duration < 0 || a.LockFor.Duration < 0 {
		return errors.New("auth: sizes, limits and durations must not be negative")
	}
	return nil
}

func (l Listener) check() error {
	if !slices.Contains(Services, l.Service) {
		return fmt.Errorf("service = %q: use one of %s", l.Service, strings.Join(Services, ", "))
	}
	host, _, err := net.SplitHostPort(l.Address)
	if err != nil {
		return fmt.Errorf("address = %q: give host:port, e.g. \"0.0.0.0:993\"", l.Address)
	}
	switch l.Mode {
	case ModeImplicit, ModeStartTLS:
	case ModePlain:
		// RFC 8314 4.1: nothing that carries credentials or a user's mail
		// to a user runs without TLS; LMTP from a local MTA is the only case.
		if l.Service != "lmtp" {
			return fmt.Errorf("mode = \"plain\" is only for lmtp: %s needs \"implicit\" or \"starttls\" (RFC 8314)", l.Service)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("mode = \"plain\" needs a loopback address (127.0.0.1 or [::1]), not %q", host)
		}
	default:
		return fmt.Errorf("mode = %q: use \"implicit\" (TLS from the first byte) or \"starttls\"", l.Mode)
	}
	if l.ClientCerts && l.Mode != ModeImplicit {
		return errors.New("client_certs = true needs mode = \"implicit\": RFC 8314 4.2 forbids requesting client certificates on STARTTLS ports")
	}
	if l.Preauth != nil && !*l.Preauth && l.Service != "imap" {
		return errors.New("preauth is an IMAP setting (RFC 8314 4.2); remove it from this listener")
	}
	for _, p := range l.ProxyFrom {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err2 := netip.ParseAddr(p); err2 != nil {
				return fmt.Errorf("proxy_from: %q is neither an address nor a CIDR prefix", p)
			}
		}
	}
	if l.MaxConns < 0 || l.MaxConnsPerIP < 0 {
		return errors.New("max_connections and max_connections_per_ip must not be negative")
	}
	return nil
}

// ProxyPrefixes returns proxy_from as prefixes (a bare address is a /32 or /128).
func (l Listener) ProxyPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range l.ProxyFrom {
		if pfx, err := netip.ParsePrefix(p); err == nil {
			out = append(out, pfx.Masked())
		} else if a, err := netip.ParseAddr(p); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out
}

func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	return f.Close()
}
