package server

import (
	"github.com/valyala/bytebufferpool"

	"github.com/switchboard/switchboard/codec"
)

// buf returns the connection's output buffer, taking one from the pool if needed, and
// puts the connection on its loop's dirty list.
func (c *conn) buf() *bytebufferpool.ByteBuffer {
	if c.out == nil {
		c.out = bufPool.Get()
	}
	if !c.dirty {
		c.dirty = true
		c.lp.dirty = append(c.lp.dirty, c)
	}
	return c.out
}

// outboundBytes is what is queued for this connection and not yet taken by its socket.
func (c *conn) outboundBytes() int {
	n := c.gc.OutboundBuffered()
	if c.out != nil {
		n += len(c.out.B)
	}
	return n
}

// flush writes the collected output. gnet writes what the socket takes and copies the
// rest into its outbound buffer, so the pooled buffer can go back at once. Write may
// close the connection (and run OnClose) on a socket error; out is detached first so
// OnClose never sees it.
func (c *conn) flush() {
	c.dirty = false
	b := c.out
	if b == nil {
		return
	}
	c.out = nil
	lp := c.lp
	if len(b.B) > 0 && c.state != stateClosed {
		if c.gc.OutboundBuffered() == 0 {
			c.lastEmpty = lp.tick32()
		}
		lp.stats.bytesOut.Add(uint64(len(b.B)))
		_, _ = c.gc.Write(b.B)
	}
	bufPool.Put(b)
	if c.state == stateClosed {
		return
	}
	if c.gc.OutboundBuffered() == 0 {
		lp.stats.pending.Add(int64(-c.pending))
		c.pending = 0
		c.lastEmpty = lp.tick32()
	} else if !c.slowArmed {
		// The socket did not take everything: watch that it drains in time.
		c.slowArmed = true
		lp.wheel.add(lp.ticks(lp.srv.cfg.SlowConsumerTimeout), timerSlow, c.id)
	}
}

// addPending counts one more message queued for c.
func (lp *loop) addPending(c *conn) {
	c.pending++
	lp.stats.pending.Add(1)
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

var bufPool bytebufferpool.Pool

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
