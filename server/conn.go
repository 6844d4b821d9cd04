package server

import (
	"net/netip"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/switchboard/switchboard/shard"
)

type connState uint8

const (
	stateHandshake connState = iota // accepted, waiting for HELLO
	stateActive                     // WELCOME sent
	stateClosing                    // ERROR or GOAWAY sent; input is ignored until close
	stateClosed                     // OnClose ran; gc is nil
)

// conn is one client connection. It is the gnet connection's context value and, like the
// gnet connection itself, owned by its event loop: no field may be touched elsewhere.
type conn struct {
	gc    gnet.Conn
	lp    *loop
	id    shard.ConnID
	state connState
	dirty bool // on lp.dirty: out holds bytes to flush
	// lastSeen is the loop tick (low 32 bits, compared modulo 2^32) of the last frame
	// received (idle timeout).
	lastSeen uint32
	// pending counts messages queued for this connection since its outbound side was
	// last seen empty; the slow-consumer cap applies to it.
	pending int32
	// inflight counts this connection's REQUESTs awaiting an outcome.
	inflight int32
	// name is the HELLO client name, shown to peers as the sender.
	name []byte
	// names are the names this connection registered; released when it closes.
	names []string
	// out collects frames produced during one callback; flushed with one write at its
	// end, then returned to the pool, so an idle connection holds no buffer.
	out *bytebufferpool.ByteBuffer
	// ip is the remote address, for per-IP accounting.
	ip netip.Addr
	// lim holds the per-connection rate buckets; nil when no per-connection rate is set.
	lim *connLimits
	// lastEmpty is the loop tick at which the outbound side was last seen empty, and
	// slowArmed says a slow-consumer timer is pending (SlowConsumerTimeout).
	lastEmpty uint32
	// hsTimer is the handshake timer, cancelled by HELLO so that its node is reused.
	hsTimer   timerHandle
	slowArmed bool
	// goneAway: GOAWAY was sent (drain).
	goneAway bool
}

// buf returns the connection's output buffer, taking one from the pool if needed, and
// puts the connection on its loop's dirty list.
func (c *conn) buf() *bytebufferpool.ByteBuffer {
	if c.out == nil {
		c.out = bufPool.Get()
	}
	if !c.dirty {
		c.dirty = true
		c.lp.dirty = append(c.lp.dirty, c)
	}
	return c.out
}

// outboundBytes is what is queued for this connection and not yet taken by its socket.
func (c *conn) outboundBytes() int {
	n := c.gc.OutboundBuffered()
	if c.out != nil {
		n += len(c.out.B)
	}
	return n
}

// flush writes the collected output. gnet writes what the socket takes and copies the
// rest into its outbound buffer, so the pooled buffer can go back at once. Write may
// close the connection (and run OnClose) on a socket error; out is detached first so
// OnClose never sees it.
func (c *conn) flush() {
	c.dirty = false
	b := c.out
	if b == nil {
		return
	}
	c.out = nil
	lp := c.lp
	if len(b.B) > 0 && c.state != stateClosed {
		if c.gc.OutboundBuffered() == 0 {
			c.lastEmpty = lp.tick32()
		}
		lp.stats.bytesOut.Add(uint64(len(b.B)))
		_, _ = c.gc.Write(b.B)
	}
	bufPool.Put(b)
	if c.state == stateClosed {
		return
	}
	if c.gc.OutboundBuffered() == 0 {
		lp.stats.pending.Add(int64(-c.pending))
		c.pending = 0
		c.lastEmpty = lp.tick32()
	} else if !c.slowArmed {
		// The socket did not take everything: watch that it drains in time.
		c.slowArmed = true
		lp.wheel.add(lp.ticks(lp.srv.cfg.SlowConsumerTimeout), timerSlow, c.id)
	}
}

var bufPool bytebufferpool.Pool
