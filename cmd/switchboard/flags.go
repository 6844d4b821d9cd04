package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/switchboard/switchboard/internal/config"
)

// newFlagSet returns a FlagSet that reports nothing itself: parse reports its errors.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseFlags parses args into fs. It returns done when the command should exit with
// code: after -h (usage on stdout, 0) or a bad flag (message on stderr, 2).
func parseFlags(c *cli, fs *flag.FlagSet, args []string, synopsis string) (code int, done bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(c.stdout, "Usage: %s\n", synopsis)
		printFlags(c.stdout, fs)
		return exitOK, true
	default:
		fmt.Fprintf(c.stderr, "switchboard %s: %v\nRun 'switchboard help %s' for usage.\n", fs.Name(), err, fs.Name())
		return exitUsage, true
	}
}

// printFlags lists fs's flags GNU-style (--name), with type, default and environment
// variable.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	var b strings.Builder
	hasFlags := false
	fs.VisitAll(func(f *flag.Flag) {
		if !hasFlags {
			b.WriteString("\nFlags:\n")
			hasFlags = true
		}
		typeName, usage := flag.UnquoteUsage(f)
		if tn, ok := f.Value.(interface{ TypeName() string }); ok {
			typeName = tn.TypeName()
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			typeName = ""
		}
		fmt.Fprintf(&b, "  --%s", f.Name)
		if typeName != "" {
			fmt.Fprintf(&b, " %s", typeName)
		}
		fmt.Fprintf(&b, "\n      %s", usage)
		var notes []string
		if f.DefValue != "" && f.DefValue != "false" {
			notes = append(notes, "default "+f.DefValue)
		}
		if _, ok := config.Lookup(f.Name); ok || f.Name == config.KeyProfile || f.Name == config.KeyConfig {
			notes = append(notes, "env "+config.EnvName(f.Name))
		}
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, "; "))
		}
		b.WriteByte('\n')
	})
	fmt.Fprint(w, b.String())
}

// printProblems writes each of err's problems on its own line. errors.Join puts one
// problem on each line of Error().
func printProblems(w io.Writer, prefix string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "%s%s\n", prefix, line)
	}
}
