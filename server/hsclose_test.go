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
				if !fc.sentHandshakeTimeout() {
					t.Fatalf("connection %d was sent %x, want ERROR HANDSHAKE_TIMEOUT", i, fc.out)
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
