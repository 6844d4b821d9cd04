package limits

import (
	"sync"
	"sync/atomic"
	"time"
)

// targetShards is the number of independently locked parts of a TargetBreakers.
const targetShards = 16

// TargetBreakers holds one circuit breaker per request target (a uint64 id, for example a
// hash of the target name or its connection id), for targets whose requests keep failing:
// timing out or hitting QUEUE_FULL. It sits on the REQUEST path, not on every frame.
//
// Only targets with a recent failure have an entry: a target is tracked from its first
// failure and forgotten once it is closed with no failure left in its window (or its
// half-open probes all succeed). Healthy traffic therefore neither allocates nor grows the
// table, and Allow on a table with no entries is one atomic load. The table holds at most
// MaxTargets entries; when a shard is full, adding a target evicts the least recently
// failed closed entry of that shard, or if all are open or half-open, the least recently
// failed entry (a target evicted while open is allowed again: under such churn the bound
// on memory wins).
//
// Concurrency: safe for concurrent use. Targets are spread over 16 shards, each with its
// own mutex held only for a map operation and a few counters. Entries are recycled through
// a per-shard free list, so steady-state churn does not allocate.
type TargetBreakers struct {
	cfg         BreakerConfig // immutable after New
	width       int64         // immutable after New
	maxPerShard int           // immutable after New
	n           atomic.Int64  // atomic; entries in all shards
	shards      [targetShards]targetShard
}

type targetShard struct {
	mu   sync.Mutex
	m    map[uint64]*targetEntry // guarded by mu
	free *targetEntry            // guarded by mu; recycled entries, linked by next
	_    [cacheLine - 24]byte
}

// targetEntry is one target's breaker: the node Breaker's state machine and window,
// without its atomics' mirror. Guarded by its shard's mu.
type targetEntry struct {
	c        circuit
	lastFail int64 // now of the latest failure, for eviction
	win      window
	next     *targetEntry // free list
}

// NewTargetBreakers returns an empty table of per-target breakers with the given settings
// (as for NewBreaker, the zero BreakerConfig means DefaultBreakerConfig and any other must
// be valid; pass DefaultTargetBreakerConfig for the per-target defaults) holding at most
// maxTargets entries (<= 0 means DefaultMaxTargets, for a zero-value caller; rounded up
// to a multiple of 16).
func NewTargetBreakers(cfg BreakerConfig, maxTargets int) *TargetBreakers {
	cfg = cfg.orDefault()
	if maxTargets <= 0 {
		maxTargets = DefaultMaxTargets
	}
	t := &TargetBreakers{
		cfg:         cfg,
		width:       cfg.width(),
		maxPerShard: (maxTargets + targetShards - 1) / targetShards,
	}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*targetEntry)
	}
	return t
}

// Config returns the effective settings.
func (t *TargetBreakers) Config() BreakerConfig { return t.cfg }

// Len returns the number of targets tracked. Lock-free.
func (t *TargetBreakers) Len() int { return int(t.n.Load()) }

// MaxTargets returns the bound on tracked targets.
func (t *TargetBreakers) MaxTargets() int { return t.maxPerShard * targetShards }

func (t *TargetBreakers) shard(target uint64) *targetShard {
	// Fibonacci hashing: ids may be sequential or share low bits.
	return &t.shards[(target*0x9E3779B97F4A7C15)>>60]
}

// Allow reports whether a request to target may proceed at now (monotonic nanoseconds),
// and if not, when to retry. Semantics are Breaker.Allow's. Lock-free when no target is
// tracked; otherwise one shard lock.
func (t *TargetBreakers) Allow(target uint64, now int64) (ok bool, retryAfter time.Duration) {
	if t.n.Load() == 0 {
		return true, 0
	}
	sh := t.shard(target)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[target]
	if e == nil {
		return true, 0
	}
	return e.c.allow(&t.cfg, t.width, now)
}

// Record reports the outcome of a request to target at now; success is false for a
// timeout, QUEUE_FULL or similar failure of the target. Semantics are Breaker.Record's.
// Takes one shard lock, except for a success while no target is tracked (one atomic
// load); allocates only when a target fails for the first time and no recycled entry is
// available.
//
// For a failure, Record reports whether the table accounts for it (explained): the
// target's entry holds it, and that entry can open to isolate the target. It is false
// when per-target breakers never open (ErrorRate 1: nothing is tracked) and when the
// shard was full, so that tracking target evicted another failing target: more targets
// are failing than the table holds, which is a node-wide problem, not one target's. The
// node breaker counts the failures this table does not explain (server's recordOutcome),
// so that one failing target cannot open it. For a success it reports false.
func (t *TargetBreakers) Record(target uint64, now int64, success bool) (explained bool) {
	if t.cfg.ErrorRate >= 1 {
		return false // never opens: nothing to track, nothing explained
	}
	if success && t.n.Load() == 0 {
		// Healthy and nothing tracked: nothing to remember, and no shard lock for every
		// answered request of a healthy node (every loop takes the same 16 locks).
		return false
	}
	sh := t.shard(target)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[target]
	explained = !success
	if e == nil {
		if success {
			return false // healthy and untracked: nothing to remember
		}
		var evicted bool
		e, evicted = t.addLocked(sh, target)
		explained = !evicted
	}
	switch e.c.state {
	case BreakerClosed:
		e.win.add(now, success, nil)
		if success {
			if _, fail := e.win.sums(now); fail == 0 {
				t.removeLocked(sh, target, e)
			}
			return false
		}
		e.lastFail = now
		if total, fail := e.win.sums(now); t.cfg.trips(total, fail) {
			e.c.open(&t.cfg, now)
		}
	case BreakerHalfOpen:
		if !success {
			e.lastFail = now
		}
		if e.c.settle(&t.cfg, now, success) {
			t.removeLocked(sh, target, e) // closed with a clean window
		}
	}
	// Open: a late result of a request admitted before the entry opened; the open entry
	// already isolates the target.
	return explained
}

// State returns target's state at now, as Breaker.State does (an open entry whose
// period has ended reports BreakerHalfOpen); BreakerClosed for an untracked target.
func (t *TargetBreakers) State(target uint64, now int64) BreakerState {
	sh := t.shard(target)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.m[target]; e != nil {
		return e.c.stateAt(now)
	}
	return BreakerClosed
}

// addLocked inserts a fresh closed entry for target, evicting one if the shard is full,
// and reports whether it did.
func (t *TargetBreakers) addLocked(sh *targetShard, target uint64) (e *targetEntry, evicted bool) {
	if len(sh.m) >= t.maxPerShard {
		evicted = true
		var victimID uint64
		var victim *targetEntry
		for id, e := range sh.m {
			if victim == nil || evictBefore(e, victim) {
				victimID, victim = id, e
			}
		}
		t.removeLocked(sh, victimID, victim)
	}
	e = sh.free
	if e != nil {
		sh.free = e.next
		e.next = nil
	} else {
		e = &targetEntry{win: newWindow(t.cfg.Buckets, t.width)}
	}
	sh.m[target] = e
	t.n.Add(1)
	return e, evicted
}

// evictBefore reports whether a is a better eviction victim than b: closed before
// anything else, then the least recent failure.
func evictBefore(a, b *targetEntry) bool {
	if (a.c.state == BreakerClosed) != (b.c.state == BreakerClosed) {
		return a.c.state == BreakerClosed
	}
	return a.lastFail < b.lastFail
}

func (t *TargetBreakers) removeLocked(sh *targetShard, target uint64, e *targetEntry) {
	delete(sh.m, target)
	t.n.Add(-1)
	*e = targetEntry{win: e.win, next: sh.free}
	e.win.reset()
	sh.free = e
}
