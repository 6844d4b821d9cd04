// Command switchboard runs and inspects switchboard nodes.
//
//	switchboard serve [flags]                   run a node until SIGINT or SIGTERM
//	switchboard check-config FILE...            validate config files (and the credentials file they name)
//	switchboard hash-token < SECRET-FILE        print the bcrypt hash of a secret, for a credentials file
//	switchboard tune show [NAME]                list the tuning profiles, or one profile's settings
//	switchboard tune check [--connections N] [--profile NAME] [--json]
//	                                            judge this host against a number of connections
//	switchboard bench echo [flags]              ECHO load, closed or open loop
//	switchboard bench connect [flags]           open, HELLO and hold connections
//	switchboard bench route [flags]             SEND or REQUEST between connections
//	switchboard bench overload [flags]          a spike above the node's limits, then recovery
//	switchboard bench soak [flags]              a steady open-loop mix for a long time
//	switchboard version                         print version, commit and Go version
//	switchboard help [COMMAND [SUBCOMMAND]]     print usage, or a command's flags
//
// Every command speaks one flag dialect (package internal/cliflag): flags are --name;
// COMMAND --help prints the usage and the flags, grouped by section, on stdout and exits
// 0; a bad flag prints one line and "see 'switchboard COMMAND --help'" on stderr and
// exits 2.
//
// serve reads its settings from defaults, a YAML file (--config or SWITCHBOARD_CONFIG),
// SWITCHBOARD_* environment variables and flags, in increasing precedence; see
// internal/config and testdata/example.yaml. --print-config shows the result and where
// each value came from.
//
// Exit status: 0 on success, 1 when the node fails at run time (tune check: the host
// cannot reach the target; bench: the run failed), 2 for bad usage, flags or
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
