package server

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
)

// WritePrometheus writes the server's metrics in the Prometheus text format, followed by
// the Go runtime and process metrics (process_resident_memory_bytes, go_gc_*, ...). Every
// metric family has its # HELP and # TYPE lines once, before its samples, so that
// `promtool check metrics` finds nothing to report. Every value comes from per-loop
// atomics summed here, so scraping adds nothing to the frame path. Safe for concurrent
// use.
func (s *Server) WritePrometheus(w io.Writer) {
	st := s.Stats()
	gauge := func(name, help string, v float64) {
		writeFamily(w, name, "gauge", help)
		metrics.WriteGaugeFloat64(w, name, v)
	}
	counter := func(name, help string, v uint64) {
		writeFamily(w, name, "counter", help)
		metrics.WriteCounterUint64(w, name, v)
	}

	gauge("switchboard_connections", "Client connections open now.", float64(st.Connections))
	gauge("switchboard_connections_max", "The connection cap (max-connections, derived from the open-file limit when auto).", float64(st.ConnectionsMax))
	counter("switchboard_connections_accepted_total", "Connections accepted and enrolled on an event loop.", st.Accepted)
	counter("switchboard_connections_closed_total", "Connections closed, for any reason.", st.Closed)
	writeFamily(w, "switchboard_connections_refused_total", "counter", "Connections refused at accept, with an ERROR, by reason.")
	for reason, n := range s.refusedByReason() {
		metrics.WriteCounterUint64(w, `switchboard_connections_refused_total{reason="`+reason+`"}`, n)
	}
	counter("switchboard_accept_errors_total", "accept() errors; the acceptor backs off and retries.", st.AcceptErrors)
	writeFamily(w, "switchboard_accept_pauses_total", "counter", "Times the acceptor paused before accepting, leaving clients in the kernel's backlog, by reason: handshakes (the handshake cap is full) or loop_lag (the event loops lag).")
	metrics.WriteCounterUint64(w, `switchboard_accept_pauses_total{reason="handshakes"}`, s.acceptPauses[pauseHandshakes].Load())
	metrics.WriteCounterUint64(w, `switchboard_accept_pauses_total{reason="loop_lag"}`, s.acceptPauses[pauseLoopLag].Load())
	gauge("switchboard_registry_names", "Names registered on this node.", float64(st.Names))
	gauge("switchboard_draining", "1 while the node is draining, else 0.", boolf(s.draining.Load()))

	var byType [256]uint64
	var bytesIn, bytesOut, framesOut uint64
	var inflight, ringDepth, lagMax int64
	var hist latencySnapshot
	var loopRing, loopLag []string // samples per loop, written after the sums below
	s.eachLoop(func(lp *loop) {
		for i := range byType {
			byType[i] += lp.stats.framesByType[i].Load()
		}
		bytesIn += lp.stats.bytesIn.Load()
		bytesOut += lp.stats.bytesOut.Load()
		framesOut += lp.stats.framesOut.Load()
		inflight += lp.stats.inflight.Load()
		ringDepth += int64(lp.inbox.Len())
		lagMax = max(lagMax, lp.stats.lagNs.Load())
		hist.add(&lp.stats.reqLatency)
		idx := strconv.Itoa(int(lp.idx))
		loopRing = append(loopRing, fmt.Sprintf("switchboard_loop_ring_depth{loop=%q} %d\n", idx, lp.inbox.Len()))
		loopLag = append(loopLag, fmt.Sprintf("switchboard_loop_lag_seconds{loop=%q} %g\n", idx, float64(lp.stats.lagNs.Load())/1e9))
	})
	writeFamily(w, "switchboard_loop_ring_depth", "gauge", "Cross-loop deliveries waiting in each event loop's ring.")
	_, _ = io.WriteString(w, strings.Join(loopRing, ""))
	writeFamily(w, "switchboard_loop_lag_seconds", "gauge", "How late each event loop ran its last tick.")
	_, _ = io.WriteString(w, strings.Join(loopLag, ""))
	writeFamily(w, "switchboard_frames_in_total", "counter", "Frames received, by frame type.")
	for t, n := range byType {
		if n > 0 || codec.Type(t).Known() && t < 0x80 {
			metrics.WriteCounterUint64(w, `switchboard_frames_in_total{type="`+codec.Type(t).String()+`"}`, n)
		}
	}
	counter("switchboard_bytes_in_total", "Bytes of whole frames received.", bytesIn)
	counter("switchboard_bytes_out_total", "Bytes handed to sockets.", bytesOut)
	counter("switchboard_frames_out_total", "Frames sent to clients, of every type.", framesOut)
	gauge("switchboard_ring_depth", "Cross-loop deliveries waiting in all rings.", float64(ringDepth))
	gauge("switchboard_ring_capacity", "Slots in all cross-loop rings (ring-size per loop).", float64(s.ringCapacity()))
	gauge("switchboard_loop_lag_max_seconds", "The worst event-loop lag (the loop_lag zone input is this over loop-lag-budget).", float64(lagMax)/1e9)
	writeFamily(w, "switchboard_errors_total", "counter", "ERROR frames sent, or refusals counted for one-way frames, by error code.")
	for code := codec.ErrorCode(1); code <= codec.MaxCode; code++ {
		metrics.WriteCounterUint64(w, `switchboard_errors_total{code="`+code.String()+`"}`, st.Errors[code])
	}
	counter("switchboard_messages_sent_total", "MESSAGEs queued to their target.", st.Sent)
	counter("switchboard_messages_dropped_total", "One-way SENDs dropped (no route, queue full, refused).", st.Dropped)
	counter("switchboard_no_route_total", "SENDs and REQUESTs to a name nobody owns.", st.NoRoute)
	counter("switchboard_queue_full_total", "Frames refused with QUEUE_FULL.", st.QueueFull)
	counter("switchboard_slow_consumers_total", "Connections closed as slow consumers.", st.SlowConsumers)
	counter("switchboard_requests_total", "REQUESTs forwarded to their responder.", st.Requests)
	counter("switchboard_responses_total", "RESPONSEs delivered to their requester.", st.Responses)
	counter("switchboard_request_timeouts_total", "REQUESTs answered TIMEOUT.", st.RequestTimeouts)
	counter("switchboard_stale_replies_total", "REPLYs whose token was unknown, answered or expired.", st.StaleReplies)
	gauge("switchboard_requests_inflight", "REQUESTs awaiting an outcome.", float64(inflight))
	counter("switchboard_handshake_timeouts_total", "Connections closed for sending no HELLO in time.", st.HandshakeTimeouts)
	counter("switchboard_route_credit_pauses_total", "Connections whose input was paused because route-credit of their messages were on their way to other event loops (flow control).", st.RouteCreditPauses)
	counter("switchboard_route_credit_overruns_total", "Paused connections read anyway because 64 KiB of their input waited.", st.RouteCreditOverruns)
	counter("switchboard_route_credit_resumes_lost_total", "Resumes of paused connections that found their loop's ring full; the loop's next tick resumed them.", st.RouteCreditResumesLost)
	counter("switchboard_handshake_timeouts_deferred_total", "Handshake timeouts put off to the next tick because the loop had closed its per-tick share (64) of them.", st.HandshakeTimeoutsDeferred)
	counter("switchboard_idle_timeouts_total", "Connections closed for sending nothing for the idle timeout.", st.IdleTimeouts)
	counter("switchboard_bad_frames_total", "Connections closed for a frame that could not be decoded.", st.BadFrames)
	counter("switchboard_log_suppressed_total", "Per-connection log lines suppressed by the log rate limit.", s.connLog.suppressed.Load())
	hist.write(w, "switchboard_request_duration_seconds", "Time from forwarding a REQUEST to its RESPONSE.")
	s.writeLimitMetrics(w)
	s.writeAuthMetrics(w)
	if m, ok := s.remote.(RemoteMetrics); ok {
		m.WritePrometheus(w)
	}

	writeRuntimeMetrics(w)
}

// writeFamily writes a metric family's # HELP and # TYPE lines. help must not hold a
// backslash or a newline (the format would need them escaped).
func writeFamily(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (s *Server) ringCapacity() int {
	n := 0
	s.eachLoop(func(lp *loop) { n += lp.inbox.Cap() })
	return n
}

// latencySnapshot sums loop histograms for one scrape.
type latencySnapshot struct {
	buckets [len(latencyBounds) + 1]uint64
	sumNs   uint64
}

func (l *latencySnapshot) add(h *latencyHist) {
	for i := range h.buckets {
		l.buckets[i] += h.buckets[i].Load()
	}
	l.sumNs += h.sumNs.Load()
}

// write emits a Prometheus histogram with cumulative buckets.
func (l *latencySnapshot) write(w io.Writer, name, help string) {
	writeFamily(w, name, "histogram", help)
	var cum uint64
	for i, le := range latencyBounds {
		cum += l.buckets[i]
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(le, 'g', -1, 64), cum)
	}
	cum += l.buckets[len(latencyBounds)]
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, cum)
	fmt.Fprintf(w, "%s_sum %g\n", name, float64(l.sumNs)/1e9)
	fmt.Fprintf(w, "%s_count %d\n", name, cum)
}

// writeLimitMetrics writes the overload-protection metrics.
func (s *Server) writeLimitMetrics(w io.Writer) {
	g := &s.g
	gauge := func(name, help string, v uint64) {
		writeFamily(w, name, "gauge", help)
		metrics.WriteGaugeUint64(w, name, v)
	}
	counter := func(name, help string, v uint64) {
		writeFamily(w, name, "counter", help)
		metrics.WriteCounterUint64(w, name, v)
	}
	gauge("switchboard_zone", "The node zone, from all five inputs: 0 GREEN, 1 YELLOW, 2 ORANGE, 3 RED.", uint64(g.zone.Current()))
	gauge("switchboard_traffic_zone", "The traffic zone (queued, heap, loop lag) that sheds frames: 0 GREEN to 3 RED.", uint64(g.traffic.Current()))
	gauge("switchboard_admission_zone", "The admission zone (queued, heap) whose RED refuses new connections: 0 GREEN to 3 RED.", uint64(g.admission.Current()))
	writeFamily(w, "switchboard_zone_transitions_total", "counter", "Node zone changes, by the zone entered.")
	for z := limits.ZoneGreen; z <= limits.ZoneRed; z++ {
		metrics.WriteCounterUint64(w, `switchboard_zone_transitions_total{to="`+z.String()+`"}`, g.zoneEntered[z].Load())
	}
	snap := g.zone.Snapshot(s.clock())
	in := snap.Inputs
	writeFamily(w, "switchboard_zone_input", "gauge", "Each zone input's utilisation (1 = at its limit).")
	for _, kv := range []struct {
		name string
		v    float64
	}{{"connections", in.Connections}, {"queued", in.Queued}, {"heap", in.Heap}, {"error_rate", in.ErrorRate}, {"loop_lag", in.LoopLag}} {
		metrics.WriteGaugeFloat64(w, `switchboard_zone_input{input="`+kv.name+`"}`, kv.v)
	}
	gauge("switchboard_breaker_state", "The node circuit breaker: 0 closed, 1 open, 2 half-open.", uint64(g.breaker.State(s.clock())))
	counter("switchboard_breaker_opens_total", "Times the node circuit breaker opened.", g.breaker.Opens())
	gauge("switchboard_breaker_targets_tracked", "Targets with a recent failure tracked by the per-target breakers.", uint64(g.targets.Len()))
	var connRL, nodeRL, shed, open uint64
	s.eachLoop(func(lp *loop) {
		connRL += lp.stats.rateLimitedConn.Load()
		nodeRL += lp.stats.rateLimitedNode.Load()
		shed += lp.stats.shed.Load()
		open += lp.stats.circuitOpen.Load()
	})
	writeFamily(w, "switchboard_rate_limited_total", "counter", "Frames refused RATE_LIMITED, by tier.")
	metrics.WriteCounterUint64(w, `switchboard_rate_limited_total{tier="connection"}`, connRL)
	metrics.WriteCounterUint64(w, `switchboard_rate_limited_total{tier="node"}`, nodeRL)
	counter("switchboard_shed_total", "Frames shed with BUSY by the traffic zone.", shed)
	counter("switchboard_circuit_open_rejections_total", "REQUESTs refused CIRCUIT_OPEN (node or target breaker).", open)
	gauge("switchboard_queued_messages", "Messages queued node-wide (rings and outbound), sampled each tick.", uint64(max(0, g.queued.Load())))
	gauge("switchboard_queued_messages_max", "The node-wide queue bound (max-queue).", uint64(s.maxQueue()))
	gauge("switchboard_queued_bytes", "Bytes of the messages queued node-wide (rings, and what gnet holds for connections), sampled each tick.", uint64(max(0, g.queuedBytes.Load())))
	gauge("switchboard_queued_bytes_max", "The node-wide queue bound in bytes (max-queue-bytes).", uint64(s.maxQueueBytes()))
	counter("switchboard_idle_collections_total", "Garbage collections the sampler ran on an idle node: the heap input stayed high with no collection for 1 s, or the heap held 8 MiB with none for 10 s (LIMITS.md, an idle node's garbage).", g.idle.count.Load())
}
