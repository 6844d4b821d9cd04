package cluster

import (
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"
)

// watchDelay is a histogram of how long the live updates of one watch took from their
// store in the KV (the entry's Created time, the stream leader's clock) to being applied
// on this node: how stale this node's view of the other nodes' names (or leases) is.
// Entries of a watch's replay are not observed: they were stored before the watch began.
// Across machines the figure includes the clock offset between this node and the stream
// leader; a negative delay (a leader clock ahead) counts as zero.
type watchDelay struct {
	counts [len(delayBounds) + 1]atomic.Uint64 // per bucket (not cumulative); the last is +Inf
	sumNs  atomic.Int64
}

// delayBounds are the upper bounds of the buckets, in seconds.
var delayBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// observe records one update stored at created and applied now; a zero created (unknown)
// is not recorded.
func (h *watchDelay) observe(created, now time.Time) {
	if created.IsZero() {
		return
	}
	d := max(now.Sub(created), 0)
	i := 0
	for i < len(delayBounds) && d.Seconds() > delayBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

// count is the number of updates observed.
func (h *watchDelay) count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// writeWatchDelays writes the watches' delay histograms as one Prometheus family,
// labelled by watch.
func writeWatchDelays(w io.Writer, name, help string, watches []string, hs []*watchDelay) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for k, h := range hs {
		var cum uint64
		for i := range h.counts {
			cum += h.counts[i].Load()
			le := "+Inf"
			if i < len(delayBounds) {
				le = strconv.FormatFloat(delayBounds[i], 'g', -1, 64)
			}
			fmt.Fprintf(w, "%s_bucket{watch=%q,le=%q} %d\n", name, watches[k], le, cum)
		}
		fmt.Fprintf(w, "%s_sum{watch=%q} %g\n", name, watches[k], time.Duration(h.sumNs.Load()).Seconds())
		fmt.Fprintf(w, "%s_count{watch=%q} %d\n", name, watches[k], cum)
	}
}
