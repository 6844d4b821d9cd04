package server

import (
	"net/netip"
	"syscall"
	"unsafe"

	"github.com/switchboard/switchboard/codec"
)

type connState uint8

const (
	stateHandshake connState = iota // accepted, waiting for HELLO
	stateActive                     // WELCOME sent
	// A slow consumer's close (outbox.go, slowConsumer), in this order; input is ignored.
	stateSlowLanding  // gate shut; messages admitted by other loops are still arriving
	stateSlowDraining // ERROR SLOW_CONSUMER queued after them; waiting for the socket to take all
	stateSlowLinger   // all taken, write side shut (FIN sent); waiting for the peer's close
	stateClosing      // ERROR or GOAWAY sent; input is ignored until close
	stateClosed       // OnClose ran; gc is nil
	stateVerifying    // HELLO being checked off the loop (auth.go); input waits in gnet
)

// slowClosing reports whether the connection is in a slow consumer's close.
func (s connState) slowClosing() bool { return s >= stateSlowLanding && s <= stateSlowLinger }

// conn is one client connection. It is the gnet connection's context value and, like the
// gnet connection itself, owned by its event loop: no field may be touched elsewhere.
type conn struct {
	outbox // gc, lp, id and the output path
	// nameData and nameLen are the HELLO client name (name), shown to peers as the
	// sender: a str8 on the wire, so at most 255 bytes, and kept in 9 bytes rather than a
	// 16-byte string header.
	nameData *byte
	// names are the names this connection registered (registered, addName), released
	// when it closes; nil until its first REGISTER, so that a connection that registers
	// nothing pays 8 bytes for the list instead of a 24-byte slice header.
	names *[]string
	// lim holds the per-connection rate buckets; nil when no per-connection rate is set.
	lim *connLimits
	// lastSeen is when the last frame was received, as a tick32 stamp (idle timeout).
	lastSeen uint32
	// inflight counts this connection's REQUESTs awaiting an outcome, and its SEND+ACKs
	// to other nodes awaiting theirs (remote.go).
	inflight int32
	// user is the account id of the credentials user this connection authenticated as;
	// 0 without credentials (auth.go).
	user    uint32
	nameLen uint8
	state   connState
	flags   connFlags
	// ip is the remote address, for per-IP accounting and logs: the peer's, or the source
	// its PROXY header named.
	ip peerIP
	// (Field order keeps conn at 112 bytes, a size class: see TestConnSize.)
}

// connFlags are a connection's yes/no facts, in one byte to keep conn in its size class.
type connFlags uint8

const (
	flagGoneAway  connFlags = 1 << iota // GOAWAY was sent (drain)
	flagHSCounted                       // counted in the server's handshaking connections (auth.go)
	flagPaused                          // out of route credit: input not read (credit.go)
	flagListed                          // in its loop's paused list (credit.go, resumeLost)
	flagErrClose                        // closing after its ERROR, in a slow consumer's steps 2-3 (closeSocket)
	flagLanding                         // closing (GOODBYE, drain) once what was admitted has landed (closeWhenLanded)
)

// name returns the HELLO client name ("" before WELCOME). It does not allocate.
func (c *conn) name() string { return unsafe.String(c.nameData, int(c.nameLen)) }

// setName keeps name, which c owns from now on, as its HELLO client name.
func (c *conn) setName(name string) {
	if len(name) > codec.MaxNameLen {
		panic("BUG: HELLO name longer than a str8")
	}
	c.nameData, c.nameLen = unsafe.StringData(name), uint8(len(name))
}

// registered returns the names c registered, in order; nil if none.
func (c *conn) registered() []string {
	if c.names == nil {
		return nil
	}
	return *c.names
}

// addName records that c owns name.
func (c *conn) addName(name string) {
	if c.names == nil {
		c.names = new([]string)
	}
	*c.names = append(*c.names, name)
}

// peerIP is a netip.Addr in 17 bytes instead of 24, so that conn fits its size class: the
// 16 address bytes and the family, without the zone. A peer's IPv6 zone is not kept, so
// one link-local address seen on two interfaces counts as one for the per-IP limit.
type peerIP struct {
	a   [16]byte
	fam uint8 // 0 (no address), 4 or 6
}

func peerIPOf(a netip.Addr) peerIP {
	switch {
	case a.Is4():
		return peerIP{a: a.As16(), fam: 4}
	case a.Is6():
		return peerIP{a: a.As16(), fam: 6}
	}
	return peerIP{}
}

// Addr returns the address (the zero Addr when there is none). It does not allocate.
func (p peerIP) Addr() netip.Addr {
	switch p.fam {
	case 4:
		return netip.AddrFrom16(p.a).Unmap()
	case 6:
		return netip.AddrFrom16(p.a)
	}
	return netip.Addr{}
}

// closeWithError tells the peer why and closes the connection (closeSocket: at once, or
// once the socket has taken what is still buffered; for an authenticated connection not
// idle, closeGracefully: once its peer has closed too); its remaining input is ignored.
func (lp *loop) closeWithError(c *conn, code codec.ErrorCode, reason string) {
	if c.state != stateActive && c.state != stateHandshake && c.state != stateVerifying {
		return // closing already: a slow consumer's close, or an ERROR sent
	}
	flags := codec.ErrFlagClosing
	switch code {
	case codec.CodeSlowConsumer, codec.CodeTimeout, codec.CodeShuttingDown, codec.CodeBusy, codec.CodeHandshakeTimeout:
		flags |= codec.ErrFlagReconnect // nothing wrong with the client's configuration
	}
	if code == codec.CodeShuttingDown { // as at accept: go elsewhere, here are the other nodes
		flags |= codec.ErrFlagTryOther
		b := c.buf()
		b.B = codec.AppendError(b.B, 0, codec.ErrorBody{Code: code, Flags: flags, Reason: reason, Addrs: lp.srv.peerAddrs()})
		lp.stats.errors[code].Add(1)
	} else {
		lp.sendError(c, 0, code, flags, reason)
	}
	if code != codec.CodeTimeout && code != codec.CodeShuttingDown { // routine closes are only counted
		lp.srv.connLog.report(connLogEntry{ip: c.ip.Addr(), code: code, reason: reason})
	}
	// An authenticated client is owed its output and the ERROR even if it keeps sending
	// (closeGracefully); one still in its handshake, or idle for its timeout (most likely
	// gone), is closed at once, so that such connections do not hold descriptors.
	graceful := c.state == stateActive && code != codec.CodeTimeout
	lp.markClosing(c)
	c.flush()
	if graceful {
		lp.closeGracefully(c)
	} else {
		lp.closeSocket(c)
	}
}

// closeSocket closes c's socket after its last output was handed to gnet, unless a
// failed write closed it already (c is marked closing). Input the server has not read is
// read away first (up to 1 MiB), so that the kernel ends the connection with FIN: closing
// a socket with unread input makes it send a reset instead, and a reset may destroy what
// the peer has not read yet, such as the ERROR that explains the close (Linux still hands
// it over, then ECONNRESET; other stacks drop it). A peer that keeps sending after that
// still gets a reset, and what the kernel had not sent is lost; so does input arriving
// before gnet closes the socket, which it does later, in a task of the loop
// (gnet.Conn.Close). closeGracefully avoids both where the client is owed its output.
//
// If the socket has not taken everything written (the peer is not reading), closing now
// would cut the output, the ERROR last, mid-frame. The connection is then closed the way
// a slow consumer is from its step 2 on (outbox.go, slowConsumer): once the socket has
// taken everything, the write side is shut and the input read away until the peer
// closes; a peer that takes nothing for the slow-consumer timeout is reset. Its names are
// let go at once, as closeGracefully does: it will never take another message, and its
// client, reconnecting, registers them again meanwhile (an idle timeout's close).
func (lp *loop) closeSocket(c *conn) {
	if c.state == stateClosed {
		return
	}
	if out := c.gc.OutboundBuffered(); out > 0 {
		lp.releaseNames(c)
		c.state = stateSlowDraining
		c.flags |= flagErrClose
		now := lp.clockTick()
		lp.closers = append(lp.closers, closer{id: c.id, since: now, progress: now, seen: now, out: out})
		return
	}
	discardInput(c.gc.Fd())
	_ = c.gc.Close()
}

// closeWhenLanded closes c for GOODBYE or a drain's batch, after its output: at once,
// unless messages its gate admitted from other loops or nodes are still on their way.
// Those were acknowledged to their senders (OK means queued for the target), so c waits
// for them as a slow consumer waits before its ERROR (stateSlowLanding), refusing new
// ones with NO_ROUTE; once the last has landed (land, or advanceClosers if it was taken
// back) it is closed like this with no ERROR (landedClose). Closed at once, they were
// dropped: clients moving off a draining node lost 1–4 acknowledged messages in 10 of 18
// drains at 5,000 msgs/s (docs/BENCHMARKS.md, "A planned drain in a cluster").
func (lp *loop) closeWhenLanded(c *conn) {
	if lp.gates.shut(c.id, gateGone) == 0 {
		lp.landedClose(c)
		return
	}
	c.state = stateSlowLanding
	c.flags |= flagErrClose | flagLanding
	now := lp.clockTick()
	lp.closers = append(lp.closers, closer{id: c.id, since: now, progress: now, seen: now, out: c.gc.OutboundBuffered()})
}

// landedClose closes c once nothing admitted for it is on its way: its output flushed,
// then closeGracefully. If c waited in stateSlowLanding it is on lp.closers already,
// which finishes a close the socket has not taken everything for.
//
// Its names are let go at once (closeGracefully): c will never take another message,
// and its client registers them again elsewhere (a drain) while the close may take a
// round trip more.
func (lp *loop) landedClose(c *conn) {
	lp.markClosing(c)
	c.flush()
	lp.closeGracefully(c)
}

// closeGracefully ends c, marked closing and flushed, without a reset: once gnet has
// handed everything to the kernel (at once, or after a slow consumer's step 2:
// closeSocket), the write side is shut and the socket lingers (lingerClose) until the
// peer, having read everything and the end of stream, closes.
//
// A socket closed instead is reset by the kernel when input arrives after the close (a
// client that keeps sending, not having read its GOAWAY or ERROR yet), and the kernel
// then throws away what it had not sent, acknowledged messages included
// (TestCloseKeepsUnsentOutput: 233 of 256 lost over loopback, all but what the
// peer's receive buffer held; on a real network, whatever is in flight). With nothing
// left to send, input arriving between the last read and the close (gnet closes later,
// in a task of the loop) still made the kernel reset the connection where its stream
// should end (0–11 Go clients a run of a whole node's drain, docs/BENCHMARKS.md), and a
// reset may destroy what the peer has received but not read (Linux hands it over first;
// other stacks do not).
func (lp *loop) closeGracefully(c *conn) {
	if c.state == stateClosed {
		return // a failed write closed it (OnClose let its names go)
	}
	lp.releaseNames(c)                 // closing for good, though the socket may stay open a while
	listed := c.flags&flagLanding != 0 // on lp.closers already (closeWhenLanded)
	switch {
	case c.gc.OutboundBuffered() > 0 && listed:
		c.state = stateSlowDraining // advanceClosers shuts the write side once it is out
	case c.gc.OutboundBuffered() > 0:
		lp.closeSocket(c) // the same, listed now
	default:
		lp.lingerClose(c, listed)
	}
}

// lingerClose shuts c's write side (the kernel sends what it holds, then FIN) and leaves
// the socket open until the peer closes, or until advanceClosers gives up on it after
// SlowConsumerTimeout (closeSlowNow). listed: c is on lp.closers already.
func (lp *loop) lingerClose(c *conn, listed bool) {
	if err := syscall.Shutdown(c.gc.Fd(), syscall.SHUT_WR); err != nil {
		lp.closeSocket(c) // the peer is gone already
		return
	}
	c.state = stateSlowLinger
	c.flags |= flagErrClose
	now := lp.clockTick()
	if listed {
		for i := range lp.closers {
			if lp.closers[i].id == c.id {
				lp.closers[i].progress = now
			}
		}
		return
	}
	lp.closers = append(lp.closers, closer{id: c.id, since: now, progress: now, seen: now})
}

// releaseNames lets go of every name c registered (at OnClose, or earlier when c is
// closing for good but its socket stays open a while).
func (lp *loop) releaseNames(c *conn) {
	for _, name := range c.registered() {
		_ = lp.srv.dir.Unregister(name, c.id)
	}
	c.names = nil
}

// markClosing: the connection is closing for good; other loops' senders are told NO_ROUTE
// from now on (its gate is shut), and what they already had admitted is dropped.
func (lp *loop) markClosing(c *conn) {
	c.state = stateClosing
	lp.gates.shut(c.id, gateGone)
}
