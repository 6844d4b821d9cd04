package limits

import (
	"sync"
	"sync/atomic"
	"time"
)

// BreakerState is the state of a circuit breaker.
type BreakerState uint32

// Breaker states.
const (
	// BreakerClosed lets everything through and watches the error rate.
	BreakerClosed BreakerState = iota
	// BreakerOpen fails fast until its open period ends.
	BreakerOpen
	// BreakerHalfOpen lets a bounded number of probes through; all of them succeeding
	// closes the breaker, one failing reopens it.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	default:
		return "invalid"
	}
}

// MarshalText implements encoding.TextMarshaler (for JSON).
func (s BreakerState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Default breaker settings. The node breaker's come from the seed system (tier 4); the
// per-target ones open for a name whose requests keep failing (timeouts, QUEUE_FULL).
const (
	DefaultBreakerErrorRate   = 0.01
	DefaultBreakerWindow      = 10 * time.Second
	DefaultBreakerBuckets     = 10
	DefaultBreakerMinRequests = 100
	DefaultBreakerOpenFor     = 5 * time.Second
	DefaultBreakerProbes      = 5

	DefaultTargetErrorRate   = 0.5
	DefaultTargetMinFailures = 20
	DefaultMaxTargets        = 4096
)

// maxBreakerBuckets bounds BreakerConfig.Buckets.
const maxBreakerBuckets = 1000

// BreakerConfig holds a circuit breaker's settings. Zero fields take the defaults of
// DefaultBreakerConfig.
type BreakerConfig struct {
	// ErrorRate opens the breaker when failures/requests in the window is above it
	// (strictly). A fraction in [0, 1]; default 0.01. 1 disables opening.
	ErrorRate float64
	// Window is the sliding window the rate is measured over; default 10s.
	Window time.Duration
	// Buckets is the window's resolution: it slides in steps of Window/Buckets. Default 10,
	// at most 1000.
	Buckets int
	// MinRequests is the volume below which the breaker never opens; default 100.
	MinRequests int
	// MinFailures is the failure count below which the breaker never opens; default 1.
	MinFailures int
	// OpenFor is how long an open breaker fails fast before going half-open; default 5s.
	// It is also how long a half-open round waits for lost probe results.
	OpenFor time.Duration
	// Probes is how many requests half-open lets through, and how many consecutive
	// successes close it; default 5.
	Probes int
}

// DefaultBreakerConfig returns the node breaker's defaults: open above 1% errors over 10 s
// (10 buckets) once 100 requests were seen, for 5 s, then 5 probes.
func DefaultBreakerConfig() BreakerConfig {
	return BreakerConfig{
		ErrorRate:   DefaultBreakerErrorRate,
		Window:      DefaultBreakerWindow,
		Buckets:     DefaultBreakerBuckets,
		MinRequests: DefaultBreakerMinRequests,
		MinFailures: 1,
		OpenFor:     DefaultBreakerOpenFor,
		Probes:      DefaultBreakerProbes,
	}
}

// DefaultTargetBreakerConfig returns the per-target defaults: open when at least 20 of a
// target's requests failed in 10 s and they are more than half of its requests.
func DefaultTargetBreakerConfig() BreakerConfig {
	c := DefaultBreakerConfig()
	c.ErrorRate = DefaultTargetErrorRate
	c.MinRequests = DefaultTargetMinFailures
	c.MinFailures = DefaultTargetMinFailures
	return c
}

// withDefaults returns c with zero (or out-of-range) fields replaced by node defaults.
func (c BreakerConfig) withDefaults() BreakerConfig {
	d := DefaultBreakerConfig()
	if c.ErrorRate <= 0 {
		c.ErrorRate = d.ErrorRate
	}
	if c.Window <= 0 {
		c.Window = d.Window
	}
	if c.Buckets <= 0 {
		c.Buckets = d.Buckets
	}
	c.Buckets = min(c.Buckets, maxBreakerBuckets)
	if c.MinRequests <= 0 {
		c.MinRequests = d.MinRequests
	}
	if c.MinFailures <= 0 {
		c.MinFailures = d.MinFailures
	}
	if c.OpenFor <= 0 {
		c.OpenFor = d.OpenFor
	}
	if c.Probes <= 0 {
		c.Probes = d.Probes
	}
	return c
}

// width returns the bucket width in nanoseconds (at least 1).
func (c BreakerConfig) width() int64 { return max(1, int64(c.Window)/int64(c.Buckets)) }

// trips reports whether a window holding total requests and fail failures opens.
func (c BreakerConfig) trips(total, fail int64) bool {
	return total >= int64(c.MinRequests) && fail >= int64(c.MinFailures) &&
		float64(fail) > c.ErrorRate*float64(total)
}

// Breaker is a closed / open / half-open circuit breaker over a sliding window of request
// outcomes: the tier-4 node breaker, touched by every event loop.
//
// Concurrency: safe for concurrent use. The state and the end of the open period are
// atomics, so Allow in the closed state is one atomic load, and in the open state two; it
// takes the mutex only to leave the open state and while half-open. Record in the closed
// state adds to the current bucket's atomic counters without a lock (the mutex is taken
// once per bucket rotation, by whichever caller rotates it) and, on a failure only, sums
// the window with atomic loads to decide whether to open. Transitions happen under mu.
//
// The zero value never opens: Allow always succeeds and Record does nothing.
type Breaker struct {
	state     atomic.Uint32 // atomic; a BreakerState, written under mu
	openUntil atomic.Int64  // atomic; end of the open period, ns; written under mu
	opens     atomic.Uint64 // atomic; times the breaker opened

	cfg     BreakerConfig  // immutable after NewBreaker
	width   int64          // immutable after NewBreaker; bucket width, ns; 0 for the zero value
	buckets []atomicBucket // immutable slice after NewBreaker; counters atomic, epochs reset under mu

	mu         sync.Mutex
	probes     int   // guarded by mu; probes admitted in the current half-open round
	successes  int   // guarded by mu; consecutive probe successes
	roundStart int64 // guarded by mu; start of the current half-open round, ns
}

// atomicBucket counts the outcomes of one bucket-width of time. epoch is now/width of the
// time it counts; a bucket whose epoch is older than the window is stale and reset (under
// the breaker's mu) by the first Record that needs it.
type atomicBucket struct {
	epoch atomic.Int64
	total atomic.Int64
	fail  atomic.Int64
	_     [cacheLine - 24]byte
}

// NewBreaker returns a closed breaker. Zero fields of cfg take DefaultBreakerConfig's
// values.
func NewBreaker(cfg BreakerConfig) *Breaker {
	cfg = cfg.withDefaults()
	b := &Breaker{cfg: cfg, width: cfg.width(), buckets: make([]atomicBucket, cfg.Buckets)}
	b.resetBucketsLocked()
	return b
}

// Config returns the breaker's effective settings.
func (b *Breaker) Config() BreakerConfig { return b.cfg }

// State returns the current state. Lock-free. An open breaker whose period has ended
// reports BreakerOpen until the next Allow moves it to half-open.
func (b *Breaker) State() BreakerState { return BreakerState(b.state.Load()) }

// Opens returns how many times the breaker has opened (from closed or half-open), for
// metrics. Lock-free.
func (b *Breaker) Opens() uint64 { return b.opens.Load() }

// Allow reports whether a request may proceed at now (monotonic nanoseconds). When it may
// not, retryAfter says when to try again: the rest of the open period, or while half-open
// with all probes out, at most one bucket width. A request that Allow admitted must be
// reported with Record.
//
// Closed: one atomic load, no lock. Open: two atomic loads, no lock, until the open period
// ends; the first Allow after it takes the mutex and moves to half-open.
func (b *Breaker) Allow(now int64) (ok bool, retryAfter time.Duration) {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return true, 0
	case BreakerOpen:
		if until := b.openUntil.Load(); now < until {
			return false, time.Duration(until - now)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.allowLocked(now)
}

func (b *Breaker) allowLocked(now int64) (bool, time.Duration) {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return true, 0
	case BreakerOpen:
		if until := b.openUntil.Load(); now < until {
			return false, time.Duration(until - now)
		}
		b.state.Store(uint32(BreakerHalfOpen))
		b.probes, b.successes, b.roundStart = 0, 0, now
	}
	// Half-open. A round that has waited OpenFor without settling has lost probe results
	// (a caller that never called Record); free the slots of the missing ones.
	openFor := int64(b.cfg.OpenFor)
	if now-b.roundStart >= openFor {
		b.probes, b.roundStart = b.successes, now
	}
	if b.probes < b.cfg.Probes {
		b.probes++
		return true, 0
	}
	return false, time.Duration(max(1, min(b.width, b.roundStart+openFor-now)))
}

// Record reports the outcome of a request at now: success false for an error that counts
// against the target (timeout, QUEUE_FULL, internal error), true otherwise. While closed
// it feeds the window and may open the breaker; while half-open it settles a probe; while
// open it is ignored (a late result of a request admitted before opening).
//
// Closed: lock-free (two atomic adds at most, plus a window sum on failures). Half-open:
// takes the mutex.
//
// Caveat: outcomes are not tied to the Allow that admitted them, so while half-open a late
// result of a request admitted while closed counts as a probe result.
func (b *Breaker) Record(now int64, success bool) {
	if b.width == 0 {
		return
	}
	if BreakerState(b.state.Load()) == BreakerClosed {
		b.count(now, success)
		if !success {
			if total, fail := b.sums(now); b.cfg.trips(total, fail) {
				b.mu.Lock()
				if BreakerState(b.state.Load()) == BreakerClosed {
					b.openLocked(now)
				}
				b.mu.Unlock()
			}
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if BreakerState(b.state.Load()) != BreakerHalfOpen {
		return
	}
	if !success {
		b.openLocked(now)
		return
	}
	b.successes++
	if b.successes >= b.cfg.Probes {
		b.resetBucketsLocked()
		b.state.Store(uint32(BreakerClosed))
	}
}

// Counts returns the requests and failures recorded in the window ending at now.
// Lock-free; approximate under concurrent Records. Use it for the error-rate zone input.
func (b *Breaker) Counts(now int64) (requests, failures int64) {
	if b.width == 0 {
		return 0, 0
	}
	return b.sums(now)
}

func (b *Breaker) openLocked(now int64) {
	b.openUntil.Store(now + int64(b.cfg.OpenFor))
	b.state.Store(uint32(BreakerOpen))
	b.opens.Add(1)
}

// resetBucketsLocked empties the window. Called under mu, or before b is shared.
func (b *Breaker) resetBucketsLocked() {
	for i := range b.buckets {
		bk := &b.buckets[i]
		bk.total.Store(0)
		bk.fail.Store(0)
		bk.epoch.Store(-1)
	}
}

// count adds one outcome to the bucket of now. A caller stalled for a whole window
// between loading the epoch and adding can land its count in a newer bucket; the window
// is a statistic and tolerates that.
func (b *Breaker) count(now int64, success bool) {
	e := now / b.width
	bk := &b.buckets[e%int64(len(b.buckets))]
	if cur := bk.epoch.Load(); cur != e {
		if cur > e || e < 0 {
			return // older than the window (or a negative clock): drop
		}
		b.mu.Lock()
		if bk.epoch.Load() < e {
			bk.total.Store(0)
			bk.fail.Store(0)
			bk.epoch.Store(e) // published after the reset: adders that see e add to zeros
		}
		cur = bk.epoch.Load()
		b.mu.Unlock()
		if cur != e {
			return // rotated past e by a caller with a later now
		}
	}
	bk.total.Add(1)
	if !success {
		bk.fail.Add(1)
	}
}

// sums adds up the buckets inside the window ending at now.
func (b *Breaker) sums(now int64) (total, fail int64) {
	e := now / b.width
	oldest := e - int64(len(b.buckets))
	for i := range b.buckets {
		bk := &b.buckets[i]
		if ep := bk.epoch.Load(); ep > oldest && ep <= e {
			total += bk.total.Load()
			fail += bk.fail.Load()
		}
	}
	return total, fail
}
