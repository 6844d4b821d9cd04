package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram layout: log-linear ("HDR-style") buckets over nanoseconds. Values below
// 2^histSubBits are exact; above, each power of two is split into 2^(histSubBits-1) equal
// buckets, so a bucket is at most 1/128 of its values wide (under 0.8 %) and the midpoint
// reported by Percentile is within 0.4 % of any value in it.
const (
	histSubBits  = 8
	histHalf     = 1 << (histSubBits - 1)
	histMaxValue = int64(60 * time.Second) // larger values are recorded as this
)

// histNumBuckets is the number of buckets actually used up to histMaxValue.
var histNumBuckets = bucketOf(histMaxValue) + 1

// bucketOf returns the bucket index of v (nanoseconds, 0 ≤ v ≤ histMaxValue).
func bucketOf(v int64) int {
	u := uint64(v)
	if u < 2*histHalf {
		return int(u)
	}
	shift := bits.Len64(u) - histSubBits
	return shift*histHalf + int(u>>shift)
}

// bucketBounds returns the smallest value of bucket i and its width.
func bucketBounds(i int) (lo, width int64) {
	if i < 2*histHalf {
		return int64(i), 1
	}
	shift := i/histHalf - 1
	sub := i - shift*histHalf
	return int64(sub) << shift, int64(1) << shift
}

func clampValue(d time.Duration) int64 {
	v := int64(d)
	if v < 0 {
		return 0
	}
	if v > histMaxValue {
		return histMaxValue
	}
	return v
}

// Histogram records durations from 0 to 60 s with better than 1 % precision in about
// 30 KiB. The zero value is not usable; call NewHistogram. A Histogram is not safe for
// concurrent use; concurrent recorders use an atomicHistogram and snapshot it.
type Histogram struct {
	counts []uint64 // by bucket; len histNumBuckets
	total  uint64
	min    int64 // ns; valid when total > 0
	max    int64 // ns
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, histNumBuckets)}
}

// Record adds one value. Negative values count as 0 and values above 60 s as 60 s.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n copies of one value.
func (h *Histogram) RecordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := clampValue(d)
	h.counts[bucketOf(v)] += n
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total += n
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
}

// Reset empties h.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.total, h.min, h.max = 0, 0, 0
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max returns the largest recorded value (exact), or 0 when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min returns the smallest recorded value (exact), or 0 when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Percentile returns the value below or at which p percent (0..100) of the recorded values
// lie: the midpoint of the bucket holding that rank, clamped to [Min, Max]. It returns 0
// for an empty histogram.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := bucketBounds(i)
			v := lo + (w-1)/2
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// histJSON is the wire form: sparse [bucket, count] pairs, so a histogram crosses a pipe
// from a worker process in a few hundred bytes.
type histJSON struct {
	SubBits int         `json:"sub_bits"`
	Total   uint64      `json:"total"`
	Min     int64       `json:"min_ns"`
	Max     int64       `json:"max_ns"`
	Buckets [][2]uint64 `json:"buckets"`
}

// MarshalJSON encodes h sparsely.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	j := histJSON{SubBits: histSubBits, Total: h.total, Min: h.min, Max: h.max, Buckets: [][2]uint64{}}
	for i, c := range h.counts {
		if c != 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON produced.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.SubBits != histSubBits {
		return fmt.Errorf("bench: histogram with %d sub-bucket bits, want %d", j.SubBits, histSubBits)
	}
	if h.counts == nil {
		h.counts = make([]uint64, histNumBuckets)
	}
	h.Reset()
	var sum uint64
	for _, b := range j.Buckets {
		if b[0] >= uint64(len(h.counts)) {
			return fmt.Errorf("bench: histogram bucket %d out of range", b[0])
		}
		h.counts[b[0]] += b[1]
		sum += b[1]
	}
	if sum != j.Total {
		return fmt.Errorf("bench: histogram total %d != bucket sum %d", j.Total, sum)
	}
	h.total, h.min, h.max = j.Total, j.Min, j.Max
	return nil
}

// atomicHistogram is a Histogram that many goroutines record into at once (one atomic add
// per value); one goroutine drains it into a Histogram with SnapshotReset.
type atomicHistogram struct {
	counts []atomic.Uint64
	max    atomic.Int64
}

func newAtomicHistogram() *atomicHistogram {
	return &atomicHistogram{counts: make([]atomic.Uint64, histNumBuckets)}
}

// Record is safe for concurrent use.
func (a *atomicHistogram) Record(d time.Duration) {
	v := clampValue(d)
	a.counts[bucketOf(v)].Add(1)
	for {
		m := a.max.Load()
		if v <= m || a.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// SnapshotReset moves the recorded values into dst (which it resets first). Values
// recorded concurrently land in this snapshot or the next, never in both or neither; the
// exact max may be attributed to the next snapshot's window.
func (a *atomicHistogram) SnapshotReset(dst *Histogram) {
	dst.Reset()
	m := a.max.Swap(0)
	first := true
	for i := range a.counts {
		c := a.counts[i].Swap(0)
		if c == 0 {
			continue
		}
		dst.counts[i] = c
		dst.total += c
		lo, w := bucketBounds(i)
		if first {
			dst.min = lo
			first = false
		}
		dst.max = lo + w - 1
	}
	if dst.total > 0 && bucketOf(m) == bucketOf(dst.max) {
		dst.max = m // exact when the maximum belongs to this snapshot's last bucket
	}
}
