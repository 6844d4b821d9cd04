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
//	switchboard bench failover [flags]          kill or stop a cluster node under client load; check the directory
//	switchboard send [flags] NAME [PAYLOAD]     a one-way message (payload or stdin; --ack, --count N)
//	switchboard request [flags] NAME [PAYLOAD]  a request; prints the response
//	switchboard listen [flags] NAME...          print MESSAGE and INCOMING; --echo, --reply-with CMD
//	switchboard ping [flags]                    round trips to a node, like ping(8)
//	switchboard top [flags]                     live view of nodes from /metrics and /zone
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
// send, request, listen and ping are clients built on package client, so they reconnect,
// register their names again and follow GOAWAY like any client. They share --server
// (a,b,c; SWITCHBOARD_SERVER; default 127.0.0.1:7400), --token-file FILE (else the
// token is SWITCHBOARD_TOKEN; there is no flag that takes the secret itself), --timeout
// and --json (one JSON object per line). top scrapes the admin endpoints of --admin
// (a,b,c; default 127.0.0.1:7401) and takes rates from counter differences between
// scrapes; it redraws a terminal with ANSI clear and home, and prints a key=value line
// per node and refresh when stdout is not a terminal.
//
// Exit status: 0 on success, 1 when the node fails at run time (tune check: the host
// cannot reach the target; bench: the run failed; a client command: no node could be
// reached; top: no node answered), 2 for bad usage, flags or configuration. The client
// commands tell the server's refusals apart:
//
//	3  no route: no connection owns the name (NO_ROUTE)
//	4  timeout: the server answered TIMEOUT, or nothing came within --timeout
//	5  refused: any other ERROR (BUSY, RATE_LIMITED, QUEUE_FULL, CIRCUIT_OPEN,
//	   SHUTTING_DOWN, UNAUTHORIZED, NAME_TAKEN, FRAME_TOO_LARGE...)
//
// # Concurrency
//
// main owns everything; serve's extra goroutines are the admin HTTP server and, with
// --cluster embedded or external, the cluster node's (package cluster: its NATS server
// and directory), which it stops before returning, the cluster after the server. The client commands' goroutines are their clients' (stopped by
// Close before the command returns); listen adds --concurrency workers for --reply-with,
// which it stops after the clients, and top one goroutine per node for each scrape.
//
// # Caveats
//
// Business logic belongs in the server and config packages: a subcommand parses its
// arguments, calls them and reports.
package main
