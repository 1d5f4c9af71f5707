// Package devenv prepares what `latch dev` runs: a local CA, a server
// certificate for localhost, demo accounts with a client certificate, and
// a configuration with every service on loopback. It keeps all of it in one
// directory so that a second start reuses the same keys, passwords and mail.
package devenv

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/latchmail/latch/internal/admin"
	"github.com/latchmail/latch/internal/config"
	"github.com/latchmail/latch/internal/pki"
	"github.com/latchmail/latch/internal/server"
	"github.com/latchmail/latch/internal/store"
)

// Domain is the mail domain of the demo accounts; the server certificate
// names it, so clients can check it per RFC 7817.
const Domain = "localhost"

// Account is a demo account as written to dev.json.
type Account struct {
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// Info is dev.json: what a person or a test needs to connect.
type Info struct {
	CACert     string            `json:"ca_cert"`
	ClientCert string            `json:"client_cert"`
	ClientKey  string            `json:"client_key"`
	ClientFor  string            `json:"client_cert_account"`
	Accounts   []Account         `json:"accounts"`
	Listeners  map[string]string `json:"listeners"`
}

// Service is one standard listener of the dev setup.
type Service struct {
	Name    string // dev.json name: "imaps", "pop3", ...
	Service string // config service
	Mode    string
	Port    int // standard port; the dev port adds 10000
}

// Services lists every listener dev can run, by standard port.
var Services = []Service{
	{"imaps", "imap", config.ModeImplicit, 993},
	{"imap", "imap", config.ModeStartTLS, 143},
	{"pop3s", "pop3", config.ModeImplicit, 995},
	{"pop3", "pop3", config.ModeStartTLS, 110},
	{"submissions", "submission", config.ModeImplicit, 465},
	{"submission", "submission", config.ModeStartTLS, 587},
	{"lmtp", "lmtp", config.ModePlain, 24},
}

// Start prepares dir (see Prepare), starts the server, makes sure the demo
// accounts exist, and writes dev.json with the listeners' addresses.
func Start(dir string, autoPorts bool, log *slog.Logger) (*server.Server, *Info, error) {
	cfg, info, err := Prepare(dir, server.Available, autoPorts)
	if err != nil {
		return nil, nil, err
	}
	srv, err := server.Start(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*server.Server, *Info, error) {
		srv.Shutdown(time.Second)
		return nil, nil, err
	}
	if err := info.ensureAccounts(srv.Store()); err != nil {
		return fail(err)
	}
	info.Listeners = map[string]string{}
	addrs := srv.Addrs()
	for i, l := range cfg.Listeners {
		for _, s := range Services {
			if s.Service == l.Service && s.Mode == l.Mode {
				info.Listeners[s.Name] = addrs[i].String()
			}
		}
	}
	if err := info.Write(dir); err != nil {
		return fail(err)
	}
	return srv, info, nil
}

// ensureAccounts creates the demo accounts, and binds the client
// certificate to its account, unless an earlier start did.
func (info *Info) ensureAccounts(st store.Store) error {
	ctx := context.Background()
	for _, a := range info.Accounts {
		if _, err := st.Account(ctx, a.Username); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := admin.Run(ctx, st, admin.Request{Args: []string{"add", a.Address}, Password: a.Password}, io.Discard); err != nil {
			return err
		}
		if a.Address == info.ClientFor {
			if err := admin.Run(ctx, st, admin.Request{Args: []string{"cert", "add", a.Address, info.ClientCert}}, io.Discard); err != nil {
				return err
			}
		}
	}
	return nil
}

// Prepare makes (or, on a second start, reuses) the certificates and the
// account list in dir, and returns a configuration for the services
// available in this build. With autoPorts every listener takes a free port
// chosen by the system; otherwise standard port + 10000.
func Prepare(dir string, available func(service string) bool, autoPorts bool) (*config.Config, *Info, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("dev: %w", err)
	}
	info, err := load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		info, err = create(dir)
	}
	if err != nil {
		return nil, nil, err
	}
	cfg := &config.Config{
		Hostname: "localhost",
		DataDir:  filepath.Join(dir, "data"),
		Domains:  []string{Domain},
		Log:      config.Log{Format: "text", Level: "info"},
		TLS: config.TLS{
			Certificates: []config.Certificate{{Cert: filepath.Join(dir, "server.crt"), Key: filepath.Join(dir, "server.key")}},
			ClientCA:     info.CACert,
		},
	}
	for _, s := range Services {
		if !available(s.Service) {
			continue
		}
		port := s.Port + 10000
		if autoPorts {
			port = 0
		}
		cfg.Listeners = append(cfg.Listeners, config.Listener{
			Service:     s.Service,
			Address:     net.JoinHostPort("127.0.0.1", fmt.Sprint(port)),
			Mode:        s.Mode,
			ClientCerts: s.Mode == config.ModeImplicit && s.Service != "lmtp",
		})
	}
	config.FillDefaults(cfg)
	if err := cfg.Check(); err != nil {
		return nil, nil, fmt.Errorf("dev: %w", err)
	}
	return cfg, info, nil
}

func load(dir string) (*Info, error) {
	data, err := os.ReadFile(filepath.Join(dir, "dev.json"))
	if err != nil {
		return nil, err
	}
	var info Info
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("dev: %s/dev.json: %w (delete the directory to start afresh)", dir, err)
	}
	return &info, nil
}

func create(dir string) (*Info, error) {
	ca, err := pki.NewCA("Latch dev CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.Issue(pki.Template{
		CommonName: "localhost",
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	})
	if err != nil {
		return nil, err
	}
	info := &Info{
		CACert:     filepath.Join(dir, "ca.crt"),
		ClientCert: filepath.Join(dir, "client.crt"),
		ClientKey:  filepath.Join(dir, "client.key"),
	}
	for _, name := range []string{"alice", "bob"} {
		addr := name + "@" + Domain
		info.Accounts = append(info.Accounts, Account{Address: addr, Username: addr, Password: randomPassword()})
	}
	info.ClientFor = info.Accounts[0].Address
	client, err := ca.Issue(pki.Template{CommonName: info.ClientFor, Emails: []string{info.ClientFor}, Client: true})
	if err != nil {
		return nil, err
	}
	if err := pki.WriteCert(info.CACert, ca.Cert); err != nil {
		return nil, err
	}
	if err := pki.WriteKey(filepath.Join(dir, "ca.key"), ca.Key); err != nil {
		return nil, err
	}
	if err := server.Write(filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")); err != nil {
		return nil, err
	}
	if err := client.Write(info.ClientCert, info.ClientKey); err != nil {
		return nil, err
	}
	return info, nil
}

// randomPassword gives 20 characters of base32: easy to type, 100 bits.
func randomPassword() string {
	b := make([]byte, 13)
	if _, err := rand.Read(b); err != nil {
		panic("dev: no randomness: " + err.Error())
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))[:20]
}

// Write saves dev.json, with the listeners' actual addresses.
func (info *Info) Write(dir string) error {
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "dev.json.tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "dev.json"))
}

// HowTo is the short text printed when dev is up.
func (info *Info) HowTo(dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Latch dev is running. Everything is in %s (dev.json has it as JSON).\n\n", dir)
	fmt.Fprintf(&b, "Listeners:\n")
	for _, s := range Services {
		if addr, ok := info.Listeners[s.Name]; ok {
			fmt.Fprintf(&b, "  %-12s %s\n", s.Name, addr)
		}
	}
	fmt.Fprintf(&b, "\nAccounts:\n")
	for _, a := range info.Accounts {
		fmt.Fprintf(&b, "  %s  password %s\n", a.Address, a.Password)
	}
	fmt.Fprintf(&b, "\nTrust anchor: %s\nClient certificate for %s: %s (key %s)\n", info.CACert, info.ClientFor, info.ClientCert, info.ClientKey)
	if addr, ok := info.Listeners["pop3s"]; ok {
		fmt.Fprintf(&b, "\nTry:  openssl s_client -quiet -CAfile %s -connect %s\n", info.CACert, addr)
		fmt.Fprintf(&b, "      curl --cacert %s -u %s:%s pop3s://%s/\n", info.CACert, info.Accounts[0].Address, info.Accounts[0].Password, addr)
	}
	fmt.Fprintf(&b, "\nStop with Ctrl-C.\n")
	return b.String()
}
