package limits

import (
	"fmt"
	"testing"
)

// BenchmarkBreakerAllowClosed measures the node breaker's check on every request from all
// GOMAXPROCS goroutines: one atomic load while closed.
func BenchmarkBreakerAllowClosed(b *testing.B) {
	br := NewBreaker(BreakerConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _ := br.Allow(base); !ok {
				b.Fatal("refused")
			}
		}
	})
}

// BenchmarkBreakerAllowOpen measures failing fast: two atomic loads.
func BenchmarkBreakerAllowOpen(b *testing.B) {
	cfg := DefaultBreakerConfig()
	cfg.MinRequests = 1
	br := NewBreaker(cfg)
	br.Record(base, false)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, _ := br.Allow(base); ok {
				b.Fatal("admitted")
			}
		}
	})
}

// BenchmarkBreakerRecordClosed measures reporting successes from all goroutines into the
// shared window (lock-free atomic adds on one shared bucket; it rotates every simulated
// second).
func BenchmarkBreakerRecordClosed(b *testing.B) {
	br := NewBreaker(BreakerConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := base
		for pb.Next() {
			now += 100
			br.Record(now, true)
		}
	})
}

// BenchmarkTargetBreakers measures, from GOMAXPROCS goroutines, the per-target check
// every REQUEST pays (Allow) and the record of every answered one (RecordSuccess): with
// no failing target each is one atomic load; with tracked targets, one shard lock and map
// lookup.
func BenchmarkTargetBreakers(b *testing.B) {
	for _, op := range []string{"Allow", "RecordSuccess"} {
		for _, tracked := range []uint64{0, 1000} {
			b.Run(fmt.Sprintf("%s/%d-tracked", op, tracked), func(b *testing.B) {
				tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 0)
				for id := range tracked {
					tb.Record(id, base, false)
				}
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					id := uint64(0)
					for pb.Next() {
						id++
						if op == "Allow" {
							tb.Allow(id%2000, base) // half of them tracked
						} else {
							tb.Record(2000+id, base, true) // never tracked
						}
					}
				})
			})
		}
	}
}
