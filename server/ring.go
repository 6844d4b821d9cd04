package server

import (
	"context"

	"github.com/valyala/bytebufferpool"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// deliveryKind says what a cross-loop delivery carries.
type deliveryKind uint8

const (
	// dMessage: buf holds a MESSAGE or INCOMING for connection target that target's gate
	// admitted (route). It is queued even past target's caps; only a target that is gone
	// or closing loses it (counted as dropped), and if token is set (an INCOMING) the
	// request behind token fails with NO_ROUTE.
	dMessage deliveryKind = iota + 1
	// dFrame: buf holds an answer (an ERROR) for connection target, written if target is
	// still active; not counted against its caps.
	dFrame
	// dResponse: buf holds a RESPONSE frame whose corr field is still 0, for the pending
	// request token. target/corr name the responder, told NO_ROUTE if token is stale.
	dResponse
	// dReqFail: the pending request token fails with code.
	dReqFail
	// dClaim: the directory decided a pending claim of the name in buf for connection
	// target (code 0: owned, otherwise the ERROR code).
	dClaim
	// dOutcome: another node's outcome (code, 0 = OK) for the pending REQUEST or
	// SEND+ACK behind token (remote.go).
	dOutcome
	// dResume: connection target, paused for route credit, has its credit back (credit.go).
	dResume
)

// delivery is one item on a loop's inbound ring. It is a value type: pushing it does not
// allocate. buf, when set, is owned by whoever holds the delivery and goes back to
// msgPool once written.
type delivery struct {
	buf    *bytebufferpool.ByteBuffer
	target shard.ConnID
	token  shard.ConnID
	from   shard.ConnID // dMessage: the sender, whose route credit it spent (0: none)
	corr   uint32
	code   codec.ErrorCode
	kind   deliveryKind
}

// bytes is the size of what d carries, counted in the ring's bytes (loop.ringBytes).
func (d *delivery) bytes() int64 {
	if d.buf == nil {
		return 0
	}
	return int64(len(d.buf.B))
}

// push hands d to this loop from another loop. It never blocks: false means the ring is
// full (the caller answers QUEUE_FULL and keeps ownership of d.buf). Safe for concurrent use.
func (lp *loop) push(d delivery) bool {
	n := d.bytes() // before the push: from then on the delivery is the owner's
	if !lp.inbox.Push(d) {
		return false
	}
	if n != 0 {
		lp.ringIn.Add(n)
	}
	lp.wake()
	return true
}

// pushLater is push with the wake-up deferred to the end of the caller's callback
// (from.wakeOwners): a callback that routes many messages to one loop wakes it once, and
// the target loop finds them all in its ring rather than draining them one by one while
// they arrive. Only for pushes made while dispatching frames (OnTraffic calls wakeOwners
// after the frames). Runs on loop from; this loop's ring is safe for concurrent use.
func (lp *loop) pushLater(from *loop, d delivery) bool {
	n := d.bytes() // before the push, as in push
	if !lp.inbox.Push(d) {
		return false
	}
	from.wakeBytes[lp.idx] += n
	w, bit := lp.idx>>6, uint64(1)<<(lp.idx&63)
	if from.wakeSet[w]&bit == 0 {
		from.wakeSet[w] |= bit
		from.wakes = append(from.wakes, lp)
	}
	return true
}

// wakeOwners schedules a drain on every loop pushLater handed deliveries to since the
// last call. On the loop.
func (lp *loop) wakeOwners() {
	if len(lp.wakes) == 0 {
		return
	}
	for i, owner := range lp.wakes {
		lp.wakes[i] = nil
		if n := lp.wakeBytes[owner.idx]; n != 0 {
			owner.ringIn.Add(n)
			lp.wakeBytes[owner.idx] = 0
		}
		owner.wake()
	}
	lp.wakes = lp.wakes[:0]
	lp.wakeSet = [4]uint64{}
}

// wake schedules a drain of this loop's ring unless one is scheduled already. Safe for
// concurrent use.
func (lp *loop) wake() {
	if lp.armed.CompareAndSwap(false, true) {
		if err := lp.el.Execute(context.Background(), lp.drainRun); err != nil {
			// The engine is shutting down; the items stay in the ring and are dropped
			// with the loop. Nothing to answer: every connection is closing.
			lp.armed.Store(false)
		}
	}
}

// drain runs on the loop: it empties the inbound ring in batches. What the deliveries
// produce is written with the rest of the round's output (flushLater), so a connection
// that gets messages from its own loop and from others in one round gets one write.
func (lp *loop) drain() {
	lp.armed.Store(false)
	lp.countWork()
	// Bounded batch for fairness; if more remain, re-arm so sockets get a turn.
	lp.drainRing(lp.inbox.Cap())
	lp.flushLater()
	if lp.inbox.Len() > 0 {
		lp.wake()
	}
}

// drainBatch handles up to limit deliveries from the ring and writes their output at once.
func (lp *loop) drainBatch(limit int) {
	lp.drainRing(limit)
	lp.flushDirty()
}

// drainRing handles up to limit deliveries from the ring; their output waits in the
// connections' outboxes (lp.dirty).
func (lp *loop) drainRing(limit int) {
	var bytes int64
	for i := 0; i < limit; i++ {
		d, ok := lp.inbox.Pop()
		if !ok {
			break
		}
		bytes += d.bytes()
		lp.handleDelivery(&d)
	}
	if bytes != 0 {
		lp.stats.ringOut.Add(bytes)
	}
	lp.refunds.settle(lp)
}

func (lp *loop) handleDelivery(d *delivery) {
	switch d.kind {
	case dMessage:
		lp.land(d)
	case dFrame:
		if tc, ok := lp.conns.Get(d.target); ok && tc.state == stateActive {
			b := tc.buf()
			b.B = append(b.B, d.buf.B...)
		}
	case dResponse:
		lp.finishResponse(d.token, d.buf.B, d.target, d.corr)
	case dReqFail:
		lp.failToken(d.token, d.code)
	case dClaim:
		lp.finishClaim(d.target, d.buf.B[:d.corr], d.code, d.buf.B[d.corr:])
	case dOutcome:
		lp.finishToken(d.token, d.code)
	case dResume:
		lp.resume(d.target)
	}
	if d.buf != nil {
		msgPool.Put(d.buf)
	}
}

// land queues a message that target's gate admitted on another loop: it was acknowledged,
// so it is queued even past the caps. If it finds the target at its caps, the target
// becomes a slow consumer; if it is the last one on its way to a slow consumer, the
// ERROR SLOW_CONSUMER follows it.
func (lp *loop) land(d *delivery) {
	lp.refunds.add(lp, d.from)
	left := lp.gates.land(d.target)
	tc, ok := lp.conns.Get(d.target)
	wasFull := ok && tc.state == stateActive && tc.full() // its write may close tc
	if !ok || tc.state != stateActive && tc.state != stateSlowLanding {
		lp.stats.dropped.Add(1)
		if d.token != 0 {
			lp.failRequest(d.token, codec.CodeNoRoute)
		}
		return
	}
	b := tc.buf()
	b.B = append(b.B, d.buf.B...)
	tc.addMessage()
	if d.token != 0 && d.token.Node() != lp.srv.cfg.NodeID && codec.Type(d.buf.B[codec.PrefixLen]) == codec.TypeIncoming {
		lp.countRemoteIncoming(tc.id)
	}
	switch {
	case wasFull:
		lp.slowConsumer(tc)
	case tc.state == stateSlowLanding && left == 0 && tc.flags&flagLanding != 0:
		lp.landedClose(tc)
	case tc.state == stateSlowLanding && left == 0:
		lp.slowError(tc)
	}
}

// errorTo sends an ERROR to connection id wherever it lives; best effort.
func (lp *loop) errorTo(id shard.ConnID, corr uint32, code codec.ErrorCode, reason string) {
	if id.Node() != lp.srv.cfg.NodeID {
		lp.srv.remoteError(id, corr, code, reason)
		return
	}
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
	bb := msgPool.Get()
	bb.B = codec.AppendError(bb.B[:0], corr, codec.ErrorBody{Code: code, Reason: reason})
	if !owner.push(delivery{kind: dFrame, target: id, buf: bb}) {
		msgPool.Put(bb)
	}
}
