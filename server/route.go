package server

import (
	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

func (lp *loop) send(c *conn, f codec.Frame) bool {
	name, payload, err := codec.ParseSend(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "malformed SEND")
		return false
	}
	if codec.MessageLen(len(c.name), len(payload)) > lp.srv.cfg.MaxFrame {
		lp.replyError(c, f.Corr, codec.CodeFrameTooLarge, "delivered MESSAGE would exceed max frame")
		return true
	}
	target, ok := lp.lookup(c, f.Corr, name)
	if !ok {
		return true
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
// otherwise. It returns 0 or the error code the sender should see.
func (lp *loop) route(target shard.ConnID, t codec.Type, from *conn, token shard.ConnID, payload []byte) codec.ErrorCode {
	if target.Node() != lp.srv.cfg.NodeID {
		return codec.CodeNoRoute
	}
	if lp.srv.g.queued.Load() >= int64(lp.srv.maxQueue()) {
		lp.stats.queueFull.Add(1)
		return codec.CodeQueueFull
	}
	if target.Loop() == int(lp.idx) {
		tc, code := lp.writable(target)
		if tc == nil {
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
	bb := bufPool.Get()
	bb.B = appendRouted(bb.B[:0], t, from, token, payload)
	if !owner.push(delivery{kind: dFrame, target: target, token: token, buf: bb}) {
		bufPool.Put(bb)
		lp.stats.queueFull.Add(1)
		return codec.CodeQueueFull
	}
	return 0
}

func appendRouted(dst []byte, t codec.Type, from *conn, token shard.ConnID, payload []byte) []byte {
	if t == codec.TypeIncoming {
		return codec.AppendIncoming(dst, uint64(token), uint64(from.id), from.name, payload)
	}
	return codec.AppendMessage(dst, uint64(from.id), from.name, payload)
}

// writable returns the active connection id if it can take one more message. A
// connection over its pending cap is a slow consumer: it is told SLOW_CONSUMER and
// closed, and the sender sees QUEUE_FULL.
func (lp *loop) writable(id shard.ConnID) (*conn, codec.ErrorCode) {
	c, ok := lp.conns.Get(id)
	if !ok || c.state != stateActive {
		return nil, codec.CodeNoRoute
	}
	if c.full() {
		lp.stats.slowConsumers.Add(1)
		lp.closeWithError(c, codec.CodeSlowConsumer, "outbound queue over its cap: read faster")
		return nil, codec.CodeQueueFull
	}
	return c, 0
}

func routeFailReason(code codec.ErrorCode) string {
	switch code {
	case codec.CodeNoRoute:
		return "target connection is gone"
	case codec.CodeQueueFull:
		return "queue towards the target is full; retry later"
	}
	return code.String()
}
