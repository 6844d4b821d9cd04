package server

import (
	"errors"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
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
		if p, ok := gc.Context().(*loopProbe); ok { // Start meeting the loops
			p.el = gc.EventLoop()
			return nil, gnet.None // held open until every loop has one
		}
		return nil, gnet.Close
	}
	lp := h.srv.loopFor(gc.EventLoop())
	id, err := lp.conns.Add(c)
	if err != nil { // 16M connections on one loop: cannot happen below the fd cap
		h.srv.connCount.Add(-1)
		h.srv.leaveHandshake(c)
		gc.SetContext(nil)
		return nil, gnet.Close
	}
	c.gc, c.lp, c.id = gc, lp, id
	h.srv.gnetConn.dropAddrs(gc) // gc.RemoteAddr() is nil from here on: the address is c.ip
	lp.gates.open(id)
	c.lastSeen = lp.tick32()
	lp.stats.accepted.Add(1)
	lp.timers.set(id.Slot(), lp.tickCeil(h.srv.clock()+int64(h.srv.cfg.HandshakeTimeout)))
	return nil, gnet.None
}

// OnTraffic handles a connection's input (traffic).
func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	h.srv.traffic(gc)
	return gnet.None
}

// traffic decodes and dispatches at most FramesPerWake frames, writes this connection's
// answers with one write, and queues one end-of-round flush for what the frames routed to
// other connections of the loop. Bytes of an incomplete frame stay in gnet's inbound
// buffer, and so does the input of a connection paused for route credit (credit.go). On
// gc's loop: from OnTraffic, or when a paused connection resumes.
func (s *Server) traffic(gc gnet.Conn) {
	c, _ := gc.Context().(*conn)
	if c != nil && c.state == stateVerifying {
		// Input waits in gnet's buffer until the HELLO is verified (auth.go), but not
		// without bound: gnet grows that buffer for whatever arrives, and this client has
		// not shown a credential yet.
		if gc.InboundBuffered() > verifyInputMax {
			c.lp.closeWithError(c, codec.CodeBadFrame, "too much input before WELCOME: wait for it")
			c.lp.flushDirty()
		}
		return
	}
	if c == nil || c.state != stateActive && c.state != stateHandshake {
		_, _ = gc.Discard(-1) // closing: ignore input until the close lands
		return
	}
	lp := c.lp
	lp.countWork()
	if c.flags&flagPaused != 0 && !lp.mayRead(c) {
		c.lastSeen = lp.tick32() // it sent something: not idle
		return
	}
	if nextFrameShort(gc, s.frameMax(c)) {
		return
	}
	buf, _ := gc.Peek(-1)
	var now int64
	if s.g.rated.Load() {
		now = s.clock()
	}
	off, more := 0, false
	for frames := 0; off < len(buf); frames++ {
		if frames == s.cfg.FramesPerWake {
			more = true
			break
		}
		f, n, err := codec.Decode(buf[off:], s.frameMax(c)) // a HELLO just read may end the handshake
		if err != nil {
			if !errors.Is(err, codec.ErrShort) {
				lp.stats.badFrames.Add(1)
				code, reason := frameError(c, buf, off, err)
				lp.closeWithError(c, code, reason)
			}
			break
		}
		off += n
		if !lp.dispatch(c, f, now) || c.flags&flagPaused != 0 {
			break
		}
	}
	lp.wakeOwners() // the loops this callback routed messages to
	if off > 0 && c.state != stateClosed {
		lp.stats.bytesIn.Add(uint64(off))
		_, _ = gc.Discard(off) // Discard(0) would drop everything
		c.lastSeen = lp.tick32()
	}
	// Output waits for the end of this poll round (flushLater), so a connection that
	// many senders write to in one round, itself one of them, gets one write, not one per
	// message. A callback that only answered its own peer (echo) writes at once: waiting
	// would cost the loop a wake-up of its own.
	if c.dirty && lp.onlyDirty(&c.outbox) {
		c.flush()
	}
	lp.flushLater()
	if more && c.state == stateActive && c.flags&flagPaused == 0 {
		_ = gc.Wake(nil) // more whole frames wait: come back after the others had a turn
	}
}

// frameMax is the largest frame c may send now: until WELCOME, frames are small (a HELLO).
func (s *Server) frameMax(c *conn) int {
	if c.state == stateHandshake {
		return handshakeMaxFrame
	}
	return s.cfg.MaxFrame
}

// nextFrameShort reports whether gnet holds only part of the connection's next frame, by
// its length prefix alone. Then traffic returns at once and gnet keeps the bytes in its
// inbound buffer: a Peek of everything would copy all of them into a new buffer on every
// read, and a frame larger than one read (64 KiB by default) arrives in many. That was
// quadratic in the frame's size: 1 MB messages made gnet allocate 14 GB in a few seconds,
// 52 msgs/s (docs/BENCHMARKS.md, "Large messages"). A prefix that Decode would refuse is
// not short: traffic reports it.
func nextFrameShort(gc gnet.Conn, maxFrame int) bool {
	have := gc.InboundBuffered()
	if have < codec.PrefixLen {
		return true
	}
	p, err := gc.Peek(codec.PrefixLen)
	if err != nil {
		return false
	}
	n, err := codec.FrameLen(p, maxFrame)
	return err == nil && have < n
}

// OnClose releases everything the connection held: its table slot, its names, its buffer.
func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	c, _ := gc.Context().(*conn)
	if c == nil || c.state == stateClosed {
		return gnet.None
	}
	lp := c.lp
	if c.dirty && c.state == stateActive {
		// Output that waited for the round's end (OnTraffic) goes out before the close:
		// gnet writes what it still buffers, then closes the socket.
		c.flush()
	}
	lp.gates.shut(c.id, gateGone)
	lp.conns.Remove(c.id)
	lp.timers.stop(c.id.Slot())
	lp.releaseNames(c)
	h.srv.g.perIP.Release(c.ip.Addr())
	h.srv.leaveHandshake(c)
	if len(lp.claims) > 0 {
		delete(lp.claims, c.id) // outcomes still to come release their names (finishClaim)
	}
	if len(lp.remoteIncoming) > 0 {
		delete(lp.remoteIncoming, c.id)
	}
	c.release()
	c.state = stateClosed
	gc.SetContext(nil)
	h.srv.connCount.Add(-1)
	lp.stats.closed.Add(1)
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
