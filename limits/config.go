package limits

import (
	"errors"
	"fmt"
	"time"
)

// The seed system's (erlmcp's) rate limits. They are not switchboard's defaults (see the
// package documentation, "Defaults"): tuning profiles that want seed behaviour set them
// explicitly.
const (
	// SeedConnMsgRate is the seed's per-connection limit, messages per second.
	SeedConnMsgRate = 500
	// SeedNodeMsgRate is the seed's node-wide limit, messages per second.
	SeedNodeMsgRate = 10_000
	// SeedAcceptRate is the seed's limit on new connections per second.
	SeedAcceptRate = 100
)

// Config collects the limits package's knobs; DefaultConfig fills every one. Each field
// says what 0 means: for rates and MaxConnsPerIP "unlimited", for bursts "one second's
// worth", for ZoneHysteresis and ZoneMinDwell "none"; every other field must be positive
// and Validate names it when it is 0. This package applies no defaults of its own: the
// node's configuration starts from DefaultConfig (server.Config.EnsureDefaults fills the
// fields that cannot be 0 for a zero-value caller). Negative values are invalid.
type Config struct {
	// ConnMsgRate is tier 2's per-connection limit in messages per second; 0 = unlimited
	// (default). The seed used 500 (SeedConnMsgRate).
	ConnMsgRate int
	// ConnMsgBurst is the per-connection message burst; 0 = one second's worth.
	ConnMsgBurst int
	// ConnByteRate is tier 2's per-connection limit in bytes per second; 0 = unlimited
	// (default).
	ConnByteRate int
	// ConnByteBurst is the per-connection byte burst; 0 = one second's worth. A frame
	// larger than the burst is admitted when the bucket is full and leaves it in debt.
	ConnByteBurst int
	// NodeMsgRate is tier 3's node-wide limit in messages per second across all loops;
	// 0 = unlimited (default). The seed used 10,000 (SeedNodeMsgRate).
	NodeMsgRate int
	// NodeMsgBurst is the node-wide burst; 0 = one second's worth.
	NodeMsgBurst int
	// AcceptRate is tier 1's limit on new connections per second; 0 = unlimited (default).
	// The seed used 100 (SeedAcceptRate).
	AcceptRate int
	// AcceptBurst is the accept burst; 0 = one second's worth.
	AcceptBurst int
	// MaxConnsPerIP is tier 1's per-address connection limit (IPv6 per /64); 0 =
	// unlimited (default).
	MaxConnsPerIP int

	// BreakerErrorRate opens the node breaker when the window's error rate is above it;
	// a fraction in (0, 1], default 0.01; 1 never opens (the way to say "off").
	BreakerErrorRate float64
	// BreakerWindow is the window the error rate is measured over; default 10s.
	BreakerWindow time.Duration
	// BreakerMinRequests is the window volume below which the breaker stays closed;
	// default 100, at least 1.
	BreakerMinRequests int
	// BreakerOpenFor is how long an open breaker fails fast; default 5s.
	BreakerOpenFor time.Duration
	// BreakerProbes is how many probes half-open lets through and how many consecutive
	// successes close the breaker; default 5, at least 1.
	BreakerProbes int
	// TargetErrorRate opens one target's breaker when its error rate is above it (with at
	// least TargetMinFailures failures in BreakerWindow); a fraction in (0, 1], default
	// 0.5; 1 never opens.
	TargetErrorRate float64
	// TargetMinFailures is the failure count below which a target's breaker stays closed;
	// default 20, at least 1.
	TargetMinFailures int
	// MaxTargets bounds the per-target breaker table; default 4096, at least 1.
	MaxTargets int

	// ZoneYellow, ZoneOrange and ZoneRed are the utilisations at which the zones start;
	// defaults 0.60, 0.75, 0.90. They must increase.
	ZoneYellow, ZoneOrange, ZoneRed float64
	// ZoneHysteresis is how far below a zone's threshold the worst input must fall to
	// leave it; default 0.05; 0 = no hysteresis; must be below ZoneYellow.
	ZoneHysteresis float64
	// ZoneMinDwell is how long a zone is held before stepping down; default 2s; 0 = none.
	ZoneMinDwell time.Duration
}

// DefaultConfig returns the effective defaults, spelled out: rates and the per-IP maximum
// unlimited, the seed's breaker (1% over 10 s, 100 requests, open 5 s, 5 probes),
// per-target breakers at 20 failures and 50%, zones at 0.60/0.75/0.90 with 0.05
// hysteresis and a 2 s dwell.
func DefaultConfig() Config {
	return Config{
		BreakerErrorRate:   DefaultBreakerErrorRate,
		BreakerWindow:      DefaultBreakerWindow,
		BreakerMinRequests: DefaultBreakerMinRequests,
		BreakerOpenFor:     DefaultBreakerOpenFor,
		BreakerProbes:      DefaultBreakerProbes,
		TargetErrorRate:    DefaultTargetErrorRate,
		TargetMinFailures:  DefaultTargetMinFailures,
		MaxTargets:         DefaultMaxTargets,
		ZoneYellow:         DefaultZoneYellow,
		ZoneOrange:         DefaultZoneOrange,
		ZoneRed:            DefaultZoneRed,
		ZoneHysteresis:     DefaultZoneHysteresis,
		ZoneMinDwell:       DefaultZoneMinDwell,
	}
}

// Validate returns every problem with c, joined with errors.Join; each wraps
// ErrInvalidConfig and names its field in kebab case. It applies no defaults: a 0 where
// 0 means nothing (a breaker window, a zone threshold) is an error.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, fmt.Sprintf(format, args...)))
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"conn-msg-rate", c.ConnMsgRate},
		{"conn-msg-burst", c.ConnMsgBurst},
		{"conn-byte-rate", c.ConnByteRate},
		{"conn-byte-burst", c.ConnByteBurst},
		{"node-msg-rate", c.NodeMsgRate},
		{"node-msg-burst", c.NodeMsgBurst},
		{"accept-rate", c.AcceptRate},
		{"accept-burst", c.AcceptBurst},
		{"max-conns-per-ip", c.MaxConnsPerIP},
		{"breaker-min-requests", c.BreakerMinRequests},
		{"breaker-probes", c.BreakerProbes},
		{"target-min-failures", c.TargetMinFailures},
		{"max-targets", c.MaxTargets},
	} {
		if f.v < 0 {
			bad(f.name, "must not be negative (got %d)", f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
		max  int64
	}{
		{"conn-msg-rate", int64(c.ConnMsgRate), MaxRate},
		{"conn-byte-rate", int64(c.ConnByteRate), MaxRate},
		{"node-msg-rate", int64(c.NodeMsgRate), MaxRate},
		{"accept-rate", int64(c.AcceptRate), MaxRate},
		{"conn-msg-burst", int64(c.ConnMsgBurst), MaxBurst},
		{"conn-byte-burst", int64(c.ConnByteBurst), MaxBurst},
		{"node-msg-burst", int64(c.NodeMsgBurst), MaxBurst},
		{"accept-burst", int64(c.AcceptBurst), MaxBurst},
	} {
		if f.v > f.max {
			bad(f.name, "must be at most %d (got %d)", f.max, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{
		{"breaker-min-requests", c.BreakerMinRequests},
		{"breaker-probes", c.BreakerProbes},
		{"target-min-failures", c.TargetMinFailures},
		{"max-targets", c.MaxTargets},
	} {
		if f.v == 0 {
			bad(f.name, "must be at least 1 (got 0)")
		}
	}
	for _, f := range []struct {
		name     string
		v        time.Duration
		positive bool
	}{
		{"breaker-window", c.BreakerWindow, true},
		{"breaker-open-for", c.BreakerOpenFor, true},
		{"zone-min-dwell", c.ZoneMinDwell, false},
	} {
		switch {
		case f.v < 0:
			bad(f.name, "must not be negative (got %v)", f.v)
		case f.v == 0 && f.positive:
			bad(f.name, "must be positive (got 0)")
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"breaker-error-rate", c.BreakerErrorRate},
		{"target-error-rate", c.TargetErrorRate},
	} {
		if !(f.v > 0 && f.v <= 1) {
			bad(f.name, "must be a fraction in (0, 1]; 1 never opens (got %v)", f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"zone-yellow", c.ZoneYellow},
		{"zone-orange", c.ZoneOrange},
		{"zone-red", c.ZoneRed},
	} {
		if !(f.v > 0) || f.v > maxInput {
			bad(f.name, "must be positive (got %v)", f.v)
		}
	}
	if !(c.ZoneYellow < c.ZoneOrange) {
		bad("zone-orange", "must be above zone-yellow (got %v <= %v)", c.ZoneOrange, c.ZoneYellow)
	}
	if !(c.ZoneOrange < c.ZoneRed) {
		bad("zone-red", "must be above zone-orange (got %v <= %v)", c.ZoneRed, c.ZoneOrange)
	}
	if !(c.ZoneHysteresis >= 0) || (c.ZoneYellow > 0 && !(c.ZoneHysteresis < c.ZoneYellow)) {
		bad("zone-hysteresis", "must be in [0, zone-yellow) (got %v)", c.ZoneHysteresis)
	}
	return errors.Join(errs...)
}

// ConnLimiters returns a fresh pair of per-connection buckets (messages/s, bytes/s).
func (c Config) ConnLimiters() (msgs, bytes TokenBucket) {
	return NewTokenBucket(c.ConnMsgRate, c.ConnMsgBurst), NewTokenBucket(c.ConnByteRate, c.ConnByteBurst)
}

// AcceptLimiter returns the acceptor's bucket (see NewAcceptLimiter).
func (c Config) AcceptLimiter() TokenBucket { return NewAcceptLimiter(c.AcceptRate, c.AcceptBurst) }

// NodeLimiter returns the node-wide limiter shared by loops event loops.
func (c Config) NodeLimiter(loops int) *SharedRate {
	return NewSharedRate(c.NodeMsgRate, c.NodeMsgBurst, loops)
}

// PerIP returns the per-address connection counter.
func (c Config) PerIP() *PerIP { return NewPerIP(c.MaxConnsPerIP) }

// BreakerConfig returns the node breaker's settings, taken from c as they are (c should
// have passed Validate).
func (c Config) BreakerConfig() BreakerConfig {
	return BreakerConfig{
		ErrorRate:   c.BreakerErrorRate,
		Window:      c.BreakerWindow,
		Buckets:     DefaultBreakerBuckets,
		MinRequests: c.BreakerMinRequests,
		MinFailures: 1,
		OpenFor:     c.BreakerOpenFor,
		Probes:      c.BreakerProbes,
	}
}

// TargetBreakerConfig returns the per-target breakers' settings: the node breaker's
// window, open period and probes with TargetErrorRate and TargetMinFailures.
func (c Config) TargetBreakerConfig() BreakerConfig {
	b := c.BreakerConfig()
	b.ErrorRate = c.TargetErrorRate
	b.MinRequests = c.TargetMinFailures
	b.MinFailures = c.TargetMinFailures
	return b
}

// Thresholds returns the zone settings, taken from c as they are.
func (c Config) Thresholds() Thresholds {
	return Thresholds{
		Yellow:     c.ZoneYellow,
		Orange:     c.ZoneOrange,
		Red:        c.ZoneRed,
		Hysteresis: c.ZoneHysteresis,
		MinDwell:   c.ZoneMinDwell,
	}
}
