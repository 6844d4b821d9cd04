package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// Server is one switchboard node. Create it with New, then Start (or StartListener, or
// Serve), and stop it with Shutdown. All exported methods are safe for concurrent use.
type Server struct {
	cfg      Config          // immutable after New
	log      *slog.Logger    // immutable after New
	dir      shard.Directory // safe for concurrent use
	claimFn  shard.ClaimFunc // s.claimDone, bound once so that REGISTER does not allocate
	token    []byte          // immutable after New
	serverID []byte          // immutable after New
	maxConns int             // immutable after Start
	nofile   uint64          // immutable after Start
	epoch    time.Time       // immutable after New; clock's zero
	peers    []string        // immutable after New; cfg.Peers split
	// livePeers replaces peers once SetPeers was called (a cluster's live nodes).
	livePeers atomic.Pointer[[]string]

	// remote carries traffic to other nodes (remote.go); nil on a single node. Safe for
	// concurrent use. remoteMax is its MaxRecord. Both immutable after New.
	remote    Remote
	remoteMax int
	// serving is dir, when it can stop serving names (servingDirectory); nil otherwise.
	// Immutable after New.
	serving servingDirectory
	// proxyFrom are the trusted PROXY protocol senders (cfg.ProxyProtocolFrom); immutable
	// after New, nil when off.
	proxyFrom []netip.Prefix

	baseCtx context.Context // immutable after New
	cancel  context.CancelFunc

	mu      sync.Mutex // guards started, closed, ln, engine
	started bool
	closed  bool
	ln      *net.TCPListener
	engine  *gnet.Client
	done    chan struct{} // closed when Shutdown has finished

	// loopOf finds switchboard's loop for a gnet event loop. Immutable after Start, which
	// meets every loop before the first client connection (see startLoops), so OnOpen
	// reads it without a lock.
	loopOf map[gnet.EventLoop]*loop
	loops  [256]atomic.Pointer[loop] // by index; set by Start before any client connects
	nloops atomic.Int32
	// gnetConn locates the per-connection addresses gnet keeps, which OnOpen clears
	// (gnetaddr.go). Immutable after Start, which learns it from its first probe.
	gnetConn gnetLayout

	auth         auth         // authentication and the handshake cap (auth.go)
	g            guards       // overload protection; immutable pointers after New
	acceptTokens atomic.Int64 // accept-rate tokens left, published by the acceptor (-1: unlimited)
	connCount    atomic.Int64 // connections admitted and not yet closed
	refused      atomic.Uint64
	refusedBy    [numRefuseReasons]atomic.Uint64
	acceptErrors atomic.Uint64
	// acceptPauses counts the acceptor's waits (pace), by pauseReason.
	acceptPauses [numPauseReasons]atomic.Uint64
	// handshakeWait is how long the acceptor waits for a handshake slot (pace); the
	// handshakeWait constant unless a test changes it before Start.
	handshakeWait time.Duration
	spacing       hsSpacing // the acceptor's even spacing during a handshake flood
	draining      atomic.Bool
	onDrain       func() // WithDrainStarted; nil for none
	// goAwayPaced is called between a loop's GOAWAY tasks (goAwayAll), off the loop; nil
	// unless a test sets it before Drain.
	goAwayPaced func()
	lingerStop  atomic.Bool // Shutdown: lingerers close what they hold at once

	connLog connLogger      // per-connection errors, rate-limited off the loops
	refuseq chan net.Conn   // refused connections waiting for the client's FIN; bounded
	hdr     headerReads     // PROXY header readers, started and stopped by the acceptor
	enrollq chan enrollment // admitted connections on their way to the enrollers (accept.go)
	wg      sync.WaitGroup  // acceptor, enrollers and lingerers
	logWG   sync.WaitGroup  // the connection-error logger
}

// Option configures a Server's dependencies (values go in Config).
type Option func(*Server)

// WithLogger sets the structured logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithDirectory replaces the name directory (the single-node shard.Registry by default),
// for a cluster-wide directory.
func WithDirectory(d shard.Directory) Option { return func(s *Server) { s.dir = d } }

// WithDrainStarted sets fn to be called once when Drain begins: after Draining reports
// true and before any GOAWAY is sent, so that, for example, a cluster can tell the other
// nodes this one is draining before its clients move to them. fn runs on Drain's caller
// and must not block.
func WithDrainStarted(fn func()) Option { return func(s *Server) { s.onDrain = fn } }

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
		done:     make(chan struct{}),
		refuseq:  make(chan net.Conn, lingerQueue),
		enrollq:  make(chan enrollment),
		connLog:  connLogger{ch: make(chan connLogEntry, 256)},

		handshakeWait: handshakeWait,
	}
	for _, o := range opts {
		o(s)
	}
	s.connLog.clock = s.clock
	s.claimFn = s.claimDone
	s.proxyFrom, _ = parseProxyFrom(cfg.ProxyProtocolFrom) // validated above
	s.peers = splitPeers(cfg.Peers)
	if s.dir == nil {
		s.dir = shard.NewRegistry()
	}
	if s.remote != nil {
		s.remoteMax = s.remote.MaxRecord()
	}
	s.serving, _ = s.dir.(servingDirectory)
	s.initGuards()
	if err := s.initAuth(); err != nil {
		return nil, err
	}
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
		c.MaxHandshakes = int(s.auth.maxHandshakes)
	}
	s.mu.Unlock()
	return c
}

// Start listens on Config.Listen and starts the event loops and the acceptor; it returns
// once the server accepts connections. Addr is valid afterwards.
func (s *Server) Start() error {
	if err := s.startable(); err != nil {
		return err
	}
	// KeepAlive -1: Go's default would turn on TCP keepalive (15 s) on every accepted
	// connection, four setsockopt calls each, whatever tcp-keep-alive says; gnet sets it
	// when tcp-keep-alive asks for it.
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen %s: %w", s.cfg.Listen, err)
	}
	if err := s.StartListener(ln); err != nil {
		_ = ln.Close()
		return err
	}
	return nil
}

// StartListener is Start on a listener the caller made: one inherited through systemd
// socket activation, or one of several SO_REUSEPORT siblings. ln must be a TCP listener;
// the server owns it from then on and closes it in Shutdown (it is left open if
// StartListener fails). Config.Listen is not used.
func (s *Server) StartListener(ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return fmt.Errorf("%w: %T", ErrNotTCP, ln)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.startableLocked(); err != nil {
		return err
	}
	nofile := openFileLimit()
	maxConns, capped := limits.MaxConnections(s.cfg.MaxConnections, nofile)
	if maxConns == 0 {
		return fmt.Errorf("%w: RLIMIT_NOFILE is %d", ErrNoFileDescriptors, nofile)
	}
	if capped {
		s.log.Warn("max-connections lowered below the open-file limit",
			"requested", s.cfg.MaxConnections, "effective", maxConns, "nofile", nofile)
	}
	deferSecs := 0
	if s.cfg.TCPDeferAccept > 0 {
		var err error
		if deferSecs, err = setDeferAccept(tl, s.cfg.TCPDeferAccept); err != nil {
			s.log.Warn("tcp-defer-accept not set; silent connections are accepted at once", "err", err)
		} else if synCookiesOff() {
			s.log.Warn("tcp-defer-accept with net.ipv4.tcp_syncookies=0: more silent connections than the listen backlog keep new clients from connecting for tcp-defer-accept; set it to 1 (the kernel's default) or tcp-defer-accept to 0")
		}
	}
	// Published before the engine starts: OnTick reads them from gnet's ticker goroutine.
	s.maxConns, s.nofile = maxConns, nofile
	eng, err := gnet.NewClient(&handler{srv: s}, s.gnetOptions()...)
	if err == nil {
		err = eng.Start()
	}
	if err != nil {
		return fmt.Errorf("server: start event loops: %w", err)
	}
	if err := s.startLoops(eng); err != nil {
		_ = eng.Stop()
		return fmt.Errorf("server: start event loops: %w", err)
	}
	s.ln, s.engine = tl, eng
	s.started = true
	s.startAuth(maxConns)
	s.wg.Add(1 + enrollers + lingerers)
	go s.acceptLoop()
	for range enrollers {
		go s.enroller()
	}
	s.logWG.Add(1)
	go s.runConnLogger()
	for range lingerers {
		go s.lingerer()
	}
	s.log.Info("switchboard listening", "addr", ln.Addr().String(), "loops", s.cfg.Loops,
		"max_connections", maxConns, "nofile", nofile, "max_frame", s.cfg.MaxFrame,
		"max_pending", s.cfg.MaxPending, "ring_size", s.cfg.RingSize, "node", s.cfg.NodeID,
		"tcp_defer_accept_s", deferSecs,
		// gnet rounds its buffers up to a power of two (at least 1 KiB): log what it uses.
		"read_buffer_cap", gnetBufferCap(s.cfg.ReadBufferCap), "write_buffer_cap", gnetBufferCap(s.cfg.WriteBufferCap))
	return nil
}

// Serve is StartListener(ln) followed by a wait: it blocks until Shutdown has finished and
// then returns ErrServerClosed, as net/http's Server.Serve does. Errors from starting are
// returned at once.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.StartListener(ln); err != nil {
		return err
	}
	<-s.done
	return ErrServerClosed
}

func (s *Server) startable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startableLocked()
}

func (s *Server) startableLocked() error {
	switch {
	case s.closed:
		return ErrServerClosed
	case s.started:
		return ErrAlreadyStarted
	}
	return nil
}

// loopProbe is the context of the probe connections startLoops enrolls, one per event
// loop: OnOpen records the loop.
type loopProbe struct{ el gnet.EventLoop }

// startLoops meets every gnet event loop before any client connects, so that each has its
// switchboard loop from the start: every loop is ticked and sampled for lag even while it
// holds no connection, and OnOpen finds its loop in a map that no longer changes. gnet
// offers no list of its loops, and its client engine always balances by least
// connections; so one loopback connection per loop, each held open until all are
// enrolled, lands one on every loop. They are closed before Start returns.
func (s *Server) startLoops(eng *gnet.Client) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	var held []net.Conn
	defer func() {
		for _, c := range held {
			_ = c.Close() // the loop reads EOF and closes its side
		}
	}()
	s.loopOf = make(map[gnet.EventLoop]*loop, s.cfg.Loops)
	for tries := 0; len(s.loopOf) < s.cfg.Loops; tries++ {
		if tries == 2*s.cfg.Loops {
			return fmt.Errorf("met %d of %d event loops", len(s.loopOf), s.cfg.Loops)
		}
		dialed, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		held = append(held, dialed)
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		p := &loopProbe{}
		// EnrollContext returns once OnOpen has run on the chosen loop; it closes nc.
		gc, err := eng.EnrollContext(nc, p)
		if err != nil {
			return err
		}
		if tries == 0 {
			if s.gnetConn = gnetLayoutOf(gc); !s.gnetConn.ok {
				s.log.Warn("gnet's connection layout is not the one known: each connection keeps ~210 B of addresses gnet does not need (gnetaddr.go)",
					"type", s.gnetConn.typ)
			}
		}
		if _, seen := s.loopOf[p.el]; p.el == nil || seen {
			continue
		}
		idx := len(s.loopOf)
		lp := newLoop(s, uint8(idx), p.el)
		s.loopOf[p.el] = lp
		s.loops[idx].Store(lp)
		s.nloops.Store(int32(idx + 1))
	}
	return nil
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
		close(s.done)
		return nil
	}
	s.draining.Store(true)
	_ = s.ln.Close()
	s.lingerStop.Store(true)
	s.wg.Wait() // acceptor, enrollers and lingerers are gone: nothing enrolls any more

	s.onEachLoop(func(lp *loop) { lp.goAway(s.goAwayMsg("node shutting down"), -1); lp.closeSome(-1) })
	err := s.waitConns(ctx)
	s.cancel()
	if stopErr := s.engine.Stop(); stopErr != nil && err == nil {
		err = stopErr
	}
	s.eachLoop(func(lp *loop) { lp.heldTimer.stop(); lp.hsTimer.stop() })
	s.g.idle.wg.Wait()  // the ticker is gone: it starts no collection any more
	s.stopAuth()        // the loops are gone: nobody queues a HELLO any more
	close(s.connLog.ch) // the loops are gone: nobody reports any more
	s.logWG.Wait()
	close(s.done)
	return err
}

// loopFor returns switchboard's loop for a gnet event loop. Lock-free: the map is
// immutable once Start has returned.
func (s *Server) loopFor(el gnet.EventLoop) *loop { return s.loopOf[el] }

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

// gnetOptions turns the Config into gnet's options: the one place that does.
func (s *Server) gnetOptions() []gnet.Option {
	opts := []gnet.Option{
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		// Several goroutines enroll at once (accept.go): gnet's round robin is not safe for
		// that, least-connections reads the loops' counts atomically.
		gnet.WithLoadBalancing(gnet.LeastConnections),
		gnet.WithTicker(true),
		gnet.WithReadBufferCap(s.cfg.ReadBufferCap),
		gnet.WithWriteBufferCap(s.cfg.WriteBufferCap),
		// Go's accept has set TCP_NODELAY already (enroll clears it for tcp-delay): gnet
		// setting it again on its copy of the descriptor would be one more system call
		// per connection.
		gnet.WithTCPNoDelay(gnet.TCPDelay),
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

// openFileLimit is the process's soft open-file limit. Go's runtime has already raised it
// to the hard limit at start (since Go 1.19), so there is nothing to raise here.
func openFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	return rl.Cur
}

// gnetLogger routes gnet's logging through slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }

func (g gnetLogger) Infof(f string, a ...any) { g.l.Debug("gnet: " + fmt.Sprintf(f, a...)) }

func (g gnetLogger) Warnf(f string, a ...any) { g.l.Warn("gnet: " + fmt.Sprintf(f, a...)) }

func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error("gnet: " + fmt.Sprintf(f, a...)) }

func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error("gnet: fatal: " + fmt.Sprintf(f, a...)) }
