package server

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// coalesceRig is one loop with senders and a target "t", with write-coalesce set, the
// held output's timer replaced by one that does nothing (the test calls heldTimer.fire
// itself, so that nothing runs on another goroutine) and the loop's round clock (the
// gap before a round, coalesceGap) set by the test: it stands still unless the test
// moves it (pause).
type coalesceRig struct {
	t       *testing.T
	lp      *loop
	now     int64 // the round clock, nanoseconds
	el      *taskLoop
	h       *handler
	senders []*trafficConn
	target  *trafficConn
	msg     int // bytes of one MESSAGE frame to t
}

func newCoalesceRig(t *testing.T, limit int) *coalesceRig {
	s, loops := newTestLoops(t, 1)
	s.cfg.WriteCoalesce = limit
	lp := loops[0]
	el := &taskLoop{}
	lp.el = el
	lp.heldTimer.t.Stop()
	lp.heldTimer.t = time.AfterFunc(time.Hour, func() {}) // Reset by flushRound; fires nothing
	t.Cleanup(func() { lp.heldTimer.stop() })
	r := &coalesceRig{t: t, lp: lp, el: el, h: &handler{srv: s}, now: int64(time.Second)}
	lp.roundClock = func() int64 { return r.now }
	for _, name := range []string{"t", "s1", "s2", "s3", "s4", "s5"} {
		c, _ := addConn(t, lp, name)
		tc := &trafficConn{c: c}
		c.gc = tc
		mustRegister(t, s, name, c)
		if name == "t" {
			r.target = tc
		} else {
			r.senders = append(r.senders, tc)
		}
	}
	r.msg = len(codec.AppendMessage(nil, 0, []byte("s1"), []byte("12345678")))
	return r
}

// round runs one poll round: each of the first n senders sends one SEND (no ACK, so it
// gets no answer) to t in its own read callback, then the tasks queued run.
func (r *coalesceRig) round(n int) {
	for _, tc := range r.senders[:n] {
		tc.in = codec.AppendSend(nil, 0, 0, "t", []byte("12345678"))
		r.h.OnTraffic(tc)
	}
	r.el.run()
}

// pause moves the round clock on by d: the loop slept that long before its next round.
func (r *coalesceRig) pause(d time.Duration) { r.now += int64(d) }

// warm runs the loop's first busy round, which comes after a pause (the loop was
// started a second before it) and is written at once; then it forgets t's writes. The
// rounds after it are saturated while the test does not pause.
func (r *coalesceRig) warm() {
	r.t.Helper()
	r.round(coalesceMinWork)
	r.expect("a busy round after a pause", 1, coalesceMinWork)
	r.target.writes, r.target.written = 0, 0
}

// expect checks t's writes and bytes so far.
func (r *coalesceRig) expect(step string, writes, msgs int) {
	r.t.Helper()
	if got := r.target.writes; got != writes || r.target.written != msgs*r.msg {
		r.t.Fatalf("%s: t got %d writes, %d bytes; want %d writes, %d messages (%d bytes)",
			step, got, r.target.written, writes, msgs, msgs*r.msg)
	}
}

// expectQueued checks what t's outbox and its loop count as waiting for t: msgs messages
// of r.msg bytes (the fake socket takes every byte written).
func (r *coalesceRig) expectQueued(step string, msgs int) {
	r.t.Helper()
	o := &r.target.c.outbox
	if o.pending != int32(msgs) || o.queuedBytes() != msgs*r.msg || r.lp.stats.pending.Load() != int64(msgs) {
		r.t.Fatalf("%s: t's pending %d, queued bytes %d, loop's pending %d; want %d, %d, %d",
			step, o.pending, o.queuedBytes(), r.lp.stats.pending.Load(), msgs, msgs*r.msg, msgs)
	}
}

// TestWriteCoalesce: with write-coalesce set, after a busy round that the loop went into
// within coalesceGap of its last end-of-round flush, a round's small output for a
// connection waits one round and goes out with the next round's in one write; it waits
// no more than one round, or the timer if no round comes; a round that is not busy, one
// the loop went into after a longer pause, and output at the limit are written at once;
// with write-coalesce off nothing waits.
func TestWriteCoalesce(t *testing.T) {
	t.Run("held one round, written with the next", func(t *testing.T) {
		r := newCoalesceRig(t, 16<<10)
		r.warm()
		r.round(coalesceMinWork)
		r.expect("after a busy round", 0, 0)
		if !r.lp.heldTimer.armed.Load() {
			t.Fatal("held output without its timer armed")
		}
		// Held output counts in the caps as any output not yet written (LIMITS.md):
		// max-pending, max-pending-bytes and the node's queued messages (max-queue).
		r.expectQueued("held", coalesceMinWork)
		r.round(coalesceMinWork) // busy again: what waited is written, with this round's
		r.expect("after the next busy round", 1, 2*coalesceMinWork)
		r.expectQueued("written", 0)
		r.round(1) // a quiet round writes at once
		r.expect("after a quiet round", 2, 2*coalesceMinWork+1)
		r.round(coalesceMinWork) // busy, and no pause before it: held
		r.expect("after a busy round without a pause", 2, 2*coalesceMinWork+1)
		r.round(1)
		r.expect("after the round that followed", 3, 3*coalesceMinWork+2)
	})
	t.Run("a busy round after a pause is written at once", func(t *testing.T) {
		r := newCoalesceRig(t, 16<<10)
		r.warm()
		r.pause(coalesceGap) // the longest pause that still counts as none
		r.round(coalesceMinWork)
		r.expect("after a pause of coalesceGap", 0, 0)
		r.round(1) // writes what waited
		r.expect("after the round that followed", 1, coalesceMinWork+1)
		r.pause(coalesceGap + 1)
		r.round(coalesceMinWork)
		r.expect("after a longer pause", 2, 2*coalesceMinWork+1)
	})
	t.Run("callbacks that queue no flush measure the pause again", func(t *testing.T) {
		r := newCoalesceRig(t, 16<<10)
		r.warm()
		// An echo callback right after the round's end, then another after a long pause,
		// then a busy round: the loop slept before that work, so it is written at once.
		for _, d := range []time.Duration{0, time.Millisecond} {
			r.pause(d)
			tc := r.senders[0]
			tc.in = codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("e"))
			r.h.OnTraffic(tc)
		}
		r.round(coalesceMinWork)
		r.expect("after a pause spent in echo callbacks", 1, coalesceMinWork)
	})
	t.Run("the timer writes what waits", func(t *testing.T) {
		r := newCoalesceRig(t, 16<<10)
		r.warm()
		r.round(coalesceMinWork)
		r.expect("after a busy round", 0, 0)
		r.lp.heldTimer.fire() // as heldTimer does when no round came
		r.el.run()
		r.expect("after the timer", 1, coalesceMinWork)
		if r.lp.heldTimer.armed.Load() {
			t.Error("timer still armed after it fired")
		}
	})
	t.Run("rounds that write nothing at their end do not add up", func(t *testing.T) {
		r := newCoalesceRig(t, 16<<10)
		r.warm()
		// Echo callbacks answer their own peer at once and queue no end-of-round flush:
		// many of them, each its own round, then one SEND, make a round of one callback.
		for i := range 2 * coalesceMinWork {
			tc := r.senders[i%len(r.senders)]
			tc.in = codec.AppendFrame(nil, codec.TypeEcho, 0, 1, []byte("e"))
			r.h.OnTraffic(tc)
			r.el.run()
		}
		r.round(1)
		r.expect("after echo rounds and one SEND", 1, 1)
	})
	t.Run("output at the limit is written at once", func(t *testing.T) {
		r := newCoalesceRig(t, 1)
		r.warm()
		r.round(coalesceMinWork)
		r.expect("after a busy round", 1, coalesceMinWork)
	})
	t.Run("off", func(t *testing.T) {
		r := newCoalesceRig(t, 0)
		for i := 1; i <= 3; i++ {
			r.round(len(r.senders))
			r.expect("after busy rounds", i, i*len(r.senders))
		}
		if r.lp.heldTimer.armed.Load() {
			t.Error("timer armed with write-coalesce off")
		}
	})
	t.Run("a close writes what waits", func(t *testing.T) {
		r := newCoalesceRig(t, 16<<10)
		r.warm()
		r.round(coalesceMinWork)
		r.expect("after a busy round", 0, 0)
		r.h.OnClose(r.target, nil)
		r.expect("after the close", 1, coalesceMinWork)
		r.lp.flushDirty() // the closed connection's entry is still listed: nothing more
		r.expect("after the next flush", 1, coalesceMinWork)
	})
}

func (f *trafficConn) SetContext(any) {} // as gnet's, for OnClose
