package server

import (
	"net/netip"

	"github.com/switchboard/switchboard/codec"
)

type connState uint8

const (
	stateHandshake connState = iota // accepted, waiting for HELLO
	stateActive                     // WELCOME sent
	stateClosing                    // ERROR or GOAWAY sent; input is ignored until close
	stateClosed                     // OnClose ran; gc is nil
	stateVerifying                  // HELLO being checked off the loop (auth.go); input waits in gnet
)

// conn is one client connection. It is the gnet connection's context value and, like the
// gnet connection itself, owned by its event loop: no field may be touched elsewhere.
type conn struct {
	outbox // gc, lp, id and the output path
	// name is the HELLO client name, shown to peers as the sender.
	name []byte
	// names are the names this connection registered; released when it closes.
	names []string
	// ip is the remote address, for per-IP accounting.
	ip netip.Addr
	// lim holds the per-connection rate buckets; nil when no per-connection rate is set.
	lim *connLimits
	// lastSeen is when the last frame was received, as a tick32 stamp (idle timeout).
	lastSeen uint32
	// inflight counts this connection's REQUESTs awaiting an outcome.
	inflight int32
	// hsTimer is the handshake timer, cancelled by HELLO so that its node is reused.
	hsTimer timerHandle
	state   connState
	// goneAway: GOAWAY was sent (drain).
	goneAway bool
	// hsCounted: counted in the server's handshaking connections (auth.go).
	hsCounted bool
	// user is the account id of the credentials user this connection authenticated as;
	// 0 without credentials (auth.go).
	user uint32
	// (Field order keeps conn at 160 bytes, a size class of its own: see TestConnSize.)
}

// closeWithError tells the peer why and closes the connection; its remaining input is
// ignored. gnet writes what is still buffered before it closes the socket.
func (lp *loop) closeWithError(c *conn, code codec.ErrorCode, reason string) {
	if c.state == stateClosing || c.state == stateClosed {
		return
	}
	flags := codec.ErrFlagClosing
	if code == codec.CodeSlowConsumer || code == codec.CodeTimeout || code == codec.CodeShuttingDown || code == codec.CodeBusy {
		flags |= codec.ErrFlagReconnect
	}
	lp.sendError(c, 0, code, flags, reason)
	if code != codec.CodeTimeout && code != codec.CodeShuttingDown { // routine closes are only counted
		lp.srv.connLog.report(connLogEntry{ip: c.ip, code: code, reason: reason})
	}
	c.state = stateClosing
	c.flush()
	if c.state != stateClosed {
		_ = c.gc.Close()
	}
}
