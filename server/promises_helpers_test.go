package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// Helpers for the promise tests (promises_*_test.go). They drive the server over loopback
// sockets only, with one exception kept in holdRing.

// outcome is one whole frame a peer should read next: its type, its corr and, for an
// ERROR, its code.
type outcome struct {
	typ  codec.Type
	corr uint32
	code codec.ErrorCode // ERROR only
}

func errOutcome(corr uint32, code codec.ErrorCode) outcome {
	return outcome{typ: codec.TypeError, corr: corr, code: code}
}

// expectOutcomes reads len(want) whole frames from p and fails the test unless they are
// want, in this order. It returns the frames for further checks of their bodies.
func expectOutcomes(t testing.TB, p *rawpeer.Peer, want ...outcome) []codec.Frame {
	t.Helper()
	var got []codec.Frame
	for i, w := range want {
		f, err := p.Read()
		if err != nil {
			t.Fatalf("frame %d: reading %v corr %d: %v", i, w.typ, w.corr, err)
		}
		got = append(got, f)
		var code codec.ErrorCode
		reason := ""
		if f.Type == codec.TypeError {
			e, err := codec.ParseError(f.Body)
			if err != nil {
				t.Fatalf("frame %d: bad ERROR body: %v", i, err)
			}
			code, reason = e.Code, e.Reason
		}
		if f.Type != w.typ || f.Corr != w.corr || code != w.code {
			t.Fatalf("frame %d: got %v corr %d code %v (%q); want %v corr %d code %v",
				i, f.Type, f.Corr, code, reason, w.typ, w.corr, w.code)
		}
	}
	return got
}

// pingBarrier sends PING corr and expects its PONG as the very next frame: everything the
// server produced for p on p's loop before handling the PING has been read by then.
func pingBarrier(t testing.TB, p *rawpeer.Peer, corr uint32) {
	t.Helper()
	p.Write(codec.AppendFrame(nil, codec.TypePing, 0, corr, nil))
	expectOutcomes(t, p, outcome{typ: codec.TypePong, corr: corr})
}

// loopOf is the event loop a peer's connection lives on (its conn id from WELCOME).
func loopOf(p *rawpeer.Peer) int { return shard.ConnID(p.ConnID).Loop() }

// connectOn connects a peer named name that the server placed on event loop idx; peers
// placed on another loop are closed. gnet spreads enrolled connections over its loops, so
// a few dials are enough.
func connectOn(t testing.TB, s *Server, name string, idx int) *rawpeer.Peer {
	t.Helper()
	want := s.Stats().Connections + 1
	var extra []*rawpeer.Peer
	defer func() {
		for _, q := range extra {
			_ = q.Conn.Close()
		}
		// Misplaced peers leave before the test goes on, so that they count nowhere.
		waitFor(t, "misplaced peers to close", func() bool { return s.Stats().Connections <= want })
	}()
	for range 32 {
		p := connect(t, s, name)
		if loopOf(p) == idx {
			return p
		}
		// Kept open until a peer lands on idx: a balancer that picks the least loaded loop
		// would otherwise choose the same loop every time.
		extra = append(extra, p)
	}
	t.Fatalf("no connection landed on loop %d in 32 dials", idx)
	return nil
}

// registeredOn is registered (a peer that owns name) on event loop idx.
func registeredOn(t testing.TB, s *Server, name string, idx int) *rawpeer.Peer {
	t.Helper()
	p := connectOn(t, s, name, idx)
	p.Write(codec.AppendName(nil, codec.TypeRegister, 1, name))
	expectOutcomes(t, p, outcome{typ: codec.TypeOK, corr: 1})
	return p
}

// expectMessage reads one frame and fails unless it is a MESSAGE from peer from (its conn
// id and client name) carrying payload.
func expectMessage(t testing.TB, p, from *rawpeer.Peer, fromName, payload string) {
	t.Helper()
	f := p.Expect(codec.TypeMessage)
	id, name, body, err := codec.ParseMessage(f.Body)
	if err != nil || id != from.ConnID || string(name) != fromName || string(body) != payload {
		t.Fatalf("MESSAGE from %x %q payload %q (err %v); want from %x %q payload %q",
			id, name, body, err, from.ConnID, fromName, payload)
	}
}

// breakerOnFirstFailure is a limits configuration whose node breaker opens on the first
// failed REQUEST, for tests that check that a failure is recorded: the next REQUEST is
// refused with CIRCUIT_OPEN. Zones are set out of reach (the error rate over
// BreakerErrorRate is a zone input too: at most 1/0.01 = 100) and the per-target breakers
// are off (error rate 1): with them on, a target's failures count in its breaker only.
func breakerOnFirstFailure() limits.Config {
	return limits.Config{BreakerMinRequests: 1, BreakerOpenFor: time.Hour, TargetErrorRate: 1,
		ZoneYellow: 1e3, ZoneOrange: 2e3, ZoneRed: 3e3}
}

// expectBreakerOpen sends a REQUEST to name and fails unless the node breaker refuses it.
func expectBreakerOpen(t testing.TB, p *rawpeer.Peer, corr uint32, name string) {
	t.Helper()
	p.Write(codec.AppendRequest(nil, corr, name, 0, nil))
	f := expectOutcomes(t, p, errOutcome(corr, codec.CodeCircuitOpen))
	if e, _ := codec.ParseError(f[0].Body); e.Reason != "node circuit breaker open: requests are failing" {
		t.Fatalf("CIRCUIT_OPEN reason %q; want the node breaker's", e.Reason)
	}
}

// holdRing keeps event loop idx from draining its cross-loop ring until release is called
// (or the test ends); the loop keeps serving its sockets meanwhile, closes included. This
// is the one internal touch of the promise tests: the order "a delivery is queued, then
// its target goes away, then the ring is drained" cannot be arranged from the outside. It
// uses the doors other loops use: it takes the loop's drain-scheduled flag (producers then
// push without scheduling a drain) and gives it back through EventLoop.Execute.
func holdRing(t testing.TB, s *Server, idx int) (release func()) {
	t.Helper()
	lp := s.loopAt(idx)
	if lp == nil {
		t.Fatalf("loop %d does not exist yet: connect to it first", idx)
	}
	// Wait for any drain already scheduled to start: taking the flag from false means none is.
	waitFor(t, "loop's ring idle", func() bool { return lp.armed.CompareAndSwap(false, true) })
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := lp.el.Execute(context.Background(), lp.drainRun); err != nil {
				t.Errorf("release ring of loop %d: %v", idx, err)
			}
		})
	}
	t.Cleanup(release)
	return release
}
