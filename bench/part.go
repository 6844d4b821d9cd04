package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/codec"
)

// A run is split into parts, one per process (one in total without --procs). A part owns
// a contiguous range of the run's connections. It connects them, reports ready, waits for
// go, runs the load, streams a tick every second and ends with a result. The same code
// runs in a goroutine of the parent or in a worker process talking JSON over pipes.

// partSpec is what a part is told to do.
type partSpec struct {
	Cfg    Config `json:"cfg"`
	Index  int    `json:"index"`  // part number, 0-based
	Parts  int    `json:"parts"`  // number of parts in the run
	First  int    `json:"first"`  // global index of the first connection
	N      int    `json:"n"`      // connections of this part
	Source string `json:"source"` // local IP to bind, "" for any
	RunID  string `json:"run_id"` // makes route names unique per run
	T0     int64  `json:"t0"`     // Unix ns when the pass started: second 0 of the ramp
	Floor  bool   `json:"floor"`  // the target is the bare echo floor: no HELLO, echo comes back as ECHO
}

// partMsg is one message from a part to the parent.
type partMsg struct {
	Kind     string      `json:"kind"`               // "progress", "ready", "tick", "result" or "error"
	Progress *progress   `json:"progress,omitempty"` // once a second while connecting
	Ready    *connCounts `json:"ready,omitempty"`
	Tick     *tickInfo   `json:"tick,omitempty"`
	Result   *partResult `json:"result,omitempty"`
	Err      string      `json:"err,omitempty"`
}

// connCounts describes the connecting phase of a part.
type connCounts struct {
	Target        int            `json:"target"`
	Established   int            `json:"established"`
	Refused       int            `json:"refused"`
	RefusedByCode map[string]int `json:"refused_by_code"`
	Failed        int            `json:"failed"`
	FailedByCause map[string]int `json:"failed_by_cause"` // "PHASE CAUSE" (see failCause)
	ConnectNs     int64          `json:"connect_ns"`      // first dial to last outcome
	FirstError    string         `json:"first_error,omitempty"`
	// EstablishedBySec and FailedBySec count outcomes by second since the pass started.
	EstablishedBySec []int `json:"established_by_sec,omitempty"`
	FailedBySec      []int `json:"failed_by_sec,omitempty"`
}

func (c *connCounts) add(o connCounts) {
	c.Target += o.Target
	c.Established += o.Established
	c.Refused += o.Refused
	c.Failed += o.Failed
	c.ConnectNs = max(c.ConnectNs, o.ConnectNs)
	if c.FirstError == "" {
		c.FirstError = o.FirstError
	}
	if c.RefusedByCode == nil {
		c.RefusedByCode = map[string]int{}
	}
	for k, v := range o.RefusedByCode {
		c.RefusedByCode[k] += v
	}
	if c.FailedByCause == nil {
		c.FailedByCause = map[string]int{}
	}
	for k, v := range o.FailedByCause {
		c.FailedByCause[k] += v
	}
	c.EstablishedBySec = addInto(c.EstablishedBySec, o.EstablishedBySec)
	c.FailedBySec = addInto(c.FailedBySec, o.FailedBySec)
}

// fail counts n connections that failed with cause, err as the first failure if none
// was recorded yet.
func (c *connCounts) fail(n int, cause, firstErr string) {
	c.Failed += n
	if c.FailedByCause == nil {
		c.FailedByCause = map[string]int{}
	}
	c.FailedByCause[cause] += n
	if c.FirstError == "" {
		c.FirstError = firstErr
	}
}

// tickInfo is one second of a part's load phase. Counters are cumulative; Hist holds only
// the latencies recorded since the previous tick.
type tickInfo struct {
	Sec      int        `json:"sec"`
	Sent     uint64     `json:"sent"`
	Received uint64     `json:"received"`
	Errors   uint64     `json:"errors"`
	Hist     *Histogram `json:"hist"`
}

// partResult is a part's final figures.
type partResult struct {
	Conns      connCounts        `json:"conns"`
	Sent       uint64            `json:"sent"`
	Received   uint64            `json:"received"`
	Unanswered uint64            `json:"unanswered"`  // part.unanswered
	ConnErrors uint64            `json:"conn_errors"` // part.connErrs
	Errors     map[string]uint64 `json:"errors"`
	Hist       *Histogram        `json:"hist"`
	DurationNs int64             `json:"duration_ns"` // go to the end of the load
	Probe      *probeResult      `json:"probe,omitempty"`
	Reconnect  *reconnResult     `json:"reconnect,omitempty"` // connect --reconnect
}

// part is a running part. Counters are atomics shared by the connection goroutines.
type part struct {
	spec    partSpec
	cfg     *Config
	clk     clock
	emit    func(partMsg)
	payload []byte   // Size bytes of filler; the first 8 carry a timestamp
	names   []string // route names by global connection index ("" when none)
	targets []int    // global indices that own a name
	// rate is this part's share of the open-loop Rate, messages/s, spread evenly over
	// its established load connections; set by go (partRates).
	rate float64

	sent, received atomic.Uint64
	// unanswered counts messages written on a connection the server then closed (a
	// closing ERROR, GOAWAY) without answering them: its window in flight at the close.
	unanswered atomic.Uint64
	// connErrs counts the ERRORs with corr 0 among errs: about the connection (the
	// closing SLOW_CONSUMER, ...), answering no message.
	connErrs atomic.Uint64
	errs     [codec.MaxCode + 2]atomic.Uint64 // by code; the last slot counts unknown codes
	win      *atomicHistogram
	maxLat   atomic.Int64 // ns: the largest latency recorded (readLoop's quiet period)
	// sending counts load connections whose senders may still send. An open-loop sender
	// is done at its last message due before stopAt, up to one interval early (300 ms at
	// 3.3 msgs/s per connection), or late if the machine stalled it; its reader's quiet
	// period can end, with every message so far accounted, while other senders still
	// send to it. It falls to 0 only after every sender's last sent.Add.
	sending atomic.Int64

	goAt   int64 // ns on clk; set before the load starts
	stopAt int64 // ns on clk: no new load after this
	hardAt int64 // ns on clk: connections stop reading at the latest

	ctx context.Context // the part's; set by run
	wg  sync.WaitGroup
}

// sconn is one load connection.
type sconn struct {
	nc  net.Conn
	fr  *codec.Reader // frames alias its buffer until the next Next
	idx int           // global index
	rng *rand.Rand
	wmu sync.Mutex // open loop: serialises the sender's and the reader's writes
	wb  []byte
	// corr is the last correlation id used; owned by the goroutine that sends load.
	corr uint32
	// outstanding counts open-loop messages sent and not yet answered. atomic
	outstanding atomic.Int64
	// holdUntil (ns on clk): with --retry-after, the closed loop sends nothing new on this
	// connection before it (the latest retry-after the server advised); waking: the read
	// deadline is set to it. Owned by the closed loop's goroutine.
	holdUntil int64
	waking    bool
}

func (c *sconn) close() { _ = c.nc.Close() }

// runPart runs one part to completion. It returns when the part is over or ctx ends;
// goCh delivers the parent's go: the part's share of the open-loop rate (partRates).
func runPart(ctx context.Context, spec partSpec, emit func(partMsg), goCh <-chan float64) {
	p := &part{spec: spec, cfg: &spec.Cfg, clk: newClock(), emit: emit, win: newAtomicHistogram()}
	p.payload = make([]byte, p.cfg.Size)
	for i := range p.payload {
		p.payload[i] = 'x'
	}
	if err := p.run(ctx, goCh); err != nil {
		emit(partMsg{Kind: "error", Err: err.Error()})
	}
}

func (p *part) run(ctx context.Context, goCh <-chan float64) error {
	cfg := p.cfg
	p.ctx = ctx
	needNames := !p.spec.Floor && (cfg.Scenario == ScenarioRoute || cfg.Scenario == ScenarioSoak ||
		cfg.Scenario == ScenarioConnect && cfg.Register)
	if needNames {
		p.names = make([]string, cfg.Conns)
		for g := range cfg.Conns {
			if cfg.Scenario != ScenarioSoak || g%2 == 1 {
				p.names[g] = fmt.Sprintf("bench-%s-%d", p.spec.RunID, g)
				p.targets = append(p.targets, g)
			}
		}
	}
	var conns []*sconn
	var counts connCounts
	var probe *sconn
	idx := make([]int, p.spec.N)
	for i := range idx {
		idx[i] = p.spec.First + i
	}
	if cfg.Scenario == ScenarioOverload {
		idx = nil // spike connections are opened during the spike
		if p.spec.Index == 0 {
			cs, cc := p.connect(ctx, []int{-1}, 0)
			counts.add(cc)
			if len(cs) == 0 {
				return fmt.Errorf("probe connection failed: %s", cc.FirstError)
			}
			probe = cs[0]
		}
	}
	if idx != nil {
		conns, counts = p.connect(ctx, idx, cfg.Ramp/float64(p.spec.Parts))
	}
	counts.Target = len(idx)
	defer func() {
		for _, c := range conns {
			c.close()
		}
		if probe != nil {
			probe.close()
		}
	}()
	p.emit(partMsg{Kind: "ready", Ready: &counts})
	select {
	case p.rate = <-goCh:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.goAt = p.clk.now()
	total := NewHistogram()
	tickCtx, stopTicks := context.WithCancel(ctx)
	tickDone := make(chan struct{})
	go p.ticker(tickCtx, total, tickDone)

	var pr *probeResult
	var rc *reconnResult
	switch cfg.Scenario {
	case ScenarioConnect:
		p.stopAt = p.goAt + int64(cfg.Duration)
		rc = p.hold(ctx, conns)
	case ScenarioOverload:
		var spike connCounts
		pr, spike = p.overload(ctx, probe)
		counts.add(spike)
	default:
		p.stopAt = p.goAt + int64(cfg.Duration)
		p.hardAt = p.stopAt + int64(cfg.Grace)
		p.load(ctx, conns)
	}
	end := p.clk.now()
	stopTicks()
	<-tickDone
	measured := min(end, p.stopAt) - p.goAt
	if cfg.Scenario == ScenarioOverload {
		measured = int64(cfg.Duration) // the spike
	}
	res := &partResult{Conns: counts, Sent: p.sent.Load(), Received: p.received.Load(),
		Unanswered: p.unanswered.Load(), ConnErrors: p.connErrs.Load(), Errors: p.errorMap(), Hist: total, DurationNs: measured, Probe: pr, Reconnect: rc}
	p.emit(partMsg{Kind: "result", Result: res})
	return nil
}

func (p *part) errorMap() map[string]uint64 {
	m := map[string]uint64{}
	for i := range p.errs {
		if n := p.errs[i].Load(); n > 0 {
			name := codec.ErrorCode(i).String()
			if i == len(p.errs)-1 {
				name = "UNKNOWN"
			}
			m[name] += n
		}
	}
	return m
}

func (p *part) countError(code codec.ErrorCode) {
	i := int(code)
	if i >= len(p.errs)-1 {
		i = len(p.errs) - 1
	}
	p.errs[i].Add(1)
}

func (p *part) errorTotal() uint64 {
	var n uint64
	for i := range p.errs {
		n += p.errs[i].Load()
	}
	return n
}

// ticker emits a tick every second of the load phase and a last one for the partial
// second at the end; every window is also merged into total.
func (p *part) ticker(ctx context.Context, total *Histogram, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	sec := 0
	tick := func() {
		h := NewHistogram()
		p.win.SnapshotReset(h)
		total.Merge(h)
		p.emit(partMsg{Kind: "tick", Tick: &tickInfo{Sec: sec, Sent: p.sent.Load(),
			Received: p.received.Load(), Errors: p.errorTotal(), Hist: h}})
		sec++
	}
	for {
		select {
		case <-t.C:
			tick()
		case <-ctx.Done():
			tick()
			return
		}
	}
}

// connect opens connections for the given global indices (-1: the overload probe) at
// rate connections/s (0: as fast as the dial concurrency allows), HELLOs each and
// registers its route name. It returns the established ones, by index order.
func (p *part) connect(ctx context.Context, idx []int, rate float64) ([]*sconn, connCounts) {
	cfg := p.cfg
	cc := connCounts{Target: len(idx), RefusedByCode: map[string]int{}, FailedByCause: map[string]int{}}
	dl, err := newDialer(p.spec.Source, cfg.Timeout)
	if err != nil {
		cc.fail(len(idx), "dial other", err.Error())
		return nil, cc
	}
	// With a rate the phase ends Timeout after the last scheduled dial. As fast as
	// possible it has no bound of its own: every dial and handshake is bounded by Timeout,
	// so it ends once each connection has had its chance, and the parent bounds the whole
	// phase as well. (A bound of Timeout alone cut a 100K run off after 10 s with 70K
	// connections never dialled.)
	cancel := context.CancelFunc(func() {})
	if rate > 0 {
		bound := cfg.Timeout + time.Duration(float64(len(idx))/rate*float64(time.Second))
		ctx, cancel = context.WithTimeout(ctx, bound)
	}
	defer cancel()

	out := make([]*sconn, len(idx))
	var mu sync.Mutex // guards cc and ramp
	ramp := rampCounts{t0: p.spec.T0}
	if ramp.t0 == 0 {
		ramp.t0 = time.Now().UnixNano()
	}
	sem := make(chan struct{}, 128)
	var wg sync.WaitGroup
	start := p.clk.now()
	// Progress four times a second, so that the parent's status lines are at most a
	// quarter of a second behind.
	progDone, progStop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(progDone)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-progStop:
				return
			}
			mu.Lock()
			pg := progress{Established: cc.Established, Refused: cc.Refused, Failed: cc.Failed}
			mu.Unlock()
			p.emit(partMsg{Kind: "progress", Progress: &pg})
		}
	}()
	var pc *pacer
	if rate > 0 {
		pc = newPacer(start, rate)
	}
	for i, g := range idx {
		if pc != nil {
			if d := time.Duration(pc.NextAt() - p.clk.now()); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
			pc.Due(p.clk.now(), 1)
		}
		// Wait for a dial slot, but not past the end of the phase.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			mu.Lock()
			cc.fail(len(idx)-i, causeNotAttempted, "connecting phase timed out")
			sec := ramp.sec(time.Now().UnixNano())
			for range len(idx) - i {
				ramp.failed = bump(ramp.failed, sec)
			}
			mu.Unlock()
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sc, code, err := p.open(ctx, dl, g)
			mu.Lock()
			defer mu.Unlock()
			sec := ramp.sec(time.Now().UnixNano())
			switch {
			case err == nil:
				out[i] = sc
				cc.Established++
				ramp.established = bump(ramp.established, sec)
			case code != 0:
				cc.Refused++
				cc.RefusedByCode[code.String()]++
				ramp.failed = bump(ramp.failed, sec)
			default:
				cc.fail(1, failCause(err), err.Error())
				ramp.failed = bump(ramp.failed, sec)
			}
		}()
	}
	wg.Wait()
	close(progStop)
	<-progDone
	cc.ConnectNs = p.clk.now() - start
	cc.EstablishedBySec, cc.FailedBySec = ramp.established, ramp.failed
	conns := out[:0]
	for _, sc := range out {
		if sc != nil {
			conns = append(conns, sc)
		}
	}
	return conns, cc
}

// open dials and handshakes one connection. A refusal returns its code.
func (p *part) open(ctx context.Context, dl *dialer, g int) (*sconn, codec.ErrorCode, error) {
	cfg := p.cfg
	sc, err := p.dial(ctx, dl, g, max(g, 0)%len(cfg.Addrs))
	if err != nil {
		return nil, 0, err
	}
	if p.spec.Floor {
		return sc, 0, nil
	}
	if code, err := p.hello(sc); err != nil {
		sc.close()
		return nil, code, err
	}
	if g >= 0 && p.names != nil && p.names[g] != "" {
		if code, _, err := p.register(sc, p.names[g]); err != nil {
			sc.close()
			return nil, code, &openError{phaseHandshake, err}
		}
	}
	return sc, 0, nil
}

// dial opens connection g's socket to cfg.Addrs[addr], without a handshake.
func (p *part) dial(ctx context.Context, dl *dialer, g, addr int) (*sconn, error) {
	cfg := p.cfg
	nc, err := dl.dial(ctx, cfg.Addrs[addr])
	if err != nil {
		return nil, &openError{phaseDial, err}
	}
	bufSize := max(64<<10, 2*(cfg.Size+codec.HeaderLen+300))
	if cfg.Scenario == ScenarioConnect {
		// Only WELCOME, PONG and ERROR arrive; the Reader grows for anything larger. 64 KiB
		// each would be ~1 GiB of heap for a worker's 16K connections.
		bufSize = 1 << 10
	}
	return &sconn{nc: nc, fr: codec.NewReader(nc, maxInbound, bufSize), idx: g,
		rng: rand.New(rand.NewPCG(uint64(g+1), uint64(p.clk.now())))}, nil
}

// hello HELLOs sc; a refusal returns its code.
func (p *part) hello(sc *sconn) (codec.ErrorCode, error) {
	if _, code, err := handshake(sc.nc, sc.fr, fmt.Sprintf("bench-%d", sc.idx), p.cfg.Token, p.cfg.Timeout); err != nil {
		return code, &openError{phaseHandshake, err}
	}
	return 0, nil
}

// register REGISTERs name on sc and waits for the answer; an ERROR returns its code, so
// that the caller counts it as a refusal by code, and its retry-after.
func (p *part) register(sc *sconn, name string) (codec.ErrorCode, time.Duration, error) {
	_ = sc.nc.SetDeadline(time.Now().Add(p.cfg.Timeout))
	defer func() { _ = sc.nc.SetDeadline(time.Time{}) }()
	if _, err := sc.nc.Write(codec.AppendName(nil, codec.TypeRegister, 1, name)); err != nil {
		return 0, 0, err
	}
	for {
		f, err := sc.fr.Next()
		if err != nil {
			return 0, 0, err
		}
		switch {
		case f.Type == codec.TypeOK && f.Corr == 1:
			return 0, 0, nil
		case f.Type == codec.TypeError:
			code := errorCode(f.Body)
			var retry time.Duration
			if e, err := codec.ParseError(f.Body); err == nil {
				retry = time.Duration(e.RetryAfterMs) * time.Millisecond
			}
			return code, retry, fmt.Errorf("register %s: %v", name, code)
		}
	}
}

// hold keeps connect's connections open until stopAt, pinging each once per --keepalive
// (pingLoop), without a goroutine per connection. With --reconnect every
// connection also gets a watcher that replaces it when it is lost (watchAll); hold then
// returns their account.
func (p *part) hold(ctx context.Context, conns []*sconn) *reconnResult {
	if !p.cfg.Reconnect {
		p.pingLoop(ctx, len(conns), func(i int) *sconn { return conns[i] })
		return nil
	}
	at, end := p.watchAll(ctx, conns)
	p.pingLoop(ctx, len(conns), at)
	return end()
}

// pingLoop PINGs n connections until stopAt; at(i) is connection i (nil: none now).
func (p *part) pingLoop(ctx context.Context, n int, at func(int) *sconn) {
	// Every connection gets a PING once per Keepalive, a slice of them every tick: sent
	// all at once, 100K connections' PINGs were bursts that stalled the nodes for most of
	// a second every interval, which is not what held clients do.
	const tick = 100 * time.Millisecond
	per := pingsPerTick(n, p.cfg.Keepalive, tick)
	ping := codec.AppendFrame(nil, codec.TypePing, 0, 0, nil)
	t := time.NewTicker(tick)
	defer t.Stop()
	next := 0
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		if p.clk.now() >= p.stopAt {
			return
		}
		for range per {
			c := at(next)
			next = (next + 1) % n
			if c == nil { // reconnecting
				continue
			}
			_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.nc.Write(ping)
		}
	}
}

// pingsPerTick is how many of n connections to PING every tick so that each gets one
// PING per every (at least one tick): n·tick/every, rounded up.
func pingsPerTick(n int, every, tick time.Duration) int {
	every = max(every, tick)
	return int((int64(n)*int64(tick) + int64(every) - 1) / int64(every))
}

// load runs the scenario's traffic on conns until stopAt and drains until hardAt.
func (p *part) load(ctx context.Context, conns []*sconn) {
	stopCtx := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			_ = c.nc.SetDeadline(time.Now())
		}
	})
	defer stopCtx()
	cfg := p.cfg
	p.sending.Store(int64(len(conns)))
	for i, c := range conns {
		k := p.kindOf(c)
		p.wg.Add(1)
		if cfg.Rate > 0 {
			perConn := p.rate / float64(len(conns))
			// Stagger the connections' schedules over one interval so they do not all
			// send at the same instant.
			offset := int64(float64(i) / float64(len(conns)) * float64(time.Second) / perConn)
			go p.openLoop(c, k, p.goAt+offset, perConn)
		} else {
			go p.closedLoop(c, k)
		}
	}
	p.wg.Wait()
}

// kind is what a connection sends.
type kind uint8

const (
	kindEcho kind = iota
	kindSend
	kindRequest
)

func (p *part) kindOf(c *sconn) kind {
	switch p.cfg.Scenario {
	case ScenarioRoute:
		if p.cfg.Mode == "request" {
			return kindRequest
		}
		return kindSend
	case ScenarioSoak:
		if c.idx%2 == 1 {
			return kindSend
		}
	}
	return kindEcho
}

// appendLoad appends one load frame stamped with ts. closed selects SEND with ACK (the
// closed loop's flow control) over SEND with a bare corr (errors only).
func (p *part) appendLoad(c *sconn, dst []byte, k kind, ts int64, closed bool) []byte {
	corr := c.nextCorr()
	switch k {
	case kindSend, kindRequest:
		target := c.idx
		if n := len(p.targets); n > 1 {
			for target == c.idx {
				target = p.targets[c.rng.IntN(n)]
			}
		}
		var start int
		if k == kindSend {
			flags := codec.Flags(0)
			if closed {
				flags = codec.FlagAck
			}
			dst, start = codec.AppendHeader(dst, codec.TypeSend, flags, corr)
			dst = append(dst, byte(len(p.names[target])))
			dst = append(dst, p.names[target]...)
		} else {
			dst, start = codec.AppendHeader(dst, codec.TypeRequest, 0, corr)
			dst = append(dst, byte(len(p.names[target])))
			dst = append(dst, p.names[target]...)
			// The REQUEST's timeout is --grace (Config.Grace).
			dst = binary.BigEndian.AppendUint32(dst, uint32(p.cfg.Grace/time.Millisecond))
		}
		at := len(dst)
		dst = append(dst, p.payload...)
		binary.BigEndian.PutUint64(dst[at:], uint64(ts))
		return codec.FinishFrame(dst, start)
	default:
		dst, start := codec.AppendHeader(dst, codec.TypeEcho, 0, corr)
		at := len(dst)
		dst = append(dst, p.payload...)
		binary.BigEndian.PutUint64(dst[at:], uint64(ts))
		return codec.FinishFrame(dst, start)
	}
}

// nextCorr returns the next correlation id, never 0. The bench matches answers by the
// timestamp in their payload, not by corr; corr is non-zero so that the server reports
// failures, and distinct so that REQUESTs in flight never share one.
func (c *sconn) nextCorr() uint32 {
	c.corr++
	if c.corr == 0 {
		c.corr = 1
	}
	return c.corr
}

// handled is what one inbound frame meant to the loop that read it.
type handled uint8

const (
	hNone     handled = iota // nothing to account (PONG, stray OK...)
	hDone                    // one of our messages completed (answer or error)
	hReceived                // a message addressed to us arrived (route MESSAGE)
	hClosed                  // the server is closing the connection
)

// handle accounts one inbound frame and appends any REPLY it needs to c.wb. It records
// latency and counts received messages and errors.
func (p *part) handle(c *sconn, f codec.Frame, k kind, now int64) handled {
	switch f.Type {
	case codec.TypeEchoReply, codec.TypeResponse:
		p.record(now, f.Body)
		p.received.Add(1)
		return hDone
	case codec.TypeEcho: // the floor echoes our ECHO frames verbatim
		if p.spec.Floor {
			p.record(now, f.Body)
			p.received.Add(1)
			return hDone
		}
	case codec.TypeOK:
		if k == kindSend {
			return hDone
		}
	case codec.TypeMessage:
		if len(f.Body) >= 9 {
			off := 9 + int(f.Body[8])
			if off <= len(f.Body) {
				p.record(now, f.Body[off:])
			}
		}
		p.received.Add(1)
		return hReceived
	case codec.TypeIncoming:
		if len(f.Body) >= 17 {
			token := binary.BigEndian.Uint64(f.Body)
			off := 17 + int(f.Body[16])
			if off <= len(f.Body) {
				c.wb = codec.AppendReply(c.wb, 0, token, f.Body[off:])
			}
		}
	case codec.TypeError:
		p.countError(errorCode(f.Body))
		if f.Corr == 0 {
			p.connErrs.Add(1)
		}
		if errorClosing(f.Body) || f.Corr == 0 {
			return hClosed
		}
		if ra := errorRetryAfter(f.Body); ra > 0 && p.cfg.RetryAfter {
			c.holdUntil = max(c.holdUntil, now+int64(ra))
		}
		return hDone
	case codec.TypeGoAway:
		return hClosed
	}
	return hNone
}

// record adds the latency of a payload stamped with its send (or intended send) time.
func (p *part) record(now int64, payload []byte) {
	if len(payload) < 8 {
		return
	}
	ts := int64(binary.BigEndian.Uint64(payload))
	d := now - ts
	p.win.Record(time.Duration(d))
	for {
		m := p.maxLat.Load()
		if d <= m || p.maxLat.CompareAndSwap(m, d) {
			break
		}
	}
}

// closedLoop keeps Pipeline messages in flight on c until stopAt: every answer (reply,
// OK, ERROR) lets one more go. Answers read in one go are refilled with one write.
func (p *part) closedLoop(c *sconn, k kind) {
	defer p.wg.Done()
	window := p.cfg.Pipeline
	inflight := 0
	var sent uint64
	sending := true
	stopSending := func() {
		if sending {
			sending = false
			p.sending.Add(-1)
		}
	}
	defer stopSending()
	fill := func(now int64) bool {
		switch {
		case now < c.holdUntil && now < p.stopAt:
			// The server advised waiting (--retry-after): wake at its end if no answer
			// comes before.
			if !c.waking {
				c.waking = true
				_ = c.nc.SetReadDeadline(p.clk.at(min(c.holdUntil, p.stopAt)))
			}
		case now < p.stopAt:
			if c.waking {
				c.waking = false
				_ = c.nc.SetReadDeadline(p.clk.at(p.hardAt))
			}
			for ; inflight < window; inflight++ {
				c.wb = p.appendLoad(c, c.wb, k, now, true)
				sent++
			}
		}
		if len(c.wb) > 0 {
			_ = c.nc.SetWriteDeadline(p.clk.at(p.hardAt))
			_, err := c.nc.Write(c.wb)
			c.wb = c.wb[:0]
			p.sent.Add(sent)
			sent = 0
			if err != nil {
				return false
			}
		}
		if now >= p.stopAt {
			stopSending()
		}
		return true
	}
	if !fill(p.clk.now()) {
		return
	}
	closed := p.readLoop(c, k, func(now int64) bool { return now >= p.stopAt && inflight <= 0 },
		func(n int) { inflight -= n }, fill)
	if closed && inflight > 0 {
		p.unanswered.Add(uint64(inflight))
	}
}

// readLoop reads c until the load is over and every answer is in (or hardAt). idle
// reports whether the connection's own load is over and answered; done(n) is told about n
// completed messages; flush is called whenever the next read would block, with the time,
// and returns false if the connection broke. It reports whether the server closed the
// connection (a closing ERROR, or GOAWAY).
func (p *part) readLoop(c *sconn, k kind, idle func(now int64) bool, done func(int), flush func(int64) bool) (closed bool) {
	_ = c.nc.SetReadDeadline(p.clk.at(p.hardAt))
	draining := false
	// settle flushes when the next read would block, then moves the read deadline to a
	// quiet period once the connection's own load is over and answered.
	settle := func(now int64) bool {
		if !flush(now) {
			return false
		}
		if idle(now) {
			// Our own messages are all answered; keep reading a little for messages
			// other connections are still routing to us.
			draining = true
		}
		if draining {
			// A message routed to us may still be on its way: wait at least as long as
			// the slowest one seen so far took (with latencies of seconds, 250 ms of
			// quiet counted messages still in flight as lost).
			_ = c.nc.SetReadDeadline(p.clk.at(p.quietUntil(now)))
		}
		return true
	}
	for {
		f, err := c.fr.Next()
		if err != nil && c.waking && errors.Is(err, os.ErrDeadlineExceeded) {
			// The end of a retry-after (closedLoop's fill): send again. The Reader
			// resumes after a timeout.
			c.waking = false
			_ = c.nc.SetReadDeadline(p.clk.at(p.hardAt))
			if !settle(p.clk.now()) {
				return false
			}
			continue
		}
		if err != nil {
			// A deadline before hardAt is a quiet period of a connection whose own load
			// is over (set here, or by openLoop when its sender is done). If a message
			// this run sent is neither received nor refused yet, it may be on its way to
			// this connection: keep reading. It counts as lost only if it has not come
			// by hardAt (the grace), not after a quiet period that a stall of the
			// machine can outlast. The Reader resumes after a timeout.
			if now := p.clk.now(); errors.Is(err, os.ErrDeadlineExceeded) && now < p.hardAt &&
				(draining || idle(now)) && p.accountsOpen() {
				draining = true
				_ = c.nc.SetReadDeadline(p.clk.at(p.quietUntil(now)))
				continue
			}
			return false
		}
		now := p.clk.now()
		switch p.handle(c, f, k, now) {
		case hDone:
			done(1)
		case hClosed:
			return true
		}
		if c.fr.Complete() {
			continue
		}
		if !settle(now) {
			return false
		}
	}
}

// quiet is how long a reader whose own load is over waits for one more frame.
const quiet = 250 * time.Millisecond

// quietUntil is the end of a quiet period that starts at now: quiet plus the slowest
// latency seen so far, counted from stopAt at the earliest (a reader whose sender was
// done early still gets messages from the senders that are not; with --procs it cannot
// count theirs), and hardAt at the latest.
func (p *part) quietUntil(now int64) int64 {
	return min(max(now, p.stopAt)+int64(quiet)+p.maxLat.Load(), p.hardAt)
}

// accountsOpen reports whether a message of this run may still be on its way: a sender
// may still send, or a message sent is neither received nor refused yet. Only a run of
// one part can tell: with --procs, messages cross between the parts' processes, and each
// part's readers keep to the quiet period alone.
func (p *part) accountsOpen() bool {
	if p.spec.Parts > 1 {
		return false
	}
	// sending first: once it reads 0, every sender's last sent.Add is visible.
	if p.sending.Load() > 0 {
		return true
	}
	return p.sent.Load()+p.connErrs.Load() > p.received.Load()+p.errorTotal()+p.unanswered.Load()
}

// openLoop sends on c at rate messages/s from start until stopAt, stamped with their
// intended send times, while a reader goroutine accounts the answers.
func (p *part) openLoop(c *sconn, k kind, start int64, rate float64) {
	defer p.wg.Done()
	var rwg sync.WaitGroup
	rwg.Add(1)
	senderDone := make(chan struct{})
	closed := false
	go func() {
		defer rwg.Done()
		closed = p.readLoop(c, k,
			func(int64) bool {
				select {
				case <-senderDone:
					return c.outstanding.Load() <= 0
				default:
					return false
				}
			},
			func(n int) { c.outstanding.Add(int64(-n)) },
			func(int64) bool {
				if len(c.wb) == 0 { // REPLYs to INCOMING requests
					return true
				}
				// c.wb is the reader's; the lock orders the socket writes only.
				c.wmu.Lock()
				_ = c.nc.SetWriteDeadline(p.clk.at(p.hardAt))
				_, err := c.nc.Write(c.wb)
				c.wmu.Unlock()
				c.wb = c.wb[:0]
				return err == nil
			})
		_ = c.nc.SetDeadline(time.Now()) // unblock a sender stuck in Write
	}()
	pc := newPacer(start, rate)
	const maxBatch = 256
	var buf []byte
	var lastWriteEnd int64
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := p.clk.now()
		if pc.NextAt() >= p.stopAt {
			break
		}
		first, n := pc.Due(now, maxBatch)
		if n == 0 {
			timer.Reset(time.Duration(pc.NextAt() - now))
			select {
			case <-timer.C:
			case <-p.ctx.Done():
			}
			if p.ctx.Err() != nil {
				break
			}
			continue
		}
		buf = buf[:0]
		m := 0
		for i := range n {
			if pc.At(first+uint64(i)) >= p.stopAt {
				break
			}
			buf = p.appendLoad(c, buf, k, pc.Stamp(first+uint64(i), now, lastWriteEnd), false)
			m++
		}
		if k != kindSend {
			c.outstanding.Add(int64(m))
		}
		c.wmu.Lock()
		_ = c.nc.SetWriteDeadline(p.clk.at(p.hardAt))
		_, err := c.nc.Write(buf)
		c.wmu.Unlock()
		lastWriteEnd = p.clk.now()
		p.sent.Add(uint64(m))
		if err != nil {
			break
		}
	}
	p.sending.Add(-1)
	close(senderDone)
	if c.outstanding.Load() <= 0 {
		// Nothing to wait for: cut the reader's wait short (it extends the deadline
		// itself while frames keep arriving).
		_ = c.nc.SetReadDeadline(p.clk.at(p.quietUntil(p.clk.now())))
	}
	rwg.Wait()
	if n := c.outstanding.Load(); closed && n > 0 {
		p.unanswered.Add(uint64(n))
	}
}
