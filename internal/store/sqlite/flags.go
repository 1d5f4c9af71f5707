package sqlite

import (
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/latchmail/latch/internal/store"
)

// System flags are kept as bits of messages.sysflags; the bits of \Seen and
// \Deleted are also read by the counter triggers in the schema.
var systemFlags = [...]string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`}

const (
	flagSeen    = 1 << 0
	flagDeleted = 1 << 3
)

// flagSet is a message's flags in stored form: system flag bits and
// keywords, sorted and unique regardless of case (flags compare
// case-insensitively, RFC 3501 2.3.2).
type flagSet struct {
	sys      int64
	keywords []string
}

func parseFlags(flags []string) (flagSet, error) {
	var f flagSet
next:
	for _, fl := range flags {
		for i, name := range systemFlags {
			if strings.EqualFold(fl, name) {
				f.sys |= 1 << i
				continue next
			}
		}
		if fl == "" || strings.IndexFunc(fl, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) }) >= 0 {
			return flagSet{}, fmt.Errorf("store: invalid flag %q: flags are non-empty atoms without spaces", fl)
		}
		if !slices.ContainsFunc(f.keywords, func(k string) bool { return strings.EqualFold(k, fl) }) {
			f.keywords = append(f.keywords, fl)
		}
	}
	slices.Sort(f.keywords)
	return f, nil
}

// decodeFlags reads the stored form, which encode wrote.
func decodeFlags(sys int64, keywords string) flagSet {
	f := flagSet{sys: sys}
	if keywords != "" {
		f.keywords = strings.Split(keywords, " ")
	}
	return f
}

func (f flagSet) encodeKeywords() string { return strings.Join(f.keywords, " ") }

// apply returns the flags after a STORE of g with op.
func (f flagSet) apply(op store.FlagOp, g flagSet) flagSet {
	switch op {
	case store.FlagsAdd:
		r := flagSet{sys: f.sys | g.sys, keywords: slices.Clone(f.keywords)}
		for _, k := range g.keywords {
			if !slices.ContainsFunc(r.keywords, func(x string) bool { return strings.EqualFold(x, k) }) {
				r.keywords = append(r.keywords, k)
			}
		}
		slices.Sort(r.keywords)
		return r
	case store.FlagsRemove:
		r := flagSet{sys: f.sys &^ g.sys}
		for _, k := range f.keywords {
			if !slices.ContainsFunc(g.keywords, func(x string) bool { return strings.EqualFold(x, k) }) {
				r.keywords = append(r.keywords, k)
			}
		}
		return r
	default:
		return g
	}
}

func (f flagSet) equal(g flagSet) bool {
	return f.sys == g.sys && slices.Equal(f.keywords, g.keywords)
}

// list returns the flags as store.Message carries them: sorted.
func (f flagSet) list() []string {
	l := make([]string, 0, len(f.keywords)+len(systemFlags))
	for i, name := range systemFlags {
		if f.sys&(1<<i) != 0 {
			l = append(l, name)
		}
	}
	l = append(l, f.keywords...)
	slices.Sort(l)
	return l
}
