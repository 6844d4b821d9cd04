package bench

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsContiguous(t *testing.T) {
	prevEnd := int64(0)
	for i := 0; i < histNumBuckets; i++ {
		lo, w := bucketBounds(i)
		if lo != prevEnd {
			t.Fatalf("bucket %d starts at %d; want %d", i, lo, prevEnd)
		}
		if bucketOf(lo) != i || bucketOf(lo+w-1) != i {
			t.Fatalf("bucket %d: bucketOf(%d)=%d, bucketOf(%d)=%d", i, lo, bucketOf(lo), lo+w-1, bucketOf(lo+w-1))
		}
		if lo >= 2*histHalf && float64(w)/float64(lo) > 1.0/histHalf+1e-12 {
			t.Fatalf("bucket %d: width %d too coarse at %d", i, w, lo)
		}
		prevEnd = lo + w
	}
	if prevEnd <= histMaxValue {
		t.Fatalf("buckets end at %d, below the maximum %d", prevEnd, histMaxValue)
	}
}

// exactPercentile is the nearest-rank percentile of sorted values.
func exactPercentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestPercentilesWithinPrecision(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform-1us-10ms", func() time.Duration { return time.Microsecond + time.Duration(rng.Int64N(int64(10*time.Millisecond))) }},
		{"lognormal-100us", func() time.Duration {
			return time.Duration(math.Exp(rng.NormFloat64()*1.5) * float64(100*time.Microsecond))
		}},
		{"bimodal-50us-20ms", func() time.Duration {
			if rng.IntN(100) < 95 {
				return 50*time.Microsecond + time.Duration(rng.Int64N(int64(5*time.Microsecond)))
			}
			return 20*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistogram()
			var vals []time.Duration
			for range 100_000 {
				v := min(tc.gen(), 60*time.Second)
				vals = append(vals, v)
				h.Record(v)
			}
			slices.Sort(vals)
			for _, p := range []float64{1, 50, 90, 95, 99, 99.9, 100} {
				got, want := h.Percentile(p), exactPercentile(vals, p)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.01 {
					t.Errorf("p%v = %v; want %v (±1%%), off by %.2f%%", p, got, want, rel*100)
				}
			}
			if h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
				t.Errorf("min/max = %v/%v; want %v/%v", h.Min(), h.Max(), vals[0], vals[len(vals)-1])
			}
			if h.Count() != uint64(len(vals)) {
				t.Errorf("count = %d; want %d", h.Count(), len(vals))
			}
		})
	}
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := range 50_000 {
		v := time.Duration(rng.Int64N(int64(2 * time.Second)))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(b)
	if !slices.Equal(a.counts, all.counts) || a.total != all.total || a.min != all.min || a.max != all.max {
		t.Fatalf("merged histogram differs from the one that recorded everything")
	}
	a.Merge(NewHistogram()) // merging an empty histogram changes nothing
	if a.min != all.min {
		t.Fatalf("merging an empty histogram changed min to %v", a.min)
	}
}

func TestHistogramJSONRoundTrip(t *testing.T) {
	h := NewHistogram()
	for _, v := range []time.Duration{0, time.Microsecond, 77 * time.Microsecond, 3 * time.Millisecond, time.Minute, time.Hour, -5} {
		h.Record(v)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var g Histogram
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(g.counts, h.counts) || g.total != h.total || g.min != h.min || g.max != h.max {
		t.Fatalf("round trip changed the histogram: %s", b)
	}
	if h.Max() != 60*time.Second {
		t.Errorf("max = %v; want values above 60s clamped to 60s", h.Max())
	}
	for _, bad := range []string{`{"sub_bits":7,"total":0,"buckets":[]}`, `{"sub_bits":8,"total":1,"buckets":[[999999,1]]}`,
		`{"sub_bits":8,"total":5,"buckets":[[1,1]]}`} {
		if err := json.Unmarshal([]byte(bad), &g); err == nil {
			t.Errorf("Unmarshal(%s) accepted a bad histogram", bad)
		}
	}
}

func TestAtomicHistogramSnapshot(t *testing.T) {
	a := newAtomicHistogram()
	want := NewHistogram()
	for _, v := range []time.Duration{10 * time.Microsecond, 150 * time.Microsecond, 150 * time.Microsecond, 7 * time.Millisecond} {
		a.Record(v)
		want.Record(v)
	}
	got := NewHistogram()
	a.SnapshotReset(got)
	if !slices.Equal(got.counts, want.counts) || got.Count() != 4 || got.Max() != 7*time.Millisecond {
		t.Fatalf("snapshot count %d max %v; want 4, 7ms", got.Count(), got.Max())
	}
	a.SnapshotReset(got)
	if got.Count() != 0 {
		t.Fatalf("second snapshot has %d values; want 0", got.Count())
	}
}

func TestHistogramRecordNoAllocs(t *testing.T) {
	h, a := NewHistogram(), newAtomicHistogram()
	if n := testing.AllocsPerRun(100, func() { h.Record(time.Millisecond); a.Record(time.Millisecond) }); n != 0 {
		t.Fatalf("Record allocates %v times; want 0", n)
	}
}
