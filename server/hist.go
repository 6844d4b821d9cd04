package server

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds (seconds) of the request latency histogram: loopback
// round trips are tens of microseconds, timeouts are seconds.
var latencyBounds = [...]float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// latencyHist is a fixed-bucket histogram written by one loop with uncontended atomics and
// read by the metrics writer: no lock on the request path.
type latencyHist struct {
	buckets [len(latencyBounds) + 1]atomic.Uint64 // last one is +Inf
	sumNs   atomic.Uint64
}

func (h *latencyHist) observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(latencyBounds) && sec > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(uint64(d))
}
