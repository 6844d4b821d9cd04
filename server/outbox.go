package server

import (
	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// outbox is one connection's output path: the frames produced for it during a callback or
// a poll round, the count of messages queued for it that its socket has not taken yet, and
// the slow-consumer watch over them. Every write to a connection goes through its outbox;
// the caps on what may wait (MaxPending messages, MaxPendingBytes bytes) are checked here.
//
// It is embedded in conn and owned, like the conn, by the connection's loop. gc, lp and id
// are the connection's; gc is nil once the connection has closed.
type outbox struct {
	gc gnet.Conn
	lp *loop
	id shard.ConnID
	// frames collects what one callback or round produces; written with one write by
	// flush, then returned to the pool, so an idle connection holds no buffer.
	frames *bytebufferpool.ByteBuffer
	// pending counts messages queued since the outbound side was last seen empty; the
	// slow-consumer cap applies to it. Its sum over a loop is loopStats.pending.
	pending int32
	// lastEmpty is the loop tick at which the outbound side was last seen empty.
	lastEmpty uint32
	// dirty: on lp.dirty, frames holds bytes to flush.
	dirty bool
	// slowArmed: a slow-consumer timer is pending (SlowConsumerTimeout).
	slowArmed bool
}

// buf returns the buffer to append one frame to, taking one from the pool if needed, and
// puts the outbox on its loop's dirty list. Every frame sent goes through one call, which
// is what switchboard_frames_out_total counts.
func (o *outbox) buf() *bytebufferpool.ByteBuffer {
	o.lp.stats.framesOut.Add(1)
	if o.frames == nil {
		o.frames = bufPool.Get()
	}
	if !o.dirty {
		o.dirty = true
		o.lp.dirty = append(o.lp.dirty, o)
	}
	return o.frames
}

// queuedBytes is what waits for this connection and its socket has not taken: gnet's
// outbound buffer plus frames not yet flushed.
func (o *outbox) queuedBytes() int {
	n := o.gc.OutboundBuffered()
	if o.frames != nil {
		n += len(o.frames.B)
	}
	return n
}

// full reports whether the connection is over its caps: one more message must not be
// queued for it (the slow-consumer policy applies).
func (o *outbox) full() bool {
	cfg := &o.lp.srv.cfg
	return int(o.pending) >= cfg.MaxPending || o.queuedBytes() >= cfg.MaxPendingBytes
}

// addMessage counts one more message queued for this connection.
func (o *outbox) addMessage() {
	o.pending++
	o.lp.stats.pending.Add(1)
}

// flush writes the collected frames. gnet writes what the socket takes and copies the
// rest into its outbound buffer, so the pooled buffer can go back at once. Write may
// close the connection (and run OnClose) on a socket error; frames is detached first so
// release never sees it.
func (o *outbox) flush() {
	o.dirty = false
	b := o.frames
	if b == nil {
		return
	}
	o.frames = nil
	lp := o.lp
	if len(b.B) > 0 && o.gc != nil {
		if o.gc.OutboundBuffered() == 0 {
			o.lastEmpty = lp.tick32()
		}
		lp.stats.bytesOut.Add(uint64(len(b.B)))
		_, _ = o.gc.Write(b.B)
	}
	bufPool.Put(b)
	if o.gc == nil {
		return
	}
	if o.gc.OutboundBuffered() == 0 {
		o.emptied()
	} else if !o.slowArmed {
		// The socket did not take everything: watch that it drains in time.
		o.slowArmed = true
		lp.wheel.add(lp.ticks(lp.srv.cfg.SlowConsumerTimeout), timerSlow, o.id)
	}
}

// emptied records that the socket has taken everything: nothing is pending any more.
func (o *outbox) emptied() {
	o.lp.stats.pending.Add(int64(-o.pending))
	o.pending = 0
	o.lastEmpty = o.lp.tick32()
}

// stalled runs when the slow-consumer timer e fires. It reports true when output has
// waited longer than SlowConsumerTimeout without the socket taking all of it; otherwise it
// disarms the watch (the outbound side is empty) or re-arms it for the rest of the time.
func (o *outbox) stalled(e timerEntry) bool {
	lp := o.lp
	if o.gc.OutboundBuffered() == 0 {
		o.slowArmed = false
		o.lastEmpty = lp.tick32()
		return false
	}
	return lp.expired(e, o.lastEmpty, lp.srv.cfg.SlowConsumerTimeout)
}

// release gives back what the outbox holds when its connection closes.
func (o *outbox) release() {
	o.lp.stats.pending.Add(int64(-o.pending))
	o.pending = 0
	if o.frames != nil {
		bufPool.Put(o.frames)
		o.frames = nil
	}
	o.gc = nil
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
		o := lp.dirty[i]
		lp.dirty[i] = nil
		o.flush()
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
