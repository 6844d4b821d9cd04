package server

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/shard"
)

// drainStep is the interval between close batches during a drain (jittered ±25%).
const drainStep = 100 * time.Millisecond

// Drain puts the node in lame-duck mode and empties it over period:
//
//  1. It stops admitting: /readyz turns 503, new connections get ERROR SHUTTING_DOWN
//     (the listener stays open so that they are told, not reset), HELLO gets the same.
//  2. Every connection gets GOAWAY with the configured peers as places to go. A client
//     that honours it (the Go client does) finishes its calls, says GOODBYE and moves.
//     Each loop writes them goAwayChunk connections at a time (goAwayAll), handling its
//     events in between: the closes of the clients told first among them.
//  3. The remaining connections are closed in batches every ~100 ms (jittered), sized so
//     the last batch closes at the end of period; clients do not all reconnect at once.
//
// Drain returns when no connection is left, or ctx.Err() if ctx ends first. Call
// Shutdown afterwards to stop the loops. Safe for concurrent use; a second Drain only
// waits.
func (s *Server) Drain(ctx context.Context, period time.Duration) error {
	s.mu.Lock()
	started := s.started && !s.closed
	s.mu.Unlock()
	if !started {
		return nil
	}
	if !s.draining.CompareAndSwap(false, true) {
		return s.waitConns(ctx)
	}
	s.log.Info("draining", "connections", s.connCount.Load(), "period", period)
	if s.onDrain != nil {
		s.onDrain()
	}
	deadline := time.Now().Add(period)
	if err := s.goAwayAll(ctx, s.goAwayMsg("node draining")); err != nil {
		return err
	}

	// Batches start one step after GOAWAY, so clients that honour it can leave first.
	for s.connCount.Load() > 0 {
		step := time.Duration(float64(drainStep) * (0.75 + 0.5*rand.Float64()))
		t := time.NewTimer(max(0, min(step, time.Until(deadline))))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		left := time.Until(deadline)
		if left <= 0 {
			s.onEachLoop(func(lp *loop) { lp.closeSome(-1) })
			break
		}
		// Close a share of what remains so that the last batch lands at the deadline.
		steps := max(1, int(left/step))
		n := int(s.connCount.Load())
		perLoop := max(1, (n+steps-1)/steps/max(1, int(s.nloops.Load())))
		s.onEachLoop(func(lp *loop) { lp.closeSome(perLoop) })
	}
	err := s.waitConns(ctx)
	s.log.Info("drained", "err", err)
	return err
}

// Draining reports whether Drain or Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

func (s *Server) goAwayMsg(reason string) codec.GoAway {
	return codec.GoAway{Reason: reason, Addrs: s.peerAddrs()}
}

// SetPeers sets the client addresses of the other nodes that GOAWAY and TRY_OTHER refusals
// suggest, best first, in place of the configured `peers` (as many are sent as fitAddrs
// keeps). A cluster calls it as nodes come, go, drain and change load; nil goes back to
// the configured list. Safe for concurrent use; addrs must not be changed afterwards.
func (s *Server) SetPeers(addrs []string) {
	if addrs == nil {
		s.livePeers.Store(nil)
		return
	}
	addrs = fitAddrs(addrs)
	s.livePeers.Store(&addrs)
}

// peerAddrs is what GOAWAY and TRY_OTHER refusals suggest: SetPeers's list if it was
// called, the configured peers otherwise. The slice is shared: do not modify it.
func (s *Server) peerAddrs() []string {
	if p := s.livePeers.Load(); p != nil {
		return *p
	}
	return s.peers
}

// splitPeers splits the comma-separated `peers` setting (as many as fitAddrs keeps).
func splitPeers(list string) []string {
	var addrs []string
	for _, p := range strings.Split(list, ",") {
		if p = strings.TrimSpace(p); p != "" {
			addrs = append(addrs, p)
		}
	}
	return fitAddrs(addrs)
}

// addrBudget is the room for addresses in a frame that carries them, so that such a frame
// is at most handshakeMaxFrame long whatever its reason (up to 255 bytes): refusals go out
// before WELCOME has told the client max_frame, and every max_frame is at least that.
// The largest such frame is an ERROR: its length field counts type, flags and corr
// (MinLen), then code, retry-after, flags, the reason's str8 and the address count.
const addrBudget = handshakeMaxFrame - (codec.MinLen + 2 + 4 + 1 + 1 + 255 + 1)

// fitAddrs returns the longest prefix of addrs (best first) that fits in addrBudget
// (each address takes 1 + its length) and in the count byte, leaving out addresses a str8
// cannot carry (over 255 bytes).
func fitAddrs(addrs []string) []string {
	out, room := addrs[:0:0], addrBudget
	for _, a := range addrs {
		if len(a) == 0 || len(a) > 255 {
			continue
		}
		if room -= 1 + len(a); room < 0 || len(out) == 255 {
			break
		}
		out = append(out, a)
	}
	return out
}

// onEachLoop runs fn on every loop (through Execute) and returns without waiting.
func (s *Server) onEachLoop(fn func(lp *loop)) {
	s.eachLoop(func(lp *loop) {
		_ = lp.el.Execute(s.baseCtx, gnet.RunnableFunc(func(context.Context) error {
			fn(lp)
			lp.flushDirty()
			return nil
		}))
	})
}

// waitConns polls until every connection has closed or ctx ends.
func (s *Server) waitConns(ctx context.Context) error {
	for s.connCount.Load() > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond) // waiting for sockets, not synchronising tests
	}
	return nil
}

// goAwayChunk is how many connections a loop writes GOAWAY to in one task of a drain
// (goAwayAll).
const goAwayChunk = 256

// goAwayAll sends g to every active connection of every loop, goAwayChunk connections per
// task of each loop: the next task is queued once the last has run, so each loop handles
// its events in between. It returns when every loop is done, or ctx.Err() if ctx ends
// first.
//
// In one task, a loop did nothing else until every one of its connections had been
// written to: a node drained with 15,883 connections, among six nodes and their clients
// on two cores, spent 2.3 s in that task, each write waking a client that took its GOAWAY
// and closed. Those closes waited for the task's end, and so did the release of their
// names: clients re-registering elsewhere found them still held (docs/BENCHMARKS.md, "A
// whole node drained: GOAWAY in chunks").
func (s *Server) goAwayAll(ctx context.Context, g codec.GoAway) error {
	var wg sync.WaitGroup
	s.eachLoop(func(lp *loop) {
		wg.Go(func() {
			for more := true; more; {
				done := make(chan bool, 1)
				err := lp.el.Execute(s.baseCtx, gnet.RunnableFunc(func(context.Context) error {
					m := lp.goAway(g, goAwayChunk)
					lp.flushDirty()
					done <- m
					return nil
				}))
				if err != nil { // shutting down
					return
				}
				select {
				case more = <-done:
				case <-ctx.Done():
					return
				case <-s.baseCtx.Done():
					return
				}
				if more && s.goAwayPaced != nil {
					s.goAwayPaced()
				}
			}
		})
	})
	wg.Wait()
	return ctx.Err()
}

// goAway sends GOAWAY to up to n active connections of the loop that have not had it (all
// when n < 0), and reports whether any is left without it.
func (lp *loop) goAway(g codec.GoAway, n int) (more bool) {
	lp.conns.Range(func(_ shard.ConnID, c *conn) bool {
		if c.state != stateActive || c.flags&flagGoneAway != 0 {
			return true
		}
		if n == 0 {
			more = true
			return false
		}
		c.flags |= flagGoneAway
		b := c.buf()
		b.B = codec.AppendGoAway(b.B, g)
		n--
		return true
	})
	return more
}

// closeSome closes up to n connections of the loop (all when n < 0) after flushing their
// output; gnet writes what it still buffers before closing each socket. Slow consumers
// already closing are left to finish within their grace, except when all must go (n < 0):
// then they are closed at once (closeSlowNow). A connection still in its handshake got no
// GOAWAY: it is told ERROR SHUTTING_DOWN (with the other nodes), as its HELLO would be.
func (lp *loop) closeSome(n int) {
	lp.conns.Range(func(_ shard.ConnID, c *conn) bool {
		if n == 0 {
			return false
		}
		if c.state.slowClosing() && n < 0 {
			lp.closeSlowNow(c)
			return true
		}
		if c.state == stateHandshake {
			lp.closeWithError(c, codec.CodeShuttingDown, "node is draining")
			n--
			return true
		}
		if c.state != stateActive {
			return true
		}
		if n < 0 { // the drain period is over: what is on its way is dropped
			lp.markClosing(c)
			c.flush()
			lp.closeSocket(c)
		} else {
			lp.closeWhenLanded(c)
		}
		n--
		return true
	})
}
