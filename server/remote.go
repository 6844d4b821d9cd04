package server

import (
	"encoding/binary"
	"errors"
	"io"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// Remote carries records from this node to the other nodes of a cluster (the cluster
// package implements it; the server never imports NATS). A record is opaque to Remote: the
// server writes it (appendRecord) and the receiving node's server reads it (DeliverRemote).
//
// Concurrency: Forward is called on event loops and on whatever goroutine calls
// DeliverRemote; it must be safe for concurrent use and must never block (no network I/O:
// it queues). MaxRecord is read once, by New.
type Remote interface {
	// Forward queues rec for node, copying it (rec is borrowed and reused at once). It
	// returns nil when rec is queued; shard.ErrBusy when the bounded queue towards node is
	// full (the sender is told QUEUE_FULL); any other error when node cannot be reached
	// (not a live member of the cluster: NO_ROUTE).
	Forward(node uint16, rec []byte) error
	// MaxRecord is the largest record Forward carries.
	MaxRecord() int
}

// servingDirectory is implemented by a directory that can stop serving names while the
// process runs: a cluster node whose lease may have lapsed (stopped, hung, cut off), so
// that other nodes may have given its connections' names to new owners. While Serving
// reports false, DeliverRemote refuses what other nodes forward to this node's
// connections (MESSAGE, INCOMING) with NO_ROUTE, as Lookup then refuses local senders
// (fenced, isolated, or its lease stale):
// a node woken after its lease ran out would otherwise deliver the SENDs and REQUESTs
// queued for it meanwhile to connections whose names now live elsewhere. Outcomes and
// RESPONSEs for this node's own senders and requesters are still delivered: those wait
// here. Serving must be cheap and safe for concurrent use.
type servingDirectory interface {
	Serving() bool
}

// RemoteMetrics is implemented by a Remote that has counters of its own:
// Server.WritePrometheus writes them after the server's (with # HELP and # TYPE lines,
// and names that do not clash with the server's). Safe for concurrent use.
type RemoteMetrics interface {
	WritePrometheus(w io.Writer)
}

// WithRemote makes the server route SEND, REQUEST and REPLY to connections of other nodes
// through r; without it they get NO_ROUTE. The other side of r must hand what it receives
// to DeliverRemote.
func WithRemote(r Remote) Option { return func(s *Server) { s.remote = r } }

// A record is one unit of cross-node traffic, all integers big-endian:
//
//	u8 kind | u8 flags | u16 code | u32 corr | u64 a | u64 b | frame (the rest)
//
//	recDeliver   a = target ConnID, b = token (0: none), frame = a MESSAGE or INCOMING.
//	             The target's node answers recOutcome(b, code) if delivery failed and b
//	             is set, and also on success if flags has recAck.
//	recOutcome   a = token (a pending REQUEST or SEND+ACK of the receiving node), code.
//	recResponse  a = reply token, b = the responder's ConnID, corr = its REPLY's corr,
//	             frame = the RESPONSE with corr 0 (patched by the requester's loop).
//	recFrame     a = target ConnID, frame = a frame (an ERROR) to write if it is active.
const (
	recDeliver uint8 = iota + 1
	recOutcome
	recResponse
	recFrame

	recAck uint8 = 1 // recDeliver: answer the outcome even when it is OK (SEND+ACK)

	recHeaderLen = 24
)

type recHeader struct {
	kind, flags uint8
	code        codec.ErrorCode
	corr        uint32
	a, b        uint64
}

func appendRecord(dst []byte, h recHeader) []byte {
	dst = append(dst, h.kind, h.flags)
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.code))
	dst = binary.BigEndian.AppendUint32(dst, h.corr)
	dst = binary.BigEndian.AppendUint64(dst, h.a)
	return binary.BigEndian.AppendUint64(dst, h.b)
}

func parseRecord(rec []byte) (recHeader, []byte, bool) {
	if len(rec) < recHeaderLen {
		return recHeader{}, nil, false
	}
	return recHeader{
		kind:  rec[0],
		flags: rec[1],
		code:  codec.ErrorCode(binary.BigEndian.Uint16(rec[2:])),
		corr:  binary.BigEndian.Uint32(rec[4:]),
		a:     binary.BigEndian.Uint64(rec[8:]),
		b:     binary.BigEndian.Uint64(rec[16:]),
	}, rec[recHeaderLen:], true
}

// remoteCode maps what Remote.Forward returned to the code the sender is told.
func remoteCode(err error) codec.ErrorCode {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, shard.ErrBusy):
		return codec.CodeQueueFull
	}
	return codec.CodeNoRoute
}

// forward hands a MESSAGE or INCOMING from c for connection target of another node to the
// Remote, built in the loop's scratch space (no allocation once it has grown). token is
// the INCOMING's reply token or a SEND+ACK's pending token (0: none); flags recAck asks
// for the outcome even when it is OK. It returns 0 or the code the sender is told.
// On the loop.
func (lp *loop) forward(target shard.ConnID, t codec.Type, from *conn, token shard.ConnID, flags uint8, payload []byte) codec.ErrorCode {
	r := lp.srv.remote
	if r == nil {
		lp.stats.noRoute.Add(1)
		return codec.CodeNoRoute
	}
	b := appendRecord(lp.scratch[:0], recHeader{kind: recDeliver, flags: flags, a: uint64(target), b: uint64(token)})
	if t == codec.TypeIncoming {
		b = codec.AppendIncoming(b, uint64(token), uint64(from.id), from.name(), payload)
	} else {
		b = codec.AppendMessage(b, uint64(from.id), from.name(), payload)
	}
	lp.scratch = b
	if len(b) > lp.srv.remoteMax {
		return codec.CodeFrameTooLarge
	}
	code := remoteCode(r.Forward(target.Node(), b))
	switch code {
	case codec.CodeQueueFull:
		lp.stats.queueFull.Add(1)
	case codec.CodeNoRoute:
		lp.stats.noRoute.Add(1)
	}
	return code
}

// sendAckRemote is a SEND+ACK to a connection of another node. The ACK means what it
// means on one node, "accepted for delivery to the target's loop", and only the target's
// node can say it: the SEND waits as a pending entry in the loop's request table (counted
// against MaxPending in flight, like a REQUEST) until that node's outcome arrives
// (recOutcome → finishAck), or, if none arrives within RequestTimeout (the target's node
// died, or the answer was lost), it is answered TIMEOUT: delivery unknown. Exactly one
// outcome either way.
func (lp *loop) sendAckRemote(c *conn, f codec.Frame, target shard.ConnID, payload []byte) bool {
	cfg := &lp.srv.cfg
	if lp.srv.queueFull() { // as route: the node is full
		lp.stats.queueFull.Add(1)
		lp.replyError(c, f.Corr, codec.CodeQueueFull, routeFailReason(codec.CodeQueueFull))
		return true
	}
	if int(c.inflight) >= cfg.MaxPending {
		lp.stats.queueFull.Add(1)
		lp.replyError(c, f.Corr, codec.CodeQueueFull, "too many requests and acknowledgements in flight on this connection")
		return true
	}
	start := lp.srv.clock()
	nonce := uint16(lp.rng.Uint64())
	pr := pendingReq{from: c.id, target: target, corr: f.Corr, start: start, nonce: nonce, ack: true}
	id, err := lp.reqs.Add(pr)
	if err != nil {
		lp.replyError(c, f.Corr, codec.CodeQueueFull, "request table full")
		return true
	}
	if code := lp.forward(target, codec.TypeMessage, c, replyToken(id, nonce), recAck, payload); code != 0 {
		lp.reqs.Remove(id)
		lp.replyError(c, f.Corr, code, routeFailReason(code))
		return true
	}
	c.inflight++
	lp.stats.sent.Add(1)
	pr.timer = lp.wheel.add(lp.after(start, cfg.RequestTimeout), timerRequest, id)
	lp.reqs.Set(id, pr)
	return true
}

// finishAck answers a SEND+ACK to another node's connection (pending entry pr, already
// removed from the table): code 0 is OK, anything else an ERROR with code. On the loop.
func (lp *loop) finishAck(pr pendingReq, code codec.ErrorCode) {
	c, ok := lp.conns.Get(pr.from)
	if !ok {
		return
	}
	c.inflight--
	if c.state != stateActive {
		return
	}
	switch code {
	case 0:
		lp.ok(c, pr.corr)
	case codec.CodeTimeout:
		lp.sendError(c, pr.corr, code, 0, "the target's node did not confirm in time: delivery unknown")
	default:
		lp.sendError(c, pr.corr, code, 0, routeFailReason(code))
	}
}

// finishToken ends the pending REQUEST or SEND+ACK behind token with the outcome another
// node sent (recOutcome). A stale token (already answered, timed out) is ignored. On the
// loop.
func (lp *loop) finishToken(token shard.ConnID, code codec.ErrorCode) {
	id, pr, ok := lp.pendingByToken(token)
	if !ok {
		return
	}
	if pr.ack || code != 0 {
		lp.finishRequest(id, code)
	}
}

// countRemoteIncoming records an INCOMING from another node's requester given to
// connection id of this loop.
func (lp *loop) countRemoteIncoming(id shard.ConnID) {
	if lp.remoteIncoming == nil {
		lp.remoteIncoming = make(map[shard.ConnID]uint32)
	}
	lp.remoteIncoming[id]++
}

// takeRemoteIncoming answers one of the INCOMINGs from other nodes' requesters that
// connection id was given, and reports whether it had one unanswered. An INCOMING whose
// request timed out stays counted until a REPLY or the connection's close: so a connection
// can forward at most as many REPLYs as it was given INCOMINGs.
func (lp *loop) takeRemoteIncoming(id shard.ConnID) bool {
	switch n := lp.remoteIncoming[id]; n {
	case 0:
		return false
	case 1:
		delete(lp.remoteIncoming, id)
	default:
		lp.remoteIncoming[id] = n - 1
	}
	return true
}

// replyRemote forwards a REPLY whose token names a request of another node: the
// requester's node checks the token and that the REPLY comes from the connection the
// INCOMING went to (finishResponse), as for a local one.
func (lp *loop) replyRemote(c *conn, f codec.Frame, token shard.ConnID, payload []byte) {
	r := lp.srv.remote
	if r == nil {
		lp.stats.staleReplies.Add(1)
		lp.replyError(c, f.Corr, codec.CodeNoRoute, "reply token unknown or expired")
		return
	}
	b := appendRecord(lp.scratch[:0], recHeader{kind: recResponse, corr: f.Corr, a: uint64(token), b: uint64(c.id)})
	b = codec.AppendFrame(b, codec.TypeResponse, 0, 0, payload)
	lp.scratch = b
	code := codec.CodeFrameTooLarge
	if len(b) <= lp.srv.remoteMax {
		code = remoteCode(r.Forward(token.Node(), b))
	}
	switch code {
	case 0:
	case codec.CodeNoRoute:
		// The requester's node is gone: so is the request.
		lp.stats.staleReplies.Add(1)
		lp.replyError(c, f.Corr, codec.CodeNoRoute, "reply token unknown or expired")
	default:
		lp.countRefusal(code)
		lp.replyError(c, f.Corr, code, routeFailReason(code))
	}
}

// sendOutcome tells the node of token the outcome of the delivery it asked for. Best
// effort: if the queue towards that node is full, the pending entry there ends by its
// timer (TIMEOUT). Safe for concurrent use; no allocation (a pooled buffer, which
// Forward copies).
func (s *Server) sendOutcome(token shard.ConnID, code codec.ErrorCode) {
	if s.remote == nil {
		return
	}
	bb := msgPool.Get()
	bb.B = appendRecord(bb.B[:0], recHeader{kind: recOutcome, code: code, a: uint64(token)})
	_ = s.remote.Forward(token.Node(), bb.B)
	msgPool.Put(bb)
}

// remoteError sends an ERROR to connection id of another node. Best effort, like an
// ERROR to a connection of another loop (errorTo). Safe for concurrent use.
func (s *Server) remoteError(id shard.ConnID, corr uint32, code codec.ErrorCode, reason string) {
	if s.remote == nil {
		return
	}
	bb := msgPool.Get()
	bb.B = appendRecord(bb.B[:0], recHeader{kind: recFrame, a: uint64(id)})
	bb.B = codec.AppendError(bb.B, corr, codec.ErrorBody{Code: code, Reason: reason})
	_ = s.remote.Forward(id.Node(), bb.B)
	msgPool.Put(bb)
}

// DeliverRemote takes one record another node's server sent through the Remote (see
// WithRemote) and hands it to the loop it is for, through that loop's bounded ring. It
// never blocks and does not keep rec. It returns 0 or the code the delivery failed with
// (which, for a MESSAGE or INCOMING that asked for it, has been sent back to the sender's
// node already): QUEUE_FULL when the target is a slow consumer or its loop's ring is full,
// NO_ROUTE when the target or the pending request is gone, BAD_FRAME for a record this
// version does not understand.
//
// Safe for concurrent use; the cluster calls it from its own goroutines, never from an
// event loop. Records from one node are delivered in the order they were sent as long as
// the caller calls it in that order.
func (s *Server) DeliverRemote(rec []byte) codec.ErrorCode {
	h, frame, ok := parseRecord(rec)
	if !ok {
		return codec.CodeBadFrame
	}
	switch h.kind {
	case recDeliver:
		token := shard.ConnID(h.b)
		code := s.deliverRemote(shard.ConnID(h.a), token, frame)
		if token != 0 && (code != 0 || h.flags&recAck != 0) {
			s.sendOutcome(token, code)
		}
		return code
	case recOutcome:
		return s.pushRemote(shard.ConnID(h.a), delivery{kind: dOutcome, token: shard.ConnID(h.a), code: h.code}, nil)
	case recResponse:
		responder := shard.ConnID(h.b)
		code := s.pushRemote(shard.ConnID(h.a), delivery{kind: dResponse, token: shard.ConnID(h.a), target: responder, corr: h.corr}, frame)
		if code != 0 && h.corr != 0 { // as reply tells a REPLY it could not pass on
			reason := "reply token unknown or expired"
			if code == codec.CodeQueueFull {
				reason = routeFailReason(code)
			}
			s.remoteError(responder, h.corr, code, reason)
		}
		return code
	case recFrame:
		return s.pushRemote(shard.ConnID(h.a), delivery{kind: dFrame, target: shard.ConnID(h.a)}, frame)
	}
	return codec.CodeBadFrame
}

// deliverRemote admits a MESSAGE or INCOMING from another node at its target's gate and
// pushes it to the target's loop, as route does for a sender on another loop of this
// node.
func (s *Server) deliverRemote(target shard.ConnID, token shard.ConnID, frame []byte) codec.ErrorCode {
	owner := s.loopAt(target.Loop())
	if target.Node() != s.cfg.NodeID || owner == nil || (s.serving != nil && !s.serving.Serving()) {
		return codec.CodeNoRoute
	}
	if len(frame)-codec.PrefixLen > s.cfg.MaxFrame {
		// The sender's node has a larger max frame: this node's clients may enforce theirs.
		return codec.CodeFrameTooLarge
	}
	if s.queueFull() {
		owner.stats.queueFull.Add(1)
		return codec.CodeQueueFull
	}
	if code := owner.gates.admit(target); code != 0 {
		owner.countRefusal(code)
		return code
	}
	bb := msgPool.Get()
	bb.B = append(bb.B[:0], frame...)
	if !owner.push(delivery{kind: dMessage, target: target, token: token, buf: bb}) {
		owner.gates.unadmit(target)
		msgPool.Put(bb)
		owner.stats.queueFull.Add(1)
		return codec.CodeQueueFull
	}
	return 0
}

// pushRemote pushes d (with a copy of frame, if any) to the loop of connection or token
// id on this node.
func (s *Server) pushRemote(id shard.ConnID, d delivery, frame []byte) codec.ErrorCode {
	owner := s.loopAt(id.Loop())
	if id.Node() != s.cfg.NodeID || owner == nil {
		return codec.CodeNoRoute
	}
	if frame != nil {
		d.buf = msgPool.Get()
		d.buf.B = append(d.buf.B[:0], frame...)
	}
	if !owner.push(d) {
		if d.buf != nil {
			msgPool.Put(d.buf)
		}
		owner.stats.queueFull.Add(1)
		return codec.CodeQueueFull
	}
	return 0
}
