package shard

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

const benchNames = 100_000

// lookupStream is a run of names laid end to end in one buffer, the way
// they arrive in a connection's inbound buffer: Lookup reads each name
// from memory that is already hot, as the server does. The names are
// random and in random order, so partitions and map slots are hit at random.
type lookupStream struct {
	buf []byte
	off []int32 // name i is buf[off[i]:off[i+1]]
}

func (s *lookupStream) len() int          { return len(s.off) - 1 }
func (s *lookupStream) name(i int) []byte { return s.buf[s.off[i]:s.off[i+1]] }

// newBenchRegistry returns a Registry holding benchNames random names and a
// stream of all of them in random order.
func newBenchRegistry(b *testing.B) (*Registry, *lookupStream) {
	b.Helper()
	names := randomNames(benchNames, 42)
	r := NewRegistry()
	for i, n := range names {
		if err := r.Register(n, MakeConnID(0, uint8(i%4), uint32(i), 1)); err != nil {
			b.Fatal(err)
		}
	}
	s := &lookupStream{off: make([]int32, 0, len(names)+1)}
	for _, p := range rand.New(rand.NewPCG(9, 9)).Perm(len(names)) {
		s.off = append(s.off, int32(len(s.buf)))
		s.buf = append(s.buf, names[p]...)
	}
	s.off = append(s.off, int32(len(s.buf)))
	return r, s
}

// BenchmarkRegistryLookup measures aggregate lookup throughput of all
// GOMAXPROCS goroutines over random registered names.
func BenchmarkRegistryLookup(b *testing.B) {
	r, s := newBenchRegistry(b)
	var start atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// Goroutines start at spread-out points of the stream; the names
		// are random, so they still hit partitions independently.
		i := int(start.Add(1)*7919) % s.len()
		for pb.Next() {
			if _, ok := r.Lookup(s.name(i)); !ok {
				b.Fatal("lookup miss")
			}
			if i++; i == s.len() {
				i = 0
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkRegistryLookupScattered is BenchmarkRegistryLookup with each name
// in its own allocation, read in random order: every lookup first misses
// the cache on the caller's slice header and bytes. The server never pays
// that (names come from the hot inbound buffer); this is the pessimistic
// bound.
func BenchmarkRegistryLookupScattered(b *testing.B) {
	r, s := newBenchRegistry(b)
	keys := make([][]byte, s.len())
	for i := range keys {
		keys[i] = bytes.Clone(s.name(i))
	}
	perm := rand.New(rand.NewPCG(3, 3)).Perm(len(keys))
	var start atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(start.Add(1)*7919) % len(perm)
		for pb.Next() {
			if _, ok := r.Lookup(keys[perm[i]]); !ok {
				b.Fatal("lookup miss")
			}
			if i++; i == len(perm) {
				i = 0
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

// BenchmarkRegistryLookupLatency times batches of lookupBatch lookups on one
// goroutine and reports the per-lookup latency percentiles of the batches.
// Batching keeps timer overhead (tens of ns per time.Now) out of the figure;
// the cost is that a single slow lookup is averaged over its batch.
func BenchmarkRegistryLookupLatency(b *testing.B) {
	const lookupBatch = 64
	r, s := newBenchRegistry(b)
	samples := make([]float64, 0, b.N/lookupBatch+1)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for done := 0; done < b.N; done += lookupBatch {
		n := min(lookupBatch, b.N-done)
		start := time.Now()
		for range n {
			if _, ok := r.Lookup(s.name(i)); !ok {
				b.Fatal("lookup miss")
			}
			if i++; i == s.len() {
				i = 0
			}
		}
		samples = append(samples, float64(time.Since(start).Nanoseconds())/float64(n))
	}
	b.StopTimer()
	slices.Sort(samples)
	b.ReportMetric(percentile(samples, 0.50), "p50-ns")
	b.ReportMetric(percentile(samples, 0.99), "p99-ns")
}

// percentile returns the q-quantile (0..1) of sorted samples by nearest rank.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// BenchmarkRegistryMix runs 90% lookups and 10% register+unregister pairs
// from all GOMAXPROCS goroutines. Each goroutine churns its own names, so
// writes contend for partition locks but never fail.
func BenchmarkRegistryMix(b *testing.B) {
	r, s := newBenchRegistry(b)
	// RunParallel starts GOMAXPROCS goroutines; give each its own names.
	own := make([][]string, runtime.GOMAXPROCS(0))
	for w := range own {
		own[w] = randomNames(1024, uint64(1000+w))
	}
	var worker atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1) - 1
		mine := own[w]
		id := MakeConnID(1, uint8(w), 0, 1)
		i := int(w*7919) % s.len()
		for op := 0; pb.Next(); op++ {
			if op%10 == 9 {
				n := mine[op%len(mine)]
				if err := r.Register(n, id); err != nil {
					b.Fatal(err)
				}
				if err := r.Unregister(n, id); err != nil {
					b.Fatal(err)
				}
			} else if _, ok := r.Lookup(s.name(i)); !ok {
				b.Fatal("lookup miss")
			}
			if i++; i == s.len() {
				i = 0
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkRegistrySkew reports the largest partition deviation from the
// mean, in percent, for 100K random names (see TestRegistrySkew): skew-% is
// the mean over registries with different seeds, max-skew-% the worst one
// seen (which grows with the number of iterations).
func BenchmarkRegistrySkew(b *testing.B) {
	names := randomNames(benchNames, 43)
	var sum, worst float64
	runs := 0
	b.ReportAllocs()
	for b.Loop() {
		r := NewRegistry() // fresh random seed each time
		for i, n := range names {
			r.Register(n, ConnID(i+1))
		}
		skew := skewPercent(r.PartitionSizes())
		sum += skew
		worst = max(worst, skew)
		runs++
	}
	b.ReportMetric(sum/float64(runs), "skew-%")
	b.ReportMetric(worst, "max-skew-%")
}
