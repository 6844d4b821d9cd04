package server

import (
	"net/netip"

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
	// name is the HELLO client name, shown to peers as the sender.
	name string
	// names are the names this connection registered; released when it closes.
	names []string
	// lim holds the per-connection rate buckets; nil when no per-connection rate is set.
	lim *connLimits
	// lastSeen is when the last frame was received, as a tick32 stamp (idle timeout).
	lastSeen uint32
	// inflight counts this connection's REQUESTs awaiting an outcome, and its SEND+ACKs
	// to other nodes awaiting theirs (remote.go).
	inflight int32
	// hsTimer is the handshake timer, cancelled by HELLO so that its node is reused.
	hsTimer timerHandle
	// user is the account id of the credentials user this connection authenticated as;
	// 0 without credentials (auth.go).
	user  uint32
	state connState
	// goneAway: GOAWAY was sent (drain).
	goneAway bool
	// hsCounted: counted in the server's handshaking connections (auth.go).
	hsCounted bool
	// ip is the remote address, for per-IP accounting and logs: the peer's, or the source
	// its PROXY header named.
	ip peerIP
	// (Field order keeps conn at 144 bytes, a size class of its own: see TestConnSize.)
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

// closeWithError tells the peer why and closes the connection; its remaining input is
// ignored. gnet writes what is still buffered before it closes the socket.
func (lp *loop) closeWithError(c *conn, code codec.ErrorCode, reason string) {
	if c.state != stateActive && c.state != stateHandshake {
		return
	}
	flags := codec.ErrFlagClosing
	if code == codec.CodeSlowConsumer || code == codec.CodeTimeout || code == codec.CodeShuttingDown || code == codec.CodeBusy {
		flags |= codec.ErrFlagReconnect
	}
	lp.sendError(c, 0, code, flags, reason)
	if code != codec.CodeTimeout && code != codec.CodeShuttingDown { // routine closes are only counted
		lp.srv.connLog.report(connLogEntry{ip: c.ip.Addr(), code: code, reason: reason})
	}
	lp.markClosing(c)
	c.flush()
	if c.state != stateClosed {
		_ = c.gc.Close()
	}
}

// markClosing: the connection is closing for good; other loops' senders are told NO_ROUTE
// from now on (its gate is shut), and what they already had admitted is dropped.
func (lp *loop) markClosing(c *conn) {
	c.state = stateClosing
	lp.gates.shut(c.id, gateGone)
}
