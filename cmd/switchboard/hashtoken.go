package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"

	"github.com/switchboard/switchboard/server"
)

// runHashToken reads a secret from stdin and prints its bcrypt hash for a credentials
// file. The secret is never an argument: arguments show in ps and shell history.
func runHashToken(c *cli, args []string) int {
	fs := newFlags("hash-token", "switchboard hash-token < SECRET-FILE",
		"Reads a user's secret from standard input (its first line, without the line end) and\n"+
			"prints its bcrypt hash for the token-hash of a credentials file. The client then\n"+
			"authenticates with the HELLO token USER:SECRET. Checking a token against the hash\n"+
			"costs 50-230 ms of CPU, off the event loops (docs/SECURITY.md).")
	if code, done := parseFlags(c, fs, args); done {
		return code
	}
	if fs.NArg() > 0 {
		fs.Fail(c.stderr, "hash-token takes no arguments: it reads the secret from stdin")
		return exitUsage
	}
	in := c.stdin
	if in == nil {
		in = bytes.NewReader(nil)
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadBytes('\n')
	if err != nil && err != io.EOF {
		fmt.Fprintf(c.stderr, "switchboard hash-token: %v\n", err)
		return exitFailure
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte{'\n'}), []byte{'\r'})
	h, err := server.HashToken(line)
	if err != nil {
		fmt.Fprintf(c.stderr, "switchboard hash-token: %v\n", err)
		return exitUsage
	}
	fmt.Fprintln(c.stdout, h)
	return exitOK
}
