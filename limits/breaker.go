package limits

import (
	"fmt"
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

// BreakerConfig holds a circuit breaker's settings. The zero value means
// DefaultBreakerConfig; otherwise every field is used as given (limits.Config.BreakerConfig
// fills one from a validated Config). The defaults below are DefaultBreakerConfig's.
type BreakerConfig struct {
	// ErrorRate opens the breaker when failures/requests in the window is above it
	// (strictly). A fraction in [0, 1]; default 0.01. 1 disables opening; 0 opens on any
	// failure once MinRequests and MinFailures are met.
	ErrorRate float64
	// Window is the sliding window the rate is measured over; default 10s.
	Window time.Duration
	// Buckets is the window's resolution: it slides in steps of Window/Buckets. Default 10,
	// 1 to 1000.
	Buckets int
	// MinRequests is the volume below which the breaker never opens; default 100.
	MinRequests int
	// MinFailures is the failure count below which the breaker never opens; default 1.
	MinFailures int
	// OpenFor is how long an open breaker fails fast before going half-open; default 5s.
	// It is also how long a half-open round waits for lost probe results.
	OpenFor time.Duration
	// Probes is how many requests half-open lets through, and how many consecutive
	// successes close it; default 5, at least 1.
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

// orDefault returns DefaultBreakerConfig for the zero BreakerConfig and c itself
// otherwise, after checking the fields the arithmetic depends on. Defaults for a
// configured node come from limits.Config (one place, DefaultConfig), not from here:
// the zero value is accepted only so that a bare NewBreaker(BreakerConfig{}) works.
func (c BreakerConfig) orDefault() BreakerConfig {
	if c == (BreakerConfig{}) {
		return DefaultBreakerConfig()
	}
	if c.Window <= 0 || c.Buckets <= 0 || c.Buckets > maxBreakerBuckets || c.Probes <= 0 {
		panic(fmt.Sprintf("BUG: limits: invalid BreakerConfig %+v (Window, Buckets and Probes must be positive)", c))
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
// outcomes: the tier-4 node breaker, touched by every event loop. Its state machine
// (circuit) and window are the ones every TargetBreakers entry uses.
//
// Concurrency: safe for concurrent use. The state and the end of the open period are
// mirrored in atomics, so Allow in the closed state is one atomic load, and in the open
// state two; it takes the mutex only to leave the open state and while half-open. Record
// in the closed state adds to the current bucket's atomic counters without a lock (the
// mutex is taken once per bucket rotation, by whichever caller rotates it) and, on a
// failure only, sums the window with atomic loads to decide whether to open. Transitions
// happen under mu.
//
// The zero value never opens: Allow always succeeds and Record does nothing.
type Breaker struct {
	state     atomic.Uint32 // atomic; mirrors c.state, written under mu
	openUntil atomic.Int64  // atomic; mirrors c.openUntil, written under mu
	opens     atomic.Uint64 // atomic; times the breaker opened

	cfg BreakerConfig // immutable after NewBreaker
	win window        // immutable slice after NewBreaker; counters atomic, rotation under mu

	mu sync.Mutex
	c  circuit // guarded by mu
}

// NewBreaker returns a closed breaker. The zero BreakerConfig means DefaultBreakerConfig;
// any other cfg is used as given and must be valid (Window, Buckets and Probes positive):
// an invalid one is a programmer error and panics.
func NewBreaker(cfg BreakerConfig) *Breaker {
	cfg = cfg.orDefault()
	return &Breaker{cfg: cfg, win: newWindow(cfg.Buckets, cfg.width())}
}

// Config returns the breaker's effective settings.
func (b *Breaker) Config() BreakerConfig { return b.cfg }

// State returns the state at now (monotonic nanoseconds): an open breaker whose open
// period has ended reports BreakerHalfOpen, which is what the next Allow finds, so the
// state a gauge or report shows does not wait for a request to move it. Lock-free.
func (b *Breaker) State(now int64) BreakerState {
	s := BreakerState(b.state.Load())
	if s == BreakerOpen && now >= b.openUntil.Load() {
		return BreakerHalfOpen
	}
	return s
}

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
	ok, retryAfter = b.c.allow(&b.cfg, b.win.width, now)
	b.publishLocked()
	return ok, retryAfter
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
	if b.win.width == 0 {
		return
	}
	if BreakerState(b.state.Load()) == BreakerClosed {
		b.win.add(now, success, &b.mu)
		if !success {
			if total, fail := b.win.sums(now); b.cfg.trips(total, fail) {
				b.mu.Lock()
				if b.c.state == BreakerClosed {
					b.openLocked(now)
				}
				b.mu.Unlock()
			}
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c.state != BreakerHalfOpen {
		return
	}
	if b.c.settle(&b.cfg, now, success) {
		b.win.reset()
	} else if b.c.state == BreakerOpen {
		b.opens.Add(1)
	}
	b.publishLocked()
}

// Counts returns the requests and failures recorded in the window ending at now.
// Lock-free; approximate under concurrent Records. Use it for the error-rate zone input.
func (b *Breaker) Counts(now int64) (requests, failures int64) {
	if b.win.width == 0 {
		return 0, 0
	}
	return b.win.sums(now)
}

func (b *Breaker) openLocked(now int64) {
	b.c.open(&b.cfg, now)
	b.opens.Add(1)
	b.publishLocked()
}

// publishLocked mirrors the circuit's state into the atomics that the lock-free paths
// read: openUntil first, so that a reader that sees BreakerOpen sees its end too.
func (b *Breaker) publishLocked() {
	b.openUntil.Store(b.c.openUntil)
	b.state.Store(uint32(b.c.state))
}
