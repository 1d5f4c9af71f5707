package imap

import (
	"context"
	"strings"
)

// action runs a parsed command and writes its responses. An error it
// returns ends the session, except a *badError, answered BAD.
type action func(ctx context.Context, tag string) error

// spec describes one command: the states it is valid in and its parser,
// which reads the arguments through the final CRLF (APPEND: through its
// literal's size) and returns what to run.
type spec struct {
	states state
	parse  func(ss *session, p *parser) (action, error)
}

const (
	anyState  = notAuthenticated | authenticated | selected
	authState = authenticated | selected
)

// commands holds every command Latch serves, by name ("UID FETCH" for the
// UID forms).
var commands = map[string]spec{
	// RFC 9051 6.1: any state.
	"CAPABILITY": {anyState, noArgs((*session).capability)},
	"NOOP":       {anyState, noArgs((*session).noop)},
	"LOGOUT":     {anyState, noArgs((*session).logout)},
	"ID":         {anyState, parseID},
	// RFC 9051 6.2: not authenticated.
	"STARTTLS":     {notAuthenticated, noArgs((*session).starttls)},
	"LOGIN":        {notAuthenticated, parseLogin},
	"AUTHENTICATE": {notAuthenticated, parseAuthenticate},
	// RFC 9051 6.3: authenticated.
	"ENABLE":      {authState, parseEnable},
	"NAMESPACE":   {authState, noArgs((*session).namespace)},
	"SELECT":      {authState, parseSelect(false)},
	"EXAMINE":     {authState, parseSelect(true)},
	"CREATE":      {authState, parseCreate},
	"DELETE":      {authState, mailboxArg((*session).deleteMailbox)},
	"RENAME":      {authState, parseRename},
	"SUBSCRIBE":   {authState, mailboxArg(subscribe(true))},
	"UNSUBSCRIBE": {authState, mailboxArg(subscribe(false))},
	"LIST":        {authState, parseList},
	"LSUB":        {authState, parseLsub},
	"STATUS":      {authState, parseStatus},
	"APPEND":      {authState, parseAppend},
	"IDLE":        {authState, noArgs((*session).idle)},
	// RFC 9051 6.4: selected.
	"CLOSE":       {selected, noArgs((*session).closeMailbox)},
	"UNSELECT":    {selected, noArgs((*session).unselect)},
	"EXPUNGE":     {selected, noArgs((*session).expunge)},
	"UID EXPUNGE": {selected, parseUIDExpunge},
	"SEARCH":      {selected, parseSearch(false)},
	"UID SEARCH":  {selected, parseSearch(true)},
	"FETCH":       {selected, parseFetch(false)},
	"UID FETCH":   {selected, parseFetch(true)},
	"STORE":       {selected, parseStore(false)},
	"UID STORE":   {selected, parseStore(true)},
	"COPY":        {selected, parseCopy(false, false)},
	"UID COPY":    {selected, parseCopy(true, false)},
	"MOVE":        {selected, parseCopy(false, true)},
	"UID MOVE":    {selected, parseCopy(true, true)},
}

// command is a parsed command ready to run.
type command struct {
	name string
	run  action
}

// readCommand reads the tag and name and parses the arguments.
func (ss *session) readCommand() (tag string, cmd *command, err error) {
	p := ss.p
	// Skip empty lines some clients send between commands.
	for {
		c, err := p.peek()
		if err != nil {
			return "", nil, err
		}
		if c != '\r' && c != '\n' {
			break
		}
		p.next()
		p.begin()
	}
	if tag, err = p.tag(); err != nil {
		return "", nil, err
	}
	if err := p.sp(); err != nil {
		return tag, nil, err
	}
	name, err := p.atom()
	if err != nil {
		return tag, nil, badf("expected a command name")
	}
	name = strings.ToUpper(name)
	if name == "UID" {
		if err := p.sp(); err != nil {
			return tag, nil, err
		}
		sub, err := p.atom()
		if err != nil {
			return tag, nil, badf("expected a command after UID")
		}
		name += " " + strings.ToUpper(sub)
	}
	sp, ok := commands[name]
	if !ok {
		return tag, nil, badf("unknown command %s", sanitize(name))
	}
	if ss.state&sp.states == 0 {
		return tag, nil, badf("%s is not valid in this state", name)
	}
	run, err := sp.parse(ss, p)
	if err != nil {
		return tag, nil, err
	}
	return tag, &command{name: name, run: run}, nil
}

// sanitize bounds client text echoed in a response.
func sanitize(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// noArgs parses a command without arguments.
func noArgs(run func(ss *session, ctx context.Context, tag string) error) func(*session, *parser) (action, error) {
	return func(ss *session, p *parser) (action, error) {
		if err := p.crlf(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tag string) error { return run(ss, ctx, tag) }, nil
	}
}

// mailboxArg parses a command whose only argument is a mailbox name.
func mailboxArg(run func(ss *session, ctx context.Context, tag, mbox string) error) func(*session, *parser) (action, error) {
	return func(ss *session, p *parser) (action, error) {
		if err := p.sp(); err != nil {
			return nil, err
		}
		name, err := ss.mailboxName(p)
		if err != nil {
			return nil, err
		}
		if err := p.crlf(); err != nil {
			return nil, err
		}
		return func(ctx context.Context, tag string) error { return run(ss, ctx, tag, name) }, nil
	}
}
