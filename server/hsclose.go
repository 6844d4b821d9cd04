package server

import (
	"time"

	"github.com/switchboard/switchboard/codec"
)

// A wave of handshake timeouts (a flood of silent connections accepted together, timing
// out together) is closed in chunks: at most hsCloseChunk in the tick that finds them due,
// the rest of the tick's share (hsClosesPerTick) hsCloseChunk at a time, hsCloseGap
// apart, in tasks that gnet runs after a poll round's I/O. A close is an ERROR write, a
// read of what the peer sent and a close, ~40 µs with the kernel's work for the FIN (a
// profile): 64 in one go, ~2.6 ms once a tick, put the connected clients' p99 at
// 1.5-4.6 ms in the seconds of such a wave, against 0.5-0.8 ms before the flood
// (docs/BENCHMARKS.md, "Handshake flood: closes in chunks"). A chunk of 8 is ~0.3 ms,
// and the clients' frames are read between chunks. The tick's share still bounds the
// rate (64 per tick); the last chunk of a tick comes ~8 ms after it (7 timer waits), so
// the timeouts fire no more than that later.
const (
	hsCloseChunk = 8
	hsCloseGap   = time.Millisecond
)

// closeHandshakeTimeout closes c, still in its handshake, for its handshake timeout.
func (lp *loop) closeHandshakeTimeout(c *conn) {
	lp.stats.handshakeTimeouts.Add(1)
	lp.closeWithError(c, codec.CodeHandshakeTimeout, "no HELLO in time")
}

// armHandshakeCloses sets hsTimer if handshake timeouts wait in hsDue. On the loop.
func (lp *loop) armHandshakeCloses() {
	if len(lp.hsDue) > 0 {
		lp.hsTimer.arm(hsCloseGap)
	}
}

// closeDueHandshakes closes the next hsCloseChunk connections of hsDue that are still in
// their handshake (one welcomed meanwhile is left alone: its timeout came late, not
// early; one still being verified is closed, as in the tick), and sets hsTimer for the
// rest. On the loop (hsTimer's task).
func (lp *loop) closeDueHandshakes() {
	n := min(hsCloseChunk, len(lp.hsDue))
	for _, id := range lp.hsDue[:n] {
		if c, ok := lp.conns.Get(id); ok && (c.state == stateHandshake || c.state == stateVerifying) {
			lp.closeHandshakeTimeout(c)
		}
	}
	left := copy(lp.hsDue, lp.hsDue[n:])
	clear(lp.hsDue[left:])
	lp.hsDue = lp.hsDue[:left]
	lp.flushDirty()
	lp.armHandshakeCloses()
}
