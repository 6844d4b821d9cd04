package server

import (
	"errors"
	"math"
	"net"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/codec"
)

const (
	// handshakeWait is how long the acceptor waits for a handshake slot while the cap is
	// full before it accepts the next connection anyway and refuses it BUSY: a flood of
	// silent connections then costs at most one refusal per handshakeWait, and clients
	// behind it wait in the kernel's backlog instead of reconnecting in a loop.
	handshakeWait = 100 * time.Millisecond
	// lagPause is the acceptor's pause between connections while the loops lag (traffic
	// zone RED from loop lag): at most 1,000 new connections a second then, none refused.
	lagPause = time.Millisecond

	// enrollers hand admitted connections to the event loops. gnet's EnrollContext waits
	// until the loop has registered the connection, a round trip through the loop's task
	// queue that includes waking the loop. Done in turn on the acceptor, those round trips
	// set the node's accept rate; several in flight let one wake-up of a loop register
	// them together (docs/BENCHMARKS.md, "Connections enrolled in parallel": 1.3-1.5x
	// more connections a second). The acceptor waits for a free enroller, so what is
	// admitted and not yet on a loop stays bounded by this.
	enrollers = 8

	// Refused connections linger (half-closed, reading until the client's FIN) on a few
	// goroutines; the descriptors they hold stay within limits.FDReserve.
	lingerers   = 4
	lingerQueue = 64
)

// acceptLoop owns the listener. Accepting here rather than in gnet keeps admission in one
// place and makes EMFILE survivable: gnet stops its whole engine on any accept error.
func (s *Server) acceptLoop() {
	defer s.wg.Done()
	defer close(s.refuseq)
	defer s.hdr.stop() // header readers may still refuse: stop them before refuseq closes
	defer close(s.enrollq)
	var backoff time.Duration
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	for {
		if !s.pace(pause) {
			return
		}
		nc, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.acceptErrors.Add(1)
			// EMFILE/ENFILE/ENOBUFS and friends: back off and try again; the kernel's
			// backlog holds the clients meanwhile.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; backing off", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.baseCtx.Done():
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		c := &conn{lim: s.newConnLimits()}
		if tcp, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
			c.ip = peerIPOf(tcp.AddrPort().Addr())
		}
		if s.trustsProxy(c.ip.Addr()) {
			// The address that counts per IP is in the PROXY header, which is read off
			// this goroutine (proxy.go).
			if s.admitNode(nc) {
				s.readProxyLater(nc, c)
			}
			continue
		}
		if !s.admitConn(nc, c) {
			continue
		}
		s.connCount.Add(1)
		s.enterHandshake(c) // counted now: the handshake cap sees it before the next accept
		s.enrollq <- enrollment{nc, c}
	}
}

// enrollment is an admitted connection, counted in connCount and in the handshake, on
// its way to an enroller.
type enrollment struct {
	nc net.Conn
	c  *conn
}

// enroller enrolls what the acceptor admitted until the acceptor closes enrollq.
func (s *Server) enroller() {
	defer s.wg.Done()
	for e := range s.enrollq {
		s.attach(e.nc, e.c)
	}
}

// pace holds the acceptor before its next Accept while accepting would spend CPU the
// node's connections need, leaving new clients in the kernel's backlog meanwhile:
//   - while the handshake cap is full, until a slot frees or for handshakeWait, after
//     which the next connection is accepted and refused BUSY by admitNode;
//   - while silent peers fill the handshake, to space accepts evenly (hsSpacing);
//   - while the traffic zone is RED but the admission zone is not (the loops lag: an
//     accept storm, or traffic), for lagPause per connection.
//
// Draining skips all three: its refusals are what clients need then. Returns false when the
// server shuts down. t is the acceptor's timer, stopped and drained between uses.
func (s *Server) pace(t *time.Timer) bool {
	wait := func(d time.Duration, wake <-chan struct{}) bool {
		t.Reset(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-wake:
		case <-s.baseCtx.Done():
			return false
		}
		return true
	}
	if s.handshakesFull() && !s.draining.Load() {
		s.acceptPauses[pauseHandshakes].Add(1)
		if !wait(s.handshakeWait, s.auth.slotFree) {
			return false
		}
	}
	var timeouts uint64
	s.eachLoop(func(lp *loop) { timeouts += lp.stats.handshakeTimeouts.Load() })
	if d := s.spacing.next(time.Now(), timeouts, s.auth.handshaking.Load(), s.auth.maxHandshakes,
		s.cfg.HandshakeTimeout, s.draining.Load()); d > 0 {
		s.acceptPauses[pauseHandshakes].Add(1)
		if !wait(d, nil) {
			return false
		}
	}
	if s.g.traffic.Current().RefusesConnections() && !s.g.admission.Current().RefusesConnections() && !s.draining.Load() {
		s.acceptPauses[pauseLoopLag].Add(1)
		if !wait(lagPause, nil) {
			return false
		}
	}
	return true
}

// pauseReason labels switchboard_accept_pauses_total.
const (
	pauseHandshakes = iota // waiting for a handshake slot, or spacing during a flood
	pauseLoopLag           // the loops lag (traffic zone RED, admission zone not)
	numPauseReasons
)

// hsSpacing spaces accepts evenly while silent peers fill the handshake: half the slots
// or more taken, and a handshake timed out within the last handshake-timeout (a client
// that says HELLO leaves the handshake within milliseconds, so a storm of real clients
// does not trigger it). Then the acceptor takes one connection per handshake-timeout /
// max-handshakes (about 1 ms by default), the rate at which the slots turn over anyway,
// so the silent ones time out evenly rather than in waves of a thousand closes that stall
// the loops for everyone (docs/BENCHMARKS.md, "Handshake flood"). A slower rate would
// cost a flood less, but clients behind the flood wait in the kernel's backlog meanwhile
// (a full backlog of 4,096 at 1,000 a second is ~4 s). Owned by the acceptor.
type hsSpacing struct {
	at       time.Time // when the next accept may happen
	timeouts uint64    // handshake timeouts seen so far
	seen     time.Time // when timeouts last grew
}

// next returns how long the acceptor waits before its next accept at now, and books that
// accept. timeouts is the node's handshake timeouts so far, handshaking the connections
// in the handshake now, slots max-handshakes.
func (h *hsSpacing) next(now time.Time, timeouts uint64, handshaking, slots int64, timeout time.Duration, draining bool) time.Duration {
	if timeouts != h.timeouts {
		h.timeouts, h.seen = timeouts, now
	}
	if draining || h.seen.IsZero() || now.Sub(h.seen) >= timeout || handshaking < max(1, slots/2) {
		h.at = now
		return 0
	}
	h.at = h.at.Add(timeout / time.Duration(max(1, slots)))
	if d := h.at.Sub(now); d > 0 {
		return d
	}
	h.at = now
	return 0
}

// enroll hands an admitted connection, already counted in connCount, to an event loop.
func (s *Server) enroll(nc net.Conn, c *conn) {
	s.enterHandshake(c)
	s.attach(nc, c)
}

// attach is enroll for a connection already counted in the handshake. Safe for
// concurrent use (gnet picks the loop with the fewest connections, atomically).
func (s *Server) attach(nc net.Conn, c *conn) {
	if s.cfg.TCPDelay { // Go's accept turned Nagle's algorithm off; gnet leaves it (gnetOptions)
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetNoDelay(false)
		}
	}
	if _, err := s.engine.EnrollContext(nc, c); err != nil { // closes nc either way
		s.connCount.Add(-1)
		s.leaveHandshake(c)
		s.acceptErrors.Add(1)
		s.g.perIP.Release(c.ip.Addr())
	}
}

// admitConn applies tier 1 (and the RED admission zone) to a new connection, in the
// order an operator reads them: draining, admission zone, connection cap, handshake cap,
// accept rate, per-IP. A
// refused connection is answered and closed here. Runs on the acceptor goroutine.
func (s *Server) admitConn(nc net.Conn, c *conn) bool {
	return s.admitNode(nc) && s.admitIP(nc, c)
}

// admitNode applies the node-wide part of tier 1: draining, admission zone, connection
// cap, handshake cap, accept rate. Runs on the acceptor goroutine, which owns the accept
// bucket.
//
// The zone that refuses is the admission zone (queued, heap), not the node zone: the
// connection ratio must not refuse below max-connections, or how many clients get in
// would depend on when the sampler last ran; nor loop lag, which paces the acceptor
// instead (pace). The traffic zone's ORANGE still halves the accept rate.
func (s *Server) admitNode(nc net.Conn) bool {
	g := &s.g
	z := g.traffic.Current()
	switch {
	case s.draining.Load():
		s.refuse(nc, refuseDraining, codec.CodeShuttingDown, 1000, "node is draining")
		return false
	case g.admission.Current().RefusesConnections():
		s.refuse(nc, refuseZone, codec.CodeBusy, 1000, "node overloaded (zone RED)")
		return false
	case s.connCount.Load() >= int64(s.maxConns):
		s.refuse(nc, refuseMaxConns, codec.CodeBusy, 1000, "connection limit reached")
		return false
	case s.handshakesFull(): // unauthenticated peers cannot crowd out the rest (auth.go)
		s.refuse(nc, refuseHandshakes, codec.CodeBusy, 1000, "too many connections in the handshake")
		return false
	}
	if next := g.acceptNext.Swap(nil); next != nil { // ReloadLimits
		g.accept = *next
		if g.accept.Unlimited() {
			s.acceptTokens.Store(-1)
		}
	}
	if !g.accept.Unlimited() {
		now := s.clock()
		// ORANGE halves the accept rate: each connection costs 1/factor tokens.
		cost := 1
		if f := z.AcceptFactor(); f > 0 && f < 1 {
			cost = int(math.Ceil(1 / f))
		}
		ok := g.accept.Allow(now, cost)
		s.acceptTokens.Store(int64(g.accept.Tokens(now)))
		if !ok {
			s.refuse(nc, refuseAcceptRate, codec.CodeBusy, millis(g.accept.RetryAfter(now, cost)), "accept rate exceeded")
			return false
		}
	}
	return true
}

// admitIP applies tier 1's per-IP limit to c.ip. Safe on any goroutine (the acceptor, a
// PROXY header reader).
func (s *Server) admitIP(nc net.Conn, c *conn) bool {
	if !s.g.perIP.Acquire(c.ip.Addr()) {
		s.refuse(nc, refusePerIP, codec.CodeBusy, 1000, "too many connections from this address")
		return false
	}
	return true
}

// refuse answers a refused connection with its ERROR and half-closes it at once (a fresh
// socket's send buffer is empty, so the write does not wait). Closing outright could turn
// into a reset that destroys the ERROR if the client's HELLO arrives meanwhile, so a
// lingerer reads until the client's FIN, briefly, before closing; when all lingerers are
// busy the connection is closed right away, after reading away what has arrived.
func (s *Server) refuse(nc net.Conn, why refuseReason, code codec.ErrorCode, retryMs uint32, reason string) {
	s.refuseWith(nc, why, code, retryMs, codec.ErrFlagClosing|codec.ErrFlagReconnect|codec.ErrFlagTryOther, reason)
}

// refuseWith is refuse with the ERROR's flags chosen by the caller; the peers are sent
// only with ErrFlagTryOther. Safe for concurrent use.
func (s *Server) refuseWith(nc net.Conn, why refuseReason, code codec.ErrorCode, retryMs uint32, flags codec.ErrorFlags, reason string) {
	s.refused.Add(1)
	s.refusedBy[why].Add(1)
	var peers []string
	if flags&codec.ErrFlagTryOther != 0 {
		peers = s.peerAddrs()
	}
	frame := codec.AppendError(nil, 0, codec.ErrorBody{
		Code: code, RetryAfterMs: retryMs, Flags: flags, Reason: reason, Addrs: peers})
	_ = nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := nc.Write(frame); err == nil {
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		select {
		case s.refuseq <- nc:
			return
		default:
		}
	}
	closeDrained(nc)
}

// closeDrained closes nc after reading away, without waiting, what the client has sent
// and nobody read (up to 1 MiB): closing with unread input would make the kernel reset
// the connection, and the reset may destroy the ERROR just written.
func closeDrained(nc net.Conn) {
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			_ = rc.Read(func(fd uintptr) bool { discardInput(int(fd)); return true })
		}
	}
	_ = nc.Close()
}

// lingerer closes refused connections once the client has closed its side, or after
// 500 ms, or at once when the server shuts down.
func (s *Server) lingerer() {
	defer s.wg.Done()
	var sink [512]byte
	for nc := range s.refuseq {
		for deadline := time.Now().Add(500 * time.Millisecond); time.Now().Before(deadline); {
			if s.lingerStop.Load() {
				break
			}
			_ = nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := nc.Read(sink[:]); err != nil && !isTimeout(err) {
				break
			}
		}
		closeDrained(nc)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// refuseReason labels switchboard_connections_refused_total.
type refuseReason uint8

const (
	refuseMaxConns refuseReason = iota
	refuseDraining
	refusePerIP
	refuseAcceptRate
	refuseZone
	refuseProxyHeader // PROXY header missing, bad, late, or too many pending
	refuseHandshakes
	numRefuseReasons
)

var refuseReasonNames = [numRefuseReasons]string{"max_connections", "draining", "per_ip", "accept_rate", "zone_red", "proxy_header", "handshakes"}

func (s *Server) refusedByReason() map[string]uint64 {
	m := make(map[string]uint64, numRefuseReasons)
	for i, name := range refuseReasonNames {
		m[name] = s.refusedBy[i].Load()
	}
	return m
}
