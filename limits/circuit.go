package limits

import "time"

// circuit is the closed / open / half-open state machine of one breaker, shared by the
// node Breaker and every TargetBreakers entry so that the half-open rules are written
// once. The error window that opens it lives beside it (window); circuit only changes
// state.
//
// Concurrency: not safe for concurrent use; its owner guards it (Breaker.mu, a target
// shard's mu). The methods take the owner's settings so that a circuit stays five words.
type circuit struct {
	state      BreakerState
	openUntil  int64 // end of the open period, ns
	probes     int   // probes admitted in the current half-open round
	successes  int   // consecutive probe successes
	roundStart int64 // start of the current half-open round, ns
}

// allow reports whether a request may proceed at now, moving an open circuit whose period
// has ended to half-open. Semantics are Breaker.Allow's; width is the window's bucket
// width, the longest retry-after a half-open refusal asks for.
func (c *circuit) allow(cfg *BreakerConfig, width, now int64) (bool, time.Duration) {
	switch c.state {
	case BreakerClosed:
		return true, 0
	case BreakerOpen:
		if now < c.openUntil {
			return false, time.Duration(c.openUntil - now)
		}
		c.state = BreakerHalfOpen
		c.probes, c.successes, c.roundStart = 0, 0, now
	}
	// Half-open. A round that has waited OpenFor without settling has lost probe results
	// (a caller that never called Record); free the slots of the missing ones.
	openFor := int64(cfg.OpenFor)
	if now-c.roundStart >= openFor {
		c.probes, c.roundStart = c.successes, now
	}
	if c.probes < cfg.Probes {
		c.probes++
		return true, 0
	}
	return false, time.Duration(max(1, min(width, c.roundStart+openFor-now)))
}

// stateAt is the state at now: an open circuit whose period has ended is half-open, as
// the next allow will find it.
func (c *circuit) stateAt(now int64) BreakerState {
	if c.state == BreakerOpen && now >= c.openUntil {
		return BreakerHalfOpen
	}
	return c.state
}

// open opens the circuit at now for cfg.OpenFor.
func (c *circuit) open(cfg *BreakerConfig, now int64) {
	c.state, c.openUntil = BreakerOpen, now+int64(cfg.OpenFor)
}

// settle applies a probe's outcome while half-open: a failure reopens the circuit, the
// Probes-th consecutive success closes it. It reports whether the circuit closed (the
// owner then empties its window). The caller checks that the state is half-open.
func (c *circuit) settle(cfg *BreakerConfig, now int64, success bool) (closed bool) {
	if !success {
		c.open(cfg, now)
		return false
	}
	c.successes++
	if c.successes >= cfg.Probes {
		c.state = BreakerClosed
		return true
	}
	return false
}
