package server

import (
	"syscall"
	"time"

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
// What waits is counted where it really is: bytes in frames (not yet written) plus gnet's
// outbound buffer (written, not yet taken by the socket). gnet says only how many bytes it
// still holds, not which messages, so the messages are counted against a mark in the
// written stream (backlog): those in frames, those written after the mark, and those
// written before it until the socket has taken every byte before the mark; then the mark
// moves to the end of what is written. The count is exact whenever gnet's buffer is seen
// empty, and otherwise over by at most the messages before the mark that the socket has
// already taken, which were waiting when the mark was set: a reader that keeps taking
// its output is counted at no more than about twice what waits for it. The mark's tick
// says how long output has waited: every byte before the mark was written by then, so a
// mark not passed SlowConsumerTimeout after its tick means output has waited that long
// (never earlier; later by at most the time the previous mark took to pass).
//
// It is embedded in conn and owned, like the conn, by the connection's loop. gc, lp and id
// are the connection's; gc is nil once the connection has closed.
type outbox struct {
	gc gnet.Conn
	lp *loop
	id shard.ConnID
	// frames collects what one callback or round produces; written with one write by
	// flush, then returned to the loop's free list (lp.out), so an idle connection holds
	// no buffer.
	frames *bytebufferpool.ByteBuffer
	// pending counts the messages that may wait: frameMsgs in frames, then those written
	// since the mark, then the backlog's before (see above); the caps apply to it. Its
	// sum over a loop is loopStats.pending.
	pending int32
	// markTick is the tick32 stamp by which everything before the mark was written (the
	// mark is the end of what was written when gnet's buffer was last seen empty or the
	// socket was last seen past the previous mark).
	markTick uint32
	// frameMsgs counts the messages in frames.
	frameMsgs int32
	// dirty: on lp.dirty, frames holds bytes to flush.
	dirty bool
	// slowArmed: a slow-consumer timer is pending (SlowConsumerTimeout).
	slowArmed bool
	// backlogged: gnet's buffer held output when last seen; the mark is in
	// lp.backlogs[id].
	backlogged bool
	// held: flushRound let its frames wait a round (write coalescing); the next
	// end-of-round flush writes them whatever their size.
	held bool
}

// buf returns the buffer to append one frame to, taking one from the pool if needed, and
// puts the outbox on its loop's dirty list. Every frame sent goes through one call, which
// is what switchboard_frames_out_total counts (loop.framesOut, published by flushDirty).
func (o *outbox) buf() *bytebufferpool.ByteBuffer {
	o.lp.framesOut++
	if o.frames == nil {
		o.frames = o.lp.out.get()
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

// outFlushAt is the most output a connection's frames collect before the next message
// for it writes them (full): a connection that gets many messages in one callback or ring
// drain gets them in writes of about this size, not in one write at the round's end. One
// ring drain can land thousands of messages; collected whole, each target's buffer grew
// towards max-pending-bytes by doubling, and routing 4 KiB messages among 50 connections
// allocated ~130 MB a second in those regrowths even with a free list large enough for a
// round's buffers, which drove the heap zone RED (docs/BENCHMARKS.md, "Large messages").
const outFlushAt = 64 << 10

// full reports whether the connection is at its caps: one more message must not be
// queued for it (the slow-consumer policy applies). Output collected past outFlushAt is
// written first. Frames this loop has not written yet are not the reader's backlog (one
// callback or ring drain can queue more than the caps for a reader that keeps up): at a
// cap with frames waiting, they are written first and the caps judged on what the socket
// did not take. Either write may close the connection (a socket error); the caller checks
// its state afterwards.
func (o *outbox) full() bool {
	if o.frames != nil && len(o.frames.B) >= outFlushAt {
		o.flush()
		if o.gc == nil {
			return false
		}
	}
	if !o.atCaps() {
		return false
	}
	if o.frames == nil || len(o.frames.B) == 0 {
		return true
	}
	o.flush()
	return o.gc != nil && o.atCaps()
}

// answersBlocked judges a connection whose queued output has reached max-pending-bytes
// before one of its own frames is handled, as full judges a target: the frames this loop
// holds for it are written first, and if the socket has not taken enough of them it is a
// slow consumer. It reports whether the connection's input must stop (a slow consumer now,
// or closed by that write).
func (lp *loop) answersBlocked(c *conn) bool {
	c.flush()
	switch {
	case c.gc == nil || c.state != stateActive:
		return true
	case c.gc.OutboundBuffered() < lp.srv.cfg.MaxPendingBytes:
		return false
	}
	lp.slowConsumer(c)
	return true
}

func (o *outbox) atCaps() bool {
	cfg := &o.lp.srv.cfg
	o.sync()
	return int(o.pending) >= cfg.MaxPending || o.queuedBytes() >= cfg.MaxPendingBytes
}

// sync forgets the messages the socket has taken: all of them when gnet's buffer is
// empty (only those in frames still wait), those before the mark once the socket has
// taken every byte before it (the mark then moves to the end of what is written).
func (o *outbox) sync() {
	if o.backlogged {
		o.passed(0)
	}
}

// passed is sync for a backlogged connection to which flush has just written written
// more bytes (0 from sync): they count as written after the mark, then the mark is moved
// on if the socket has got past it. One map read, and a write only when the mark changes.
func (o *outbox) passed(written uint64) {
	n := o.gc.OutboundBuffered()
	if n == 0 {
		o.emptied()
		return
	}
	lp := o.lp
	bl := lp.backlogs[o.id]
	bl.since += written
	if uint64(n) <= bl.since {
		// gnet holds at most what was written since the mark: everything before it is
		// taken. The mark moves to the end of what is written.
		lp.stats.pending.Add(int64(-bl.before))
		o.pending -= bl.before
		bl = backlog{before: o.pending - o.frameMsgs}
		o.markTick = lp.tick32()
	} else if written == 0 {
		return // bytes before the mark still wait in gnet's buffer; nothing changed
	}
	lp.backlogs[o.id] = bl
}

// backlog is the mark of a connection whose socket has not taken everything written to
// it (gnet's outbound buffer is not empty), kept in its loop's backlogs by connection
// while that lasts, so that a connection without one pays nothing for it.
type backlog struct {
	since  uint64 // bytes written to gnet after the mark
	before int32  // messages written before the mark, counted in pending
}

// addMessage counts one more message queued for this connection.
func (o *outbox) addMessage() {
	o.pending++
	o.frameMsgs++
	o.lp.stats.pending.Add(1)
}

// flush writes the collected frames. gnet writes what the socket takes and copies the
// rest into its outbound buffer, so the pooled buffer can go back at once. Write may
// close the connection (and run OnClose) on a socket error; frames is detached first so
// release never sees it.
func (o *outbox) flush() {
	o.dirty = false
	o.held = false
	b := o.frames
	if b == nil {
		return
	}
	o.frames = nil
	lp := o.lp
	written := 0
	if len(b.B) > 0 && o.gc != nil {
		written = len(b.B)
		lp.stats.bytesOut.Add(uint64(len(b.B)))
		lp.publishFramesOut() // before the write: a peer that has a frame finds it counted
		_, _ = o.gc.Write(b.B)
	}
	o.frameMsgs = 0 // written (or gone with the connection)
	lp.out.put(b)
	if o.gc == nil {
		return
	}
	switch {
	case o.backlogged:
		o.passed(uint64(written))
	case o.gc.OutboundBuffered() == 0:
		o.emptied()
	default:
		// The socket did not take everything: mark the end of what is written, and watch
		// that the socket gets past the mark in time.
		lp.backlogs[o.id] = backlog{before: o.pending}
		lp.backlogPeak = max(lp.backlogPeak, len(lp.backlogs))
		o.backlogged = true
		o.markTick = lp.tick32()
	}
	if o.backlogged && !o.slowArmed {
		o.slowArmed = true
		lp.wheel.add(lp.ticks(lp.srv.cfg.SlowConsumerTimeout), timerSlow, o.id)
	}
}

// emptied records that the socket has taken everything written: only the messages in
// frames wait.
func (o *outbox) emptied() {
	if o.pending != o.frameMsgs {
		o.lp.stats.pending.Add(int64(o.frameMsgs - o.pending))
		o.pending = o.frameMsgs
	}
	o.dropMark()
}

// dropMark forgets the connection's mark, if it has one: the socket has taken everything
// written, or the connection has closed.
func (o *outbox) dropMark() {
	if o.backlogged {
		o.backlogged = false
		delete(o.lp.backlogs, o.id)
	}
}

// stalled runs when the slow-consumer timer e fires. It reports true when the socket has
// not got past the mark SlowConsumerTimeout after it was set (output waited that long
// untaken); otherwise it disarms the watch (the outbound side is empty) or re-arms it for
// the rest of the mark's time.
func (o *outbox) stalled(e timerEntry) bool {
	o.sync()
	if !o.backlogged {
		o.slowArmed = false
		return false
	}
	return o.lp.expired(e, o.markTick, o.lp.srv.cfg.SlowConsumerTimeout)
}

// release gives back what the outbox holds when its connection closes.
func (o *outbox) release() {
	o.lp.stats.pending.Add(int64(-o.pending))
	o.pending, o.frameMsgs = 0, 0
	o.dropMark()
	if o.frames != nil {
		o.lp.out.put(o.frames)
		o.frames = nil
	}
	o.gc = nil
}

// slowReason is the reason of every ERROR SLOW_CONSUMER. The ERROR may be queued well
// after the decision (behind messages still arriving from other loops), so it does not
// say which cap tripped; switchboard_slow_consumers_total counts both.
const slowReason = "output not read in time (max pending reached, or output waited the slow-consumer timeout untaken): read faster"

// slowConsumer closes c as a slow consumer, gracefully. What was accepted for c is still
// delivered, then ERROR SLOW_CONSUMER as a whole frame, then a clean close:
//
//  1. stateSlowLanding: the gate is shut (senders on every loop get QUEUE_FULL from now
//     on) and messages other loops admitted before that still land in c's output, over
//     the caps if need be: they were acknowledged. c's input is ignored.
//  2. stateSlowDraining: once none is on its way, ERROR SLOW_CONSUMER (CLOSING, RECONNECT)
//     is queued behind them. No frame follows it.
//  3. stateSlowLinger: once gnet's buffer is empty (checked every tick), the write side is
//     shut: the peer reads everything, then EOF. The socket stays open, its input read and
//     discarded, until the peer closes: closing with unread input would make the kernel
//     reset the connection and destroy what the peer has not read yet.
//
// The peer must keep reading meanwhile: when its socket has taken nothing for
// SlowConsumerTimeout (in step 3: when it has not closed within SlowConsumerTimeout of
// the EOF), or at the latest slowCloseMax timeouts after the decision, c is closed at once
// (closeSlowNow), with a reset if it had not taken everything.
func (lp *loop) slowConsumer(c *conn) {
	lp.stats.slowConsumers.Add(1)
	lp.srv.connLog.report(connLogEntry{ip: c.ip.Addr(), code: codec.CodeSlowConsumer, reason: slowReason})
	c.state = stateSlowLanding
	now := lp.clockTick()
	lp.closers = append(lp.closers, closer{id: c.id, since: now, progress: now, seen: now, out: c.gc.OutboundBuffered()})
	if lp.gates.shut(c.id, gateSlow) == 0 {
		lp.slowError(c)
	}
}

// slowCloseMax bounds a slow consumer's close: SlowConsumerTimeout times this, however
// steadily the peer reads (its backlog is bounded, but a trickle could take for ever).
const slowCloseMax = 4

// closer is a slow consumer's close in progress, on its loop's closers list.
type closer struct {
	id       shard.ConnID
	since    uint32 // tick of the decision
	progress uint32 // tick at which the socket last took output (or the EOF was sent)
	seen     uint32 // tick of the last look
	out      int    // gnet's buffered bytes at the last look
}

// slowError queues ERROR SLOW_CONSUMER behind everything accepted for c (step 2).
func (lp *loop) slowError(c *conn) {
	lp.sendError(c, 0, codec.CodeSlowConsumer, codec.ErrFlagClosing|codec.ErrFlagReconnect, slowReason)
	c.state = stateSlowDraining
}

// advanceClosers moves each slow consumer's close along (steps 2 and 3) and ends the ones
// past their time; on every tick, after the tick's output is flushed.
func (lp *loop) advanceClosers() {
	now := lp.clockTick()
	timeout := uint32(lp.ticks(lp.srv.cfg.SlowConsumerTimeout))
	kept := lp.closers[:0]
	for _, cl := range lp.closers {
		c, ok := lp.conns.Get(cl.id)
		if !ok || !c.state.slowClosing() {
			continue
		}
		if c.state == stateSlowLanding && lp.gates.onTheWay(cl.id) == 0 {
			// The last admission was taken back (its ring was full) rather than landing.
			if c.flags&flagLanding != 0 {
				lp.landedClose(c)
				if !c.state.slowClosing() {
					continue
				}
				if c.state == stateSlowLinger {
					cl.progress = now // lingerClose: the write side shut now
				}
			} else {
				lp.slowError(c)
				c.flush()
			}
			if c.state == stateClosed {
				continue
			}
		}
		if gap := now - cl.seen; gap > 1 {
			// The loop itself was late (a busy or starved process): it could not write
			// for the peer meanwhile, so that time does not count against the peer.
			cl.progress += gap - 1
		}
		cl.seen = now
		out := c.gc.OutboundBuffered()
		if out < cl.out {
			cl.progress = now
		}
		cl.out = out
		if c.state == stateSlowDraining && c.frames == nil && out == 0 {
			if err := syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR); err != nil {
				lp.markClosing(c) // the peer is gone already
				_ = c.gc.Close()
				continue
			}
			c.state = stateSlowLinger
			cl.progress = now
		}
		if now-cl.progress >= timeout || now-cl.since >= slowCloseMax*timeout {
			lp.closeSlowNow(c)
			continue
		}
		kept = append(kept, cl)
	}
	clear(lp.closers[len(kept):])
	lp.closers = kept
}

// closeSlowNow ends a slow consumer's close at once: at its deadline, or when the node
// shuts down. After step 3 everything was handed to the kernel, so a plain close delivers
// it; the input still buffered is read away first so that the close does not turn into a
// reset. Before that the peer has not taken what it was sent in time: the connection is
// reset (SO_LINGER 0), which frees the kernel's buffers at once and tells the peer its
// stream is incomplete rather than letting it take a cut frame for the end.
func (lp *loop) closeSlowNow(c *conn) {
	if c.state == stateSlowLinger {
		discardInput(c.gc.Fd())
	} else {
		_ = c.gc.SetLinger(0)
	}
	lp.markClosing(c)
	_ = c.gc.Close()
}

// discardInput reads what the socket holds (it is non-blocking), up to 1 MiB, and throws
// it away.
func discardInput(fd int) {
	var sink [4096]byte
	for range 256 {
		if n, err := syscall.Read(fd, sink[:]); n <= 0 || err != nil {
			return
		}
	}
}

// onlyDirty reports whether o is the only outbox with output waiting and no flush is
// queued: nothing else would be written at the round's end.
func (lp *loop) onlyDirty(o *outbox) bool {
	if lp.flushQueued {
		return false
	}
	lp.trimDirty()
	return len(lp.dirty) == 1 && lp.dirty[0] == o
}

// trimDirty drops entries flushed directly (no longer dirty) from the end of lp.dirty.
func (lp *loop) trimDirty() {
	for n := len(lp.dirty); n > 0 && !lp.dirty[n-1].dirty; n-- {
		lp.dirty[n-1] = nil
		lp.dirty = lp.dirty[:n-1]
	}
}

// flushLater queues one flush of the dirty connections behind the events gnet is
// handling in this poll round (gnet runs queued tasks after the round's I/O events, and
// a task queued by a task of that batch in the same batch).
func (lp *loop) flushLater() {
	// Entries flushed directly (a connection's own answers) are no longer dirty; drop
	// them from the end so that a callback that only answered its own peer queues nothing.
	lp.trimDirty()
	if len(lp.dirty) == 0 || lp.flushQueued {
		return
	}
	lp.flushQueued = true
	if err := lp.el.Execute(lp.srv.baseCtx, lp.flushRun); err != nil {
		lp.flushQueued = false
		lp.flushDirty() // engine stopping: write now
	}
}

// coalesceMinWork is how many read callbacks and ring drains a poll round must have had
// to count as busy, and coalesceGap how soon after the last end-of-round flush its first
// one must have come for the loop to count as saturated (it found work waiting rather
// than sleeping in epoll_wait). flushRound holds small output only after a busy round
// of a saturated loop, whose next round comes as soon. A busy round alone is common at
// moderate rates (arrivals bunch), and its loop may then sleep: holding after it put
// REQUEST p99 at 20,000 a second from 0.65–0.96 ms to 1.26–1.64 ms, and after two busy
// rounds in a row to 0.80–1.19 ms (docs/BENCHMARKS.md, "Write coalescing" and "only
// when the loop is saturated").
const (
	coalesceMinWork = 4
	coalesceGap     = 20 * time.Microsecond
)

// coalesceWait is what heldTimer is set to: the longest held output waits when no round
// follows. Go's timers are coarser than this in a process that is otherwise idle
// (~1.1 ms measured here), so a loop that goes quiet after a busy round writes what it
// held about a millisecond late.
const coalesceWait = 200 * time.Microsecond

// flushRound is the end-of-round flush (flushRun): one write per dirty connection. With
// WriteCoalesce set, after a busy round (coalesceMinWork) that the loop went into without
// a pause (coalesceGap), a connection whose frames are fewer than WriteCoalesce bytes
// and have not waited yet waits for the next end-of-round flush (or heldTimer, if no
// round comes first), so that what the next round routes to it goes out in the same
// write. In a busy loop a connection gets a few frames a round, and its write per round
// is much of routing's cost (docs/BENCHMARKS.md, "Write coalescing"). Output waits at
// most one round more: the next flush writes held output whatever its size, and every
// other flush (flushDirty) writes it too.
func (lp *loop) flushRound() {
	busy := lp.roundWork >= coalesceMinWork && lp.roundQuick
	lp.roundWork, lp.roundQuick = 0, false
	limit := lp.srv.cfg.WriteCoalesce
	if !busy || limit == 0 {
		lp.flushDirty()
		lp.endRound(limit)
		return
	}
	for i := 0; i < len(lp.dirty); i++ {
		o := lp.dirty[i]
		lp.dirty[i] = nil
		if o.dirty && !o.held && o.frames != nil && len(o.frames.B) < limit {
			o.held = true
			lp.held = append(lp.held, o)
			continue
		}
		o.flush() // may close the connection (OnClose)
	}
	lp.dirty = lp.dirty[:0]
	if len(lp.held) > 0 {
		lp.dirty, lp.held = lp.held, lp.dirty
		lp.heldTimer.arm(coalesceWait)
	}
	lp.endRound(limit)
}

// endRound notes when an end-of-round flush finished, for the next round's gap
// (countWork), while write coalescing is on.
func (lp *loop) endRound(limit int) {
	if limit > 0 {
		lp.roundEnd = lp.roundClock()
	}
}

// countWork counts one read callback or ring drain towards the round's work (flushRound).
// Work before anything waits to be written at a round's end (nothing dirty, no flush
// queued) starts the count again: a callback that only answered its own peer, or only
// handed messages to other loops, queues no end-of-round flush, and a quiet loop's
// callbacks must not add up to a busy round over many rounds. With write coalescing on,
// the round's first work, and any that starts the count again, measures the gap since
// the last end-of-round flush: after callbacks that queued no such flush it is longer,
// and the round does not count as entered without a pause.
func (lp *loop) countWork() {
	if !lp.flushQueued && len(lp.dirty) == 0 {
		lp.roundWork = 0
	}
	if lp.roundWork == 0 && lp.srv.cfg.WriteCoalesce > 0 {
		lp.roundQuick = lp.roundClock()-lp.roundEnd <= int64(coalesceGap)
	}
	lp.roundWork++
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

// publishFramesOut makes the loop's frames-out count visible to scrapes. On the loop.
func (lp *loop) publishFramesOut() {
	if lp.stats.framesOut.Load() != lp.framesOut {
		lp.stats.framesOut.Store(lp.framesOut)
	}
}

// msgPool holds the buffers that carry a frame from one loop to another (ring
// deliveries): taken on the sender's loop, given back on the target's. Output buffers
// have their own per-loop free list (outFree), so the two size distributions do not
// calibrate each other away.
var msgPool bytebufferpool.Pool

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
