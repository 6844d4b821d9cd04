package server

import (
	"context"
	crand "crypto/rand"
	"math/rand/v2"
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
	// ringIn counts the bytes of the deliveries put in inbox (push, and wakeOwners for
	// pushLater's); written by the pushers, against stats.ringOut (ringBytes).
	ringIn atomic.Int64

	conns *shard.Table[*conn]
	gates *gates // the conns' admission words; read by every loop (gate.go)
	// closers are the connections in a slow consumer's close (outbox.go, slowConsumer).
	closers []closer
	reqs    *shard.Table[pendingReq]
	dirty   []*outbox // outboxes with frames to flush (own answers at callback end, the rest at round end)
	// held is the spare of dirty that flushRound fills with the outboxes it lets wait a
	// round (write coalescing), then swaps in; roundWork counts the read callbacks and
	// ring drains since the last end-of-round flush.
	held      []*outbox
	roundWork int
	// roundEnd is when the last end-of-round flush finished (srv.clock nanoseconds, from
	// roundClock, which tests replace); roundQuick: this round's work began within
	// coalesceGap of roundEnd (countWork). Only while write coalescing is on.
	roundEnd   int64
	roundQuick bool
	roundClock func() int64
	// heldTimer flushes what waits if no round comes first.
	heldTimer loopTimer
	out       outFree // free output buffers (outbox.frames)
	// backlogs holds the mark of each connection whose socket had not taken all its
	// output when last seen (outbox.backlogged); backlogPeak is the most it has held since
	// it was made (trimBacklogs).
	backlogs    map[shard.ConnID]backlog
	backlogPeak int
	// wakes are the loops pushLater handed deliveries to during this callback, woken by
	// wakeOwners at its end; wakeSet has their bits (by loop index).
	wakes   []*loop
	wakeSet [4]uint64
	// wakeBytes are the bytes pushLater handed each loop (by index) during this callback,
	// added to its ringIn by wakeOwners: one atomic add per target loop and callback.
	wakeBytes [256]int64
	trimAt    int64  // srv.clock() of out's last trim
	scratch   []byte // reused encoding space for same-loop replies
	wheel     wheel
	// timers holds each connection's own timer, by table slot (conntimer.go).
	timers connTimers
	// framesOut counts frames appended to outboxes; a plain counter, so that the frame
	// path pays no atomic for it, published to stats.framesOut before every write
	// (outbox.flush), so a frame a peer has read is already counted.
	framesOut uint64
	rng       *rand.ChaCha8 // the random bits of reply tokens; seeded from crypto/rand
	// claims holds the REGISTERs waiting for a directory that decides elsewhere, by
	// connection; nil until the first one (a single node never fills it).
	claims map[shard.ConnID][]pendingClaim
	// remoteIncoming counts, by connection, the INCOMINGs from other nodes' requesters it
	// was given and has not answered: a REPLY whose token names another node is forwarded
	// there only while its connection has one (remote.go); nil until the first one.
	remoteIncoming map[shard.ConnID]uint32
	// paused lists the connections paused for route credit since the last tick (credit.go);
	// pausedSpare is the other of the two slices resumeLost alternates.
	paused, pausedSpare []shard.ConnID
	refunds             refunds // landed messages not yet given back to their senders' credit
	start               int64   // monotonic nanoseconds of tick 0 (srv.clock)

	drainRun gnet.Runnable // preallocated Execute targets
	tickRun  gnet.Runnable
	flushRun gnet.Runnable
	// flushQueued: a flushRun is queued on this loop (owned by the loop).
	flushQueued bool
	fireFn      func(timerEntry) // lp.fire, bound once so ticks do not allocate
	fireConnFn  func(uint32)     // lp.fireConn, likewise
	// hsCloses counts the handshake timeouts closed during this tick (advance), against
	// hsClosesPerTick.
	hsCloses int
	// hsDue are the connections whose handshake timeout came due in this tick past its
	// first hsCloseChunk, closed hsCloseChunk at a time by hsTimer's task, hsCloseGap
	// apart (hsclose.go).
	hsDue   []shard.ConnID
	hsTimer loopTimer

	lease *limits.RateLease // this loop's share of the node rate; nil = unlimited

	stats loopStats
}

func newLoop(srv *Server, idx uint8, el gnet.EventLoop) *loop {
	lp := &loop{
		srv:      srv,
		idx:      idx,
		el:       el,
		inbox:    shard.NewRing[delivery](srv.cfg.RingSize),
		conns:    shard.NewTable[*conn](srv.cfg.NodeID, idx),
		gates:    new(gates),
		reqs:     shard.NewTable[pendingReq](srv.cfg.NodeID, idx),
		wheel:    newWheel(1024),
		timers:   newConnTimers(1024),
		backlogs: make(map[shard.ConnID]backlog),
		start:    srv.clock(),
		rng:      newTokenRand(),
	}
	lp.drainRun = gnet.RunnableFunc(func(context.Context) error { lp.drain(); return nil })
	lp.tickRun = gnet.RunnableFunc(func(context.Context) error { lp.tick(); return nil })
	lp.flushRun = gnet.RunnableFunc(func(context.Context) error {
		lp.flushQueued = false
		lp.flushRound()
		return nil
	})
	lp.roundClock = srv.clock
	lp.heldTimer.init(lp, lp.flushDirty)
	lp.hsTimer.init(lp, lp.closeDueHandshakes)
	lp.fireFn = lp.fire
	lp.fireConnFn = lp.fireConn
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

// tick32 is a per-connection timestamp for "now": the low 32 bits of the first tick
// boundary at or after the real clock (not the wheel's tick, which is behind the clock by
// up to a tick, more when the loop is busy). A timer that expires n ticks after such a
// stamp (expired) therefore never expires less than n ticks of real time after now.
// Differences computed modulo 2^32 stay right for intervals below 2^31 ticks (over 24
// days at 1 ms ticks).
func (lp *loop) tick32() uint32 { return uint32(lp.tickCeil(lp.srv.clock())) }

// tickCeil is the first tick boundary at or after t (srv.clock nanoseconds). Tick k is
// reached (the wheel advanced to it) only once the clock has passed lp.start + k ticks.
func (lp *loop) tickCeil(t int64) uint64 {
	iv := int64(lp.srv.cfg.TickInterval)
	return uint64(max(0, (t-lp.start+iv-1)/iv))
}

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

// after returns the ticks from the wheel's current tick after which a timer for d, armed
// at now (srv.clock), must fire so that it never fires before now+d: counting d's ticks
// from the wheel's tick would fire up to a tick early (a REQUEST timeout of 100 ms
// answered at 65 ms with 50 ms ticks), because the wheel's tick began before now. It
// fires at most a tick late, plus the loop's lag.
func (lp *loop) after(now int64, d time.Duration) uint64 {
	at := lp.tickCeil(now + int64(d))
	if at <= lp.wheel.now {
		return 1
	}
	return at - lp.wheel.now
}

// tick runs on the loop from OnTick: it advances the timer wheel to the current time.
func (lp *loop) tick() {
	lp.stats.lagNs.Store(lp.srv.clock() - lp.tickAt.Load())
	lp.advance(uint64((lp.srv.clock() - lp.start) / int64(lp.srv.cfg.TickInterval)))
	lp.flushDirty()
	lp.stats.outBytes.Store(lp.outboundBytes())
	lp.resumeLost()
	if len(lp.closers) > 0 {
		lp.advanceClosers()
	}
	if now := lp.srv.clock(); now-lp.trimAt >= int64(outTrimInterval) {
		lp.trimAt = now
		lp.out.trim()
		lp.trimBacklogs()
	}
}

// outboundBytes is what gnet holds for this loop's connections that their sockets have
// not taken: those with a backlog (a connection whose gnet buffer was last seen empty has
// none). On the loop, after a flush.
func (lp *loop) outboundBytes() int64 {
	var n int64
	for id := range lp.backlogs {
		if c, ok := lp.conns.Get(id); ok && c.gc != nil {
			n += int64(c.gc.OutboundBuffered())
		}
	}
	return n
}

// ringBytes is the bytes of the deliveries waiting in this loop's ring, as far as the
// counts say: pushLater's are counted at the end of the pusher's callback, so the
// difference can briefly be low (never below 0). Safe for concurrent use.
func (lp *loop) ringBytes() int64 {
	out := lp.stats.ringOut.Load()
	return max(0, lp.ringIn.Load()-out)
}

// backlogsKeep is the size of the backlogs map kept however long it stays empty.
const backlogsKeep = 1024

// trimBacklogs gives back the memory of the backlogs map once a wave of backlogged
// connections has passed (a Go map keeps its size when emptied): an empty map that held
// more than backlogsKeep marks is made anew.
func (lp *loop) trimBacklogs() {
	if len(lp.backlogs) == 0 && lp.backlogPeak > backlogsKeep {
		lp.backlogs = make(map[shard.ConnID]backlog)
		lp.backlogPeak = 0
	}
}

// advance moves both timer wheels to tick target, firing what expired, with a fresh budget
// of handshake-timeout closes.
func (lp *loop) advance(target uint64) {
	lp.hsCloses = 0
	lp.wheel.advanceTo(target, lp.fireFn)
	lp.timers.advanceTo(target, lp.fireConnFn)
	lp.armHandshakeCloses()
}

// hsClosesPerTick bounds the handshake timeouts one loop closes per tick. A flood of silent
// connections accepted in one burst times out in one tick: closing them all at once (each
// an ERROR write and a close; ~1,000 per loop) took the connected clients' p99 to 15-18 ms
// in that second (docs/BENCHMARKS.md, handshake flood). The rest wait for the next ticks, so a handshake
// timeout can fire late by a few ticks while such a wave lasts (64 per 50 ms tick is
// ~1,300 a second per loop, above the acceptor's spacing of max-handshakes per
// handshake-timeout, so only waves wait), never early. A tick's share is itself closed
// in chunks (hsCloseChunk, hsclose.go).
const hsClosesPerTick = 64

// outTrimInterval: output buffers not taken for this long are released (outFree.trim).
const outTrimInterval = time.Second

func (lp *loop) fire(e timerEntry) {
	switch e.kind {
	case timerRequest:
		lp.finishRequest(e.id, codec.CodeTimeout)
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

// fireConn runs a connection's own timer (connTimers), that of table slot i: until
// WELCOME its handshake timeout, then its idle timeout.
func (lp *loop) fireConn(i uint32) {
	_, c, ok := lp.conns.At(i)
	if !ok {
		return
	}
	switch c.state {
	case stateHandshake, stateVerifying:
		if lp.hsCloses >= hsClosesPerTick {
			lp.timers.set(i, lp.timers.now+1) // next tick: late, not early
			lp.stats.handshakeTimeoutsDeferred.Add(1)
			return
		}
		lp.hsCloses++
		if lp.hsCloses > hsCloseChunk {
			lp.hsDue = append(lp.hsDue, c.id) // closed in this tick, between poll rounds
			return
		}
		lp.closeHandshakeTimeout(c)
	case stateActive:
		// Nothing received for the idle timeout since lastSeen (a tick32 stamp)? If not,
		// the timer is set again for the rest, so a connection's timer is moved only when
		// it comes due, however often the connection is active. The stamp may be ahead of
		// the wheel's tick (tick32 rounds up), hence the signed difference.
		at := c.lastSeen + uint32(lp.ticks(lp.srv.cfg.IdleTimeout))
		if d := int32(at - uint32(lp.timers.now)); d > 0 {
			lp.timers.set(i, lp.timers.now+uint64(d))
			return
		}
		lp.stats.idleTimeouts.Add(1)
		lp.closeWithError(c, codec.CodeTimeout, "idle timeout: nothing received")
	}
}

// expired reports whether limit has passed since stamp (a tick32 value); if not, it
// re-arms timer e for the rest, so a slow-consumer timer costs one wheel entry however
// often the outbound side drains. It runs from the wheel, whose current tick the clock
// has passed; a stamp may be ahead of it (tick32 rounds up), hence the signed difference.
func (lp *loop) expired(e timerEntry, stamp uint32, limit time.Duration) bool {
	n := int64(lp.ticks(limit))
	if since := int64(int32(uint32(lp.wheel.now) - stamp)); since < n {
		lp.wheel.add(uint64(n-since), e.kind, e.id)
		return false
	}
	return true
}

// newTokenRand returns a generator seeded from the operating system's randomness, so that
// reply tokens cannot be predicted from outside.
func newTokenRand() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails on Linux (it panics inside otherwise)
	return rand.NewChaCha8(seed)
}
