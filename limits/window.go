package limits

import (
	"sync"
	"sync/atomic"
)

// window is a sliding window of request outcomes in fixed-width time buckets: the error
// window of the node Breaker and of each TargetBreakers entry.
//
// Concurrency: add and sums may run concurrently with each other (the counters are
// atomics, which is what lets the node breaker count without a lock); a bucket's rotation
// and reset need the lock the owner passes to add (the node breaker's mu), or the owner
// holds its own lock around every call and passes nil (a target shard's mu). An
// uncontended atomic add under a held lock costs little, and sharing the code is worth it.
//
// Buckets are not padded to a cache line: every adder hits the current bucket whatever
// the padding, and a per-target window is 24 bytes a bucket instead of 128.
type window struct {
	width   int64 // bucket width, ns; 0 for a zero (never counting) window
	buckets []windowBucket
}

// windowBucket counts the outcomes of one bucket-width of time. epoch is now/width of the
// time it counts; a bucket whose epoch is older than the window is stale and reset by the
// first add that needs it.
type windowBucket struct {
	epoch atomic.Int64
	total atomic.Int64
	fail  atomic.Int64
}

// newWindow returns an empty window of n buckets of width ns each.
func newWindow(n int, width int64) window {
	w := window{width: width, buckets: make([]windowBucket, n)}
	w.reset()
	return w
}

// reset empties the window. The caller holds the owner's lock, or w is not shared yet.
func (w *window) reset() {
	for i := range w.buckets {
		bk := &w.buckets[i]
		bk.total.Store(0)
		bk.fail.Store(0)
		bk.epoch.Store(-1)
	}
}

// add counts one outcome in the bucket of now. mu, if not nil, is taken to rotate a stale
// bucket; with nil the caller already excludes other callers. A caller stalled for a
// whole window between loading the epoch and adding can land its count in a newer
// bucket; the window is a statistic and tolerates that.
func (w *window) add(now int64, success bool, mu *sync.Mutex) {
	e := now / w.width
	if e < 0 {
		return // a negative clock: drop
	}
	bk := &w.buckets[e%int64(len(w.buckets))]
	if cur := bk.epoch.Load(); cur != e {
		if cur > e {
			return // older than the window: drop
		}
		if mu != nil {
			mu.Lock()
		}
		if bk.epoch.Load() < e {
			bk.total.Store(0)
			bk.fail.Store(0)
			bk.epoch.Store(e) // published after the reset: adders that see e add to zeros
		}
		cur = bk.epoch.Load()
		if mu != nil {
			mu.Unlock()
		}
		if cur != e {
			return // rotated past e by a caller with a later now
		}
	}
	bk.total.Add(1)
	if !success {
		bk.fail.Add(1)
	}
}

// sums adds up the buckets inside the window ending at now. Lock-free; approximate
// under concurrent adds.
func (w *window) sums(now int64) (total, fail int64) {
	e := now / w.width
	oldest := e - int64(len(w.buckets))
	for i := range w.buckets {
		bk := &w.buckets[i]
		if ep := bk.epoch.Load(); ep > oldest && ep <= e {
			total += bk.total.Load()
			fail += bk.fail.Load()
		}
	}
	return total, fail
}
