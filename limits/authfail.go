package limits

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAuthFailAddrs is the number of client addresses an AuthFailures tracks at most.
const DefaultAuthFailAddrs = 16384

// AuthFailures limits failed handshakes (a wrong token, an unknown user) per client
// address: each address may fail at most rate times per second, with a burst of rate.
// Past that, Blocked reports how long until the next attempt may be checked at all, so a
// peer guessing tokens gets rate guesses per second, however fast it reconnects.
//
// Addresses are grouped as PerIP groups them (IPv4-mapped as IPv4, IPv6 per /64); the
// invalid netip.Addr is never limited. Only addresses that failed are tracked, each until
// its bucket has refilled. Memory is bounded: at most maxAddrs addresses (rounded up to a
// multiple of 16) are held; when a shard is full, addresses that have recovered are
// forgotten first, then an arbitrary one. Forgetting an address can only let it guess
// sooner, never lock out one that did not fail.
//
// Concurrency: safe for concurrent use (event loops call it from HELLO handling and
// verifier goroutines). Addresses are spread over 16 shards, each with a mutex held for
// one map operation, or for one sweep of the shard when it is full. The clock is the
// caller's monotonic nanoseconds, as for TokenBucket.
//
// A nil *AuthFailures, or one made with rate <= 0, limits nothing.
type AuthFailures struct {
	rate     int          // immutable; failures per second per address
	perShard int          // immutable; addresses per shard
	n        atomic.Int64 // atomic; addresses tracked
	shards   [perIPShards]failShard
}

type failShard struct {
	mu sync.Mutex
	m  map[netip.Addr]TokenBucket // guarded by mu
	_  [cacheLine - 16]byte
}

// NewAuthFailures returns a limiter allowing rate failed handshakes per second per
// address (burst rate), tracking at most maxAddrs addresses (<= 0: DefaultAuthFailAddrs).
// rate <= 0 returns nil: no limit.
func NewAuthFailures(rate, maxAddrs int) *AuthFailures {
	if rate <= 0 {
		return nil
	}
	if maxAddrs <= 0 {
		maxAddrs = DefaultAuthFailAddrs
	}
	a := &AuthFailures{rate: rate, perShard: (maxAddrs + perIPShards - 1) / perIPShards}
	for i := range a.shards {
		a.shards[i].m = make(map[netip.Addr]TokenBucket)
	}
	return a
}

// Rate returns the failures per second allowed per address; 0 when a is nil.
func (a *AuthFailures) Rate() int {
	if a == nil {
		return 0
	}
	return a.rate
}

// Len returns the number of addresses tracked. Lock-free; approximate while others run.
func (a *AuthFailures) Len() int {
	if a == nil {
		return 0
	}
	return int(a.n.Load())
}

func (a *AuthFailures) shard(k netip.Addr) *failShard {
	return &a.shards[ipShardIndex(k)]
}

// Blocked returns how long ip must wait before its next handshake is checked: 0 when it
// may try now. It changes nothing.
func (a *AuthFailures) Blocked(ip netip.Addr, now int64) time.Duration {
	if a == nil {
		return 0
	}
	k, ok := perIPKey(ip)
	if !ok {
		return 0
	}
	sh := a.shard(k)
	sh.mu.Lock()
	b, found := sh.m[k]
	sh.mu.Unlock()
	if !found {
		return 0
	}
	return b.RetryAfter(now, 1)
}

// Fail counts one failed handshake from ip at now.
func (a *AuthFailures) Fail(ip netip.Addr, now int64) {
	if a == nil {
		return
	}
	k, ok := perIPKey(ip)
	if !ok {
		return
	}
	sh := a.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, found := sh.m[k]
	if !found {
		if len(sh.m) >= a.perShard {
			a.evictLocked(sh, now)
		}
		b = NewTokenBucket(a.rate, a.rate)
		a.n.Add(1)
	}
	b.Allow(now, 1) // spends a token if one is left; an empty bucket stays empty
	sh.m[k] = b
}

// evictLocked makes room in a full shard: it forgets every address whose bucket has
// refilled (it would be allowed its whole burst again anyway), or else one address.
func (a *AuthFailures) evictLocked(sh *failShard, now int64) {
	removed := 0
	for k, b := range sh.m {
		if b.tokensAt(now) >= b.full {
			delete(sh.m, k)
			removed++
		}
	}
	if removed == 0 {
		for k := range sh.m { // Go's map order is random: an arbitrary victim
			delete(sh.m, k)
			removed++
			break
		}
	}
	a.n.Add(-int64(removed))
}
