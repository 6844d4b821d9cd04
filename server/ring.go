package server

import (
	"context"
	"encoding/binary"
	"sync"

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
	// dBatch: buf holds what one callback of another loop handed to this loop (handoff):
	// MESSAGEs and INCOMINGs, each handled as a dMessage, and RESPONSEs, each handled as a
	// dResponse.
	dBatch
)

// A handoff is what one callback hands to one other loop: messages for its connections
// and responses for its pending requests, each frame after a handoffHeader (its
// delivery's kind, corr, target, token and the frame's length), in one pooled buffer
// that one ring entry (dBatch) carries when the callback ends (wakeOwners). One entry per
// target loop per callback rather than one pooled buffer and one ring entry per message.
// Owned by the sender's loop until pushed.
type handoff struct {
	buf *bytebufferpool.ByteBuffer
}

const handoffHeader = 1 + 4 + 8 + 8 + 4

// seal writes the length of the frame appended after the entry header at at.
func (h *handoff) seal(at int) {
	binary.BigEndian.PutUint32(h.buf.B[at+21:], uint32(len(h.buf.B)-at-handoffHeader))
}

// batchPool holds handoff buffers: taken on the sender's loop, given back on the
// target's. A sync.Pool without bytebufferpool's calibration, which drops the buffers
// above the 95th percentile of sizes: a handoff's size follows its callback's batch
// (one message or hundreds), and every dropped buffer would regrow by doubling. Buffers
// over batchMaxCap are dropped; the rest go when the GC clears the pool.
var batchPool = sync.Pool{New: func() any { return &bytebufferpool.ByteBuffer{B: make([]byte, 0, batchInitial)} }}

const (
	batchInitial = 4 << 10
	batchMaxCap  = 1 << 20
)

func getBatch() *bytebufferpool.ByteBuffer { return batchPool.Get().(*bytebufferpool.ByteBuffer) }

func putBatch(b *bytebufferpool.ByteBuffer) {
	if cap(b.B) <= batchMaxCap {
		b.B = b.B[:0]
		batchPool.Put(b)
	}
}

// reserve counts one more message or delivery towards this loop's ring, or reports false
// if the ring is full (RingSize of them wait already). A reservation is made before the
// sender is answered and is released by this loop when it has handled the message, so a
// handoff pushed at the end of a callback always finds room: entries never outnumber
// reservations. Safe for concurrent use.
func (lp *loop) reserve() bool {
	if lp.ringUsed.Add(1) > int64(lp.inbox.Cap()) {
		lp.ringUsed.Add(-1)
		return false
	}
	return true
}

// ringLen is how many messages and deliveries wait for this loop (reserved, in its ring
// or in a handoff about to be pushed). Safe for concurrent use.
func (lp *loop) ringLen() int { return int(max(0, lp.ringUsed.Load())) }

// delivery is one item on a loop's inbound ring. It is a value type: pushing it does not
// allocate. buf, when set, is owned by whoever holds the delivery and goes back to
// msgPool once written.
type delivery struct {
	buf    *bytebufferpool.ByteBuffer
	target shard.ConnID
	token  shard.ConnID
	corr   uint32
	code   codec.ErrorCode
	kind   deliveryKind
}

// push hands d to this loop from another loop. It never blocks: false means the ring is
// full (the caller answers QUEUE_FULL and keeps ownership of d.buf). Safe for concurrent use.
func (lp *loop) push(d delivery) bool {
	if !lp.reserve() {
		return false
	}
	if !lp.inbox.Push(d) { // cannot happen: entries never outnumber reservations
		lp.ringUsed.Add(-1)
		return false
	}
	lp.wake()
	return true
}

// handOff starts an entry (a dMessage or dResponse with target, token and corr) in the
// handoff from loop from to this loop and returns it with the entry's offset: the caller
// appends the frame to h.buf.B, then calls h.seal(at). The handoff is pushed and this
// loop woken at the end of from's callback (from.wakeOwners). ok is false if this loop's
// ring is full. Runs on loop from.
func (lp *loop) handOff(from *loop, kind deliveryKind, target, token shard.ConnID, corr uint32) (h *handoff, at int, ok bool) {
	if !lp.reserve() {
		return nil, 0, false
	}
	h = &from.handoffs[lp.idx]
	if h.buf == nil {
		h.buf = getBatch()
		from.wakes = append(from.wakes, lp)
	}
	b := h.buf.B
	at = len(b)
	b = append(b, byte(kind))
	b = binary.BigEndian.AppendUint32(b, corr)
	b = binary.BigEndian.AppendUint64(b, uint64(target))
	b = binary.BigEndian.AppendUint64(b, uint64(token))
	h.buf.B = append(b, 0, 0, 0, 0) // the frame's length: seal
	return h, at, true
}

// wakeOwners pushes this callback's handoffs and schedules a drain on every loop they
// went to: a callback that routes many messages to one loop wakes it once, and the target
// loop finds them together rather than draining them one by one while they arrive. On the
// loop; OnTraffic calls it after its frames.
func (lp *loop) wakeOwners() {
	if len(lp.wakes) == 0 {
		return
	}
	for i, owner := range lp.wakes {
		lp.wakes[i] = nil
		h := &lp.handoffs[owner.idx]
		if !owner.inbox.Push(delivery{kind: dBatch, buf: h.buf}) {
			panic("BUG: ring full below its reservations")
		}
		h.buf = nil
		owner.wake()
	}
	lp.wakes = lp.wakes[:0]
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
	for i := 0; i < limit; i++ {
		d, ok := lp.inbox.Pop()
		if !ok {
			break
		}
		lp.handleDelivery(&d)
	}
}

func (lp *loop) handleDelivery(d *delivery) {
	n := int64(1) // reservations released
	switch d.kind {
	case dMessage:
		lp.land(d.target, d.token, d.buf.B)
	case dBatch:
		n = 0
		for b := d.buf.B; len(b) >= handoffHeader; n++ {
			corr := binary.BigEndian.Uint32(b[1:])
			target := shard.ConnID(binary.BigEndian.Uint64(b[5:]))
			token := shard.ConnID(binary.BigEndian.Uint64(b[13:]))
			size := handoffHeader + int(binary.BigEndian.Uint32(b[21:]))
			if deliveryKind(b[0]) == dResponse {
				lp.finishResponse(token, b[handoffHeader:size], target, corr)
			} else {
				lp.land(target, token, b[handoffHeader:size])
			}
			b = b[size:]
		}
		putBatch(d.buf)
		d.buf = nil
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
		lp.finishClaim(d.target, d.buf.B, d.code)
	}
	if d.buf != nil {
		msgPool.Put(d.buf)
	}
	lp.ringUsed.Add(-n)
}

// land queues a message that target's gate admitted on another loop: it was acknowledged,
// so it is queued even past the caps. If it finds the target at its caps, the target
// becomes a slow consumer; if it is the last one on its way to a slow consumer, the
// ERROR SLOW_CONSUMER follows it.
func (lp *loop) land(target, token shard.ConnID, frame []byte) {
	left := lp.gates.land(target)
	tc, ok := lp.conns.Get(target)
	if !ok || tc.state != stateActive && tc.state != stateSlowLanding {
		lp.stats.dropped.Add(1)
		if token != 0 {
			lp.failRequest(token, codec.CodeNoRoute)
		}
		return
	}
	wasFull := tc.state == stateActive && tc.full()
	if wasFull && tc.frames != nil && len(tc.frames.B) > 0 && tc.gc.OutboundBuffered() == 0 {
		// The socket has taken everything written so far: the backlog is frames this loop
		// has not written yet (a ring batch that built up while the loop was busy), not a
		// reader that stopped. Write them, then judge again.
		tc.flush()
		wasFull = tc.state == stateActive && tc.full()
	}
	b := tc.buf()
	b.B = append(b.B, frame...)
	tc.addMessage()
	switch {
	case wasFull:
		lp.slowConsumer(tc)
	case tc.state == stateSlowLanding && left == 0:
		lp.slowError(tc)
	}
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
	bb := msgPool.Get()
	bb.B = codec.AppendError(bb.B[:0], corr, codec.ErrorBody{Code: code, Reason: reason})
	if !owner.push(delivery{kind: dFrame, target: id, buf: bb}) {
		msgPool.Put(bb)
	}
}
