package server

import (
	"context"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
)

// closingConn is a fakeConn that keeps what was written and records its close.
type closingConn struct {
	fakeConn
	out    []byte
	closed bool
}

func (f *closingConn) Write(p []byte) (int, error) { f.out = append(f.out, p...); return len(p), nil }
func (f *closingConn) Close() error                { f.closed = true; return nil }

// addHandshakeConn adds a connection in state to lp's table, its timer armed for tick at
// as OnOpen arms the handshake timeout, and returns its fake gnet connection.
func addHandshakeConn(t *testing.T, lp *loop, state connState, at uint64) *closingConn {
	t.Helper()
	fc := &closingConn{}
	c := &conn{outbox: outbox{gc: fc, lp: lp}, state: state}
	id, err := lp.conns.Add(c)
	if err != nil {
		t.Fatal(err)
	}
	c.id = id
	lp.gates.open(id)
	lp.timers.set(id.Slot(), at)
	return fc
}

// sentHandshakeTimeout reports whether fc was sent exactly one ERROR HANDSHAKE_TIMEOUT.
func (f *closingConn) sentHandshakeTimeout() bool {
	fr, n, err := codec.Decode(f.out, codec.DefaultMaxFrame)
	if err != nil || n != len(f.out) || fr.Type != codec.TypeError {
		return false
	}
	e, err := codec.ParseError(fr.Body)
	return err == nil && e.Code == codec.CodeHandshakeTimeout
}

// chanLoop is an event loop whose Execute hands the task to the test, which runs it as
// the loop would (safe for concurrent use: hsTimer's function calls it on its goroutine).
type chanLoop struct {
	gnet.EventLoop
	tasks chan gnet.Runnable
}

func (l *chanLoop) Execute(_ context.Context, r gnet.Runnable) error {
	l.tasks <- r
	return nil
}

// TestHandshakeTimeoutWaveSpread: silent connections that all time out in the same tick are
// closed at most hsClosesPerTick per tick, the rest on the following ticks; within a tick,
// at most hsCloseChunk in the tick itself and the rest hsCloseChunk at a time in tasks that
// hsTimer queues, so that a flood accepted in one burst does not stall the loop in one go.
// None is closed before its tick, and every one is closed with HANDSHAKE_TIMEOUT in the end.
func TestHandshakeTimeoutWaveSpread(t *testing.T) {
	for _, n := range []int{1, hsCloseChunk, hsCloseChunk + 1, hsClosesPerTick, hsClosesPerTick + 1, 3*hsClosesPerTick + 5} {
		t.Run("", func(t *testing.T) {
			_, loops := newTestLoops(t, 1)
			lp := loops[0]
			el := &chanLoop{tasks: make(chan gnet.Runnable, 1)}
			lp.el = el
			t.Cleanup(func() { lp.hsTimer.stop() })
			const due = 10 // ticks from now
			var fcs []*closingConn
			for range n {
				fcs = append(fcs, addHandshakeConn(t, lp, stateHandshake, lp.timers.now+due))
			}
			closed := func() (k int) {
				for _, fc := range fcs {
					if fc.closed {
						k++
					}
				}
				return k
			}
			start := lp.timers.now
			lp.advance(start + due - 1)
			if k := closed(); k != 0 {
				t.Fatalf("%d closed a tick before the timeout", k)
			}
			for tick := uint64(0); closed() < n; tick++ {
				before := closed()
				lp.advance(start + due + tick)
				want := min(hsClosesPerTick, n-before)
				if got := closed() - before; got != min(hsCloseChunk, want) {
					t.Fatalf("tick %d after the timeout: %d closed in the tick, want %d (of %d)", tick, got, min(hsCloseChunk, want), n)
				}
				// The rest of the tick's share, one chunk per task of hsTimer's.
				for closed()-before < want {
					var task gnet.Runnable
					select {
					case task = <-el.tasks:
					case <-time.After(10 * time.Second):
						t.Fatalf("tick %d: %d of %d closed, and hsTimer queued no task for the rest", tick, closed()-before, want)
					}
					chunkStart := closed()
					_ = task.Run(context.Background())
					if got := closed() - chunkStart; got == 0 || got > hsCloseChunk {
						t.Fatalf("a task closed %d, want 1 to %d", got, hsCloseChunk)
					}
				}
				if got := closed() - before; got != want {
					t.Fatalf("tick %d after the timeout: %d closed, want %d (of %d)", tick, got, want, n)
				}
				if len(lp.hsDue) != 0 || lp.hsTimer.armed.Load() {
					t.Fatalf("tick %d: its share closed, yet %d wait and the timer is set: %v", tick, len(lp.hsDue), lp.hsTimer.armed.Load())
				}
			}
			st := lp.srv.Stats()
			if st.HandshakeTimeouts != uint64(n) {
				t.Fatalf("handshake timeouts counted %d, want %d", st.HandshakeTimeouts, n)
			}
			wantDeferred := uint64(0)
			for left := n - hsClosesPerTick; left > 0; left -= hsClosesPerTick {
				wantDeferred += uint64(left)
			}
			if st.HandshakeTimeoutsDeferred != wantDeferred {
				t.Fatalf("deferred %d, want %d", st.HandshakeTimeoutsDeferred, wantDeferred)
			}
			for i, fc := range fcs {
				if !fc.sentHandshakeTimeout() {
					t.Fatalf("connection %d was sent %x, want ERROR HANDSHAKE_TIMEOUT", i, fc.out)
				}
			}
		})
	}
}

// TestHandshakeTimeoutChunkSparesWelcomed: a connection whose handshake timeout came due in
// a wave, waiting for its chunk, that is welcomed meanwhile (its HELLO was read between two
// chunks) is not closed: the timeout would come late, and the connection is no longer in
// its handshake. One that closed meanwhile is not counted as a timeout.
func TestHandshakeTimeoutChunkSparesWelcomed(t *testing.T) {
	_, loops := newTestLoops(t, 1)
	lp := loops[0]
	lp.hsTimer.t.Stop()
	lp.hsTimer.t = time.AfterFunc(time.Hour, func() {}) // Reset by advance; fires nothing
	t.Cleanup(func() { lp.hsTimer.stop() })
	start := lp.timers.now
	var fcs []*closingConn
	for range hsCloseChunk + 2 {
		fcs = append(fcs, addHandshakeConn(t, lp, stateHandshake, start+1))
	}
	lp.advance(start + 1)
	if len(lp.hsDue) != 2 || !lp.hsTimer.armed.Load() {
		t.Fatalf("%d wait for a chunk (timer set: %v), want 2 and the timer set", len(lp.hsDue), lp.hsTimer.armed.Load())
	}
	welcomed, _ := lp.conns.Get(lp.hsDue[0])
	welcomed.state = stateActive // as WELCOME leaves it
	gone := lp.hsDue[1]
	goneConn, _ := lp.conns.Get(gone)
	lp.conns.Remove(gone) // closed by its peer meanwhile
	goneConn.state = stateClosed
	spared := map[*closingConn]bool{welcomed.gc.(*closingConn): true, goneConn.gc.(*closingConn): true}
	lp.hsTimer.armed.Store(false) // as hsTimer.fire does before queuing the task
	lp.closeDueHandshakes()
	for i, fc := range fcs {
		if !spared[fc] && !fc.closed {
			t.Fatalf("connection %d, in the tick's first chunk, not closed", i)
		}
		if spared[fc] && (fc.closed || len(fc.out) != 0) {
			t.Fatalf("connection %d, welcomed or gone before its chunk, was sent %x and closed: %v", i, fc.out, fc.closed)
		}
	}
	if st := lp.srv.Stats(); st.HandshakeTimeouts != hsCloseChunk {
		t.Fatalf("handshake timeouts counted %d, want %d", st.HandshakeTimeouts, hsCloseChunk)
	}
	if len(lp.hsDue) != 0 || lp.hsTimer.armed.Load() {
		t.Fatalf("%d still wait (timer set: %v)", len(lp.hsDue), lp.hsTimer.armed.Load())
	}
}

// TestHandshakeTimeoutWhileVerifying: a connection whose HELLO is still being checked off
// the loop (stateVerifying) when its handshake timeout comes is closed with
// HANDSHAKE_TIMEOUT like one that sent nothing (docs/LIMITS.md: "or not checked in time"),
// not left open until the check ends.
func TestHandshakeTimeoutWhileVerifying(t *testing.T) {
	_, loops := newTestLoops(t, 1)
	lp := loops[0]
	start := lp.timers.now
	fc := addHandshakeConn(t, lp, stateVerifying, start+3)
	lp.advance(start + 2)
	if fc.closed {
		t.Fatal("closed a tick before its handshake timeout")
	}
	lp.advance(start + 3)
	if !fc.closed {
		t.Fatal("a connection still being verified at its handshake timeout was left open")
	}
	if !fc.sentHandshakeTimeout() {
		t.Fatalf("sent %x; want one ERROR HANDSHAKE_TIMEOUT", fc.out)
	}
	if st := lp.srv.Stats(); st.HandshakeTimeouts != 1 {
		t.Fatalf("handshake timeouts counted %d, want 1", st.HandshakeTimeouts)
	}
}
