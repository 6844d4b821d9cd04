package server

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// guards holds the overload-protection state shared by the loops and the acceptor.
type guards struct {
	// rates holds the reloadable limits in force (tiers 1-3 and max-queue); ReloadLimits
	// replaces it. Read by the acceptor (new connections' buckets) and the sampler.
	rates atomic.Pointer[rateLimits]
	// acceptNext hands a reloaded accept bucket to the acceptor, which owns accept.
	acceptNext atomic.Pointer[limits.TokenBucket]
	perIP      *limits.PerIP // always counts, so that ReloadLimits can set a maximum
	// node is the node rate; loops hold leases on it (nil = unlimited). Written by
	// ReloadLimits, read by it and newLoop.
	node    atomic.Pointer[limits.SharedRate]
	breaker *limits.Breaker        // safe for concurrent use
	targets *limits.TargetBreakers // safe for concurrent use
	// zone is the node zone, from all five inputs: it feeds alerts, /zone, /capacity and
	// metrics, and decides nothing by itself. Updated by the sampler.
	zone *limits.ZoneTracker
	// traffic is the zone of the load inputs alone (queued, heap, loop lag): it decides
	// shedding on existing connections. The connection ratio is left out because the
	// connection cap already refuses at the cap (a full but healthy node keeps admitting
	// up to it), and the error rate because the breakers act on it (CIRCUIT_OPEN) where it
	// arises. Updated by the sampler.
	traffic *limits.ZoneTracker
	// admission is the traffic zone without loop lag (queued, heap): its RED refuses new
	// connections and turns /readyz 503. Loop lag only paces the acceptor (accept.go):
	// an accept storm makes the loops lag, and refusing the storm would turn away
	// connections the node can hold. Updated by the sampler.
	admission *limits.ZoneTracker
	// samples counts completed sampler runs; tests wait on it instead of on the clock.
	samples atomic.Uint64
	accept  limits.TokenBucket // owned by the acceptor goroutine
	// rated is true when any per-frame rate limit is on; only then is the clock read per
	// read callback. Atomic: ReloadLimits changes it.
	rated atomic.Bool
	// queued is the node-wide queued-message sample (rings + outbound), refreshed each
	// tick by the sampler; atomic.
	queued atomic.Int64
	// queuedBytes is the bytes of those messages (sampler: rings + what gnet holds).
	queuedBytes atomic.Int64
	// full: queued or queuedBytes was at its bound (max-queue, max-queue-bytes) at the last
	// sample; senders get QUEUE_FULL (queueFull).
	full atomic.Bool

	zoneEntered [4]atomic.Uint64 // transitions into each zone
	heapSample  memSample        // the sampler's
	idle        idleGC
}

// rateLimits are the limits ReloadLimits can change at run time.
type rateLimits struct {
	cfg           limits.Config
	maxQueue      int
	maxQueueBytes int
}

func (s *Server) initGuards() {
	c := s.cfg.Config
	g := &s.g
	g.rates.Store(&rateLimits{cfg: c, maxQueue: s.cfg.MaxQueue, maxQueueBytes: s.cfg.MaxQueueBytes})
	g.perIP = limits.NewPerIPCounter(c.MaxConnsPerIP)
	if c.NodeMsgRate > 0 {
		g.node.Store(c.NodeLimiter(s.cfg.Loops))
	}
	g.breaker = limits.NewBreaker(c.BreakerConfig())
	g.targets = limits.NewTargetBreakers(c.TargetBreakerConfig(), c.MaxTargets)
	g.zone = limits.NewZoneTracker(c.Thresholds())
	g.traffic = limits.NewZoneTracker(c.Thresholds())
	g.admission = limits.NewZoneTracker(c.Thresholds())
	g.accept = c.AcceptLimiter()
	s.acceptTokens.Store(-1) // /capacity: unlimited, or the full burst until the first accept
	if !g.accept.Unlimited() {
		s.acceptTokens.Store(int64(g.accept.Tokens(s.clock())))
	}
	g.rated.Store(c.ConnMsgRate > 0 || c.ConnByteRate > 0 || c.NodeMsgRate > 0)
	g.heapSample = newMemSample()
}

// connLimits are one connection's tier-2 buckets, allocated only when a per-connection
// rate is configured. Owned by the connection's loop.
type connLimits struct {
	msgs, bytes limits.TokenBucket
}

func (s *Server) newConnLimits() *connLimits {
	c := &s.g.rates.Load().cfg
	if c.ConnMsgRate == 0 && c.ConnByteRate == 0 {
		return nil
	}
	m, b := c.ConnLimiters()
	return &connLimits{msgs: m, bytes: b}
}

// maxQueue is the node-wide queue bound in force.
func (s *Server) maxQueue() int { return s.g.rates.Load().maxQueue }

// maxQueueBytes is the node-wide queue bound in bytes in force.
func (s *Server) maxQueueBytes() int { return s.g.rates.Load().maxQueueBytes }

// queueFull reports whether the node-wide queue was at max-queue messages or
// max-queue-bytes bytes at the last sample: new messages are refused QUEUE_FULL.
func (s *Server) queueFull() bool { return s.g.full.Load() }

// controlFrame reports frames that are never rate-limited or shed: they keep connections
// alive or complete work already admitted.
func controlFrame(t codec.Type) bool {
	switch t {
	case codec.TypeHello, codec.TypePing, codec.TypeReply, codec.TypeGoodbye:
		return true
	}
	return false
}

// lowPriority frames are shed first (ORANGE): diagnostics and one-way messages nobody
// waits for.
func lowPriority(f codec.Frame) bool {
	return f.Type == codec.TypeEcho || f.Type == codec.TypeSend && f.Corr == 0
}

// shedReasons are the reasons of a shed frame's ERROR BUSY, by traffic zone: made once, so
// that a node shedding hundreds of thousands of frames a second does not allocate a
// reason for each.
var shedReasons = func() (r [4]string) {
	for z := range r {
		r[z] = "node overloaded (zone " + limits.Zone(z).String() + "): retry later"
	}
	return r
}()

// admit applies zone shedding (RED: all but control; ORANGE: low priority), tier 2 (this
// connection's message and byte buckets) and tier 3 (the node rate, through this loop's
// lease) to a non-control frame. A refused frame that wanted an answer (corr != 0 — every
// REQUEST) gets ERROR with retry-after; a one-way frame is dropped and counted, because
// the client asked for no answer and pausing the socket would let gnet buffer without
// bound. It returns false when the frame was refused.
func (lp *loop) admit(c *conn, f codec.Frame, now int64) bool {
	g := &lp.srv.g
	if z := g.traffic.Current(); z.ShedsAllButControl() || z.ShedsLowPriority() && lowPriority(f) {
		lp.stats.shed.Add(1)
		lp.refuseFrame(c, f, codec.CodeBusy, time.Second, shedReasons[z&3])
		return false
	}
	if !g.rated.Load() {
		return true
	}
	if l := c.lim; l != nil {
		if !l.msgs.Allow(now, 1) {
			lp.stats.rateLimitedConn.Add(1)
			lp.refuseFrame(c, f, codec.CodeRateLimited, l.msgs.RetryAfter(now, 1), "connection message rate exceeded")
			return false
		}
		if n := codec.HeaderLen + len(f.Body); !l.bytes.Allow(now, n) {
			lp.stats.rateLimitedConn.Add(1)
			lp.refuseFrame(c, f, codec.CodeRateLimited, l.bytes.RetryAfter(now, n), "connection byte rate exceeded")
			return false
		}
	}
	if lp.lease != nil && !lp.lease.Allow(now) {
		lp.stats.rateLimitedNode.Add(1)
		lp.refuseFrame(c, f, codec.CodeRateLimited, lp.lease.RetryAfter(now), "node message rate exceeded")
		return false
	}
	return true
}

func (lp *loop) refuseFrame(c *conn, f codec.Frame, code codec.ErrorCode, retry time.Duration, reason string) {
	if f.Corr == 0 {
		lp.stats.errors[code].Add(1) // counted; nobody asked for an answer
		return
	}
	b := c.buf()
	b.B = codec.AppendError(b.B, f.Corr, codec.ErrorBody{Code: code, RetryAfterMs: millis(retry), Reason: reason})
	lp.stats.errors[code].Add(1)
}

func millis(d time.Duration) uint32 {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms < 0 {
		return 0
	}
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(ms)
}

// allowRequest applies tier 4: the node breaker and the target's breaker.
func (lp *loop) allowRequest(target shard.ConnID, now int64) (codec.ErrorCode, time.Duration, string) {
	g := &lp.srv.g
	if ok, retry := g.breaker.Allow(now); !ok {
		lp.stats.circuitOpen.Add(1)
		return codec.CodeCircuitOpen, retry, "node circuit breaker open: requests are failing"
	}
	if ok, retry := g.targets.Allow(uint64(target), now); !ok {
		lp.stats.circuitOpen.Add(1)
		return codec.CodeCircuitOpen, retry, "target keeps failing: circuit open"
	}
	return 0, 0, ""
}

// recordOutcome feeds a request's outcome to the breakers. Failures are what the server
// or the target caused (timeouts, full queues, responder gone), not the caller's mistakes.
//
// A failure that the target's breaker accounts for is counted there only: that breaker
// isolates the failing name (CIRCUIT_OPEN for it alone), and counting the same failure
// in the node breaker, whose threshold is far lower (1% against 50%), would let one
// responder that never answers open the node breaker, and drive the error-rate zone
// input, for every client. The node breaker counts every success and the failures no
// target breaker explains (per-target breakers off, or more failing targets than
// max-targets). now is srv.clock() at the outcome.
func (lp *loop) recordOutcome(target shard.ConnID, code codec.ErrorCode, now int64) {
	g := &lp.srv.g
	// FRAME_TOO_LARGE says the two nodes' max frames differ, nothing of the target's health.
	ok := code == 0 || code == codec.CodeFrameTooLarge
	if explained := g.targets.Record(uint64(target), now, ok); !explained {
		g.breaker.Record(now, ok)
	}
}
