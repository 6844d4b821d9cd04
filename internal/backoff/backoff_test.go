package backoff

import (
	"testing"
	"time"
)

func TestJittered(t *testing.T) {
	lo, hi := 100*time.Millisecond, 5*time.Second
	for n := range 40 {
		ceil := hi
		if n < 20 {
			ceil = min(hi, lo<<(n+1))
		}
		for range 100 {
			if d := Jittered(lo, hi, n); d < lo || d > ceil {
				t.Fatalf("Jittered(attempt %d) = %v; want in [%v, %v]", n, d, lo, ceil)
			}
		}
	}
	if d := Jittered(lo, lo, 3); d != lo {
		t.Errorf("Jittered with min == max = %v; want %v", d, lo)
	}
}
