package server

import (
	"encoding/binary"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// pendingReq is a REQUEST waiting for its outcome, kept in its requester's loop's table.
//
// The responder sees it as a reply token (replyToken): the table id's node, loop and slot,
// so that a REPLY goes straight to the requester's loop, with 16 random bits in place of
// the slot's generation, so that one token says nothing about another. A REPLY is taken
// only from the connection the INCOMING went to (target) and only with the right random
// bits; anything else is told NO_ROUTE, exactly like a token that has expired.
type pendingReq struct {
	timer  timerHandle // cancelled when the request is answered
	from   shard.ConnID
	target shard.ConnID // the responder: the only connection whose REPLY counts; and the per-target breaker's key
	start  int64        // srv.clock() when forwarded
	corr   uint32
	nonce  uint16 // the random bits of its reply token
	// ack: not a REQUEST but a SEND+ACK to a connection of another node, waiting for that
	// node's outcome (remote.go, sendAckRemote). Its token never reaches a client.
	ack bool
}

// replyToken is the token a responder sees for the pending request with table id id.
func replyToken(id shard.ConnID, nonce uint16) shard.ConnID {
	return shard.MakeConnID(id.Node(), uint8(id.Loop()), id.Slot(), nonce)
}

// pendingByToken finds the pending request a reply token names, on its loop.
func (lp *loop) pendingByToken(tok shard.ConnID) (shard.ConnID, pendingReq, bool) {
	if tok.Node() != lp.srv.cfg.NodeID || tok.Loop() != int(lp.idx) {
		return 0, pendingReq{}, false
	}
	id, pr, ok := lp.reqs.At(tok.Slot())
	if !ok || pr.nonce != tok.Gen() {
		return 0, pendingReq{}, false
	}
	return id, pr, true
}

func (lp *loop) request(c *conn, f codec.Frame) bool {
	cfg := &lp.srv.cfg
	name, tmo, payload, err := codec.ParseRequest(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "malformed REQUEST body")
		return false
	}
	if f.Corr == 0 {
		lp.closeWithError(c, codec.CodeBadFrame, "REQUEST corr must not be 0")
		return false
	}
	if codec.IncomingLen(len(c.name()), len(payload)) > cfg.MaxFrame {
		lp.replyError(c, f.Corr, codec.CodeFrameTooLarge, "delivered INCOMING would exceed max frame")
		return true
	}
	if int(c.inflight) >= cfg.MaxPending {
		lp.stats.queueFull.Add(1)
		lp.replyError(c, f.Corr, codec.CodeQueueFull, "too many requests in flight on this connection")
		return true
	}
	target, ok := lp.lookup(c, f.Corr, name)
	if !ok {
		return true
	}
	timeout := time.Duration(tmo) * time.Millisecond
	if timeout == 0 {
		timeout = cfg.RequestTimeout
	}
	timeout = min(timeout, cfg.MaxRequestTimeout)
	start := lp.srv.clock()
	if code, retry, reason := lp.allowRequest(target, start); code != 0 {
		lp.refuseFrame(c, f, code, retry, reason)
		return true
	}
	nonce := uint16(lp.rng.Uint64())
	id, err := lp.reqs.Add(pendingReq{from: c.id, target: target, corr: f.Corr, start: start, nonce: nonce})
	if err != nil {
		lp.replyError(c, f.Corr, codec.CodeQueueFull, "request table full")
		return true
	}
	if code := lp.route(target, codec.TypeIncoming, c, replyToken(id, nonce), payload); code != 0 {
		lp.reqs.Remove(id)
		// The target failed (its queue full, or it is gone or closing): the breakers count
		// it, as they do when the same happens on the target's loop (finishRequest).
		lp.recordOutcome(target, code, start)
		lp.replyError(c, f.Corr, code, routeFailReason(code))
		return true
	}
	c.inflight++
	lp.stats.inflight.Add(1)
	lp.stats.requests.Add(1)
	pr := pendingReq{from: c.id, target: target, corr: f.Corr, start: start, nonce: nonce}
	pr.timer = lp.wheel.add(lp.after(start, timeout), timerRequest, id)
	lp.reqs.Set(id, pr)
	return true
}

func (lp *loop) reply(c *conn, f codec.Frame) bool {
	tok, payload, err := codec.ParseReply(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "malformed REPLY")
		return false
	}
	token := shard.ConnID(tok)
	if token.Node() != lp.srv.cfg.NodeID {
		if !lp.takeRemoteIncoming(c.id) {
			// This connection was given no INCOMING from another node that it has not
			// answered: the token is made up (or answered already). Refused here, as the
			// requester's node would, rather than sent there: REPLY is not rate-limited,
			// and a flood of them would fill the queue towards that node for everyone.
			lp.stats.staleReplies.Add(1)
			lp.replyError(c, f.Corr, codec.CodeNoRoute, "reply token unknown or expired")
			return true
		}
		lp.replyRemote(c, f, token, payload)
		return true
	}
	owner := lp.srv.loopAt(token.Loop())
	if token.Node() != lp.srv.cfg.NodeID || owner == nil {
		lp.stats.staleReplies.Add(1)
		lp.replyError(c, f.Corr, codec.CodeNoRoute, "reply token unknown or expired")
		return true
	}
	if owner == lp {
		lp.scratch = codec.AppendFrame(lp.scratch[:0], codec.TypeResponse, 0, 0, payload)
		lp.finishResponse(token, lp.scratch, c.id, f.Corr)
		return true
	}
	bb := msgPool.Get()
	bb.B = codec.AppendFrame(bb.B[:0], codec.TypeResponse, 0, 0, payload)
	if !owner.push(delivery{kind: dResponse, token: token, target: c.id, corr: f.Corr, buf: bb}) {
		msgPool.Put(bb)
		lp.stats.queueFull.Add(1)
		lp.replyError(c, f.Corr, codec.CodeQueueFull, routeFailReason(codec.CodeQueueFull))
	}
	return true
}

// failRequest ends the pending request behind reply token with an ERROR, on whichever
// loop owns it. If that loop's ring is full the request's timer answers TIMEOUT instead:
// still one outcome.
func (lp *loop) failRequest(token shard.ConnID, code codec.ErrorCode) {
	if token.Node() != lp.srv.cfg.NodeID { // a REQUEST from another node: tell it
		lp.srv.sendOutcome(token, code)
		return
	}
	if token.Loop() == int(lp.idx) {
		lp.failToken(token, code)
		return
	}
	if owner := lp.srv.loopAt(token.Loop()); owner != nil {
		owner.push(delivery{kind: dReqFail, token: token, code: code})
	}
}

// failToken is finishRequest for a reply token (a failed delivery of its INCOMING).
func (lp *loop) failToken(token shard.ConnID, code codec.ErrorCode) {
	if id, _, ok := lp.pendingByToken(token); ok {
		lp.finishRequest(id, code)
	}
}

// finishRequest ends the pending request with table id id with an ERROR; a stale id
// (already answered, timed out) is ignored.
func (lp *loop) finishRequest(id shard.ConnID, code codec.ErrorCode) {
	pr, ok := lp.reqs.Remove(id)
	if !ok {
		return
	}
	lp.wheel.cancel(pr.timer)
	if pr.ack {
		lp.finishAck(pr, code)
		return
	}
	lp.stats.inflight.Add(-1)
	lp.recordOutcome(pr.target, code, lp.srv.clock())
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

// finishResponse ends the pending request behind reply token with the RESPONSE frame
// resp (whose corr field is patched here) if the REPLY came from the connection the
// INCOMING went to. Otherwise, or when the request already had its outcome, the replier is
// told NO_ROUTE if it asked (rcorr != 0); the request waits on for its own responder.
func (lp *loop) finishResponse(token shard.ConnID, resp []byte, responder shard.ConnID, rcorr uint32) {
	id, pr, ok := lp.pendingByToken(token)
	if !ok || pr.target != responder || pr.ack {
		lp.stats.staleReplies.Add(1)
		if rcorr != 0 {
			lp.errorTo(responder, rcorr, codec.CodeNoRoute, "reply token unknown or expired")
		}
		return
	}
	if len(resp)-codec.PrefixLen > lp.srv.cfg.MaxFrame {
		// From a node with a larger max frame: the requester's client may enforce this
		// node's. Both sides are told instead (the only outcome the request gets).
		if rcorr != 0 {
			lp.errorTo(responder, rcorr, codec.CodeFrameTooLarge, "RESPONSE would exceed the requester's max frame")
		}
		lp.finishRequest(id, codec.CodeFrameTooLarge)
		return
	}
	lp.reqs.Remove(id)
	lp.wheel.cancel(pr.timer)
	lp.stats.inflight.Add(-1)
	now := lp.srv.clock()
	lp.recordOutcome(pr.target, 0, now)
	lp.stats.reqLatency.observe(time.Duration(now - pr.start))
	c, ok := lp.conns.Get(pr.from)
	if !ok {
		return // requester left; nobody to tell
	}
	c.inflight--
	if c.state != stateActive && !c.state.slowClosing() {
		return
	}
	// A requester that does not read its RESPONSEs is a slow consumer, as a reader that
	// does not read its MESSAGEs (writable): up to max-pending requests of up to max-frame
	// each would otherwise wait for it. The replier hears QUEUE_FULL from then on, as when
	// the RESPONSE cannot be queued at all (NO_ROUTE once the requester is closing for an
	// error of its own or gone).
	if _, code := lp.writable(c.id); code != 0 {
		if rcorr != 0 {
			lp.errorTo(responder, rcorr, code, responseFailReason(code))
		}
		return
	}
	b := c.buf()
	start := len(b.B)
	b.B = append(b.B, resp...)
	binary.BigEndian.PutUint32(b.B[start+6:], pr.corr)
	lp.stats.responses.Add(1)
}

// responseFailReason is the reason a replier is told when its RESPONSE could not be queued.
func responseFailReason(code codec.ErrorCode) string {
	if code == codec.CodeQueueFull {
		return "requester's queue is full"
	}
	return "requester is gone"
}

func requestFailReason(code codec.ErrorCode) string {
	switch code {
	case codec.CodeTimeout:
		return "no REPLY in time"
	case codec.CodeNoRoute:
		return "responder is gone"
	case codec.CodeQueueFull:
		return "responder's queue is full"
	case codec.CodeFrameTooLarge:
		return "request or its RESPONSE too large for the other node (its max frame, or the cluster's record limit)"
	}
	return code.String()
}
