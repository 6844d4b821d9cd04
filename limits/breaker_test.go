package limits

import (
	"sync"
	"testing"
	"time"
)

// testBreakerConfig opens above 10% errors over 10 s once 10 requests were seen, for 5 s,
// then 3 probes.
func testBreakerConfig() BreakerConfig {
	return BreakerConfig{ErrorRate: 0.1, Window: 10 * time.Second, Buckets: 10, MinRequests: 10, OpenFor: 5 * time.Second, Probes: 3}
}

func record(b *Breaker, now int64, ok, fail int) {
	for range ok {
		b.Record(now, true)
	}
	for range fail {
		b.Record(now, false)
	}
}

func wantState(t *testing.T, b *Breaker, now int64, want BreakerState) {
	t.Helper()
	if got := b.State(now); got != want {
		t.Fatalf("State = %v; want %v", got, want)
	}
}

func TestBreakerTrips(t *testing.T) {
	tests := []struct {
		name     string
		ok, fail int
		want     BreakerState
	}{
		{"below-min-volume", 0, 9, BreakerClosed},
		{"at-threshold-not-above", 9, 1, BreakerClosed},
		{"above-threshold", 8, 2, BreakerOpen},
		{"low-rate-high-volume", 1000, 100, BreakerClosed},
		{"high-rate-high-volume", 1000, 112, BreakerOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBreaker(testBreakerConfig())
			record(b, base, tt.ok, tt.fail)
			wantState(t, b, base, tt.want)
		})
	}
}

func TestBreakerWindowSlides(t *testing.T) {
	b := NewBreaker(testBreakerConfig())
	record(b, base, 0, 1) // one old failure
	record(b, base+11*sec, 9, 0)
	record(b, base+11*sec, 0, 1) // 1 of 10 in the window: not above 10%
	wantState(t, b, base+11*sec, BreakerClosed)
	if req, fail := b.Counts(base + 11*sec); req != 10 || fail != 1 {
		t.Errorf("Counts = %d, %d; want 10, 1", req, fail)
	}
	// Within the window, failures spread over buckets add up.
	b = NewBreaker(testBreakerConfig())
	for i := range 10 {
		record(b, base+int64(i)*sec, 1, 0)
	}
	record(b, base+9*sec, 0, 2)
	wantState(t, b, base+9*sec, BreakerOpen)
}

func TestBreakerFullCycle(t *testing.T) {
	b := NewBreaker(testBreakerConfig())
	now := base
	record(b, now, 5, 5)
	wantState(t, b, now, BreakerOpen)
	if b.Opens() != 1 {
		t.Errorf("Opens = %d; want 1", b.Opens())
	}

	// Open: fail fast with the rest of the period.
	now += 2 * sec
	ok, ra := b.Allow(now)
	if ok || ra != 3*time.Second {
		t.Fatalf("Allow while open = %v, %v; want false, 3s", ok, ra)
	}
	b.Record(now, true) // late result while open: ignored
	wantState(t, b, now, BreakerOpen)

	// Half-open: 3 probes, then refusal.
	now = base + 5*sec
	for i := range 3 {
		if ok, _ := b.Allow(now); !ok {
			t.Fatalf("probe %d refused", i)
		}
	}
	wantState(t, b, now, BreakerHalfOpen)
	if ok, ra := b.Allow(now); ok || ra <= 0 || ra > time.Second {
		t.Fatalf("4th probe = %v, %v; want false, (0, 1s]", ok, ra)
	}
	b.Record(now, true)
	b.Record(now, true)
	wantState(t, b, now, BreakerHalfOpen)
	b.Record(now, true)
	wantState(t, b, now, BreakerClosed)

	// Closed again with an empty window.
	if req, fail := b.Counts(now); req != 0 || fail != 0 {
		t.Errorf("Counts after closing = %d, %d; want 0, 0", req, fail)
	}
	if ok, ra := b.Allow(now); !ok || ra != 0 {
		t.Errorf("Allow after closing = %v, %v; want true, 0", ok, ra)
	}
	record(b, now, 9, 0)
	record(b, now, 0, 1)
	wantState(t, b, now, BreakerClosed)
}

func TestBreakerHalfOpenFailureReopens(t *testing.T) {
	b := NewBreaker(testBreakerConfig())
	record(b, base, 0, 10)
	now := base + 5*sec
	if ok, _ := b.Allow(now); !ok {
		t.Fatal("first probe refused")
	}
	b.Record(now, true)
	if ok, _ := b.Allow(now); !ok {
		t.Fatal("second probe refused")
	}
	b.Record(now+sec, false)
	wantState(t, b, now+sec, BreakerOpen)
	if b.Opens() != 2 {
		t.Errorf("Opens = %d; want 2", b.Opens())
	}
	if ok, ra := b.Allow(now + sec); ok || ra != 5*time.Second {
		t.Errorf("Allow after reopening = %v, %v; want false, 5s", ok, ra)
	}
}

func TestBreakerLostProbesFreed(t *testing.T) {
	b := NewBreaker(testBreakerConfig())
	record(b, base, 0, 10)
	now := base + 5*sec
	for range 3 {
		b.Allow(now)
	}
	b.Record(now, true) // two probe results never arrive
	if ok, _ := b.Allow(now + 4*sec); ok {
		t.Fatal("probe admitted while all probe slots are out")
	}
	now += 5 * sec
	for i := range 2 {
		if ok, _ := b.Allow(now); !ok {
			t.Fatalf("freed probe %d refused", i)
		}
	}
	if ok, _ := b.Allow(now); ok {
		t.Fatal("more probes than the lost ones admitted")
	}
	b.Record(now, true)
	b.Record(now, true)
	wantState(t, b, now, BreakerClosed)
}

func TestBreakerZeroValueNeverOpens(t *testing.T) {
	var b Breaker
	record(&b, base, 0, 1000)
	if ok, ra := b.Allow(base); !ok || ra != 0 {
		t.Errorf("zero Breaker Allow = %v, %v; want true, 0", ok, ra)
	}
	wantState(t, &b, base, BreakerClosed)
}

func TestBreakerDefaults(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	if got, want := b.Config(), DefaultBreakerConfig(); got != want {
		t.Errorf("Config = %+v; want %+v", got, want)
	}
	record(b, base, 99, 0)
	record(b, base, 0, 1) // 1% of 100: not above
	wantState(t, b, base, BreakerClosed)
	record(b, base, 0, 1)
	wantState(t, b, base, BreakerOpen)
}

// TestBreakerConcurrent runs Allow and Record from several goroutines through open and
// half-open cycles; run under -race.
func TestBreakerConcurrent(t *testing.T) {
	cfg := DefaultBreakerConfig()
	cfg.ErrorRate, cfg.MinRequests, cfg.OpenFor, cfg.Window = 0.2, 20, 100*time.Millisecond, time.Second
	b := NewBreaker(cfg)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			now := base
			for i := range 20000 {
				now += 10_000 // 10 µs
				if ok, _ := b.Allow(now); ok {
					b.Record(now, (i+g)%4 != 0) // 25% failures
				}
				_ = b.State(now)
			}
		})
	}
	wg.Wait()
	if b.Opens() == 0 {
		t.Error("breaker never opened at 25% errors")
	}
}

func TestBreakerNoAllocs(t *testing.T) {
	b := NewBreaker(BreakerConfig{})
	now := base
	if a := testing.AllocsPerRun(1000, func() {
		now += 1000
		b.Allow(now)
		b.Record(now, true)
	}); a != 0 {
		t.Errorf("Allow+Record closed: %v allocs per run; want 0", a)
	}
	record(b, now, 0, 200)
	wantState(t, b, now, BreakerOpen)
	if a := testing.AllocsPerRun(1000, func() {
		now += 1000
		b.Allow(now)
		b.Record(now, true)
	}); a != 0 {
		t.Errorf("Allow+Record open/half-open: %v allocs per run; want 0", a)
	}
}

func TestBreakerStateString(t *testing.T) {
	for s, want := range map[BreakerState]string{BreakerClosed: "closed", BreakerOpen: "open", BreakerHalfOpen: "half-open", 9: "invalid"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q; want %q", s, got, want)
		}
	}
}

// TestBreakerStateAsOfNow: once the open period has passed, State reports half-open
// without a request having arrived to move it (a gauge read 20 s after a 5 s open period
// said "open" until the next request), for the node breaker and a target's alike.
func TestBreakerStateAsOfNow(t *testing.T) {
	b := NewBreaker(testBreakerConfig())
	tb := NewTargetBreakers(DefaultTargetBreakerConfig(), 0)
	record(b, base, 0, 10) // opens at base for 5 s
	for range 20 {
		tb.Record(1, base, false) // opens at base for 5 s
	}
	tests := []struct {
		name string
		now  int64
		want BreakerState
	}{
		{"during", base + 4*sec, BreakerOpen},
		{"just-before-end", base + 5*sec - 1, BreakerOpen},
		{"at-end", base + 5*sec, BreakerHalfOpen},
		{"long-after", base + 20*sec, BreakerHalfOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := b.State(tt.now); got != tt.want {
				t.Errorf("Breaker.State = %v; want %v", got, tt.want)
			}
			if got := tb.State(1, tt.now); got != tt.want {
				t.Errorf("TargetBreakers.State = %v; want %v", got, tt.want)
			}
		})
	}
	// Reading the state moves nothing: the next Allow still starts the half-open round.
	if ok, _ := b.Allow(base + 20*sec); !ok {
		t.Fatal("first probe after the open period refused")
	}
	wantState(t, b, base+20*sec, BreakerHalfOpen)
}
