package server

import (
	"sync/atomic"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

func (lp *loop) send(c *conn, f codec.Frame) bool {
	name, payload, err := codec.ParseSend(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "malformed SEND")
		return false
	}
	if codec.MessageLen(len(c.name()), len(payload)) > lp.srv.cfg.MaxFrame {
		lp.replyError(c, f.Corr, codec.CodeFrameTooLarge, "delivered MESSAGE would exceed max frame")
		return true
	}
	target, ok := lp.lookup(c, f.Corr, name)
	if !ok {
		return true
	}
	if f.Flags&codec.FlagAck != 0 && target.Node() != lp.srv.cfg.NodeID && f.Corr != 0 {
		// Answered when the target's node says (an ACK with corr 0 wants no answer: a
		// plain SEND).
		return lp.sendAckRemote(c, f, target, payload)
	}
	if code := lp.route(target, codec.TypeMessage, c, 0, payload); code != 0 {
		lp.replyError(c, f.Corr, code, routeFailReason(code))
		return true
	}
	lp.stats.sent.Add(1)
	if f.Flags&codec.FlagAck != 0 {
		lp.ok(c, f.Corr)
	}
	return true
}

// lookup finds the owner of the name a SEND or REQUEST is for; without one, the sender is
// told NO_ROUTE (if it asked) and lookup reports false.
func (lp *loop) lookup(c *conn, corr uint32, name []byte) (shard.ConnID, bool) {
	target, ok := lp.srv.dir.Lookup(name)
	if !ok {
		lp.stats.noRoute.Add(1)
		lp.replyError(c, corr, codec.CodeNoRoute, "no connection owns the name")
	}
	return target, ok
}

// route writes a MESSAGE or INCOMING from c to connection target: directly into the
// target's output when it lives on this loop, through the target loop's bounded ring
// when it lives on another loop, and through the Remote's bounded queue towards its node
// when it lives on another node (forward, remote.go). It returns 0 or the error code the
// sender should see.
//
// 0 means accepted for delivery: it is what a SEND's ACK is answered OK for, so nothing
// accepted may be dropped later while the target is there to read it. On this loop the
// target's caps are checked here. For another loop the target's gate admits the message
// (gate.go) before it is pushed, and the target loop queues whatever its gate admitted,
// even past the caps: the caps are checked when the message lands, and the message that
// finds the target at its cap makes it a slow consumer, whose gate then refuses the next
// ones. So a target may exceed its caps by what was on its way when it became a slow
// consumer: at most what the rings towards it hold.
//
// For another node, 0 means only "queued towards that node": the target's gate is asked
// there, when the record arrives. That is enough for a SEND without ACK and for an
// INCOMING (whose failure comes back to its pending request); a SEND+ACK to another node
// does not come here but waits for the target node's answer (sendAckRemote).
func (lp *loop) route(target shard.ConnID, t codec.Type, from *conn, token shard.ConnID, payload []byte) codec.ErrorCode {
	if lp.srv.queueFull() {
		lp.stats.queueFull.Add(1)
		return codec.CodeQueueFull
	}
	if target.Node() != lp.srv.cfg.NodeID {
		// Another node's: 0 means queued towards that node (remote.go), which admits it at
		// the target's gate when it arrives.
		return lp.forward(target, t, from, token, 0, payload)
	}
	if target.Loop() == int(lp.idx) {
		tc, code := lp.writable(target)
		if tc == nil {
			lp.countRefusal(code)
			return code
		}
		b := tc.buf()
		b.B = appendRouted(b.B, t, from, token, payload)
		tc.addMessage()
		return 0
	}
	owner := lp.srv.loopAt(target.Loop())
	if owner == nil {
		return codec.CodeNoRoute
	}
	if code := owner.gates.admit(target); code != 0 {
		lp.countRefusal(code)
		return code
	}
	bb := msgPool.Get()
	bb.B = appendRouted(bb.B[:0], t, from, token, payload)
	d := delivery{kind: dMessage, target: target, token: token, buf: bb}
	var credit *atomic.Uint64
	if lp.srv.cfg.RouteCredit > 0 {
		// Counted before the push: the target loop may land it at once.
		d.from, credit = from.id, lp.gates.creditWord(from.id)
		credit.Add(1)
	}
	if !owner.pushLater(lp, d) {
		owner.gates.unadmit(target)
		if credit != nil {
			credit.Add(^uint64(0))
		}
		msgPool.Put(bb)
		lp.stats.queueFull.Add(1)
		return codec.CodeQueueFull
	}
	if credit != nil {
		lp.spent(from, credit)
	}
	return 0
}

// countRefusal counts a QUEUE_FULL from a target's caps (switchboard_queue_full_total).
func (lp *loop) countRefusal(code codec.ErrorCode) {
	if code == codec.CodeQueueFull {
		lp.stats.queueFull.Add(1)
	}
}

func appendRouted(dst []byte, t codec.Type, from *conn, token shard.ConnID, payload []byte) []byte {
	if t == codec.TypeIncoming {
		return codec.AppendIncoming(dst, uint64(token), uint64(from.id), from.name(), payload)
	}
	return codec.AppendMessage(dst, uint64(from.id), from.name(), payload)
}

// writable returns the connection id of this loop if it can take one more message. The
// message that finds it at its caps makes it a slow consumer (slowConsumer): it is refused
// with QUEUE_FULL, as is every later one until the connection is gone (NO_ROUTE).
func (lp *loop) writable(id shard.ConnID) (*conn, codec.ErrorCode) {
	c, ok := lp.conns.Get(id)
	switch {
	case ok && c.state.slowClosing() && c.flags&flagErrClose == 0:
		return nil, codec.CodeQueueFull // closing after an ERROR of its own: NO_ROUTE below
	case !ok || c.state != stateActive:
		return nil, codec.CodeNoRoute
	case c.full():
		lp.slowConsumer(c)
		return nil, codec.CodeQueueFull
	case c.state != stateActive: // closed by the write full made
		return nil, codec.CodeNoRoute
	}
	return c, 0
}

func routeFailReason(code codec.ErrorCode) string {
	switch code {
	case codec.CodeNoRoute:
		return "target connection is gone"
	case codec.CodeQueueFull:
		return "queue towards the target is full; retry later"
	case codec.CodeFrameTooLarge:
		return "too large for the target's node (its max frame, or the cluster's record limit)"
	}
	return code.String()
}
