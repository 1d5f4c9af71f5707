package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/latchmail/latch/internal/config"
	"github.com/latchmail/latch/internal/server"
)

// shutdownGrace bounds how long sessions get to finish their command.
const shutdownGrace = 30 * time.Second

func runServe(args []string) error {
	fs := newFlagSet("serve", "serve [-c latch.toml]")
	cfgPath := fs.String("c", envOr("LATCH_CONFIG", "latch.toml"), "configuration file (env LATCH_CONFIG); latch.example.toml documents every key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	sig := notifySignals()
	defer signal.Stop(sig)
	srv, err := server.Start(cfg, log)
	if err != nil {
		return err
	}
	return waitForSignals(sig, srv, log)
}

// notifySignals starts catching the signals the server answers. Call it
// before starting, so that a signal sent while the server starts is
// handled (after the start) instead of killing the process.
func notifySignals() chan os.Signal {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	return sig
}

// waitForSignals reloads certificates on SIGHUP and shuts down on SIGINT
// or SIGTERM.
func waitForSignals(sig chan os.Signal, srv *server.Server, log *slog.Logger) error {
	for s := range sig {
		if s == syscall.SIGHUP {
			if err := srv.Reload(); err != nil {
				log.Error("certificate reload failed; the old certificates stay in use", slog.Any("err", err))
			}
			continue
		}
		log.Info("shutting down", slog.String("signal", s.String()))
		return srv.Shutdown(shutdownGrace)
	}
	return nil
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		panic(fmt.Sprintf("log level %q passed config checks: %v", c.Level, err))
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
