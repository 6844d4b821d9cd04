package server

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// loop is switchboard's state for one gnet event loop. Everything but the fields marked
// otherwise is owned by that loop's goroutine.
type loop struct {
	srv    *Server               // immutable
	idx    uint8                 // immutable
	el     gnet.EventLoop        // immutable; Execute is its concurrency-safe door
	inbox  *shard.Ring[delivery] // many producers (other loops), consumed here
	armed  atomic.Bool           // a drain is scheduled; producers Execute one only on false→true
	tickAt atomic.Int64          // srv.clock() when OnTick scheduled the last tick; for loop lag

	conns *shard.Table[*conn]
	gates *gates // the conns' admission words; read by every loop (gate.go)
	// closers are the connections in a slow consumer's close (outbox.go, slowConsumer).
	closers []closer
	reqs    *shard.Table[pendingReq]
	dirty   []*outbox // outboxes with frames to flush (own answers at callback end, the rest at round end)
	scratch []byte    // reused encoding space for same-loop replies
	wheel   wheel
	// claims holds the REGISTERs waiting for a directory that decides elsewhere, by
	// connection; nil until the first one (a single node never fills it).
	claims map[shard.ConnID][]pendingClaim
	start  int64 // monotonic nanoseconds of tick 0 (srv.clock)

	drainRun gnet.Runnable // preallocated Execute targets
	tickRun  gnet.Runnable
	flushRun gnet.Runnable
	// flushQueued: a flushRun is queued on this loop (owned by the loop).
	flushQueued bool
	fireFn      func(timerEntry) // lp.fire, bound once so ticks do not allocate

	lease *limits.RateLease // this loop's share of the node rate; nil = unlimited

	stats loopStats
}

func newLoop(srv *Server, idx uint8, el gnet.EventLoop) *loop {
	lp := &loop{
		srv:   srv,
		idx:   idx,
		el:    el,
		inbox: shard.NewRing[delivery](srv.cfg.RingSize),
		conns: shard.NewTable[*conn](srv.cfg.NodeID, idx),
		gates: new(gates),
		reqs:  shard.NewTable[pendingReq](srv.cfg.NodeID, idx),
		wheel: newWheel(1024),
		start: srv.clock(),
	}
	lp.drainRun = gnet.RunnableFunc(func(context.Context) error { lp.drain(); return nil })
	lp.tickRun = gnet.RunnableFunc(func(context.Context) error { lp.tick(); return nil })
	lp.flushRun = gnet.RunnableFunc(func(context.Context) error {
		lp.flushQueued = false
		lp.flushDirty()
		return nil
	})
	lp.fireFn = lp.fire
	lp.setLease(srv.g.node.Load())
	return lp
}

// setLease takes this loop's share of the node rate (nil: unlimited). On the loop, or
// before it runs.
func (lp *loop) setLease(node *limits.SharedRate) {
	lp.lease = nil
	if node != nil && int(lp.idx) < node.Loops() {
		lp.lease = node.Lease(int(lp.idx))
	}
}

// tick32 is the low 32 bits of the loop's current tick, for per-connection timestamps: differences computed
// modulo 2^32 stay right for intervals below 2^32 ticks (over 49 days at 1 ms ticks).
func (lp *loop) tick32() uint32 { return uint32(lp.wheel.now) }

// clockTick is the low 32 bits of the tick the clock is at now. Timers fire while the wheel
// catches up with it (tick32 is then behind), so a stamp that other ticks compare with
// must come from here when it may be taken inside a timer.
func (lp *loop) clockTick() uint32 {
	return uint32((lp.srv.clock() - lp.start) / int64(lp.srv.cfg.TickInterval))
}

// ticks converts a duration to wheel ticks, rounding up.
func (lp *loop) ticks(d time.Duration) uint64 {
	iv := lp.srv.cfg.TickInterval
	return uint64((d + iv - 1) / iv)
}

// tick runs on the loop from OnTick: it advances the timer wheel to the current time.
func (lp *loop) tick() {
	lp.stats.lagNs.Store(lp.srv.clock() - lp.tickAt.Load())
	target := uint64((lp.srv.clock() - lp.start) / int64(lp.srv.cfg.TickInterval))
	lp.wheel.advanceTo(target, lp.fireFn)
	lp.flushDirty()
	if len(lp.closers) > 0 {
		lp.advanceClosers()
	}
}

func (lp *loop) fire(e timerEntry) {
	switch e.kind {
	case timerRequest:
		lp.finishRequest(e.id, codec.CodeTimeout)
	case timerHandshake:
		if c, ok := lp.conns.Get(e.id); ok && c.state == stateHandshake {
			lp.stats.handshakeTimeouts.Add(1)
			lp.closeWithError(c, codec.CodeHandshakeTimeout, "no HELLO in time")
		}
	case timerIdle:
		c, ok := lp.conns.Get(e.id)
		if !ok || c.state != stateActive {
			return
		}
		if !lp.expired(e, c.lastSeen, lp.srv.cfg.IdleTimeout) {
			return
		}
		lp.stats.idleTimeouts.Add(1)
		lp.closeWithError(c, codec.CodeTimeout, "idle timeout: nothing received")
	case timerSlow:
		c, ok := lp.conns.Get(e.id)
		if !ok || c.state != stateActive {
			return
		}
		if !c.stalled(e) {
			return
		}
		lp.slowConsumer(c)
	}
}

// expired reports whether limit has passed since the tick stamp; if not, it re-arms
// timer e for the rest, so a connection timer costs one wheel entry however often the
// connection is active.
func (lp *loop) expired(e timerEntry, stamp uint32, limit time.Duration) bool {
	n := lp.ticks(limit)
	if since := uint64(lp.tick32() - stamp); since < n {
		lp.wheel.add(n-since, e.kind, e.id)
		return false
	}
	return true
}
