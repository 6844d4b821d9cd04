// Package limits holds switchboard's admission and overload logic as pure functions and
// small state machines with no I/O, so that every limit can be tested without sockets.
//
// This first version holds the connection cap derived from the process's open-file limit;
// the rate limiters, circuit breaker and zones of the overload-protection issue live here
// too as they land.
//
// # Concurrency
//
// Functions are pure and safe for concurrent use.
//
// # Caveats
//
// The open-file limit is read by the caller (server) and passed in: this package does no
// system calls.
package limits
