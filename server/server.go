package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// Server is one switchboard node. Create it with New, then Start (or Serve), and stop it
// with Shutdown. All exported methods are safe for concurrent use.
type Server struct {
	cfg      Config          // immutable after New
	log      *slog.Logger    // immutable after New
	dir      shard.Directory // safe for concurrent use
	token    []byte          // immutable after New
	serverID []byte          // immutable after New
	maxConns int             // immutable after Start
	nofile   uint64          // immutable after Start
	epoch    time.Time       // immutable after New; clock's zero
	peers    []string        // immutable after New; cfg.Peers split

	baseCtx context.Context // immutable after New
	cancel  context.CancelFunc

	mu      sync.Mutex // guards started, closed, ln, engine, loopMap
	started bool
	closed  bool
	ln      *net.TCPListener
	engine  *gnet.Client
	loopMap map[gnet.EventLoop]*loop

	loops  [256]atomic.Pointer[loop] // by index; set once by loopFor
	nloops atomic.Int32

	g            guards       // overload protection; immutable pointers after New
	acceptTokens atomic.Int64 // accept-rate tokens left, published by the acceptor (-1: unlimited)
	connCount    atomic.Int64 // connections admitted and not yet closed
	refused      atomic.Uint64
	refusedBy    [numRefuseReasons]atomic.Uint64
	acceptErrors atomic.Uint64
	draining     atomic.Bool
	lingerStop   atomic.Bool // Shutdown: lingerers close what they hold at once

	connLog connLogger     // per-connection errors, rate-limited off the loops
	refuseq chan net.Conn  // refused connections waiting for the client's FIN; bounded
	wg      sync.WaitGroup // acceptor and lingerers
	logWG   sync.WaitGroup // the connection-error logger
}

// Option configures a Server's dependencies (values go in Config).
type Option func(*Server)

// WithLogger sets the structured logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithDirectory replaces the name directory (the single-node shard.Registry by default),
// for a cluster-wide directory.
func WithDirectory(d shard.Directory) Option { return func(s *Server) { s.dir = d } }

// New fills in the defaults of the zero fields where 0 is not meaningful (see Config),
// validates cfg and returns a Server that is not yet listening.
func New(cfg Config, opts ...Option) (*Server, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Loops == 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	s := &Server{
		cfg:      cfg,
		log:      slog.Default(),
		token:    []byte(cfg.Token),
		serverID: []byte(cfg.ServerID),
		epoch:    time.Now(),
		loopMap:  make(map[gnet.EventLoop]*loop),
		refuseq:  make(chan net.Conn, lingerQueue),
		connLog:  connLogger{ch: make(chan connLogEntry, 256)},
	}
	for _, o := range opts {
		o(s)
	}
	s.peers = s.goAwayMsg("").Addrs
	if s.dir == nil {
		s.dir = shard.NewRegistry()
	}
	s.initGuards()
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Config returns the effective configuration (defaults filled in; MaxConnections is the
// effective cap once started).
func (s *Server) Config() Config {
	c := s.cfg
	s.mu.Lock()
	if s.started {
		c.MaxConnections = s.maxConns
	}
	s.mu.Unlock()
	return c
}

// Start binds the listener and starts the event loops and the acceptor; it returns once
// the server accepts connections. Addr is valid afterwards.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.started {
		return ErrAlreadyStarted
	}
	nofile := raiseNoFile()
	maxConns, capped := limits.MaxConnections(s.cfg.MaxConnections, nofile)
	if maxConns == 0 {
		return fmt.Errorf("%w: RLIMIT_NOFILE is %d", ErrNoFileDescriptors, nofile)
	}
	if capped {
		s.log.Warn("max-connections lowered below the open-file limit",
			"requested", s.cfg.MaxConnections, "effective", maxConns, "nofile", nofile)
	}
	// Published before the engine starts: OnTick reads them from gnet's ticker goroutine.
	s.maxConns, s.nofile = maxConns, nofile
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.Listen, err)
	}
	eng, err := gnet.NewClient(&handler{srv: s}, s.gnetOptions()...)
	if err == nil {
		err = eng.Start()
	}
	if err != nil {
		_ = ln.Close()
		return fmt.Errorf("server: start event loops: %w", err)
	}
	s.ln, s.engine = ln.(*net.TCPListener), eng
	s.started = true
	s.wg.Add(1 + lingerers)
	go s.acceptLoop()
	s.logWG.Add(1)
	go s.runConnLogger()
	for range lingerers {
		go s.lingerer()
	}
	s.log.Info("switchboard listening", "addr", ln.Addr().String(), "loops", s.cfg.Loops,
		"max_connections", maxConns, "nofile", nofile, "max_frame", s.cfg.MaxFrame,
		"max_pending", s.cfg.MaxPending, "ring_size", s.cfg.RingSize, "node", s.cfg.NodeID,
		// gnet rounds its buffers up to a power of two (at least 1 KiB): log what it uses.
		"read_buffer_cap", gnetBufferCap(s.cfg.ReadBufferCap), "write_buffer_cap", gnetBufferCap(s.cfg.WriteBufferCap))
	return nil
}

// Serve starts the server if needed and blocks until ctx is done, then shuts it down,
// allowing up to 10 s for connections to close. It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Start(); err != nil && !errors.Is(err, ErrAlreadyStarted) {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}

// Addr returns the listener's address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops the server in this order: the listener closes (new connections are
// refused by the kernel); every connection gets GOAWAY and is closed after its pending
// output; then the event loops stop and every goroutine the server started has exited.
// Pending REQUESTs are abandoned with their connections. If ctx ends first, the loops
// are stopped anyway and ctx.Err() is returned. Shutdown is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.mu.Unlock()
	if !started {
		s.cancel()
		return nil
	}
	s.draining.Store(true)
	_ = s.ln.Close()
	s.lingerStop.Store(true)
	s.wg.Wait() // acceptor and lingerers are gone: nothing enrolls any more

	s.onEachLoop(func(lp *loop) { lp.goAway(s.goAwayMsg("node shutting down")); lp.closeSome(-1) })
	err := s.waitConns(ctx)
	s.cancel()
	if stopErr := s.engine.Stop(); stopErr != nil && err == nil {
		err = stopErr
	}
	close(s.connLog.ch) // the loops are gone: nobody reports any more
	s.logWG.Wait()
	return err
}

// loopFor returns switchboard's loop for a gnet event loop, creating it on first sight.
// Runs on that loop (OnOpen); the mutex only orders the first sightings.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lp, ok := s.loopMap[el]; ok {
		return lp
	}
	idx := len(s.loopMap)
	if idx >= len(s.loops) {
		panic("BUG: more than 256 event loops")
	}
	lp := newLoop(s, uint8(idx), el)
	s.loopMap[el] = lp
	s.loops[idx].Store(lp)
	s.nloops.Store(int32(idx + 1))
	return lp
}

// loopAt returns the loop with index i, or nil. Lock-free; safe anywhere.
func (s *Server) loopAt(i int) *loop {
	if i < 0 || i >= len(s.loops) {
		return nil
	}
	return s.loops[i].Load()
}

func (s *Server) eachLoop(fn func(*loop)) {
	n := int(s.nloops.Load())
	for i := 0; i < n; i++ {
		if lp := s.loops[i].Load(); lp != nil {
			fn(lp)
		}
	}
}

// clock returns monotonic nanoseconds since the server was created.
func (s *Server) clock() int64 { return int64(time.Since(s.epoch)) }

const (
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
	var backoff time.Duration
	for {
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
			c.ip = tcp.AddrPort().Addr()
		}
		if !s.admitConn(nc, c) {
			continue
		}
		s.connCount.Add(1)
		if _, err := s.engine.EnrollContext(nc, c); err != nil { // closes nc either way
			s.connCount.Add(-1)
			s.acceptErrors.Add(1)
			s.g.perIP.Release(c.ip)
		}
	}
}

// admitConn applies tier 1 (and the RED zone) to a new connection, in the order an
// operator reads them: draining, zone, connection cap, accept rate, per-IP. A refused
// connection is answered and closed here. Runs on the acceptor goroutine, which owns the
// accept bucket.
func (s *Server) admitConn(nc net.Conn, c *conn) bool {
	g := &s.g
	z := g.zone.Current()
	switch {
	case s.draining.Load():
		s.refuse(nc, refuseDraining, codec.CodeShuttingDown, 1000, "node is draining")
		return false
	case z.RefusesConnections():
		s.refuse(nc, refuseZone, codec.CodeBusy, 1000, "node overloaded (zone RED)")
		return false
	case s.connCount.Load() >= int64(s.maxConns):
		s.refuse(nc, refuseMaxConns, codec.CodeBusy, 1000, "connection limit reached")
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
	if !g.perIP.Acquire(c.ip) {
		s.refuse(nc, refusePerIP, codec.CodeBusy, 1000, "too many connections from this address")
		return false
	}
	return true
}

// refuse answers a refused connection with its ERROR and half-closes it at once (a fresh
// socket's send buffer is empty, so the write does not wait). Closing outright could turn
// into a reset that destroys the ERROR if the client's HELLO arrives meanwhile, so a
// lingerer reads until the client's FIN, briefly, before closing; when all lingerers are
// busy the connection is closed right away.
func (s *Server) refuse(nc net.Conn, why refuseReason, code codec.ErrorCode, retryMs uint32, reason string) {
	s.refused.Add(1)
	s.refusedBy[why].Add(1)
	frame := codec.AppendError(nil, 0, codec.ErrorBody{
		Code: code, RetryAfterMs: retryMs, Flags: codec.ErrFlagClosing | codec.ErrFlagReconnect | codec.ErrFlagTryOther,
		Reason: reason, Addrs: s.peers})
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
		_ = nc.Close()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// gnetOptions turns the Config into gnet's options: the one place that does.
func (s *Server) gnetOptions() []gnet.Option {
	nodelay := gnet.TCPNoDelay
	if s.cfg.TCPDelay {
		nodelay = gnet.TCPDelay
	}
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithTicker(true),
		gnet.WithReadBufferCap(s.cfg.ReadBufferCap),
		gnet.WithWriteBufferCap(s.cfg.WriteBufferCap),
		gnet.WithTCPNoDelay(nodelay),
		gnet.WithLogger(gnetLogger{s.log}),
	}
	if s.cfg.SocketRecvBuffer > 0 {
		opts = append(opts, gnet.WithSocketRecvBuffer(s.cfg.SocketRecvBuffer))
	}
	if s.cfg.SocketSendBuffer > 0 {
		opts = append(opts, gnet.WithSocketSendBuffer(s.cfg.SocketSendBuffer))
	}
	if s.cfg.TCPKeepAlive > 0 {
		opts = append(opts, gnet.WithTCPKeepAlive(s.cfg.TCPKeepAlive))
	}
	return opts
}

// gnetBufferCap is the size gnet v2 uses for a configured buffer cap: 64 KiB for 0, at
// least 1 KiB, otherwise rounded up to a power of two.
func gnetBufferCap(n int) int {
	switch {
	case n <= 0:
		return 64 << 10
	case n <= 1024:
		return 1024
	}
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// raiseNoFile raises the soft open-file limit to the hard limit and returns the result.
func raiseNoFile() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil {
			rl = want
		}
	}
	return rl.Cur
}

// gnetLogger routes gnet's logging through slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet: fatal: " + fmt.Sprintf(f, a...)) }

// refuseReason labels switchboard_connections_refused_total.
type refuseReason uint8

const (
	refuseMaxConns refuseReason = iota
	refuseDraining
	refusePerIP
	refuseAcceptRate
	refuseZone
	numRefuseReasons
)

var refuseReasonNames = [numRefuseReasons]string{"max_connections", "draining", "per_ip", "accept_rate", "zone_red"}

func (s *Server) refusedByReason() map[string]uint64 {
	m := make(map[string]uint64, numRefuseReasons)
	for i, name := range refuseReasonNames {
		m[name] = s.refusedBy[i].Load()
	}
	return m
}
