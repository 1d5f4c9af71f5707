package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/latchmail/latch/internal/devenv"
)

func runDev(args []string) error {
	fs := newFlagSet("dev", "dev [--dir DIR] [--ports standard|auto]")
	dir := fs.String("dir", "dev-data", "directory for certificates, accounts, mail and dev.json; reused by later starts")
	ports := fs.String("ports", "standard", `"standard": each service on its standard port + 10000 (10993, 10995, ...); "auto": free ports chosen by the system`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ports != "standard" && *ports != "auto" {
		return exitUsage{fmt.Errorf("--ports %q: use \"standard\" or \"auto\"", *ports)}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sig := notifySignals()
	defer signal.Stop(sig)
	srv, info, err := devenv.Start(*dir, *ports == "auto", log)
	if err != nil {
		return err
	}
	fmt.Print(info.HowTo(*dir))
	return waitForSignals(sig, srv, log)
}
