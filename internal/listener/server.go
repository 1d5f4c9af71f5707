// Package listener accepts client connections for the protocol engines. It
// binds every configured address, reads PROXY protocol v2 headers from
// trusted proxies, applies connection limits, hands each connection to the
// TLS gate (package tlsgate) and then to the engine's Handler, and shuts all
// of it down in order.
//
// Invariants a contributor must keep:
//
//   - Start binds every listener before serving any; when one cannot be
//     bound, none stays bound and nothing has been served.
//   - The accept loop never does I/O with a client. PROXY headers, TLS
//     handshakes and refusals run in the connection's own goroutine, each
//     bounded by a timeout.
//   - A PROXY header is read, from the raw TCP stream before any TLS, only
//     on connections from a listener's trusted proxies, and from them it is
//     required. A connection from any other source that opens with a PROXY
//     header is refused.
//   - Every connection is tracked from Accept until its goroutine ends, and
//     counts against the listener's limits for all that time, handshake
//     included. The per-address limit counts by client address (from the
//     PROXY header when there is one), an IPv6 /64 as one address.
//   - Shutdown stops accepting, cancels the context handed to handlers,
//     waits for them until its own context is done, then closes whatever
//     connections remain.
package listener

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/latchmail/latch/internal/logsample"
	"github.com/latchmail/latch/internal/tlsgate"
)

// Handler serves one connection; protocol engines implement it. ServeConn
// returns when the session is over; the listener then closes c (with a TLS
// close_notify where TLS runs). ctx is cancelled when the server shuts
// down: finish the command in progress, say goodbye and return. An engine
// blocked reading the next command should watch ctx, for example with
// context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) }).
type Handler interface {
	ServeConn(ctx context.Context, c *tlsgate.Conn)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, c *tlsgate.Conn)

// ServeConn calls f(ctx, c).
func (f HandlerFunc) ServeConn(ctx context.Context, c *tlsgate.Conn) { f(ctx, c) }

// Refuser may be implemented by a Handler to tell a client why it is turned
// away by a connection limit (IMAP "* BYE", POP3 "-ERR [SYS/TEMP]", SMTP
// "421"). RefuseConn gets the connection after its TLS handshake (implicit
// TLS), the reason (ErrTooManyConns or ErrTooManyFromAddr), and a context
// that ends after RefuseTimeout; the listener closes c afterwards. Without a
// Refuser, or when too many refusals are under way already, the listener
// closes the connection without a word.
type Refuser interface {
	RefuseConn(ctx context.Context, c *tlsgate.Conn, reason error)
}

// Reasons for refusing a connection.
var (
	ErrTooManyConns    = errors.New("listener: too many connections")
	ErrTooManyFromAddr = errors.New("listener: too many connections from this address")
)

// Defaults.
const (
	DefaultProxyHeaderTimeout = 5 * time.Second
	// RefuseTimeout bounds a Refuser's farewell.
	RefuseTimeout = 10 * time.Second
	// maxRefusing bounds the refusals under way per listener, since each
	// may cost a TLS handshake.
	maxRefusing = 16
)

// Config describes one listening socket.
type Config struct {
	Service string       // "imap", "pop3", "submission", "lmtp": names the listener in logs and errors
	Address string       // host:port; port 0 picks a free port (see Server.Addrs)
	Mode    tlsgate.Mode // Implicit, StartTLS, or Plain (loopback addresses only)
	// Policy is the TLS policy; ignored for Plain.
	Policy  tlsgate.Policy
	Handler Handler

	// ProxyFrom lists the PROXY protocol v2 senders trusted on this
	// listener (a load balancer's addresses). Connections from them must
	// open with a PROXY v2 header; connections from elsewhere are served
	// directly but refused if they send one. Empty: no PROXY protocol.
	ProxyFrom []netip.Prefix
	// ProxyHeaderTimeout bounds the wait for a PROXY header; zero means
	// DefaultProxyHeaderTimeout.
	ProxyHeaderTimeout time.Duration

	MaxConns      int // open connections at once; 0: no limit
	MaxConnsPerIP int // open connections from one client address (IPv6: one /64); 0: no limit
}

// Server owns a set of listeners. Set its fields, then call Start once; a
// Server cannot be started again after Shutdown.
type Server struct {
	// Gate serves every listener except Plain ones; it may be nil when all
	// are Plain.
	Gate      *tlsgate.Gate
	Listeners []Config
	// Log receives the listeners' events; nil means slog.Default().
	Log *slog.Logger

	mu       sync.Mutex
	started  bool
	stopping bool
	lns      []*listener
	conns    map[net.Conn]struct{} // raw connections of running goroutines
	ctx      context.Context       // handed to handlers; cancelled by Shutdown
	cancel   context.CancelFunc
	wg       sync.WaitGroup // accept loops and connection goroutines
}

// listener is one bound socket with its state.
type listener struct {
	srv      *Server
	cfg      Config
	ep       *tlsgate.Endpoint
	ln       net.Listener
	log      *slog.Logger
	refusing chan struct{} // semaphore of refusals under way
	refuser  Refuser       // nil if the handler is not one
	failures *logsample.Limiter

	mu    sync.Mutex
	open  int
	perIP map[netip.Addr]int
}

// Start checks every listener's configuration, binds every address, and
// then starts serving. When any of that fails, nothing stays bound and the
// error names the service and address.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("listener: server already started")
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	var lns []*listener
	for _, cfg := range s.Listeners {
		l, err := newListener(s, cfg, log)
		if err != nil {
			return err
		}
		lns = append(lns, l)
	}
	for i, l := range lns {
		ln, err := net.Listen("tcp", l.cfg.Address)
		if err != nil {
			for _, bound := range lns[:i] {
				bound.ln.Close()
			}
			return bindError(l.cfg, err)
		}
		l.ln = ln
	}
	s.lns = lns
	s.conns = map[net.Conn]struct{}{}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.started = true
	for _, l := range lns {
		l.log.Info("listening", "mode", l.cfg.Mode.String(), "addr", l.ln.Addr().String())
		s.wg.Add(1)
		go l.acceptLoop()
	}
	return nil
}

func newListener(s *Server, cfg Config, log *slog.Logger) (*listener, error) {
	where := fmt.Sprintf("listener: %s on %s", cfg.Service, cfg.Address)
	if cfg.Service == "" || cfg.Handler == nil {
		return nil, fmt.Errorf("%s: a listener needs a service name and a handler", where)
	}
	if cfg.Mode == tlsgate.Plain && !loopback(cfg.Address) {
		// RFC 8314 4.1: cleartext only where nothing crosses a network.
		return nil, fmt.Errorf("%s: a listener without TLS must use a loopback address such as 127.0.0.1:24", where)
	}
	if cfg.MaxConns < 0 || cfg.MaxConnsPerIP < 0 {
		return nil, fmt.Errorf("%s: connection limits cannot be negative", where)
	}
	for _, p := range cfg.ProxyFrom {
		if !p.IsValid() {
			return nil, fmt.Errorf("%s: invalid trusted proxy prefix %v", where, p)
		}
	}
	if cfg.ProxyHeaderTimeout <= 0 {
		cfg.ProxyHeaderTimeout = DefaultProxyHeaderTimeout
	}
	l := &listener{
		srv:      s,
		cfg:      cfg,
		log:      log.With("service", cfg.Service, "listen", cfg.Address),
		refusing: make(chan struct{}, maxRefusing),
		perIP:    map[netip.Addr]int{},
	}
	l.refuser, _ = cfg.Handler.(Refuser)
	l.failures = logsample.New(time.Minute, 30)
	ep, err := tlsgate.NewEndpoint(s.Gate, cfg.Mode, cfg.Policy, l.log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	l.ep = ep
	return l, nil
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// bindError says why an address could not be bound, and what to do.
func bindError(cfg Config, err error) error {
	what := ""
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		what = "address already in use: stop the program using it or choose another address"
	case errors.Is(err, syscall.EACCES):
		what = "permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		what = "address not available: it is not an address of this machine"
	default:
		return fmt.Errorf("listener: %s on %s: %w", cfg.Service, cfg.Address, err)
	}
	return fmt.Errorf("listener: %s on %s: %s (%w)", cfg.Service, cfg.Address, what, err)
}

// Addrs returns the bound addresses, in the order of Listeners; nil before
// Start.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var a []net.Addr
	for _, l := range s.lns {
		a = append(a, l.ln.Addr())
	}
	return a
}

// Shutdown stops accepting, cancels the context handed to handlers, and
// waits for them to return until ctx is done. Then it closes the
// connections still open (without close_notify, since their handlers may
// be writing) and returns an error saying how many there were.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.started || s.stopping {
		s.mu.Unlock()
		return nil
	}
	s.stopping = true
	for _, l := range s.lns {
		l.ln.Close()
	}
	s.cancel()
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	n := len(s.conns)
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	if n == 0 {
		return nil
	}
	return fmt.Errorf("listener: shutdown: closed %d connections whose handlers had not returned: %w", n, ctx.Err())
}

// track registers a connection goroutine; it fails once Shutdown began.
func (s *Server) track(raw net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.conns[raw] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(raw net.Conn) {
	s.mu.Lock()
	delete(s.conns, raw)
	s.mu.Unlock()
	s.wg.Done()
}

func (l *listener) acceptLoop() {
	defer l.srv.wg.Done()
	var delay time.Duration
	for {
		raw, err := l.ln.Accept()
		if err != nil {
			if l.srv.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off and retry,
			// as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.sampled(slog.LevelWarn, "accept failed; retrying", slog.String("err", err.Error()), slog.Duration("retry_in", delay))
			select {
			case <-time.After(delay):
			case <-l.srv.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		var reason error
		if !l.acquire() {
			reason = ErrTooManyConns
			if !l.mayRefuse() {
				// Closing costs nothing; a refusal may cost a handshake.
				l.refused(raw, tlsgate.Peer{}, reason)
				raw.Close()
				continue
			}
		}
		if !l.srv.track(raw) {
			if reason == nil {
				l.release()
			} else {
				<-l.refusing
			}
			raw.Close()
			return
		}
		go l.serve(raw, reason)
	}
}

// serve runs one connection: PROXY header, per-address limit, TLS, handler.
// A non-nil reason means the connection is over the total limit and only
// gets a refusal.
func (l *listener) serve(raw net.Conn, reason error) {
	defer l.srv.untrack(raw)
	if reason == nil {
		defer l.release()
	} else {
		defer func() { <-l.refusing }()
	}
	conn, peer, err := l.readProxy(raw)
	if err != nil {
		l.sampled(slog.LevelWarn, "connection refused", slog.String("remote", raw.RemoteAddr().String()), slog.String("err", err.Error()))
		raw.Close()
		return
	}
	if reason == nil {
		key := clientKey(peer.Remote, raw)
		if !l.acquireIP(key) {
			if !l.mayRefuse() {
				l.refused(raw, peer, ErrTooManyFromAddr)
				raw.Close()
				return
			}
			defer func() { <-l.refusing }()
			reason = ErrTooManyFromAddr
		} else {
			defer l.releaseIP(key)
		}
	}
	if reason != nil {
		l.refuse(conn, peer, reason)
		return
	}
	c, err := l.ep.NewConn(l.srv.ctx, conn, peer)
	if err != nil {
		return // logged and closed by the gate
	}
	defer c.Close()
	l.cfg.Handler.ServeConn(l.srv.ctx, c)
}

// refuse lets the Refuser say goodbye; the caller holds a refusing slot.
func (l *listener) refuse(conn net.Conn, peer tlsgate.Peer, reason error) {
	l.refused(conn, peer, reason)
	ctx, cancel := context.WithTimeout(l.srv.ctx, RefuseTimeout)
	defer cancel()
	c, err := l.ep.NewConn(ctx, conn, peer)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(RefuseTimeout))
	l.refuser.RefuseConn(ctx, c, reason)
}

// refused logs a refusal by a limit.
func (l *listener) refused(raw net.Conn, peer tlsgate.Peer, reason error) {
	remote := peer.Remote.String()
	if !peer.Remote.IsValid() {
		remote = raw.RemoteAddr().String()
	}
	l.sampled(slog.LevelInfo, "connection refused", slog.String("remote", remote), slog.String("reason", reason.Error()),
		slog.Int("max_connections", l.cfg.MaxConns), slog.Int("max_connections_per_ip", l.cfg.MaxConnsPerIP))
}

// mayRefuse takes a refusing slot if the handler is a Refuser and one is
// free.
func (l *listener) mayRefuse() bool {
	if l.refuser == nil {
		return false
	}
	select {
	case l.refusing <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *listener) acquire() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxConns > 0 && l.open >= l.cfg.MaxConns {
		return false
	}
	l.open++
	return true
}

func (l *listener) release() {
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

func (l *listener) acquireIP(key netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.MaxConnsPerIP > 0 && l.perIP[key] >= l.cfg.MaxConnsPerIP {
		return false
	}
	l.perIP[key]++
	return true
}

func (l *listener) releaseIP(key netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[key]--; l.perIP[key] <= 0 {
		delete(l.perIP, key)
	}
}

// clientKey is what the per-address limit counts by: the client's address,
// or its /64 for IPv6, where one client commonly holds a whole /64.
func clientKey(remote netip.AddrPort, raw net.Conn) netip.Addr {
	a := remote.Addr()
	if !remote.IsValid() {
		a = addrPort(raw.RemoteAddr()).Addr()
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// sampled logs at level for a bounded number of events per minute and at
// Debug beyond, so that a flood of refusals cannot flood the log.
func (l *listener) sampled(level slog.Level, msg string, attrs ...slog.Attr) {
	l.failures.Log(l.log, level, msg, attrs...)
}
