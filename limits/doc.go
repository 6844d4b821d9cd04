// Package limits holds switchboard's admission and overload logic as pure functions and
// small state machines with no I/O, so that every limit can be tested without sockets and
// without sleeping: time is always passed in as now, int64 monotonic nanoseconds (for
// example time.Since(start) of a fixed start), never read from the clock.
//
// The pieces, by tier of the overload-protection design:
//
//   - Tier 1, accept: MaxConnections (cap from the open-file limit), PerIP (connections
//     per client address), NewAcceptLimiter (a TokenBucket owned by the acceptor).
//   - Tier 2, per connection: TokenBucket, one for messages/s and one for bytes/s.
//   - Tier 3, node-wide: SharedRate, a lock-free token pool from which each event loop
//     leases small batches into a RateLease.
//   - Tier 4: Breaker (node-wide circuit breaker on the request error rate) and
//     TargetBreakers (one breaker per target that keeps timing out or hitting QUEUE_FULL).
//   - Zones: ZoneTracker turns utilisation Inputs into GREEN/YELLOW/ORANGE/RED with
//     hysteresis; Zone's methods say what each zone sheds.
//   - Config collects the knobs, with DefaultConfig and Validate; it applies no defaults
//     (see "Defaults").
//
// Per-frame calls (TokenBucket.Allow, RateLease.Allow, Breaker.Allow while closed,
// ZoneTracker.Current) take no lock, do no shared write on the common path and never
// allocate; tests prove 0 allocations with testing.AllocsPerRun.
//
// # Defaults
//
// Every rate limit is unlimited by default (rate 0). DefaultConfig spells out every
// default; this package fills none in itself (Config.Validate rejects a 0 that means
// nothing, such as a breaker window, instead of replacing it), so an explicit 0 where it
// means "none" (zone hysteresis, zone dwell, a rate) reaches the code. The constructors
// NewBreaker, NewTargetBreakers and NewZoneTracker take the whole zero value of their
// settings as the defaults, so that tests and benchmarks can say BreakerConfig{}. The seed system's values (500 msg/s per connection, 10,000 msg/s per
// node, 100 new connections/s) are the constants SeedConnMsgRate, SeedNodeMsgRate and
// SeedAcceptRate, for tuning profiles to set explicitly. Reasons:
//
//   - Zero must mean one thing. A rate of zero means unlimited everywhere in this
//     package; with unlimited defaults, 0 is both the default and the way to say "off",
//     and there is no need for a sentinel such as -1 to switch a limit off.
//   - The seed's values would throttle switchboard's own targets: 50 pipelining clients at
//     500 msg/s each give 25K msg/s, and a 10,000 msg/s node cap is 1% of the ~1M frames/s
//     echo target on a 2-core box. Benchmarks open thousands of connections in a second,
//     far above 100/s. A default that makes a fresh install fail its own benchmark teaches
//     operators to switch limits off.
//   - Real limits depend on the host and workload, which is what tuning profiles know.
//
// The breaker and zone settings keep the seed's values (1% errors over 10 s, open 5 s,
// 0.60/0.75/0.90): they only act when something is already wrong.
//
// # Concurrency
//
//   - MaxConnections and FDReserve are pure and safe for concurrent use.
//   - TokenBucket and RateLease are owned by one goroutine (a connection's loop, the
//     acceptor, a loop): no locks, no atomics.
//   - SharedRate is shared by all loops through one atomic word (the pool), touched once
//     per lease (at most 64 tokens) by a grant, read-only by a refusal.
//   - Breaker is safe for concurrent use: atomics for the state, the open deadline and the
//     window counters; a mutex for transitions, half-open probes and bucket rotation.
//   - TargetBreakers and PerIP are safe for concurrent use, with 16 mutex-guarded shards
//     each, locks held only for a map operation.
//   - ZoneTracker is updated by one sampler goroutine and read by any: Current is one
//     atomic load; Snapshot and Update share a mutex.
//   - Config, BreakerConfig, Thresholds and Zone are plain values.
//
// # Caveats
//
//   - The open-file limit is read by the caller (server) and passed in: this package does
//     no system calls.
//   - now must come from a monotonic clock and be non-negative. A now earlier than one
//     already seen is tolerated (no refill, or an outcome dropped) but never rewinds state.
//   - A TokenBucket admits a request larger than its burst only when full and then stays
//     in debt, so the average rate holds; over a window the bound is rate*t + burst plus
//     that one oversized request.
//   - SharedRate may admit up to loops*LeaseSize more than rate*t + burst over a window:
//     the leases loops held when it began.
//   - Breaker outcomes are not tied to the Allow that admitted them: while half-open a late
//     result of a request admitted while closed counts as a probe result. A half-open round
//     whose probe results never arrive frees its slots after OpenFor.
//   - TargetBreakers counts a target's requests only from its first failure on, so the
//     error rate it sees is at first biased upwards; MinFailures (20 by default) keeps a
//     short run of bad luck from opening it.
//   - PerIP counts IPv6 clients per /64.
package limits
