package server

import (
	"fmt"
	"io"
	"strconv"

	"github.com/VictoriaMetrics/metrics"

	"github.com/switchboard/switchboard/codec"
	"github.com/switchboard/switchboard/limits"
)

// WritePrometheus writes the server's metrics in the Prometheus text format, followed by
// the Go runtime and process metrics (process_resident_memory_bytes, go_gc_*, ...). Every
// value comes from per-loop atomics summed here, so scraping adds nothing to the frame
// path. Safe for concurrent use.
func (s *Server) WritePrometheus(w io.Writer) {
	st := s.Stats()
	gauge := func(name string, v float64) { metrics.WriteGaugeFloat64(w, name, v) }
	counter := func(name string, v uint64) { metrics.WriteCounterUint64(w, name, v) }

	gauge("switchboard_connections", float64(st.Connections))
	gauge("switchboard_connections_max", float64(st.ConnectionsMax))
	counter("switchboard_connections_accepted_total", st.Accepted)
	counter("switchboard_connections_closed_total", st.Closed)
	for reason, n := range s.refusedByReason() {
		counter(`switchboard_connections_refused_total{reason="`+reason+`"}`, n)
	}
	counter("switchboard_accept_errors_total", st.AcceptErrors)
	gauge("switchboard_registry_names", float64(st.Names))
	gauge("switchboard_draining", boolf(s.draining.Load()))

	var byType [256]uint64
	var bytesIn, bytesOut uint64
	var inflight, ringDepth, lagMax int64
	var hist latencySnapshot
	s.eachLoop(func(lp *loop) {
		for i := range byType {
			byType[i] += lp.stats.framesByType[i].Load()
		}
		bytesIn += lp.stats.bytesIn.Load()
		bytesOut += lp.stats.bytesOut.Load()
		inflight += lp.stats.inflight.Load()
		ringDepth += int64(lp.inbox.Len())
		lagMax = max(lagMax, lp.stats.lagNs.Load())
		hist.add(&lp.stats.reqLatency)
		idx := strconv.Itoa(int(lp.idx))
		gauge(`switchboard_loop_ring_depth{loop="`+idx+`"}`, float64(lp.inbox.Len()))
		gauge(`switchboard_loop_lag_seconds{loop="`+idx+`"}`, float64(lp.stats.lagNs.Load())/1e9)
	})
	for t, n := range byType {
		if n > 0 || codec.Type(t).Known() && t < 0x80 {
			counter(`switchboard_frames_in_total{type="`+codec.Type(t).String()+`"}`, n)
		}
	}
	counter("switchboard_bytes_in_total", bytesIn)
	counter("switchboard_bytes_out_total", bytesOut)
	gauge("switchboard_ring_depth", float64(ringDepth))
	gauge("switchboard_ring_capacity", float64(s.ringCapacity()))
	gauge("switchboard_loop_lag_max_seconds", float64(lagMax)/1e9)
	for code := codec.ErrorCode(1); code <= codec.MaxCode; code++ {
		counter(`switchboard_errors_total{code="`+code.String()+`"}`, st.Errors[code])
	}
	counter("switchboard_messages_sent_total", st.Sent)
	counter("switchboard_messages_dropped_total", st.Dropped)
	counter("switchboard_no_route_total", st.NoRoute)
	counter("switchboard_queue_full_total", st.QueueFull)
	counter("switchboard_slow_consumers_total", st.SlowConsumers)
	counter("switchboard_requests_total", st.Requests)
	counter("switchboard_responses_total", st.Responses)
	counter("switchboard_request_timeouts_total", st.RequestTimeouts)
	counter("switchboard_stale_replies_total", st.StaleReplies)
	gauge("switchboard_requests_inflight", float64(inflight))
	counter("switchboard_handshake_timeouts_total", st.HandshakeTimeouts)
	counter("switchboard_idle_timeouts_total", st.IdleTimeouts)
	counter("switchboard_bad_frames_total", st.BadFrames)
	counter("switchboard_log_suppressed_total", s.connLog.suppressed.Load())
	hist.write(w, "switchboard_request_duration_seconds")
	s.writeLimitMetrics(w)
	s.writeAuthMetrics(w)

	metrics.WriteProcessMetrics(w)
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
func (l *latencySnapshot) write(w io.Writer, name string) {
	fmt.Fprintf(w, "# TYPE %s histogram\n", name)
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
	metrics.WriteGaugeUint64(w, "switchboard_zone", uint64(g.zone.Current()))
	metrics.WriteGaugeUint64(w, "switchboard_traffic_zone", uint64(g.traffic.Current()))
	for z := limits.ZoneGreen; z <= limits.ZoneRed; z++ {
		metrics.WriteCounterUint64(w, `switchboard_zone_transitions_total{to="`+z.String()+`"}`, g.zoneEntered[z].Load())
	}
	snap := g.zone.Snapshot(s.clock())
	in := snap.Inputs
	for _, kv := range []struct {
		name string
		v    float64
	}{{"connections", in.Connections}, {"queued", in.Queued}, {"heap", in.Heap}, {"error_rate", in.ErrorRate}, {"loop_lag", in.LoopLag}} {
		metrics.WriteGaugeFloat64(w, `switchboard_zone_input{input="`+kv.name+`"}`, kv.v)
	}
	metrics.WriteGaugeUint64(w, "switchboard_breaker_state", uint64(g.breaker.State()))
	metrics.WriteCounterUint64(w, "switchboard_breaker_opens_total", g.breaker.Opens())
	metrics.WriteGaugeUint64(w, "switchboard_breaker_targets_tracked", uint64(g.targets.Len()))
	var connRL, nodeRL, shed, open uint64
	s.eachLoop(func(lp *loop) {
		connRL += lp.stats.rateLimitedConn.Load()
		nodeRL += lp.stats.rateLimitedNode.Load()
		shed += lp.stats.shed.Load()
		open += lp.stats.circuitOpen.Load()
	})
	metrics.WriteCounterUint64(w, `switchboard_rate_limited_total{tier="connection"}`, connRL)
	metrics.WriteCounterUint64(w, `switchboard_rate_limited_total{tier="node"}`, nodeRL)
	metrics.WriteCounterUint64(w, "switchboard_shed_total", shed)
	metrics.WriteCounterUint64(w, "switchboard_circuit_open_rejections_total", open)
	metrics.WriteGaugeUint64(w, "switchboard_queued_messages", uint64(max(0, g.queued.Load())))
	metrics.WriteGaugeUint64(w, "switchboard_queued_messages_max", uint64(s.maxQueue()))
}
