package limits

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestTokenBucketAllow(t *testing.T) {
	type step struct {
		at   int64 // ns after base
		n    int
		want bool
	}
	tests := []struct {
		name        string
		rate, burst int
		steps       []step
	}{
		{"unlimited-zero-rate", 0, 0, []step{{0, 1e9, true}, {0, 1e9, true}}},
		{"burst-then-refuse", 10, 3, []step{{0, 1, true}, {0, 1, true}, {0, 1, true}, {0, 1, false}}},
		{"refill-one-token", 10, 3, []step{{0, 3, true}, {0, 1, false}, {sec / 10, 1, true}, {sec / 10, 1, false}}},
		{"partial-refill-not-enough", 10, 3, []step{{0, 3, true}, {sec/10 - 1, 1, false}, {sec / 10, 1, true}}},
		{"refill-caps-at-burst", 10, 3, []step{{0, 3, true}, {100 * sec, 3, true}, {100 * sec, 1, false}}},
		{"default-burst-is-one-second", 100, 0, []step{{0, 100, true}, {0, 1, false}}},
		{"n-zero-always", 1, 1, []step{{0, 1, true}, {0, 0, true}, {0, -5, true}, {0, 1, false}}},
		{"n-over-burst-needs-full-bucket", 10, 5, []step{{0, 1, true}, {0, 8, false}, {sec / 10, 8, true}, {sec / 10, 1, false}}},
		{"debt-is-repaid", 10, 5, []step{{0, 8, true}, {sec / 10 * 3, 1, false}, {sec/10*4 - 1, 1, false}, {sec / 10 * 4, 1, true}}},
		{"time-backwards-no-refill", 10, 2, []step{{sec, 2, true}, {0, 1, false}, {sec, 1, false}, {sec + sec/10, 1, true}}},
		{"odd-rate-exact", 3, 1, []step{{0, 1, true}, {sec/3 - 1, 1, false}, {sec/3 + 1, 1, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTokenBucket(tt.rate, tt.burst)
			for i, s := range tt.steps {
				if got := b.Allow(base+s.at, s.n); got != s.want {
					t.Fatalf("step %d: Allow(base+%d, %d) = %v; want %v", i, s.at, s.n, got, s.want)
				}
			}
		})
	}
}

func TestTokenBucketZeroValueUnlimited(t *testing.T) {
	var b TokenBucket
	for i := range 1000 {
		if !b.Allow(int64(i), 1<<20) {
			t.Fatalf("zero TokenBucket refused call %d", i)
		}
	}
	if d := b.RetryAfter(0, 1); d != 0 {
		t.Errorf("RetryAfter = %v; want 0", d)
	}
	if !b.Unlimited() || b.Rate() != 0 || b.Burst() != 0 {
		t.Errorf("zero bucket: Unlimited %v Rate %d Burst %d; want true 0 0", b.Unlimited(), b.Rate(), b.Burst())
	}
}

func TestTokenBucketRetryAfter(t *testing.T) {
	tests := []struct {
		name        string
		rate, burst int
		spend       int // spent at base
		at          int64
		n           int
		want        time.Duration
	}{
		{"available", 10, 5, 0, 0, 1, 0},
		{"one-token", 10, 5, 5, 0, 1, 100 * time.Millisecond},
		{"two-tokens", 10, 5, 5, 0, 2, 200 * time.Millisecond},
		{"partly-refilled", 10, 5, 5, sec / 20, 1, 50 * time.Millisecond},
		{"oversize-waits-for-full", 10, 5, 5, 0, 50, 500 * time.Millisecond},
		{"rounds-up", 3, 1, 1, 0, 1, 333333334},
		{"debt", 10, 5, 8, 0, 1, 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewTokenBucket(tt.rate, tt.burst)
			if tt.spend > 0 && !b.Allow(base, tt.spend) {
				t.Fatalf("setup Allow(%d) refused", tt.spend)
			}
			got := b.RetryAfter(base+tt.at, tt.n)
			if got != tt.want {
				t.Fatalf("RetryAfter = %v; want %v", got, tt.want)
			}
			if got > 0 {
				if b.Allow(base+tt.at+int64(got)-1, tt.n) {
					t.Errorf("Allow succeeded 1ns before RetryAfter")
				}
				if !b.Allow(base+tt.at+int64(got), tt.n) {
					t.Errorf("Allow failed at RetryAfter")
				}
			}
		})
	}
}

// TestTokenBucketNeverExceedsRate checks, over random arrival schedules, that in every
// window [t_i, t_j] the admitted tokens are at most rate*(t_j-t_i) + burst, and that a
// saturated bucket does admit close to that.
func TestTokenBucketNeverExceedsRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		rate := 1 + rng.IntN(5000)
		burst := 1 + rng.IntN(2*rate)
		b := NewTokenBucket(rate, burst)
		now := base
		meanGap := sec / int64(rate) / int64(1+rng.IntN(4)) // up to 4x overload
		var times []int64
		var ns []int
		for range 3000 {
			now += rng.Int64N(2*meanGap + 1)
			n := 1 + rng.IntN(min(burst, 4))
			if b.Allow(now, n) {
				times = append(times, now)
				ns = append(ns, n)
			}
		}
		// Max over i <= j of sum(ns[i..j]) - rate*(t_j - t_i)/1e9 must be <= burst.
		// With prefix sums P: P[j+1] - P[i] - r*(t_j - t_i) = (P[j+1] - r t_j) - (P[i] - r t_i).
		var prefix float64
		bestLow := 0.0 // min over i <= j of P[i] - r*t_i
		for j := range times {
			low := prefix - float64(rate)*float64(times[j])/1e9
			if j == 0 || low < bestLow {
				bestLow = low
			}
			prefix += float64(ns[j])
			excess := prefix - float64(rate)*float64(times[j])/1e9 - bestLow
			if excess > float64(burst)+1e-6 {
				t.Fatalf("trial %d (rate %d burst %d): window ending at admission %d admitted %.3f above rate*t; want <= burst",
					trial, rate, burst, j, excess)
			}
		}
	}
}

func TestTokenBucketSustainsRate(t *testing.T) {
	const rate, burst = 1000, 10
	b := NewTokenBucket(rate, burst)
	admitted := 0
	for now := base; now < base+10*sec; now += sec / 10000 { // 10x overload
		if b.Allow(now, 1) {
			admitted++
		}
	}
	if want := rate*10 + burst; admitted < want-1 || admitted > want {
		t.Errorf("admitted %d in 10 s; want about %d", admitted, want)
	}
}

func TestTokenBucketNoAllocs(t *testing.T) {
	b := NewTokenBucket(1000, 10)
	now := base
	if a := testing.AllocsPerRun(1000, func() {
		now += 1000
		b.Allow(now, 1)
		b.RetryAfter(now, 1)
	}); a != 0 {
		t.Errorf("Allow+RetryAfter: %v allocs per run; want 0", a)
	}
}
