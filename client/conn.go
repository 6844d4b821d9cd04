package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/codec"
)

const (
	// writeHighWater is the write-buffer size above which callers that may block (every
	// public call except Request.Reply) wait for the writer; it bounds memory when the
	// server reads slower than the application writes.
	writeHighWater = 4 << 20
	// writeKeepCap: a write buffer that grew past this is dropped after use, not kept.
	writeKeepCap = 1 << 20
	// closeFlushTimeout bounds Close's wait for GOODBYE and queued frames to be written.
	closeFlushTimeout = time.Second
	// goodbyeReadTimeout bounds the reading after GOODBYE until the server closes: what it
	// sent before it read the GOODBYE, MESSAGEs acknowledged to their senders among them,
	// arrives meanwhile. 1 s was too short for a node draining ~16K connections on one
	// loop: its 50 Go clients all left 1.7–1.8 s after its GOAWAY, 17 of them after their
	// GOODBYE, and acknowledged messages to three of those were lost; with 5 s the
	// node closed them 2.3–2.4 s after GOAWAY and none was lost (one run each,
	// docs/BENCHMARKS.md, "A planned drain in a cluster").
	goodbyeReadTimeout = 5 * time.Second
	// minPongTimeout is the least time a keepalive PING waits for its PONG.
	minPongTimeout = time.Second
)

// errNotSent means the frame was not queued because the connection is closing; the caller
// may retry on the next connection. It never escapes the package unwrapped.
var errNotSent = errors.New("client: connection closing, frame not sent")

// errServerGoodbye is the close cause when the server says GOODBYE (a polite close).
var errServerGoodbye = errors.New("client: server said GOODBYE")

// errDrained is the close cause after GOAWAY once in-flight calls have finished.
var errDrained = errors.New("client: node sent GOAWAY")

// result is the outcome of one call, delivered exactly once on call.ch.
type result struct {
	typ  codec.Type
	body []byte // a copy, for ECHO_REPLY and RESPONSE
	err  error
}

// call is one pending call.
type call struct {
	want codec.Type  // answer type expected besides ERROR
	ch   chan result // cap 1: the single sender never blocks
}

// conn is one connection from WELCOME to close. It owns three goroutines (reader, writer,
// keeper), tracked by wg; whoever owns the conn (Dial, then the supervisor) waits for them.
//
// Lock order: Client.mu before wmu or pmu; wmu and pmu are never held together.
type conn struct {
	c   *Client
	nc  net.Conn
	log *slog.Logger

	// Immutable after handshake.
	addr      string
	connID    uint64
	serverID  string
	sendMax   int           // largest length field the server accepts
	pingEvery time.Duration // 0: no keepalive
	pongWait  time.Duration

	wg        sync.WaitGroup
	done      chan struct{} // closed by close, after cause is set
	closeOnce sync.Once
	closing   atomic.Bool // set when close starts
	cause     error       // written once before done is closed

	gone bool // guarded by Client.mu: the conn refuses new calls (closing or draining)

	wmu       sync.Mutex
	wbuf      []byte        // guarded by wmu: frames waiting for the writer
	space     chan struct{} // guarded by wmu: closed when the writer takes wbuf; nil if nobody waits
	wclosing  bool          // guarded by wmu: GOODBYE queued, no more frames
	wdead     bool          // guarded by wmu: closed
	shutCause error         // guarded by wmu: the close cause once the writer has flushed
	// bye: GOODBYE is written; the reader reads on until the server closes (or for
	// closeFlushTimeout), then closes the connection with shutCause.
	bye   atomic.Bool
	wake  chan struct{} // cap 1: signals the writer
	wrote atomic.Bool   // set by the writer after each write; cleared by the keeper
	heard atomic.Bool   // set by the reader on each frame; cleared by the keeper

	pmu      sync.Mutex
	pending  map[uint32]*call // guarded by pmu
	nextCorr uint32           // guarded by pmu
	pdead    bool             // guarded by pmu
	draining bool             // guarded by pmu: GOAWAY received
	incoming int              // guarded by pmu: INCOMING requests handed to OnRequest, not yet replied

	drain chan struct{} // closed by the reader on GOAWAY

	// Written by the reader before it exits, read by the owner after wg.Wait.
	goaway   *codec.GoAway
	closeErr *ServerError
}

// connect dials addr and performs the handshake. The returned conn is running.
func (c *Client) connect(ctx context.Context, addr string) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	d := c.cfg.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	nc, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.cfg.TLS != nil {
		tc := tls.Client(nc, tlsConfigFor(c.cfg.TLS, addr))
		if err := tc.HandshakeContext(dctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("client: TLS handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	cn, err := c.handshake(ctx, nc, addr)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return cn, nil
}

// tlsConfigFor returns a copy of cfg whose ServerName is addr's host if cfg names none.
func tlsConfigFor(cfg *tls.Config, addr string) *tls.Config {
	cfg = cfg.Clone()
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	return cfg
}

func (c *Client) handshake(ctx context.Context, nc net.Conn, addr string) (*conn, error) {
	deadline := time.Now().Add(c.cfg.HandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := nc.SetDeadline(deadline); err != nil {
		return nil, err
	}
	// A cancelled ctx aborts the blocking read by moving the deadline into the past.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write(codec.AppendHello(nil, 0, codec.Version, c.cfg.Name, c.cfg.Token)); err != nil {
		return nil, c.handshakeErr(ctx, err)
	}
	fr := codec.NewReader(nc, c.cfg.MaxFrame, codec.DefaultReadBufSize)
	f, err := fr.Next()
	if err != nil {
		return nil, c.handshakeErr(ctx, err)
	}
	switch f.Type {
	case codec.TypeError:
		e, err := codec.ParseError(f.Body)
		if err != nil {
			return nil, fmt.Errorf("%w: ERROR during handshake: %w", ErrProtocol, err)
		}
		return nil, newServerError(e)
	case codec.TypeWelcome:
	default:
		return nil, fmt.Errorf("%w: got %v, want WELCOME", ErrProtocol, f.Type)
	}
	w, err := codec.ParseWelcome(f.Body)
	if err != nil {
		return nil, fmt.Errorf("%w: WELCOME: %w", ErrProtocol, err)
	}
	if w.Version != codec.Version {
		return nil, fmt.Errorf("%w: server speaks version %d, client %d", ErrProtocol, w.Version, codec.Version)
	}
	if c.cfg.MaxFrame == 0 && w.MaxFrame > 0 {
		fr.SetMax(int(w.MaxFrame)) // what this server promises never to exceed
	}
	if !stop() {
		return nil, context.Cause(ctx) // the AfterFunc ran: the deadline is in the past
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	cn := &conn{
		c:        c,
		nc:       nc,
		log:      c.log.With("addr", addr, "conn_id", w.ConnID),
		addr:     addr,
		connID:   w.ConnID,
		serverID: string(w.ServerID),
		sendMax:  int(w.MaxFrame),
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		pending:  make(map[uint32]*call),
		drain:    make(chan struct{}),
	}
	if cn.sendMax <= 0 {
		cn.sendMax = codec.DefaultMaxFrame
	}
	if w.PingIntervalMs > 0 {
		// Half the server's interval, so its idle timeout never fires on a quiet client.
		cn.pingEvery = time.Duration(w.PingIntervalMs) * time.Millisecond / 2
		cn.pongWait = max(2*cn.pingEvery, minPongTimeout)
	}
	cn.wg.Add(3)
	go cn.readLoop(fr)
	go cn.writeLoop()
	go cn.keepLoop()
	return cn, nil
}

func (c *Client) handshakeErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}

// close closes the connection and fails every pending call. Idempotent; safe from any
// goroutine that holds none of the locks.
func (cn *conn) close(cause error) {
	cn.closeOnce.Do(func() {
		cn.closing.Store(true)
		// Unusable first, so that a caller refused below never finds this conn again.
		cn.c.connUnusable(cn)
		cn.wmu.Lock()
		cn.wdead = true
		if cn.space != nil {
			close(cn.space)
			cn.space = nil
		}
		cn.wmu.Unlock()
		cn.pmu.Lock()
		cn.pdead = true
		pend := cn.pending
		cn.pending = nil
		cn.pmu.Unlock()

		cn.cause = cause
		cn.nc.Close()
		var failErr error
		if cn.c.closed.Load() || errors.Is(cause, ErrClosed) {
			failErr = ErrClosed
		} else {
			failErr = fmt.Errorf("%w: %w", ErrDisconnected, cause)
		}
		for _, cl := range pend {
			cl.ch <- result{err: failErr}
		}
		close(cn.done)
	})
}

// shutdown queues GOODBYE; the writer closes the connection with cause once everything
// queued before it is written.
func (cn *conn) shutdown(cause error) {
	cn.c.connUnusable(cn)
	cn.wmu.Lock()
	if cn.wclosing || cn.wdead {
		cn.wmu.Unlock()
		return
	}
	cn.wclosing = true
	cn.shutCause = cause
	cn.wbuf = codec.AppendFrame(cn.wbuf, codec.TypeGoodbye, 0, 0, nil)
	cn.wmu.Unlock()
	cn.signal()
}

func (cn *conn) signal() {
	select {
	case cn.wake <- struct{}{}:
	default:
	}
}

// send appends one frame, built by build, to the write buffer. When wait is set and the
// buffer is above writeHighWater it first waits for the writer (or ctx). It returns
// errNotSent if the connection is closing and an error matching ErrFrameTooLarge if the
// frame exceeds the server's maximum; in both cases nothing was queued.
func (cn *conn) send(ctx context.Context, wait bool, build func([]byte) []byte) error {
	cn.wmu.Lock()
	for {
		if cn.wclosing || cn.wdead {
			cn.wmu.Unlock()
			return errNotSent
		}
		if !wait || len(cn.wbuf) < writeHighWater {
			break
		}
		if cn.space == nil {
			cn.space = make(chan struct{})
		}
		space := cn.space
		cn.wmu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		cn.wmu.Lock()
	}
	start := len(cn.wbuf)
	cn.wbuf = build(cn.wbuf)
	if n := len(cn.wbuf) - start - codec.PrefixLen; n > cn.sendMax {
		cn.wbuf = cn.wbuf[:start]
		cn.wmu.Unlock()
		return fmt.Errorf("%w: frame length %d, server accepts %d", ErrFrameTooLarge, n, cn.sendMax)
	}
	cn.wmu.Unlock()
	cn.signal()
	return nil
}

// writeLoop writes whatever callers queued since the last write, in one system call; that
// is where concurrent callers' frames get batched.
func (cn *conn) writeLoop() {
	defer cn.wg.Done()
	var buf []byte
	for {
		select {
		case <-cn.wake:
		case <-cn.done:
			return
		}
		for {
			cn.wmu.Lock()
			buf, cn.wbuf = cn.wbuf, buf[:0]
			if cn.space != nil {
				close(cn.space)
				cn.space = nil
			}
			closing, cause := cn.wclosing, cn.shutCause
			cn.wmu.Unlock()
			if len(buf) == 0 {
				if closing {
					// GOODBYE is out. Read until the server closes (PROTOCOL.md's
					// checklist): answers it sent before it read the GOODBYE still
					// arrive, and closing with them unread would reset the connection.
					cn.bye.Store(true)
					if err := cn.nc.SetReadDeadline(time.Now().Add(goodbyeReadTimeout)); err != nil {
						cn.close(cause)
					}
					return
				}
				break
			}
			if _, err := cn.nc.Write(buf); err != nil {
				cn.close(fmt.Errorf("client: write: %w", err))
				return
			}
			cn.wrote.Store(true)
			if cap(buf) > writeKeepCap {
				buf = nil
			}
		}
	}
}

// addPending registers a call and returns its correlation id; false if the conn is closed.
func (cn *conn) addPending(want codec.Type) (uint32, *call, bool) {
	cl := &call{want: want, ch: make(chan result, 1)}
	cn.pmu.Lock()
	defer cn.pmu.Unlock()
	if cn.pdead {
		return 0, nil, false
	}
	for {
		cn.nextCorr++
		if cn.nextCorr == 0 {
			continue // 0 means "no reply wanted"
		}
		if _, busy := cn.pending[cn.nextCorr]; !busy {
			break
		}
	}
	cn.pending[cn.nextCorr] = cl
	return cn.nextCorr, cl, true
}

// forget drops a pending call whose caller gave up.
func (cn *conn) forget(corr uint32) {
	cn.pmu.Lock()
	delete(cn.pending, corr)
	finish := cn.drainedLocked()
	cn.pmu.Unlock()
	if finish {
		cn.shutdown(errDrained)
	}
}

// await waits for the outcome of the call registered as corr.
func (cn *conn) await(ctx context.Context, corr uint32, cl *call) (result, error) {
	select {
	case res := <-cl.ch:
		return res, res.err
	case <-ctx.Done():
		cn.forget(corr)
		return result{}, context.Cause(ctx)
	}
}

// readLoop decodes frames and dispatches them until the connection fails.
func (cn *conn) readLoop(fr *codec.Reader) {
	defer cn.wg.Done()
	for {
		f, err := fr.Next()
		if err == nil {
			if !cn.heard.Load() {
				cn.heard.Store(true)
			}
			err = cn.dispatch(f)
		} else if errors.Is(err, codec.ErrFrameTooLarge) || errors.Is(err, codec.ErrFrameTooSmall) {
			err = fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if err != nil {
			if cn.bye.Load() { // the server closed after our GOODBYE, or took too long
				cn.wmu.Lock()
				err = cn.shutCause
				cn.wmu.Unlock()
			} else if !cn.closing.Load() { // else we closed it and the read error is the consequence
				cn.log.Warn("switchboard connection lost", "err", err)
			}
			cn.close(err)
			return
		}
	}
}

func (cn *conn) dispatch(f codec.Frame) error {
	switch f.Type {
	case codec.TypePong, codec.TypeEchoReply, codec.TypeOK, codec.TypeResponse:
		if f.Corr == 0 {
			return fmt.Errorf("%w: %v without correlation id", ErrProtocol, f.Type)
		}
		return cn.answer(f, nil)
	case codec.TypeError:
		e, err := codec.ParseError(f.Body)
		if err != nil {
			return fmt.Errorf("%w: ERROR: %w", ErrProtocol, err)
		}
		se := newServerError(e)
		if se.Flags&codec.ErrFlagClosing != 0 {
			cn.closeErr = se // the reconnect honours its retry-after and addresses
		}
		if f.Corr != 0 {
			return cn.answer(f, se)
		}
		if se.Flags&codec.ErrFlagClosing != 0 {
			return se // the server closes the connection; so do we
		}
		cn.log.Warn("switchboard error", "err", se)
		return nil
	case codec.TypeMessage:
		from, name, payload, err := codec.ParseMessage(f.Body)
		if err != nil {
			return fmt.Errorf("%w: MESSAGE: %w", ErrProtocol, err)
		}
		if fn := cn.c.cfg.OnMessage; fn != nil {
			fn(Message{FromConn: from, From: string(name), Payload: bytes.Clone(payload)})
		}
		return nil
	case codec.TypeIncoming:
		token, from, name, payload, err := codec.ParseIncoming(f.Body)
		if err != nil {
			return fmt.Errorf("%w: INCOMING: %w", ErrProtocol, err)
		}
		if fn := cn.c.cfg.OnRequest; fn != nil {
			cn.pmu.Lock()
			cn.incoming++
			cn.pmu.Unlock()
			fn(&Request{FromConn: from, From: string(name), Payload: bytes.Clone(payload), token: token, cn: cn})
		} else {
			cn.log.Debug("switchboard request dropped: no OnRequest", "from", string(name))
		}
		return nil
	case codec.TypeGoAway:
		g, err := codec.ParseGoAway(f.Body)
		if err != nil {
			return fmt.Errorf("%w: GOAWAY: %w", ErrProtocol, err)
		}
		cn.log.Info("switchboard node draining", "reason", g.Reason,
			"reconnect_after_ms", g.ReconnectAfterMs, "addrs", g.Addrs)
		if cn.goaway == nil {
			cn.goaway = &g
			cn.startDrain()
		}
		return nil
	case codec.TypeGoodbye:
		return errServerGoodbye
	default:
		if !f.Type.Known() {
			// A later protocol version's frame: skipped, as PROTOCOL.md asks (its len
			// has already told the reader how far).
			cn.log.Debug("switchboard frame of unknown type skipped", "type", byte(f.Type))
			return nil
		}
		return fmt.Errorf("%w: unexpected frame %v", ErrProtocol, f.Type)
	}
}

// answer completes the pending call f.Corr with f (or with se for an ERROR).
func (cn *conn) answer(f codec.Frame, se *ServerError) error {
	cn.pmu.Lock()
	cl := cn.pending[f.Corr]
	if cl == nil {
		cn.pmu.Unlock()
		// The caller gave up (context) before the answer came; nothing to do.
		return nil
	}
	if se == nil && f.Type != cl.want {
		cn.pmu.Unlock()
		return fmt.Errorf("%w: %v answers a call expecting %v", ErrProtocol, f.Type, cl.want)
	}
	delete(cn.pending, f.Corr)
	finish := cn.drainedLocked()
	cn.pmu.Unlock()

	res := result{typ: f.Type}
	if se != nil {
		res.err = se
	} else if f.Type == codec.TypeEchoReply || f.Type == codec.TypeResponse {
		res.body = bytes.Clone(f.Body)
	}
	cl.ch <- res
	if finish {
		cn.shutdown(errDrained)
	}
	return nil
}

// drainedLocked reports whether a draining conn has nothing left in flight: no pending
// call and no INCOMING request waiting for its Reply. pmu must be held.
func (cn *conn) drainedLocked() bool {
	return cn.draining && !cn.pdead && len(cn.pending) == 0 && cn.incoming == 0
}

// replied notes that one INCOMING request was answered.
func (cn *conn) replied() {
	cn.pmu.Lock()
	cn.incoming--
	finish := cn.drainedLocked()
	cn.pmu.Unlock()
	if finish {
		cn.shutdown(errDrained)
	}
}

// startDrain handles GOAWAY: no new calls on this conn; once the calls in flight have their
// outcome and the requests received have been replied to (or the keeper's drain deadline passes) it says GOODBYE and closes, and the
// supervisor reconnects elsewhere. Closing before re-registering matters: the names must be
// free before the new connection claims them.
func (cn *conn) startDrain() {
	cn.c.connUnusable(cn)
	cn.pmu.Lock()
	cn.draining = true
	idle := cn.drainedLocked()
	cn.pmu.Unlock()
	close(cn.drain)
	if idle {
		cn.shutdown(errDrained)
	}
}

// keepLoop sends PING when the connection has been idle for half the server's ping
// interval, drops the connection when the PONG does not come, and bounds draining.
func (cn *conn) keepLoop() {
	defer cn.wg.Done()
	var tick <-chan time.Time
	if cn.pingEvery > 0 {
		t := time.NewTicker(cn.pingEvery)
		defer t.Stop()
		tick = t.C
	}
	drain := cn.drain
	var drainDeadline <-chan time.Time
	for {
		select {
		case <-cn.done:
			return
		case <-drain:
			drain = nil
			// In-flight requests end within RequestTimeout; give them that, plus a margin.
			t := time.NewTimer(cn.c.cfg.RequestTimeout + time.Second)
			defer t.Stop()
			drainDeadline = t.C
		case <-drainDeadline:
			// GOODBYE and read until the server closes, as when the calls end in time:
			// closing the socket at once dropped the MESSAGEs the server had sent and
			// acknowledged to their senders (4, 140 and 450 in three drains of a node of
			// 15,833 connections, each listed one sent to a Go client past this deadline).
			// The calls still in flight fail when the connection closes.
			cn.log.Warn("switchboard drain deadline passed; saying GOODBYE with calls in flight")
			cn.shutdown(errDrained)
			t := time.NewTimer(goodbyeReadTimeout + closeFlushTimeout)
			defer t.Stop()
			select {
			case <-cn.done:
			case <-t.C: // GOODBYE still unwritten (the server reads nothing), or no close
				cn.close(errDrained)
			}
			return
		case <-tick:
			// No PING when we wrote (the server's idle timer is happy) and heard from the
			// server since the last tick (it is alive), and none while draining. Writing
			// alone proves nothing: a client that kept sending to a hung server (stopped,
			// or behind a network that drops packets) never noticed it and stayed until
			// the server resumed.
			wrote, heard := cn.wrote.Swap(false), cn.heard.Swap(false)
			if (wrote && heard) || drain == nil {
				continue
			}
			if err := cn.keepalive(); err != nil {
				cn.log.Warn("switchboard keepalive failed", "err", err)
				cn.close(err)
				return
			}
		}
	}
}

func (cn *conn) keepalive() error {
	corr, cl, ok := cn.addPending(codec.TypePong)
	if !ok {
		return nil
	}
	err := cn.send(context.Background(), false, func(b []byte) []byte {
		return codec.AppendFrame(b, codec.TypePing, 0, corr, nil)
	})
	if err != nil {
		cn.forget(corr)
		return nil // closing anyway
	}
	t := time.NewTimer(cn.pongWait)
	defer t.Stop()
	select {
	case <-cl.ch:
		return nil // a PONG, or an ERROR (e.g. RATE_LIMITED): either way the server is alive
	case <-cn.done:
		return nil
	case <-t.C:
		cn.forget(corr)
		return fmt.Errorf("client: no PONG within %v", cn.pongWait)
	}
}
