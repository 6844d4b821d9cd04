package server

import (
	"crypto/subtle"
	"errors"
	"slices"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// handler is the gnet event handler. Every method but OnTick runs on an event loop.
type handler struct {
	gnet.BuiltinEventEngine
	srv *Server
}

// OnOpen runs on the loop that gnet chose for an enrolled connection. The conn context
// was attached by the acceptor.
func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	c, _ := gc.Context().(*conn)
	if c == nil {
		return nil, gnet.Close
	}
	lp := h.srv.loopFor(gc.EventLoop())
	id, err := lp.conns.Add(c)
	if err != nil { // 16M connections on one loop: cannot happen below the fd cap
		h.srv.connCount.Add(-1)
		gc.SetContext(nil)
		return nil, gnet.Close
	}
	c.gc, c.lp, c.id = gc, lp, id
	c.lastSeen = lp.tick32()
	lp.stats.accepted.Add(1)
	c.hsTimer = lp.wheel.add(lp.ticks(h.srv.cfg.HandshakeTimeout), timerHandshake, id)
	return nil, gnet.None
}

// OnClose releases everything the connection held: its table slot, its names, its buffer.
func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil || c.state == stateClosed {
		return gnet.None
	}
	lp := c.lp
	lp.conns.Remove(c.id)
	for _, name := range c.names {
		_ = h.srv.dir.Unregister(name, c.id)
	}
	lp.stats.pending.Add(int64(-c.pending))
	c.pending = 0
	h.srv.g.perIP.Release(c.ip)
	c.names = nil
	if c.out != nil {
		bufPool.Put(c.out)
		c.out = nil
	}
	c.state = stateClosed
	c.gc = nil
	gc.SetContext(nil)
	h.srv.connCount.Add(-1)
	lp.stats.closed.Add(1)
	return gnet.None
}

// OnTraffic decodes and dispatches at most FramesPerWake frames, writes this connection's
// answers with one write, and queues one end-of-round flush for what the frames routed to
// other connections of the loop. Bytes of an incomplete frame stay in gnet's inbound
// buffer.
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil || c.state != stateActive && c.state != stateHandshake {
		_, _ = gc.Discard(-1) // closing: ignore input until the close lands
		return gnet.None
	}
	lp := c.lp
	buf, _ := gc.Peek(-1)
	var now int64
	if h.srv.g.rated.Load() {
		now = h.srv.clock()
	}
	off, more := 0, false
	for frames := 0; off < len(buf); frames++ {
		if frames == h.srv.cfg.FramesPerWake {
			more = true
			break
		}
		maxFrame := h.srv.cfg.MaxFrame
		if c.state == stateHandshake { // until WELCOME, frames are small (a HELLO)
			maxFrame = handshakeMaxFrame
		}
		f, n, err := codec.Decode(buf[off:], maxFrame)
		if err != nil {
			if !errors.Is(err, codec.ErrShort) {
				lp.stats.badFrames.Add(1)
				lp.closeWithError(c, codec.CodeOf(err), err.Error())
			}
			break
		}
		off += n
		if !lp.dispatch(c, f, now) {
			break
		}
	}
	if off > 0 && c.state != stateClosed {
		lp.stats.bytesIn.Add(uint64(off))
		_, _ = gc.Discard(off) // Discard(0) would drop everything
		c.lastSeen = lp.tick32()
	}
	// This connection's answers go out now, in one write. Output for other connections
	// (messages routed to them) waits for the end of this poll round, so a connection
	// that many senders write to in one round gets one write, not one per message.
	if c.dirty {
		c.flush()
	}
	lp.flushLater()
	if more && c.state == stateActive {
		_ = gc.Wake(nil) // more whole frames wait: come back after the others had a turn
	}
	return gnet.None
}

// OnTick runs on gnet's ticker goroutine, not a loop: it only schedules each loop's own
// tick through Execute.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	h.srv.sample()
	now := h.srv.clock()
	h.srv.eachLoop(func(lp *loop) {
		lp.tickAt.Store(now)
		_ = lp.el.Execute(h.srv.baseCtx, lp.tickRun)
	})
	return h.srv.cfg.TickInterval, gnet.None
}

// dispatch handles one frame. It returns false when the connection is closing and the
// rest of its input must be ignored.
func (lp *loop) dispatch(c *conn, f codec.Frame, now int64) bool {
	lp.stats.framesByType[f.Type].Add(1)
	if c.state == stateHandshake {
		if f.Type != codec.TypeHello {
			lp.closeWithError(c, codec.CodeHelloRequired, "send HELLO first")
			return false
		}
		return lp.hello(c, f)
	}
	if f.Type < 0x80 && f.Type.Known() && !controlFrame(f.Type) && !lp.admit(c, f, now) {
		return true
	}
	switch f.Type {
	case codec.TypePing, codec.TypeEcho:
		// A peer that sends but never reads its answers is a slow consumer too.
		if c.outboundBytes() >= lp.srv.cfg.MaxPendingBytes {
			lp.stats.slowConsumers.Add(1)
			lp.closeWithError(c, codec.CodeSlowConsumer, "answers not read: read faster")
			return false
		}
		t := codec.TypePong
		if f.Type == codec.TypeEcho {
			t = codec.TypeEchoReply
		}
		b := c.buf()
		b.B = codec.AppendFrame(b.B, t, 0, f.Corr, f.Body)
	case codec.TypeSend:
		return lp.send(c, f)
	case codec.TypeRequest:
		return lp.request(c, f)
	case codec.TypeReply:
		return lp.reply(c, f)
	case codec.TypeRegister:
		return lp.register(c, f)
	case codec.TypeUnregister:
		return lp.unregister(c, f)
	case codec.TypeGoodbye:
		c.state = stateClosing
		c.flush()
		_ = c.gc.Close()
		return false
	case codec.TypeHello:
		lp.closeWithError(c, codec.CodeBadFrame, "HELLO after WELCOME")
		return false
	default:
		lp.closeWithError(c, codec.CodeUnknownType, "unknown frame type "+f.Type.String())
		return false
	}
	return true
}

func (lp *loop) hello(c *conn, f codec.Frame) bool {
	cfg := &lp.srv.cfg
	h, err := codec.ParseHello(f.Body)
	switch {
	case err != nil:
		lp.closeWithError(c, codec.CodeBadFrame, "malformed HELLO")
		return false
	case h.Version != codec.Version:
		lp.closeWithError(c, codec.CodeUnsupportedVersion, "this server speaks version 1")
		return false
	case subtle.ConstantTimeCompare(h.Token, lp.srv.token) != 1:
		lp.stats.unauthorized.Add(1)
		lp.closeWithError(c, codec.CodeUnauthorized, "bad token")
		return false
	case lp.srv.draining.Load():
		lp.closeWithError(c, codec.CodeShuttingDown, "node is draining")
		return false
	}
	c.name = slices.Clone(h.Name)
	c.state = stateActive
	lp.wheel.cancel(c.hsTimer)
	b := c.buf()
	b.B = codec.AppendWelcome(b.B, f.Corr, codec.Welcome{
		Version:        codec.Version,
		ConnID:         uint64(c.id),
		MaxFrame:       uint32(cfg.MaxFrame),
		PingIntervalMs: uint32(cfg.IdleTimeout / 3 / time.Millisecond), // 0 when off
		MaxPending:     uint32(cfg.MaxPending),
		ServerID:       lp.srv.serverID,
	})
	if cfg.IdleTimeout > 0 { // 0 = off: no idle timer
		lp.wheel.add(lp.ticks(cfg.IdleTimeout), timerIdle, c.id)
	}
	return true
}

func (lp *loop) register(c *conn, f codec.Frame) bool {
	name, err := codec.ParseName(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "bad name in REGISTER")
		return false
	}
	if slices.Index(c.names, string(name)) >= 0 { // no allocation: compiler-converted
		lp.ok(c, f.Corr)
		return true
	}
	if len(c.names) >= lp.srv.cfg.MaxNamesPerConn {
		lp.replyError(c, f.Corr, codec.CodeBusy, "too many names on this connection")
		return true
	}
	s := string(name)
	switch err := lp.srv.dir.Register(s, c.id); {
	case err == nil:
		c.names = append(c.names, s)
		lp.ok(c, f.Corr)
	case errors.Is(err, shard.ErrNameTaken):
		lp.replyError(c, f.Corr, codec.CodeNameTaken, "name owned by another connection")
	default:
		lp.replyError(c, f.Corr, codec.CodeInternal, err.Error())
	}
	return true
}

func (lp *loop) unregister(c *conn, f codec.Frame) bool {
	name, err := codec.ParseName(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "bad name in UNREGISTER")
		return false
	}
	i := slices.Index(c.names, string(name))
	if i < 0 {
		lp.replyError(c, f.Corr, codec.CodeNotOwner, "name not registered by this connection")
		return true
	}
	_ = lp.srv.dir.Unregister(c.names[i], c.id)
	c.names = slices.Delete(c.names, i, i+1)
	lp.ok(c, f.Corr)
	return true
}

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
	target, ok := lp.srv.dir.Lookup(name)
	if !ok {
		lp.stats.noRoute.Add(1)
		lp.replyError(c, f.Corr, codec.CodeNoRoute, "no connection owns the name")
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

func (lp *loop) request(c *conn, f codec.Frame) bool {
	cfg := &lp.srv.cfg
	name, tmo, payload, err := codec.ParseRequest(f.Body)
	if err != nil || f.Corr == 0 {
		lp.closeWithError(c, codec.CodeBadFrame, "malformed REQUEST (corr must not be 0)")
		return false
	}
	if codec.IncomingLen(len(c.name), len(payload)) > cfg.MaxFrame {
		lp.replyError(c, f.Corr, codec.CodeFrameTooLarge, "delivered INCOMING would exceed max frame")
		return true
	}
	if int(c.inflight) >= cfg.MaxPending {
		lp.stats.queueFull.Add(1)
		lp.replyError(c, f.Corr, codec.CodeQueueFull, "too many requests in flight on this connection")
		return true
	}
	target, ok := lp.srv.dir.Lookup(name)
	if !ok {
		lp.stats.noRoute.Add(1)
		lp.replyError(c, f.Corr, codec.CodeNoRoute, "no connection owns the name")
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
	token, err := lp.reqs.Add(pendingReq{from: c.id, target: target, corr: f.Corr, start: start})
	if err != nil {
		lp.replyError(c, f.Corr, codec.CodeQueueFull, "request table full")
		return true
	}
	if code := lp.route(target, codec.TypeIncoming, c, token, payload); code != 0 {
		lp.reqs.Remove(token)
		if code == codec.CodeQueueFull {
			lp.recordOutcome(target, code)
		}
		lp.replyError(c, f.Corr, code, routeFailReason(code))
		return true
	}
	c.inflight++
	lp.stats.inflight.Add(1)
	lp.stats.requests.Add(1)
	pr := pendingReq{from: c.id, target: target, corr: f.Corr, start: start}
	pr.timer = lp.wheel.add(lp.ticks(timeout), timerRequest, token)
	lp.reqs.Set(token, pr)
	return true
}

func (lp *loop) reply(c *conn, f codec.Frame) bool {
	tok, payload, err := codec.ParseReply(f.Body)
	if err != nil {
		lp.closeWithError(c, codec.CodeBadFrame, "malformed REPLY")
		return false
	}
	token := shard.ConnID(tok)
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
	bb := bufPool.Get()
	bb.B = codec.AppendFrame(bb.B[:0], codec.TypeResponse, 0, 0, payload)
	if !owner.push(delivery{kind: dResponse, token: token, target: c.id, corr: f.Corr, buf: bb}) {
		bufPool.Put(bb)
		lp.stats.queueFull.Add(1)
		lp.replyError(c, f.Corr, codec.CodeQueueFull, routeFailReason(codec.CodeQueueFull))
	}
	return true
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
		lp.addPending(tc)
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

// ok answers OK when the peer asked for an answer (corr != 0).
func (lp *loop) ok(c *conn, corr uint32) {
	if corr != 0 {
		b := c.buf()
		b.B = codec.AppendFrame(b.B, codec.TypeOK, 0, corr, nil)
	}
}

// replyError answers ERROR when the peer asked for an answer (corr != 0); otherwise the
// failure is only counted.
func (lp *loop) replyError(c *conn, corr uint32, code codec.ErrorCode, reason string) {
	if corr != 0 {
		lp.sendError(c, corr, code, 0, reason)
		return
	}
	lp.stats.errors[code].Add(1)
}

func (lp *loop) sendError(c *conn, corr uint32, code codec.ErrorCode, flags codec.ErrorFlags, reason string) {
	b := c.buf()
	b.B = codec.AppendError(b.B, corr, codec.ErrorBody{Code: code, Flags: flags, Reason: reason})
	lp.stats.errors[code].Add(1)
}

// closeWithError tells the peer why and closes the connection; its remaining input is
// ignored. gnet writes what is still buffered before it closes the socket.
func (lp *loop) closeWithError(c *conn, code codec.ErrorCode, reason string) {
	if c.state == stateClosing || c.state == stateClosed {
		return
	}
	flags := codec.ErrFlagClosing
	if code == codec.CodeSlowConsumer || code == codec.CodeTimeout || code == codec.CodeShuttingDown || code == codec.CodeBusy {
		flags |= codec.ErrFlagReconnect
	}
	lp.sendError(c, 0, code, flags, reason)
	if code != codec.CodeTimeout && code != codec.CodeShuttingDown { // routine closes are only counted
		lp.srv.connLog.report(connLogEntry{ip: c.ip, code: code, reason: reason})
	}
	c.state = stateClosing
	c.flush()
	if c.state != stateClosed {
		_ = c.gc.Close()
	}
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

func requestFailReason(code codec.ErrorCode) string {
	switch code {
	case codec.CodeTimeout:
		return "no REPLY in time"
	case codec.CodeNoRoute:
		return "responder is gone"
	case codec.CodeQueueFull:
		return "responder's queue is full"
	}
	return code.String()
}
