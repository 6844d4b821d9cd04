package limits

import (
	"sync/atomic"
	"testing"
)

// BenchmarkSharedRateAllow measures the node-wide check from every GOMAXPROCS goroutine at
// once, each with its own lease (one per event loop): admitting at a rate the pool covers,
// and refusing under overload. baseline-atomic-add is what a shared counter incremented per
// message would cost, for comparison in the same run.
func BenchmarkSharedRateAllow(b *testing.B) {
	run := func(b *testing.B, rate, burst int) {
		s := NewSharedRate(rate, burst, 64)
		var next atomic.Int32
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			l := s.Lease(int(next.Add(1) - 1))
			now := base
			for pb.Next() {
				now += 100
				l.Allow(now)
			}
		})
	}
	b.Run("admit", func(b *testing.B) { run(b, MaxRate, MaxBurst) })
	b.Run("refuse", func(b *testing.B) { run(b, 1, 1) })
	b.Run("baseline-atomic-add", func(b *testing.B) {
		var n atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Add(1)
			}
		})
	})
}
