// Command switchboard runs and inspects switchboard nodes.
//
//	switchboard serve [flags]          run a node until SIGINT or SIGTERM
//	switchboard check-config FILE...   validate config files
//	switchboard version                print version, commit and Go version
//	switchboard help [COMMAND]         print usage
//
// serve reads its settings from defaults, a YAML file (--config or SWITCHBOARD_CONFIG),
// SWITCHBOARD_* environment variables and flags, in increasing precedence; see
// internal/config and testdata/example.yaml. --print-config shows the result and where
// each value came from.
//
// Exit status: 0 on success, 1 when the node fails at run time, 2 for bad usage, flags or
// configuration.
//
// # Concurrency
//
// main owns everything; serve's only extra goroutine is the admin HTTP server, which it
// stops before returning.
//
// # Caveats
//
// Business logic belongs in the server and config packages: a subcommand parses its
// arguments, calls them and reports.
package main
