package limits

import (
	"testing"
	"time"
)

// BenchmarkZoneTrackerCurrent measures the per-frame zone read from all GOMAXPROCS
// goroutines: one atomic load.
func BenchmarkZoneTrackerCurrent(b *testing.B) {
	zt := NewZoneTracker(Thresholds{})
	zt.Update(base, Inputs{Heap: 0.8})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if zt.Current() != ZoneOrange {
				b.Fatal("wrong zone")
			}
		}
	})
}

// BenchmarkZoneTrackerUpdate measures one sample by the sampler goroutine.
func BenchmarkZoneTrackerUpdate(b *testing.B) {
	zt := NewZoneTracker(Thresholds{})
	now := base
	b.ReportAllocs()
	for b.Loop() {
		now += int64(100 * time.Millisecond)
		zt.Update(now, Inputs{Connections: 0.5, Queued: 0.1, Heap: 0.7, ErrorRate: 0, LoopLag: 0.2})
	}
}
