package limits

import (
	"sync"
	"testing"
	"time"
)

func TestTargetBreakersCycle(t *testing.T) {
	tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 0)
	const target, other = 42, 43
	now := base
	// Healthy traffic is not tracked.
	for range 100 {
		tb.Record(target, now, true)
	}
	if tb.Len() != 0 {
		t.Fatalf("Len after successes = %d; want 0", tb.Len())
	}
	// 19 failures: tracked, closed.
	for range 19 {
		tb.Record(target, now, false)
	}
	if tb.Len() != 1 || tb.State(target, now) != BreakerClosed {
		t.Fatalf("after 19 failures: Len %d State %v; want 1 closed", tb.Len(), tb.State(target, now))
	}
	tb.Record(target, now, false) // 20 failures, 100%
	if tb.State(target, now) != BreakerOpen {
		t.Fatalf("after 20 failures State = %v; want open", tb.State(target, now))
	}
	if ok, ra := tb.Allow(target, now+sec); ok || ra != 4*time.Second {
		t.Errorf("Allow open = %v, %v; want false, 4s", ok, ra)
	}
	if ok, _ := tb.Allow(other, now); !ok {
		t.Errorf("other target refused")
	}
	// Half-open: 5 probes; a failure reopens.
	now += 5 * sec
	for i := range 5 {
		if ok, _ := tb.Allow(target, now); !ok {
			t.Fatalf("probe %d refused", i)
		}
	}
	if ok, _ := tb.Allow(target, now); ok {
		t.Fatal("6th probe admitted")
	}
	tb.Record(target, now, false)
	if tb.State(target, now) != BreakerOpen {
		t.Fatalf("after probe failure State = %v; want open", tb.State(target, now))
	}
	// Next round: 5 successes close and forget it.
	now += 5 * sec
	for range 5 {
		tb.Allow(target, now)
		tb.Record(target, now, true)
	}
	if tb.State(target, now) != BreakerClosed || tb.Len() != 0 {
		t.Fatalf("after 5 probe successes: State %v Len %d; want closed 0", tb.State(target, now), tb.Len())
	}
}

func TestTargetBreakersRate(t *testing.T) {
	tests := []struct {
		name     string
		ok, fail int
		want     BreakerState
	}{
		{"many-failures-low-rate", 100, 30, BreakerClosed},
		{"half-not-above", 20, 20, BreakerClosed},
		{"above-half", 20, 21, BreakerOpen},
		{"too-few-failures", 0, 19, BreakerClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 0)
			tb.Record(1, base, false) // start tracking so successes count
			for range tt.ok {
				tb.Record(1, base, true)
			}
			for range tt.fail - 1 {
				tb.Record(1, base, false)
			}
			if got := tb.State(1, base); got != tt.want {
				t.Errorf("State = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestTargetBreakersForgetsHealed(t *testing.T) {
	tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 0)
	tb.Record(7, base, false)
	tb.Record(7, base+sec, true)
	if tb.Len() != 1 {
		t.Fatalf("Len with a failure in the window = %d; want 1", tb.Len())
	}
	tb.Record(7, base+11*sec, true)
	if tb.Len() != 0 {
		t.Fatalf("Len after the failure left the window = %d; want 0", tb.Len())
	}
}

func TestTargetBreakersBounded(t *testing.T) {
	tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 64)
	if tb.MaxTargets() != 64 {
		t.Fatalf("MaxTargets = %d; want 64", tb.MaxTargets())
	}
	// Open target 0, then flood with failing targets: open entries are evicted last.
	for range 20 {
		tb.Record(0, base, false)
	}
	for id := uint64(1); id < 10_000; id++ {
		tb.Record(id, base+int64(id), false)
		if tb.Len() > 64 {
			t.Fatalf("Len = %d after %d targets; want <= 64", tb.Len(), id)
		}
	}
	if tb.State(0, base+10_000) != BreakerOpen {
		t.Errorf("open target evicted in favour of closed ones")
	}
}

func TestTargetBreakersConcurrent(t *testing.T) {
	cfg := DefaultBreakerConfig()
	cfg.ErrorRate, cfg.MinRequests, cfg.MinFailures, cfg.OpenFor = 0.3, 5, 5, time.Millisecond
	tb := NewTargetBreakers(cfg, 128)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			now := base
			for i := range 20000 {
				now += 1000
				target := uint64(i % 300)
				if ok, _ := tb.Allow(target, now); ok {
					tb.Record(target, now, (i+g)%3 != 0)
				}
			}
		})
	}
	wg.Wait()
	if tb.Len() > tb.MaxTargets() {
		t.Errorf("Len = %d; want <= %d", tb.Len(), tb.MaxTargets())
	}
}

func TestTargetBreakersNoAllocs(t *testing.T) {
	tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 0)
	now := base
	// Warm the free list and the map.
	tb.Record(1, now, false)
	tb.Record(1, now+20*sec, true)
	now += 20 * sec
	if a := testing.AllocsPerRun(1000, func() {
		now += 1000
		tb.Allow(1, now)
		tb.Record(1, now, false) // tracked (recycled entry)
		tb.Allow(1, now)
		tb.Record(1, now+11*sec, true) // healed: forgotten
		now += 11 * sec
	}); a != 0 {
		t.Errorf("%v allocs per run; want 0", a)
	}
}

// TestTargetBreakersExplained: Record reports a failure explained while the table holds
// it in an entry that can open, and not when per-target breakers are off or when the
// table had to evict another failing target to track it.
func TestTargetBreakersExplained(t *testing.T) {
	tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 0)
	if !tb.Record(1, base, false) {
		t.Error("first failure of a target not explained")
	}
	for range 30 { // opens at 20; later failures are still its own
		if !tb.Record(1, base, false) {
			t.Fatal("repeated failure of a tracked target not explained")
		}
	}
	if tb.Record(2, base, true) || tb.Record(1, base, true) {
		t.Error("a success reported explained")
	}

	off := DefaultTargetBreakerConfig()
	off.ErrorRate = 1
	tbOff := NewTargetBreakers(off, 0)
	if tbOff.Record(1, base, false) || tbOff.Len() != 0 {
		t.Errorf("with per-target breakers off: explained or tracked (Len %d)", tbOff.Len())
	}

	full := NewTargetBreakers(DefaultTargetBreakerConfig(), 16) // one entry per shard
	evictions := 0
	for id := uint64(1); id <= 1000; id++ {
		if !full.Record(id, base+int64(id), false) {
			evictions++
		}
	}
	if want := 1000 - full.MaxTargets(); evictions != want {
		t.Errorf("unexplained failures with a full table = %d; want %d (one per eviction)", evictions, want)
	}
}
