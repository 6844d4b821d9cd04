package server

import (
	"math"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// dispatch handles one frame. It returns false when the connection is closing and the
// rest of its input must be ignored.
func (lp *loop) dispatch(c *conn, f codec.Frame, now int64) bool {
	lp.stats.framesByType[f.Type].Add(1)
	if c.state == stateHandshake {
		if f.Type != codec.TypeHello {
			lp.closeWithError(c, codec.CodeHelloRequired, "send HELLO first")
			return false
		}
		return lp.hello(c, f)
	}
	// A peer that sends but never reads its answers is a slow consumer: every frame may
	// earn one (OK, ERROR, PONG, a refusal), so none is handled once what waits for the
	// connection has reached max-pending-bytes.
	if c.queuedBytes() >= lp.srv.cfg.MaxPendingBytes && lp.answersBlocked(c) {
		return false
	}
	if f.Type < 0x80 && f.Type.Known() && !controlFrame(f.Type) && !lp.admit(c, f, now) {
		return true
	}
	if c.user != 0 && !lp.permitted(c, f) { // credentials: FORBIDDEN, connection stays open
		return true
	}
	switch f.Type {
	case codec.TypePing, codec.TypeEcho:
		t := codec.TypePong
		if f.Type == codec.TypeEcho {
			t = codec.TypeEchoReply
		}
		b := c.buf()
		b.B = codec.AppendFrame(b.B, t, 0, f.Corr, f.Body)
	case codec.TypeSend:
		return lp.send(c, f)
	case codec.TypeRequest:
		return lp.request(c, f)
	case codec.TypeReply:
		return lp.reply(c, f)
	case codec.TypeRegister:
		return lp.register(c, f)
	case codec.TypeUnregister:
		return lp.unregister(c, f)
	case codec.TypeGoodbye:
		if len(f.Body) != 0 { // PROTOCOL 4: GOODBYE's body must be empty
			lp.closeWithError(c, codec.CodeBadFrame, "malformed GOODBYE: body must be empty")
			return false
		}
		lp.closeWhenLanded(c) // what followed GOODBYE is ignored, not left to reset the close
		return false
	case codec.TypeHello:
		lp.closeWithError(c, codec.CodeBadFrame, "HELLO after WELCOME")
		return false
	default:
		lp.closeWithError(c, codec.CodeUnknownType, "unknown frame type "+f.Type.String())
		return false
	}
	return true
}

func (lp *loop) hello(c *conn, f codec.Frame) bool {
	h, err := codec.ParseHello(f.Body)
	switch {
	case err != nil:
		lp.closeWithError(c, codec.CodeBadFrame, "malformed HELLO")
		return false
	case h.Version != codec.Version:
		lp.closeWithError(c, codec.CodeUnsupportedVersion, "this server speaks version 1")
		return false
	case !lp.authenticate(c, h, f.Corr): // closing, or waiting for a verifier (auth.go)
		return false
	case lp.srv.draining.Load():
		lp.closeWithError(c, codec.CodeShuttingDown, "node is draining")
		return false
	}
	lp.welcome(c, string(h.Name), f.Corr)
	return true
}

// welcome completes the handshake of an authenticated connection; name is its client
// name, owned by c from now on.
func (lp *loop) welcome(c *conn, name string, corr uint32) {
	cfg := &lp.srv.cfg
	c.setName(name)
	c.state = stateActive
	lp.srv.leaveHandshake(c)
	b := c.buf()
	b.B = codec.AppendWelcome(b.B, corr, codec.Welcome{
		Version:        codec.Version,
		ConnID:         uint64(c.id),
		MaxFrame:       uint32(cfg.MaxFrame),
		PingIntervalMs: pingIntervalMs(cfg.IdleTimeout),
		MaxPending:     uint32(cfg.MaxPending),
		ServerID:       lp.srv.serverID,
	})
	// The connection's timer turns from the handshake timeout into the idle timeout.
	if cfg.IdleTimeout > 0 {
		lp.timers.set(c.id.Slot(), lp.tickCeil(lp.srv.clock()+int64(cfg.IdleTimeout)))
	} else { // 0 = off: no idle timer
		lp.timers.stop(c.id.Slot())
	}
}

// pingIntervalMs is WELCOME's ping interval for an idle timeout: a third of it in
// milliseconds, 0 only when the idle timeout is off (at least 1 otherwise, so that a short
// one is not announced as none), at most what the field holds.
func pingIntervalMs(idle time.Duration) uint32 {
	if idle <= 0 {
		return 0
	}
	return uint32(min(max(idle/3/time.Millisecond, 1), math.MaxUint32))
}
