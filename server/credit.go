package server

import (
	"sync/atomic"

	"github.com/switchboard/switchboard/shard"
)

// Route credit: flow control for messages between loops.
//
// A SEND's OK means the message was admitted for its target (gate.go), not that it
// arrived, so a sender's window of unanswered SENDs does not bound what waits in the
// rings towards other loops: when a target loop falls behind, the senders' loops keep
// admitting and the rings fill up to max-queue, where every sender gets QUEUE_FULL, and
// what waits there is the routed messages' tail latency (docs/BENCHMARKS.md, "Routed
// delivery"). With route-credit k, a connection may have k messages on their way to
// other loops (pushed, not landed yet); the message that reaches k pauses the
// connection: its loop reads none of its further frames (they wait in gnet's inbound
// buffer, and a windowed client, getting no answers, stops sending) until the target
// loops have landed all but k/2 of them. The answers to frames already handled are not
// held back. So the rings hold at most k messages per sending connection, and a sender
// is slowed instead of refused.
//
// The connection's credit word (slotWords.credit, in its own loop's gates) holds
//
//	bits 63-48  generation of the connection in the slot (its ConnID's)
//	bit  40     paused: set by the owning loop, cleared by the lander that resumes it
//	bits 39-0   messages on their way
//
// The owning loop adds before each push (route) and pauses the connection when the count
// reaches k (spent); the loops that land its messages subtract (refund). The
// lander whose refund leaves k/2 or fewer with the paused bit set clears the bit and sends
// the owning loop a dResume, which runs the connection's input again. The owning loop sets
// the bit only while more than k/2 are on their way, so some later refund always sees it.
//
// A paused connection's input is kept only up to creditInputMax bytes: past that (a
// sender that does not wait for answers, such as fire-and-forget SENDs) the loop reads
// it anyway, so that gnet's inbound buffer, which gnet grows without bound, stays small.

const (
	creditPaused = 1 << gateStateShift
	// creditInputMax is how much input a paused connection may have waiting before its
	// loop reads it anyway.
	creditInputMax = 64 << 10
	// verifyInputMax is how much a client may send after its HELLO while the HELLO's
	// credentials are checked (before WELCOME): past it the connection is closed with
	// BAD_FRAME.
	verifyInputMax = 256 << 10
)

// creditWord returns the credit word of connection id, which lives on this loop; nil if no
// connection ever opened in its slot. Safe for concurrent use.
func (g *gates) creditWord(id shard.ConnID) *atomic.Uint64 {
	if s := g.slot(id); s != nil {
		return &s.credit
	}
	return nil
}

// spent pauses c if the messages it has on their way to other loops (counted in its
// credit word w before their push: route) have used up its credit. On c's loop, after the
// push.
func (lp *loop) spent(c *conn, w *atomic.Uint64) {
	k := uint64(lp.srv.cfg.RouteCredit)
	if w.Load()&gateCountMask < k {
		return
	}
	for {
		v := w.Load()
		if v&gateCountMask <= k/2 {
			return // landed meanwhile
		}
		if v&creditPaused != 0 {
			// Paused already: c is being read past its pause because its input reached
			// creditInputMax (mayRead). Once what waits is under that again, it is
			// paused again; the lander that clears the bit resumes it.
			if c.gc.InboundBuffered() < creditInputMax {
				lp.pause(c)
			}
			return
		}
		if w.CompareAndSwap(v, v|creditPaused) {
			lp.pause(c)
			lp.stats.creditPauses.Add(1)
			return
		}
	}
}

// pause stops reading c until its credit word's paused bit is cleared. On c's loop.
func (lp *loop) pause(c *conn) {
	c.flags |= flagPaused
	if c.flags&flagListed == 0 { // for resumeLost
		c.flags |= flagListed
		lp.paused = append(lp.paused, c.id)
	}
}

// refunds collects the landings of one drain per sender: one callback's messages to a
// loop sit together in its ring, so a run of them from one sender costs its credit word
// one atomic operation instead of one each (the word's cache line is on the sender's
// core). On the landing loop.
type refunds struct {
	from shard.ConnID
	n    uint64
}

// add counts one landed message of from's. A from of 0 spent no credit (route-credit
// off, or a message from another node).
func (r *refunds) add(lp *loop, from shard.ConnID) {
	if from != r.from {
		r.settle(lp)
		r.from = from
	}
	if from != 0 {
		r.n++
	}
}

// settle gives what add counted back to its sender (refund).
func (r *refunds) settle(lp *loop) {
	if r.n > 0 {
		lp.refund(r.from, r.n)
	}
	r.from, r.n = 0, 0
}

// refund counts n messages of connection from (on another loop) as landed, and resumes
// from if it was paused and has k/2 or fewer left on their way. On the landing loop.
func (lp *loop) refund(from shard.ConnID, n uint64) {
	owner := lp.srv.loopAt(from.Loop())
	if owner == nil {
		return
	}
	w := owner.gates.creditWord(from)
	if w == nil {
		return
	}
	half := uint64(lp.srv.cfg.RouteCredit) / 2
	for {
		v := w.Load()
		if gateGen(v) != from.Gen() || v&gateCountMask < n {
			return // the sender is gone and its slot reused (or reset)
		}
		left := v - n
		resume := left&creditPaused != 0 && left&gateCountMask <= half
		if resume {
			left &^= creditPaused
		}
		if !w.CompareAndSwap(v, left) {
			continue
		}
		if resume && !owner.push(delivery{kind: dResume, target: from}) {
			// The owner's ring is full: its tick finds the bit cleared (resumeLost).
			lp.stats.creditResumesLost.Add(1)
		}
		return
	}
}

// mayRead reports whether paused connection c may be read now: its credit came back
// (the bit cleared; its dResume may still be on the way), or its waiting input reached
// creditInputMax. Either way c is no longer paused. On c's loop.
func (lp *loop) mayRead(c *conn) bool {
	w := lp.gates.creditWord(c.id)
	switch {
	case w.Load()&creditPaused == 0:
	case c.gc.InboundBuffered() >= creditInputMax:
		lp.stats.creditOverruns.Add(1)
	default:
		return false
	}
	c.flags &^= flagPaused
	return true
}

// resume runs the input of paused connection id again (a dResume). On its loop.
func (lp *loop) resume(id shard.ConnID) {
	c, ok := lp.conns.Get(id)
	if !ok || c.flags&flagPaused == 0 {
		return // closed, or read again already (mayRead)
	}
	if lp.gates.creditWord(id).Load()&creditPaused != 0 {
		// Paused again since this resume was sent: read again (mayRead) when the bit was
		// cleared, it spent its credit again. The refund that clears the bit this time
		// sends a resume of its own.
		return
	}
	c.flags &^= flagPaused
	lp.srv.traffic(c.gc)
}

// resumeLost resumes the paused connections whose dResume was lost to a full ring, and
// forgets those that are no longer paused. On the loop, every tick.
func (lp *loop) resumeLost() {
	if len(lp.paused) == 0 {
		return
	}
	list := lp.paused
	lp.paused = lp.pausedSpare[:0] // resume may pause a connection again: it appends here
	for _, id := range list {
		c, ok := lp.conns.Get(id)
		if !ok {
			continue
		}
		switch {
		case c.flags&flagPaused == 0:
			c.flags &^= flagListed
		case lp.gates.creditWord(id).Load()&creditPaused == 0:
			c.flags &^= flagListed
			lp.resume(id)
		default:
			lp.paused = append(lp.paused, id)
		}
	}
	clear(list)
	lp.pausedSpare = list[:0]
}
