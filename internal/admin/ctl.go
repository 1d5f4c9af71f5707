package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/latchmail/latch/internal/store"
)

// The control socket lets `latch user` reach a running server: one JSON
// Request per connection, answered by one JSON reply. It is a Unix socket
// in the data directory with mode 0600, so only the server's own user (or
// root) can use it.

// SocketName is the control socket's file name inside the data directory.
const SocketName = "ctl.sock"

// maxRequest bounds what the server reads from the socket.
const maxRequest = 64 << 10

type reply struct {
	Output string `json:"output"`
	Error  string `json:"error,omitempty"`
}

// Serve answers control requests on DATA_DIR/ctl.sock until ctx ends.
func Serve(ctx context.Context, dataDir string, st store.Store, log *slog.Logger) error {
	path := filepath.Join(dataDir, SocketName)
	_ = os.Remove(path) // left by a server that did not stop cleanly; the store's lock proves none runs
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveOne(ctx, c, st, log)
		}
	}()
	return nil
}

func serveOne(ctx context.Context, c net.Conn, st store.Store, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req); err != nil {
		_ = json.NewEncoder(c).Encode(reply{Error: "bad control request: " + err.Error()})
		return
	}
	var out bytes.Buffer
	err := Run(ctx, st, req, &out)
	r := reply{Output: out.String()}
	if err != nil {
		r.Error = err.Error()
	}
	log.Info("admin command", slog.Any("args", req.Args), slog.Bool("ok", err == nil))
	_ = json.NewEncoder(c).Encode(r)
}

// ErrNoServer means no server answers on the control socket.
var ErrNoServer = errors.New("no running server")

// Call sends a request to the running server's control socket and writes
// its output; it returns ErrNoServer when none is listening.
func Call(dataDir string, req Request, out io.Writer) error {
	c, err := net.DialTimeout("unix", filepath.Join(dataDir, SocketName), 5*time.Second)
	if err != nil {
		return ErrNoServer
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	var r reply
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	io.WriteString(out, r.Output)
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}
