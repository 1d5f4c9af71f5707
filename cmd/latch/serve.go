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
	srv, err := server.Start(cfg, log)
	if err != nil {
		return err
	}
	return waitForSignals(srv, log)
}

// waitForSignals reloads certificates on SIGHUP and shuts down on SIGINT
// or SIGTERM.
func waitForSignals(srv *server.Server, log *slog.Logger) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
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
