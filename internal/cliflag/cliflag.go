package cliflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit statuses Parse returns.
const (
	ExitOK    = 0
	ExitUsage = 2
)

// Set is a flag.FlagSet in switchboard's dialect. Define flags on the embedded FlagSet,
// place them in sections with Section, then call Parse.
type Set struct {
	*flag.FlagSet
	command   string              // "switchboard bench echo"
	synopsis  string              // what follows "Usage: "
	about     string              // paragraph(s) under the synopsis; may be ""
	sections  []string            // in the order --help lists them
	sectionOf map[string]string   // flag name → section
	order     map[string][]string // section → flag names, in the order Section named them
	// Env, when set, returns the environment variable a flag can also be given as, ""
	// for none; --help shows it.
	Env func(flagName string) string
}

// New returns an empty Set for command ("switchboard serve"), whose --help starts with
// "Usage: synopsis" and then about.
func New(command, synopsis, about string) *Set {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &Set{FlagSet: fs, command: command, synopsis: synopsis, about: about, sectionOf: map[string]string{},
		order: map[string][]string{}}
}

// Section lists the named flags under section in --help. Sections appear in the order of
// their first Section call; flags in a section in the order they are named. Flags in no
// section are listed last, under "Flags".
func (s *Set) Section(section string, names ...string) {
	known := false
	for _, sec := range s.sections {
		known = known || sec == section
	}
	if !known {
		s.sections = append(s.sections, section)
	}
	for _, n := range names {
		if s.Lookup(n) == nil {
			panic(fmt.Sprintf("BUG: cliflag: section %q names --%s, which %s does not define", section, n, s.command))
		}
		if _, dup := s.sectionOf[n]; dup {
			panic(fmt.Sprintf("BUG: cliflag: --%s is in two sections", n))
		}
		s.sectionOf[n] = section
		s.order[section] = append(s.order[section], n)
	}
}

// Unsectioned returns the flags that no Section call placed, for tests that want every
// flag in a section.
func (s *Set) Unsectioned() []string {
	var out []string
	s.VisitAll(func(f *flag.Flag) {
		if _, ok := s.sectionOf[f.Name]; !ok {
			out = append(out, f.Name)
		}
	})
	return out
}

// Parse parses args. When the command should stop, done is true and code is its exit
// status: after --help (usage on stdout, ExitOK) or a bad flag (one line and a pointer to
// --help on stderr, ExitUsage).
func (s *Set) Parse(args []string, stdout, stderr io.Writer) (code int, done bool) {
	err := s.FlagSet.Parse(args)
	switch {
	case err == nil:
		return ExitOK, false
	case errors.Is(err, flag.ErrHelp):
		s.PrintHelp(stdout)
		return ExitOK, true
	}
	s.Fail(stderr, dashes(err.Error()))
	return ExitUsage, true
}

// Fail prints "command: msg" and the pointer to --help on w, for a usage error found
// after parsing. The caller exits with ExitUsage.
func (s *Set) Fail(w io.Writer, msg string) {
	fmt.Fprintf(w, "%s: %s\nsee '%s --help'\n", s.command, msg, s.command)
}

// dashes rewrites the flag package's "-name" in an error message as "--name".
func dashes(msg string) string {
	for _, p := range []string{"defined: -", "argument: -", "flag -", "for -"} {
		msg = strings.Replace(msg, p, p+"-", 1)
	}
	return msg
}

// PrintHelp writes the usage, about and every flag by section on w.
func (s *Set) PrintHelp(w io.Writer) {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: %s\n", s.synopsis)
	if s.about != "" {
		fmt.Fprintf(&b, "\n%s\n", strings.TrimRight(s.about, "\n"))
	}
	for _, sec := range s.sections {
		fmt.Fprintf(&b, "\n%s:\n", sec)
		for _, name := range s.order[sec] {
			s.writeFlag(&b, s.Lookup(name))
		}
	}
	if rest := s.Unsectioned(); len(rest) > 0 {
		b.WriteString("\nFlags:\n")
		for _, name := range rest {
			s.writeFlag(&b, s.Lookup(name))
		}
	}
	fmt.Fprint(w, b.String())
}

// writeFlag writes one flag: "  --name type" and its usage, default and environment
// variable on the next line.
func (s *Set) writeFlag(b *strings.Builder, f *flag.Flag) {
	typeName, usage := flag.UnquoteUsage(f)
	if tn, ok := f.Value.(interface{ TypeName() string }); ok {
		typeName = tn.TypeName()
	}
	if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
		typeName = ""
	}
	fmt.Fprintf(b, "  --%s", f.Name)
	if typeName != "" {
		fmt.Fprintf(b, " %s", typeName)
	}
	fmt.Fprintf(b, "\n      %s", usage)
	var notes []string
	if f.DefValue != "" && f.DefValue != "false" {
		notes = append(notes, "default "+f.DefValue)
	}
	if s.Env != nil {
		if env := s.Env(f.Name); env != "" {
			notes = append(notes, "env "+env)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(b, " (%s)", strings.Join(notes, "; "))
	}
	b.WriteByte('\n')
}
