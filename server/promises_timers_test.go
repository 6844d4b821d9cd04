package server

import (
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
)

// The timeout promises: a timeout never fires before its duration (it may fire up to a
// tick late, plus the loop's lag). Each check measures with the real clock from before
// the client wrote the frame (or dialled), which is earlier than when the server received
// it, so elapsed >= timeout is a safe lower bound. There is no upper bound: a loaded
// machine may be late, and lateness is not what these tests are about.
//
// The ticks are coarse (50 ms, the default) and the starts are staggered across a tick,
// so that a timer armed by counting ticks from the wheel's current tick, which began
// before the frame arrived, would fire early.

const timerTick = 50 * time.Millisecond

// stagger is the gap between the starts of successive timers: not a divisor of the
// tick, so that the starts fall at different phases of it.
const stagger = 7 * time.Millisecond

func TestRequestTimeoutNeverEarly(t *testing.T) {
	s := startServer(t, Config{TickInterval: timerTick})
	registered(t, s, "mute") // never replies
	c := connect(t, s, "c")
	const n = 12
	var sent [n + 1]time.Time
	var timeout [n + 1]time.Duration
	for corr := 1; corr <= n; corr++ {
		timeout[corr] = 100*time.Millisecond + time.Duration(corr)*13*time.Millisecond
		sent[corr] = time.Now()
		c.Write(codec.AppendRequest(nil, uint32(corr), "mute", uint32(timeout[corr]/time.Millisecond), nil))
		time.Sleep(stagger)
	}
	for range n {
		f, _ := c.ExpectError(codec.CodeTimeout)
		if f.Corr == 0 || f.Corr > n {
			t.Fatalf("TIMEOUT corr %d; want 1..%d", f.Corr, n)
		}
		if el := time.Since(sent[f.Corr]); el < timeout[f.Corr] {
			t.Errorf("REQUEST corr %d with timeout %v answered TIMEOUT after %v: early", f.Corr, timeout[f.Corr], el)
		}
	}
}

func TestHandshakeTimeoutNeverEarly(t *testing.T) {
	const hs = 200 * time.Millisecond
	s := startServer(t, Config{TickInterval: timerTick, HandshakeTimeout: hs})
	const n = 8
	peers := make([]*rawpeer.Peer, n)
	dialled := make([]time.Time, n)
	for i := range peers {
		dialled[i] = time.Now()
		peers[i] = rawpeer.Dial(t, s.Addr().String())
		time.Sleep(stagger)
	}
	for i, p := range peers {
		p.ExpectError(codec.CodeHandshakeTimeout)
		if el := time.Since(dialled[i]); el < hs {
			t.Errorf("connection %d: HANDSHAKE_TIMEOUT %v after dialling; want at least %v", i, el, hs)
		}
	}
}

// TestHandshakeTimeoutWaveNeverEarly: silent connections dialled together onto one loop
// time out in the same tick, more than one chunk of them (hsclose.go), so most are closed
// by the chunks that follow the tick. Each gets one whole ERROR HANDSHAKE_TIMEOUT, then the
// end of the stream, never before its timeout.
func TestHandshakeTimeoutWaveNeverEarly(t *testing.T) {
	const hs = 200 * time.Millisecond
	s := startServer(t, Config{Loops: 1, TickInterval: timerTick, HandshakeTimeout: hs})
	const n = 3*hsCloseChunk + 1
	peers := make([]*rawpeer.Peer, n)
	dialled := make([]time.Time, n)
	for i := range peers {
		dialled[i] = time.Now()
		peers[i] = rawpeer.Dial(t, s.Addr().String())
	}
	for i, p := range peers {
		p.ExpectError(codec.CodeHandshakeTimeout)
		if el := time.Since(dialled[i]); el < hs {
			t.Errorf("connection %d: HANDSHAKE_TIMEOUT %v after dialling; want at least %v", i, el, hs)
		}
		if f, err := p.Read(); err == nil {
			t.Errorf("connection %d: a %v frame after its HANDSHAKE_TIMEOUT; want the end of the stream", i, f.Type)
		}
	}
	if got := s.Stats().HandshakeTimeouts; got != n {
		t.Errorf("handshake timeouts counted %d; want %d", got, n)
	}
}

func TestIdleTimeoutNeverEarly(t *testing.T) {
	const idle = 200 * time.Millisecond
	s := startServer(t, Config{TickInterval: timerTick, IdleTimeout: idle})
	const n = 8
	peers := make([]*rawpeer.Peer, n)
	last := make([]time.Time, n)
	for i := range peers {
		peers[i] = connect(t, s, "idle")
	}
	// Each peer's last frame is a PING, sent at a different phase of the tick.
	for i, p := range peers {
		last[i] = time.Now()
		p.Write(codec.AppendFrame(nil, codec.TypePing, 0, 1, nil))
		time.Sleep(stagger)
	}
	for i, p := range peers {
		p.Expect(codec.TypePong)
		if _, e := p.ExpectError(codec.CodeTimeout); e.Flags&codec.ErrFlagClosing == 0 {
			t.Errorf("connection %d: idle TIMEOUT without the closing flag", i)
		}
		if el := time.Since(last[i]); el < idle {
			t.Errorf("connection %d: idle TIMEOUT %v after its last frame; want at least %v", i, el, idle)
		}
	}
}
