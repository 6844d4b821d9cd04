package limits

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSharedRateParameters(t *testing.T) {
	tests := []struct {
		name                 string
		rate, burst, loops   int
		wantLease, wantBurst int
		wantLoops            int
		wantUnlimited        bool
	}{
		{"seed", SeedNodeMsgRate, 0, 4, 64, SeedNodeMsgRate, 4, false},
		{"small-rate-lease-one-percent", 1000, 0, 2, 10, 1000, 2, false},
		{"tiny-rate-lease-one", 10, 0, 2, 1, 10, 2, false},
		{"lease-capped-by-burst", 100000, 5, 2, 5, 5, 2, false},
		{"unlimited", 0, 0, 3, 0, 0, 3, true},
		{"loops-at-least-one", 100, 100, 0, 1, 100, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSharedRate(tt.rate, tt.burst, tt.loops)
			if s.LeaseSize() != tt.wantLease || s.Burst() != tt.wantBurst || s.Loops() != tt.wantLoops {
				t.Errorf("LeaseSize, Burst, Loops = %d, %d, %d; want %d, %d, %d",
					s.LeaseSize(), s.Burst(), s.Loops(), tt.wantLease, tt.wantBurst, tt.wantLoops)
			}
			if tt.wantUnlimited {
				l := s.Lease(0)
				for i := range 10000 {
					if !l.Allow(0) {
						t.Fatalf("unlimited SharedRate refused call %d", i)
					}
				}
			}
		})
	}
}

func TestSharedRateSingleLoop(t *testing.T) {
	const rate, burst = 1000, 100
	s := NewSharedRate(rate, burst, 1)
	l := s.Lease(0)
	n := 0
	for l.Allow(base) {
		n++
	}
	if n != burst {
		t.Fatalf("admitted %d at one instant; want burst %d", n, burst)
	}
	if d := l.RetryAfter(base); d != time.Millisecond {
		t.Errorf("RetryAfter = %v; want 1ms", d)
	}
	if l.Allow(base + int64(time.Millisecond) - 1) {
		t.Errorf("Allow succeeded before RetryAfter")
	}
	if !l.Allow(base + int64(time.Millisecond)) {
		t.Errorf("Allow failed at RetryAfter")
	}
	// Saturated for 10 s at 10x the rate: about rate*10 more.
	admitted := 0
	for now := base + int64(time.Millisecond); now < base+10*sec; now += sec / 10000 {
		if l.Allow(now) {
			admitted++
		}
	}
	if want := rate * 10; admitted < want-s.LeaseSize()-1 || admitted > want+s.LeaseSize() {
		t.Errorf("admitted %d in 10 s; want about %d", admitted, want)
	}
}

// TestSharedRateBound hammers one SharedRate from 4 goroutines sharing a fake clock and
// checks that over every window [t_i, t_j] of admission times the admissions are at most
// rate*(t_j-t_i) + burst + loops*LeaseSize.
func TestSharedRateBound(t *testing.T) {
	const (
		loops = 4
		rate  = 100_000
		burst = 500
		iters = 40_000
	)
	s := NewSharedRate(rate, burst, loops)
	var clock atomic.Int64
	clock.Store(base)
	got := make([][]int64, loops)
	var wg sync.WaitGroup
	for i := range loops {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			l := s.Lease(i)
			// Each step advances the shared clock by ~2.5 µs on average: 4 loops offer
			// about 4 x 400K/s, 16x the rate.
			for range iters {
				now := clock.Add(rng.Int64N(5000))
				if l.Allow(now) {
					got[i] = append(got[i], now)
				}
			}
		})
	}
	wg.Wait()
	all := slices.Concat(got...)
	slices.Sort(all)
	slack := float64(burst + loops*s.LeaseSize())
	bestLow := 0.0
	for j, tj := range all {
		low := float64(j) - float64(rate)*float64(tj)/1e9
		if j == 0 || low < bestLow {
			bestLow = low
		}
		if excess := float64(j+1) - float64(rate)*float64(tj)/1e9 - bestLow; excess > slack {
			t.Fatalf("window ending at admission %d: %.1f above rate*t; want <= burst+loops*lease = %v", j, excess, slack)
		}
	}
	elapsed := float64(clock.Load()-base) / 1e9
	if min := rate * elapsed * 0.9; float64(len(all)) < min {
		t.Errorf("admitted %d over %.3fs; want at least %.0f (90%% of rate)", len(all), elapsed, min)
	}
}

func TestSharedRateNoAllocs(t *testing.T) {
	s := NewSharedRate(1000, 10, 2)
	l := s.Lease(1)
	now := base
	if a := testing.AllocsPerRun(1000, func() {
		now += 1000
		l.Allow(now)
		l.RetryAfter(now)
	}); a != 0 {
		t.Errorf("Allow+RetryAfter: %v allocs per run; want 0", a)
	}
}
