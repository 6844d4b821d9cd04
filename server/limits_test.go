package server

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/internal/rawpeer"
	"github.com/switchboard/switchboard/limits"
)

func withLimits(cfg Config, l limits.Config) Config {
	cfg.Config = l
	return cfg
}

func refusedBy(s *Server, reason string) uint64 { return s.refusedByReason()[reason] }

func TestTier1PerIP(t *testing.T) {
	s := startServer(t, withLimits(Config{}, limits.Config{MaxConnsPerIP: 2}))
	a := connect(t, s, "a")
	connect(t, s, "b")
	p := rawpeer.Dial(t, s.Addr().String())
	if _, e := p.ExpectError(codec.CodeBusy); e.Reason != "too many connections from this address" {
		t.Fatalf("reason %q", e.Reason)
	}
	p.ExpectClosed()
	if n := refusedBy(s, "per_ip"); n != 1 {
		t.Fatalf("per_ip refusals %d; want 1", n)
	}
	_ = a.Conn.Close() // frees a slot for this address
	waitFor(t, "per-IP release", func() bool { return s.Stats().Connections == 1 })
	connect(t, s, "c")
}

func TestTier1AcceptRate(t *testing.T) {
	s := startServer(t, withLimits(Config{}, limits.Config{AcceptRate: 1, AcceptBurst: 3}))
	for i := 0; i < 3; i++ {
		connect(t, s, "ok")
	}
	p := rawpeer.Dial(t, s.Addr().String())
	_, e := p.ExpectError(codec.CodeBusy)
	if e.RetryAfterMs == 0 || e.RetryAfterMs > 1000 {
		t.Fatalf("retry-after %d ms; want (0, 1000]", e.RetryAfterMs)
	}
	if n := refusedBy(s, "accept_rate"); n != 1 {
		t.Fatalf("accept_rate refusals %d; want 1", n)
	}
}

func TestTier2ConnMsgRate(t *testing.T) {
	s := startServer(t, withLimits(Config{}, limits.Config{ConnMsgRate: 10, ConnMsgBurst: 10}))
	p := connect(t, s, "p")
	bystander := connect(t, s, "bystander")
	// 10× the burst at once: about 10 pass, the rest are refused with retry-after.
	var batch []byte
	for i := 1; i <= 100; i++ {
		batch = codec.AppendFrame(batch, codec.TypeEcho, 0, uint32(i), nil)
	}
	p.Write(batch)
	replies, limited := 0, 0
	for i := 0; i < 100; i++ {
		f, err := p.Read()
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case codec.TypeEchoReply:
			replies++
		case codec.TypeError:
			e, _ := codec.ParseError(f.Body)
			if e.Code != codec.CodeRateLimited || e.RetryAfterMs == 0 {
				t.Fatalf("ERROR %v retry %d; want RATE_LIMITED with retry-after", e.Code, e.RetryAfterMs)
			}
			limited++
		}
	}
	if replies < 10 || replies > 12 || replies+limited != 100 {
		t.Fatalf("%d answered, %d limited; want ~10 and the rest limited", replies, limited)
	}
	// One-way frames over the limit are dropped and counted, not answered.
	p.Write(codec.AppendSend(nil, 0, 0, "nobody", nil))
	p.Write(codec.AppendFrame(nil, codec.TypePing, 0, 7, nil)) // control frames always pass
	if f := p.Expect(codec.TypePong); f.Corr != 7 {
		t.Fatalf("PONG corr %d", f.Corr)
	}
	// Other connections keep their own budget.
	bystander.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, nil))
	bystander.Expect(codec.TypeEchoReply)
	var connRL uint64
	s.eachLoop(func(lp *loop) { connRL += lp.stats.rateLimitedConn.Load() })
	if connRL != uint64(limited)+1 || s.Stats().Errors[codec.CodeRateLimited] != uint64(limited)+1 {
		t.Fatalf("rate-limited counters %d / %d; want %d", connRL, s.Stats().Errors[codec.CodeRateLimited], limited+1)
	}
}

func TestTier2ConnByteRate(t *testing.T) {
	s := startServer(t, withLimits(Config{}, limits.Config{ConnByteRate: 1000, ConnByteBurst: 1000}))
	p := connect(t, s, "p")
	payload := make([]byte, 400)
	p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, payload))
	p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 2, payload))
	p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 3, payload)) // 1230 bytes > 1000
	p.Expect(codec.TypeEchoReply)
	p.Expect(codec.TypeEchoReply)
	if f, _ := p.ExpectError(codec.CodeRateLimited); f.Corr != 3 {
		t.Fatalf("corr %d; want 3", f.Corr)
	}
}

func TestTier3NodeRate(t *testing.T) {
	s := startServer(t, withLimits(Config{}, limits.Config{NodeMsgRate: 50, NodeMsgBurst: 50}))
	var peers []*rawpeer.Peer
	for i := 0; i < 5; i++ {
		peers = append(peers, connect(t, s, "p"))
	}
	// Five clients, 40 frames each: together four times the node's burst.
	for _, p := range peers {
		var batch []byte
		for i := 1; i <= 40; i++ {
			batch = codec.AppendFrame(batch, codec.TypeEcho, 0, uint32(i), nil)
		}
		p.Write(batch)
	}
	answered, limited := 0, 0
	for _, p := range peers {
		for i := 0; i < 40; i++ {
			f, err := p.Read()
			if err != nil {
				t.Fatal(err)
			}
			if f.Type == codec.TypeEchoReply {
				answered++
				continue
			}
			e, _ := codec.ParseError(f.Body)
			if e.Code != codec.CodeRateLimited || e.Reason != "node message rate exceeded" {
				t.Fatalf("got %v %q", e.Code, e.Reason)
			}
			limited++
		}
	}
	// The node admits at most burst + one lease per loop (tokens in flight) plus what
	// refilled during the test.
	if answered < 50 || answered > 50+2*limitsLease(s)+20 || limited == 0 {
		t.Fatalf("%d answered, %d limited; want about 50 answered", answered, limited)
	}
	var nodeRL uint64
	s.eachLoop(func(lp *loop) { nodeRL += lp.stats.rateLimitedNode.Load() })
	if nodeRL != uint64(limited) {
		t.Fatalf("node rate-limited counter %d; want %d", nodeRL, limited)
	}
}

func limitsLease(s *Server) int { return s.g.node.Load().LeaseSize() }

// TestTier4NodeBreaker: with the per-target breakers off (error rate 1), requests to a
// service that never replies time out; past the error rate the node breaker opens and
// requests fail fast with CIRCUIT_OPEN.
func TestTier4NodeBreaker(t *testing.T) {
	s := startServer(t, withLimits(Config{TickInterval: 5 * time.Millisecond},
		limits.Config{BreakerMinRequests: 10, BreakerOpenFor: time.Minute, TargetErrorRate: 1}))
	registered(t, s, "mute")
	c := connect(t, s, "c")
	var batch []byte
	for i := 1; i <= 10; i++ {
		batch = codec.AppendRequest(batch, uint32(i), "mute", 20, nil)
	}
	c.Write(batch)
	for i := 0; i < 10; i++ {
		c.ExpectError(codec.CodeTimeout)
	}
	c.Write(codec.AppendRequest(nil, 99, "mute", 20, nil))
	f, e := c.ExpectError(codec.CodeCircuitOpen)
	if f.Corr != 99 || e.RetryAfterMs == 0 {
		t.Fatalf("CIRCUIT_OPEN corr %d retry %d", f.Corr, e.RetryAfterMs)
	}
	if s.g.breaker.State(s.clock()) != limits.BreakerOpen {
		t.Fatalf("breaker %v; want open", s.g.breaker.State(s.clock()))
	}
}

func TestTier4TargetBreaker(t *testing.T) {
	s := startServer(t, withLimits(Config{TickInterval: 5 * time.Millisecond},
		limits.Config{BreakerMinRequests: 1 << 20, TargetMinFailures: 5, BreakerOpenFor: time.Minute}))
	registered(t, s, "mute")
	echo := registered(t, s, "echo")
	c := connect(t, s, "c")
	var batch []byte
	for i := 1; i <= 5; i++ {
		batch = codec.AppendRequest(batch, uint32(i), "mute", 20, nil)
	}
	c.Write(batch)
	for i := 0; i < 5; i++ {
		c.ExpectError(codec.CodeTimeout)
	}
	c.Write(codec.AppendRequest(nil, 50, "mute", 20, nil))
	if _, e := c.ExpectError(codec.CodeCircuitOpen); e.Reason != "target keeps failing: circuit open" {
		t.Fatalf("reason %q", e.Reason)
	}
	// A healthy target is unaffected.
	c.Write(codec.AppendRequest(nil, 51, "echo", 1000, []byte("hi")))
	respondOnce(t, echo)
	if f := c.Expect(codec.TypeResponse); f.Corr != 51 {
		t.Fatalf("corr %d", f.Corr)
	}
}

// TestBadResponderIsolated: a responder that never replies, asked with short timeouts,
// cannot deny service to unrelated clients. Its failures open its own target breaker
// (CIRCUIT_OPEN for its name) and count nowhere else: the node breaker stays closed, the
// node zone's error-rate input stays below 1, and everyone else's ECHO, REGISTER, HELLO
// and REQUESTs to a healthy name keep working. (30 TIMEOUTs among ~130 requests to one
// dead-slow name used to open the node breaker and turn the node zone RED.)
func TestBadResponderIsolated(t *testing.T) {
	s := startServer(t, withLimits(Config{TickInterval: 5 * time.Millisecond},
		limits.Config{BreakerMinRequests: 10, BreakerOpenFor: time.Minute, TargetMinFailures: 5}))
	registered(t, s, "mute") // never replies
	echo := registered(t, s, "echo")
	good := connect(t, s, "good")
	corr := uint32(0)
	healthyRequest := func() {
		t.Helper()
		corr++
		good.Write(codec.AppendRequest(nil, corr, "echo", 1000, []byte("hi")))
		respondOnce(t, echo)
		if f := good.Expect(codec.TypeResponse); f.Corr != corr {
			t.Fatalf("RESPONSE corr %d; want %d", f.Corr, corr)
		}
	}
	for range 10 { // the node breaker's minimum volume, all healthy
		healthyRequest()
	}

	bad := connect(t, s, "bad")
	var batch []byte
	const failures = 30
	for i := 1; i <= failures; i++ {
		batch = codec.AppendRequest(batch, uint32(i), "mute", 10, nil)
	}
	bad.Write(batch)
	for range failures {
		bad.ExpectError(codec.CodeTimeout)
	}
	bad.Write(codec.AppendRequest(nil, 100, "mute", 10, nil))
	if _, e := bad.ExpectError(codec.CodeCircuitOpen); e.Reason != "target keeps failing: circuit open" {
		t.Fatalf("CIRCUIT_OPEN reason %q; want the target breaker's", e.Reason)
	}

	if st := s.g.breaker.State(s.clock()); st != limits.BreakerClosed {
		t.Errorf("node breaker %v after one name's failures; want closed", st)
	}
	waitSamples(t, s)
	if in := s.ZoneReport().Inputs.ErrorRate; in >= 1 {
		t.Errorf("node zone error_rate input %.2f after one name's failures; want below 1", in)
	}
	// Everyone else is served: requests to a healthy name, ECHO, REGISTER, a newcomer.
	healthyRequest()
	good.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 500, []byte("still")))
	if f := good.Expect(codec.TypeEchoReply); f.Corr != 500 {
		t.Fatalf("ECHO_REPLY corr %d; want 500", f.Corr)
	}
	good.Write(codec.AppendName(nil, codec.TypeRegister, 501, "good-name"))
	if f := good.Expect(codec.TypeOK); f.Corr != 501 {
		t.Fatalf("OK corr %d; want 501", f.Corr)
	}
	newcomer := connect(t, s, "newcomer") // HELLO → WELCOME
	newcomer.Write(codec.AppendRequest(nil, 1, "echo", 1000, []byte("new")))
	respondOnce(t, echo)
	newcomer.Expect(codec.TypeResponse)
	if ok, why := s.Ready(); !ok {
		t.Errorf("not ready after one name's failures: %q", why)
	}
}

// TestBreakerStateNotStale: /capacity and switchboard_breaker_state report the node
// breaker half-open once its open period has passed, without a request arriving to move
// it (they said "open" 20 s after a 5 s open period, until the next request).
func TestBreakerStateNotStale(t *testing.T) {
	const openFor = 200 * time.Millisecond
	l := breakerOnFirstFailure()
	l.BreakerOpenFor = openFor
	s := startServer(t, withLimits(Config{TickInterval: 5 * time.Millisecond}, l))
	registered(t, s, "mute")
	c := connect(t, s, "c")
	c.Write(codec.AppendRequest(nil, 1, "mute", 10, nil))
	c.ExpectError(codec.CodeTimeout)
	opened := time.Now() // the breaker opened before the TIMEOUT was written
	if got := s.Capacity().Breaker; got != "open" {
		t.Fatalf("capacity breaker %q right after the failure; want open", got)
	}
	time.Sleep(time.Until(opened.Add(openFor))) // the open period is what is under test
	if got := s.Capacity().Breaker; got != "half-open" {
		t.Errorf("capacity breaker %q after the open period, no request since; want half-open", got)
	}
	var buf bytes.Buffer
	s.WritePrometheus(&buf)
	if !strings.Contains(buf.String(), "\nswitchboard_breaker_state 2\n") {
		t.Errorf("metrics do not say switchboard_breaker_state 2 (half-open):\n%s", grepLines(buf.String(), "breaker_state"))
	}
}

// grepLines returns the lines of text that contain sub.
func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRequestStormInflightCap: one connection cannot hold more than MaxPending requests.
func TestRequestStormInflightCap(t *testing.T) {
	s := startServer(t, Config{MaxPending: 5})
	registered(t, s, "mute")
	c := connect(t, s, "c")
	var batch []byte
	for i := 1; i <= 8; i++ {
		batch = codec.AppendRequest(batch, uint32(i), "mute", 60000, nil)
	}
	c.Write(batch)
	for i := 6; i <= 8; i++ {
		if f, _ := c.ExpectError(codec.CodeQueueFull); f.Corr != uint32(i) {
			t.Fatalf("QUEUE_FULL corr %d; want %d", f.Corr, i)
		}
	}
}

// TestSystemQueueBound: messages queued for a sink that never reads count against the
// node-wide bound; past it every sender gets QUEUE_FULL.
func TestSystemQueueBound(t *testing.T) {
	// Zones are set out of reach: at 90% of the bound the node would go RED and shed
	// first (TestZones covers that); here the bound itself is under test.
	s := startServer(t, withLimits(Config{MaxQueue: 100, MaxPending: 100000, MaxPendingBytes: 1 << 30,
		TickInterval: 5 * time.Millisecond}, limits.Config{ZoneYellow: 100, ZoneOrange: 101, ZoneRed: 102}))
	registered(t, s, "sink")
	src := connect(t, s, "src")
	if code := sendUntilError(t, src, "sink", make([]byte, 32<<10), 3000); code != codec.CodeQueueFull {
		t.Fatalf("got %v; want QUEUE_FULL with a 100-message node bound and a sink that never reads", code)
	}
	if s.Capacity().QueueSlots.Used < 100 {
		t.Fatalf("capacity shows %d queued", s.Capacity().QueueSlots.Used)
	}
}

func TestSlowConsumerTimeout(t *testing.T) {
	// Small socket buffers on both ends of the sink's connection: what the kernel holds
	// was taken, and with autotuned buffers it could take all of the 4 MiB below (a
	// connection written in 64 KiB pieces saw it do so in most runs), leaving the server
	// nothing waiting to time out.
	s := startServer(t, Config{SlowConsumerTimeout: 100 * time.Millisecond, TickInterval: 10 * time.Millisecond,
		MaxPending: 100000, MaxPendingBytes: 1 << 30, SocketSendBuffer: 32 << 10})
	registered(t, s, "sink").StopReading()
	src := connect(t, s, "src")
	// Enough to fill the sink's socket buffers so the server holds outbound data.
	payload := make([]byte, 64<<10)
	var batch []byte
	for i := 0; i < 64; i++ {
		batch = codec.AppendSend(batch, 0, 0, "sink", payload)
	}
	src.Write(batch)
	waitFor(t, "slow consumer closed", func() bool { return s.Stats().SlowConsumers == 1 })
	waitFor(t, "name released", func() bool { return s.Stats().Names == 0 })
}

// TestZonesFromConnections: a node filling up with connections goes ORANGE and RED in its
// node zone (alerts, /zone), but the connection ratio alone refuses nobody below
// max-connections: every connection up to the cap is admitted and served, readiness holds
// until the cap, and at the cap the refusal is the cap's, not the zone's.
func TestZonesFromConnections(t *testing.T) {
	s := startServer(t, withLimits(Config{MaxConnections: 10, TickInterval: 5 * time.Millisecond},
		limits.Config{ZoneMinDwell: time.Millisecond}))
	var peers []*rawpeer.Peer
	for i := 0; i < 9; i++ { // 90%: RED
		peers = append(peers, connect(t, s, "p"))
	}
	waitFor(t, "RED", func() bool { return s.ZoneReport().Zone == limits.ZoneRed })
	if z := s.ZoneReport().TrafficZone; z != limits.ZoneGreen {
		t.Fatalf("traffic zone %v; want GREEN (connections are not load)", z)
	}
	// /zone's action fields say what the node does, and it does nothing about this RED.
	if r := s.ZoneReport(); r.ShedsLowPriority || r.ShedsAllButControl || r.RefusesConnections || r.AcceptFactor != 1 {
		t.Fatalf("/zone in a node-zone RED from connections alone: sheds_low_priority %v, sheds_all_but_control %v, "+
			"refuses_connections %v, accept_factor %v; want false, false, false, 1", r.ShedsLowPriority,
			r.ShedsAllButControl, r.RefusesConnections, r.AcceptFactor)
	}
	if ok, why := s.Ready(); !ok {
		t.Fatalf("not ready at 9 of 10 connections: %q", why)
	}
	peers = append(peers, connect(t, s, "tenth")) // admitted in RED: below the cap
	if ok, why := s.Ready(); ok || why != "connection limit reached" {
		t.Fatalf("Ready at the cap = %v %q; want false, connection limit reached", ok, why)
	}
	late := rawpeer.Dial(t, s.Addr().String())
	if _, e := late.ExpectError(codec.CodeBusy); e.Reason != "connection limit reached" {
		t.Fatalf("refusal at the cap %q; want the cap's reason", e.Reason)
	}
	if z, c := refusedBy(s, "zone_red"), refusedBy(s, "max_connections"); z != 0 || c != 1 {
		t.Fatalf("refusals zone_red %d max_connections %d; want 0 and 1", z, c)
	}
	for i, p := range peers { // everyone held is served
		p.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, uint32(i+1), []byte("served")))
		if f := p.Expect(codec.TypeEchoReply); f.Corr != uint32(i+1) {
			t.Fatalf("echo corr %d; want %d", f.Corr, i+1)
		}
	}
	for _, q := range peers[3:] {
		_ = q.Conn.Close()
	}
	waitFor(t, "GREEN", func() bool { return s.ZoneReport().Zone == limits.ZoneGreen })
	if ok, why := s.Ready(); !ok {
		t.Fatalf("not ready after the zone recovered: %q", why)
	}
}

// waitSamples waits until the sampler has completed two more runs, so that the zones
// reflect everything that happened before the call (one run may have been under way).
func waitSamples(t testing.TB, s *Server) {
	t.Helper()
	from := s.g.samples.Load()
	waitFor(t, "two zone samples", func() bool { return s.g.samples.Load() >= from+2 })
}

// TestZonesShedTraffic drives the queued-messages input (a receiver that never reads)
// into ORANGE, where low-priority frames are shed, and RED, where all but control frames
// are.
func TestZonesShedTraffic(t *testing.T) {
	s := startServer(t, withLimits(Config{MaxQueue: 100, MaxPending: 1 << 20, MaxPendingBytes: 1 << 30,
		SlowConsumerTimeout: time.Hour, TickInterval: 5 * time.Millisecond},
		limits.Config{ZoneMinDwell: time.Hour}))
	registered(t, s, "sink")
	src := connect(t, s, "src")
	payload := make([]byte, 64<<10)
	// fill queues the sink until the traffic zone reaches want.
	fill := func(want limits.Zone) {
		t.Helper()
		for i := 0; s.ZoneReport().TrafficZone < want; i++ {
			if i > 5000 {
				t.Fatalf("traffic zone %v after 5000 messages; want %v", s.ZoneReport().TrafficZone, want)
			}
			src.Write(codec.AppendSend(nil, codec.FlagAck, 2, "sink", payload))
			src.Expect(codec.TypeOK)
			// The zone must see this message before the next one is sent, or the fill
			// could overshoot a zone on a slow machine.
			waitSamples(t, s)
		}
	}
	fill(limits.ZoneOrange)
	if z := s.ZoneReport().TrafficZone; z != limits.ZoneOrange {
		t.Fatalf("traffic zone %v; want ORANGE (the fill overshot)", z)
	}
	src.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 3, nil)) // low priority: shed
	if _, e := src.ExpectError(codec.CodeBusy); e.RetryAfterMs == 0 {
		t.Fatal("shed without retry-after")
	}
	src.Write(codec.AppendName(nil, codec.TypeRegister, 4, "src")) // normal priority passes
	src.Expect(codec.TypeOK)

	fill(limits.ZoneRed)
	src.Write(codec.AppendName(nil, codec.TypeRegister, 5, "other"))
	src.ExpectError(codec.CodeBusy) // everything but control is shed
	src.Write(codec.AppendFrame(nil, codec.TypePing, 0, 6, nil))
	src.Expect(codec.TypePong) // control frames pass
	var shed uint64
	s.eachLoop(func(lp *loop) { shed += lp.stats.shed.Load() })
	if shed < 2 {
		t.Fatalf("shed counter %d; want at least 2", shed)
	}
}

// TestSlowloris: connections that send nothing, or one byte at a time, are closed by the
// handshake timeout and do not disturb others.
func TestSlowloris(t *testing.T) {
	// The drip never sends its HELLO's last byte, so the timeout need not be short; at 1 s
	// it leaves the good client's own handshake room on a loaded machine.
	s := startServer(t, Config{HandshakeTimeout: time.Second, TickInterval: 10 * time.Millisecond})
	good := connect(t, s, "good")
	silent := rawpeer.Dial(t, s.Addr().String())
	drip := rawpeer.Dial(t, s.Addr().String())
	hello := codec.AppendHello(nil, 1, codec.Version, "drip", "")
	stop := make(chan struct{})
	go func() {
		for i := 0; i < len(hello)-1; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := drip.Conn.Write(hello[i : i+1]); err != nil {
				return
			}
		}
	}()
	defer close(stop)
	silent.ExpectError(codec.CodeHandshakeTimeout)
	drip.ExpectError(codec.CodeHandshakeTimeout)
	good.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, nil))
	good.Expect(codec.TypeEchoReply)
}

// TestConnectionFlood opens three times max connections at once; the extra ones get BUSY,
// the admitted ones keep working, and the server stays up. Counts are exact: the node
// admits up to its cap whatever its zone says about the connection ratio.
func TestConnectionFlood(t *testing.T) {
	const max = 50
	// Admitted connections never say HELLO: the handshake timeout answers them, so every
	// connection gets exactly one ERROR and the test waits for frames, not for a clock.
	s := startServer(t, Config{MaxConnections: max, HandshakeTimeout: 500 * time.Millisecond})
	first := connect(t, s, "first")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := 0; i < 3*max; i++ {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	results := make(chan codec.ErrorCode, len(conns))
	for _, c := range conns {
		go func() {
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			var hdr [codec.HeaderLen + 2]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil || codec.Type(hdr[4]) != codec.TypeError {
				results <- 0
				return
			}
			results <- codec.ErrorCode(uint16(hdr[10])<<8 | uint16(hdr[11]))
		}()
	}
	got := map[codec.ErrorCode]int{}
	for range conns {
		got[<-results]++
	}
	want := map[codec.ErrorCode]int{codec.CodeBusy: 3*max - (max - 1), codec.CodeHandshakeTimeout: max - 1}
	if got[codec.CodeBusy] != want[codec.CodeBusy] || got[codec.CodeHandshakeTimeout] != want[codec.CodeHandshakeTimeout] || len(got) != 2 {
		t.Fatalf("answers by code %v; want %v", got, want)
	}
	// The node is alive and keeps serving the connection it held throughout.
	first.Write(codec.AppendFrame(nil, codec.TypeEcho, 0, 1, nil))
	first.Expect(codec.TypeEchoReply)
}

// TestLoopLagPacesAccept: lagging loops (the traffic zone RED from loop lag alone) slow
// the acceptor down but refuse nobody: an accept storm makes the loops lag, and the
// connections it brings are ones the node can hold. Frames are still shed meanwhile.
// (Before, loop-lag RED refused new connections BUSY.)
func TestLoopLagPacesAccept(t *testing.T) {
	// A 1 ns budget: any lag at all is RED.
	s := startServer(t, Config{LoopLagBudget: time.Nanosecond, TickInterval: 5 * time.Millisecond})
	waitFor(t, "traffic zone RED", func() bool { return s.ZoneReport().TrafficZone == limits.ZoneRed })
	if z := s.ZoneReport().AdmissionZone; z != limits.ZoneGreen {
		t.Fatalf("admission zone %v; want GREEN (loop lag does not refuse)", z)
	}
	if ok, why := s.Ready(); !ok {
		t.Fatalf("not ready with lagging loops: %q", why)
	}
	for i := range 20 {
		rawpeer.Dial(t, s.Addr().String()).Hello("c"+strconv.Itoa(i), "")
	}
	if n := refusedBy(s, "zone_red"); n != 0 {
		t.Fatalf(`refused{reason="zone_red"} = %d; want 0`, n)
	}
	if n := s.acceptPauses[pauseLoopLag].Load(); n == 0 {
		t.Fatal("the acceptor never paused for lagging loops")
	}
}

// TestCapacityAcceptTokens: /capacity's accept_tokens is -1 when the accept rate is
// unlimited and the full burst before the first accept when it is limited, from the start
// (0 would read as an exhausted limiter).
func TestCapacityAcceptTokens(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  limits.Config
		want int
	}{
		{"unlimited", limits.Config{}, -1},
		{"limited", limits.Config{AcceptRate: 100, AcceptBurst: 7}, 7},
	} {
		s, err := New(withLimits(Config{Listen: "127.0.0.1:0"}, tc.lim), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Capacity().AcceptTokens; got != tc.want {
			t.Errorf("%s: accept_tokens %d before any accept; want %d", tc.name, got, tc.want)
		}
	}
}
