package cluster

import (
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// durations is a histogram of durations in seconds, safe for concurrent use. The
// directory keeps one per watch (from an update's store in the KV, the
// entry's Created time by the stream leader's clock, to its being applied on this node;
// across machines that includes the clock offset to the stream leader) and two for
// claims (the time a claim waits for a worker, and the time the worker takes).
type durations struct {
	counts [len(durationBounds) + 1]atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sumNs  atomic.Int64
}

// durationBounds are the upper bounds of the buckets, in seconds.
var durationBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// observe records the duration from start to end; a zero start (unknown) is not recorded,
// and a negative duration (another clock ahead) counts as zero.
func (h *durations) observe(start, end time.Time) {
	if start.IsZero() {
		return
	}
	d := max(end.Sub(start), 0)
	i := 0
	for i < len(durationBounds) && d.Seconds() > durationBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// writeDurations writes histograms as one Prometheus family, the k-th with label=values[k].
func writeDurations(w io.Writer, name, help, label string, values []string, hs []*durations) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for k, h := range hs {
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			le := "+Inf"
			if i < len(durationBounds) {
				le = strconv.FormatFloat(durationBounds[i], 'g', -1, 64)
			}
			fmt.Fprintf(w, "%s_bucket{%s=%q,le=%q} %d\n", name, label, values[k], le, cum)
		}
		fmt.Fprintf(w, "%s_sum{%s=%q} %g\n", name, label, values[k], time.Duration(h.sumNs.Load()).Seconds())
		fmt.Fprintf(w, "%s_count{%s=%q} %d\n", name, label, values[k], cum)
	}
}
