package server

import (
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"

	vm "github.com/VictoriaMetrics/metrics"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
	"github.com/switchboard/switchboard/shard"
)

// guards holds the overload-protection state shared by the loops and the acceptor.
type guards struct {
	// rates holds the reloadable limits in force (tiers 1-3 and max-queue); ReloadLimits
	// replaces it. Read by the acceptor (new connections' buckets) and the sampler.
	rates atomic.Pointer[rateLimits]
	// acceptNext hands a reloaded accept bucket to the acceptor, which owns accept.
	acceptNext atomic.Pointer[limits.TokenBucket]
	perIP      *limits.PerIP // always counts, so that ReloadLimits can set a maximum
	// node is the node rate; loops hold leases on it (nil = unlimited). Written by
	// ReloadLimits, read by it and newLoop.
	node    atomic.Pointer[limits.SharedRate]
	breaker *limits.Breaker        // safe for concurrent use
	targets *limits.TargetBreakers // safe for concurrent use
	zone    *limits.ZoneTracker    // all inputs: admission, readiness, alerts; updated by the sampler
	// traffic is the zone of the load inputs alone (queues, heap, error rate, loop lag): it
	// decides shedding on existing connections. A node that is merely full of healthy
	// connections refuses new ones (zone) but keeps serving the ones it has.
	traffic *limits.ZoneTracker
	accept  limits.TokenBucket // owned by the acceptor goroutine
	// rated is true when any per-frame rate limit is on; only then is the clock read per
	// read callback. Atomic: ReloadLimits changes it.
	rated atomic.Bool
	// queued is the node-wide queued-message sample (rings + outbound), refreshed each
	// tick by the sampler; atomic.
	queued atomic.Int64

	zoneEntered [4]atomic.Uint64 // transitions into each zone
	heapSample  [2]metrics.Sample
}

// rateLimits are the limits ReloadLimits can change at run time.
type rateLimits struct {
	cfg      limits.Config
	maxQueue int
}

func (s *Server) initGuards() {
	c := s.cfg.Config
	g := &s.g
	g.rates.Store(&rateLimits{cfg: c, maxQueue: s.cfg.MaxQueue})
	g.perIP = limits.NewPerIPCounter(c.MaxConnsPerIP)
	if c.NodeMsgRate > 0 {
		g.node.Store(c.NodeLimiter(s.cfg.Loops))
	}
	g.breaker = limits.NewBreaker(c.BreakerConfig())
	g.targets = limits.NewTargetBreakers(c.TargetBreakerConfig(), c.MaxTargets)
	g.zone = limits.NewZoneTracker(c.Thresholds())
	g.traffic = limits.NewZoneTracker(c.Thresholds())
	g.accept = c.AcceptLimiter()
	g.rated.Store(c.ConnMsgRate > 0 || c.ConnByteRate > 0 || c.NodeMsgRate > 0)
	g.heapSample[0].Name = "/memory/classes/total:bytes"
	g.heapSample[1].Name = "/memory/classes/heap/released:bytes"
}

// connLimits are one connection's tier-2 buckets, allocated only when a per-connection
// rate is configured. Owned by the connection's loop.
type connLimits struct {
	msgs, bytes limits.TokenBucket
}

func (s *Server) newConnLimits() *connLimits {
	c := &s.g.rates.Load().cfg
	if c.ConnMsgRate == 0 && c.ConnByteRate == 0 {
		return nil
	}
	m, b := c.ConnLimiters()
	return &connLimits{msgs: m, bytes: b}
}

// maxQueue is the node-wide queue bound in force.
func (s *Server) maxQueue() int { return s.g.rates.Load().maxQueue }

// ReloadableKeys are the settings ReloadLimits applies to a running server; every other
// setting needs a restart (switchboard serve re-reads them on SIGHUP and says which).
var ReloadableKeys = []string{
	"conn-msg-rate", "conn-msg-burst", "conn-byte-rate", "conn-byte-burst",
	"node-msg-rate", "node-msg-burst", "accept-rate", "accept-burst",
	"max-conns-per-ip", "max-queue",
}

// ReloadLimits applies the rate limits, connection caps and queue bound of next (the
// ReloadableKeys) to the running server: new connections at once and every open one
// within its loop's next turn (their buckets start full). Breaker and zone settings keep
// their start-up values. Safe for concurrent use.
func (s *Server) ReloadLimits(next Config) error {
	next.EnsureDefaults()
	if err := next.Validate(); err != nil {
		return err
	}
	g := &s.g
	g.rates.Store(&rateLimits{cfg: next.Config, maxQueue: next.MaxQueue})
	g.perIP.SetMax(next.MaxConnsPerIP)
	ab := next.AcceptLimiter()
	g.acceptNext.Store(&ab)
	var node *limits.SharedRate
	if next.NodeMsgRate > 0 {
		node = next.NodeLimiter(s.cfg.Loops)
	}
	g.node.Store(node)
	g.rated.Store(next.ConnMsgRate > 0 || next.ConnByteRate > 0 || next.NodeMsgRate > 0)
	s.onEachLoop(func(lp *loop) {
		lp.setLease(node)
		lp.conns.Range(func(_ shard.ConnID, c *conn) bool {
			c.lim = s.newConnLimits()
			return true
		})
	})
	s.log.Info("limits reloaded", "conn_msg_rate", next.ConnMsgRate, "conn_byte_rate", next.ConnByteRate,
		"node_msg_rate", next.NodeMsgRate, "accept_rate", next.AcceptRate,
		"max_conns_per_ip", next.MaxConnsPerIP, "max_queue", next.MaxQueue)
	return nil
}

// controlFrame reports frames that are never rate-limited or shed: they keep connections
// alive or complete work already admitted.
func controlFrame(t codec.Type) bool {
	switch t {
	case codec.TypeHello, codec.TypePing, codec.TypeReply, codec.TypeGoodbye:
		return true
	}
	return false
}

// lowPriority frames are shed first (ORANGE): diagnostics and one-way messages nobody
// waits for.
func lowPriority(f codec.Frame) bool {
	return f.Type == codec.TypeEcho || f.Type == codec.TypeSend && f.Corr == 0
}

// admit applies zone shedding (RED: all but control; ORANGE: low priority), tier 2 (this
// connection's message and byte buckets) and tier 3 (the node rate, through this loop's
// lease) to a non-control frame. A refused frame that wanted an answer (corr != 0 — every
// REQUEST) gets ERROR with retry-after; a one-way frame is dropped and counted, because
// the client asked for no answer and pausing the socket would let gnet buffer without
// bound. It returns false when the frame was refused.
func (lp *loop) admit(c *conn, f codec.Frame, now int64) bool {
	g := &lp.srv.g
	if z := g.traffic.Current(); z.ShedsAllButControl() || z.ShedsLowPriority() && lowPriority(f) {
		lp.stats.shed.Add(1)
		lp.refuseFrame(c, f, codec.CodeBusy, time.Second, "node overloaded (zone "+z.String()+"): retry later")
		return false
	}
	if !g.rated.Load() {
		return true
	}
	if l := c.lim; l != nil {
		if !l.msgs.Allow(now, 1) {
			lp.stats.rateLimitedConn.Add(1)
			lp.refuseFrame(c, f, codec.CodeRateLimited, l.msgs.RetryAfter(now, 1), "connection message rate exceeded")
			return false
		}
		if n := codec.HeaderLen + len(f.Body); !l.bytes.Allow(now, n) {
			lp.stats.rateLimitedConn.Add(1)
			lp.refuseFrame(c, f, codec.CodeRateLimited, l.bytes.RetryAfter(now, n), "connection byte rate exceeded")
			return false
		}
	}
	if lp.lease != nil && !lp.lease.Allow(now) {
		lp.stats.rateLimitedNode.Add(1)
		lp.refuseFrame(c, f, codec.CodeRateLimited, lp.lease.RetryAfter(now), "node message rate exceeded")
		return false
	}
	return true
}

func (lp *loop) refuseFrame(c *conn, f codec.Frame, code codec.ErrorCode, retry time.Duration, reason string) {
	if f.Corr == 0 {
		lp.stats.errors[code].Add(1) // counted; nobody asked for an answer
		return
	}
	b := c.buf()
	b.B = codec.AppendError(b.B, f.Corr, codec.ErrorBody{Code: code, RetryAfterMs: millis(retry), Reason: reason})
	lp.stats.errors[code].Add(1)
}

func millis(d time.Duration) uint32 {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	if ms < 0 {
		return 0
	}
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(ms)
}

// allowRequest applies tier 4: the node breaker and the target's breaker.
func (lp *loop) allowRequest(target shard.ConnID, now int64) (codec.ErrorCode, time.Duration, string) {
	g := &lp.srv.g
	if ok, retry := g.breaker.Allow(now); !ok {
		lp.stats.circuitOpen.Add(1)
		return codec.CodeCircuitOpen, retry, "node circuit breaker open: requests are failing"
	}
	if ok, retry := g.targets.Allow(uint64(target), now); !ok {
		lp.stats.circuitOpen.Add(1)
		return codec.CodeCircuitOpen, retry, "target keeps failing: circuit open"
	}
	return 0, 0, ""
}

// recordOutcome feeds a request's outcome to the breakers. Failures are what the server
// or the target caused (timeouts, full queues, responder gone), not the caller's mistakes.
func (lp *loop) recordOutcome(target shard.ConnID, code codec.ErrorCode) {
	g := &lp.srv.g
	now := lp.srv.clock()
	ok := code == 0
	g.breaker.Record(now, ok)
	g.targets.Record(uint64(target), now, ok)
}

// sample runs on the ticker goroutine: it refreshes the node-wide queue sample and the
// zone from the utilisation inputs.
func (s *Server) sample() {
	g := &s.g
	now := s.clock()
	var queued, lag int64
	s.eachLoop(func(lp *loop) {
		queued += int64(lp.inbox.Len()) + lp.stats.pending.Load()
		lag = max(lag, lp.stats.lagNs.Load())
	})
	g.queued.Store(queued)
	in := limits.Inputs{
		Connections: ratio(float64(s.connCount.Load()), float64(s.maxConns)),
		Queued:      ratio(float64(queued), float64(s.maxQueue())),
		Heap:        s.heapUtilisation(),
		LoopLag:     ratio(float64(lag), float64(s.cfg.LoopLagBudget)),
	}
	if req, fail := g.breaker.Counts(now); req >= int64(s.cfg.BreakerMinRequests) && req > 0 {
		in.ErrorRate = ratio(float64(fail)/float64(req), s.cfg.BreakerErrorRate)
	}
	traffic := in
	traffic.Connections = 0
	g.traffic.Update(now, traffic)
	from := g.zone.Current()
	if z, changed := g.zone.Update(now, in); changed {
		g.zoneEntered[z].Add(1)
		snap := g.zone.Snapshot(now)
		s.log.Warn("zone changed", "from", from.String(), "to", z.String(),
			"worst", snap.Worst, "utilisation", fmt.Sprintf("%.2f", snap.WorstValue))
	}
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// heapUtilisation is the Go runtime's memory (what GOMEMLIMIT limits) over GOMEMLIMIT;
// 0 without a limit.
func (s *Server) heapUtilisation() float64 {
	limit := debug.SetMemoryLimit(-1)
	if limit <= 0 || limit == math.MaxInt64 {
		return 0
	}
	metrics.Read(s.g.heapSample[:])
	used := s.g.heapSample[0].Value.Uint64() - s.g.heapSample[1].Value.Uint64()
	return float64(used) / float64(limit)
}

func (s *Server) zoneRed() bool { return s.g.zone.Current().RefusesConnections() }

// ZoneReport is the /zone endpoint: the node's zone with its inputs and thresholds, and
// the traffic zone (load inputs only) that decides shedding on existing connections.
type ZoneReport struct {
	limits.ZoneSnapshot
	TrafficZone limits.Zone `json:"traffic_zone"`
}

// ZoneReport returns the zone report. Safe for concurrent use.
func (s *Server) ZoneReport() ZoneReport {
	return ZoneReport{ZoneSnapshot: s.g.zone.Snapshot(s.clock()), TrafficZone: s.g.traffic.Current()}
}

// CapacityReport is the /capacity endpoint: how much more the node can take, per resource.
type CapacityReport struct {
	Zone        string         `json:"zone"`
	Connections CapacityFigure `json:"connections"`
	QueueSlots  CapacityFigure `json:"queue_slots"`
	RingSlots   CapacityFigure `json:"ring_slots"`
	MemoryBytes CapacityFigure `json:"memory_bytes"`
	// AcceptTokens is how many connections the accept rate admits right now (-1 when the
	// accept rate is unlimited).
	AcceptTokens int `json:"accept_tokens"`
	// RequestsInFlight counts REQUESTs awaiting an outcome.
	RequestsInFlight int64  `json:"requests_in_flight"`
	Breaker          string `json:"breaker"`
}

// CapacityFigure is one resource: used, its limit, and the headroom between them.
type CapacityFigure struct {
	Used     int64   `json:"used"`
	Limit    int64   `json:"limit"` // 0: no limit
	Headroom int64   `json:"headroom"`
	Percent  float64 `json:"used_percent"`
}

func figure(used, limit int64) CapacityFigure {
	f := CapacityFigure{Used: used, Limit: limit}
	if limit > 0 {
		f.Headroom = max(0, limit-used)
		f.Percent = 100 * float64(used) / float64(limit)
	}
	return f
}

// Capacity reports the node's headroom. Safe for concurrent use.
func (s *Server) Capacity() CapacityReport {
	var ringUsed, ringCap, inflight int64
	s.eachLoop(func(lp *loop) {
		ringUsed += int64(lp.inbox.Len())
		ringCap += int64(lp.inbox.Cap())
		inflight += lp.stats.inflight.Load()
	})
	r := CapacityReport{
		Zone:             s.g.zone.Current().String(),
		Connections:      figure(s.connCount.Load(), int64(s.maxConns)),
		QueueSlots:       figure(s.g.queued.Load(), int64(s.maxQueue())),
		RingSlots:        figure(ringUsed, ringCap),
		AcceptTokens:     int(s.acceptTokens.Load()),
		RequestsInFlight: inflight,
		Breaker:          s.g.breaker.State().String(),
	}
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit != math.MaxInt64 {
		var smp [2]metrics.Sample
		smp[0].Name, smp[1].Name = "/memory/classes/total:bytes", "/memory/classes/heap/released:bytes"
		metrics.Read(smp[:])
		r.MemoryBytes = figure(int64(smp[0].Value.Uint64()-smp[1].Value.Uint64()), limit)
	}
	return r
}

// writeLimitMetrics writes the overload-protection metrics.
func (s *Server) writeLimitMetrics(w io.Writer) {
	g := &s.g
	vm.WriteGaugeUint64(w, "switchboard_zone", uint64(g.zone.Current()))
	vm.WriteGaugeUint64(w, "switchboard_traffic_zone", uint64(g.traffic.Current()))
	for z := limits.ZoneGreen; z <= limits.ZoneRed; z++ {
		vm.WriteCounterUint64(w, `switchboard_zone_transitions_total{to="`+z.String()+`"}`, g.zoneEntered[z].Load())
	}
	snap := g.zone.Snapshot(s.clock())
	in := snap.Inputs
	for _, kv := range []struct {
		name string
		v    float64
	}{{"connections", in.Connections}, {"queued", in.Queued}, {"heap", in.Heap}, {"error_rate", in.ErrorRate}, {"loop_lag", in.LoopLag}} {
		vm.WriteGaugeFloat64(w, `switchboard_zone_input{input="`+kv.name+`"}`, kv.v)
	}
	vm.WriteGaugeUint64(w, "switchboard_breaker_state", uint64(g.breaker.State()))
	vm.WriteCounterUint64(w, "switchboard_breaker_opens_total", g.breaker.Opens())
	vm.WriteGaugeUint64(w, "switchboard_breaker_targets_tracked", uint64(g.targets.Len()))
	var connRL, nodeRL, shed, open uint64
	s.eachLoop(func(lp *loop) {
		connRL += lp.stats.rateLimitedConn.Load()
		nodeRL += lp.stats.rateLimitedNode.Load()
		shed += lp.stats.shed.Load()
		open += lp.stats.circuitOpen.Load()
	})
	vm.WriteCounterUint64(w, `switchboard_rate_limited_total{tier="connection"}`, connRL)
	vm.WriteCounterUint64(w, `switchboard_rate_limited_total{tier="node"}`, nodeRL)
	vm.WriteCounterUint64(w, "switchboard_shed_total", shed)
	vm.WriteCounterUint64(w, "switchboard_circuit_open_rejections_total", open)
	vm.WriteGaugeUint64(w, "switchboard_queued_messages", uint64(max(0, g.queued.Load())))
	vm.WriteGaugeUint64(w, "switchboard_queued_messages_max", uint64(s.maxQueue()))
}
