package server

import (
	"fmt"
	"math"
	"runtime/debug"

	"github.com/switchboard/switchboard/limits"
)

// sample runs on the ticker goroutine: it refreshes the node-wide queue sample and the
// zone from the utilisation inputs.
func (s *Server) sample() {
	g := &s.g
	now := s.clock()
	var queued, queuedBytes, lag int64
	s.eachLoop(func(lp *loop) {
		queued += int64(lp.inbox.Len()) + lp.stats.pending.Load()
		queuedBytes += lp.ringBytes() + lp.stats.outBytes.Load()
		lag = max(lag, lp.stats.lagNs.Load())
	})
	rl := g.rates.Load()
	g.queued.Store(queued)
	g.queuedBytes.Store(queuedBytes)
	g.full.Store(queued >= int64(rl.maxQueue) || queuedBytes >= int64(rl.maxQueueBytes))
	in := limits.Inputs{
		Connections: ratio(float64(s.connCount.Load()), float64(s.maxConns)),
		Queued: max(ratio(float64(queued), float64(rl.maxQueue)),
			ratio(float64(queuedBytes), float64(rl.maxQueueBytes))),
		Heap:    s.heapUtilisation(now),
		LoopLag: ratio(float64(lag), float64(s.cfg.LoopLagBudget)),
	}
	if req, fail := g.breaker.Counts(now); req >= int64(s.cfg.BreakerMinRequests) && req > 0 {
		in.ErrorRate = ratio(float64(fail)/float64(req), s.cfg.BreakerErrorRate)
	}
	traffic := in
	traffic.Connections, traffic.ErrorRate = 0, 0
	g.traffic.Update(now, traffic)
	admission := traffic
	admission.LoopLag = 0
	fromAdm := g.admission.Current()
	if z, changed := g.admission.Update(now, admission); changed && (z.RefusesConnections() || fromAdm.RefusesConnections()) {
		// The zone that refuses connections: its changes explain refusals (zone_red) that
		// the node zone's log line, already RED on connections, would not.
		snap := g.admission.Snapshot(now)
		s.log.Warn("admission zone changed", "from", fromAdm.String(), "to", z.String(),
			"worst", snap.Worst, "utilisation", fmt.Sprintf("%.2f", snap.WorstValue))
	}
	from := g.zone.Current()
	if z, changed := g.zone.Update(now, in); changed {
		g.zoneEntered[z].Add(1)
		snap := g.zone.Snapshot(now)
		s.log.Warn("zone changed", "from", from.String(), "to", z.String(),
			"worst", snap.Worst, "utilisation", fmt.Sprintf("%.2f", snap.WorstValue))
	}
	g.samples.Add(1)
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// heapUtilisation is the Go runtime's memory in use (memSample.read) over GOMEMLIMIT; 0
// without a limit. It may start a collection of an idle node's garbage (collectIdle).
func (s *Server) heapUtilisation(now int64) float64 {
	r := s.g.heapSample.read()
	util := 0.0
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit != math.MaxInt64 {
		util = float64(r.used) / float64(limit)
	}
	s.collectIdle(now, util, r)
	return util
}

// overloaded reports whether the admission zone refuses new connections (RED).
func (s *Server) overloaded() bool { return s.g.admission.Current().RefusesConnections() }

// ZoneReport is the /zone endpoint: the node's zone with its inputs and thresholds, the
// traffic zone (load inputs only) that decides shedding on existing connections, and the
// admission zone (the traffic zone without loop lag) that decides refusing new ones. The
// action fields (sheds_low_priority, sheds_all_but_control, accept_factor,
// refuses_connections) say what the node does now, so they come from the zone that
// decides each, not from the node zone, which decides nothing by itself.
type ZoneReport struct {
	limits.ZoneSnapshot
	TrafficZone   limits.Zone `json:"traffic_zone"`
	AdmissionZone limits.Zone `json:"admission_zone"`
}

// ZoneReport returns the zone report. Safe for concurrent use.
func (s *Server) ZoneReport() ZoneReport {
	r := ZoneReport{ZoneSnapshot: s.g.zone.Snapshot(s.clock()), TrafficZone: s.g.traffic.Current(),
		AdmissionZone: s.g.admission.Current()}
	r.ShedsLowPriority = r.TrafficZone.ShedsLowPriority()     // admit
	r.ShedsAllButControl = r.TrafficZone.ShedsAllButControl() // admit
	r.AcceptFactor = r.TrafficZone.AcceptFactor()             // admitNode
	r.RefusesConnections = r.AdmissionZone.RefusesConnections()
	return r
}

// CapacityReport is the /capacity endpoint: how much more the node can take, per resource.
type CapacityReport struct {
	Zone        string         `json:"zone"`
	Connections CapacityFigure `json:"connections"`
	QueueSlots  CapacityFigure `json:"queue_slots"`
	QueueBytes  CapacityFigure `json:"queue_bytes"`
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
		QueueBytes:       figure(s.g.queuedBytes.Load(), int64(s.maxQueueBytes())),
		RingSlots:        figure(ringUsed, ringCap),
		AcceptTokens:     int(s.acceptTokens.Load()),
		RequestsInFlight: inflight,
		Breaker:          s.g.breaker.State(s.clock()).String(),
	}
	if limit := debug.SetMemoryLimit(-1); limit > 0 && limit != math.MaxInt64 {
		smp := newMemSample()
		used := smp.read().used
		r.MemoryBytes = figure(int64(used), limit)
	}
	return r
}
