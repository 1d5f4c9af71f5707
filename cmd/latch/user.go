package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/latchmail/latch/internal/admin"
	"github.com/latchmail/latch/internal/config"
	"github.com/latchmail/latch/internal/store/sqlite"
)

func runUser(args []string) error {
	fs := newFlagSet("user", "user [-c latch.toml | --data-dir DIR] [--password-file FILE] COMMAND ARGS\n\n"+admin.Usage)
	cfgPath := fs.String("c", envOr("LATCH_CONFIG", "latch.toml"), "configuration file (env LATCH_CONFIG)")
	dataDir := fs.String("data-dir", "", "the store's directory, instead of reading it from the configuration")
	pwFile := fs.String("password-file", "", "read the password from this file's first line ('-': standard input) instead of asking")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage{errors.New("missing command")}
	}
	dir := *dataDir
	if dir == "" {
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			return fmt.Errorf("%w (or give --data-dir)", err)
		}
		dir = cfg.DataDir
	}
	req := admin.Request{Args: fs.Args()}
	if admin.NeedsPassword(req.Args) {
		pw, err := readPassword(*pwFile)
		if err != nil {
			return err
		}
		req.Password = pw
	}
	err := admin.Call(dir, req, os.Stdout)
	if !errors.Is(err, admin.ErrNoServer) {
		return err
	}
	// No server is running: work on the store directly.
	st, err := sqlite.Open(dir, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	return admin.Run(context.Background(), st, req, os.Stdout)
}

// readPassword reads a password from a file, standard input, or, on a
// terminal, a prompt without echo asked twice.
func readPassword(file string) (string, error) {
	if file != "" {
		var r io.Reader = os.Stdin
		if file != "-" {
			f, err := os.Open(file)
			if err != nil {
				return "", err
			}
			defer f.Close()
			r = f
		}
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return "", fmt.Errorf("password file %s: %w", file, err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", exitUsage{errors.New("no terminal to ask for the password on: give --password-file FILE (or - for standard input)")}
	}
	ask := func(prompt string) (string, error) {
		fmt.Fprint(os.Stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		return string(b), err
	}
	pw, err := ask("New password: ")
	if err != nil {
		return "", err
	}
	again, err := ask("Again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", errors.New("the two passwords differ")
	}
	return pw, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
