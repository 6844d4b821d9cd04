// Package cliflag is switchboard's one command-line dialect, shared by every subcommand:
// flags are written --name; --help prints the usage on stdout and exits 0, with the flags
// grouped by section, each with its type, default and environment variable; a bad flag
// prints one short line and "see 'switchboard CMD --help'" on stderr and exits 2.
//
// # Concurrency
//
// A Set belongs to the goroutine that parses it.
//
// # Caveats
//
// A Set wraps a flag.FlagSet that reports nothing itself: its output is discarded and its
// Usage does nothing, so that Parse alone decides what is printed where.
package cliflag
