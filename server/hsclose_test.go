package server

import (
	"testing"

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

// TestHandshakeTimeoutWaveSpread: silent connections that all time out in the same tick are
// closed at most hsClosesPerTick per tick, the rest on the following ticks, so that a
// flood accepted in one burst does not stall the loop in one go; none is closed before its
// tick, and every one is closed with HANDSHAKE_TIMEOUT in the end.
func TestHandshakeTimeoutWaveSpread(t *testing.T) {
	for _, n := range []int{1, hsClosesPerTick, hsClosesPerTick + 1, 3*hsClosesPerTick + 5} {
		t.Run("", func(t *testing.T) {
			_, loops := newTestLoops(t, 1)
			lp := loops[0]
			const due = 10 // ticks from now
			var fcs []*closingConn
			for range n {
				fc := &closingConn{}
				c := &conn{outbox: outbox{gc: fc, lp: lp}, state: stateHandshake}
				id, err := lp.conns.Add(c)
				if err != nil {
					t.Fatal(err)
				}
				c.id = id
				lp.gates.open(id)
				lp.timers.set(id.Slot(), lp.timers.now+due) // as OnOpen arms it
				fcs = append(fcs, fc)
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
				got := closed() - before
				want := min(hsClosesPerTick, n-before)
				if got != want {
					t.Fatalf("tick %d after the timeout: %d closed, want %d (of %d)", tick, got, want, n)
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
				f, _, err := codec.Decode(fc.out, codec.DefaultMaxFrame)
				var e codec.ErrorBody
				if err == nil && f.Type == codec.TypeError {
					e, err = codec.ParseError(f.Body)
				}
				if err != nil || f.Type != codec.TypeError || e.Code != codec.CodeHandshakeTimeout {
					t.Fatalf("connection %d was sent %x (%v), want ERROR HANDSHAKE_TIMEOUT", i, fc.out, err)
				}
			}
		})
	}
}

// TestHandshakeTimeoutWhileVerifying: a connection whose HELLO is still being checked off
// the loop (stateVerifying) when its handshake timeout comes is closed with
// HANDSHAKE_TIMEOUT like one that sent nothing (docs/LIMITS.md: "or not checked in time"),
// not left open until the check ends.
func TestHandshakeTimeoutWhileVerifying(t *testing.T) {
	_, loops := newTestLoops(t, 1)
	lp := loops[0]
	fc := &closingConn{}
	c := &conn{outbox: outbox{gc: fc, lp: lp}, state: stateVerifying}
	id, err := lp.conns.Add(c)
	if err != nil {
		t.Fatal(err)
	}
	c.id = id
	lp.gates.open(id)
	start := lp.timers.now
	lp.timers.set(id.Slot(), start+3)
	lp.advance(start + 2)
	if fc.closed {
		t.Fatal("closed a tick before its handshake timeout")
	}
	lp.advance(start + 3)
	if !fc.closed {
		t.Fatal("a connection still being verified at its handshake timeout was left open")
	}
	fr, n, err := codec.Decode(fc.out, codec.DefaultMaxFrame)
	var e codec.ErrorBody
	if err == nil && fr.Type == codec.TypeError {
		e, err = codec.ParseError(fr.Body)
	}
	if err != nil || n != len(fc.out) || fr.Type != codec.TypeError || e.Code != codec.CodeHandshakeTimeout {
		t.Fatalf("sent %x (%v); want one ERROR HANDSHAKE_TIMEOUT", fc.out, err)
	}
	if st := lp.srv.Stats(); st.HandshakeTimeouts != 1 {
		t.Fatalf("handshake timeouts counted %d, want 1", st.HandshakeTimeouts)
	}
}
