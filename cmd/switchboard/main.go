package main

import (
	"fmt"
	"io"
	"os"

	"github.com/switchboard/switchboard/bench"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // the node failed at run time
	exitUsage   = 2 // bad arguments, flags or configuration
)

func main() {
	os.Exit(run(os.Args[1:], &cli{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ()}))
}

// cli is what a subcommand may touch of the process, so that tests can run it in-process.
type cli struct {
	stdin          io.Reader // nil: empty
	stdout, stderr io.Writer
	environ        []string
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(c *cli, args []string) int
}

// commands is the subcommand table, in the order usage lists it.
func commands() []command {
	return []command{
		{"serve", "run a node until SIGINT or SIGTERM", runServe},
		{"check-config", "validate config files", runCheckConfig},
		{"hash-token", "read a user's secret from stdin, print its hash for a credentials file", runHashToken},
		{"version", "print version, commit and Go version", runVersion},
		{"bench", "put load on a node and measure it (scenarios: echo connect route overload soak failover)", func(c *cli, args []string) int { return bench.Main(args, c.stdout, c.stderr) }},
		{"tune", "show tuning profiles, check this host for a target number of connections", runTune},
		{"send", "send a one-way message to a name", runSend},
		{"request", "send a request to a name and print the response", runRequest},
		{"listen", "register names and print what arrives; answer requests with --echo or --reply-with", runListen},
		{"ping", "measure round trips to a node, like ping(8)", runPing},
		{"top", "live view of nodes from their admin endpoints", runTop},
	}
}

func lookupCommand(name string) (command, bool) {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}

func run(args []string, c *cli) int {
	if len(args) == 0 {
		usage(c.stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 {
			if cmd, ok := lookupCommand(rest[0]); ok {
				// help bench echo is bench echo --help.
				return cmd.run(c, append(rest[1:len(rest):len(rest)], "--help"))
			}
			fmt.Fprintf(c.stderr, "switchboard: unknown command %q\n\n", rest[0])
			usage(c.stderr)
			return exitUsage
		}
		usage(c.stdout)
		return exitOK
	case "-version", "--version":
		return runVersion(c, rest)
	}
	cmd, ok := lookupCommand(name)
	if !ok {
		fmt.Fprintf(c.stderr, "switchboard: unknown command %q\n\n", name)
		usage(c.stderr)
		return exitUsage
	}
	return cmd.run(c, rest)
}

func usage(w io.Writer) {
	fmt.Fprint(w, "switchboard is a binary-protocol TCP message server.\n\n"+
		"Usage:\n  switchboard <command> [arguments]\n\nCommands:\n")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", cmd.name, cmd.summary)
	}
	fmt.Fprintf(w, "  %-14s %s\n", "help", "print this help, or a command's flags")
	fmt.Fprint(w, "\nRun 'switchboard <command> --help' (or 'switchboard help <command>') for a command's flags.\n")
}
