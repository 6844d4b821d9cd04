// Package tuning holds switchboard's named tuning profiles and its host checks.
//
// A Profile sets, together, the Go runtime's GOGC, GOMEMLIMIT and GOMAXPROCS and the
// node settings that go with them (gnet buffer caps, frames per wake, queue
// bounds, timeouts, rate limits), for a stated memory budget per node:
//
//	balanced    the default: the built-in server settings, GOGC 100, GOMEMLIMIT 180 MiB
//	small       100,000 connections in ~150 MiB: small buffers and queues, GOGC 25
//	throughput  more frames per syscall and per wake, deeper queues, GOGC 200
//	latency     few frames per wake, short queues, 10 ms timers, GOGC 200
//
// A profile is applied in two parts, each once and explicitly by cmd/switchboard:
//
//   - Settings are config keys and values (the syntax of a flag or a file) that
//     internal/config applies over the defaults, so the precedence is defaults < profile
//     < config file < environment < flags, key by key. The package does not import
//     server: it describes settings, cmd/switchboard and internal/config apply them.
//   - ApplyRuntime sets GOGC, GOMEMLIMIT and GOMAXPROCS, except those whose environment
//     variable is set (the Go runtime applied it already, and the operator's explicit
//     value wins), and returns the effective values for the start-up log.
//
// Check judges a host against a target number of connections: the open-file limit
// (with limits.FDReserve), fs.nr_open and fs.file-max, the accept and SYN backlogs, the
// ephemeral port range (a client-side limit), tcp_tw_reuse, memory against the
// profile's budget times the nodes needed, and GOMAXPROCS against the cgroup CPU quota.
// It is pure: the readings come from ReadHost (getrlimit, /proc, /sys/fs/cgroup) or, in
// tests, from a literal. SysctlSnippet (made from Check's findings, so it proposes only
// what a finding judged not OK) and SystemdHint print what to change.
//
// # Concurrency
//
// The package has no package-level mutable state: Profiles and Lookup build new values
// on each call, and Profile, HostReadings and Finding are plain values. Everything is
// safe for concurrent use except ApplyRuntime, which changes process-wide runtime
// settings and is meant to be called once at start-up.
//
// # Caveats
//
//   - A key missing from Profile.Settings is not set by the profile; a key that is set
//     may say 0 or off like any flag.
//   - GOMEMLIMIT is a soft limit on the memory the Go runtime manages. RSS also holds
//     the binary's resident code; kernel socket buffers (~4 KiB per idle socket) are
//     outside both. Budgets leave room for the former; the latter is host memory that
//     Check's memory finding mentions but does not count.
//   - Setting GOMAXPROCS explicitly (a profile's GOMAXPROCS or the variable) stops the
//     runtime from following cgroup CPU limit changes; the profiles leave it at 0.
//   - ReadHost reads this process's open-file limit. The Go runtime raises every Go
//     program's soft limit to the hard one at start, so Check judges the hard limit, and
//     the soft limit ReadHost reports is the one the process started with, asked of a
//     child shell (Go restores the original limit in its children): ReadHost starts
//     /bin/sh once, and reports the soft limit Unknown where there is none.
package tuning
