package main

import (
	"fmt"
	"strings"

	"github.com/switchboard/switchboard/internal/config"
)

// runCheckConfig validates config files on their own: environment variables and flags
// are not consulted. It prints "FILE: ok", or every problem and then "FILE: N problems".
func runCheckConfig(c *cli, args []string) int {
	fs := newFlags("check-config", "switchboard check-config FILE...",
		"Checks each YAML config file for unknown keys, wrong types and invalid values, and\n"+
			"the credentials file it names. Environment variables and flags are not consulted.")
	if code, done := parseFlags(c, fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fs.Fail(c.stderr, "want at least one FILE")
		return exitUsage
	}
	code := exitOK
	for _, path := range fs.Args() {
		l, err := config.LoadFile(path)
		if err == nil && l.Config.Credentials != "" {
			_, err = config.LoadCredentials(l.Config.Credentials)
		}
		if err == nil {
			fmt.Fprintf(c.stdout, "%s: ok\n", path)
			continue
		}
		code = exitUsage
		printProblems(c.stderr, "", err)
		n := countProblems(err.Error())
		fmt.Fprintf(c.stderr, "%s: %d %s\n", path, n, plural(n, "problem", "problems"))
	}
	return code
}

// countProblems counts the problems in a config error's text: one a line (the loaders
// report each on its own line), except a YAML decoder's "unmarshal errors:" header, whose
// indented lines below it are the problems.
func countProblems(msg string) int {
	n := 0
	for _, line := range strings.Split(msg, "\n") {
		if !strings.HasSuffix(line, "unmarshal errors:") {
			n++
		}
	}
	return max(n, 1)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
