package limits

import "time"

// Bounds on TokenBucket parameters. They keep every intermediate value of the integer
// arithmetic inside int64; larger arguments are clamped to them.
const (
	// MaxRate is the largest rate a TokenBucket or SharedRate accepts, in tokens per
	// second (about 1.1e12).
	MaxRate = 1 << 40
	// MaxBurst is the largest burst, and the largest n one Allow call considers, in tokens
	// (about 4.3e9).
	MaxBurst = 1 << 32
)

// tokenScale is the number of stored units per token. A TokenBucket counts nano-tokens,
// so a rate of r tokens per second adds exactly r units per nanosecond: refilling is one
// multiplication, with no division and no rounding.
const tokenScale = 1_000_000_000

// TokenBucket is a token-bucket rate limiter: it holds up to burst tokens, gains rate
// tokens per second, and Allow spends n of them. Tier 2 uses one per connection for
// messages/s and one for bytes/s; the acceptor uses one for new connections/s (see
// NewAcceptLimiter).
//
// Arithmetic is integer: tokens are stored in nano-tokens (1e-9 token), and time is the
// caller's monotonic clock in nanoseconds, so refills are exact and never drift. Allow
// costs a subtraction, a multiplication and two comparisons (a few nanoseconds) and never
// allocates.
//
// Concurrency: a TokenBucket is owned by one goroutine (a connection's event loop, or the
// acceptor). It has no locks and no atomics; concurrent calls are a data race.
//
// The zero value is unlimited: Allow always reports true. A bucket starts full.
type TokenBucket struct {
	rate   int64 // tokens per second; 0 means unlimited
	full   int64 // burst in nano-tokens
	fillNs int64 // nanoseconds to refill from empty to full, rounded up
	tokens int64 // nano-tokens available at last; negative after an oversized Allow
	last   int64 // the now of the latest refill
}

// NewTokenBucket returns a full bucket that admits ratePerSec tokens per second on
// average and up to burst tokens at once. ratePerSec <= 0 returns an unlimited bucket.
// burst <= 0 means one second's worth (burst = ratePerSec). Values above MaxRate and
// MaxBurst are clamped.
//
// It returns a value so that it can be embedded in per-connection state without another
// allocation.
func NewTokenBucket(ratePerSec, burst int) TokenBucket {
	if ratePerSec <= 0 {
		return TokenBucket{}
	}
	r := min(int64(ratePerSec), MaxRate)
	bu := int64(burst)
	if bu <= 0 {
		bu = r
	}
	bu = min(bu, MaxBurst)
	full := bu * tokenScale
	return TokenBucket{rate: r, full: full, fillNs: (full + r - 1) / r, tokens: full}
}

// NewAcceptLimiter returns the tier-1 accept-rate limiter: a TokenBucket spent one token
// per accepted connection. It exists to name the use; it is owned by the single acceptor
// goroutine like any TokenBucket. ratePerSec <= 0 means unlimited; burst <= 0 means one
// second's worth. See SeedAcceptRate for the seed system's value.
func NewAcceptLimiter(ratePerSec, burst int) TokenBucket {
	return NewTokenBucket(ratePerSec, burst)
}

// Rate returns the bucket's rate in tokens per second; 0 means unlimited.
func (b *TokenBucket) Rate() int { return int(b.rate) }

// Burst returns the bucket's capacity in tokens; 0 for an unlimited bucket.
func (b *TokenBucket) Burst() int { return int(b.full / tokenScale) }

// Unlimited reports whether the bucket admits everything.
func (b *TokenBucket) Unlimited() bool { return b.rate == 0 }

// Allow spends n tokens at time now (monotonic nanoseconds, non-decreasing in practice)
// and reports whether they were available; when it reports false nothing is spent.
// n <= 0 is always allowed.
//
// A request larger than the burst (say a frame larger than the bytes/s burst) is admitted
// only when the bucket is full, and leaves the bucket in debt for the excess, so it is
// neither starved forever nor a way around the average rate. n above MaxBurst counts as
// MaxBurst.
//
// A now earlier than a previous one refills nothing (time does not run backwards).
func (b *TokenBucket) Allow(now int64, n int) bool {
	if b.rate == 0 || n <= 0 {
		return true
	}
	b.tokens = b.tokensAt(now)
	if now > b.last {
		b.last = now
	}
	need := b.need(n)
	if b.tokens >= min(need, b.full) {
		b.tokens -= need
		return true
	}
	return false
}

// RetryAfter returns how long from now until Allow(now+d, n) would succeed if nothing else
// spends tokens meanwhile: 0 when it would succeed now or the bucket is unlimited. It is
// the retry-after of a RATE_LIMITED error. It does not change the bucket.
func (b *TokenBucket) RetryAfter(now int64, n int) time.Duration {
	if b.rate == 0 || n <= 0 {
		return 0
	}
	deficit := min(b.need(n), b.full) - b.tokensAt(now)
	if deficit <= 0 {
		return 0
	}
	// deficit is in nano-tokens and rate is nano-tokens per nanosecond.
	return time.Duration((deficit + b.rate - 1) / b.rate)
}

// Tokens returns the whole tokens available at now (negative while in debt), for metrics
// and tests. It does not change the bucket.
func (b *TokenBucket) Tokens(now int64) int {
	if b.rate == 0 {
		return 0
	}
	return int(b.tokensAt(now) / tokenScale)
}

// need returns n tokens in nano-tokens, with n clamped to MaxBurst.
func (b *TokenBucket) need(n int) int64 {
	m := int64(n)
	if m > MaxBurst {
		m = MaxBurst
	}
	return m * tokenScale
}

// tokensAt returns the nano-tokens available at now. Overflow analysis: full and the debt
// are at most MaxBurst*1e9 < 2^62, and rate*dt is computed only for dt < fillNs, so it is
// at most full+rate: every sum stays below 2^63.
func (b *TokenBucket) tokensAt(now int64) int64 {
	t := b.tokens
	dt := now - b.last
	if dt <= 0 || t >= b.full {
		return t
	}
	if dt >= b.fillNs {
		t += b.full
	} else {
		t += b.rate * dt
	}
	return min(t, b.full)
}
