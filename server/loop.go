package server

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// deliveryKind says what a cross-loop delivery carries.
type deliveryKind uint8

const (
	// dFrame: buf holds complete frames for connection target. If target is gone and
	// token is set (an INCOMING), the request behind token fails with NO_ROUTE.
	dFrame deliveryKind = iota + 1
	// dResponse: buf holds a RESPONSE frame whose corr field is still 0, for the pending
	// request token. target/corr name the responder, told NO_ROUTE if token is stale.
	dResponse
	// dReqFail: the pending request token fails with code.
	dReqFail
)

// delivery is one item on a loop's inbound ring. It is a value type: pushing it does not
// allocate. buf, when set, is owned by whoever holds the delivery and goes back to
// bufPool once written.
type delivery struct {
	buf    *bytebufferpool.ByteBuffer
	target shard.ConnID
	token  shard.ConnID
	corr   uint32
	code   codec.ErrorCode
	kind   deliveryKind
}

// pendingReq is a REQUEST waiting for its outcome, kept on the requester's loop. Its
// table id is the reply token handed to the responder, so a reply goes straight to the
// requester's loop and a stale token fails the generation check.
type pendingReq struct {
	timer  timerHandle // cancelled when the request is answered
	from   shard.ConnID
	target shard.ConnID // for the per-target breaker
	start  int64        // srv.clock() when forwarded
	corr   uint32
}

// loop is switchboard's state for one gnet event loop. Everything but the fields marked
// otherwise is owned by that loop's goroutine.
type loop struct {
	srv    *Server               // immutable
	idx    uint8                 // immutable
	el     gnet.EventLoop        // immutable; Execute is its concurrency-safe door
	inbox  *shard.Ring[delivery] // many producers (other loops), consumed here
	armed  atomic.Bool           // a drain is scheduled; producers Execute one only on false→true
	tickAt atomic.Int64          // srv.clock() when OnTick scheduled the last tick; for loop lag

	conns   *shard.Table[*conn]
	reqs    *shard.Table[pendingReq]
	dirty   []*conn // connections with output to flush (own answers at callback end, the rest at round end)
	scratch []byte  // reused encoding space for same-loop replies
	wheel   wheel
	start   int64 // monotonic nanoseconds of tick 0 (srv.clock)

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

// push hands d to this loop from another loop. It never blocks: false means the ring is
// full (the caller answers QUEUE_FULL and keeps ownership of d.buf). Safe for concurrent use.
func (lp *loop) push(d delivery) bool {
	if !lp.inbox.Push(d) {
		return false
	}
	if lp.armed.CompareAndSwap(false, true) {
		if err := lp.el.Execute(context.Background(), lp.drainRun); err != nil {
			// The engine is shutting down; the item stays in the ring and is dropped
			// with the loop. Nothing to answer: every connection is closing.
			lp.armed.Store(false)
		}
	}
	return true
}

// drain runs on the loop: it empties the inbound ring in batches.
func (lp *loop) drain() {
	lp.armed.Store(false)
	// Bounded batch for fairness; if more remain, re-arm so sockets get a turn.
	lp.drainBatch(lp.inbox.Cap())
	if lp.inbox.Len() > 0 && lp.armed.CompareAndSwap(false, true) {
		if err := lp.el.Execute(context.Background(), lp.drainRun); err != nil {
			lp.armed.Store(false)
		}
	}
}

// drainBatch handles up to limit deliveries from the ring and writes their output.
func (lp *loop) drainBatch(limit int) {
	for i := 0; i < limit; i++ {
		d, ok := lp.inbox.Pop()
		if !ok {
			break
		}
		lp.handleDelivery(&d)
	}
	lp.flushDirty()
}

func (lp *loop) handleDelivery(d *delivery) {
	switch d.kind {
	case dFrame:
		if tc, code := lp.writable(d.target); tc != nil {
			tc.buf().B = append(tc.out.B, d.buf.B...)
			lp.addPending(tc)
		} else {
			lp.stats.dropped.Add(1)
			if d.token != 0 {
				lp.failRequest(d.token, code)
			}
		}
	case dResponse:
		lp.finishResponse(d.token, d.buf.B, d.target, d.corr)
	case dReqFail:
		lp.finishRequest(d.token, d.code)
	}
	if d.buf != nil {
		bufPool.Put(d.buf)
	}
}

// writable returns the active connection id if it can take one more message. A
// connection over its pending cap is a slow consumer: it is told SLOW_CONSUMER and
// closed, and the sender sees QUEUE_FULL.
func (lp *loop) writable(id shard.ConnID) (*conn, codec.ErrorCode) {
	c, ok := lp.conns.Get(id)
	if !ok || c.state != stateActive {
		return nil, codec.CodeNoRoute
	}
	if int(c.pending) >= lp.srv.cfg.MaxPending || c.outboundBytes() >= lp.srv.cfg.MaxPendingBytes {
		lp.stats.slowConsumers.Add(1)
		lp.closeWithError(c, codec.CodeSlowConsumer, "outbound queue over its cap: read faster")
		return nil, codec.CodeQueueFull
	}
	return c, 0
}

// failRequest ends pending request token with an ERROR, on whichever loop owns it. If that
// loop's ring is full the request's timer answers TIMEOUT instead: still one outcome.
func (lp *loop) failRequest(token shard.ConnID, code codec.ErrorCode) {
	if token.Loop() == int(lp.idx) {
		lp.finishRequest(token, code)
		return
	}
	if owner := lp.srv.loopAt(token.Loop()); owner != nil {
		owner.push(delivery{kind: dReqFail, token: token, code: code})
	}
}

// finishRequest ends a pending request of this loop with an ERROR; a stale token (already
// answered, timed out) is ignored.
func (lp *loop) finishRequest(token shard.ConnID, code codec.ErrorCode) {
	pr, ok := lp.reqs.Remove(token)
	if !ok {
		return
	}
	lp.wheel.cancel(pr.timer)
	lp.stats.inflight.Add(-1)
	lp.recordOutcome(pr.target, code)
	if code == codec.CodeTimeout {
		lp.stats.reqTimeouts.Add(1)
	}
	if c, ok := lp.conns.Get(pr.from); ok {
		c.inflight--
		if c.state == stateActive {
			lp.sendError(c, pr.corr, code, 0, requestFailReason(code))
		}
	}
}

// finishResponse ends a pending request of this loop with the RESPONSE frame resp (whose
// corr field is patched here). A stale token means the request already had its outcome;
// the responder is told NO_ROUTE if it asked (rcorr != 0).
func (lp *loop) finishResponse(token shard.ConnID, resp []byte, responder shard.ConnID, rcorr uint32) {
	pr, ok := lp.reqs.Remove(token)
	if !ok {
		lp.stats.staleReplies.Add(1)
		if rcorr != 0 {
			lp.errorTo(responder, rcorr, codec.CodeNoRoute, "reply token unknown or expired")
		}
		return
	}
	lp.wheel.cancel(pr.timer)
	lp.stats.inflight.Add(-1)
	lp.recordOutcome(pr.target, 0)
	lp.stats.reqLatency.observe(time.Duration(lp.srv.clock() - pr.start))
	c, ok := lp.conns.Get(pr.from)
	if !ok {
		return // requester left; nobody to tell
	}
	c.inflight--
	if c.state != stateActive {
		return
	}
	b := c.buf()
	start := len(b.B)
	b.B = append(b.B, resp...)
	binary.BigEndian.PutUint32(b.B[start+6:], pr.corr)
	lp.stats.responses.Add(1)
}

// errorTo sends an ERROR to connection id wherever it lives; best effort.
func (lp *loop) errorTo(id shard.ConnID, corr uint32, code codec.ErrorCode, reason string) {
	if id.Loop() == int(lp.idx) {
		if c, ok := lp.conns.Get(id); ok && c.state == stateActive {
			lp.sendError(c, corr, code, 0, reason)
		}
		return
	}
	owner := lp.srv.loopAt(id.Loop())
	if owner == nil {
		return
	}
	bb := bufPool.Get()
	bb.B = codec.AppendError(bb.B[:0], corr, codec.ErrorBody{Code: code, Reason: reason})
	if !owner.push(delivery{kind: dFrame, target: id, buf: bb}) {
		bufPool.Put(bb)
	}
}

// flushLater queues one flush of the dirty connections behind the events gnet is
// handling in this poll round (gnet runs queued tasks after the round's I/O events).
func (lp *loop) flushLater() {
	// Entries flushed directly (a connection's own answers) are no longer dirty; drop
	// them from the end so that a callback that only answered its own peer queues nothing.
	for n := len(lp.dirty); n > 0 && !lp.dirty[n-1].dirty; n-- {
		lp.dirty[n-1] = nil
		lp.dirty = lp.dirty[:n-1]
	}
	if len(lp.dirty) == 0 || lp.flushQueued {
		return
	}
	lp.flushQueued = true
	if err := lp.el.Execute(lp.srv.baseCtx, lp.flushRun); err != nil {
		lp.flushQueued = false
		lp.flushDirty() // engine stopping: write now
	}
}

// flushDirty writes the output collected during this callback, one write per connection.
func (lp *loop) flushDirty() {
	for i := 0; i < len(lp.dirty); i++ {
		c := lp.dirty[i]
		lp.dirty[i] = nil
		c.flush()
	}
	lp.dirty = lp.dirty[:0]
}

// tick32 is the low 32 bits of the loop's current tick, for per-connection timestamps: differences computed
// modulo 2^32 stay right for intervals below 2^32 ticks (over 49 days at 1 ms ticks).
func (lp *loop) tick32() uint32 { return uint32(lp.wheel.now) }

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
		if c.gc.OutboundBuffered() == 0 {
			c.slowArmed = false
			c.lastEmpty = lp.tick32()
			return
		}
		if !lp.expired(e, c.lastEmpty, lp.srv.cfg.SlowConsumerTimeout) {
			return
		}
		lp.stats.slowConsumers.Add(1)
		lp.closeWithError(c, codec.CodeSlowConsumer, "outbound data not drained in time")
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

// addPending counts one more message queued for c.
func (lp *loop) addPending(c *conn) {
	c.pending++
	lp.stats.pending.Add(1)
}
