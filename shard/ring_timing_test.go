package shard

import (
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// BenchmarkRingPushPop measures an uncontended Push followed by Pop on one
// goroutine: the fixed cost of the ring operations.
func BenchmarkRingPushPop(b *testing.B) {
	r := NewRing[uint64](1024)
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		r.Push(i)
		r.Pop()
	}
}

// BenchmarkRingSPSC runs one producer and one consumer goroutine; b.N values
// pass through the ring.
func BenchmarkRingSPSC(b *testing.B) {
	benchRingProducers(b, 1)
}

// BenchmarkRingParallelProducers runs several producers against one
// consumer; b.N values in total pass through the ring.
func BenchmarkRingParallelProducers(b *testing.B) {
	for _, p := range []int{2, 4, 8} {
		b.Run(strconv.Itoa(p)+"producers", func(b *testing.B) { benchRingProducers(b, p) })
	}
}

func benchRingProducers(b *testing.B, producers int) {
	r := NewRing[uint64](1024)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	total := b.N
	for p := range producers {
		n := total / producers
		if p < total%producers {
			n++
		}
		wg.Go(func() {
			for i := 0; i < n; {
				if r.Push(uint64(i)) {
					i++
				} else {
					runtime.Gosched()
				}
			}
		})
	}
	for got := 0; got < total; {
		if _, ok := r.Pop(); ok {
			got++
		} else {
			runtime.Gosched()
		}
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
