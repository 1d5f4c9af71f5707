// Command latch is Latch's one binary: the mail server, its development
// mode, account administration, and (in time) the client side and the
// auditor. This file only parses flags and wires packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name, summary string
	run           func(args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"serve", "run the mail server from a configuration file", runServe},
		{"dev", "run every service on loopback with generated certificates and demo accounts", runDev},
		{"user", "manage accounts: add, passwd, del, list, cert, legacy, require-change", runUser},
		{"version", "print the version", func([]string) error { fmt.Println("latch", version); return nil }},
		{"help", "explain a command: latch help CMD", runHelp},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "latch — mail submission and access over TLS only (RFC 8314, RFC 8997)")
	fmt.Fprintln(w, "\nUsage: latch COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n'latch COMMAND -h' lists a command's flags.")
}

func runHelp(args []string) error {
	if len(args) == 0 {
		usage(os.Stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"-h"})
		}
	}
	return fmt.Errorf("no command %q; 'latch help' lists them", args[0])
}

// exitUsage marks errors that are the caller's mistake in flags.
type exitUsage struct{ error }

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	for _, c := range commands {
		if c.name != os.Args[1] {
			continue
		}
		err := c.run(os.Args[2:])
		switch {
		case err == nil || errors.Is(err, flag.ErrHelp):
			return
		case errors.As(err, new(exitUsage)):
			fmt.Fprintln(os.Stderr, "latch "+c.name+":", err)
			os.Exit(2)
		default:
			fmt.Fprintln(os.Stderr, "latch "+c.name+":", err)
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "latch: no command %q\n\n", os.Args[1])
	usage(os.Stderr)
	os.Exit(2)
}

// newFlagSet makes a FlagSet whose -h prints a summary then the flags.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("latch "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: latch %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}
