// Package server assembles a running Latch from a configuration: the
// store, the auth service, the TLS gate, one protocol engine per listener,
// and the control socket. It is the only package that knows every engine;
// the engines know nothing of each other.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/latchmail/latch/internal/admin"
	"github.com/latchmail/latch/internal/auth"
	"github.com/latchmail/latch/internal/config"
	"github.com/latchmail/latch/internal/imap"
	"github.com/latchmail/latch/internal/listener"
	"github.com/latchmail/latch/internal/pop3"
	"github.com/latchmail/latch/internal/store"
	"github.com/latchmail/latch/internal/store/sqlite"
	"github.com/latchmail/latch/internal/submission"
	"github.com/latchmail/latch/internal/tlsgate"
)

// Env is what an engine is built from.
type Env struct {
	Hostname       string
	Domains        []string
	MaxMessageSize int64
	Store          store.Store
	Auth           *auth.Service
}

// engines builds the handler of each service this build serves.
var engines = map[string]func(env *Env, l config.Listener) listener.Handler{
	"imap": func(env *Env, l config.Listener) listener.Handler {
		return &imap.Server{Hostname: env.Hostname, Store: env.Store, Auth: env.Auth, PreauthByCert: *l.Preauth, AppendLimit: env.MaxMessageSize}
	},
	"pop3": func(env *Env, l config.Listener) listener.Handler {
		return &pop3.Server{Hostname: env.Hostname, Store: env.Store, Auth: env.Auth}
	},
	"submission": func(env *Env, l config.Listener) listener.Handler {
		return &submission.Server{Hostname: env.Hostname, Domains: env.Domains, MaxMessageSize: env.MaxMessageSize, Store: env.Store, Auth: env.Auth}
	},
	"lmtp": func(env *Env, l config.Listener) listener.Handler {
		return &submission.Server{Hostname: env.Hostname, Domains: env.Domains, MaxMessageSize: env.MaxMessageSize, Store: env.Store, LMTP: true}
	},
}

// Available reports whether this build serves a service.
func Available(service string) bool {
	_, ok := engines[service]
	return ok
}

// Server is a running Latch.
type Server struct {
	cfg       *config.Config
	log       *slog.Logger
	store     *sqlite.Store
	auth      *auth.Service
	gate      *tlsgate.Gate
	listeners *listener.Server
	stopCtl   context.CancelFunc
}

// Start opens the store and starts every listener and the control
// socket. On error nothing is left running.
func Start(cfg *config.Config, log *slog.Logger) (_ *Server, err error) {
	for i, l := range cfg.Listeners {
		if !Available(l.Service) {
			return nil, fmt.Errorf("listener[%d]: service %q is not in this build yet (see the README's status table); remove the listener", i, l.Service)
		}
	}
	s := &Server{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.store, err = sqlite.Open(cfg.DataDir, nil); err != nil {
		return nil, err
	}
	a := cfg.Auth
	if s.auth, err = auth.New(s.store, auth.Options{
		CacheSize: a.CacheSize, CacheTTL: a.CacheTTL.Duration,
		MaxFailuresIP: a.MaxFailuresIP, MaxFailuresUser: a.MaxFailuresUser, LockFor: a.LockFor.Duration,
	}, log); err != nil {
		return nil, err
	}
	if len(cfg.TLS.Certificates) > 0 {
		var pairs []tlsgate.KeyPair
		for _, c := range cfg.TLS.Certificates {
			pairs = append(pairs, tlsgate.KeyPair{CertFile: c.Cert, KeyFile: c.Key})
		}
		if s.gate, err = tlsgate.New(tlsgate.Options{Certificates: pairs, ClientCA: cfg.TLS.ClientCA, Accounts: s.store, Log: log}); err != nil {
			return nil, err
		}
	}
	if s.gate != nil {
		for _, name := range append([]string{cfg.Hostname}, cfg.Domains...) {
			if !s.gate.Covers(name) {
				log.Warn("no certificate names "+name+": clients that check the server's identity (RFC 7817) will refuse it; add the name to a certificate (RFC 8314 4.4)", slog.String("name", name))
			}
		}
	}
	env := &Env{Hostname: cfg.Hostname, Domains: cfg.Domains, MaxMessageSize: cfg.MaxMessageSize, Store: s.store, Auth: s.auth}
	s.listeners = &listener.Server{Gate: s.gate, Log: log}
	for _, l := range cfg.Listeners {
		mode, err := tlsgate.ParseMode(l.Mode)
		if err != nil {
			return nil, err
		}
		s.listeners.Listeners = append(s.listeners.Listeners, listener.Config{
			Service: l.Service,
			Address: l.Address,
			Mode:    mode,
			Policy: tlsgate.Policy{
				ALPN:           config.ALPN[l.Service],
				ClientCerts:    l.ClientCerts,
				SessionTickets: *l.SessionTickets,
			},
			Handler:       engines[l.Service](env, l),
			ProxyFrom:     l.ProxyPrefixes(),
			MaxConns:      l.MaxConns,
			MaxConnsPerIP: l.MaxConnsPerIP,
		})
	}
	if err := s.listeners.Start(); err != nil {
		s.listeners = nil
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopCtl = cancel
	if err := admin.Serve(ctx, cfg.DataDir, s.store, log); err != nil {
		return nil, err
	}
	log.Info("latch started", slog.String("hostname", cfg.Hostname), slog.Int("listeners", len(cfg.Listeners)))
	return s, nil
}

// Addrs returns each listener's bound address, in configuration order.
func (s *Server) Addrs() []net.Addr { return s.listeners.Addrs() }

// Store returns the server's store.
func (s *Server) Store() store.Store { return s.store }

// Reload re-reads the TLS certificates (SIGHUP).
func (s *Server) Reload() error {
	if s.gate == nil {
		return nil
	}
	return s.gate.Reload()
}

// Shutdown stops accepting, lets sessions finish their command for up to
// grace, then closes what remains and the store.
func (s *Server) Shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var errs []error
	if s.listeners != nil {
		errs = append(errs, s.listeners.Shutdown(ctx))
	}
	errs = append(errs, s.close())
	s.log.Info("latch stopped")
	return errors.Join(errs...)
}

func (s *Server) close() error {
	if s.stopCtl != nil {
		s.stopCtl()
	}
	if s.auth != nil {
		s.auth.Close()
	}
	if s.store != nil {
		return s.store.Close()
	}
	return nil
}

// Services lists the services this build serves, sorted.
func Services() []string {
	var out []string
	for k := range engines {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
