package server

import (
	"sync/atomic"

	"github.com/switchboard/switchboard/codec"
)

// loopStats are one loop's counters. Only the owning loop adds to them (uncontended
// atomics on its own cache lines); any goroutine may read them.
type loopStats struct {
	framesByType [256]atomic.Uint64
	bytesIn      atomic.Uint64
	bytesOut     atomic.Uint64
	framesOut    atomic.Uint64 // loop.framesOut as of the loop's last write
	inflight     atomic.Int64  // requests of this loop awaiting an outcome
	pending      atomic.Int64  // messages queued in this loop's connections' outbound
	// outBytes is what gnet held for this loop's connections at the last tick that their
	// sockets had not taken (loop.outboundBytes).
	outBytes atomic.Int64
	// ringOut counts the bytes of the deliveries taken from this loop's ring (drainRing);
	// loop.ringIn those put in.
	ringOut           atomic.Int64
	rateLimitedConn   atomic.Uint64
	rateLimitedNode   atomic.Uint64
	shed              atomic.Uint64 // frames refused by zone shedding
	circuitOpen       atomic.Uint64
	lagNs             atomic.Int64 // last measured tick lag
	reqLatency        latencyHist
	accepted          atomic.Uint64
	closed            atomic.Uint64
	sent              atomic.Uint64 // SEND frames accepted for delivery
	requests          atomic.Uint64 // REQUESTs forwarded
	responses         atomic.Uint64 // RESPONSEs delivered
	dropped           atomic.Uint64 // deliveries whose target left before they arrived
	noRoute           atomic.Uint64
	queueFull         atomic.Uint64
	slowConsumers     atomic.Uint64
	reqTimeouts       atomic.Uint64
	staleReplies      atomic.Uint64
	handshakeTimeouts atomic.Uint64
	// handshakeTimeoutsDeferred: handshake timeouts put off to the next tick (hsClosesPerTick)
	handshakeTimeoutsDeferred atomic.Uint64
	idleTimeouts              atomic.Uint64
	creditPauses              atomic.Uint64 // connections paused for route credit (credit.go)
	creditOverruns            atomic.Uint64 // paused connections read anyway: input at creditInputMax
	creditResumesLost         atomic.Uint64 // resumes that found the owner's ring full
	unauthorized              atomic.Uint64
	badFrames                 atomic.Uint64
	errors                    [codec.MaxCode + 1]atomic.Uint64 // ERROR outcomes by code, sent or not
	_                         [64]byte
}

// Stats is a snapshot of a server's counters, summed over its loops. Counters only grow.
type Stats struct {
	Connections       int    // open now
	ConnectionsMax    int    // the effective cap
	Accepted          uint64 // connections handed to an event loop
	Refused           uint64 // connections refused at accept (BUSY / SHUTTING_DOWN)
	Closed            uint64
	FramesIn          uint64
	Sent              uint64
	Requests          uint64
	Responses         uint64
	Dropped           uint64
	NoRoute           uint64
	QueueFull         uint64
	SlowConsumers     uint64
	RequestTimeouts   uint64
	StaleReplies      uint64
	HandshakeTimeouts uint64
	// HandshakeTimeoutsDeferred counts handshake timeouts put off to a later tick because
	// the loop had closed hsClosesPerTick of them in this one.
	HandshakeTimeoutsDeferred uint64
	// RouteCreditPauses counts connections paused for route credit (credit.go);
	// RouteCreditOverruns, paused connections read anyway because creditInputMax bytes of
	// their input waited; RouteCreditResumesLost, resumes that found the sender's loop's
	// ring full (its next tick resumed it).
	RouteCreditPauses      uint64
	RouteCreditOverruns    uint64
	RouteCreditResumesLost uint64
	IdleTimeouts           uint64
	Unauthorized           uint64
	BadFrames              uint64
	AcceptErrors           uint64
	Names                  int
	Errors                 map[codec.ErrorCode]uint64 // by code; only codes seen
}

// Stats returns a snapshot of the counters. Safe for concurrent use.
func (s *Server) Stats() Stats {
	st := Stats{
		Connections:    int(s.connCount.Load()),
		ConnectionsMax: s.maxConns,
		Refused:        s.refused.Load(),
		AcceptErrors:   s.acceptErrors.Load(),
		Names:          s.dir.Len(),
		Errors:         map[codec.ErrorCode]uint64{},
	}
	s.eachLoop(func(lp *loop) {
		ls := &lp.stats
		st.Accepted += ls.accepted.Load()
		st.Closed += ls.closed.Load()
		for i := range ls.framesByType {
			st.FramesIn += ls.framesByType[i].Load()
		}
		st.Sent += ls.sent.Load()
		st.Requests += ls.requests.Load()
		st.Responses += ls.responses.Load()
		st.Dropped += ls.dropped.Load()
		st.NoRoute += ls.noRoute.Load()
		st.QueueFull += ls.queueFull.Load()
		st.SlowConsumers += ls.slowConsumers.Load()
		st.RequestTimeouts += ls.reqTimeouts.Load()
		st.StaleReplies += ls.staleReplies.Load()
		st.HandshakeTimeouts += ls.handshakeTimeouts.Load()
		st.HandshakeTimeoutsDeferred += ls.handshakeTimeoutsDeferred.Load()
		st.RouteCreditPauses += ls.creditPauses.Load()
		st.RouteCreditOverruns += ls.creditOverruns.Load()
		st.RouteCreditResumesLost += ls.creditResumesLost.Load()
		st.IdleTimeouts += ls.idleTimeouts.Load()
		st.Unauthorized += ls.unauthorized.Load()
		st.BadFrames += ls.badFrames.Load()
		for code := range ls.errors {
			if n := ls.errors[code].Load(); n > 0 {
				st.Errors[codec.ErrorCode(code)] += n
			}
		}
	})
	return st
}
