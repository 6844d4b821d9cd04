package limits

import (
	"sync/atomic"
	"time"
)

// cacheLine is the padding unit between fields written by different cores. 128 rather
// than 64 because Intel's spatial prefetcher pulls cache lines in pairs (as in shard).
const cacheLine = 128

// maxLease is the largest number of tokens one loop takes from a SharedRate pool at once.
const maxLease = 64

// maxTau bounds a SharedRate's burst expressed in nanoseconds of pool time (about 13
// days), so that now+tau cannot overflow.
const maxTau = 1 << 50

// SharedRate is the tier-3 node-wide rate limit (messages per second across all event
// loops) without a global lock, and without a shared write per message.
//
// The pool is one atomic int64 running the generic cell rate algorithm (GCRA): it holds
// the pool's "theoretical arrival time" tat, each token costs cost = ceil(1e9/rate)
// nanoseconds of it, and a grant of n tokens at time now is allowed while
// max(tat, now) + n*cost - now <= burst*cost. Refill is implied by the passage of time, so
// there is no refill goroutine and no second word to keep consistent: a grant is one load
// and one CompareAndSwap, and a refusal is one load and no write (an overloaded node does
// not bounce the pool's cache line between cores).
//
// Each loop holds a RateLease and spends tokens from it with no shared access at all; when
// it is empty the loop takes up to LeaseSize tokens from the pool (fewer if the pool holds
// fewer). Over any time window of length t the tokens admitted node-wide are therefore at
// most rate*t + burst + loops*LeaseSize: the pool grants at most rate*t + burst (GCRA),
// and each loop may additionally spend at most one lease taken before the window began.
//
// Because the per-token cost is rounded up to whole nanoseconds the effective rate is
// 1e9/ceil(1e9/rate): exact when rate divides 1e9, and never above rate (within 0.1% for
// rates up to 1e6/s).
//
// Concurrency: NewSharedRate's result is safe for concurrent use through its leases; each
// RateLease is owned by one loop (no locks, no atomics) and must not be used by two
// goroutines at once. RetryAfter on a lease follows the same rule.
type SharedRate struct {
	_     [cacheLine]byte
	tat   atomic.Int64 // atomic; pool's theoretical arrival time, ns
	_     [cacheLine - 8]byte
	cost  int64       // immutable after New; ns of pool time per token; 0 means unlimited
	tau   int64       // immutable after New; burst*cost, ns
	lease int64       // immutable after New; tokens per lease
	rate  int64       // immutable after New
	burst int64       // immutable after New
	loops []RateLease // immutable slice after New; element i owned by loop i
}

// RateLease is one event loop's share of a SharedRate: a loop-local token count refilled
// from the shared pool. Owned by one loop: it has no locks and no atomics. Each lease sits
// on its own cache lines so loops do not share writes.
type RateLease struct {
	_      [cacheLine]byte
	s      *SharedRate // immutable after NewSharedRate
	tokens int64       // owned by the loop; tokens left in the current lease
}

// NewSharedRate returns a node-wide limiter admitting ratePerSec tokens per second with
// the given burst, shared by loops event loops (loops < 1 counts as 1). ratePerSec <= 0
// means unlimited; burst <= 0 means one second's worth. The pool starts full.
//
// The lease size is min(64, 1% of the rate, burst), at least 1: small enough that loops
// idle with a part-used lease hold back little, large enough that the pool is touched
// once per 64 messages at high rates.
func NewSharedRate(ratePerSec, burst, loops int) *SharedRate {
	loops = max(loops, 1)
	s := &SharedRate{loops: make([]RateLease, loops)}
	for i := range s.loops {
		s.loops[i].s = s
	}
	if ratePerSec <= 0 {
		return s
	}
	s.rate = min(int64(ratePerSec), MaxRate)
	s.burst = int64(burst)
	if s.burst <= 0 {
		s.burst = s.rate
	}
	s.burst = min(s.burst, MaxBurst)
	s.cost = (tokenScale + s.rate - 1) / s.rate
	s.tau = min(s.burst*s.cost, maxTau)
	s.lease = max(1, min(maxLease, s.rate/100, s.burst))
	return s
}

// Lease returns loop's handle, 0 <= loop < Loops(). The same loop always gets the same
// handle. Safe for concurrent use.
func (s *SharedRate) Lease(loop int) *RateLease { return &s.loops[loop] }

// Loops returns the number of leases.
func (s *SharedRate) Loops() int { return len(s.loops) }

// LeaseSize returns how many tokens a loop takes from the pool at once (0 if unlimited).
func (s *SharedRate) LeaseSize() int { return int(s.lease) }

// Rate returns the configured rate in tokens per second; 0 means unlimited.
func (s *SharedRate) Rate() int { return int(s.rate) }

// Burst returns the pool's capacity in tokens; 0 if unlimited.
func (s *SharedRate) Burst() int { return int(s.burst) }

// take grants up to want tokens from the pool at now and returns how many.
func (s *SharedRate) take(now, want int64) int64 {
	for {
		tat := s.tat.Load()
		base := max(tat, now)
		n := min(want, (s.tau-(base-now))/s.cost)
		if n <= 0 {
			return 0
		}
		if s.tat.CompareAndSwap(tat, base+n*s.cost) {
			return n
		}
	}
}

// Allow spends one token at now (monotonic nanoseconds) and reports whether it was
// available. The fast path decrements a loop-local counter; when the lease is empty it
// takes a new one from the pool with one CompareAndSwap (retried only if another loop
// raced it). Never allocates. Owned by the lease's loop.
func (l *RateLease) Allow(now int64) bool {
	if l.tokens > 0 {
		l.tokens--
		return true
	}
	s := l.s
	if s.cost == 0 {
		return true
	}
	n := s.take(now, s.lease)
	if n == 0 {
		return false
	}
	l.tokens = n - 1
	return true
}

// RetryAfter returns how long from now until this loop's Allow would succeed if no other
// loop takes tokens meanwhile: 0 if it would succeed now or the limit is unlimited. It
// does not change anything. Owned by the lease's loop.
func (l *RateLease) RetryAfter(now int64) time.Duration {
	s := l.s
	if l.tokens > 0 || s.cost == 0 {
		return 0
	}
	// One token is grantable once max(tat, now) + cost - now <= tau.
	wait := max(s.tat.Load(), now) + s.cost - now - s.tau
	if wait <= 0 {
		return 0
	}
	return time.Duration(wait)
}
