package limits

import "testing"

// BenchmarkTokenBucketAllow measures one per-frame check on a connection's bucket: admit
// (the bucket refills faster than it is drained) and refuse (an overloaded connection).
func BenchmarkTokenBucketAllow(b *testing.B) {
	b.Run("admit", func(b *testing.B) {
		tb := NewTokenBucket(1_000_000, 1000)
		now := base
		b.ReportAllocs()
		for b.Loop() {
			now += 1000 // 1 µs per frame: exactly the rate
			if !tb.Allow(now, 1) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("refuse", func(b *testing.B) {
		tb := NewTokenBucket(1, 1)
		tb.Allow(base, 1)
		now := base
		b.ReportAllocs()
		for b.Loop() {
			now++
			if tb.Allow(now, 1) {
				b.Fatal("admitted")
			}
		}
	})
	b.Run("unlimited", func(b *testing.B) {
		var tb TokenBucket
		b.ReportAllocs()
		for b.Loop() {
			tb.Allow(base, 1)
		}
	})
}
