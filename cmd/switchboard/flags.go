package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/switchboard/switchboard/internal/cliflag"
	"github.com/switchboard/switchboard/internal/config"
)

// newFlags returns the flag set of `switchboard NAME`, in the dialect every subcommand
// shares (package cliflag).
func newFlags(name, synopsis, about string) *cliflag.Set {
	return cliflag.New("switchboard "+name, synopsis, about)
}

// parseFlags parses args into fs. It returns done when the command should exit with
// code: after --help (usage on stdout, 0) or a bad flag (message on stderr, 2).
func parseFlags(c *cli, fs *cliflag.Set, args []string) (code int, done bool) {
	return fs.Parse(args, c.stdout, c.stderr)
}

// configEnv returns the environment variable of a config flag, "" for other flags.
func configEnv(flagName string) string {
	if _, ok := config.Lookup(flagName); ok || flagName == config.KeyProfile || flagName == config.KeyConfig {
		return config.EnvName(flagName)
	}
	return ""
}

// printProblems writes each of err's problems on its own line. errors.Join puts one
// problem on each line of Error().
func printProblems(w io.Writer, prefix string, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "%s%s\n", prefix, line)
	}
}
